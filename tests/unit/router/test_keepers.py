"""The feeder's price sources and one feeder round on the embedded chain; the settler's
choice of what is due and its index (the Anvil tests run both as processes); the CLI's
`orders` column of sizes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from perpdex.cli import main, request_size
from perpdex.keepers import feeder
from perpdex.keepers.settler import LP_MARKET, Request, RequestIndex, due
from perpdex.model import WAD


def test_due__round_exists_or_deadline_passed__not_before():
    pending = [
        Request(1, 0, settle_after=100, deadline=160),   # ETH round at 100: due
        Request(2, 1, settle_after=100, deadline=160),   # BTC round only at 99: not yet
        Request(3, LP_MARKET, settle_after=100, deadline=160),  # LP: needs every market
        Request(4, 1, settle_after=10, deadline=60),     # expired: due (it cancels, paid)
    ]
    assert due(pending, {0: 100, 1: 99}, now=101) == [1, 4]
    assert due(pending, {0: 100, 1: 100}, now=101) == [1, 2, 3, 4]


def _committed(order_id: int, kind: int = 0, market: int = 0) -> tuple[str, dict]:
    return "OrderCommitted", {"order_id": order_id, "kind": kind, "market": market, "settle_after": 10, "deadline": 70}


def test_request_index__events_and_checkpoint_commit_together(tmp_path):
    index = RequestIndex(tmp_path / "s.db")
    index.apply([_committed(1), _committed(2, kind=2), ("OrderSettled", {"order_id": 1})], up_to_block=5)
    assert [r.order_id for r in index.pending()] == [2] and index.pending()[0].market == LP_MARKET
    assert index.last_block() == 5 and index.counts() == (2, 1)
    # a crash in the middle of a range: nothing of it is kept, the range is read again
    with pytest.raises(RuntimeError):
        with index.transaction():
            index.db.execute("UPDATE requests SET done = 1")
            raise RuntimeError("killed")
    assert index.counts() == (2, 1) and index.last_block() == 5
    again = RequestIndex(tmp_path / "s.db")
    assert [r.order_id for r in again.pending()] == [2]


def test_sources__hold_gbm_replay(tmp_path):
    now = {0: 3000 * WAD, 1: 60_000 * WAD}
    assert feeder.hold()(now) == now
    a, b = feeder.gbm(2.0, seed=1), feeder.gbm(2.0, seed=1)
    first = a(now)
    assert first == b(now) and first != now  # seeded: the same walk twice
    assert all(abs(first[m] - now[m]) < now[m] // 100 for m in now)  # 2 s of 120% a year: small
    path = tmp_path / "rounds.json"
    path.write_text(json.dumps([{"ETH-USD": 3010.5}, {"BTC-USD": 61000, "ETH-USD": 2990}]))
    step = feeder.replay(path, {"ETH-USD": 0, "BTC-USD": 1})
    assert step(now) == {0: 3010_500_000_000_000_000_000, 1: 60_000 * WAD}
    assert step(now) == {0: 2990 * WAD, 1: 61_000 * WAD}
    assert step(now) == now  # past the last row: hold


def test_replay__bad_file__clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"DOGE-USD": 1}]))
    with pytest.raises(ValueError, match="unknown markets"):
        feeder.replay(path, {"ETH-USD": 0})
    path.write_text(json.dumps({"ETH-USD": 1}))
    with pytest.raises(ValueError, match="JSON list"):
        feeder.replay(path, {"ETH-USD": 0})


def test_price_feeder__one_round_of_every_market_within_the_jump_limit(rx, admin):
    rounds = {m: int(rx.d.oracle.latest_round(m)) for m in rx.market_names()}
    far = lambda current: {m: p * 2 for m, p in current.items()}  # +100%: cut at the 25% limit
    lines = []
    bot = feeder.PriceFeeder(rx, admin, far, settler=None, report=lines.append)
    before = {m: rx.price(m) for m in rx.market_names()}
    written = bot.step()
    assert written == {m: p * 125 // 100 for m, p in before.items()}
    assert {m: int(rx.d.oracle.latest_round(m)) for m in rx.market_names()} == {m: r + 1 for m, r in rounds.items()}
    assert lines and lines[0].startswith("round 1 in block")


def test_cli_feeder__replay_without_a_file__one_line_usage_error():
    result = CliRunner().invoke(main, ["keeper", "feeder", "--path", "replay"])
    assert result.exit_code == 2
    assert "--path replay needs --file FILE" in result.output and "Traceback" not in result.output


def test_request_size__a_reused_body_shows_a_dash_not_a_zero_size():
    assert request_size(0, 3 * WAD // 2, 0) == "+1.500000"
    assert request_size(0, 0, 0) == "-"  # the router's view once the body slot was reused
    assert request_size(1, 0, 0) == "all"
    assert (request_size(2, 0, 1_000_000), request_size(3, 0, 0)) == ("1,000,000", "-")


def test_round_due__the_first_then_an_interval_apart__never_for_an_older_block():
    assert feeder.round_due(None, 100, 2.0)
    assert not feeder.round_due(100, 101, 2.0)  # the block of its own round, or the next one
    assert feeder.round_due(100, 102, 2.0)
    assert not feeder.round_due(100, 99, 2.0)  # delivered late


def test_price_feeder__step_if_due__writes_only_an_interval_after_its_last_round(rx, admin):
    bot = feeder.PriceFeeder(rx, admin, feeder.hold(), settler=None, report=lambda line: None)
    first = int(rx.d.oracle.latest_round(0))
    assert bot.step_if_due(1_000, 2.0) is not None
    assert bot.step_if_due(1_001, 2.0) is None
    assert int(rx.d.oracle.latest_round(0)) == first + 1 and bot.last_round_at == 1_000
    assert bot.step_if_due(1_002, 2.0) is not None
    assert int(rx.d.oracle.latest_round(0)) == first + 2 and bot.rounds == 2


def test_source__by_name__unknown_or_replay_without_a_file_refused():
    now = {0: 3000 * WAD}
    assert feeder.source("hold", 2.0, {"ETH-USD": 0})(now) == now
    assert feeder.source("gbm", 2.0, {"ETH-USD": 0}, seed=1)(now) == feeder.gbm(2.0, seed=1)(now)
    with pytest.raises(ValueError, match="needs a file"):
        feeder.source("replay", 2.0, {"ETH-USD": 0})
    with pytest.raises(ValueError, match="unknown price path 'walk'"):
        feeder.source("walk", 2.0, {"ETH-USD": 0})


def test_silverback_feeder_settings__from_the_environment__an_interval_of_0_refused(tmp_path):
    from perpdex.keepers.feeder import FeederSettings, settings_from_env

    assert settings_from_env({}) == FeederSettings(2.0, "hold", 7, None)
    env = {"PERPDEX_FEEDER_INTERVAL": "3.5", "PERPDEX_FEEDER_PATH": "replay", "PERPDEX_FEEDER_SEED": "9",
           "PERPDEX_FEEDER_FILE": str(tmp_path / "rounds.json")}
    assert settings_from_env(env) == FeederSettings(3.5, "replay", 9, tmp_path / "rounds.json")
    with pytest.raises(ValueError, match="more than 0 seconds"):
        settings_from_env({"PERPDEX_FEEDER_INTERVAL": "0"})
