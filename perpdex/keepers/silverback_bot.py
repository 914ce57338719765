"""The liquidator as a Silverback bot: the same `Liquidator.step()` as `perpdex keeper
liquidator`, run on every new block by Silverback's runner instead of our own loop.

    PERPDEX_DEPLOYMENT=.perpdex/devnet.json PERPDEX_DB=.perpdex/liquidator.db \\
    silverback run perpdex.keepers.silverback_bot:bot --network ethereum:local:foundry \\
        --account TEST::2 --provider-settings '{"host": "http://127.0.0.1:8545", "manage_process": false}'

State lives in the same SQLite index, so the two runners can replace each other (not run
side by side with one index: pick one).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from ape import chain
from ape.logging import logger
from silverback import SilverbackBot

from perpdex.deploy import attach
from perpdex.devnet import DEPLOYMENT_FILE, STATE_DIR, read_deployment
from perpdex.keepers.index import AccountIndex
from perpdex.keepers.liquidator import Liquidator
from perpdex.sdk import Exchange

bot = SilverbackBot(signer_required=True)
_liquidator: list[Liquidator] = []  # set at startup
_one_at_a_time = threading.Lock()  # handlers may run in a pool: passes must not overlap


def _build() -> Liquidator:
    deployment = Path(os.environ.get("PERPDEX_DEPLOYMENT", DEPLOYMENT_FILE))
    db = Path(os.environ.get("PERPDEX_DB", STATE_DIR / "liquidator.db"))
    x = Exchange(attach(read_deployment(deployment)))
    return Liquidator(x, bot.signer, AccountIndex(db), report=logger.success)


@bot.on_startup()
def start(_: Any) -> None:
    _liquidator.append(_build())
    logger.success(f"perpdex liquidator: keeper {_liquidator[0].x.d.keeper.address}, index {_liquidator[0].index.path}")


@bot.on_(chain.blocks)
def each_block(block: Any) -> int:
    """One liquidator pass per block; the count liquidated is the task's result (a metric)."""
    with _one_at_a_time:
        return _liquidator[0].step()
