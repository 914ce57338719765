"""Benchmarks that run other processes: the liquidator bot clearing a crash on Anvil, and the
fuzz suite's steps per second. `perpdex bench` prints them with the gas and flatness tables."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from perpdex.deploy import ROOT
from perpdex.fuzz_runs import MACHINES, ape_test_command, fuzz_env, read_json
from perpdex.model import WAD
from perpdex.sdk import Exchange

BOOK_OWNERS = range(4, 12)  # 8 owners (Ape derives 12 test accounts; Anvil funds them)
BOOK_COLLATERAL_USD = 300  # per account: 1 ETH long at 3,000 (10x); liquidatable below ~2,781
BOOK_CRASH_PRICE = 2_770 * WAD  # partial liquidation for every account (full only below ~2,740)
BOT_ACCOUNT = 2
CLEARED = re.compile(r"cleared (\d+) account\(s\) in ([\d.]+)s \(([\d.]+) accounts/s\)")


def underwater_book(x: Exchange, per_owner: int, first_sub: int = 0) -> list[tuple[str, int]]:
    """`per_owner` sub-accounts for each of 8 owners, each 1 ETH long with 300 USD (requests
    to the router, filled at one round): every one of them is partially liquidatable once ETH
    is at BOOK_CRASH_PRICE."""
    from ape import accounts

    made, requests = [], []
    for i in BOOK_OWNERS:
        owner = accounts.test_accounts[i]
        x.fund(owner, x.tokens(BOOK_COLLATERAL_USD * per_owner) + per_owner * x.reward_tokens)
        for sub in range(first_sub, first_sub + per_owner):
            x.deposit(owner, x.tokens(BOOK_COLLATERAL_USD), sub=sub, mint=False)
            requests.append(x.order_id(x.trade(owner, 0, WAD, sub=sub, settle=False)))
            made.append((owner.address, sub))
    # every request fills at the next round (the price unchanged), as a feeder would settle them
    x.next_round()
    for start in range(0, len(requests), 100):
        receipt = x.settle(requests[start:start + 100])
        if len(x.events(receipt, "OrderSettled")) != len(requests[start:start + 100]):
            raise RuntimeError(f"the book's trades did not all fill: {x.events(receipt, 'OrderCancelled')}")
    return made


@dataclass(frozen=True)
class BotRate:
    accounts: int
    seconds: float  # from the first pass that saw them liquidatable to the pass that saw none
    per_second: float
    transactions: int
    status: str  # the bot's last status line


def liquidator_rate(per_owner: int = 25, workdir: Path | None = None) -> BotRate:
    """Start Anvil, put 8 x `per_owner` accounts under water with one price update, and time
    `perpdex keeper liquidator` (a separate process) clearing them."""
    from ape import accounts, chain

    from perpdex.chain import DEVNET, connect
    from perpdex.deploy import deploy_system
    from perpdex.devnet import write_deployment
    from perpdex.processes import Devnet, liquidator_process

    with tempfile.TemporaryDirectory() as scratch:
        work = workdir or Path(scratch)
        node = Devnet(work)
        try:
            with connect(DEVNET, host=node.url, manage_process=False):
                x = Exchange(deploy_system(accounts.test_accounts[0]))
                x.add_liquidity(accounts.test_accounts[1], x.tokens(2_000_000))
                deployment = write_deployment(x.d.to_json(chain.chain_id, chain.blocks.head.number), work / "devnet.json")
                made = underwater_book(x, per_owner)
                bot = liquidator_process(node.url, deployment, work / "bot.db", BOT_ACCOUNT)
                try:
                    bot.wait_for(f"tracked {len(made)} | open {len(made)}", timeout=120)
                    x.set_price(0, BOOK_CRASH_PRICE)
                    bot.wait_for(f"cleared {len(made)} account(s)", timeout=180)
                finally:
                    output = bot.stop()
                sent = int(chain.provider.get_nonce(accounts.test_accounts[BOT_ACCOUNT].address))
        finally:
            node.stop()
    count, seconds, rate = CLEARED.findall(output)[-1]
    status = [line for line in output.splitlines() if "| liquidated" in line][-1]
    return BotRate(int(count), float(seconds), float(rate), sent, status.split("] ", 1)[-1])


@dataclass(frozen=True)
class FuzzRate:
    profile: str
    examples: int
    steps: int
    seconds: float
    per_second: float
    failed: str | None
    backend: str = "revm"


def fuzz_rate(profile: str = "quick", backend: str = "revm", timeout: float = 1_800, profile_to: Path | None = None) -> FuzzRate:
    """Run the exchange state machine's test (tests/fuzz/test_exchange_machine.py) with
    `profile` on `backend` (revm | ape) in a child `ape test` and read the summary it writes.
    With `profile_to`, the child runs under cProfile and writes its stats there (`fuzz_split`)."""
    with tempfile.TemporaryDirectory() as scratch:
        summary = Path(scratch) / "summary.json"
        started = time.monotonic()
        done = subprocess.run(ape_test_command(MACHINES["exchange"]), cwd=ROOT,
                              env=fuzz_env(os.environ, profile, summary, backend=backend, cprofile=profile_to),
                              capture_output=True, text=True, timeout=timeout)
        s = read_json(summary)
        if s is None:
            raise RuntimeError(f"the fuzz run wrote no summary (exit {done.returncode}, "
                               f"{time.monotonic() - started:.0f}s):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return FuzzRate(profile, int(s["examples"]), int(s["steps"]), float(s["seconds"]), float(s["steps_per_second"]),
                    s.get("failed"), backend)


# Where a fuzz step's time goes: each profiled function's own time, by what it belongs to
# (the first part whose pattern is in its file name or, for built-ins, its name).
SPLIT_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("EVM (revm)", ("pyrevm", "'EVM'", "builtins.EVM")),
    ("ABI encoding", ("abi_static", "eth_abi", "eth_utils", "hexbytes", "eth_hash", "cytoolz", "keccak")),
    ("model", ("perpdex/model.py", "copy.py", "dataclasses.py")),
    ("Hypothesis", ("hypothesis",)),
    ("machine, checks, glue", ("tests/fuzz", "perpdex/")),
)


def fuzz_split(stats_file: Path) -> dict[str, float]:
    """Shares (0-1) of a profiled fuzz run's own time by SPLIT_PARTS, and `other`."""
    import pstats

    stats = pstats.Stats(str(stats_file)).stats  # type: ignore[attr-defined]
    shares: dict[str, float] = {name: 0.0 for name, _ in SPLIT_PARTS}
    shares["other"] = 0.0
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in stats.items():
        where = f"{filename} {function}"
        part = next((name for name, patterns in SPLIT_PARTS if any(p in where for p in patterns)), "other")
        shares[part] += own
    total = sum(shares.values()) or 1.0
    return {name: seconds / total for name, seconds in shares.items()}
