"""`ape run deploy --network ethereum:local:foundry` — deploys perpdex with the default config.

Thin wrapper around perpdex.deploy.deploy_system; choose the signer with --account.
"""

import click
from ape.cli import ConnectedProviderCommand, account_option

from perpdex.deploy import deploy_system
from perpdex.display import print_system
from perpdex.sdk import Exchange


@click.command(cls=ConnectedProviderCommand)
@account_option()
def cli(account):
    print_system(Exchange(deploy_system(account)))
