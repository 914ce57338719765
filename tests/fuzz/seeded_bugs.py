"""Seeded bugs (issue 5): show that the stateful fuzz suite has teeth.

Each `Mutation` is a small, realistic one-line bug in the contracts, and names the state
machine that should catch it: `exchange` (tests/fuzz/test_exchange_machine.py: the margin
math, SPEC 11.1-11.12) or `router` (tests/fuzz/test_router_machine.py: two-step settlement,
SPEC 11.13-11.15). The runner copies the repository to a temporary directory, applies one
mutation there, compiles the copy (failing clearly on a compile error or a contract over the
24,576-byte limit), and runs the mutation's machine in the copy with
PERPDEX_FUZZ_PROFILE=seeded (each machine's `ci` size, no shrinking, no example database) and
PERPDEX_FUZZ_SUMMARY, so the machine's own counters say how many examples and steps it took to
catch the bug. `--baseline` runs the unmutated copy through each machine the chosen mutations
name, which must pass: the harness itself is not what fails.

A mutation's `file` may be a glob (`VAULT_CODE`: the vault and its modules): the snippet must
then occur exactly once in all the files it matches together, so the mutation keeps applying
when the function it changes moves between the vault and contracts/modules/.

    .venv/bin/python tests/fuzz/seeded_bugs.py [--only NAME]... [--machine exchange|router] [--baseline]
        [--profile seeded] [--jobs 1] [--timeout-minutes 20] [--seed 0 | --random] [--no-exit-check]
        [--keep] [--list]

The copy must be what gets deployed: `perpdex.deploy.contracts_project()` loads the
contracts next to the imported `perpdex` package, and the repo is pip-installed in editable
mode, so the copy is put first on PYTHONPATH and the compile step checks that both
`perpdex.__file__` and the contracts project resolve inside the copy.

Exit status: 0 when every mutation was caught (and the baseline, if run, passed), 1 otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from perpdex.fuzz_runs import MACHINES, Machine, ape_test_command, fuzz_env

if TYPE_CHECKING:
    from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
# the whole contracts/ tree goes along: contracts/modules/ and contracts/interfaces/ included
COPIED = ("contracts", "tests", "perpdex", "ape-config.yaml", "pyproject.toml")
IGNORED = shutil.ignore_patterns(".build", ".hypothesis", "__pycache__", ".pytest_cache", "*.pyc")
DEPLOYABLES = ("MarginVault", "VaultExtension", "LiquidationKeeper", "PriceOracle", "OrderRouter", "VaultLens", "Governance")
SIZE_LIMIT = 24_576  # EIP-170: the largest runtime bytecode a chain accepts
VAULT = "contracts/MarginVault.vy"
EXTENSION = "contracts/VaultExtension.vy"
POSITIONS = "contracts/modules/positions.vy"
POOL = "contracts/modules/pool.vy"
LIQUIDATION = "contracts/modules/liquidation.vy"
VAULT_CODE = "contracts/**/*.vy"  # the vault wherever its code lives: MarginVault.vy or contracts/modules/
ROUTER = "contracts/OrderRouter.vy"
ORACLE = "contracts/PriceOracle.vy"
HEARTBEAT = 60.0  # seconds between "still running" lines

Progress = Callable[[str], None]


class MutationError(ValueError):
    """A mutation no longer applies: its `old` snippet is missing or ambiguous."""


MACHINE = MACHINES["exchange"].path  # the default machine


class CompileFailed(RuntimeError):
    """The (mutated) copy does not compile, is too large, or is not the project imported."""


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    file: str  # relative to the repository root; a glob: the snippet's one file among its matches
    old: str  # must occur exactly once in the current source (of all the files `file` matches)
    new: str
    machine: str = "exchange"  # the key in MACHINES of the machine that should catch it


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "funding_wrong_side",
        "settling funding credits the side that owes it (sign flipped)",
        POSITIONS,
        "amount: int256 = wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)",
        "amount: int256 = wad_math._floor_div(pos.size * (index - pos.funding_index), IWAD)",
    ),
    Mutation(
        "withdrawable_rounds_up",
        "withdrawable() rounds WAD -> token units up, in the trader's favour",
        VAULT,
        "return positions._free_collateral(positions._health(_owner, _sub, False)) // token_io.TOKEN_SCALE",
        "return (positions._free_collateral(positions._health(_owner, _sub, False)) + token_io.TOKEN_SCALE - 1) // token_io.TOKEN_SCALE",
    ),
    Mutation(
        "lp_payout_rounds_up",
        "remove_liquidity rounds the token payout up, in the LP's favour",
        POOL,
        "amount: uint256 = owed_wad // token_io.TOKEN_SCALE",
        "amount: uint256 = wad_math._ceil_div(owed_wad, token_io.TOKEN_SCALE)",
    ),
    Mutation(
        "oi_not_decremented_on_close",
        "closing a long to zero leaves its size in OI long",
        POSITIONS,
        "    if _pos.size > 0:\n        oi -= convert(_pos.size, uint256)",
        "    if _pos.size > 0 and _size != 0:\n        oi -= convert(_pos.size, uint256)",
    ),
    Mutation(
        "liquidation_negative_collateral",
        "bad-debt waterfall tests the collateral before the close: a full liquidation can leave it negative",
        LIQUIDATION,
        "bad_debt: uint256 = 0\n    if mask == 0 and collateral < 0:",
        "bad_debt: uint256 = 0\n    if mask == 0 and h.collateral < 0:",
    ),
    Mutation(
        "withdraw_unrealized_profit",
        "free collateral is equity - IM: unrealized profit becomes withdrawable",
        POSITIONS,
        "free: int256 = min(_h.collateral + _h.funding, _h.equity) - convert(_h.initial_margin, int256)",
        "free: int256 = _h.equity - convert(_h.initial_margin, int256)",
    ),
    Mutation(
        "fee_not_charged",
        "the taker fee is computed and logged but not taken from collateral",
        POSITIONS,
        "delta: int256 = pnl + funding_paid - convert(fee, int256)",
        "delta: int256 = pnl + funding_paid",
    ),
    Mutation(
        "keeper_reward_uncapped",
        "the keeper gets the whole liquidation fee (max_keeper_reward ignored)",
        LIQUIDATION,
        "due: uint256 = min(_collected, _max_reward)",
        "due: uint256 = _collected",
    ),
    Mutation(
        "fill_skew_sign_flipped",
        "price impact sign flipped: trades that grow the skew get a discount",
        POSITIONS,
        "convert(_price, int256) * (scale2 + 2 * _skew + _delta)",
        "convert(_price, int256) * (scale2 - 2 * _skew - _delta)",
    ),
    Mutation(
        "bad_debt_skips_insurance",
        "the bad-debt waterfall skips the insurance fund: the pool bears all of it",
        POOL,
        "from_insurance: uint256 = min(self.insurance_fund, _bad_debt)",
        "from_insurance: uint256 = 0",
    ),
    Mutation(
        "liquidation_short_oi_wrong_half",
        "reducing a short (a trade or a liquidation) decrements the long half of the packed OI word",
        POSITIONS,
        "oi -= convert(-_pos.size, uint256) << 128",
        "oi -= convert(-_pos.size, uint256)",
    ),
    # ---- solvency (SPEC 14)
    Mutation(
        "caps_not_checked_on_increase",
        "a trade that grows open interest skips the pool's caps (reserve_factor, max_exposure_factor)",
        POSITIONS,
        "        pool._check_trade_caps(_market, side_oi, price)\n",
        "",
    ),
    Mutation(
        "keeper_paid_from_bad_debt",
        "a bankrupt account is charged the whole liquidation fee: the part it cannot pay becomes bad debt and keeper pay",
        LIQUIDATION,
        "collected = convert(max(h.equity, 0), uint256)",
        "collected = fee",
    ),
    Mutation(
        "lp_withdrawal_caps_before_paying",
        "an LP withdrawal checks the caps against the pool's value before its payout, not after",
        POOL,
        "self._check_caps(largest, gross, value - paid_wad)",
        "self._check_caps(largest, gross, value)",
    ),
    Mutation(
        "adl_at_mark_price",
        "deleverage realizes the position's PnL at the mark price instead of the bankruptcy price",
        EXTENSION,
        "pnl: int256 = signed * (convert(bankruptcy, int256) - convert(pos.entry_price, int256))",
        "pnl: int256 = signed * (convert(mark, int256) - convert(pos.entry_price, int256))",
    ),
    Mutation(
        "profit_not_capped",
        "a trade that realizes profit is paid all of it, not the pool's pro-rata share (max_pnl_factor)",
        POSITIONS,
        "    if pnl > 0:\n        pnl = self._capped_profit(pnl)\n",
        "",
    ),
    Mutation(
        "loss_cap_ignored",
        "the pool absorbs all bad debt past the insurance fund, whatever is left of its loss window's budget (nothing to ADL)",
        POOL,
        "to_adl = rest - absorbed",
        "to_adl = 0",
    ),
    # ---- two-step settlement (SPEC 11.13-11.15): the router machine
    Mutation(
        "fill_at_latest_price",
        "strict price reads during a settlement take the latest price, not the settlement round",
        VAULT_CODE,
        "return (staticcall ORACLE.price_at(_market, at))[0]",
        "return staticcall ORACLE.price(_market)",
        machine="router",
    ),
    Mutation(
        # (paying a settler twice on every fill instead breaks the deployment itself: its first
        # fill, the pool's deposit, is the only escrow the router holds, so the second transfer fails)
        "cancel_refunds_and_pays_reward",
        "a request a settler cancels (expired, refused by the vault) refunds the reward to the owner and pays it to the settler",
        ROUTER,
        "    if _pay_caller:\n        reward = REWARD_TOKENS\n    else:\n        refund += REWARD_TOKENS",
        "    if _pay_caller:\n        reward = REWARD_TOKENS\n    refund += REWARD_TOKENS",
        machine="router",
    ),
    Mutation(
        "settle_uses_later_round",
        "PriceOracle.price_at answers with the newest round, not the first at or after the time",
        ORACLE,
        'assert round_id != 0, "oracle: no round yet"\n    return self._fresh(word), round_id',
        'assert round_id != 0, "oracle: no round yet"\n    return self._fresh(self._heads[_market]), self._heads[_market] >> 192',
        machine="router",
    ),
    Mutation(
        "lp_request_skips_grace",
        "an LP request fills as soon as its rounds exist, before LP_GRACE lets the liquidations at their prices land first",
        ROUTER,
        "return round_id != 0 and updated_at + LP_GRACE <= block.timestamp",
        "return round_id != 0",
        machine="router",
    ),
)


def mutation_named(name: str) -> Mutation:
    for m in MUTATIONS:
        if m.name == name:
            return m
    raise KeyError(f"no mutation named {name!r}; known: {', '.join(m.name for m in MUTATIONS)}")


# ------------------------------------------------------------------ copy and apply


def mutate(source: str, mutation: Mutation) -> str:
    """`source` with the mutation's snippet replaced; it must occur exactly once."""
    count = source.count(mutation.old)
    if count != 1:
        where = "not found" if count == 0 else f"found {count} times"
        raise MutationError(
            f"mutation {mutation.name}: snippet {mutation.old!r} {where} in {mutation.file} "
            "(the contract changed: update the mutation in tests/fuzz/seeded_bugs.py)"
        )
    return source.replace(mutation.old, mutation.new)


def target(root: Path, mutation: Mutation) -> Path:
    """The file under `root` that the mutation changes: its `file`, or for a glob the one file
    among the matches that holds the snippet (which must occur once in all of them together)."""
    if not any(ch in mutation.file for ch in "*?["):
        return root / mutation.file
    counts = {path: path.read_text().count(mutation.old) for path in sorted(root.glob(mutation.file))}
    holders = [path for path, n in counts.items() if n]
    total = sum(counts.values())
    if total != 1:
        where = "not found" if total == 0 else f"found {total} times ({', '.join(str(h.relative_to(root)) for h in holders)})"
        raise MutationError(
            f"mutation {mutation.name}: snippet {mutation.old!r} {where} in {mutation.file} "
            "(the contract changed: update the mutation in tests/fuzz/seeded_bugs.py)"
        )
    return holders[0]


def apply_mutation(root: Path, mutation: Mutation) -> Path:
    """Mutate the copy under `root` in place; returns the file changed."""
    path = target(root, mutation)
    path.write_text(mutate(path.read_text(), mutation))
    return path


def copy_repo(dest: Path, src: Path = REPO) -> Path:
    """Copy what the test run needs (no .venv, node_modules, .build or caches) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        item = src / name
        if item.is_dir():
            shutil.copytree(item, dest / name, ignore=IGNORED)
        else:
            shutil.copy2(item, dest / name)
    return dest


def copy_env(copy: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment in which `import perpdex` resolves to the copy, not the editable install."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPDEX_FUZZ_")}
    env["PYTHONPATH"] = os.pathsep.join([str(copy)] + [p for p in [env.get("PYTHONPATH")] if p])
    bins = [str(Path(sys.executable).parent), str(REPO / "node_modules" / ".bin")]
    env["PATH"] = os.pathsep.join(bins + [env.get("PATH", "")])
    env.setdefault("MPLBACKEND", "Agg")
    env.update(extra or {})
    return env


# ------------------------------------------------------------------ compile (and prove the copy is used)

_PROBE = """
import json, perpdex
from perpdex.deploy import contracts_project
project = contracts_project()
sizes = {name: len(bytes.fromhex(getattr(project, name).contract_type.runtime_bytecode.bytecode[2:]))
         for name in %r}
print("PROBE " + json.dumps({"package": perpdex.__file__, "project": str(project.path), "sizes": sizes}))
"""


def compile_copy(copy: Path, timeout: float = 900) -> dict[str, int]:
    """Compile the copy's contracts through the copy's `perpdex` (as the tests will) and return
    the runtime bytecode size of each deployable. Raises CompileFailed on a compile error, a
    contract above SIZE_LIMIT, or when `perpdex` / its contracts project resolve outside the copy."""
    proc = subprocess.run([sys.executable, "-c", _PROBE % (DEPLOYABLES,)], cwd=copy, env=copy_env(copy),
                          capture_output=True, text=True, timeout=timeout)
    probe = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    if proc.returncode != 0 or not probe:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise CompileFailed(f"compiling {copy} failed:\n{tail}")
    info = json.loads(probe[-1][len("PROBE "):])
    for key in ("package", "project"):
        if not Path(info[key]).resolve().is_relative_to(copy.resolve()):
            raise CompileFailed(f"{key} resolves to {info[key]}, outside the copy {copy}: the tests would "
                                "deploy the unmutated contracts")
    too_big = {n: s for n, s in info["sizes"].items() if s > SIZE_LIMIT}
    if too_big:
        raise CompileFailed(f"over the {SIZE_LIMIT:,} B contract size limit: {too_big}")
    return info["sizes"]


# ------------------------------------------------------------------ run the machine


@dataclass
class Outcome:
    name: str
    description: str
    caught: bool
    timed_out: bool = False
    examples: int = 0
    steps: int = 0
    failing_example_steps: int = 0
    seconds: float = 0.0
    steps_per_second: float = 0.0
    caught_by: str = ""
    vault_size: int = 0
    machine: str = "exchange"
    error: str = ""  # a harness problem (compile, copy, no summary), not a catch

    @property
    def ok(self) -> bool:
        """A mutation must be caught; the baseline (name "baseline") must pass."""
        if self.error:
            return False
        return self.caught != (self.name == "baseline")


_RULE_CALL = re.compile(r"^(?:E)?\s*state\.(\w+)\(", re.M)  # pytest prefixes the lines with "E   "
_INVARIANT = re.compile(r"@invariant\(\)\s+def (\w+)")


def failure_site(log: str, machine_source: str, machine_path: str = MACHINE) -> str:
    """`function:line: source` of the deepest frame in the machine file `machine_path` (which
    invariant or comparison failed), from pytest's traceback in `log`; '' when there is none."""
    location = re.compile(re.escape(machine_path.split("/")[-1]) + r":(\d+): \w+")
    lines = [int(n) for n in location.findall(log)]
    if not lines:
        return ""
    src = machine_source.splitlines()
    line = lines[-1]
    func = next((m.group(1) for text in reversed(src[:line]) if (m := re.match(r"\s*def (\w+)", text))), "?")
    return f"{func}:{line}: {src[line - 1].strip()}"


def failing_example_length(log: str, machine_source: str) -> int:
    """Steps (the initialize rule included) in the falsifying example Hypothesis prints;
    invariant checks and the teardown are not steps."""
    not_steps = {"teardown", *_INVARIANT.findall(machine_source)}
    return sum(1 for name in _RULE_CALL.findall(log) if name not in not_steps)


def _wait(proc: subprocess.Popen[bytes], timeout: float, label: str, progress: Progress) -> bool:
    """Wait for `proc`, printing a heartbeat; on timeout kill its process group. True if it ended."""
    start = time.monotonic()
    while True:
        try:
            proc.wait(timeout=HEARTBEAT)
            return True
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return False
            progress(f"  {label}: still running ({elapsed / 60:.0f} min)")


def run_machine(copy: Path, machine: Machine, label: str, profile: str, timeout: float, seed: int | None,
                progress: Progress, exit_check: bool = True) -> tuple[dict[str, object] | None, str, bool]:
    """Run `machine` in `copy`; returns (summary JSON or None, log, finished)."""
    summary_path, log_path = copy / "fuzz-summary.json", copy / "fuzz.log"
    env = fuzz_env(copy_env(copy), profile, summary_path, exit="1" if exit_check else "0")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(ape_test_command(machine, seed), cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finished = _wait(proc, timeout, label, progress)
    text = log_path.read_text(errors="replace")
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return summary, text, finished


def run_one(mutation: Mutation | None, profile: str, timeout: float, seed: int | None,
            progress: Progress, keep: bool = False, source: Path = REPO, exit_check: bool = True,
            machine: str | None = None) -> Outcome:
    """Copy `source`, mutate (None = baseline), compile, fuzz with `machine` (default: the
    mutation's; the exchange machine for a baseline); never raises for a harness problem."""
    name = mutation.name if mutation else "baseline"
    chosen = MACHINES[machine or (mutation.machine if mutation else "exchange")]
    outcome = Outcome(name, mutation.description if mutation else "no mutation: the suite must pass", caught=False,
                      machine=chosen.name)
    tmp = Path(tempfile.mkdtemp(prefix=f"perpdex-seeded-{name}-{chosen.name}-"))
    try:
        copy = copy_repo(tmp / "repo", source)
        if mutation:
            apply_mutation(copy, mutation)
        progress(f"{name}: compiling in {copy}")
        outcome.vault_size = compile_copy(copy)["MarginVault"]
        progress(f"{name}: fuzzing with the {chosen.name} machine ({profile}, MarginVault {outcome.vault_size:,} B)")
        summary, log, finished = run_machine(copy, chosen, name, profile, timeout, seed, progress, exit_check)
        _read_run(outcome, summary, log, finished, chosen.path, (copy / chosen.path).read_text(), timeout)
    except (MutationError, CompileFailed, OSError, subprocess.SubprocessError, ValueError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        if keep:
            progress(f"{name}: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    progress(f"{name}: {verdict(outcome)}")
    return outcome


def _read_run(outcome: Outcome, summary: dict[str, object] | None, log: str, finished: bool,
              machine_path: str, machine_source: str, timeout: float) -> None:
    if not finished:
        outcome.timed_out = True
        outcome.seconds = timeout
        return
    if summary is None:
        outcome.error = "no summary written (the test did not run):\n" + "\n".join(log.strip().splitlines()[-15:])
        return
    outcome.examples, outcome.steps = int(summary["examples"]), int(summary["steps"])
    outcome.seconds, outcome.steps_per_second = float(summary["seconds"]), float(summary["steps_per_second"])
    failed = summary.get("failed")
    if failed:
        outcome.caught = True
        outcome.failing_example_steps = failing_example_length(log, machine_source)
        first = str(failed).strip().splitlines()[0][:120]
        site = failure_site(log, machine_source, machine_path)
        outcome.caught_by = f"{site}  ({first})" if site else first


def verdict(o: Outcome) -> str:
    if o.error:
        return f"HARNESS ERROR {o.error.splitlines()[0]}"
    if o.timed_out:
        return "not caught within the limit"
    if o.caught:
        return f"caught by the {o.machine} machine after {o.examples} examples, {o.steps} steps ({o.seconds:.0f} s): {o.caught_by}"
    return f"{o.machine} machine passed: {o.examples} examples, {o.steps} steps ({o.seconds:.0f} s)"


# ------------------------------------------------------------------ report


def outcome_table(outcomes: list[Outcome], profile: str, seed: int | None) -> Table:
    from rich.table import Table

    seed_note = f"seed {seed}" if seed is not None else "random seed"
    table = Table(title=f"Seeded bugs vs the state machines [{profile}, {seed_note}]", show_lines=True)
    for col, justify in (("bug", "left"), ("machine", "left"), ("caught?", "center"), ("steps to catch", "right"),
                         ("failing example", "right"), ("examples", "right"), ("seconds", "right"),
                         ("what caught it", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for o in outcomes:
        if o.error:
            status = "[red]harness error[/]"
        elif o.timed_out:
            status = "[red]not within limit[/]"
        elif o.name == "baseline":
            status = "[green]passed[/]" if not o.caught else "[red]FAILED[/]"
        else:
            status = "[green]yes[/]" if o.caught else "[red]NO[/]"
        table.add_row(
            f"{o.name}\n[dim]{o.description}[/]", o.machine, status, f"{o.steps:,}" if o.steps else "-",
            str(o.failing_example_steps) if o.caught else "-", str(o.examples or "-"), f"{o.seconds:.0f}",
            o.error.splitlines()[0] if o.error else (o.caught_by or "-"),
        )
    return table


Run = tuple[Mutation | None, str]  # a mutation (None: the baseline) and the machine to run it with


def runs_for(mutations: list[Mutation], baseline: bool, machines: list[str] | None = None) -> list[Run]:
    """The runs of `mutations`, each with its own machine, after (`baseline`) one baseline per
    machine they name (`machines`: these, when there are no mutations)."""
    wanted = list(dict.fromkeys(m.machine for m in mutations)) or list(machines or MACHINES)
    return ([(None, name) for name in wanted] if baseline else []) + [(m, m.machine) for m in mutations]


def run_all(runs: list[Run], profile: str, timeout: float, seed: int | None, jobs: int,
            progress: Progress, keep: bool = False, exit_check: bool = True) -> list[Outcome]:
    """Do each run (the baselines first: if one fails nothing else runs) on copies of one
    snapshot of the repository taken now, so that edits made to the working tree while the
    runs go on (the machines, the model) do not change the harness between two runs."""
    with tempfile.TemporaryDirectory(prefix="perpdex-seeded-snapshot-") as tmp:
        snapshot = copy_repo(Path(tmp) / "repo")
        return _run_all(runs, profile, timeout, seed, jobs, progress, keep, snapshot, exit_check)


def _run_all(runs: list[Run], profile: str, timeout: float, seed: int | None, jobs: int,
             progress: Progress, keep: bool, source: Path, exit_check: bool = True) -> list[Outcome]:
    total = len(runs)
    lock = threading.Lock()

    def say(msg: str) -> None:
        with lock:
            progress(msg)

    def one(indexed: tuple[int, Run]) -> Outcome:
        i, (m, machine) = indexed
        say(f"[{i}/{total}] {m.name if m else 'baseline'} ({machine} machine): start")
        return run_one(m, profile, timeout, seed, say, keep, source, exit_check, machine)

    indexed = list(enumerate(runs, 1))
    baselines = [item for item in indexed if item[1][0] is None]
    outcomes = [one(item) for item in baselines]  # first: if one fails, catches mean nothing
    if not all(o.ok for o in outcomes):
        say("a baseline did not pass: the harness fails on its own, so the mutations were not run")
        return outcomes
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return outcomes + list(pool.map(one, [item for item in indexed if item[1][0] is not None]))


def main(argv: list[str] | None = None) -> int:
    import click

    @click.command(help=__doc__.split("\n\n")[0])
    @click.option("--only", "only", multiple=True, help="Run just this mutation (repeatable)")
    @click.option("--machine", "machines", multiple=True, type=click.Choice(sorted(MACHINES)),
                  help="Run just the mutations this machine should catch (repeatable)")
    @click.option("--baseline", is_flag=True, help="Also run the unmutated copy through each machine (must pass)")
    @click.option("--baseline-only", is_flag=True, help="Run only the unmutated copy (through --machine, or all)")
    @click.option("--profile", default="seeded", show_default=True, help="PERPDEX_FUZZ_PROFILE for each run")
    @click.option("--jobs", default=1, show_default=True, help="Runs in parallel (the machine is shared: keep 1)")
    @click.option("--timeout-minutes", default=20.0, show_default=True, help="Cap per run")
    @click.option("--seed", default=0, show_default=True, help="--hypothesis-seed for every run (reproducible)")
    @click.option("--random", "random_seed", is_flag=True, help="Let Hypothesis pick the seed")
    @click.option("--exit-check/--no-exit-check", default=True, show_default=True,
                  help="Turn the exchange machine's everyone-exits rule (SPEC 11.11) off (PERPDEX_FUZZ_EXIT=0)")
    @click.option("--keep", is_flag=True, help="Keep the temporary copies (with fuzz.log) for inspection")
    @click.option("--list", "list_only", is_flag=True, help="List the mutations and exit")
    def command(only: tuple[str, ...], machines: tuple[str, ...], baseline: bool, baseline_only: bool, profile: str,
                jobs: int, timeout_minutes: float, seed: int, random_seed: bool, exit_check: bool, keep: bool,
                list_only: bool) -> None:
        from perpdex.display import console

        if list_only:
            for m in MUTATIONS:
                console.print(f"[bold]{m.name}[/] ({m.file}, the {m.machine} machine): {m.description}")
            return
        named = [mutation_named(n) for n in only] if only else list(MUTATIONS)
        chosen = [] if baseline_only else [m for m in named if not machines or m.machine in machines]
        runs = runs_for(chosen, baseline or baseline_only, list(machines))
        chosen_seed = None if random_seed else seed
        start = time.monotonic()
        outcomes = run_all(runs, profile, timeout_minutes * 60, chosen_seed, jobs,
                           lambda msg: console.print(msg, markup=False, highlight=False), keep, exit_check)
        console.print(outcome_table(outcomes, profile if exit_check else f"{profile}, exit check off", chosen_seed))
        bad = [o.name for o in outcomes if not o.ok]
        console.print(f"{len(outcomes)} runs in {time.monotonic() - start:.0f} s (wall clock, shared machine); "
                      + (f"[red]not as expected: {', '.join(bad)}[/]" if bad else "[green]all as expected[/]"))
        sys.exit(1 if bad else 0)

    try:
        command.main(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
