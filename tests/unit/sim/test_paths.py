"""Price paths (no chain): seeded and reproducible, and each named scenario has its stated shape."""

from __future__ import annotations

import pytest

from perpdex.model import WAD
from perpdex.sdk import price_steps
from perpdex.sim.traders import CALM_VOLATILITY
from perpdex.sim.paths import HOUR, PATHS, build_path, crash, gap, gbm, hourly_volatility, max_step, squeeze, bleed

START = (3_000 * WAD, 60_000 * WAD)


def test_gbm__same_seed_same_path__other_seed_other_path():
    a, b = gbm(START, 200, 60, seed=7), gbm(START, 200, 60, seed=7)
    assert a == b
    assert gbm(START, 200, 60, seed=8).prices != a.prices
    assert a.blocks == 200 and a.prices[0] == START


def test_gbm__moves_every_block_and_the_markets_are_correlated():
    path = gbm(START, 300, 60, seed=1, jumps_per_hour=0)
    eth, btc = path.series(0), path.series(1)
    assert all(p > 0 for p in eth + btc)
    assert sum(1 for a, b in zip(eth, eth[1:]) if a != b) == 299
    ups = [(b > a) == (d > c) for a, b, c, d in zip(eth, eth[1:], btc, btc[1:])]
    assert sum(ups) / len(ups) > 0.7  # correlation 0.8: mostly the same direction


def test_gbm__jumps_make_bigger_single_block_moves_than_diffusion_alone():
    calm = gbm(START, 500, 60, seed=3, jumps_per_hour=0)
    jumpy = gbm(START, 500, 60, seed=3, jumps_per_hour=6, jump_mean=-0.03, jump_sd=0.01)
    assert max_step(jumpy) > 2 * max_step(calm)


def test_crash__falls_40_percent_within_an_hour_of_blocks_then_stays():
    spb = 60
    path = crash(START, 120, spb, drop=0.4, over=HOUR, begin=3)
    eth = path.series(0)
    hour_blocks = HOUR // spb
    assert eth[3] == START[0]
    assert eth[3 + hour_blocks] == pytest.approx(START[0] * 0.6, rel=1e-9)
    assert all(b <= a for a, b in zip(eth, eth[1:]))  # never up
    assert eth[-1] == eth[3 + hour_blocks]
    assert path.change(1) == pytest.approx(-0.4, abs=1e-9)


def test_gap__one_update_of_20_percent__split_into_steps_within_a_10_percent_limit():
    path = gap(START, 30, 60, size=0.2, at=10)
    eth = path.series(0)
    moves = [(a, b) for a, b in zip(eth, eth[1:]) if a != b]
    assert len(moves) == 1 and moves[0][1] == pytest.approx(0.8 * moves[0][0], rel=1e-9)
    jump = WAD // 10
    steps = price_steps(moves[0][0], moves[0][1], jump)
    assert steps[-1] == moves[0][1] and len(steps) == 3  # 3,000 -> 2,700 -> 2,430 -> 2,400
    prices = [moves[0][0], *steps]
    assert all(abs(b - a) <= a * jump // WAD for a, b in zip(prices, prices[1:]))


def test_price_steps__within_the_limit_one_step__none_when_there():
    assert price_steps(3_000 * WAD, 3_100 * WAD, WAD // 4) == [3_100 * WAD]
    assert price_steps(3_000 * WAD, 3_000 * WAD, WAD // 4) == []
    up = price_steps(1_000 * WAD, 2_000 * WAD, WAD // 4)
    assert up[-1] == 2_000 * WAD and len(up) == 4  # 1,250 1,562.5 1,953.1 2,000


def test_squeeze__rips_35_percent_up_accelerating__btc_half_the_move():
    path = squeeze(START, 90, 60, rise=0.35, over=HOUR, begin=3)
    eth = path.series(0)
    assert path.change(0) == pytest.approx(0.35, abs=1e-9)
    assert path.change(1) == pytest.approx(0.175, abs=1e-9)
    first, last = eth[4] - eth[3], eth[62] - eth[61]
    assert last > 10 * first  # accelerating


def test_bleed__slow_even_decline_of_12_percent():
    path = bleed(START, 120, 600, fall=0.12)
    assert path.change(0) == pytest.approx(-0.12, abs=1e-9)
    assert max_step(path) < 0.0015
    assert all(b < a for a, b in zip(path.series(0), path.series(0)[1:]))


def test_hourly_volatility__steady_crash_counts__flat_is_zero():
    assert hourly_volatility([3_000 * WAD] * 10, 60) == 0
    falling = crash(START, 20, 60, drop=0.4, over=HOUR, begin=0).series(0)
    # ~0.7% a block, scaled by sqrt(60 blocks an hour): above what dynamic traders call calm
    assert CALM_VOLATILITY < hourly_volatility(falling, 60) < 0.06


def test_build_path__every_named_path__unknown_name_refused():
    for name in PATHS:
        assert build_path(name, START, 40, 60, seed=1).blocks == 40
    with pytest.raises(ValueError, match="unknown price path 'moon'"):
        build_path("moon", START, 40, 60, seed=1)
