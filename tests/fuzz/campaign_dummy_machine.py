"""TEST-ONLY: a state machine without a chain, for the tests of `perpdex fuzz`
(tests/fuzz/test_fuzz_campaign.py), which runs it as a campaign's workers. Its file name does
not start with `test_`, so the default test run never collects it; a campaign names its test.

It reports like the real machines (run_summary: PERPDEX_FUZZ_SUMMARY, PERPDEX_FUZZ_PROGRESS)
and takes the campaign profiles (campaign_profiles: PERPDEX_FUZZ_DB). The worker whose
PERPDEX_FUZZ_WORKER equals PERPDEX_DUMMY_FAIL_WORKER (set only by those tests) fails an
invariant once it has taken 3 steps; every other worker takes 0.1 s a step through thousands
of examples, so it is still running when the failing one ends and must be stopped.

Every other worker reads the shared database but never writes it (`ReadOnlyDatabase`): its
outcome differs from the failing worker's by design, so when its reuse phase replays the
failing worker's saved case (a worker that starts its run late, e.g. under load, finds it
there), the case passes for it and Hypothesis deletes it as no longer failing. The replay of
the failing worker then found no case and searched again (62 examples instead of 2: the flaky
failure of the campaign test in tests/fuzz/test_fuzz_campaign.py, forced there by a test of
its own). A real machine's failure does not depend on the worker: every worker fails on it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.database import ReadOnlyDatabase
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from perpdex.fuzz_runs import PROFILE_ENV, WORKER_ENV

from campaign_profiles import campaign_profiles  # tests/fuzz is on sys.path
from run_summary import recorded

FAIL_WORKER_ENV = "PERPDEX_DUMMY_FAIL_WORKER"
FAILS = os.environ.get(WORKER_ENV) is not None and os.environ.get(WORKER_ENV) == os.environ.get(FAIL_WORKER_ENV)
_BASE = settings(max_examples=10_000, stateful_step_count=20, deadline=None, print_blob=True,
                 suppress_health_check=list(HealthCheck))
PROFILES = campaign_profiles({name: _BASE for name in ("quick", "ci", "long")})
PROFILE = os.environ.get(PROFILE_ENV, "campaign-smoke")
SUMMARY: dict[str, Any] = {"examples": 0, "steps": 0, "seconds": 0.0, "failed": None, "rules": {}}


def _count(name: str) -> None:
    SUMMARY["rules"][name] = SUMMARY["rules"].get(name, 0) + 1
    SUMMARY["steps"] += 1


class DummyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        SUMMARY["examples"] += 1
        self.steps = 0

    @rule(n=st.integers(0, 10))
    def step(self, n: int) -> None:
        _count("step")
        self.steps += 1
        if not FAILS:
            time.sleep(0.1)

    @precondition(lambda self: False)
    @rule()
    def never_runs(self) -> None:  # a rule no worker hits: the campaign must name it
        _count("never_runs")

    @invariant()
    def the_failing_worker_fails_after_three_steps(self) -> None:
        assert not (FAILS and self.steps >= 3), "the test-only failing worker failed, as told"


def worker_settings(profile: settings, fails: bool) -> settings:
    """The profile as the failing worker runs it; any other worker's database read-only (see
    the module's docstring)."""
    if fails or profile.database is None:
        return profile
    return settings(profile, database=ReadOnlyDatabase(profile.database))


@recorded(SUMMARY, PROFILE)
def test_dummy_machine() -> None:
    run_state_machine_as_test(DummyMachine, settings=worker_settings(PROFILES[PROFILE], FAILS))
