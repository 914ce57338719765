"""The `perpdex` command line: demo, deploy, devnet, show, funding, keeper, bench."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import click

from perpdex.chain import DEVNET, EMBEDDED, EXACT, connect, move_time, signer, test_signers
from perpdex.display import account_tables, console, funding_tables, liquidation_tables, print_system

if TYPE_CHECKING:
    from perpdex.bench import FlatnessRow

# pydantic-settings warns about a field of ape-vyper's config model on every start; it is
# not ours and changes nothing (the same filter is in pyproject.toml for pytest).
warnings.filterwarnings("ignore", message="Field 'import_remapping' has an incomplete definition")

NETWORK_HELP = "Ape network choice, e.g. ethereum:local:boa (embedded), ethereum:local:foundry (Anvil)"


@click.group()
@click.option("--verbose", is_flag=True, help="Show Ape's own log lines (deployments, transactions)")
def main(verbose: bool) -> None:
    """perpdex: an on-chain perpetual-futures exchange (Vyper + Ape)."""
    from ape.logging import logger

    logger.set_level("INFO" if verbose else "WARNING")


@main.command()
@click.option("--network", default=EMBEDDED, show_default=True, help=NETWORK_HELP)
def demo(network: str) -> None:
    """Deploy everything, fund the pool and a trader, open a cross-margin book, print it all."""
    from perpdex.deploy import deploy_system
    from perpdex.model import WAD
    from perpdex.sdk import Exchange

    started = time.monotonic()
    with connect(network):
        admin, lp, trader = test_signers(3)
        with console.status("deploying"):
            x = Exchange(deploy_system(admin))
        console.print(f"[bold]perpdex deployed on {network}[/bold] by {admin.address}")
        with console.status("funding the pool and the trader, opening positions"):
            x.add_liquidity(lp, x.tokens(1_000_000))
            x.deposit(trader, x.tokens(10_000))
            eth, btc = x.d.markets["ETH-USD"], x.d.markets["BTC-USD"]
            x.trade(trader, eth, 20 * WAD)  # 60,000 USD long ETH
            x.trade(trader, btc, -WAD // 2)  # 30,000 USD short BTC, same cross-margin sub-account
        print_system(x)
        for table in account_tables(x, trader, 0):
            console.print(table)
    console.print(f"done in {time.monotonic() - started:.1f}s")


@main.command()
@click.option("--network", default=EMBEDDED, show_default=True, help=NETWORK_HELP)
@click.option("--account", "alias", default=None, help="Ape account alias (default: test account 0)")
@click.option("--out", default=None, help="Write the deployment file here (addresses, markets)")
def deploy(network: str, alias: str | None, out: str | None) -> None:
    """Deploy the system to any Ape network and print (and optionally save) its addresses."""
    from pathlib import Path

    from perpdex.deploy import deploy_system
    from perpdex.devnet import write_deployment
    from perpdex.sdk import Exchange

    with connect(network) as provider:
        d = deploy_system(signer(alias))
        print_system(Exchange(d))
        if out:
            path = write_deployment(d.to_json(provider.chain_id, provider.get_block("latest").number), Path(out))
            console.print(f"deployment written to {path}")


@main.command()
@click.option("--port", default=8545, show_default=True)
@click.option("--stop", is_flag=True, help="Stop the Anvil that `perpdex devnet` started")
def devnet(port: int, stop: bool) -> None:
    """Start Anvil if none runs on PORT, deploy, and write .perpdex/devnet.json."""
    from perpdex import devnet as dn
    from perpdex.deploy import deploy_system
    from perpdex.sdk import Exchange

    if stop:
        console.print("anvil stopped" if dn.stop_anvil() else "no anvil started by perpdex is running")
        return
    pid = dn.start_anvil(port)
    console.print(f"anvil started (pid {pid}, log {dn.LOG_FILE})" if pid else f"anvil already running on port {port}")
    with connect(DEVNET, host=dn.host_url(port)) as provider:
        d = deploy_system(signer())
        path = dn.write_deployment(d.to_json(provider.chain_id, provider.get_block("latest").number))
        print_system(Exchange(d))
    console.print(f"deployment written to {path}; stop the node with `perpdex devnet --stop`")


@main.command()
@click.option("--port", default=8545, show_default=True)
@click.option("--owner", default=None, help="Also show this account (address)")
@click.option("--sub", default=0, show_default=True)
def show(port: int, owner: str | None, sub: int) -> None:
    """Print the devnet deployment (from .perpdex/devnet.json): markets, pool, an account."""
    with _devnet(port) as x:
        print_system(x)
        if owner:
            for table in account_tables(x, owner, sub):
                console.print(table)


@main.command()
@click.option("--port", default=8545, show_default=True, help="The devnet's port (reads .perpdex/devnet.json)")
@click.option("--owner", default=None, help="Also show what this account's positions pay (address)")
@click.option("--sub", default=0, show_default=True)
@click.option("--example", is_flag=True, help="No devnet needed: on the embedded chain, skew ETH-USD, wait 12 h, show it")
def funding(port: int, owner: str | None, sub: int, example: bool) -> None:
    """Funding per market: skew, rate per hour / day / APR, predicted rates, and what a position pays."""
    from perpdex.funding import funding_overview, position_funding

    def show(x: Any, who: str | None) -> None:
        positions = position_funding(x, who, sub) if who else None
        for table in funding_tables(funding_overview(x), positions, who or ""):
            console.print(table)

    if example:
        with connect(EMBEDDED):
            x, trader = _skewed_example()
            show(x, str(trader))
        return
    with _devnet(port) as x:
        show(x, owner)


def _skewed_example() -> tuple[Any, Any]:
    """Deploy on the embedded chain; one trader long 150 ETH, one short 30; 12 hours pass."""
    from perpdex.deploy import deploy_system
    from perpdex.model import WAD
    from perpdex.sdk import Exchange

    admin, lp, long_trader, short_trader = test_signers(4)
    x = Exchange(deploy_system(admin))
    x.add_liquidity(lp, x.tokens(1_000_000))
    for who, size in ((long_trader, 150 * WAD), (short_trader, -30 * WAD)):
        x.deposit(who, x.tokens(100_000))
        x.trade(who, 0, size)
    move_time(12 * 3600)
    x.refresh_prices()
    return x, long_trader


@main.command()
@click.option("--port", default=8545, show_default=True, help="The devnet's port (reads .perpdex/devnet.json)")
@click.option("--owner", default=None, help="The account to show (address)")
@click.option("--sub", default=0, show_default=True)
@click.option("--example", is_flag=True, help="No devnet needed: on the embedded chain, a 15x long is liquidated step by step")
def liquidation(port: int, owner: str | None, sub: int, example: bool) -> None:
    """An account's health breakdown and liquidation prices (the on-chain views a liquidation uses)."""
    if example:
        with connect(EMBEDDED):
            _liquidation_example()
        return
    if not owner:
        raise click.UsageError("give --owner ADDRESS (or --example)")
    with _devnet(port) as x:
        for table in account_tables(x, owner, sub):
            console.print(table)


def _liquidation_example() -> None:
    """10 ETH long on 2,000 USD at 3,000 (15x); ETH falls to 2,860; a keeper liquidates."""
    from perpdex.deploy import deploy_system
    from perpdex.model import WAD
    from perpdex.sdk import Exchange

    admin, lp, trader, keeper = test_signers(4)
    x = Exchange(deploy_system(admin))
    x.add_liquidity(lp, x.tokens(1_000_000))
    x.deposit(trader, x.tokens(2_000))
    x.trade(trader, 0, 10 * WAD)
    console.print("[bold]1. A trader opens 10 ETH long on 2,000 USD of collateral at 3,000 (15x)[/bold]")
    for table in account_tables(x, trader, 0):
        console.print(table)
    x.set_price(0, 2_860 * WAD)
    console.print("[bold]2. ETH falls to 2,860: equity is below the maintenance margin[/bold]")
    for table in account_tables(x, trader, 0):
        console.print(table)
    receipt = x.d.keeper.liquidate(trader, 0, sender=keeper)
    console.print("[bold]3. A keeper calls LiquidationKeeper.liquidate: the smallest share that restores IM is closed[/bold]")
    for table in liquidation_tables(x, receipt):
        console.print(table)
    console.print("[bold]4. After: healthy again, with the rest of the position still open[/bold]")
    for table in account_tables(x, trader, 0):
        console.print(table)


@contextmanager
def _devnet(port: int, deployment: str | None = None, network: str = DEVNET, rpc: str | None = None) -> Iterator[Any]:
    """The deployment written by `perpdex devnet` (or `deploy --out FILE`) on the node at `rpc`
    (default: the Anvil at `port`). Never starts a node of its own: a keeper must not."""
    from pathlib import Path

    from perpdex.deploy import attach
    from perpdex.devnet import DEPLOYMENT_FILE, host_url, read_deployment
    from perpdex.sdk import Exchange

    with connect(network, host=rpc or host_url(port), manage_process=False):
        yield Exchange(attach(read_deployment(Path(deployment) if deployment else DEPLOYMENT_FILE)))


@main.group()
def keeper() -> None:
    """Keeper bots, run against the devnet (or any Ape network with a deployment file)."""


@keeper.command("funding")
@click.option("--port", default=8545, show_default=True, help="The devnet's port (reads .perpdex/devnet.json)")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
@click.option("--account", "alias", default=None, help="Ape account alias, or N for test account N (default 0)")
@click.option("--max-idle", default=3600, show_default=True, help="Poke markets not accrued for this many seconds")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between checks")
@click.option("--once", is_flag=True, help="Check and poke once, then exit")
def keeper_funding(port: int, deployment: str | None, alias: str | None, max_idle: int, interval: float, once: bool) -> None:
    """Poke idle markets so funding stays accrued. Stateless: safe to restart or run twice."""
    from perpdex.keepers.funding import FundingKeeper

    with _devnet(port, deployment) as x:
        bot = FundingKeeper(x, signer(alias), max_idle=max_idle, report=console.print)
        console.print(f"funding keeper: {len(x.market_names())} markets, max idle {max_idle}s, sender {bot.sender.address}")
        try:
            bot.run(interval, iterations=1 if once else None)
        except KeyboardInterrupt:
            pass
        console.print(f"funding keeper: {len(bot.poked)} pokes, {sum(p.gas for p in bot.poked):,} gas")


@keeper.command("liquidator")
@click.option("--network", default=DEVNET, show_default=True, help=NETWORK_HELP)
@click.option("--port", default=8545, show_default=True, help="The devnet's port (ignored with --rpc)")
@click.option("--rpc", default=None, help="Node URL, e.g. http://127.0.0.1:8545 (default: the devnet at --port)")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
@click.option("--db", default=None, help="The bot's SQLite index (default .perpdex/liquidator.db)")
@click.option("--account", "alias", default=None, help="Ape account alias, or N for test account N (default 0)")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between passes")
@click.option("--max-batch", default=50, show_default=True, help="Most accounts in one liquidate_many")
@click.option("--gas-budget", default=12_000_000, show_default=True, help="Most gas one batch may use")
@click.option("--once", is_flag=True, help="One pass, then exit")
def keeper_liquidator(
    network: str, port: int, rpc: str | None, deployment: str | None, db: str | None, alias: str | None,
    interval: float, max_batch: int, gas_budget: int, once: bool,
) -> None:
    """Liquidate unhealthy accounts: event-indexed (SQLite, survives restarts), batched, crash-safe."""
    from perpdex.devnet import STATE_DIR
    from perpdex.keepers.index import AccountIndex
    from perpdex.keepers.liquidator import Liquidator

    with _devnet(port, deployment, network, rpc) as x:
        index = AccountIndex(db or STATE_DIR / "liquidator.db")
        bot = Liquidator(x, signer(alias), index, report=_stamped, max_batch=max_batch, gas_budget=gas_budget)
        _stamped(f"liquidator: keeper {x.d.keeper.address}, sender {bot.sender.address}, index {index.path}")
        try:
            bot.run(interval, iterations=1 if once else None)
        except KeyboardInterrupt:
            pass
        _stamped(f"liquidator stopped: {bot.status_line()}")


def _stamped(line: str) -> None:
    """A keeper's log line: wall-clock time first, flushed at once (logs are read live)."""
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}", highlight=False, soft_wrap=True)
    console.file.flush()


@main.group()
def bench() -> None:
    """Benchmarks that print figures."""


@bench.command("gas")
@click.option("--network", default=EXACT, show_default=True, help="Needs real receipts: not the boa provider")
@click.option("--batch", default=50, show_default=True, help="Accounts in the measured liquidate_many (0: none)")
def bench_gas(network: str, batch: int) -> None:
    """Gas of every user action and of liquidations (py-evm receipts include the 21,000 intrinsic gas)."""
    from perpdex.bench import gas_rows, liquidation_rows

    with connect(network), console.status("measuring") as status:
        rows = gas_rows(progress=lambda step: status.update(f"measured {step}"))
        liquidations = liquidation_rows(batch, progress=lambda step: status.update(f"liquidations: {step}"))
    console.print(_gas_table(f"Gas used ({network})", rows))
    console.print(_gas_table(f"Liquidations through the LiquidationKeeper ({network})", liquidations))


def _gas_table(title: str, rows: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in ("action", "gas", "target", ""):
        table.add_column(col, justify="right")
    for row in rows:
        mark = "[green]ok[/green]" if row.ok else "[red]over[/red]"
        table.add_row(row.action, f"{row.gas:,}", f"{row.target:,}" if row.target else "-", mark if row.target else "")
    return table


@bench.command("funding")
@click.option("--network", default=EXACT, show_default=True, help="Needs real receipts: not the boa provider")
@click.option("--counts", default="1,100,1000", show_default=True, help="Open positions to measure at, comma-separated")
def bench_funding(network: str, counts: str) -> None:
    """Funding accrual is O(1): trade and poke gas with 1, 100 and 1,000 positions open."""
    from perpdex.bench import funding_flatness

    started = time.monotonic()
    wanted = tuple(int(c) for c in counts.split(","))
    with connect(network), console.status("deploying") as status:
        rows = funding_flatness(wanted, progress=status.update)
    console.print(_flatness_table(rows, network))
    _print_flatness_verdict(rows)
    last = rows[-1]
    console.print(
        f"opening {last.positions:,} positions took {last.build_seconds:.1f}s; "
        f"done in {time.monotonic() - started:.1f}s"
    )


def _flatness_table(rows: list[FlatnessRow], network: str) -> Any:
    from rich.table import Table

    table = Table(title=f"Gas vs open positions in ETH-USD ({network})")
    for col in ("positions", "increase", "Δ", "reduce", "Δ", "poke", "Δ", "opened in"):
        table.add_column(col, justify="right")
    for row in rows:
        d_inc, d_red, d_poke = row.deviations(rows[0])
        table.add_row(
            f"{row.positions:,}", f"{row.increase_gas:,}", f"{d_inc:+.2f}%", f"{row.reduce_gas:,}",
            f"{d_red:+.2f}%", f"{row.poke_gas:,}", f"{d_poke:+.2f}%", f"{row.build_seconds:.1f}s",
        )
    return table


def _print_flatness_verdict(rows: list[FlatnessRow]) -> None:
    from perpdex.bench import FLAT_TOLERANCE, POKE_TARGET, is_flat, max_deviation

    def verdict(ok: bool) -> str:
        return "[green]PASS[/green]" if ok else "[red]FAIL[/red]"

    worst = max_deviation(rows)
    poke = max(row.poke_gas for row in rows)
    console.print(f"flatness: {verdict(is_flat(rows))}  largest deviation {worst:.2f}% (limit {FLAT_TOLERANCE}%)")
    console.print(f"poke: {verdict(poke <= POKE_TARGET)}  {poke:,} gas (target <= {POKE_TARGET:,}, 21,000 of it the base cost)")
