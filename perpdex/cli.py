"""The `perpdex` command line: demo, deploy, devnet, show, bench."""

from __future__ import annotations

import time
import warnings

import click

from perpdex.chain import DEVNET, EMBEDDED, EXACT, connect, signer, test_signers
from perpdex.display import account_tables, console, print_system

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
    from perpdex.deploy import attach
    from perpdex.devnet import host_url, read_deployment
    from perpdex.sdk import Exchange

    with connect(DEVNET, host=host_url(port)):
        x = Exchange(attach(read_deployment()))
        print_system(x)
        if owner:
            for table in account_tables(x, owner, sub):
                console.print(table)


@main.group()
def bench() -> None:
    """Benchmarks that print figures."""


@bench.command("gas")
@click.option("--network", default=EXACT, show_default=True, help="Needs real receipts: not the boa provider")
def bench_gas(network: str) -> None:
    """Gas of every user action (py-evm receipts include the 21,000 intrinsic gas)."""
    from rich.table import Table

    from perpdex.bench import gas_rows

    with connect(network), console.status("measuring") as status:
        rows = gas_rows(progress=lambda step: status.update(f"measured {step}"))
    table = Table(title=f"Gas used ({network})")
    for col in ("action", "gas", "target", ""):
        table.add_column(col, justify="right")
    for row in rows:
        mark = "[green]ok[/green]" if row.ok else "[red]over[/red]"
        table.add_row(row.action, f"{row.gas:,}", f"{row.target:,}" if row.target else "-", mark if row.target else "")
    console.print(table)

