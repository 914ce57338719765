"""What every state machine's run reports, the same way for all of them: its examples, steps,
seconds and first failure, written as JSON to PERPDEX_FUZZ_SUMMARY when that is set (the
seeded-bug runner, tests/fuzz/seeded_bugs.py, reads it to count the steps to a catch).

The machines' `run_state_machine_as_test(lambda: ...)` lines must keep their text and
indentation: Hypothesis seeds a derandomized profile (quick) from the source of that lambda,
so wrapping it differently would change which examples the quick profile runs. Hence a
context manager (around the call, at the same indentation) and a test decorator.

With PERPDEX_FUZZ_PROGRESS=FILE the same context manager also rewrites FILE every
PROGRESS_SECONDS while the machine runs (the summary so far, its seconds so far, `running`,
and `all_rules`: every rule of the machine), and once more when it ends: `perpdex fuzz`
(perpdex/fuzz_campaign.py) reads it from each worker for its live line and its merged summary,
and still has a worker's last figures when it stops the worker before its summary is written."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from hypothesis.stateful import RuleBasedStateMachine

from perpdex.fuzz_runs import CPROFILE_ENV, PROGRESS_ENV, SUMMARY_ENV

PROGRESS_SECONDS = 2.0


@contextmanager
def recording(summary: dict[str, Any], after: Callable[[], None] | None = None) -> Iterator[None]:
    """Add the block's time to summary["seconds"]; a failure is recorded in summary["failed"]
    (its type and the start of its message) and raised again; `after` runs in any case."""
    start = time.perf_counter()
    path = os.environ.get(PROGRESS_ENV)
    progress = ProgressWriter(Path(path), summary, start) if path else None
    try:
        yield
    except BaseException as exc:
        summary["failed"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        raise
    finally:
        summary["seconds"] += time.perf_counter() - start
        if after is not None:
            after()
        if progress is not None:
            progress.stop()


@contextmanager
def profiled() -> Iterator[None]:
    """With PERPDEX_FUZZ_CPROFILE=FILE, the block runs under cProfile and its stats go to FILE
    (`perpdex bench fuzz` reads where a step's time goes from them: the machine alone, not the
    test process's start-up)."""
    path = os.environ.get(CPROFILE_ENV)
    if not path:
        yield
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)


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


def machine_rules() -> list[str]:
    """The rules of every state machine class this process defined (a fuzz run imports one
    machine's module): the rules a campaign can report as never hit."""
    classes, todo = [], [RuleBasedStateMachine]
    while todo:
        subclasses = todo.pop().__subclasses__()
        todo += subclasses
        classes += [c for c in subclasses if not c.__module__.startswith("hypothesis")]
    return sorted({r.function.__name__ for c in classes for r in c.setup_state().rules})


class ProgressWriter:
    """Rewrites `path` with the summary so far every PROGRESS_SECONDS from a daemon thread (the
    machine's own steps are not slowed by it), and once more on `stop`. The file is replaced
    whole (written beside it, then renamed), so a reader never sees half of it."""

    def __init__(self, path: Path, summary: dict[str, Any], start: float, every: float = PROGRESS_SECONDS) -> None:
        self.path, self.summary, self.start, self.every = path, summary, start, every
        self.rules = machine_rules()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fuzz-progress", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.every):
            self.write(running=True)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self.write(running=False)  # summary["seconds"] is the whole run's by now

    def write(self, running: bool) -> None:
        elapsed = time.perf_counter() - self.start if running else 0.0
        try:  # the machine's thread may add a key meanwhile: then this tick is skipped
            text = json.dumps({**self.summary, "seconds": self.summary["seconds"] + elapsed, "running": running,
                               "all_rules": self.rules})
        except RuntimeError:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)
