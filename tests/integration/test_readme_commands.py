"""The README's commands work as written: every command in a ```bash block of README.md is
either run here, from the repository root exactly as the README has it (its trailing comment
aside), and checked for its exit code and a line of its output, or listed in SKIPPED with the
reason. A command added to the README without a place in one of the two lists fails
`test_every_fenced_command_is_run_or_skipped`. The ones run take about 15 s in all."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# command -> (exit code, a text its output contains)
RUN: dict[str, tuple[int, str]] = {
    "./run --version": (0, "perpdex, version"),
    "./run": (0, "The perpdex commands:"),
    "./run liquidation --example": (0, "3. A keeper calls LiquidationKeeper.liquidate"),
    "./run funding --example --json": (0, '"rate_per_day"'),
    "./run order --example": (0, "take profit cancelled: router: OCO leg filled"),
    "./run show --port 9": (2, "error: no devnet at http://127.0.0.1:9: start one with `perpdex devnet`"),
    "./run demo --traders 0": (2, "Invalid value for '--traders': 0 is not in the range x>=1"),
    "./run fuzz --workers 0": (2, "perpdex fuzz: --workers must be at least 1, not 0"),
    "./run dashboard --http-port 70000": (2, "Invalid value for '--http-port': 70000 is not in the range 1<=x<=65535"),
}

_SILVERBACK = "tests/integration/test_liquidator_anvil.py, test_settlement_anvil.py and test_silverback_feeder_anvil.py run each bot against Anvil"
_CAMPAIGN = "a campaign of minutes to hours on every core; tests/fuzz/test_fuzz_campaign.py runs small campaigns"
_CI_PROFILE = "the ci profile takes about 30 minutes on Ape + boa; the quick profile is part of the default test run"
_SEEDED = "minutes per bug; tests/fuzz/test_seeded_bugs.py checks that every mutation applies and compiles"
_ORDERS = "against a devnet with a position; tests/integration/test_cli_orders_anvil.py places, lists and cancels orders"
_APE_SCRIPTS = "against a devnet (the keepers run until stopped); tests/integration/test_ape_scripts_anvil.py runs each script"
SKIPPED: dict[str, str] = {
    "./run order place --kind stop-loss --market ETH-USD --trigger 2800": _ORDERS,
    "./run order place --kind take-profit --market ETH-USD --trigger 3300 --oco-with 3": _ORDERS,
    "./run order place --kind limit --side buy --size 1.5 --market ETH-USD --trigger 2900 --expiry 1d": _ORDERS,
    "./run order list --owner 0x70997970C51812dc3A010C7d01b50e0d17dc79C8": _ORDERS,
    "./run order cancel 5": _ORDERS,
    "./run devnet --no-feeder": "starts an Anvil that outlives the command; tests/integration/test_anvil_e2e.py runs `devnet`",
    "./run devnet --seed-accounts 3": "starts an Anvil and a feeder that outlive the command; tests/integration/test_anvil_e2e.py "
                                      "runs `devnet --seed-accounts 3`",
    "./run dashboard": "serves the page until stopped, over a devnet; tests/integration/test_dashboard_anvil.py runs it against "
                       "a seeded devnet in headless Chromium",
    ".venv/bin/ape run keeper feeder --network ethereum:local:foundry --account TEST::0": _APE_SCRIPTS,
    ".venv/bin/ape run keeper settler --network ethereum:local:foundry --account TEST::2": _APE_SCRIPTS,
    ".venv/bin/ape run keeper funding --network ethereum:local:foundry --account TEST::3 --once": _APE_SCRIPTS,
    ".venv/bin/ape run keeper liquidator --network ethereum:local:foundry --account TEST::4 --log-format json": _APE_SCRIPTS,
    ".venv/bin/ape run deploy --network ethereum:local:foundry --account TEST::0": _APE_SCRIPTS,
    "./run demo": "the full 50-trader, 200-block demo takes about 25 s; tests/integration/test_cli.py runs it at 10 traders "
                  "and 30 blocks and tests/integration/test_sim.py runs it twice to compare the summaries",
    "./run test": "the whole test suite, this test included",
    "PERPDEX_FUZZ_PROFILE=ci ./run test tests/fuzz/test_exchange_machine.py -s": _CI_PROFILE,
    "PERPDEX_FUZZ_PROFILE=ci PERPDEX_FUZZ_BACKEND=ape ./run test tests/fuzz/test_exchange_machine.py -s": _CI_PROFILE,
    "./run fuzz --machine router --profile ci --workers 2": _CAMPAIGN,
    "./run fuzz --profile long --seed 42 --max-minutes 60 --db /mnt/shared/perpdex-fuzz-db": _CAMPAIGN,
    ".venv/bin/python tests/fuzz/seeded_bugs.py --baseline": _SEEDED,
    ".venv/bin/python tests/fuzz/seeded_bugs.py --machine router": _SEEDED,
    ".venv/bin/python tests/fuzz/seeded_bugs.py --only fee_not_charged": _SEEDED,
    "PERPDEX_DEPLOYMENT=.perpdex/devnet.json PERPDEX_DB=.perpdex/liquidator.db APE_FOUNDRY_HOST=http://127.0.0.1:8545 "
    ".venv/bin/silverback run perpdex.keepers.silverback_bot:bot --network ethereum:local:foundry --account TEST::2":
        "runs until stopped, against a devnet; " + _SILVERBACK,
    "PERPDEX_DEPLOYMENT=.perpdex/devnet.json PERPDEX_DB=.perpdex/settler.db APE_FOUNDRY_HOST=http://127.0.0.1:8545 "
    ".venv/bin/silverback run perpdex.keepers.silverback_settler:bot --network ethereum:local:foundry --account TEST::2":
        "runs until stopped, against a devnet; " + _SILVERBACK,
    "PERPDEX_DEPLOYMENT=.perpdex/devnet.json PERPDEX_DB=.perpdex/feeder-settler.db PERPDEX_FEEDER_INTERVAL=2 "
    "APE_FOUNDRY_HOST=http://127.0.0.1:8545 .venv/bin/silverback run perpdex.keepers.silverback_feeder:bot "
    "--network ethereum:local:foundry --account TEST::0":
        "runs until stopped, on a devnet with a block time; " + _SILVERBACK,
}

_FENCE = re.compile(r"^```(?:bash|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_COMMENT = re.compile(r"\s+#.*$")


def fenced_commands(markdown: str) -> list[str]:
    """The commands of every ```bash / ```sh block: continuation lines (ending in a
    backslash) joined, trailing comments and blank or comment-only lines dropped."""
    commands = []
    for block in _FENCE.findall(markdown):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            command = _COMMENT.sub("", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_fenced_commands__joins_continuations_and_drops_comments():
    text = "x\n```bash\n./run a   # why\n# only a comment\nA=1 \\\n  ./run b\n```\n```\nnot bash\n```\n"
    assert fenced_commands(text) == ["./run a", "A=1 ./run b"]


def test_every_fenced_command_is_run_or_skipped():
    found = fenced_commands(README.read_text())
    assert not set(RUN) & set(SKIPPED)
    assert sorted(set(found)) == sorted(set(RUN) | set(SKIPPED)), (
        f"in the README but in neither list: {sorted(set(found) - set(RUN) - set(SKIPPED))}; "
        f"listed but not in the README: {sorted((set(RUN) | set(SKIPPED)) - set(found))}")
    assert all(reason.strip() for reason in SKIPPED.values())


@pytest.mark.parametrize(("command", "expected"), RUN.items(), ids=list(RUN))
def test_readme_command_runs_as_written(command, expected):
    code, text = expected
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert text in output, output
    if code == 2:  # a user error: one line, never a traceback
        assert "Traceback" not in output and len([line for line in done.stderr.splitlines() if line.strip()]) <= 3, output


_PYTHON = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_readme_python_example_runs_as_written(chain, capsys):
    """The README's Python block, executed as written on the embedded chain: markets by name,
    a float size in base units, a deposit in USD; it really traded (fees paid, closed again)."""
    [block] = _PYTHON.findall(README.read_text())
    snapshot = chain.snapshot()
    try:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
        x, alice = namespace["x"], namespace["alice"]
        assert x.position(alice, 0, "ETH-USD").size == 0  # bought 1 ETH, then closed
        assert 9_990 * 10**18 < x.vault.collateral(alice, 0) < 10_000 * 10**18  # fees paid on both fills
        assert "Position(size=1000000000000000000" in capsys.readouterr().out
    finally:
        chain.restore(snapshot)
