"""What every keeper bot shares: the run loop with RPC backoff and the pending nonce."""

from __future__ import annotations

import time
from typing import Any, Callable

Report = Callable[[str], None]


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
            report(f"error: {type(exc).__name__}: {str(exc)[:200]}; retrying in {backoff:.1f}s")
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
