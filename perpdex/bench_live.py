"""Benchmarks that run other processes: the liquidator bot clearing a crash on Anvil, the order
keeper filling a book of stops through a gap, and the fuzz suite's steps per second. `perpdex bench` prints them with the gas and flatness tables."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perpdex.deploy import ROOT
from perpdex.fuzz_runs import MACHINES, ape_test_command, fuzz_env, read_json
from perpdex.model import WAD
from perpdex.sdk import Exchange

BOOK_OWNERS = range(4, 12)  # 8 owners (Ape derives 12 test accounts; Anvil funds them)
BOOK_COLLATERAL_USD = 300  # per account: 1 ETH long at 3,000 (10x); liquidatable below ~2,781
BOOK_CRASH_PRICE = 2_770 * WAD  # partial liquidation for every account (full only below ~2,740)
# The underwater book is one-sided: 200 accounts 1 ETH long are 600,000 USD of skew, 30% of a
# 2 M pool, beyond the default net rule (ETH-USD max_pool_exposure 0.1). Its deployments keep
# the rule at 50%, its default until issue 17: the keeper's throughput is measured on the
# same book as before.
BOOK_MARKETS = {"ETH-USD": {"max_pool_exposure": 0.5}}
BOT_ACCOUNT = 2
STAMP = re.compile(r"^\d\d:\d\d:\d\d ")  # a keeper's text line starts with its wall-clock time
CLEARED = re.compile(r"cleared (\d+) account\(s\) in ([\d.]+)s \(([\d.]+) accounts/s\)")


def commit_trades(x: Exchange, owner: Any, accounts: list[tuple[int, int, dict[int, int]]]) -> list[int]:
    """Fund `owner` once, then for each (sub, USD, {market: size}) deposit the USD into the
    sub-account and commit a trade request per market; returns the order ids (for `fill`)."""
    x.fund(owner, x.tokens(sum(usd for _, usd, _ in accounts)) + sum(len(t) for *_, t in accounts) * x.reward_tokens)
    orders = []
    for sub, usd, trades in accounts:
        x.deposit(owner, x.tokens(usd), sub=sub, mint=False)
        orders += [x.order_id(x.trade(owner, market, size, sub=sub, settle=False)) for market, size in trades.items()]
    return orders


def fill(x: Exchange, orders: list[int]) -> None:
    """Fill every request at the next round (the price unchanged), as a feeder would settle them."""
    x.next_round()
    for start in range(0, len(orders), 100):
        receipt = x.settle(orders[start:start + 100])
        if len(x.events(receipt, "OrderSettled")) != len(orders[start:start + 100]):
            raise RuntimeError(f"the book's trades did not all fill: {x.events(receipt, 'OrderCancelled')}")


def underwater_book(x: Exchange, per_owner: int, first_sub: int = 0) -> list[tuple[str, int]]:
    """`per_owner` sub-accounts for each of 8 owners, each 1 ETH long with 300 USD (requests
    to the router, filled at one round): every one of them is partially liquidatable once ETH
    is at BOOK_CRASH_PRICE."""
    from ape import accounts

    made, orders = [], []
    for i in BOOK_OWNERS:
        owner, subs = accounts.test_accounts[i], range(first_sub, first_sub + per_owner)
        orders += commit_trades(x, owner, [(sub, BOOK_COLLATERAL_USD, {0: WAD}) for sub in subs])
        made += [(owner.address, sub) for sub in subs]
    fill(x, orders)
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
                x = Exchange(deploy_system(accounts.test_accounts[0], markets=BOOK_MARKETS))
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
    return BotRate(int(count), float(seconds), float(rate), sent, bot_lines(output, "| liquidated")[-1])


# ---------------------------------------------------------------- the order keeper (issue 18)
# A book of sell stops at 2,900 (0.01 ETH each, opening shorts), 8 per sub-account (the
# router's MAX_CONDITIONAL), 200 USD of collateral each; ETH gaps 3,000 -> 2,600 in one update.
STOP_PRICE, STOP_SIZE, STOP_GAP = 2_900.0, -0.01, 2_600 * WAD
STOP_COLLATERAL_USD = 200
ORDERS_PER_ACCOUNT = 8  # OrderRouter.MAX_CONDITIONAL


@dataclass(frozen=True)
class OrdersRate:
    orders: int
    trigger_seconds: float  # from the gap to the keeper's status with every order triggered
    settle_seconds: float  # from the settlement round to its status with every order done
    per_second: float  # orders / (trigger_seconds + settle_seconds)
    transactions: int
    filled: int  # OrderSettled events of the book
    setup_seconds: float


def stop_book(x: Exchange, count: int) -> list[int]:
    """`count` sell stops at STOP_PRICE over owners 4..11's sub-accounts (8 each), funded."""
    from ape import accounts

    owners = [accounts.test_accounts[i] for i in BOOK_OWNERS]
    slots = [(owners[(i // ORDERS_PER_ACCOUNT) % len(owners)], i // (ORDERS_PER_ACCOUNT * len(owners)))
             for i in range(count)]
    accounts_used = sorted({(o.address, sub) for o, sub in slots})
    per_owner = {o.address: sum(1 for a, _ in accounts_used if a == o.address) for o in owners}
    orders_of = {o.address: sum(1 for who, _ in slots if who.address == o.address) for o in owners}
    for owner in owners:
        if orders_of[owner.address]:
            x.fund(owner, x.tokens(STOP_COLLATERAL_USD * per_owner[owner.address]) + 2 * x.reward_tokens * orders_of[owner.address])
    done: set[tuple[str, int]] = set()
    ids = []
    for owner, sub in slots:
        if (owner.address, sub) not in done:
            x.deposit(owner, x.tokens(STOP_COLLATERAL_USD), sub=sub, mint=False)
            done.add((owner.address, sub))
        ids.append(x.place_order(owner, 0, "stop", STOP_PRICE, size=STOP_SIZE, sub=sub))
    return ids


def orders_rate(count: int = 500, workdir: Path | None = None) -> OrdersRate:
    """Start Anvil, place `count` sell stops, start `perpdex keeper orders` (a separate
    process), gap ETH through the stops, feed the settlement round once the keeper has
    triggered them all, and time it to every order done."""
    from ape import accounts, chain

    from perpdex.chain import DEVNET, connect
    from perpdex.deploy import deploy_system
    from perpdex.devnet import write_deployment
    from perpdex.processes import Devnet, orders_process

    with tempfile.TemporaryDirectory() as scratch:
        work = workdir or Path(scratch)
        node = Devnet(work)
        try:
            with connect(DEVNET, host=node.url, manage_process=False):
                x = Exchange(deploy_system(accounts.test_accounts[0]))
                x.add_liquidity(accounts.test_accounts[1], x.tokens(2_000_000))
                deployment = write_deployment(x.d.to_json(chain.chain_id, chain.blocks.head.number), work / "devnet.json")
                t = time.monotonic()
                ids = stop_book(x, count)
                setup = time.monotonic() - t
                start = int(chain.blocks.head.number) + 1
                bot = orders_process(node.url, deployment, work / "orders.db", BOT_ACCOUNT)
                try:
                    bot.wait_for(f"open {count} | triggered 0 |", timeout=120)
                    t0 = time.monotonic()
                    x.set_price(0, STOP_GAP)
                    bot.wait_for(f"open 0 | triggered {count} |", timeout=600)
                    t1 = time.monotonic()
                    x.next_round()  # the settlement round of every trigger
                    bot.wait_for(f"| done {count} |", timeout=300)
                    t2 = time.monotonic()
                finally:
                    bot.stop()
                sent = int(chain.provider.get_nonce(accounts.test_accounts[BOT_ACCOUNT].address))
                filled = sum(1 for e in _router_events(x, start, "OrderSettled") if int(e["order_id"]) in set(ids))
        finally:
            node.stop()
    return OrdersRate(count, t1 - t0, t2 - t1, count / (t2 - t0), sent, filled, setup)


def _router_events(x: Exchange, from_block: int, name: str) -> list[dict[str, Any]]:
    from ape import chain

    from perpdex.logs import EventDecoder

    decoder = EventDecoder([x.d.router])
    logs = chain.provider.web3.eth.get_logs({"address": str(x.d.router.address), "fromBlock": from_block})
    return [d[1] for log in logs if (d := decoder.decode(log)) is not None and d[0] == name]


# ---------------------------------------------------------------- a gap into ADL (issue 17)
# ETH +20% in one update (the oracle's max_price_jump is 25%): every 1 ETH short opened at 3,000
# on 300 USD is ~300 USD past its collateral. The pool's loss cap is set low (0.1% of its cash,
# ~2,000 USD of 2 M) so that most of the bad debt is booked to ADL against the longs.
GAP_PRICE = 3_600 * WAD
GAP_LOSS_CAP = 0.001
GAP_SHORT_OWNERS = range(8, 12)  # 4 owners x `per_owner` sub-accounts, each 1 ETH short
# the side that owes ADL: (test account, ETH long, USD): returns on equity at the gap's mark
# 6,000/10,000, 12,000/32,000, 12,000/72,000, so the ADL keeper ranks them in this order
GAP_LONGS = ((4, 10, 4_000), (5, 20, 20_000), (6, 20, 60_000))
GAP_BYSTANDER, GAP_BYSTANDER_USD = 7, 10_000  # collateral and no position: must never pay
GAP_ODD = 3  # sub 0: an attacker holding BTC whose price goes stale; sub 1: a dust account
# The bot prices gas at 50 gwei (--gas-price): the dust account's most possible reward (0.5% of
# 36 USD, topped up to at most 5 USD by the insurance fund) is below 25k gas or more at that
# price; the bankrupt accounts are liquidated at a loss all the same (equity below 0).
GAP_BOT_OPTIONS = ("--gas-price", "50")


@dataclass(frozen=True)
class GapBook:
    shorts: list[tuple[str, int]]  # bankrupt by the gap
    longs: list[tuple[str, int]]  # the owing side, in the ADL keeper's rank order
    bystander: str
    attacker: tuple[str, int]  # bankrupt too, but BTC's price is stale: cannot be liquidated
    dust: tuple[str, int]  # 0.01 ETH short on 13 USD: liquidatable after the gap, not worth its gas

    @property
    def tracked(self) -> int:
        """Accounts with a position (what the liquidator bot tracks)."""
        return len(self.shorts) + len(self.longs) + 2


def gap_deployment(workdir: Path) -> tuple[Exchange, Path]:
    """The system with the pool's loss cap at GAP_LOSS_CAP and 2 M USD of liquidity (test
    account 1), on the connected node; its deployment file in `workdir`."""
    from ape import accounts, chain

    from perpdex.deploy import deploy_system
    from perpdex.devnet import write_deployment

    x = Exchange(deploy_system(accounts.test_accounts[0], pool={"pool_loss_cap": GAP_LOSS_CAP}))
    x.add_liquidity(accounts.test_accounts[1], x.tokens(2_000_000))
    return x, write_deployment(x.d.to_json(chain.chain_id, chain.blocks.head.number), workdir / "devnet.json")


def gap_book(x: Exchange, per_owner: int) -> GapBook:
    """The positions of GapBook, every request filled at one round at 3,000."""
    from ape import accounts

    t = accounts.test_accounts
    orders = []
    for i, eth, usd in GAP_LONGS:
        orders += commit_trades(x, t[i], [(0, usd, {0: eth * WAD})])
    shorts = []
    for i in GAP_SHORT_OWNERS:
        subs = range(per_owner)
        orders += commit_trades(x, t[i], [(sub, BOOK_COLLATERAL_USD, {0: -WAD}) for sub in subs])
        shorts += [(t[i].address, sub) for sub in subs]
    orders += commit_trades(x, t[GAP_ODD], [(0, BOOK_COLLATERAL_USD, {0: -WAD, 1: WAD // 1000}), (1, 13, {0: -WAD // 100})])
    x.deposit(t[GAP_BYSTANDER], x.tokens(GAP_BYSTANDER_USD))
    fill(x, orders)
    return GapBook(shorts, [(t[i].address, 0) for i, _, _ in GAP_LONGS], t[GAP_BYSTANDER].address,
                   (t[GAP_ODD].address, 0), (t[GAP_ODD].address, 1))


def gap(x: Exchange) -> int:
    """Let every price go stale, then feed ETH at GAP_PRICE in one update (BTC alone stays
    stale); returns the block of the update."""
    from perpdex.chain import move_time

    move_time(int(x.d.oracle.max_price_age()) + 1)
    return int(x.set_price(0, GAP_PRICE).block_number)


@dataclass(frozen=True)
class Waterfall:
    """What the liquidations since a block did (the vault's events; USD and base units)."""

    liquidated: list[tuple[str, int]]
    per_tx: dict[str, int]  # transaction -> accounts liquidated in it
    blocks: list[int]  # the blocks they were liquidated in
    bad_debt: float
    from_insurance: float
    from_pool: float
    to_adl: float
    adl_booked: float  # size booked to ADL


def waterfall(x: Exchange, since: int) -> Waterfall:
    from perpdex.report.events import EventLog

    log = EventLog(x)
    log.add_range(since)
    seen = log.named("Liquidation")
    covered = log.named("BadDebtCovered")

    def total(field: str) -> float:
        return sum(int(e.args[field]) for e in covered) / WAD

    per_tx: dict[str, int] = {}
    for e in seen:
        per_tx[e.tx] = per_tx.get(e.tx, 0) + 1
    return Waterfall([(str(e.args["owner"]), int(e.args["sub"])) for e in seen], per_tx, sorted({e.block for e in seen}),
                     total("bad_debt"), total("from_insurance"), total("from_pool"), total("to_adl"),
                     sum(int(e.args["size"]) for e in log.named("DeleverageBooked")) / WAD)


@dataclass(frozen=True)
class AdlPass:
    """One `perpdex keeper adl --once --log-format json` run: its JSON lines by action."""

    lines: list[dict[str, Any]]

    def of(self, action: str) -> list[dict[str, Any]]:
        return [line["fields"] for line in self.lines if line["action"] == action]

    @property
    def seconds(self) -> float:
        """From its "started" line to its "stopped" line (the pass: reading the accounts from
        the events, ranking, one deleverage transaction each)."""
        from datetime import datetime

        stamps = {line["action"]: datetime.fromisoformat(line["timestamp"]) for line in self.lines}
        return (stamps["stopped"] - stamps["started"]).total_seconds()


def adl_pass(rpc: str, deployment: Path) -> AdlPass:
    """Run `perpdex keeper adl` once (test account 0, the deleverager) to its end."""
    import json

    from perpdex.processes import adl_process

    output = adl_process(rpc, deployment).finish()
    return AdlPass([json.loads(line) for line in output.splitlines() if line.startswith("{")])


@dataclass(frozen=True)
class Deleveraged:
    """The vault's Deleveraged events since a block."""

    positions: int
    size: float
    notional: float  # USD at the bankruptcy price
    recovered: float  # USD back to the pool


def deleveraged(x: Exchange, since: int) -> Deleveraged:
    from perpdex.report.events import EventLog

    log = EventLog(x)
    log.add_range(since)
    found = log.named("Deleveraged")
    return Deleveraged(len(found), sum(abs(int(e.args["closed_size"])) for e in found) / WAD,
                       sum(abs(int(e.args["closed_size"])) * int(e.args["price"]) for e in found) / WAD / WAD,
                       sum(int(e.args["recovered"]) for e in found) / WAD)


def bot_lines(output: str, needle: str) -> list[str]:
    """A keeper's text lines containing `needle`, without their time stamps."""
    return [STAMP.sub("", line) for line in output.splitlines() if needle in line]


@dataclass(frozen=True)
class GapFigures:
    """`gap_into_adl`: the liquidator bot and the ADL keeper after a gap (USD, base units)."""

    underwater: int  # accounts the gap left liquidatable (the shorts, the attacker, the dust)
    waterfall: Waterfall
    blocks_to_clear: int  # from the gap's block to the last liquidation's
    seconds_to_clear: float  # the bot's "cleared N account(s) in Xs" line
    gas_per_tx: list[int]
    skipped: list[str]  # the bot's skip lines
    dust: list[str]  # the bot's dust lines
    ranked: int  # positions `perpdex adl` ranked
    adl: Deleveraged
    adl_seconds: float
    adl_gas: int
    pending_after: int  # ADL still owed after the keeper's pass (base units, WAD)


def gap_into_adl(per_owner: int = 10, workdir: Path | None = None) -> GapFigures:
    """Start Anvil, build a GapBook, run `perpdex keeper liquidator` (a separate process) through
    the gap, then `perpdex adl --json` and one `perpdex keeper adl` pass; collect the figures."""
    from ape import chain

    from perpdex.chain import DEVNET, connect
    from perpdex.model import ADL_LONGS
    from perpdex.processes import Devnet, cli_json, liquidator_process

    with tempfile.TemporaryDirectory() as scratch:
        work = workdir or Path(scratch)
        node = Devnet(work)
        try:
            with connect(DEVNET, host=node.url, manage_process=False):
                x, deployment = gap_deployment(work)
                book = gap_book(x, per_owner)
                bot = liquidator_process(node.url, deployment, work / "bot.db", BOT_ACCOUNT, options=GAP_BOT_OPTIONS)
                try:
                    bot.wait_for(f"tracked {book.tracked} | open {book.tracked} | liquidatable 0", timeout=120)
                    gapped_at = gap(x)
                    bot.wait_for(f"cleared {len(book.shorts)} account(s)", timeout=180)
                finally:
                    output = bot.stop()
                w = waterfall(x, gapped_at)
                gas = [int(chain.provider.web3.eth.get_transaction_receipt(tx)["gasUsed"]) for tx in w.per_tx]
                [row] = cli_json("adl", "--json", "--port", str(node.port), "--deployment", str(deployment))
                before = int(chain.blocks.head.number) + 1
                run = adl_pass(node.url, deployment)
                done = deleveraged(x, before)
                adl_gas = sum(int(chain.provider.web3.eth.get_transaction_receipt(f["tx"])["gasUsed"])
                              for f in run.of("deleveraged"))
                pending_after = int(x.vault.adl_pending(0, ADL_LONGS)[0])
        finally:
            node.stop()
    _, seconds, _ = CLEARED.findall(output)[-1]
    return GapFigures(
        len(book.shorts) + 2, w, w.blocks[-1] - gapped_at, float(seconds), gas, bot_lines(output, " skipped "),
        bot_lines(output, "dust: not liquidating"),
        len(row["candidates"]), done, run.seconds, adl_gas, pending_after,
    )


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
