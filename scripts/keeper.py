"""`ape run keeper liquidator|funding|settler|orders|feeder --network ethereum:local:foundry --account ALIAS`:
perpdex's keeper bots as Ape scripts, with the options of `perpdex keeper ...` (the same code:
perpdex.keepers.launch). The network comes from `--network`, the signer from `--account`
(`TEST::0` for test account 0, the deployer and price feeder), the deployment from
`--deployment` (default .perpdex/devnet.json); on Anvil the node is the devnet
(perpdex.ape_scripts: the file's rpc_url, unless APE_FOUNDRY_HOST is set). With
`--log-format json` stdout is JSON lines only (Ape's INFO lines are off)."""

import click
from ape.cli import account_option

from perpdex.ape_scripts import DevnetCommand, attached, deployment_option, json_only
from perpdex.keepers import launch


@click.group()
def cli():
    """perpdex's keeper bots (see `perpdex keeper --help`)."""


@cli.command(cls=DevnetCommand)
@account_option()
@deployment_option
@launch.funding_options
def funding(account, deployment, **options):
    """Poke idle markets so funding stays accrued. Stateless: safe to restart or run twice."""
    json_only(options["log_format"])
    launch.funding(attached(deployment), account, **options)


@cli.command(cls=DevnetCommand)
@account_option()
@deployment_option
@launch.liquidator_options
def liquidator(account, deployment, **options):
    """Liquidate unhealthy accounts: event-indexed, riskiest first, batched, crash-safe."""
    json_only(options["log_format"])
    launch.liquidator(attached(deployment), account, **options)


@cli.command(cls=DevnetCommand)
@account_option()
@deployment_option
@launch.settler_options
def settler(account, deployment, **options):
    """Settle the router's due requests (and cancel expired ones)."""
    json_only(options["log_format"])
    launch.settler(attached(deployment), account, **options)


@cli.command(cls=DevnetCommand)
@account_option()
@deployment_option
@launch.orders_options
def orders(account, deployment, **options):
    """Trigger, settle and prune conditional orders (SPEC 15)."""
    json_only(options["log_format"])
    launch.orders(attached(deployment), account, **options)


@cli.command(cls=DevnetCommand)
@account_option()
@deployment_option
@launch.feeder_options
def feeder(account, deployment, **options):
    """Write a round of every market each interval and settle the requests it made due."""
    json_only(options["log_format"])
    launch.feeder(attached(deployment), account, **options)
