"""The seeded-bug runner (tests/fuzz/seeded_bugs.py), cheaply: every mutation still applies to
the current contracts exactly once, and the copy / apply / parse helpers work. No fuzzing here;
`PERPDEX_SEEDED=1` adds one end-to-end run (a mutated copy, the `seeded` profile, caught)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import seeded_bugs as sb  # tests/fuzz is on sys.path (rootdir-less test dirs, prepend mode)


@pytest.mark.parametrize("mutation", sb.MUTATIONS, ids=lambda m: m.name)
def test_mutation__applies_exactly_once_and_changes_the_source(mutation: sb.Mutation) -> None:
    path = sb.target(sb.REPO, mutation)  # a glob: the one matching file that holds the snippet
    source = path.read_text()
    assert source.count(mutation.old) == 1, f"{mutation.name}: snippet must occur once in {mutation.file}"
    mutated = sb.mutate(source, mutation)
    assert mutated != source
    assert mutation.new in mutated
    assert mutation.machine in sb.MACHINES


def test_mutations__the_router_machine_has_its_own() -> None:
    """Two-step settlement (SPEC 11.13-11.15) has seeded bugs of its own, in each contract it relies on
    (the vault's price reads live in contracts/modules/markets.vy)."""
    routed = {m.name: m for m in sb.MUTATIONS if m.machine == "router"}
    assert {"fill_at_latest_price", "cancel_refunds_and_pays_reward", "settle_uses_later_round"} <= set(routed)
    assert {sb.target(sb.REPO, m).name for m in routed.values()} == {"markets.vy", "OrderRouter.vy", "PriceOracle.vy"}


def test_target__glob__finds_the_one_file_that_holds_the_snippet(tmp_path: Path) -> None:
    """A vault mutation keeps applying when its function moves into contracts/modules/."""
    (tmp_path / "contracts" / "modules").mkdir(parents=True)
    (tmp_path / "contracts" / "V.vy").write_text("a = 1\n")
    (tmp_path / "contracts" / "modules" / "m.vy").write_text("b = 1\n")
    moved = sb.Mutation("moved", "", "contracts/**/*.vy", "b = 1", "b = 2")
    assert sb.apply_mutation(tmp_path, moved) == tmp_path / "contracts" / "modules" / "m.vy"
    assert (tmp_path / "contracts" / "modules" / "m.vy").read_text() == "b = 2\n"
    with pytest.raises(sb.MutationError, match="not found in contracts/\\*\\*/\\*.vy"):
        sb.target(tmp_path, sb.Mutation("gone", "", "contracts/**/*.vy", "c = 1", "c = 2"))
    (tmp_path / "contracts" / "W.vy").write_text("b = 2\n")  # the moved file now holds "b = 2" too
    with pytest.raises(sb.MutationError, match="found 2 times"):
        sb.target(tmp_path, sb.Mutation("twice", "", "contracts/**/*.vy", "b = 2", "b = 3"))


def test_runs_for__one_baseline_per_machine_named_then_each_mutation_with_its_machine() -> None:
    exchange, router = sb.mutation_named("fee_not_charged"), sb.mutation_named("fill_at_latest_price")
    assert sb.runs_for([router, exchange], baseline=True) == [
        (None, "router"), (None, "exchange"), (router, "router"), (exchange, "exchange")]
    assert sb.runs_for([router], baseline=False) == [(router, "router")]
    assert sb.runs_for([], baseline=True, machines=["router"]) == [(None, "router")]
    assert sb.runs_for([], baseline=True) == [(None, name) for name in sb.MACHINES]


def test_mutations__at_least_six_with_unique_names() -> None:
    names = [m.name for m in sb.MUTATIONS]
    assert len(names) >= 6
    assert len(set(names)) == len(names)
    assert sb.mutation_named(names[0]) is sb.MUTATIONS[0]
    with pytest.raises(KeyError, match="no mutation named"):
        sb.mutation_named("no_such_bug")


def test_mutate__missing_snippet__raises_clearly() -> None:
    m = sb.Mutation("gone", "", "contracts/X.vy", "a = 1", "a = 2")
    with pytest.raises(sb.MutationError, match="not found in contracts/X.vy"):
        sb.mutate("b = 1\n", m)


def test_mutate__ambiguous_snippet__raises_clearly() -> None:
    m = sb.Mutation("twice", "", "contracts/X.vy", "a = 1", "a = 2")
    with pytest.raises(sb.MutationError, match="found 2 times"):
        sb.mutate("a = 1\na = 1\n", m)


def test_copy_and_apply__change_only_the_copy(tmp_path: Path) -> None:
    copy = sb.copy_repo(tmp_path / "repo")
    assert sorted(p.name for p in copy.iterdir()) == sorted(sb.COPIED)
    assert not list(copy.rglob(".build")) and not list(copy.rglob("__pycache__"))
    for part in ("contracts/modules", "contracts/interfaces"):  # what the contracts import comes along
        files = sorted(p.relative_to(sb.REPO) for p in (sb.REPO / part).iterdir() if p.is_file())
        assert files and sorted(p.relative_to(copy) for p in (copy / part).iterdir()) == files
    mutation = sb.mutation_named("fee_not_charged")
    original = (sb.REPO / mutation.file).read_text()
    assert (copy / mutation.file).read_text() == original
    sb.apply_mutation(copy, mutation)
    assert (copy / mutation.file).read_text() == sb.mutate(original, mutation)
    assert (sb.REPO / mutation.file).read_text() == original


def test_copy_env__puts_the_copy_first_and_drops_fuzz_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPDEX_FUZZ_PROFILE", "long")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = sb.copy_env(tmp_path, {"PERPDEX_FUZZ_SUMMARY": "/s.json"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "/elsewhere"]
    assert "PERPDEX_FUZZ_PROFILE" not in env
    assert env["PERPDEX_FUZZ_SUMMARY"] == "/s.json"


MACHINE_SOURCE = """class M:
    @rule()
    def deposit(self):
        pass

    @invariant()
    def books_balance(self):
        assert self.a == self.b
"""

LOG = """/tmp/x/repo/tests/fuzz/test_exchange_machine.py:535: in test_exchange_state_machine
/tmp/x/repo/tests/fuzz/test_exchange_machine.py:8: AssertionError
E   Failing test case: <state machine>
E   state = ExchangeMachine()
E   state.fund_traders(opening=[(0, 0, 0)])
E   state.books_balance()
E   state.deposit()
E   state.books_balance()
E   state.teardown()
"""


def test_failure_site__names_the_failing_invariant_line() -> None:
    assert sb.failure_site(LOG, MACHINE_SOURCE) == "books_balance:8: assert self.a == self.b"
    assert sb.failure_site("no traceback here", MACHINE_SOURCE) == ""


def test_failure_site__reads_the_frames_of_the_machine_that_ran() -> None:
    router_log = LOG.replace("test_exchange_machine.py", "test_router_machine.py")
    router = sb.MACHINES["router"].path
    assert sb.failure_site(router_log, MACHINE_SOURCE, router) == "books_balance:8: assert self.a == self.b"
    assert sb.failure_site(LOG, MACHINE_SOURCE, router) == ""  # another machine's frames are not its


def test_failing_example_length__counts_rules_not_invariants() -> None:
    assert sb.failing_example_length(LOG, MACHINE_SOURCE) == 2  # fund_traders, deposit


def test_compile_copy__mutated_copy__compiles_there_under_the_size_limit(tmp_path: Path) -> None:
    """compile_copy raises unless `perpdex` and its contracts project resolve inside the copy."""
    copy = sb.copy_repo(tmp_path / "repo")
    sb.apply_mutation(copy, sb.mutation_named("keeper_reward_uncapped"))
    sizes = sb.compile_copy(copy)
    assert set(sizes) == set(sb.DEPLOYABLES)
    assert 0 < sizes["MarginVault"] <= sb.SIZE_LIMIT
    assert (copy / ".build").is_dir()


def test_compile_copy__broken_contract__fails_clearly(tmp_path: Path) -> None:
    copy = sb.copy_repo(tmp_path / "repo")
    broken = sb.Mutation("broken", "", sb.POSITIONS, "delta: int256 = pnl + funding_paid", "delta: int256 = pnl + undefined_name")
    sb.apply_mutation(copy, broken)
    with pytest.raises(sb.CompileFailed, match="compiling .* failed"):
        sb.compile_copy(copy)


@pytest.mark.parametrize(
    ("outcome", "ok"),
    [
        (sb.Outcome("bug", "", caught=True), True),
        (sb.Outcome("bug", "", caught=False), False),
        (sb.Outcome("bug", "", caught=False, timed_out=True), False),
        (sb.Outcome("baseline", "", caught=False), True),
        (sb.Outcome("baseline", "", caught=True), False),
        (sb.Outcome("bug", "", caught=True, error="CompileFailed: x"), False),
    ],
)
def test_outcome_ok__mutations_must_be_caught_and_the_baseline_must_pass(outcome: sb.Outcome, ok: bool) -> None:
    assert outcome.ok is ok


if os.environ.get("PERPDEX_SEEDED") == "1":
    # Defined only on request (no `slow` marker is registered): about 1-3 minutes.

    def test_end_to_end__fee_not_charged__is_caught() -> None:
        progress: list[str] = []
        outcome = sb.run_one(sb.mutation_named("fee_not_charged"), "seeded", 20 * 60, 0, progress.append)
        assert outcome.error == "", outcome.error
        assert outcome.caught, progress
        assert outcome.steps > 0 and outcome.caught_by
