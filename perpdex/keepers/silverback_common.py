"""A keeper whose pass runs on every new block under Silverback's runner: the same `step()`
as the keeper's own command (or a pass that decides from the block, as the feeder's), built at
startup from the deployment file and the bot's signer.
Passes never overlap (Silverback may run handlers in a pool)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from ape import chain
from ape.logging import logger
from silverback import SilverbackBot

from perpdex.chain import wait_for_blocks

wait_for_blocks()  # Silverback connects by itself: on a block-time devnet its receipts are waited for too


def _step(keeper: Any, block: Any) -> Any:
    return keeper.step()


def block_bot(name: str, build: Callable[[Any], Any], on_block: Callable[[Any, Any], Any] = _step) -> SilverbackBot:
    """A SilverbackBot that builds its keeper with `build(signer)` at startup and calls
    `on_block(keeper, block)` on every new block (by default the keeper's `step()`); its result
    is the task's result (a metric)."""
    bot = SilverbackBot(signer_required=True)
    keepers: list[Any] = []
    one_at_a_time = threading.Lock()

    @bot.on_startup()
    def start(_: Any) -> None:
        keepers.append(build(bot.signer))
        logger.success(f"perpdex {name} under Silverback, signer {bot.signer.address}")

    @bot.on_(chain.blocks)
    def each_block(block: Any) -> Any:
        with one_at_a_time:
            return on_block(keepers[0], block)

    return bot


def exchange_from_env(default_db: str) -> tuple[Any, Path]:
    """The deployment (PERPDEX_DEPLOYMENT, default .perpdex/devnet.json) and the keeper's
    SQLite file (PERPDEX_DB, default .perpdex/`default_db`) a Silverback keeper runs with."""
    from perpdex.deploy import attach
    from perpdex.devnet import DEPLOYMENT_FILE, STATE_DIR, read_deployment
    from perpdex.sdk import Exchange

    deployment = Path(os.environ.get("PERPDEX_DEPLOYMENT", DEPLOYMENT_FILE))
    db = Path(os.environ.get("PERPDEX_DB", STATE_DIR / default_db))
    return Exchange(attach(read_deployment(deployment))), db
