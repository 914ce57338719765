"""The liquidator as a Silverback bot: the same `Liquidator.step()` as `perpdex keeper
liquidator`, run on every new block by Silverback's runner instead of our own loop.

    PERPDEX_DEPLOYMENT=.perpdex/devnet.json PERPDEX_DB=.perpdex/liquidator.db \\
    silverback run perpdex.keepers.silverback_bot:bot --network ethereum:local:foundry \\
        --account TEST::2 --provider-settings '{"host": "http://127.0.0.1:8545", "manage_process": false}'

State lives in the same SQLite index, so the two runners can replace each other (not run
side by side with one index: pick one).
"""

from __future__ import annotations

from typing import Any

from ape.logging import logger

from perpdex.keepers.index import AccountIndex
from perpdex.keepers.liquidator import Liquidator
from perpdex.keepers.silverback_common import block_bot, exchange_from_env


def _build(signer: Any) -> Liquidator:
    x, db = exchange_from_env("liquidator.db")
    bot = Liquidator(x, signer, AccountIndex(db), report=logger.success)
    logger.success(f"perpdex liquidator: keeper {x.d.keeper.address}, index {bot.index.path}")
    return bot


bot = block_bot("liquidator", _build)
