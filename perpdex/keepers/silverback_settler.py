"""The settler as a Silverback bot: the same `Settler.step()` as `perpdex keeper settler`
(index the router's events, settle what is due), on every new block.

    PERPDEX_DEPLOYMENT=.perpdex/devnet.json PERPDEX_DB=.perpdex/settler.db \\
    silverback run perpdex.keepers.silverback_settler:bot --network ethereum:local:foundry \\
        --account TEST::2 --provider-settings '{"host": "http://127.0.0.1:8545", "manage_process": false}'
"""

from __future__ import annotations

from typing import Any

from ape.logging import logger

from perpdex.keepers.settler import RequestIndex, Settler
from perpdex.keepers.silverback_common import block_bot, exchange_from_env


def _build(signer: Any) -> Settler:
    x, db = exchange_from_env("settler.db")
    bot = Settler(x, signer, RequestIndex(db), report=logger.success)
    logger.success(f"perpdex settler: router {x.d.router.address}, index {bot.index.path}")
    return bot


bot = block_bot("settler", _build)
