"""`perpdex fuzz`: a fuzzing campaign of one state machine over several processes.

N workers, each a child `ape test` of the machine's test (perpdex.fuzz_runs) under the
profile's campaign variant (`campaign-<profile>`, tests/fuzz/campaign_profiles.py: not
derandomized, the example database from PERPDEX_FUZZ_DB), each seeded with its own
PERPDEX_FUZZ_SEED derived from the campaign's seed, all sharing one Hypothesis example
database directory. Each worker rewrites a progress file every few seconds
(PERPDEX_FUZZ_PROGRESS, tests/fuzz/run_summary.py); the campaign merges them into a live line
and, at the end, one summary. The first worker that fails (its test fails, or its command does)
stops all the others (their process groups), and the campaign prints its seed, the command that
replays it and Hypothesis' report of the failing case.

Exit status (`run_campaign`): 0 no failure, 1 a failure, 130 interrupted (Ctrl-C / SIGTERM);
the CLI exits 2 on bad usage (UsageError).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, TextIO

from perpdex.deploy import ROOT
from perpdex.fuzz_runs import BACKEND_ENV, MACHINES, Machine, ape_test_command, fuzz_env, read_json, stop_group

PROFILES = ("smoke", "quick", "ci", "long")  # each run as campaign-<name>
BACKENDS = ("revm", "ape")
DEFAULT_DB = ROOT / ".perpdex" / "fuzz-db"
RUNS_DIR = ROOT / ".perpdex" / "fuzz-runs"
POLL_SECONDS = 1.0
LINE_SECONDS = 10.0  # between two progress lines when the output is not a terminal
INTERRUPTED = 130


class UsageError(ValueError):
    """A bad option: the CLI prints it on one line and exits 2."""


@dataclass(frozen=True)
class Campaign:
    machine: Machine
    profile: str  # one of PROFILES; the workers run campaign-<profile>
    workers: int
    seed: int
    db: Path
    backend: str | None = None  # None: PERPDEX_FUZZ_BACKEND as the caller's environment has it
    max_minutes: float | None = None
    root: Path = ROOT  # where the workers run: the project with tests/ and contracts/
    runs_dir: Path = RUNS_DIR  # each campaign's logs and progress files go in a new directory here

    @property
    def child_profile(self) -> str:
        return f"campaign-{self.profile}"


def campaign_from_options(machine: str, profile: str, workers: int | None, seed: int | None, db: str | None,
                          backend: str | None, max_minutes: float | None, logs: str | None = None) -> Campaign:
    """The CLI's options checked (UsageError, one line, on the first bad one), defaults filled
    in: one worker per core, a random seed, DEFAULT_DB, RUNS_DIR."""
    if machine not in MACHINES:
        raise UsageError(f"--machine must be one of {', '.join(MACHINES)}, not {machine!r}")
    if profile not in PROFILES:
        raise UsageError(f"--profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    if seed is not None and seed < 0:
        raise UsageError(f"--seed must be 0 or more, not {seed}")
    if max_minutes is not None and max_minutes <= 0:
        raise UsageError(f"--max-minutes must be more than 0, not {max_minutes:g}")
    path, runs = (Path(db).resolve() if db else DEFAULT_DB), (Path(logs).resolve() if logs else RUNS_DIR)
    for option, directory in (("--db", path), ("--logs", runs)):
        if directory.exists() and not directory.is_dir():
            raise UsageError(f"{option} {directory} is a file, not a directory")
    return Campaign(MACHINES[machine], profile, workers or os.cpu_count() or 1,
                    secrets.randbelow(2**32) if seed is None else seed, path, backend, max_minutes, runs_dir=runs)


def derive_seed(seed: int, worker: int) -> int:
    """Worker `worker`'s seed: a hash of the campaign seed and its index (campaigns with seeds
    S and S + 1 share no worker seed, as they would with S + worker)."""
    digest = hashlib.sha256(f"perpdex-fuzz:{seed}:{worker}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# ------------------------------------------------------------------ merging the workers' figures


@dataclass
class Totals:
    """The workers' figures added up: every number, every table of numbers (rules, and each
    machine's own: cancellations, refusals...), the rules known and hit."""

    workers: int = 0
    numbers: dict[str, float] = field(default_factory=dict)
    tables: dict[str, dict[str, float]] = field(default_factory=dict)
    all_rules: set[str] = field(default_factory=set)

    @property
    def steps(self) -> int:
        return int(self.numbers.get("steps", 0))

    @property
    def examples(self) -> int:
        return int(self.numbers.get("examples", 0))

    @property
    def rules(self) -> dict[str, float]:
        return self.tables.get("rules", {})

    @property
    def never_hit(self) -> list[str]:
        return sorted(self.all_rules - {r for r, n in self.rules.items() if n})


NOT_ADDED = {"seconds", "steps_per_second", "check_seconds", "running"}  # per worker, not a campaign total


def merge(figures: Iterable[dict[str, Any]]) -> Totals:
    totals = Totals()
    for fig in figures:
        totals.workers += 1
        totals.all_rules |= set(fig.get("all_rules", ()))
        for key, value in fig.items():
            if key in NOT_ADDED or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                totals.numbers[key] = totals.numbers.get(key, 0) + value
            elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
                table = totals.tables.setdefault(key, {})
                for name, n in value.items():
                    table[name] = table.get(name, 0) + n
    return totals


def rate(steps: int, seconds: float) -> float:
    return steps / seconds if seconds > 0 else 0.0


def progress_line(totals: Totals, elapsed: float, running: int, workers: int, failures: int) -> str:
    hit = len(totals.all_rules) - len(totals.never_hit) if totals.all_rules else len(totals.rules)
    known = f"/{len(totals.all_rules)}" if totals.all_rules else ""
    return (f"[{elapsed:6.0f} s] {running}/{workers} workers running | {totals.steps:,} steps "
            f"({rate(totals.steps, elapsed):.1f} steps/s) | {totals.examples:,} examples | rules hit {hit}{known} "
            f"| failures {failures}")


# ------------------------------------------------------------------ a failure's report

_FAILURE_START = re.compile(r"^(?:E\s+)?(?:Falsifying example|Failing test case)")
_E_PREFIX = re.compile(r"^E {0,3}")
_BLOB = re.compile(r"@reproduce_failure\([^)]*\)")


def failure_text(log: str) -> str:
    """Hypothesis' report of the failing case in a worker's pytest output: the error and the
    steps (pytest's `E   ` block that holds "Falsifying example" / "Failing test case"), '' if none."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if _FAILURE_START.match(line)), None)
    if start is None:
        return ""
    if not lines[start].startswith("E"):  # not in pytest's error block: up to the blob
        end = next((i for i in range(start, len(lines)) if _BLOB.search(lines[i])), start + 40)
        return "\n".join(lines[start:end + 1]).strip()
    first, last = start, start
    while first > 0 and lines[first - 1].startswith("E"):
        first -= 1
    while last + 1 < len(lines) and lines[last + 1].startswith("E"):
        last += 1
    return "\n".join(_E_PREFIX.sub("", line) for line in lines[first:last + 1]).strip()


def reproduce_blob(log: str) -> str:
    """The `@reproduce_failure(...)` decorator Hypothesis printed (print_blob), '' if none."""
    found = _BLOB.search(log)
    return found.group(0) if found else ""


def replay_command(campaign: Campaign, seed: int) -> str:
    """The command, run from the repository root, that replays worker seed `seed`: the shared
    database holds the failing case (shrunk) and Hypothesis replays it first; the seed
    regenerates the worker's run where the database is not at hand."""
    env = {"PERPDEX_FUZZ_PROFILE": campaign.child_profile, "PERPDEX_FUZZ_SEED": str(seed),
           "PERPDEX_FUZZ_DB": str(campaign.db)}
    if campaign.backend:
        env[BACKEND_ENV] = campaign.backend
    words = [f"{k}={shlex.quote(v)}" for k, v in env.items()] + ["./run", "test", campaign.machine.node, "-s"]
    return " ".join(words)


# ------------------------------------------------------------------ the workers


@dataclass
class Worker:
    index: int
    seed: int
    log: Path
    progress: Path
    summary: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # ended by the campaign (another failed, time limit, Ctrl-C)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def failed(self) -> bool:
        """It ended by itself, and not well: its test failed or its command did."""
        code = self.returncode
        return code not in (None, 0) and not self.stopped

    def figures(self) -> dict[str, Any] | None:
        """Its latest progress file, updated by its summary when it wrote one (the progress file
        alone names every rule of the machine)."""
        progress, summary = read_json(self.progress), read_json(self.summary)
        if progress is None and summary is None:
            return None
        return {**(progress or {}), **(summary or {})}


def new_worker(campaign: Campaign, workdir: Path, index: int) -> Worker:
    return Worker(index, derive_seed(campaign.seed, index), workdir / f"worker-{index}.log",
                  workdir / f"worker-{index}.progress.json", workdir / f"worker-{index}.summary.json")


def start(campaign: Campaign, w: Worker) -> None:
    """The worker's `ape test` in a new session (its own process group, which `stop_group`
    ends whole; a Ctrl-C at the terminal reaches the campaign only)."""
    env = fuzz_env(os.environ, campaign.child_profile, w.summary, progress=w.progress, db=campaign.db, seed=w.seed,
                   worker=str(w.index), backend=campaign.backend)
    with w.log.open("wb") as log:  # the child keeps its own descriptor
        w.proc = subprocess.Popen(ape_test_command(campaign.machine), cwd=campaign.root, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)


def compile_contracts(root: Path) -> str | None:
    """Compile the contracts once before the workers start (each worker would otherwise compile
    what changed, all at once, into the same .build/); the error output, or None."""
    done = subprocess.run([str(Path(sys.executable).with_name("ape")), "compile"], cwd=root, capture_output=True,
                          text=True)
    return None if done.returncode == 0 else (done.stderr or done.stdout)[-3000:]


def failure_report(campaign: Campaign, w: Worker) -> str:
    log = w.log.read_text(errors="replace") if w.log.exists() else ""
    summary = w.figures() or {}
    why = summary.get("failed") or f"its command failed (exit {w.returncode}) before the machine reported a failure"
    text = failure_text(log) or "\n".join(log.strip().splitlines()[-30:])
    lines = [f"FAILED: worker {w.index} (seed {w.seed}): {str(why).splitlines()[0]}", "",
             "replay (from the repository root):", f"  {replay_command(campaign, w.seed)}"]
    blob = reproduce_blob(log)
    if blob:
        lines += ["", f"Hypothesis' blob for this case: {blob}"]
    lines += ["", "Hypothesis' report:", *(f"  {line}" for line in text.splitlines()), "", f"full output: {w.log}"]
    return "\n".join(lines)


# ------------------------------------------------------------------ the campaign


class Printer:
    """The live line: rewritten in place on a terminal, else printed every LINE_SECONDS."""

    def __init__(self, out: TextIO, every: float = LINE_SECONDS) -> None:
        self.out, self.every, self.tty = out, every, out.isatty()
        self.last = -every
        self.line_open = False  # a live line is on the terminal, not yet ended by a newline

    def live(self, line: str, now: float) -> None:
        if self.tty:
            self.out.write(f"\r{line}\x1b[K")
            self.line_open = True
        elif now - self.last >= self.every:
            self.out.write(line + "\n")
            self.last = now
        else:
            return
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(("\n" if self.line_open else "") + text + "\n")
        self.out.flush()
        self.line_open = False


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and a SIGTERM to the campaign, stop it


def _stop_on_signals() -> dict[int, Any]:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt (importing ape made SIGINT exit at once,
    `sys.exit(130)`, past the campaign's summary); the handlers they had. Only the main
    thread may set handlers: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}


def run_campaign(campaign: Campaign, out: TextIO = sys.stdout, poll: float = POLL_SECONDS,
                 line_every: float = LINE_SECONDS) -> int:
    """Run the campaign, printing to `out`; the exit status (module docstring)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = campaign.runs_dir / f"{stamp}-{campaign.machine.name}-{campaign.seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    campaign.db.mkdir(parents=True, exist_ok=True)
    printer = Printer(out, line_every)
    backend = campaign.backend or os.environ.get(BACKEND_ENV) or "(the machines' default)"
    printer.say(f"perpdex fuzz: {campaign.machine.name} machine, profile {campaign.child_profile}, "
                f"{campaign.workers} workers, seed {campaign.seed}"
                f"{f', at most {campaign.max_minutes:g} min' if campaign.max_minutes else ''}\n"
                f"  database {campaign.db}\n  backend {backend}"
                f"\n  logs {workdir}")
    error = compile_contracts(campaign.root)
    if error:
        printer.say(f"perpdex fuzz: the contracts do not compile:\n{error}")
        return 1
    previous = _stop_on_signals()
    workers = [new_worker(campaign, workdir, i) for i in range(campaign.workers)]
    started = time.monotonic()
    ended = "every worker finished"
    try:
        for w in workers:
            start(campaign, w)
        printer.say("  worker seeds: " + ", ".join(f"{w.index}: {w.seed}" for w in workers))
        deadline = started + campaign.max_minutes * 60 if campaign.max_minutes else None
        while True:
            time.sleep(poll)
            now = time.monotonic()
            failed = [w for w in workers if w.failed]
            running = sum(w.returncode is None for w in workers)
            totals = merge(f for w in workers if (f := w.figures()))
            printer.live(progress_line(totals, now - started, running, len(workers), len(failed)), now - started)
            if failed:
                ended = f"worker {failed[0].index} failed"
                break
            if not running:
                break
            if deadline is not None and now >= deadline:
                ended = f"the time limit ({campaign.max_minutes:g} min)"
                break
    except KeyboardInterrupt:
        ended = "interrupted"
    finally:
        for w in workers:
            if w.proc is not None and w.returncode is None:
                w.stopped = True
                stop_group(w.proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return _finish(campaign, workers, workdir, time.monotonic() - started, ended, printer)


def _finish(campaign: Campaign, workers: list[Worker], workdir: Path, elapsed: float, ended: str,
            printer: Printer) -> int:
    failed = [w for w in workers if w.failed]
    totals = merge(f for w in workers if (f := w.figures()))
    printer.say(summary_text(totals, elapsed, ended, workers))
    merged = merged_json(campaign, totals, elapsed, ended, workers)
    (workdir / "summary.json").write_text(json.dumps(merged, indent=1))
    for w in failed:
        printer.say(failure_report(campaign, w))
    printer.say(f"merged summary: {workdir / 'summary.json'}")
    if failed:
        return 1
    return INTERRUPTED if ended == "interrupted" else 0


OWN_LINES = {"steps", "examples", "failed"}


def summary_text(totals: Totals, elapsed: float, ended: str, workers: list[Worker]) -> str:
    stopped = sum(w.stopped for w in workers)
    lines = [f"campaign over ({ended}; {stopped} worker(s) stopped): {len(workers)} workers, {elapsed:.0f} s",
             f"  {totals.steps:,} steps, {totals.examples:,} examples, {rate(totals.steps, elapsed):.1f} steps/s "
             f"(all workers, wall clock)"]
    if totals.all_rules:
        lines.append(f"  rules hit {len(totals.all_rules) - len(totals.never_hit)}/{len(totals.all_rules)}; "
                     f"never hit by any worker: {', '.join(totals.never_hit) or 'none'}")
    lines.append("  rules: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(totals.rules.items())))
    if "liquidations" in totals.numbers or "liquidate" in totals.rules:
        lines.append(f"  liquidations: {totals.numbers.get('liquidations', 0):,.0f}"
                     f" ({totals.rules.get('liquidate', 0):,.0f} liquidate steps)")
    others = {k: v for k, v in totals.numbers.items() if k not in OWN_LINES and k != "liquidations"}
    if others:
        lines.append("  totals: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(others.items())))
    lines.append(f"  failures: {', '.join(f'worker {w.index} (seed {w.seed})' for w in workers if w.failed) or 'none'}")
    return "\n".join(lines)


def merged_json(campaign: Campaign, totals: Totals, elapsed: float, ended: str, workers: list[Worker]) -> dict[str, Any]:
    return {
        "machine": campaign.machine.name, "profile": campaign.child_profile, "seed": campaign.seed,
        "database": str(campaign.db), "backend": campaign.backend, "ended": ended, "wall_seconds": elapsed,
        "steps": totals.steps, "examples": totals.examples, "steps_per_second": rate(totals.steps, elapsed),
        "rules": totals.rules, "all_rules": sorted(totals.all_rules), "never_hit": totals.never_hit,
        "totals": totals.numbers, "tables": totals.tables,
        "workers": [{"index": w.index, "seed": w.seed, "exit": w.returncode, "stopped": w.stopped, "failed": w.failed,
                     "log": str(w.log), "figures": w.figures()} for w in workers],
        "failures": [{"worker": w.index, "seed": w.seed, "replay": replay_command(campaign, w.seed),
                      "failed": (w.figures() or {}).get("failed")} for w in workers if w.failed],
    }
