"""Funding on Anvil: a long that sits on a skewed market for days pays, the short receives,
the pool picks up the imbalance, and equity/withdrawable show it before any settlement. The
funding keeper runs as real separate processes: two at once, then a restart. Routed
deployments: every trade and LP move is a request the SDK fills at the next round (the test
drives the clock and feeds the round itself, as `Exchange.settle_next` does)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ape import accounts, chain

from perpdex.chain import DEVNET, connect, move_time
from perpdex.deploy import deploy_system
from perpdex.model import DAY, WAD
from perpdex.sdk import Exchange

pytestmark = pytest.mark.anvil
HOUR = 3600


def test_anvil__skewed_market_for_days__long_pays_short_receives_pool_takes_the_rest(tmp_path, devnet):
    with connect(DEVNET, host=devnet.url, manage_process=False) as provider:  # an Anvil the test owns
        # Views run on a pending block stamped with the wall clock: two reads a second apart
        # under load would see different funding. Frozen block time: time moves only with
        # move_time (the same as the fuzz machine on Anvil).
        provider.make_request("anvil_setBlockTimestampInterval", [0])
        try:
            admin, lp, long_trader, short_trader = (accounts.test_accounts[i] for i in range(4))
            x = Exchange(deploy_system(admin))
            x.add_liquidity(lp, x.tokens(5_000_000))  # the net rule (10% of the cash) backs the 150 ETH long
            sizes = {long_trader: 150 * WAD, short_trader: -50 * WAD}
            for who in sizes:
                x.deposit(who, x.tokens(50_000))
                x.fund(who, 2 * x.reward_tokens)  # the settlement rewards of the open and the close
            # both opens fill at one round in one settle_many: no funding accrues between them
            # (filled a round apart, the long would already owe some when `before` is read)
            opens = [x.order_id(x.trade(who, 0, size, settle=False)) for who, size in sizes.items()]
            x.next_round()  # their settlement round
            x.settle(opens)
            assert all(x.position(who, 0, 0).size == size for who, size in sizes.items())
            vault = x.vault
            before = {w: (vault.equity(w, 0), vault.withdrawable(w, 0), vault.collateral(w, 0)) for w in (long_trader, short_trader)}
            pool_before = vault.pool_value()

            move_time(4 * DAY)
            x.refresh_prices()  # same prices: every change below is funding

            paid, received = x.d.lens.accrued_funding(long_trader, 0, 0), x.d.lens.accrued_funding(short_trader, 0, 0)
            assert paid < -1_000 * WAD and received > 0  # 4 days at a growing positive rate
            assert vault.equity(long_trader, 0) == before[long_trader][0] + paid
            assert vault.equity(short_trader, 0) == before[short_trader][0] + received
            assert vault.withdrawable(short_trader, 0) > before[short_trader][1]  # before any settlement
            assert vault.withdrawable(long_trader, 0) < before[long_trader][1]
            pool_gain = vault.pool_value() - pool_before
            assert -2 <= paid + received + pool_gain <= 0  # longs pay OI_long, shorts get OI_short
            assert pool_gain > 0  # the pool is short the skew: it receives rate * skew
            assert all(vault.collateral(w, 0) == before[w][2] for w in before)  # nothing settled yet

            settled = [x.events(x.close(who, 0), "PositionModified")[0]["funding"] for who in (long_trader, short_trader)]
            # each close fills at its own round, settlement_delay seconds after its commit:
            # at most a little more accrued by then
            assert paid * 1001 // 1000 <= settled[0] <= paid
            assert received <= settled[1] <= received * 1001 // 1000
            for who in (long_trader, short_trader):
                vault.withdraw(0, vault.withdrawable(who, 0), sender=who)
            assert vault.market_state(0).oi_long == vault.market_state(0).oi_short == 0
        finally:
            provider.make_request("anvil_removeBlockTimestampInterval", [])


def _keeper(port: int, deployment: Path, account_index: int) -> subprocess.CompletedProcess[str]:
    """`perpdex keeper funding --once` as its own process, signing with a test account."""
    code = (
        "import sys; from perpdex.cli import main; "
        f"sys.exit(main(['keeper', 'funding', '--once', '--port', '{port}', '--deployment', '{deployment}', "
        f"'--max-idle', '3600', '--account', '{account_index}']))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)


def test_anvil__funding_keeper__two_at_once_then_restart(tmp_path, devnet):
    from perpdex.devnet import write_deployment

    with connect(DEVNET, host=devnet.url, manage_process=False) as provider:  # an Anvil the test owns
        port = int(provider.uri.rsplit(":", 1)[1].strip("/"))
        admin, lp, trader = (accounts.test_accounts[i] for i in range(3))
        d = deploy_system(admin)
        x = Exchange(d)
        x.add_liquidity(lp, x.tokens(5_000_000))  # the net rule (10% of the cash) backs 100 ETH
        x.deposit(trader, x.tokens(50_000))
        x.fund(trader, x.reward_tokens)
        x.trade(trader, 0, 100 * WAD)
        assert x.position(trader, 0, 0).size == 100 * WAD  # filled at the next round
        path = write_deployment(d.to_json(provider.chain_id, chain.blocks.head.number), tmp_path / "devnet.json")
        move_time(2 * HOUR)
        x.refresh_prices()
        before = [int(d.vault.market_state(m).last_funding_time) for m in (0, 1)]

        with ThreadPoolExecutor(2) as pool:  # two keepers race for the same markets
            runs = list(pool.map(lambda i: _keeper(port, path, i), (5, 6)))
        for run in runs:
            assert run.returncode == 0, run.stdout + run.stderr
        pokes = sum(run.stdout.count("poked ") for run in runs)
        assert 2 <= pokes <= 4  # each market poked at least once; a lost race costs gas, not funds
        after = [int(d.vault.market_state(m).last_funding_time) for m in (0, 1)]
        assert all(a > b for a, b in zip(after, before))
        rate, index = d.vault.funding(0)
        assert rate > 0 and index > 0

        restart = _keeper(port, path, 5)  # nothing is idle any more: a restart sends nothing
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert "poked " not in restart.stdout and "0 pokes" in restart.stdout
