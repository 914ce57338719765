"""The `perpdex` command line: demo, deploy, devnet, show, funding, keeper, fuzz, bench."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager, nullcontext
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

from perpdex.chain import DEVNET, EMBEDDED, EXACT, connect, move_time, signer, test_signers
from perpdex.conditional import KIND_NAMES
from perpdex.display import account_tables, console, funding_tables, liquidation_tables, print_system
from perpdex.errors import Group, UserError, address
from perpdex.keepers import launch
from perpdex.logs import EventDecoder
from perpdex.model import WAD

if TYPE_CHECKING:
    from perpdex.bench import FlatnessRow

# pydantic-settings warns about a field of ape-vyper's config model on every start; it is
# not ours and changes nothing (the same filter is in pyproject.toml for pytest).
warnings.filterwarnings("ignore", message="Field 'import_remapping' has an incomplete definition")

NETWORK_HELP = "Ape network choice, e.g. ethereum:local:boa (embedded), ethereum:local:foundry (Anvil)"
SIM_NETWORK = click.Choice([EMBEDDED, DEVNET])  # the simulation drives the clock of these two


PORT = click.IntRange(1, 65_535)
SUB = click.IntRange(0, 2**30 - 1)
COUNT = click.IntRange(1, None)
JSON_HELP = "JSON instead of tables: amounts in human units (USD, base units, fractions), as `accounts --json`"


def _address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    return address(value)


@click.group(cls=Group)
@click.version_option(package_name="perpdex", prog_name="perpdex")
@click.option("--verbose", is_flag=True, help="Show Ape's own log lines (deployments, transactions)")
@click.option("--debug", is_flag=True, help="Show the traceback of an error instead of its one line")
@click.pass_context
def main(ctx: click.Context, verbose: bool, debug: bool) -> None:
    """perpdex: an on-chain perpetual-futures exchange (Vyper + Ape)."""
    from ape.logging import logger

    ctx.meta["perpdex.debug"] = debug
    logger.set_level("INFO" if verbose else "WARNING")


@main.command()
@click.option("--network", default=EMBEDDED, show_default=True, type=SIM_NETWORK, help=NETWORK_HELP)
@click.option("--traders", default=50, show_default=True, type=COUNT,
              help="Simulated traders (sub-accounts of 8 test accounts)")
@click.option("--blocks", default=None, type=COUNT, help="Blocks to replay (default: the demo's 200)")
@click.option("--seed", default=7, show_default=True, help="Seed of the price path and the trader population")
@click.option("--out", default="out/demo", show_default=True, help="Directory for the charts, timeseries.csv, report.html, summary.json")
def demo(network: str, traders: int, blocks: int | None, seed: int, out: str) -> None:
    """Deploy, fund LPs and a population of traders, replay a GBM-with-jumps price path block by
    block with the price feeder, funding and liquidation keepers running, then report."""
    from perpdex.sim import scenario

    changes: dict[str, Any] = {"traders": traders, "seed": seed, "network": network}
    if blocks:
        changes["blocks"] = blocks
    _simulate_and_report(scenario("demo", **changes), out, show_book=True)


@main.command()
@click.option("--scenario", "name", default=None, help="One of: gbm, crash, gap, squeeze, bleed")
@click.option("--all", "run_all", is_flag=True,
              help="Run every scenario, print a comparison table and save it as OUT/comparison.csv and .md")
@click.option("--network", default=EMBEDDED, show_default=True, type=SIM_NETWORK, help=NETWORK_HELP)
@click.option("--traders", default=None, type=COUNT, help="Simulated traders (default: the scenario's 50)")
@click.option("--blocks", default=None, type=COUNT, help="Blocks to replay (default: the scenario's)")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", default="out/stress", show_default=True, help="Each scenario's report goes to OUT/NAME")
def stress(name: str | None, run_all: bool, network: str, traders: int | None, blocks: int | None, seed: int, out: str) -> None:
    """Run a named stress scenario (or all of them, then compare) and report."""
    from perpdex.sim import SCENARIOS, scenario
    from perpdex.sim.scenarios import embedded_session
    from perpdex.sim.ui import comparison_row, comparison_table, write_comparison

    if bool(name) == run_all:
        raise click.UsageError(f"give --scenario NAME (one of {', '.join(SCENARIOS)}) or --all")
    changes: dict[str, Any] = {"seed": seed, "network": network}
    changes.update({k: v for k, v in (("traders", traders), ("blocks", blocks)) if v})
    names = list(SCENARIOS) if run_all else [name]
    try:
        configs = [scenario(n, **changes) for n in names if n]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    with embedded_session() if network == EMBEDDED else nullcontext():  # one chain for every scenario
        results = [_simulate_and_report(c, str(Path(out) / c.name), quiet=run_all) for c in configs]
    if run_all:
        rows = [comparison_row(r) for r in results]
        console.print(comparison_table(rows))
        csv_path, md_path = write_comparison(rows, Path(out))
        console.print(f"comparison written to {csv_path} and {md_path}")
    if any(not r.report.ok for r in results):
        raise SystemExit(1)


def _simulate_and_report(config: Any, out: str, show_book: bool = False, quiet: bool = False) -> Any:
    """Run `config` with a progress bar, print the report (or one line when `quiet`), write its files."""
    from perpdex.report import print_report, write_report
    from perpdex.sim import simulate
    from perpdex.sim.ui import progress_bar

    started = time.monotonic()

    def show(result: Any) -> None:
        if not show_book:
            return
        print_system(result.x)
        hedged = next((t for t in result.traders if t.style == "hedged"), result.traders[0])
        console.print(f"[bold]A hedged long-ETH / short-BTC book in one cross-margin sub-account (trader {hedged.index})[/bold]")
        for table in account_tables(result.x, hedged.owner, hedged.sub):
            console.print(table)

    with progress_bar(console, f"{config.name} on {config.network}") as on_block:
        result = simulate(config, on_block, then=show)
    report = result.report
    if quiet:
        verdict = "[green]all checks passed[/green]" if report.ok else f"[red]{len(report.failed)} check(s) failed[/red]"
        console.print(f"{config.name}: {verdict}")
    else:
        print_report(report, console)
    paths = write_report(report, Path(out))
    console.print(
        f"{config.name}: {config.traders} traders, {config.blocks} blocks in {result.wall_seconds:.1f}s "
        f"({result.blocks_per_second:.1f} blocks/s), {time.monotonic() - started:.1f}s in all; "
        f"report written to {Path(out) / 'report.html'} ({len(paths)} files)"
    )
    return result


@main.command()
@click.option("--network", default=EMBEDDED, show_default=True, help=NETWORK_HELP)
@click.option("--account", "alias", default=None, help="Ape account alias (default: test account 0)")
@click.option("--out", default=None, help="Write the deployment file here (addresses, markets)")
def deploy(network: str, alias: str | None, out: str | None) -> None:
    """Deploy the system to any Ape network and print (and optionally save) its addresses."""
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
@click.option("--port", default=8545, show_default=True, type=PORT)
@click.option("--stop", is_flag=True, help="Stop the Anvil and the feeder that `perpdex devnet` started")
@click.option("--feeder/--no-feeder", default=True, show_default=True, help="Start the price feeder keeper")
@click.option("--feeder-interval", default=2.0, show_default=True, help="Seconds between the feeder's rounds")
@click.option("--block-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds between blocks of the Anvil it starts (default: a block per transaction); "
                   "per-block bots such as the Silverback feeder need one")
@click.option("--seed-accounts", default=0, show_default=True, type=click.IntRange(0, 7),
              help="Traders (test accounts 2, 3, ...) funded with 10,000 USD and a position each; "
                   "the pool always gets a 1,000,000 USD LP")
@click.option("--redeploy", is_flag=True, help="Deploy again (new addresses) even if the devnet already has a deployment")
def devnet(port: int, stop: bool, feeder: bool, feeder_interval: float, block_time: float | None,
           seed_accounts: int, redeploy: bool) -> None:
    """Start Anvil if none runs on PORT, deploy (or attach to the deployment already there),
    fund an LP (and --seed-accounts traders), write .perpdex/devnet.json, and start the price
    feeder (a round every 2 s; it settles the two-step requests each round made due)."""
    from perpdex import devnet as dn
    from perpdex.deploy import attach, deploy_system
    from perpdex.sdk import Exchange

    if stop:
        console.print("feeder stopped" if dn.stop_feeder() else "no feeder started by perpdex is running")
        console.print("anvil stopped" if dn.stop_anvil() else "no anvil started by perpdex is running")
        return
    pid = dn.start_anvil(port, block_time=block_time)
    if pid:
        mining = f"a block every {block_time:g}s" if block_time else "a block per transaction"
        console.print(f"anvil started (pid {pid}, {mining}, log {dn.LOG_FILE})")
    else:
        console.print(f"anvil already running on port {port}"
                      + (f": --block-time {block_time:g} not applied, its mining is its own" if block_time else ""))
    url = dn.host_url(port)
    with connect(DEVNET, host=url) as provider:
        live = None if redeploy else dn.live_deployment(provider)
        if live is not None:
            path = dn.DEPLOYMENT_FILE
            x = Exchange(attach(live))
            console.print(f"attached to the deployment already on this devnet (vault {x.vault.address}; "
                          "--redeploy deploys a new one)")
        else:
            from ape import accounts

            x = Exchange(deploy_system(signer()))
            path = dn.record_deployment(x, provider, dn.DEPLOYMENT_FILE, block_time if pid else None, url)
            for line in dn.seed(x, seed_accounts, accounts.test_accounts):
                console.print(f"seeded {line}")
            console.print(f"deployment written to {path}")
        print_system(x)
    if feeder:
        dn.stop_feeder()  # one feeder per devnet: a feeder of an earlier deployment goes
        fpid = dn.start_feeder(port, path, feeder_interval)
        console.print(f"price feeder started (pid {fpid}, a round every {feeder_interval:g}s, log {dn.FEEDER_LOG_FILE})")
    else:
        console.print("no price feeder: prices go stale after max_price_age and requests never settle "
                      "(run `perpdex keeper feeder`)")
    console.print("stop the node and the feeder with `perpdex devnet --stop`")


@main.command()
@click.option("--port", default=8545, show_default=True, type=PORT)
@click.option("--owner", default=None, callback=_address, help="Also show this account (address)")
@click.option("--sub", default=0, show_default=True, type=SUB)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def show(port: int, owner: str | None, sub: int, as_json: bool) -> None:
    """Print the devnet deployment (from .perpdex/devnet.json): markets, pool, an account."""
    from perpdex import readouts

    with _devnet(port) as x:
        if as_json:
            _print_json({**readouts.system(x), "account": readouts.account(x, owner, sub) if owner else None})
            return
        print_system(x)
        if owner:
            for table in account_tables(x, owner, sub):
                console.print(table)


@main.command()
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port (reads .perpdex/devnet.json)")
@click.option("--owner", default=None, callback=_address, help="Also show what this account's positions pay (address)")
@click.option("--sub", default=0, show_default=True, type=SUB)
@click.option("--example", is_flag=True, help="No devnet needed: on the embedded chain, skew ETH-USD, wait 12 h, show it")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def funding(port: int, owner: str | None, sub: int, example: bool, as_json: bool) -> None:
    """Funding per market: skew, rate per hour / day / APR, predicted rates, and what a position pays."""
    from perpdex import readouts
    from perpdex.funding import funding_overview, position_funding

    def show(x: Any, who: str | None) -> None:
        positions = position_funding(x, who, sub) if who else None
        if as_json:
            _print_json(readouts.funding(funding_overview(x), positions, who))
            return
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
    x = Exchange(deploy_system(admin, atomic_trading=True))
    x.add_liquidity(lp, x.tokens(5_000_000))  # the net rule (10% of the cash) backs the 150 ETH long
    for who, size in ((long_trader, 150 * WAD), (short_trader, -30 * WAD)):
        x.deposit(who, x.tokens(100_000))
        x.trade(who, 0, size)
    move_time(12 * 3600)
    x.refresh_prices()
    return x, long_trader


@main.command()
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port (reads .perpdex/devnet.json)")
@click.option("--owner", default=None, callback=_address, help="The account to show (address)")
@click.option("--sub", default=0, show_default=True, type=SUB)
@click.option("--example", is_flag=True, help="No devnet needed: on the embedded chain, a 15x long is liquidated step by step")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def liquidation(port: int, owner: str | None, sub: int, example: bool, as_json: bool) -> None:
    """An account's health breakdown and liquidation prices (the on-chain views a liquidation uses)."""
    from perpdex import readouts

    if example:
        with connect(EMBEDDED):
            steps = liquidation_example(_JsonSteps() if as_json else _PrintedSteps())
        if as_json:
            _print_json({"steps": steps})
        return
    if not owner:
        raise click.UsageError("give --owner ADDRESS (or --example)")
    with _devnet(port) as x:
        if as_json:
            _print_json(readouts.account(x, owner, sub))
            return
        for table in account_tables(x, owner, sub):
            console.print(table)


class _PrintedSteps:
    """The liquidation example's steps as titled tables on the terminal."""

    def account(self, title: str, x: Any, who: Any) -> None:
        console.print(f"[bold]{title}[/bold]")
        for table in account_tables(x, who, 0):
            console.print(table)

    def liquidated(self, title: str, x: Any, receipt: Any) -> None:
        console.print(f"[bold]{title}[/bold]")
        for table in liquidation_tables(x, receipt):
            console.print(table)

    def done(self) -> list[dict[str, Any]]:
        return []


class _JsonSteps:
    """The same steps collected for `--json`: [{"step": title, "account" | "liquidation": ...}]."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def account(self, title: str, x: Any, who: Any) -> None:
        from perpdex import readouts

        self.steps.append({"step": title, "account": readouts.account(x, who, 0)})

    def liquidated(self, title: str, x: Any, receipt: Any) -> None:
        from perpdex import readouts

        self.steps.append({"step": title, "liquidation": readouts.liquidation(x, receipt)})

    def done(self) -> list[dict[str, Any]]:
        return self.steps


def liquidation_example(out: _PrintedSteps | _JsonSteps) -> list[dict[str, Any]]:
    """10 ETH long on 2,000 USD at 3,000 (15x); ETH falls to 2,860; a keeper liquidates.
    Each step goes to `out` (printed, or collected for --json: then returned)."""
    from perpdex.deploy import deploy_system
    from perpdex.model import WAD
    from perpdex.sdk import Exchange

    admin, lp, trader, keeper = test_signers(4)
    x = Exchange(deploy_system(admin, atomic_trading=True))
    x.add_liquidity(lp, x.tokens(1_000_000))
    x.deposit(trader, x.tokens(2_000))
    x.trade(trader, 0, 10 * WAD)
    out.account("1. A trader opens 10 ETH long on 2,000 USD of collateral at 3,000 (15x)", x, trader)
    x.set_price(0, 2_860 * WAD)
    out.account("2. ETH falls to 2,860: equity is below the maintenance margin", x, trader)
    receipt = x.d.keeper.liquidate(trader, 0, sender=keeper)
    out.liquidated("3. A keeper calls LiquidationKeeper.liquidate: the smallest share that restores IM is closed", x, receipt)
    out.account("4. After: healthy again, with the rest of the position still open", x, trader)
    return out.done()


@contextmanager
def _devnet(port: int, deployment: str | None = None, network: str = DEVNET, rpc: str | None = None) -> Iterator[Any]:
    """The deployment written by `perpdex devnet` (or `deploy --out FILE`) on the node at `rpc`
    (default: the Anvil at `port`). Never starts a node of its own: a keeper must not."""
    from perpdex.deploy import attach
    from perpdex.devnet import DEPLOYMENT_FILE, host_url, read_deployment
    from perpdex.sdk import Exchange

    with connect(network, host=rpc or host_url(port), manage_process=False):
        yield Exchange(attach(read_deployment(Path(deployment) if deployment else DEPLOYMENT_FILE)))


# ---------------------------------------------------------------- trading on the devnet

TRADER_HELP = "Ape account alias, or N for test account N (default 1: account 0 is the feeder's)"


def _on_devnet(fn: Any = None, *, account: str = "1", account_help: str = TRADER_HELP) -> Any:
    """--port, --deployment and --account, as every trading command takes them (the feeder's
    commands default to account 0, the deployer, which feeds prices)."""

    def decorate(fn: Any) -> Any:
        fn = click.option("--account", "alias", default=account, show_default=True, help=account_help)(fn)
        fn = click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")(fn)
        return click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port")(fn)

    return decorate(fn) if fn is not None else decorate


FEEDER_HELP = "Ape account alias, or N for test account N (default 0: the deployer, a price feeder)"
DURATION = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


def _seconds(text: str) -> int:
    """'90', '90s', '15m', '1h', '2d' -> seconds (more than 0)."""
    unit = DURATION.get(text[-1:].lower(), None)
    number = text[:-1] if unit else text
    try:
        seconds = int(Decimal(number) * (unit or 1))
    except InvalidOperation:
        raise click.BadParameter(f"{text!r}: give it as 90, 90s, 15m, 1h or 2d") from None
    if seconds <= 0:
        raise click.BadParameter(f"{text!r}: must be more than 0 seconds")
    return seconds


def _human_amount(text: str) -> Decimal:
    try:
        value = Decimal(text.replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not a number") from None
    if value <= 0:
        raise click.BadParameter(f"{text!r}: must be more than 0")
    return value


def _slippage(text: str) -> int:
    """'0.5%' or '0.005' -> WAD fraction."""
    try:
        value = Decimal(text[:-1]) / 100 if text.endswith("%") else Decimal(text)
    except InvalidOperation:
        raise click.BadParameter(f"{text!r}: give it as 0.5% or 0.005") from None
    if not 0 < value < 1:
        raise click.BadParameter(f"{text!r}: must be between 0 and 100%")
    return int(value * WAD)


def _market_id(x: Any, name: str) -> int:
    if name not in x.d.markets:
        raise UserError(f"unknown market {name!r}: the devnet has {', '.join(x.d.markets)}")
    return int(x.d.markets[name])


def _request(x: Any, send: Any, timeout: float) -> bool:
    """Commit a request (`send`), wait for the feeder to settle it and print the fill or the
    cancellation's reason; True when it filled. One clear line when nothing settles it."""
    from ape.exceptions import ContractLogicError

    try:
        commit = send()
    except ContractLogicError as exc:
        raise UserError(f"request refused: {exc}") from None
    order_id = x.order_id(commit)
    console.print(f"request {order_id} committed; it fills at the next price round "
                  f"({int(x.d.router.settlement_delay())} s or more from now)")
    try:
        x.wait_settled(order_id, timeout)
    except TimeoutError:
        raise click.ClickException(
            f"request {order_id} not settled after {timeout:g} s: no new price round arrived or nobody settled it; "
            "is the feeder running? (`perpdex devnet` starts it; or `perpdex keeper feeder`)") from None
    return _print_outcome(x, order_id)


HINTS = {
    "vault: pool cannot back open interest": "the LP pool is empty or too small for this size: `perpdex lp add 1000000`",
    "vault: below initial margin": "not enough collateral for this size: `perpdex deposit AMOUNT`",
    "vault: fill above acceptable price": "the price moved past your --slippage before the fill",
    "vault: fill below acceptable price": "the price moved past your --slippage before the fill",
    "router: expired": "no round settled it in time: is the feeder running?",
}


def _print_outcome(x: Any, order_id: int) -> bool:
    """The fill (price, size, fee) or the cancellation's reason, from the router's event."""
    from ape import chain

    decoder = EventDecoder([x.d.router])
    ends = ["0x" + topic.hex() for (_, topic), layout in decoder.layouts.items()
            if layout.name in ("OrderSettled", "OrderCancelled")]
    logs = chain.provider.web3.eth.get_logs({"address": str(x.d.router.address), "fromBlock": 0,
                                             "topics": [ends, "0x" + order_id.to_bytes(32, "big").hex()]})
    for log in logs:
        name, a = decoder.decode(log) or ("", {})
        if name == "OrderCancelled":
            hint = HINTS.get(str(a["reason"]), "")
            console.print(f"[red]request {order_id} cancelled[/red]: {a['reason']}" + (f" ({hint})" if hint else ""))
            return False
        if name == "OrderSettled":
            if int(a["kind"]) < 2:
                console.print(f"[green]filled[/green] {int(a['size_delta']) / WAD:+,.6f} at {int(a['fill_price']) / WAD:,.2f}, "
                              f"fee {int(a['fee']) / WAD:,.4f} USD")
            else:
                unit = "shares minted" if int(a["kind"]) == 2 else "token units paid"
                console.print(f"[green]settled[/green]: {int(a['amount']):,} {unit}")
            return True
    console.print(f"request {order_id}: no settlement event found")
    return False


@main.command()
@click.argument("amount")
@click.option("--sub", default=0, show_default=True, type=SUB)
@_on_devnet
def deposit(amount: str, sub: int, alias: str, port: int, deployment: str | None) -> None:
    """Deposit AMOUNT USD of collateral into sub-account SUB (the devnet token is minted if short)."""
    usd_amount = _human_amount(amount)
    with _devnet(port, deployment) as x:
        who = signer(alias)
        tokens = int(usd_amount * 10 ** int(x.d.usd.decimals()))
        short = tokens - int(x.d.usd.balanceOf(who))
        x.fund(who, max(short, 0) + x.reward_tokens * 10)  # and a few settlement rewards
        x.vault.deposit(sub, tokens, sender=who)
        for table in account_tables(x, who, sub):
            console.print(table)


@main.command()
@click.argument("amount")
@click.option("--to", "to", default=None, callback=_address, help="Who gets the tokens (default: the --account)")
@_on_devnet
def faucet(amount: str, to: str | None, alias: str, port: int, deployment: str | None) -> None:
    """Mint AMOUNT USD of the devnet's token (MockUSD) to --to or to the account (which then
    has it approved for deposits and settlement rewards)."""
    usd_amount = _human_amount(amount)
    with _devnet(port, deployment) as x:
        who = signer(alias)
        decimals = int(x.d.usd.decimals())
        tokens = int(usd_amount * 10**decimals)
        if to is None:
            x.fund(who, tokens)
        else:
            x.d.usd.mint(to, tokens, sender=who)
        target = to or who.address
        balance = int(x.d.usd.balanceOf(target))
        console.print(f"minted {usd_amount:,.2f} USD to {target}; its balance is {balance / 10**decimals:,.2f} USD")


@main.group("price")
def price_group() -> None:
    """The oracle's prices on the devnet."""


@price_group.command("set")
@click.argument("market")
@click.argument("value")
@_on_devnet(account="0", account_help=FEEDER_HELP)
def price_set(market: str, value: str, alias: str, port: int, deployment: str | None) -> None:
    """Move MARKET's price to VALUE USD (e.g. `perpdex price set ETH-USD 2860`), in rounds
    within the oracle's jump limit, every market fed in each round (none goes stale). The
    account must be a price feeder (account 0 deployed the devnet and is one)."""
    target_usd = _human_amount(value)
    from perpdex.keepers import feeder
    from perpdex.sdk import feed_prices

    with _devnet(port, deployment) as x:
        mk = _market_id(x, market)
        who = signer(alias)
        try:
            feeder.check_feeder(x, who)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        before = x.price(mk)
        rounds = feed_prices(x, {mk: int(target_usd * WAD)}, feeder=who)
        console.print(f"{market}: {before / WAD:,.2f} -> {x.price(mk) / WAD:,.2f} USD in {len(rounds)} round(s) "
                      f"(at most {int(x.d.oracle.max_price_jump()) * 100 / WAD:g}% each)")


@contextmanager
def _node(port: int) -> Iterator[Any]:
    """Ape's chain, connected to the devnet's node at `port` (never started here): the
    commands that drive the node itself (time, blocks) and need no deployment."""
    from ape import chain

    from perpdex.devnet import host_url

    with connect(DEVNET, host=host_url(port), manage_process=False):
        yield chain


@main.group("time")
def time_group() -> None:
    """The devnet's clock."""


@time_group.command("warp")
@click.argument("duration")
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port")
def time_warp(duration: str, port: int) -> None:
    """Move the devnet's clock DURATION on (90, 90s, 15m, 1h, 2d): one block stamped that
    much after the head. Funding accrues over it; prices older than the oracle's max age
    then make trading wait for the feeder's next round."""
    seconds = _seconds(duration)
    with _node(port) as chain:
        before = int(chain.blocks.head.timestamp)
        move_time(seconds)
        head = chain.blocks.head
        console.print(f"block {head.number}: time {before} -> {int(head.timestamp)} (+{int(head.timestamp) - before} s)")


# ---------------------------------------------------------------- governance (SPEC 14)


@main.group("governance")
def governance_group() -> None:
    """Owner calls waiting on the Governance timelock."""


def _governed(x: Any) -> Any:
    if x.d.governance is None:
        raise UserError("this deployment has no Governance (made before it existed): `perpdex devnet --redeploy`")
    return x.d.governance


def _pending(x: Any, deployment: str | None) -> list[Any]:
    """The operations scheduled and neither executed nor cancelled, with their eta, oldest first."""
    from perpdex.governance import pending_operations, with_eta

    gov = _governed(x)
    log = _event_log(x, None, deployment, contracts=[gov])
    return with_eta(gov, pending_operations((e.name, e.args) for e in log.events))


@governance_group.command("pending")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port")
def governance_pending(as_json: bool, deployment: str | None, port: int) -> None:
    """Scheduled owner calls not yet executed: id, target, call, when each becomes executable."""
    from ape import chain
    from rich.table import Table

    from perpdex.governance import describe, when

    with _devnet(port, deployment) as x:
        now = int(chain.blocks.head.timestamp)
        rows = []
        for op in _pending(x, deployment):
            target, call = describe(op, x.d.contracts())
            utc, left = when(op.eta, now)
            rows.append({"id": op.id, "target": target, "call": call, "eta": op.eta, "eta_utc": utc, "executable": left})
        if as_json:
            _print_json(rows)
            return
        delay = int(x.d.governance.get_minimum_delay())
        table = Table(title=f"Pending governance operations ({len(rows)}; delay {delay:,} s)")
        for col in ("id", "target", "call", "executable from (UTC)", ""):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(r["id"], r["target"], r["call"], r["eta_utc"], r["executable"])
        console.print(table)


@governance_group.command("execute")
@click.argument("operation_id")
@_on_devnet(account="0", account_help="Ape account alias, or N for test account N (default 0: the deployer, an executor)")
def governance_execute(operation_id: str, alias: str, port: int, deployment: str | None) -> None:
    """Execute the pending operation OPERATION_ID (its 0x id from `perpdex governance pending`) once ready."""
    from ape import chain
    from ape.exceptions import ContractLogicError

    from perpdex.governance import describe, execute, when

    with _devnet(port, deployment) as x:
        ops = [op for op in _pending(x, deployment) if op.id.lower() == operation_id.lower()]
        if not ops:
            raise UserError(f"no pending operation {operation_id}: `perpdex governance pending` lists them")
        op = ops[0]
        utc, left = when(op.eta, int(chain.blocks.head.timestamp))
        if left != "ready":
            raise UserError(f"operation {op.id} is not ready: executable from {utc} ({left}); `perpdex time warp` on a devnet")
        target, call = describe(op, x.d.contracts())
        try:
            execute(x.d.governance, op, signer(alias))
        except ContractLogicError as exc:
            raise UserError(f"execute refused: {exc}") from None
        console.print(f"executed {op.id}: {target}.{call}")


@main.command()
@click.argument("blocks", type=COUNT, default=1)
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port")
def mine(blocks: int, port: int) -> None:
    """Mine BLOCKS empty blocks on the devnet (default 1)."""
    with _node(port) as chain:
        start = chain.blocks.head.number
        chain.mine(blocks)
        console.print(f"mined {chain.blocks.head.number - start} block(s): head is block {chain.blocks.head.number}")


@main.command()
@click.argument("amount")
@click.option("--sub", default=0, show_default=True, type=SUB)
@_on_devnet
def withdraw(amount: str, sub: int, alias: str, port: int, deployment: str | None) -> None:
    """Withdraw AMOUNT USD (or `all`: everything withdrawable) from sub-account SUB."""
    from ape.exceptions import ContractLogicError

    with _devnet(port, deployment) as x:
        who = signer(alias)
        free = int(x.vault.withdrawable(who, sub))
        tokens = free if amount == "all" else int(_human_amount(amount) * 10 ** int(x.d.usd.decimals()))
        if tokens == 0:
            raise UserError("nothing to withdraw (withdrawable is 0)")
        try:
            x.vault.withdraw(sub, tokens, sender=who)
        except ContractLogicError as exc:
            raise UserError(f"withdraw refused: {exc}; withdrawable now {free / 10 ** int(x.d.usd.decimals()):,.2f} USD") from None
        console.print(f"withdrew {tokens / 10 ** int(x.d.usd.decimals()):,.2f} USD")


@main.command()
@click.option("--market", required=True, help="e.g. ETH-USD")
@click.option("--size", required=True, type=float, help="Base units: > 0 buys (long), < 0 sells (short)")
@click.option("--sub", default=0, show_default=True, type=SUB)
@click.option("--slippage", default="1%", show_default=True, help="How far the fill may be from the quote now")
@_on_devnet
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the settlement")
def trade(market: str, size: float, sub: int, slippage: str, alias: str, port: int, deployment: str | None, timeout: float) -> None:
    """Commit a trade to the order router, wait for it to fill at the next round, show the account."""
    if size == 0:
        raise click.BadParameter("--size must not be 0 (> 0 buys, < 0 sells)")
    bound = _slippage(slippage)
    with _devnet(port, deployment) as x:
        who, m = signer(alias), _market_id(x, market)
        _fund_reward(x, who)
        delta = int(Decimal(str(size)) * WAD)
        filled = _request(x, lambda: x.trade(who, m, delta, sub=sub, slippage=bound, settle=False), timeout)
        for table in account_tables(x, who, sub):
            console.print(table)
        if not filled:
            raise SystemExit(1)


@main.command()
@click.option("--market", required=True, help="e.g. ETH-USD")
@click.option("--sub", default=0, show_default=True, type=SUB)
@click.option("--slippage", default="1%", show_default=True)
@_on_devnet
@click.option("--timeout", default=30.0, show_default=True)
def close(market: str, sub: int, slippage: str, alias: str, port: int, deployment: str | None, timeout: float) -> None:
    """Close the whole position in MARKET (filled at the next round, whatever its size then)."""
    bound = _slippage(slippage)
    with _devnet(port, deployment) as x:
        who, m = signer(alias), _market_id(x, market)
        if x.position(who, sub, m).size == 0:
            raise UserError(f"no {market} position in sub-account {sub} of {who.address}")
        _fund_reward(x, who)
        filled = _request(x, lambda: x.close(who, m, sub=sub, slippage=bound, settle=False), timeout)
        for table in account_tables(x, who, sub):
            console.print(table)
        if not filled:
            raise SystemExit(1)


@main.group()
def lp() -> None:
    """Liquidity: two-step requests, filled at the pool value of the next round."""


@lp.command("add")
@click.argument("amount")
@_on_devnet
@click.option("--timeout", default=30.0, show_default=True)
def lp_add(amount: str, alias: str, port: int, deployment: str | None, timeout: float) -> None:
    """Add AMOUNT USD to the pool (the devnet token is minted if short)."""
    usd_amount = _human_amount(amount)
    with _devnet(port, deployment) as x:
        who = signer(alias)
        tokens = int(usd_amount * 10 ** int(x.d.usd.decimals()))
        short = tokens + x.reward_tokens - int(x.d.usd.balanceOf(who))
        x.fund(who, max(short, 0))
        filled = _request(x, lambda: x.add_liquidity(who, tokens, mint=False, settle=False), timeout)
        console.print(f"LP shares now {int(x.vault.lp_shares(who)):,}")
        if not filled:
            raise SystemExit(1)


@lp.command("remove")
@click.argument("shares")
@_on_devnet
@click.option("--timeout", default=30.0, show_default=True)
def lp_remove(shares: str, alias: str, port: int, deployment: str | None, timeout: float) -> None:
    """Burn SHARES LP shares (or `all`) for tokens at the pool value of the next round."""
    with _devnet(port, deployment) as x:
        who = signer(alias)
        held = int(x.vault.lp_shares(who))
        amount = held if shares == "all" else int(_human_amount(shares))
        if amount == 0:
            raise UserError(f"{who.address} holds no LP shares")
        _fund_reward(x, who)
        if not _request(x, lambda: x.remove_liquidity(who, amount, settle=False), timeout):
            raise SystemExit(1)


@main.command()
@click.option("--owner", default=None, callback=_address, help="Only this owner's requests (address)")
@click.option("--last", default=20, show_default=True, type=COUNT, help="How many of the newest requests")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
@_on_devnet
def orders(owner: str | None, last: int, as_json: bool, port: int, deployment: str | None, alias: str) -> None:
    """The newest requests on the router: kind, market, size, times, status."""
    from rich.table import Table

    from perpdex.readouts import ORDER_KINDS, orders as order_rows

    with _devnet(port, deployment) as x:
        count = int(x.d.router.order_count())
        rows = order_rows(x, owner, last)
        if as_json:
            _print_json(rows)
            return
        table = Table(title=f"Requests on the router ({count} in all)")
        for col in ("id", "owner", "sub", "kind", "market", "size / amount", "committed", "settle after", "deadline", "status"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(str(r["id"]), r["owner"][:10] + "…", str(r["sub"]), r["kind"], r["market"] or "-",
                          request_size(ORDER_KINDS.index(r["kind"]), r["size_delta"], r["amount"]), str(r["committed_at"]),
                          str(r["settle_after"]), str(r["deadline"]), r["status"])
        console.print(table)


# ---------------------------------------------------------------- conditional orders (SPEC 15)

CONDITIONAL_KINDS = tuple(KIND_NAMES.values())  # limit, stop, take-profit, stop-loss
CLOSING_KINDS = ("take-profit", "stop-loss")
ORDER_HINTS = {
    "router: no position to reduce": "a take-profit, stop-loss or --reduce-only order needs a position: `perpdex trade`",
    "router: take-profit at or past the price": "it would fire at once: a long's take-profit goes above the price, a short's below",
    "router: stop-loss at or past the price": "it would fire at once: a long's stop-loss goes below the price, a short's above",
    "router: bad OCO leg": "--oco-with takes an open take-profit or stop-loss of yours on the same position, not yet paired",
    "router: too many conditional orders": "cancel one first: `perpdex order list --owner ADDR`, `perpdex order cancel ID`",
}


def _positive_usd(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Decimal | None:
    return None if value is None else _human_amount(value)


def _order_size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Decimal | None:
    """--size: `all` (None: a TP/SL's whole position) or a number of base units (> 0)."""
    return None if value is None or value.lower() == "all" else _human_amount(value)


def _expiry(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, bool] | None:
    """--expiry: a duration from now ('1d', '2h', '30m', '90s': (seconds, True)) or a unix
    time (digits only: (time, False))."""
    if value is None:
        return None
    if value.isdigit():
        return int(value), False
    if value[-1:].lower() not in DURATION:
        raise click.BadParameter(f"{value!r}: give it as 1d, 2h, 30m, 90s or a unix time")
    return _seconds(value), True


def _expiry_time(expiry: tuple[int, bool] | None, now: int) -> int:
    """The last second the order may trigger (0: none), from --expiry and the chain's time now."""
    if expiry is None:
        return 0
    value, relative = expiry
    if relative:
        return now + value
    if value <= now:
        raise UserError(f"--expiry {value} is in the past (the chain's time is {now}): give 1d, 2h, 30m or a later unix time")
    return value


def _conditional_table(title: str, rows: list[dict[str, Any]]) -> Any:
    """Conditional orders as `order list` prints them: the status with how the order ended."""
    from rich.table import Table

    from perpdex.order_views import status_text

    table = Table(title=title)
    for col in ("id", "owner / sub", "market", "kind", "side", "size", "trigger", "acceptable", "expiry",
                "triggered at", "oco", "status"):
        table.add_column(col, justify="right", overflow="fold", no_wrap=col in ("kind", "market"))
    for r in rows:
        table.add_row(str(r["id"]), f"{r['owner'][:6]}…/{r['sub']}", r["market"], r["kind"], r["side"],
                      "all" if r["size"] is None else f"{r['size']:,.4f}", f"{r['trigger_usd']:,.2f}",
                      "any" if r["acceptable_usd"] is None else f"{r['acceptable_usd']:,.2f}", str(r["expiry"] or "-"),
                      str(r["triggered_at"] or "-"), str(r["oco"] or "-"), status_text(r))
    return table


class _PrintedOrderSteps(_PrintedSteps):
    """`order --example`'s steps on the terminal: accounts and orders as tables, the keeper's
    steps as their figures."""

    def orders(self, title: str, _x: Any, rows: list[dict[str, Any]]) -> None:
        console.print(_conditional_table(title, rows))

    def note(self, title: str, fields: dict[str, Any]) -> None:
        console.print(f"[bold]{title}[/bold]")
        for name, value in fields.items():
            shown = f"{value:,.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
            console.print(f"  {name.replace('_', ' ')}: {shown}")


class _JsonOrderSteps(_JsonSteps):
    """The same steps for `--json`: [{"step": title, "account" | "orders" | "figures": ...}]."""

    def orders(self, title: str, _x: Any, rows: list[dict[str, Any]]) -> None:
        self.steps.append({"step": title, "orders": rows})

    def note(self, title: str, fields: dict[str, Any]) -> None:
        self.steps.append({"step": title, "figures": fields})


@main.group("order", invoke_without_command=True)
@click.option("--example", is_flag=True, help="No devnet needed: on the embedded chain, a 10x long's take-profit / "
                                              "stop-loss pair and a gap through the stop, step by step")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP + " (with --example)")
@click.pass_context
def order_group(ctx: click.Context, example: bool, as_json: bool) -> None:
    """Conditional orders on the router (SPEC 15): limit, stop, take-profit, stop-loss.
    A keeper triggers an order once a round meets its trigger price; it then fills like a
    request at the next round, bounded by its acceptable price."""
    from perpdex.chain import frozen_clock
    from perpdex.order_views import example as order_example

    if ctx.invoked_subcommand is not None:
        if example or as_json:
            raise click.UsageError("--example and --json of `perpdex order` take no sub-command "
                                   "(`perpdex order list --json` lists orders as JSON)")
        return
    if not example:
        click.echo(ctx.get_help())
        return
    with connect(EMBEDDED), frozen_clock():  # a stopped clock: the same figures every run
        steps = order_example(_JsonOrderSteps() if as_json else _PrintedOrderSteps())
    if as_json:
        _print_json({"steps": steps})


@order_group.command("place")
@click.option("--kind", required=True, type=click.Choice(CONDITIONAL_KINDS), help="The order's kind")
@click.option("--market", required=True, help="e.g. ETH-USD")
@click.option("--trigger", required=True, callback=_positive_usd, help="Trigger price, USD")
@click.option("--size", default=None, callback=_order_size,
              help="Base units: a number, or `all` (a take-profit's or stop-loss's default: the whole position "
                   "when it fills, resized with it); a limit or stop needs a number")
@click.option("--side", type=click.Choice(["buy", "sell"]), default=None,
              help="A limit's or stop's side (required for them); a take-profit or stop-loss is on the position's other side")
@click.option("--acceptable", default=None, callback=_positive_usd,
              help="The worst fill price, USD (default: a limit's own trigger price; no bound for the other kinds)")
@click.option("--reduce-only", is_flag=True, help="Never grow or flip the position (always so for a take-profit or stop-loss)")
@click.option("--expiry", default=None, callback=_expiry, help="The last time it may trigger: 1d, 2h, 30m, 90s from now, or a unix time")
@click.option("--oco-with", type=click.IntRange(1, None), default=None,
              help="An open take-profit or stop-loss of the same position: the first to fill cancels the other")
@click.option("--sub", default=0, show_default=True, type=SUB)
@_on_devnet
def order_place(kind: str, market: str, trigger: Decimal, size: Decimal | None, side: str | None, acceptable: Decimal | None,
                reduce_only: bool, expiry: tuple[int, bool] | None, oco_with: int | None, sub: int, alias: str, port: int,
                deployment: str | None) -> None:
    """Place a conditional order (two settler rewards escrowed from the wallet, minted on the
    devnet's token when short), e.g. `perpdex order place --kind stop-loss --market ETH-USD
    --trigger 2800`, or `--kind limit --side buy --size 1.5 --trigger 2900`."""
    from ape import chain
    from ape.exceptions import ContractLogicError

    from perpdex.order_views import order_row

    signed = _signed_order_size(kind, size, side)
    with _devnet(port, deployment) as x:
        who, m = signer(alias), _market_id(x, market)
        expires = _expiry_time(expiry, int(chain.blocks.head.timestamp))
        try:
            order_id = x.place_order(who, m, kind, trigger, size=signed, acceptable=acceptable, reduce_only=reduce_only,
                                     expiry=expires, oco_with=oco_with or 0, sub=sub)
        except ContractLogicError as exc:
            hint = ORDER_HINTS.get(str(exc), "")
            raise UserError(f"order refused: {exc}" + (f" ({hint})" if hint else "")) from None
        console.print(_conditional_table(f"Order {order_id} placed", [order_row(x, order_id)]))


def _signed_order_size(kind: str, size: Decimal | None, side: str | None) -> Decimal | int:
    """The SDK's size from --size and --side: signed base units for a limit or stop (> 0 buys);
    unsigned for a take-profit or stop-loss, 0 for the whole position."""
    if kind in CLOSING_KINDS:
        if side is not None:
            raise click.BadParameter(f"a {kind} is on the position's other side: leave --side out", param_hint="'--side'")
        return size if size is not None else 0
    if side is None:
        raise click.BadParameter(f"a {kind} order needs --side buy or --side sell", param_hint="'--side'")
    if size is None:
        raise click.BadParameter(f"a {kind} order needs a number of base units (`all` is for a take-profit or stop-loss)",
                                 param_hint="'--size'")
    return size if side == "buy" else -size


@order_group.command("list")
@click.option("--owner", default=None, callback=_address, help="Only this owner's orders (address)")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table: prices in USD, sizes in base units "
                                                      "(null: the whole position), times in chain seconds")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port")
def order_list(owner: str | None, as_json: bool, deployment: str | None, port: int) -> None:
    """The conditional orders placed on the router (found from its events), oldest first: kind,
    side, size, trigger and acceptable prices, expiry, status, when triggered, OCO leg, and
    how it ended (the fill, or the cancellation's reason)."""
    from perpdex.order_views import order_rows

    with _devnet(port, deployment) as x:
        rows = order_rows(x, _event_log(x, None, deployment, contracts=[x.d.router]).events, owner)
        if as_json:
            _print_json(rows)
            return
        live = sum(r["status"] in ("open", "triggered") for r in rows)
        console.print(_conditional_table(f"Conditional orders ({len(rows)}, {live} live)", rows))


@order_group.command("cancel")
@click.argument("order_id", type=click.IntRange(1, None))
@_on_devnet
def order_cancel(order_id: int, alias: str, port: int, deployment: str | None) -> None:
    """Cancel your open conditional order ORDER_ID: both escrowed rewards come back (once
    triggered it belongs to the settlers and cannot be cancelled)."""
    from ape.exceptions import ContractLogicError

    with _devnet(port, deployment) as x:
        if int(x.conditional(order_id).status) == 0:
            raise UserError(f"no conditional order {order_id}: `perpdex order list` lists them")
        try:
            receipt = x.d.router.cancel(order_id, sender=signer(alias))
        except ContractLogicError as exc:
            raise UserError(f"cancel refused: {exc}") from None
        [cancelled] = x.events(receipt, "OrderCancelled")
        refund = int(cancelled["refund"]) / 10 ** int(x.d.usd.decimals())
        console.print(f"order {order_id} cancelled: {refund:,.2f} USD of escrow back to {cancelled['owner']}")


def _event_log(x: Any, since: int | None, deployment: str | None, contracts: list[Any] | None = None) -> Any:
    """The events of the deployment (or of `contracts`) from block `since` (default: the block
    it was deployed at)."""
    from perpdex.devnet import DEPLOYMENT_FILE, read_deployment
    from perpdex.report.events import EventLog

    log = EventLog(x, contracts)
    if since is None:
        since = int(read_deployment(Path(deployment) if deployment else DEPLOYMENT_FILE).get("block", 0))
    log.add_range(since)
    return log


def _plain(value: Any) -> Any:
    """An event argument as JSON has it: addresses and hashes as strings, ints as ints."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, str, bool)) or value is None else str(value)


def _print_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2))


@main.command()
@click.option("--since", default=None, type=click.IntRange(0, None), help="First block (default: the deployment's)")
@click.option("--owner", default=None, callback=_address, help="Only events whose owner or provider is this address")
@click.option("--name", "names", multiple=True, help="Only events of this name (repeatable), e.g. PositionModified")
@click.option("--last", default=50, show_default=True, type=COUNT, help="How many of the newest events")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port")
def events(since: int | None, owner: str | None, names: tuple[str, ...], last: int, as_json: bool,
           deployment: str | None, port: int) -> None:
    """The deployment's events (vault, oracle, keeper, router), newest last."""
    from rich.table import Table

    with _devnet(port, deployment) as x:
        found = _event_log(x, since, deployment).events
        if names:
            found = [e for e in found if e.name in names]
        if owner:
            found = [e for e in found if owner.lower() in (str(e.args.get("owner", "")).lower(),
                                                           str(e.args.get("provider", "")).lower())]
        found = found[-last:]
        if as_json:
            _print_json([{"block": e.block, "timestamp": e.timestamp, "tx": e.tx, "log_index": e.log_index,
                          "name": e.name, "args": {k: _plain(v) for k, v in e.args.items()}} for e in found])
            return
        table = Table(title=f"Events ({len(found)} shown)")
        for col in ("block", "event", "arguments"):
            table.add_column(col, overflow="fold")
        for e in found:
            table.add_row(str(e.block), e.name, ", ".join(f"{k}={_plain(v)}" for k, v in e.args.items()))
        console.print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port")
def adl(as_json: bool, deployment: str | None, port: int) -> None:
    """What market sides owe by auto-deleveraging (SPEC 14), and the ADL keeper's ranking of
    the positions that would pay it: eligible ones (no loss at the bankruptcy price), the
    highest profit per unit of equity first."""
    from datetime import datetime, timezone

    from rich.table import Table

    from perpdex import readouts
    from perpdex.keepers.adl import readout

    with _devnet(port, deployment) as x:
        rows = readout(x, list(readouts.open_accounts(_event_log(x, None, deployment).events)))
        if as_json:
            _print_json(rows)
            return
        if not rows:
            console.print("No market side owes ADL.")
            return
        for r in rows:
            expires = datetime.fromtimestamp(r["expires_at"], timezone.utc).strftime("%H:%M:%S UTC")
            table = Table(title=f"{r['market']}: the {r['owing_side']} owe {r['size']:g} at "
                                f"{r['bankruptcy_price_usd']:,.2f} USD (mark {r['mark_price_usd']:,.2f}), "
                                f"until {expires}; then the pool keeps the rest")
            for col in ("rank", "owner", "sub", "size", "entry USD", "profit USD", "equity USD", "profit / equity"):
                table.add_column(col, justify="right", overflow="fold")
            for c in r["candidates"]:
                table.add_row(str(c["rank"]), c["owner"], str(c["sub"]), f"{c['size']:g}", f"{c['entry_price_usd']:,.2f}",
                              f"{c['profit_usd']:,.2f}", f"{c['equity_usd']:,.2f}",
                              "-" if c["return_on_equity"] is None else f"{c['return_on_equity']:.3f}")
            console.print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port")
def accounts(as_json: bool, deployment: str | None, port: int) -> None:
    """Every account with a position (found from the events), the closest to liquidation
    first: equity, maintenance margin, margin ratio and each position's liquidation price."""
    from rich.table import Table

    from perpdex import readouts

    with _devnet(port, deployment) as x:
        rows = readouts.accounts(x, readouts.open_accounts(_event_log(x, None, deployment).events))
        if as_json:
            _print_json(rows)
            return
        table = Table(title=f"Accounts with positions ({len(rows)}), closest to liquidation first")
        for col in ("owner", "sub", "equity USD", "MM USD", "margin ratio", "positions (liquidation price)"):
            table.add_column(col, justify="right", overflow="fold")
        for r in rows:
            ratio = "-" if r["margin_ratio"] is None else f"{r['margin_ratio']:.3f}" + (" LIQUIDATABLE" if r["liquidatable"] else "")
            held_text = "; ".join(f"{p['market']} {p['size']:+,.4f} ({'-' if p['liquidation_price_usd'] is None else format(p['liquidation_price_usd'], ',.2f')})"
                                  for p in r["positions"])
            table.add_row(r["owner"], str(r["sub"]), f"{r['equity_usd']:,.2f}", f"{r['maintenance_margin_usd']:,.2f}", ratio, held_text)
        console.print(table)


@main.command()
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port (reads .perpdex/devnet.json)")
@click.option("--http-port", default=8050, show_default=True, type=PORT, help="The page's port")
@click.option("--host", default="127.0.0.1", show_default=True, help="The page's address (0.0.0.0: every interface)")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
def dashboard(port: int, http_port: int, host: str, deployment: str | None) -> None:
    """A live web page over the devnet, updated every block: markets (price, skew, open
    interest, funding now and predicted), pool value and insurance fund over time, accounts
    closest to liquidation first, pending requests, recent liquidations, keeper status."""
    from perpdex.dashboard import Board
    from perpdex.dashboard_server import listen, serve
    from perpdex.devnet import DEPLOYMENT_FILE, read_deployment

    try:
        sock = listen(host, http_port)  # before the devnet: a port in use is the first thing to hear of
    except OSError as exc:
        raise UserError(f"cannot serve the page on {host}:{http_port}: {exc.strerror or exc}; "
                        "give another --http-port (or --host)") from None
    with sock, _devnet(port, deployment) as x:
        since = int(read_deployment(Path(deployment) if deployment else DEPLOYMENT_FILE).get("block", 0))
        serve(Board(x, since), sock, say=console.print)


def request_size(kind: int, size_delta: int, amount: int) -> str:
    """The `orders` table's size / amount: "all" for a close; "-" for a finished request whose
    body slot a later request of its account reused (the router then returns 0, and no
    committed request has a zero size or amount; its events keep the figures)."""
    if kind == 1:
        return "all"
    value = size_delta if kind == 0 else amount
    if value == 0:
        return "-"
    return f"{value / WAD:+,.6f}" if kind == 0 else f"{value:,}"


def _fund_reward(x: Any, who: Any) -> None:
    """The settlement reward the router escrows, minted (devnet token) if the wallet is short."""
    if int(x.d.usd.balanceOf(who)) < x.reward_tokens or int(x.d.usd.allowance(who, x.d.router)) < x.reward_tokens:
        x.fund(who, x.reward_tokens)


def _keeper_node(fn: Any) -> Any:
    """--network, --port, --rpc and --deployment: where an event-indexed keeper runs."""
    fn = click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")(fn)
    fn = click.option("--rpc", default=None, help="Node URL, e.g. http://127.0.0.1:8545 (default: the devnet at --port)")(fn)
    fn = click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port (ignored with --rpc)")(fn)
    return click.option("--network", default=DEVNET, show_default=True, help=NETWORK_HELP)(fn)


@main.group()
def keeper() -> None:
    """Keeper bots, run against the devnet (or any Ape network with a deployment file)."""


KEEPER_ACCOUNT_HELP = "Ape account alias, or N for test account N (default 0)"


@keeper.command("funding")
@click.option("--port", default=8545, show_default=True, type=PORT, help="The devnet's port (reads .perpdex/devnet.json)")
@click.option("--deployment", default=None, help="Deployment file (default .perpdex/devnet.json)")
@click.option("--account", "alias", default=None, help=KEEPER_ACCOUNT_HELP)
@launch.funding_options
def keeper_funding(port: int, deployment: str | None, alias: str | None, **options: Any) -> None:
    """Poke idle markets so funding stays accrued. Stateless: safe to restart or run twice."""
    with _devnet(port, deployment) as x:
        launch.funding(x, signer(alias), **options)


@keeper.command("liquidator")
@_keeper_node
@click.option("--account", "alias", default=None, help=KEEPER_ACCOUNT_HELP)
@launch.liquidator_options
def keeper_liquidator(network: str, port: int, rpc: str | None, deployment: str | None, alias: str | None,
                      **options: Any) -> None:
    """Liquidate unhealthy accounts: event-indexed (SQLite, survives restarts), riskiest first,
    batched, crash-safe; an account that cannot be liquidated is skipped (with its reason) and
    retried with backoff; dust not worth its gas is left alone; stuck batches are fee-bumped."""
    with _devnet(port, deployment, network, rpc) as x:
        launch.liquidator(x, signer(alias), **options)


@keeper.command("adl")
@_keeper_node
@click.option("--account", "alias", default=None, help=KEEPER_ACCOUNT_HELP + "; it must hold the vault's deleverager role")
@launch.adl_options
def keeper_adl(network: str, port: int, rpc: str | None, deployment: str | None, alias: str | None, **options: Any) -> None:
    """Auto-deleverage: when bad debt beyond the insurance fund and the pool's loss cap is owed
    by a market side, close its most profitable positions at the bankruptcy price."""
    from perpdex import readouts

    with _devnet(port, deployment, network, rpc) as x:
        def accounts() -> list[tuple[Any, int]]:
            return list(readouts.open_accounts(_event_log(x, None, deployment).events))

        launch.adl(x, signer(alias), accounts, **options)


@keeper.command("settler")
@_keeper_node
@click.option("--account", "alias", default=None, help=KEEPER_ACCOUNT_HELP)
@launch.settler_options
def keeper_settler(network: str, port: int, rpc: str | None, deployment: str | None, alias: str | None,
                   **options: Any) -> None:
    """Settle the router's due requests (and cancel expired ones): event-indexed, batched, safe to kill and restart."""
    with _devnet(port, deployment, network, rpc) as x:
        launch.settler(x, signer(alias), **options)


@keeper.command("orders")
@_keeper_node
@click.option("--account", "alias", default=None, help=KEEPER_ACCOUNT_HELP)
@launch.orders_options
def keeper_orders(network: str, port: int, rpc: str | None, deployment: str | None, alias: str | None,
                  **options: Any) -> None:
    """Trigger conditional orders whose price is reached, settle them at their round, prune dead
    ones: event-indexed (SQLite), batched settles, a journal of what it sent: safe to kill and restart."""
    with _devnet(port, deployment, network, rpc) as x:
        launch.orders(x, signer(alias), **options)


@keeper.command("feeder")
@_keeper_node
@click.option("--account", "alias", default=None, help="Ape account alias of a feeder, or N for test account N (default 0)")
@launch.feeder_options
def keeper_feeder(network: str, port: int, rpc: str | None, deployment: str | None, alias: str | None,
                  **options: Any) -> None:
    """Write a round of every market each interval and settle the requests it made due."""
    with _devnet(port, deployment, network, rpc) as x:
        launch.feeder(x, signer(alias), **options)


@main.command()
@click.option("--machine", default="exchange", show_default=True, help="The state machine: exchange or router")
@click.option("--profile", default="quick", show_default=True,
              help="Each worker's run: smoke, quick, ci or long (its campaign-* variant: not derandomized)")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core)")
@click.option("--seed", type=int, default=None, help="Campaign seed; each worker's derives from it (default: random)")
@click.option("--db", default=None, help="Hypothesis example database directory, shared by every worker "
              "(default: .perpdex/fuzz-db)")
@click.option("--backend", default=None, help="revm or ape: PERPDEX_FUZZ_BACKEND for the workers "
              "(default: as the environment has it, else the machines' own)")
@click.option("--max-minutes", type=float, default=None, help="Stop every worker after this long (default: no limit)")
@click.option("--logs", default=None, help="Each campaign's directory (worker logs, merged summary.json) goes here "
              "(default: .perpdex/fuzz-runs)")
def fuzz(machine: str, profile: str, workers: int | None, seed: int | None, db: str | None, backend: str | None,
         max_minutes: float | None, logs: str | None) -> None:
    """A fuzzing campaign: N seeded workers run the state machine, share one example database,
    report live; the first failure stops them all and prints its replay command. Exit 0: no
    failure, 1: a failure, 2: bad usage, 130: interrupted."""
    from perpdex.fuzz_campaign import UsageError, campaign_from_options, run_campaign

    try:
        campaign = campaign_from_options(machine, profile, workers, seed, db, backend, max_minutes, logs)
    except UsageError as exc:
        click.echo(f"perpdex fuzz: {exc}", err=True)
        raise SystemExit(2) from None
    raise SystemExit(run_campaign(campaign))


BENCH_PARTS = ("gas", "funding", "fuzz", "demo", "anvil", "liquidator", "adl", "orders")


@main.group(invoke_without_command=True)
@click.option("--skip", multiple=True, type=click.Choice(BENCH_PARTS), help="Leave a part out (repeatable)")
@click.option("--counts", default="1,100,1000", show_default=True, help="Funding flatness: open positions to measure at")
@click.option("--fuzz-profile", default="quick", show_default=True, help="PERPDEX_FUZZ_PROFILE of the fuzz-speed run")
@click.option("--demo-traders", default=50, show_default=True)
@click.option("--demo-blocks", default=200, show_default=True)
@click.option("--liquidator-accounts", default=200, show_default=True, help="Underwater accounts the bot clears (x8)")
@click.pass_context
def bench(ctx: click.Context, skip: tuple[str, ...], counts: str, fuzz_profile: str, demo_traders: int,
          demo_blocks: int, liquidator_accounts: int) -> None:
    """Benchmarks that print figures. Without a sub-command, all of them in one run (about 11
    minutes): the gas table, funding flatness, fuzz steps/s, demo blocks/s on the embedded
    chain and on Anvil, the liquidator bot's accounts cleared per second on Anvil, a gap
    into ADL on Anvil (the liquidator bot, then the ADL keeper), and the order keeper's
    orders settled per second on Anvil (500 stops, one gap)."""
    if ctx.invoked_subcommand is not None:
        return
    started, figures = time.monotonic(), []
    parts = [p for p in BENCH_PARTS if p not in skip]
    for part in parts:
        console.rule(f"[bold]bench: {part}")
        t0 = time.monotonic()
        if part == "gas":
            figures += _bench_gas(EXACT, 50)
        elif part == "funding":
            figures += _bench_funding(EXACT, counts)
        elif part == "fuzz":
            figures += _bench_fuzz(fuzz_profile)
        elif part in ("demo", "anvil"):
            figures += _bench_demo(EMBEDDED if part == "demo" else DEVNET, demo_traders, demo_blocks)
        elif part == "liquidator":
            figures += _bench_liquidator(liquidator_accounts)
        elif part == "orders":
            figures += _bench_orders(ORDERS_BOOK)
        else:
            figures += _bench_adl(GAP_PER_OWNER)
        console.print(f"[dim]{part}: {time.monotonic() - t0:.0f}s[/dim]")
    console.print(_figures_table(figures, time.monotonic() - started))


def _figures_table(figures: list[tuple[str, str]], seconds: float) -> Any:
    from rich.table import Table

    table = Table(title=f"perpdex bench ({seconds / 60:.1f} min)")
    table.add_column("benchmark")
    table.add_column("figure", justify="right")
    for name, figure in figures:
        table.add_row(name, figure)
    return table


@bench.command("gas")
@click.option("--network", default=EXACT, show_default=True, help="Needs real receipts: not the boa provider")
@click.option("--batch", default=50, show_default=True, help="Accounts in the measured liquidate_many (0: none)")
def bench_gas(network: str, batch: int) -> None:
    """Gas of every user action and of liquidations (py-evm receipts include the 21,000 intrinsic gas)."""
    _bench_gas(network, batch)


def _bench_gas(network: str, batch: int) -> list[tuple[str, str]]:
    from perpdex.bench import SIZE_LIMIT, contract_sizes, gas_rows, liquidation_rows, router_rows

    with connect(network), console.status("measuring") as status:
        rows = gas_rows(progress=lambda step: status.update(f"measured {step}"))
        routed = router_rows(batch, progress=lambda step: status.update(f"router: {step}"))
        liquidations = liquidation_rows(batch, progress=lambda step: status.update(f"liquidations: {step}"))
        sizes = contract_sizes()
    console.print(_gas_table(f"Gas used, atomic trading (margin math; {network})", rows))
    console.print(_gas_table(f"Two-step requests through the OrderRouter ({network})", routed))
    console.print(_gas_table(f"Liquidations through the LiquidationKeeper ({network})", liquidations))
    console.print(_sizes_table(sizes))
    measured = rows + routed + liquidations
    over = [r.action for r in measured if r.target and not r.ok]
    vault_free = SIZE_LIMIT - sizes["MarginVault"]
    return [(f"gas ({network})", f"{len(measured)} actions, {len(over)} over target" + (f": {', '.join(over)}" if over else "")),
            ("contract sizes (bytes)", ", ".join(f"{n} {b:,}" for n, b in sizes.items()) + f"; vault {vault_free:,} free")]


def _sizes_table(sizes: dict[str, int]) -> Any:
    from rich.table import Table

    from perpdex.bench import SIZE_LIMIT, VAULT_ROOM

    table = Table(title=f"Contract sizes (runtime bytecode; limit {SIZE_LIMIT:,} B)")
    for col in ("contract", "bytes", "free"):
        table.add_column(col, justify="right")
    for name, size in sizes.items():
        free = SIZE_LIMIT - size
        ok = free >= VAULT_ROOM if name == "MarginVault" else free >= 0
        table.add_row(name, f"{size:,}", f"[{'green' if ok else 'red'}]{free:,}[/]")
    return table


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
    _bench_funding(network, counts)


def _bench_funding(network: str, counts: str) -> list[tuple[str, str]]:
    from perpdex.bench import funding_flatness, is_flat, max_deviation

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
    trade = ", ".join(f"{r.positions:,}: {r.increase_gas:,}" for r in rows)
    verdict = "flat" if is_flat(rows) else "NOT flat"
    return [("funding flatness (trade gas by positions open)", f"{trade} ({verdict}, max {max_deviation(rows):.2f}%)")]


@bench.command("fuzz")
@click.option("--profile", default="quick", show_default=True, help="PERPDEX_FUZZ_PROFILE (quick, ci, long)")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["revm", "ape"]),
              help="Only this backend (repeatable; default: both, side by side)")
def bench_fuzz(profile: str, backends: tuple[str, ...]) -> None:
    """The exchange state machine's steps per second on each backend (child test runs), and
    where a revm step's time goes (the revm run under cProfile)."""
    _bench_fuzz(profile, backends or ("revm", "ape"))


def _bench_fuzz(profile: str, backends: tuple[str, ...] = ("revm", "ape")) -> list[tuple[str, str]]:
    import tempfile

    from rich.table import Table

    from perpdex.bench_live import fuzz_rate, fuzz_split

    figures, table = [], Table(title=f"Exchange machine, {profile} profile, every check on (one core each)")
    for col in ("backend", "steps/s", "steps", "examples", "seconds", "result"):
        table.add_column(col, justify="right")
    split: dict[str, float] = {}
    for backend in backends:
        with console.status(f"fuzz: {profile} on {backend}"):
            r = fuzz_rate(profile, backend)
        if backend == "revm":
            # a second run under cProfile (which slows every Python call: shares, not the rate)
            with tempfile.TemporaryDirectory() as scratch, console.status(f"fuzz: {profile} on revm, profiled"):
                stats = Path(scratch) / "fuzz.prof"
                fuzz_rate(profile, backend, profile_to=stats)
                split = fuzz_split(stats)
        verdict = "no violation" if not r.failed else f"[red]FAILED[/red]: {r.failed.splitlines()[0]}"
        table.add_row(backend, f"{r.per_second:,.1f}", f"{r.steps:,}", str(r.examples), f"{r.seconds:.1f}", verdict)
        figures.append((f"fuzz steps/s ({backend}, {profile})",
                        f"{r.per_second:,.1f} steps/s ({r.steps:,} steps, {r.examples} examples in {r.seconds:.0f}s; {verdict})"))
    console.print(table)
    if split:
        parts = ", ".join(f"{name} {share:.0%}" for name, share in sorted(split.items(), key=lambda kv: -kv[1]))
        console.print(f"where a revm step's time goes (cProfile of the revm run): {parts}")
        figures.append(("fuzz step split (revm)", parts))
    return figures


@bench.command("demo")
@click.option("--network", default=EMBEDDED, show_default=True, type=SIM_NETWORK, help=NETWORK_HELP)
@click.option("--traders", default=50, show_default=True, type=COUNT)
@click.option("--blocks", default=200, show_default=True, type=COUNT)
def bench_demo(network: str, traders: int, blocks: int) -> None:
    """The demo's blocks per second (the block loop: prices, trades, keepers)."""
    _bench_demo(network, traders, blocks)


def _bench_demo(network: str, traders: int, blocks: int) -> list[tuple[str, str]]:
    from perpdex.sim import scenario, simulate
    from perpdex.sim.ui import progress_bar

    with progress_bar(console, f"demo on {network}") as on_block:
        result = simulate(scenario("demo", traders=traders, blocks=blocks, network=network), on_block)
    checks = "all checks passed" if result.report.ok else f"{len(result.report.failed)} check(s) FAILED"
    line = (f"{result.blocks_per_second:.1f} blocks/s ({traders} traders, {blocks} blocks in {result.wall_seconds:.1f}s, "
            f"{int(result.report.summary['trades']):,} trades; {checks})")
    console.print(f"demo on {network}: {line}")
    return [(f"demo blocks/s ({network})", line)]


@bench.command("liquidator")
@click.option("--accounts", "count", default=200, show_default=True, help="Underwater accounts (8 owners x N subs)")
def bench_liquidator(count: int) -> None:
    """The liquidator bot (a separate process) clearing an underwater book on Anvil."""
    _bench_liquidator(count)


def _bench_liquidator(count: int) -> list[tuple[str, str]]:
    from perpdex.bench_live import liquidator_rate

    with console.status(f"Anvil: {count} underwater accounts, the liquidator bot clearing them"):
        r = liquidator_rate(per_owner=max(1, count // 8))
    line = f"{r.per_second:.1f} accounts/s ({r.accounts} accounts in {r.seconds:.1f}s, {r.transactions} transactions)"
    console.print(f"liquidator on Anvil: {line}\n  last status: {r.status}")
    return [(f"liquidator bot accounts/s ({DEVNET})", line)]


@bench.command("orders")
@click.option("--orders", "count", default=500, show_default=True, help="Open sell stops in the book (8 per sub-account)")
def bench_orders(count: int) -> None:
    """The order keeper (a separate process) on Anvil: a book of stops, one price gap through
    them all; its orders settled per second, from the gap to the last fill."""
    _bench_orders(count)


ORDERS_BOOK = 500  # stops the order keeper triggers and settles in `perpdex bench`


def _bench_orders(count: int) -> list[tuple[str, str]]:
    from perpdex.bench_live import orders_rate

    with console.status(f"Anvil: {count} stops, a gap through them, the order keeper triggering and settling them"):
        r = orders_rate(count)
    console.print(f"order keeper on Anvil ({DEVNET}): {r.per_second:.1f} orders/s ({r.orders} stops, {r.filled} filled: "
                  f"triggered in {r.trigger_seconds:.1f}s, settled {r.settle_seconds:.1f}s after their round; "
                  f"{r.transactions} transactions; the book took {r.setup_seconds:.0f}s to place)")
    return [("order keeper (Anvil)", f"{r.per_second:.1f} orders/s: {r.filled} of {r.orders} stops filled in "
                                     f"{r.transactions} transactions")]


GAP_PER_OWNER = 10  # 4 owners x 10: 40 shorts bankrupt by the gap


@bench.command("adl")
@click.option("--per-owner", default=GAP_PER_OWNER, show_default=True, help="Bankrupt shorts per owner (x4)")
def bench_adl(per_owner: int) -> None:
    """A gap on Anvil past the pool's loss cap: the liquidator bot (a separate process) clears
    the bankrupt accounts, skipping a stale-market attacker and a dust account; the bad debt's
    waterfall; `perpdex adl --json`; one `perpdex keeper adl` pass closing what is owed."""
    _bench_adl(per_owner)


def _bench_adl(per_owner: int) -> list[tuple[str, str]]:
    from rich.table import Table

    from perpdex.bench_live import gap_into_adl

    with console.status(f"Anvil: {4 * per_owner} shorts bankrupt by a gap, the liquidator bot, then the ADL keeper"):
        f = gap_into_adl(per_owner)
    w = f.waterfall
    table = Table(title=f"A gap into ADL on Anvil ({DEVNET}; ETH 3,000 -> 3,600, pool loss cap 0.1%)")
    table.add_column("figure")
    table.add_column("value", justify="right", overflow="fold")
    rows = [
        ("underwater after the gap", f"{f.underwater} ({len(w.liquidated)} bankrupt shorts, an attacker, a dust account)"),
        ("liquidated per transaction", ", ".join(str(n) for n in w.per_tx.values())),
        ("blocks / seconds to clear", f"{f.blocks_to_clear} block(s) after the gap's; {f.seconds_to_clear:.2f}s "
                                      f"({len(w.liquidated) / max(f.seconds_to_clear, 1e-9):.1f} accounts/s)"),
        ("gas per batch / per liquidation", f"{', '.join(f'{g:,}' for g in f.gas_per_tx)} / "
                                            f"{sum(f.gas_per_tx) // max(len(w.liquidated), 1):,}"),
        ("skipped (stale market)", "; ".join(f.skipped) or "none"),
        ("dust left alone", "; ".join(f.dust) or "none"),
        ("bad debt", f"{w.bad_debt:,.2f} USD"),
        ("  from insurance / pool / to ADL", f"{w.from_insurance:,.2f} / {w.from_pool:,.2f} / {w.to_adl:,.2f} USD"),
        ("ADL booked / ranked", f"{w.adl_booked:g} ETH / {f.ranked} eligible position(s)"),
        ("ADL keeper pass", f"{f.adl.positions} deleverage(s), {f.adl.size:g} ETH, {f.adl.notional:,.2f} USD notional at "
                            f"the bankruptcy price, {f.adl.recovered:,.2f} USD recovered, {f.adl_gas:,} gas, "
                            f"{f.adl_seconds:.2f}s; {f.pending_after / WAD:g} ETH still owed"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    line = (f"{len(w.liquidated)} bankrupt in {len(w.per_tx)} tx ({f.seconds_to_clear:.1f}s); bad debt {w.bad_debt:,.0f}: "
            f"pool {w.from_pool:,.0f}, ADL {w.to_adl:,.0f}; ADL pass {f.adl.positions} closes, {f.adl.recovered:,.0f} "
            f"recovered in {f.adl_seconds:.1f}s")
    return [(f"gap into ADL ({DEVNET})", line)]


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
