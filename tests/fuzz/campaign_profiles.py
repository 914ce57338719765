"""The settings profiles `perpdex fuzz` runs its workers with (perpdex/fuzz_campaign.py):
`campaign-<base>` for each of a machine's quick, ci and long profiles, and `campaign-smoke`
(2 examples x 5 steps: the campaign's own end-to-end test).

They differ from their base in two ways:

- not derandomized: a derandomized profile (quick) draws the same examples from the test's
  source whatever seed it is given, so every worker would repeat the others' work; a campaign
  profile draws from the worker's seed, PERPDEX_FUZZ_SEED (`seed_from_env`), instead;
- the example database is the directory in PERPDEX_FUZZ_DB when that is set (workers and
  machines share it: a failure one of them saved is replayed first by every later run).

Why PERPDEX_FUZZ_SEED and not pytest's `--hypothesis-seed`: Hypothesis turns the example
database off for a run whose seed is forced (with `--hypothesis-seed` it gives the engine no
database key, so a failure is neither saved nor replayed: tried, the shared directory stayed
empty). `seed_from_env` seeds the generator Hypothesis draws each test's seed from when none
is forced (`hypothesis.core.threadlocal`, an internal of the pinned Hypothesis 6.170.15; it
fails loudly if that moves), so a worker is both repeatable and uses the database.

A campaign profile has its own name so that a machine's checks that belong to one whole
run of quick or ci (every rule hit, a liquidation seen) do not apply to a campaign's workers:
the campaign merges their rule counts and reports the rules no worker hit.
"""

from __future__ import annotations

import os
from random import Random
from typing import Any, Mapping

import hypothesis.core
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from perpdex.fuzz_runs import DB_ENV, SEED_ENV

BASES = ("quick", "ci", "long")
SMOKE = dict(max_examples=2, stateful_step_count=5)


def campaign_overrides() -> dict[str, Any]:
    """Random (seeded) generation, and the shared example database when PERPDEX_FUZZ_DB is set."""
    path = os.environ.get(DB_ENV)
    return {"derandomize": False, **({"database": DirectoryBasedExampleDatabase(path)} if path else {})}


def seed_from_env() -> None:
    """With PERPDEX_FUZZ_SEED=N, the tests that follow draw their seeds from Random(N), as they
    otherwise do from an unseeded Random (see the module's docstring)."""
    seed = os.environ.get(SEED_ENV)
    if seed is None:
        return
    local = hypothesis.core.threadlocal
    if not hasattr(local, "_hypothesis_global_random"):
        raise RuntimeError(f"{SEED_ENV}: this Hypothesis has no core.threadlocal._hypothesis_global_random to seed")
    local._hypothesis_global_random = Random(int(seed))


def campaign_profiles(base: Mapping[str, settings]) -> dict[str, settings]:
    """`campaign-<name>` for each of BASES in `base` (a machine's profiles by name), and
    `campaign-smoke` (quick's settings at the SMOKE size). Seeds Hypothesis from
    PERPDEX_FUZZ_SEED (`seed_from_env`): a machine module calls this once, at import."""
    seed_from_env()
    overrides = campaign_overrides()
    made = {f"campaign-{name}": settings(base[name], **overrides) for name in BASES}
    made["campaign-smoke"] = settings(base["quick"], **SMOKE, **overrides)
    return made


def register_campaign_profiles(prefix: str, suffix: str = "") -> None:
    """The same for profiles registered with Hypothesis as `<prefix><name><suffix>` (a suffix
    names a backend's sizes, e.g. `-revm`)."""
    bases = {b: settings.get_profile(f"{prefix}{b}{suffix}") for b in BASES}
    for name, profile in campaign_profiles(bases).items():
        settings.register_profile(f"{prefix}{name}{suffix}", profile)
