"""What the Anvil tests share: an Anvil each test starts and owns, and keeper processes that
are stopped whatever happens."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from perpdex.processes import Devnet, KeeperProcess


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    node = Devnet(tmp_path)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def bots() -> Iterator[list[KeeperProcess]]:
    started: list[KeeperProcess] = []
    yield started
    for bot in started:
        bot.stop()
