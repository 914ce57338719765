"""What perpdex's Ape scripts share (`ape run deploy`, `ape run keeper ...`: scripts/): the
deployment file option, the Anvil they talk to, and attaching to the deployment.

Ape picks the network from `--network` and the signer from `--account`. With
`--network ethereum:local:foundry` ape-foundry talks to the node at APE_FOUNDRY_HOST, or else
to its configured host (ape-config.yaml: `auto`, a throwaway Anvil on a random port: right
for tests, wrong for a devnet). So unless APE_FOUNDRY_HOST is set, these scripts aim it at the
devnet: the node the deployment file records (`rpc_url`, written by `perpdex devnet` and
`ape run deploy`), else `perpdex devnet`'s default http://127.0.0.1:8545; if nothing answers
there the script stops with one line instead of starting an Anvil of its own."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
from ape.cli import ConnectedProviderCommand

from perpdex.errors import UserError

FOUNDRY_HOST_VARIABLE = "APE_FOUNDRY_HOST"

deployment_option = click.option(
    "--deployment", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Deployment file (default .perpdex/devnet.json); on Anvil its rpc_url is the node, unless APE_FOUNDRY_HOST is set")


def deployment_path(deployment: Path | None) -> Path:
    from perpdex.devnet import DEPLOYMENT_FILE

    return deployment or DEPLOYMENT_FILE


def devnet_url(deployment: Path | None) -> str:
    """The node the deployment file records (`rpc_url`), else the devnet's default URL."""
    from perpdex.devnet import host_url

    path = deployment_path(deployment)
    recorded = json.loads(path.read_text()).get("rpc_url") if path.exists() else None
    return str(recorded or host_url())


def aim_at_devnet(provider: Any, deployment: Path | None) -> None:
    """On Anvil (ape-foundry) without APE_FOUNDRY_HOST: set it to `devnet_url`, and make Ape
    wait for each transaction's block (perpdex.chain.wait_for_blocks: a devnet may mine on a
    clock). UserError when nothing answers there. Other networks are left as Ape sets them."""
    from perpdex.chain import wait_for_blocks
    from perpdex.devnet import is_listening

    if getattr(provider, "name", None) != "foundry":
        return
    wait_for_blocks()
    if os.environ.get(FOUNDRY_HOST_VARIABLE):
        return
    url = devnet_url(deployment)
    parsed = urlparse(url)
    if not is_listening(parsed.port or 8545, parsed.hostname or "127.0.0.1"):
        raise UserError(f"no devnet at {url}: start one with `perpdex devnet` (or set {FOUNDRY_HOST_VARIABLE} to the node's URL)")
    os.environ[FOUNDRY_HOST_VARIABLE] = url


class DevnetCommand(ConnectedProviderCommand):
    """Ape's ConnectedProviderCommand (`--network`, connected for the callback) that, before it
    connects, aims an Anvil network at the devnet of its `--deployment` (`aim_at_devnet`)."""

    def invoke(self, ctx: click.Context) -> Any:
        aim_at_devnet(ctx.params.get("network"), ctx.params.get("deployment"))
        return super().invoke(ctx)


def json_only(log_format: str) -> None:
    """With `--log-format json`, stdout is JSON lines only: Ape's own INFO lines (each
    transaction confirmed), which it prints to stdout too, are off; its warnings still show."""
    from ape.logging import logger

    if log_format == "json":
        logger.set_level("WARNING")


def attached(deployment: Path | None) -> Any:
    """An Exchange on the deployment of the file, on the connected network."""
    from perpdex.deploy import attach
    from perpdex.devnet import read_deployment
    from perpdex.sdk import Exchange

    return Exchange(attach(read_deployment(deployment_path(deployment))))
