"""Running a keeper bot from its options, on a deployment and with a signer already chosen:
the one code path behind `perpdex keeper funding|liquidator|settler|orders|feeder` (perpdex.cli) and
`ape run keeper ...` (scripts/keeper.py). Each function builds the bot, reports a "started"
line, runs it (`iterations` passes, or until Ctrl-C: the pass in progress finishes) and
reports a "stopped" line with its totals."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from perpdex.errors import UserError
from perpdex.keepers.common import LOG_FORMATS, Line, Report, json_report

if TYPE_CHECKING:  # imported by the command line at start: kept light
    from perpdex.sdk import Exchange


def keeper_report(keeper_name: str, log_format: str) -> Report:
    """The keeper's `Report`: time-stamped text, or a JSON object per line (flushed at once)."""
    return stamped if log_format == "text" else json_report(keeper_name, json_line)


def stamped(line: str) -> None:
    """A keeper's log line: wall-clock time first, flushed at once (logs are read live)."""
    from perpdex.display import console

    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}", highlight=False, soft_wrap=True)
    console.file.flush()


def json_line(text: str) -> None:
    """One JSON log line on stdout, flushed at once (logs are read live), never wrapped by rich."""
    from perpdex.display import console

    click.echo(text, file=console.file)
    console.file.flush()


def until_stopped(run: Callable[[], Any], report: Report, stopped: Callable[[], Line]) -> None:
    """Run a keeper until it ends or Ctrl-C (SIGINT: the pass finishes), then report `stopped()`."""
    try:
        run()
    except KeyboardInterrupt:
        pass
    report(stopped())


def stopped_line(prefix: str, status: Line) -> Line:
    """A keeper's last line: its status line (a `Line`) as the action "stopped"."""
    return Line(prefix + status, "stopped", **status.fields)


# ---------------------------------------------------------------- their options
# Each keeper's options beyond where it runs and who signs (the CLI's --port/--rpc/--account,
# Ape's --network/--account): the keyword arguments of its function below.

def _option_stack(*options: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """One decorator of `options`, as if stacked above a function in that order (the first
    outermost: its option is listed first in --help; the last is applied first)."""

    def decorate(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


LOG_FORMAT = click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
                          help="text: a time-stamped line per action; json: one JSON object per line "
                               "(timestamp, keeper, action, fields, message)")


def _db(default_name: str, what: str) -> Callable[[Any], Any]:
    return click.option("--db", default=None, help=f"{what} (default .perpdex/{default_name})")


def _interval(default: float, what: str = "Seconds between passes") -> Callable[[Any], Any]:
    return click.option("--interval", default=default, show_default=True, help=what)


ONCE = click.option("--once", is_flag=True, help="One pass, then exit")

funding_options = _option_stack(
    click.option("--max-idle", default=3600, show_default=True, help="Poke markets not accrued for this many seconds"),
    _interval(5.0, "Seconds between checks"),
    click.option("--once", is_flag=True, help="Check and poke once, then exit"),
    LOG_FORMAT,
)
liquidator_options = _option_stack(
    _db("liquidator.db", "The bot's SQLite index"),
    _interval(1.0),
    click.option("--max-batch", default=50, show_default=True, help="Most accounts in one liquidate_many"),
    click.option("--gas-budget", default=12_000_000, show_default=True, help="Most gas one batch may use"),
    click.option("--confirmations", default=2, show_default=True,
                 help="The index's checkpoint stays this many blocks behind the head; newer blocks are re-read every pass (reorgs)"),
    click.option("--max-fee", default=100.0, show_default=True, help="Cap on the max fee per gas (gwei), fee bumps included"),
    click.option("--priority-fee", default=None, type=float,
                 help="Priority fee (gwei) [default: the node's eth_maxPriorityFeePerGas]"),
    click.option("--stuck-blocks", default=3, show_default=True,
                 help="A batch not mined this many blocks after it was sent is replaced with both fees +12.5%"),
    click.option("--gas-price", default=None, type=float,
                 help="Gas price (gwei) the dust rule prices gas at [default: the head's base fee + the priority fee]"),
    click.option("--gas-token-usd", default=None, type=float,
                 help="USD per native token, to price gas [default: the oracle's ETH-USD price]"),
    click.option("--bad-debt-equity", default=0.0, show_default=True,
                 help="Accounts with equity below this (USD) are liquidated even when the reward is below the gas"),
    ONCE,
    LOG_FORMAT,
)
adl_options = _option_stack(_interval(2.0), ONCE, LOG_FORMAT)
settler_options = _option_stack(_db("settler.db", "The settler's SQLite index"), _interval(1.0), ONCE, LOG_FORMAT)
orders_options = _option_stack(
    _db("orders.db", "The order keeper's SQLite index"), _interval(1.0), ONCE, LOG_FORMAT,
    click.option("--max-batch", default=100, show_default=True, type=click.IntRange(1, 100),
                 help="Most orders in one trigger_many, prune_many or settle_many"),
)
def _replay_needs_file(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Check --path replay has its --file when the command is called, before it connects."""

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("source") == "replay" and not kwargs.get("replay_file"):
            raise click.UsageError("--path replay needs --file FILE (a JSON list of {market name: price} rounds)")
        return fn(*args, **kwargs)

    return checked


feeder_options = _option_stack(
    click.option("--path", "source", type=click.Choice(["hold", "gbm", "replay"]), default="hold", show_default=True,
                 help="hold: re-stamp the prices as they are; gbm: a seeded random walk; replay: rounds from --file"),
    click.option("--file", "replay_file", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="For --path replay: a JSON list of {market name: USD price} rounds"),
    click.option("--seed", default=7, show_default=True, help="For --path gbm"),
    _interval(2.0, "Seconds between rounds"),
    click.option("--settle/--no-settle", default=True, show_default=True, help="Settle the requests each round made due"),
    _db("feeder-settler.db", "The settler's SQLite index"),
    click.option("--rounds", default=None, type=click.IntRange(1, None),
                 help="Stop after this many rounds (default: run until stopped)"),
    LOG_FORMAT,
    _replay_needs_file,  # applied first: the options above are the checked function's
)


# ---------------------------------------------------------------- the keepers

def _passes(once: bool) -> int | None:
    return 1 if once else None


def _state_file(db: str | None, default_name: str) -> Path:
    from perpdex.devnet import STATE_DIR

    return Path(db) if db else STATE_DIR / default_name


def funding(x: Exchange, sender: Any, log_format: str, max_idle: int, interval: float, once: bool) -> None:
    """Poke markets idle for `max_idle` seconds, a check every `interval` (one with `once`)."""
    from perpdex.keepers.funding import FundingKeeper

    report = keeper_report("funding", log_format)
    bot = FundingKeeper(x, sender, max_idle=max_idle, report=report)
    report(Line(f"funding keeper: {len(x.market_names())} markets, max idle {max_idle}s, sender {sender.address}",
                "started", markets=list(x.market_names().values()), max_idle_s=max_idle, sender=sender.address))
    until_stopped(lambda: bot.run(interval, iterations=_passes(once)), report, lambda: Line(
        f"funding keeper: {len(bot.poked)} pokes, {sum(p.gas for p in bot.poked):,} gas", "stopped",
        pokes=len(bot.poked), gas=sum(p.gas for p in bot.poked)))


def adl(x: Exchange, sender: Any, accounts: Callable[[], list[tuple[Any, int]]], log_format: str, interval: float,
        once: bool) -> None:
    """Close what market sides owe by ADL, the most profitable positions first, a pass every
    `interval` (one with `once`). `sender` must be the vault's deleverager."""
    from perpdex.keepers.adl import AdlKeeper

    report = keeper_report("adl", log_format)
    bot = AdlKeeper(x, sender, accounts, report)
    report(Line(f"ADL keeper: sender {sender.address}", "started", sender=sender.address))
    until_stopped(lambda: bot.run(interval, iterations=_passes(once)), report, lambda: Line("ADL keeper", "stopped"))


def liquidator(
    x: Exchange, sender: Any, log_format: str, db: str | None, interval: float, max_batch: int, gas_budget: int,
    confirmations: int, max_fee: float, priority_fee: float | None, stuck_blocks: int, gas_price: float | None,
    gas_token_usd: float | None, bad_debt_equity: float, once: bool,
) -> None:
    """Liquidate unhealthy accounts (fees in gwei, prices and equity in USD, as the options)."""
    from perpdex.keepers.index import AccountIndex
    from perpdex.keepers.liquidation_policy import gwei
    from perpdex.keepers.liquidator import Liquidator
    from perpdex.model import to_wad

    report = keeper_report("liquidator", log_format)
    index = AccountIndex(_state_file(db, "liquidator.db"))
    bot = Liquidator(
        x, sender, index, report=report, max_batch=max_batch, gas_budget=gas_budget,
        confirmations=confirmations, max_fee=gwei(max_fee),
        priority_fee=None if priority_fee is None else gwei(priority_fee), stuck_blocks=stuck_blocks,
        gas_price=None if gas_price is None else gwei(gas_price),
        gas_token_usd=None if gas_token_usd is None else to_wad(gas_token_usd),
        bad_debt_equity=to_wad(bad_debt_equity),
    )
    report(Line(f"liquidator: keeper {x.d.keeper.address}, sender {sender.address}, index {index.path}", "started",
                keeper=str(x.d.keeper.address), sender=sender.address, index=str(index.path)))
    until_stopped(lambda: bot.run(interval, iterations=_passes(once)), report,
                  lambda: stopped_line("liquidator stopped: ", bot.status_line()))


def settler(x: Exchange, sender: Any, log_format: str, db: str | None, interval: float, once: bool) -> None:
    """Settle the router's due requests (and cancel expired ones), a pass every `interval`."""
    from perpdex.keepers.settler import RequestIndex, Settler

    report = keeper_report("settler", log_format)
    bot = Settler(x, sender, RequestIndex(_state_file(db, "settler.db")), report=report)
    report(Line(f"settler: router {x.d.router.address}, sender {sender.address}, index {bot.index.path}", "started",
                router=str(x.d.router.address), sender=sender.address, index=str(bot.index.path)))
    until_stopped(lambda: bot.run(interval, iterations=_passes(once)), report,
                  lambda: stopped_line("settler stopped: ", bot.status_line()))


def orders(x: Exchange, sender: Any, log_format: str, db: str | None, interval: float, once: bool,
           max_batch: int = 100) -> None:
    """Trigger, settle and prune the router's conditional orders, a pass every `interval`, in
    batches of at most `max_batch` orders."""
    from perpdex.keepers.orders import OrderIndex, OrderKeeper

    report = keeper_report("orders", log_format)
    bot = OrderKeeper(x, sender, OrderIndex(_state_file(db, "orders.db")), report=report, max_batch=max_batch)
    report(Line(f"order keeper: router {x.d.router.address}, sender {sender.address}, index {bot.index.path} "
                f"(at block {bot.index.last_block()})", "started", router=str(x.d.router.address), sender=sender.address,
                index=str(bot.index.path), index_block=bot.index.last_block()))
    until_stopped(lambda: bot.run(interval, iterations=_passes(once)), report,
                  lambda: stopped_line("order keeper stopped: ", bot.status_line()))


def feeder(x: Exchange, sender: Any, log_format: str, source: str, replay_file: str | None, seed: int,
           interval: float, settle: bool, db: str | None, rounds: int | None) -> None:
    """Write a round of every market each `interval` (`rounds` of them, or until stopped) from
    the price path `source`, and with `settle` settle the requests each round made due.
    UserError when `sender` is not a feeder or the path cannot be read."""
    from perpdex.keepers import feeder as feeding
    from perpdex.keepers.settler import RequestIndex, Settler

    report = keeper_report("feeder", log_format)
    try:
        feeding.check_feeder(x, sender)
        prices = feeding.source(source, interval, x.d.markets, seed, Path(replay_file) if replay_file else None)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    settling = Settler(x, sender, RequestIndex(_state_file(db, "feeder-settler.db")), report=report) if settle else None
    bot = feeding.PriceFeeder(x, sender, prices, settling, report=report)
    report(Line(f"feeder: {source} prices every {interval:g}s to {x.d.oracle.address}"
                + (", settling due requests" if settling else "") + f", sender {sender.address}", "started",
                path=source, interval_s=interval, oracle=str(x.d.oracle.address), settling=settling is not None,
                sender=sender.address))
    until_stopped(lambda: bot.run(interval, iterations=rounds), report, lambda: Line(
        f"feeder stopped after {bot.rounds} rounds" + (f"; {settling.status_line()}" if settling else ""), "stopped",
        rounds=bot.rounds, **({"settler": settling.status_line().fields} if settling else {})))
