"""The price feeder under Silverback (perpdex.keepers.silverback_feeder) as a separate process on an
Anvil with a block time of 1 s (mixed with a block per transaction, as `perpdex devnet --block-time 1`
starts it): a trade committed through the SDK fills at a round the bot wrote, and its rounds come an
interval apart however many blocks wake it (its own rounds' blocks included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from ape import accounts, chain

from perpdex.chain import DEVNET, connect
from perpdex.deploy import deploy_system
from perpdex.devnet import write_deployment
from perpdex.logs import EventDecoder
from perpdex.model import WAD
from perpdex.processes import Devnet, silverback_keeper, wait_until
from perpdex.sdk import Exchange

pytestmark = pytest.mark.anvil

BOT = 5  # the bot's test account, made a feeder: its rounds are told apart from the deployer's
TRADER = 4
INTERVAL = 2  # PERPDEX_FEEDER_INTERVAL, seconds; the node makes a block every second
SETTLED = 2


@pytest.fixture
def ticking(tmp_path: Path) -> Iterator[Devnet]:
    node = Devnet(tmp_path, block_time=1)
    try:
        yield node
    finally:
        node.stop()


def rounds_by(x: Exchange, feeder: Any, from_block: int) -> list[dict[str, Any]]:
    """The PriceUpdated events of market 0 that `feeder` wrote since `from_block`, in order."""
    decoder = EventDecoder([x.d.oracle])
    logs = chain.provider.web3.eth.get_logs({"address": str(x.d.oracle.address), "fromBlock": from_block})
    events = [d[1] for log in logs if (d := decoder.decode(log)) is not None and d[0] == "PriceUpdated"]
    return [e for e in events if int(e["market"]) == 0 and str(e["feeder"]).lower() == feeder.address.lower()]


def test_silverback_feeder__fills_a_trade_at_its_round__one_round_an_interval_not_one_a_block(ticking, tmp_path, bots):
    with connect(DEVNET, host=ticking.url, manage_process=False):
        admin, lp, trader, feeder = (accounts.test_accounts[i] for i in (0, 1, TRADER, BOT))
        x = Exchange(deploy_system(admin, governance_delay=0))  # the new feeder applies at once
        x.add_liquidity(lp, x.tokens(2_000_000))
        x.d.govern(x.d.oracle, "set_feeder", feeder, True)
        x.deposit(trader, x.tokens(2_000))
        x.fund(trader, x.tokens(10))
        deployment = write_deployment(x.d.to_json(chain.chain_id, chain.blocks.head.number), tmp_path / "devnet.json")
        start = int(chain.blocks.head.number) + 1
        bot = silverback_keeper("perpdex.keepers.silverback_feeder", ticking.url, deployment, tmp_path / "feeder.db",
                                BOT, {"PERPDEX_FEEDER_INTERVAL": str(INTERVAL)})
        bots.append(bot)
        bot.wait_for("round 1 in block", timeout=120)

        order_id = x.order_id(x.trade(trader, 0, WAD // 10, settle=False))
        order = x.wait_settled(order_id, timeout=30)
        assert int(order.status) == SETTLED, bot.text()
        # its settlement round (the first at or after settle_after) is one the bot wrote
        round_id, _, _ = x.d.oracle.round_at(0, int(order.settle_after))
        assert int(round_id) in {int(e["round_id"]) for e in rounds_by(x, feeder, start)}
        assert "settled 1, cancelled 0 in block" in bot.text()

        # rounds over at least 8 s of chain time: an interval apart, though a block came every
        # second and each round brought a block of its own
        first = int(rounds_by(x, feeder, start)[0]["updated_at"])
        wait_until(lambda: int(chain.blocks.head.timestamp) >= first + 8, 30, "8 s of blocks")
        head = chain.blocks.head
        written = rounds_by(x, feeder, start)
        span, blocks = int(head.timestamp) - first, int(head.number) - start + 1
        # a round is written at a block at least INTERVAL after the last one's and lands a moment
        # later (later still if a pass ran long): one per interval, one more for that slack
        assert 2 <= len(written) <= span // INTERVAL + 2, (len(written), span, blocks)
        assert blocks > 2 * len(written), (len(written), span, blocks)  # per-block would be one each
