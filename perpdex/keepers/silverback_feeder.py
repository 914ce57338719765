"""The price feeder as a Silverback bot: on every new block, when at least PERPDEX_FEEDER_INTERVAL
seconds of chain time have passed since the last round it wrote, the same pass as `perpdex keeper
feeder` (`PriceFeeder.step_if_due`: a round of every market, then the requests it made due settled).

It needs a node that makes blocks on a clock (`perpdex devnet --block-time 1 --no-feeder`): on an
automining Anvil a block comes only with a transaction, so after its own round (a block that is not
due yet) nothing wakes the bot but other people's transactions, and rounds stop.

    PERPDEX_DEPLOYMENT=.perpdex/devnet.json PERPDEX_DB=.perpdex/feeder-settler.db PERPDEX_FEEDER_INTERVAL=2 \\
    APE_FOUNDRY_HOST=http://127.0.0.1:8545 \\
    silverback run perpdex.keepers.silverback_feeder:bot --network ethereum:local:foundry --account TEST::0

PERPDEX_FEEDER_PATH (hold, gbm or replay; default hold), PERPDEX_FEEDER_SEED (for gbm, default 7)
and PERPDEX_FEEDER_FILE (for replay) pick the prices, as the command's --path, --seed and --file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ape import chain
from ape.logging import logger

from perpdex.devnet import automine
from perpdex.keepers.feeder import PriceFeeder, check_feeder, settings_from_env, source
from perpdex.keepers.settler import RequestIndex, Settler
from perpdex.keepers.silverback_common import block_bot, exchange_from_env


@dataclass
class BlockFeeder:
    """The feeder with the interval its blocks are measured against."""

    feeder: PriceFeeder
    interval: float

    def on_block(self, block: Any) -> int:
        """A round (and its settlements) if one is due at the block's time; the rounds so far."""
        self.feeder.step_if_due(int(block.timestamp), self.interval)
        return self.feeder.rounds


def _build(signer: Any) -> BlockFeeder:
    settings = settings_from_env()
    x, db = exchange_from_env("feeder-settler.db")
    check_feeder(x, signer)
    settler = Settler(x, signer, RequestIndex(db), report=logger.success)
    prices = source(settings.path, settings.interval, x.d.markets, settings.seed, settings.file)
    if automine(chain.provider):
        logger.warning("the node mines only on transactions: after each round nothing wakes this bot but "
                       "others' transactions (start the devnet with --block-time)")
    logger.success(f"perpdex feeder: {settings.path} prices to {x.d.oracle.address} when {settings.interval:g}s "
                   f"have passed since its last round, settling due requests, index {db}")
    return BlockFeeder(PriceFeeder(x, signer, prices, settler, report=logger.success), settings.interval)


bot = block_bot("feeder", _build, lambda keeper, block: keeper.on_block(block))
