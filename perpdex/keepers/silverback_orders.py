"""The order keeper as a Silverback bot: the same `OrderKeeper.step()` as `perpdex keeper
orders` (index the router's conditional orders, trigger, settle, prune), on every new block.

    PERPDEX_DEPLOYMENT=.perpdex/devnet.json PERPDEX_DB=.perpdex/orders.db \\
    silverback run perpdex.keepers.silverback_orders:bot --network ethereum:local:foundry \\
        --account TEST::2 --provider-settings '{"host": "http://127.0.0.1:8545", "manage_process": false}'

It keeps its state in the same SQLite index as the command: run one or the other per index.
"""

from __future__ import annotations

from typing import Any

from ape.logging import logger

from perpdex.keepers.orders import OrderIndex, OrderKeeper
from perpdex.keepers.silverback_common import block_bot, exchange_from_env


def _build(signer: Any) -> OrderKeeper:
    x, db = exchange_from_env("orders.db")
    bot = OrderKeeper(x, signer, OrderIndex(db), report=logger.success)
    logger.success(f"perpdex order keeper: router {x.d.router.address}, index {bot.index.path}")
    return bot


bot = block_bot("order keeper", _build)
