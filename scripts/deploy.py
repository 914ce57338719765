"""`ape run deploy --network ethereum:local:foundry --account ALIAS`: deploy perpdex with the
default config and write the deployment file the keepers read (`--deployment`, default
.perpdex/devnet.json), as `perpdex devnet` does (perpdex.devnet.record_deployment).

On Anvil the node is the devnet (perpdex.ape_scripts: the deployment file's rpc_url, else
http://127.0.0.1:8545, unless APE_FOUNDRY_HOST is set). On an in-process chain (boa, the
test chain) nothing is written: the deployment ends with the script."""

import click
from ape.cli import account_option

from perpdex.ape_scripts import DevnetCommand, deployment_path, deployment_option
from perpdex.deploy import deploy_system
from perpdex.devnet import record_deployment
from perpdex.display import console, print_system
from perpdex.sdk import Exchange


@click.command(cls=DevnetCommand)
@account_option()
@deployment_option
def cli(account, deployment, provider):
    x = Exchange(deploy_system(account))
    print_system(x)
    if provider.http_uri:  # a node other processes can reach
        console.print(f"deployment written to {record_deployment(x, provider, deployment_path(deployment))}")
