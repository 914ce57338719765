"""User errors on the command line: one line saying what is wrong and how to fix it, exit code
2, no traceback; `perpdex --debug` shows the traceback instead (issue: a devnet a user can
drive)."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from perpdex.cli import main
from perpdex.errors import UserError, explain


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    return lines[-1]


@pytest.mark.parametrize("command", [["show"], ["funding"], ["liquidation", "--owner", "0x" + "11" * 20], ["orders"],
                                     ["governance", "pending"], ["governance", "execute", "0x" + "11" * 32]])
def test_no_devnet__one_line_that_says_how_to_start_one(command):
    port = free_port()
    line = one_line_error(run(*command, "--port", str(port)))
    assert line == f"error: no devnet at http://127.0.0.1:{port}: start one with `perpdex devnet` (or give the right --port)"


def test_debug__shows_the_traceback_instead():
    result = run("--debug", "show", "--port", str(free_port()))
    assert result.exit_code == 1 and type(result.exception).__name__ == "FoundryProviderError"


@pytest.mark.parametrize(("args", "says"), [
    (["deploy", "--network", "ethereum:local:nonsense"], "error: No provider named 'nonsense' in network 'local'"),
    (["deploy", "--network", "nope:local:boa"], "error: No ecosystem named 'nope'"),
    (["demo", "--network", "ethereum:local:test"], "Invalid value for '--network'"),
    (["show", "--owner", "0xabc"], "'0xabc' is not an address"),
    (["show", "--sub", "-1"], "Invalid value for '--sub': -1 is not in the range"),
    (["show", "--port", "0"], "Invalid value for '--port'"),
    (["demo", "--traders", "-5"], "Invalid value for '--traders': -5 is not in the range x>=1"),
    (["demo", "--blocks", "0"], "Invalid value for '--blocks': 0 is not in the range x>=1"),
    (["stress", "--scenario", "gbm", "--traders", "0"], "Invalid value for '--traders'"),
    (["trade", "--market", "ETH-USD", "--size", "0"], "--size must not be 0"),
    (["deposit", "0"], "must be more than 0"),
    (["deposit", "-5"], "No such option: -5"),
])
def test_bad_input__one_line_exit_2_before_anything_runs(args, says):
    assert says in one_line_error(run(*args))


def test_explain__stale_price_says_start_the_feeder():
    error = explain(RuntimeError("oracle: stale price"))
    assert isinstance(error, UserError) and error.exit_code == 2
    assert error.message.startswith("oracle: stale price: the oracle's last price is older than its max_price_age")
    assert "perpdex keeper feeder" in error.message


def test_explain__a_bug_keeps_its_traceback():
    assert explain(ZeroDivisionError("division by zero")) is None
    assert explain(KeyError("x")) is None


def test_explain__missing_deployment_file_is_a_user_error():
    error = explain(FileNotFoundError(".perpdex/devnet.json not found: run `perpdex devnet` (or `perpdex deploy`) first"))
    assert error is not None and "run `perpdex devnet`" in error.message


def test_run_without_a_command__prints_help_not_a_demo():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(["bash", str(root / "run")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "./run demo" in done.stdout and "Usage: perpdex" in done.stdout and "faucet" in done.stdout


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("perpdex, version ")
