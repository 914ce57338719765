"""What every state machine's run reports, the same way for all of them: its examples, steps,
seconds and first failure, written as JSON to PERPDEX_FUZZ_SUMMARY when that is set (the
seeded-bug runner, tests/fuzz/seeded_bugs.py, reads it to count the steps to a catch).

The machines' `run_state_machine_as_test(lambda: ...)` lines must keep their text and
indentation: Hypothesis seeds a derandomized profile (quick) from the source of that lambda,
so wrapping it differently would change which examples the quick profile runs. Hence a
context manager (around the call, at the same indentation) and a test decorator."""

from __future__ import annotations

import functools
import json
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

SUMMARY_ENV = "PERPDEX_FUZZ_SUMMARY"


@contextmanager
def recording(summary: dict[str, Any], after: Callable[[], None] | None = None) -> Iterator[None]:
    """Add the block's time to summary["seconds"]; a failure is recorded in summary["failed"]
    (its type and the start of its message) and raised again; `after` runs in any case."""
    start = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        summary["failed"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        raise
    finally:
        summary["seconds"] += time.perf_counter() - start
        if after is not None:
            after()


def recorded(summary: dict[str, Any], profile: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a test: it runs `recording(summary)` and then writes the summary as JSON
    (`write_json`), whether it passed or failed."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)  # pytest reads the fixtures from the wrapped signature
        def wrapper(*args: Any, **kwargs: Any) -> None:
            with recording(summary, after=lambda: write_json(summary, profile)):
                test(*args, **kwargs)

        return wrapper

    return decorate


def steps_per_second(summary: dict[str, Any]) -> float:
    return summary["steps"] / summary["seconds"] if summary["seconds"] else 0.0


def write_json(summary: dict[str, Any], profile: str, path: str | None = None) -> None:
    """Write `summary` with its profile and steps/s to `path` (default: $PERPDEX_FUZZ_SUMMARY;
    nothing when neither is set)."""
    path = path or os.environ.get(SUMMARY_ENV)
    if path:
        with open(path, "w") as out:
            json.dump({**summary, "profile": profile, "steps_per_second": steps_per_second(summary)}, out, indent=1)
