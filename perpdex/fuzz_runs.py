"""The fuzz suite's state machines run as child `ape test` processes: which machines there are,
the command line and environment of one run, and reading the JSON a run writes. Shared by
`perpdex fuzz` (perpdex/fuzz_campaign.py), `perpdex bench fuzz` (perpdex/bench_live.py) and
the seeded-bug runner (tests/fuzz/seeded_bugs.py).

The environment variables a machine reads (tests/fuzz/run_summary.py and
tests/fuzz/campaign_profiles.py implement them):

    PERPDEX_FUZZ_PROFILE   settings profile (quick, ci, long, seeded, anvil; campaign-*)
    PERPDEX_FUZZ_SUMMARY   FILE: the run's figures as JSON when it ends
    PERPDEX_FUZZ_PROGRESS  FILE: the same figures, rewritten every few seconds while it runs
    PERPDEX_FUZZ_DB        DIR: the campaign profiles' Hypothesis example database
    PERPDEX_FUZZ_SEED      N: the campaign profiles' seed (not --hypothesis-seed: that turns the database off)
    PERPDEX_FUZZ_BACKEND   the EVM backend, passed through untouched (the machines' default when unset)
    PERPDEX_FUZZ_WORKER    a campaign worker's index (read only by the test-only dummy machine)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

PROFILE_ENV = "PERPDEX_FUZZ_PROFILE"
SUMMARY_ENV = "PERPDEX_FUZZ_SUMMARY"
PROGRESS_ENV = "PERPDEX_FUZZ_PROGRESS"
DB_ENV = "PERPDEX_FUZZ_DB"
SEED_ENV = "PERPDEX_FUZZ_SEED"
BACKEND_ENV = "PERPDEX_FUZZ_BACKEND"
WORKER_ENV = "PERPDEX_FUZZ_WORKER"
CPROFILE_ENV = "PERPDEX_FUZZ_CPROFILE"  # the machine run under cProfile, its stats to this file


@dataclass(frozen=True)
class Machine:
    """A state machine: its test file and test function (the module's other tests are not the
    state machine)."""

    name: str
    path: str
    test: str

    @property
    def node(self) -> str:
        return f"{self.path}::{self.test}"


MACHINES: dict[str, Machine] = {
    m.name: m for m in (
        Machine("exchange", "tests/fuzz/test_exchange_machine.py", "test_exchange_state_machine"),
        Machine("router", "tests/fuzz/test_router_machine.py", "test_router_state_machine"),
    )
}


def ape_test_command(machine: Machine, seed: int | None = None) -> list[str]:
    """`ape test` of the machine's test alone (this interpreter's ape), with Hypothesis' seed
    when given (it only counts for profiles that are not derandomized)."""
    cmd = [str(Path(sys.executable).with_name("ape")), "test", machine.node, "-q", "-p", "no:cacheprovider"]
    if seed is not None:
        cmd.append(f"--hypothesis-seed={seed}")
    return cmd


def fuzz_env(base: Mapping[str, str], profile: str, summary: Path | None = None,
             **variables: str | Path | None) -> dict[str, str]:
    """`base` with the profile, the summary file and any other PERPDEX_FUZZ_* `variables`
    (keyword NAME for PERPDEX_FUZZ_NAME; None leaves it as `base` has it)."""
    env = dict(base)
    env[PROFILE_ENV] = profile
    if summary is not None:
        env[SUMMARY_ENV] = str(summary)
    for name, value in variables.items():
        if value is not None:
            env[f"PERPDEX_FUZZ_{name.upper()}"] = str(value)
    return env


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing or not (yet) whole."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stop_group(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """End a child started with start_new_session=True and everything it started: SIGTERM to
    its process group, SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
