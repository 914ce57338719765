"""What every keeper bot shares: the run loop with RPC backoff, the pending nonce, and its
log lines (text for people, or one JSON object per line with `--log-format json`)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable

Report = Callable[[str], None]
LOG_FORMATS = ("text", "json")


class Line(str):
    """One action a keeper reports: the text a person reads (a `Line` *is* that str, so every
    `Report` that takes a str, such as print, Silverback's logger or a test's list, gets it
    unchanged) with the action's name and fields (human units: USD, gwei, seconds), which
    `--log-format json` writes."""

    action: str
    fields: dict[str, Any]

    def __new__(cls, text: str, action: str, **fields: Any) -> "Line":
        line = super().__new__(cls, text)
        line.action, line.fields = action, fields
        return line


def log_record(keeper: str, line: str, now: float | None = None) -> dict[str, Any]:
    """The JSON object of one log line: timestamp (UTC, ISO 8601), keeper, action, fields and
    the text. A plain str (not a `Line`) is action "message" with no fields."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    action, fields = (line.action, line.fields) if isinstance(line, Line) else ("message", {})
    return {"timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "keeper": keeper,
            "action": action, "fields": fields, "message": str(line)}


def json_report(keeper: str, write: Callable[[str], None]) -> Report:
    """A `Report` that writes each line as one compact JSON object (`log_record`) to `write`."""
    return lambda line: write(json.dumps(log_record(keeper, line), separators=(",", ":"), default=str))


def run_loop(
    step: Callable[[], Any], interval: float, report: Report, iterations: int | None = None, max_backoff: float = 60.0
) -> None:
    """Call `step` every `interval` seconds. An exception (a flaky or dead RPC, a node being
    restarted) is reported and retried with exponential backoff up to `max_backoff`."""
    backoff, done = interval, 0
    while iterations is None or done < iterations:
        try:
            step()
            backoff = interval
        except Exception as exc:  # noqa: BLE001 - a keeper must outlive a flaky RPC
            message = str(exc)[:200]
            report(Line(f"error: {type(exc).__name__}: {message}; retrying in {backoff:.1f}s", "error",
                        error=type(exc).__name__, message=message, retry_in_s=round(backoff, 3)))
            backoff = min(max(backoff, 0.1) * 2, max_backoff)
        done += 1
        if iterations is None or done < iterations:
            time.sleep(backoff)


def pending_nonce(account: Any) -> int:
    """The next nonce counting pending transactions (so a restart never reuses one)."""
    from ape import chain

    try:
        return int(chain.provider.get_nonce(account.address, block_id="pending"))
    except Exception:  # noqa: BLE001 - providers without a pending tag (boa)
        return int(account.nonce)


class PassKeeper:
    """What a keeper whose `step()` is one pass shares: `run` repeats it (`run_loop`), and
    `print_status` reports its `status_line()` when it changed. The class that uses it has
    `report` and `_status` (the last status line reported)."""

    report: Report
    _status: str

    def step(self) -> Any:
        raise NotImplementedError

    def status_line(self) -> Line:
        raise NotImplementedError

    def print_status(self) -> None:
        line = self.status_line()
        if line != self._status:
            self.report(line)
            self._status = line

    def run(self, interval: float, iterations: int | None = None, max_backoff: float = 30.0) -> None:
        run_loop(self.step, interval, self.report, iterations, max_backoff)
