# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title VaultExtension
@notice The second half of MarginVault: the owner's entry points (markets, parameters,
        caps, roles, pause, ending a market), liquidations, `deleverage` and LP moves.
        MarginVault runs this code on its own storage by delegatecall (its `__default__` and
        the forwarders of the entry points that return a value), so every function here reads
        and writes the vault's state, sees the vault's caller as `msg.sender`, and emits
        its events from the vault's address.
@dev Both contracts initialize the same modules in the same order, so their storage
     layouts are identical (tests/unit/vault/test_extension.py compares them); this one is
     deployed with the vault's token, oracle and decimals, which the vault checks. Called
     directly (not through the vault) every function reverts.
@custom:kill Nothing to pause here: see MarginVault (`pause`, `pause_market`, the router,
             the liquidator), which this code serves.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from interfaces import IPriceOracle
from interfaces import IMarginVault
from modules import errors
from modules import markets
from modules import funding_index
from modules import token_io
from modules import pool
from modules import positions
from modules import liquidation
from modules import roles
from modules import adl

# the same modules in the same order as MarginVault: the same storage layout
initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: markets
initializes: funding_index[markets := markets]
initializes: token_io
initializes: pool[markets := markets, funding_index := funding_index, token_io := token_io]
initializes: positions[markets := markets, funding_index := funding_index, pool := pool, token_io := token_io, adl := adl]
initializes: liquidation[markets := markets, pool := pool, positions := positions, token_io := token_io, adl := adl]
initializes: roles
initializes: adl

exports: (
    token_io.TOKEN,
    token_io.TOKEN_SCALE,
    markets.ORACLE,
)

MAX_MARKETS: constant(uint256) = 64
WAD: constant(uint256) = 10**18

# This contract's own address: code running in the vault's storage sees another `self`.
THIS: immutable(address)


@deploy
def __init__(_token: IERC20, _oracle: IPriceOracle, _token_decimals: uint8):
    ownable.__init__()
    ownable_2step.__init__()
    token_io.__init__(_token, _token_decimals)
    markets.__init__(_oracle)
    THIS = self


# ================================================================== liquidation


@external
@nonreentrant
def liquidate(_owner: address, _sub: uint256, _keeper: address) -> (bool, uint256):
    """
    @notice Liquidate account `(_owner, _sub)` if its equity is below its maintenance margin;
            returns `(False, 0)` and changes nothing when it is not.
    @dev Only the LiquidationKeeper calls it (it adds the batch and the revert for a healthy
         account). Funding is settled first; then every position is closed by the same
         share (at the oracle price, no price impact): the smallest share that leaves
         equity >= the initial margin of what remains, or everything (see
         `_liquidation_fraction`). The fee, `liquidation_fee_ratio` of the notional closed,
         is collected as far as the account can pay it (its equity, never below 0); the
         keeper is paid from the collected fee up to `max_keeper_reward`, topped up to
         `min_keeper_reward` by the insurance fund when the fund holds it (in tokens, rounded
         down); the insurance fund keeps the rest of the collected fee. If a full
         liquidation leaves negative collateral (the account's shortfall, never the
         uncollected fee), the insurance fund covers it, then the LP pool. Works while
         paused. A second call in the same block finds the account healthy (or empty) and
         pays nothing.
    @return (liquidated, keeper reward in token units)
    """
    self._check_delegated()
    return liquidation._liquidate(_owner, _sub, _keeper)


# ================================================================== LP withdrawals


@external
@nonreentrant
def add_liquidity(_amount: uint256) -> uint256:
    """
    @notice See MarginVault.add_liquidity, which checks atomic trading and runs this.
    """
    self._check_delegated()
    adl._check_no_recovery_pending()
    return pool._add_liquidity(msg.sender, _amount)


@external
@nonreentrant
def remove_liquidity(_shares: uint256) -> uint256:
    """
    @notice See MarginVault.remove_liquidity, which checks atomic trading and runs this.
    """
    self._check_delegated()
    return pool._remove_liquidity(msg.sender, _shares)


@external
@nonreentrant
def settle_liquidity(_provider: address, _amount: uint256, _add: bool, _at: uint256) -> uint256:
    """
    @notice See MarginVault.settle_liquidity, which checks the router, sets the settlement
            time (transient storage, shared with this code) and runs this.
    """
    self._check_delegated()
    if _add:
        adl._check_no_recovery_pending()
        return pool._add_liquidity(_provider, _amount)
    return pool._remove_liquidity(_provider, _amount)


# ================================================================== ending a market



@external
def settle_market(_market: uint256, _price: uint256):
    """
    @notice End `_market` for good (SPEC 14): from now on every price read of it returns
            its final price without calling the oracle (a dead feeder blocks nothing),
            its funding stops (the index frozen, the rate 0), new risk is refused
            ("vault: market settled"), and every position in it closes at the final price
            with no price impact and no fee (its owner's close, or `close_settled` by
            anyone). Traders and LPs can then withdraw without a feeder.
    @dev Owner only (the Governance: timelocked). The final price is the oracle's price
         when it is fresh at execution (so a price announced a day ahead is no free
         option while the market still trades); when it is stale (the feeder is gone),
         `_price`, which must lie within `max_price_jump` of the oracle's last price (the
         most one update could move it). It cannot be undone.
    """
    self._check_delegated()
    ownable._check_owner()
    markets._check_known(_market)
    if markets._is_settled(_market):
        errors._fail("vault: market settled")
    last: uint256 = 0
    updated_at: uint256 = 0
    last, updated_at = staticcall markets.ORACLE.latest(_market)
    final: uint256 = last
    if block.timestamp - updated_at > staticcall markets.ORACLE.max_price_age():
        jump: uint256 = last * staticcall markets.ORACLE.max_price_jump() // WAD
        if not (_price != 0 and _price + jump >= last and _price <= last + jump):
            errors._fail("vault: final price out of range")
        final = _price
    # funding up to now at the last oracle price, then frozen with a rate of 0
    index: int256 = funding_index._accrue(_market, last, markets._skew(_market))
    markets._markets[_market].funding = markets._pack_funding(0, index, block.timestamp)
    markets._settle(_market, final)


# ================================================================== owner


@external
def add_market(_params: IMarginVault.MarketParams) -> uint256:
    """
    @notice Create a market; ids are assigned 0, 1, 2... The oracle must price it.
    @dev Owner only.
    @return The new market's id.
    """
    self._check_delegated()
    ownable._check_owner()
    market: uint256 = markets.market_count
    if not (market < MAX_MARKETS):
        errors._fail("vault: too many markets")
    markets._check_params(_params)
    markets._store_params(market, _params)
    markets._markets[market].funding = markets._pack_funding(0, 0, block.timestamp)
    markets.market_count = market + 1
    log IMarginVault.MarketAdded(market=market, params=_params)
    return market


@external
def set_market_params(_market: uint256, _params: IMarginVault.MarketParams):
    """
    @notice Replace a market's parameters. Funding is accrued first under the old ones.
    @dev Owner only.
    """
    self._check_delegated()
    ownable._check_owner()
    if not (_market < markets.market_count):
        errors._fail("vault: unknown market")
    markets._check_params(_params)
    funding_index._accrue(_market, markets._latest_price(_market), markets._skew(_market))
    markets._store_params(_market, _params)
    log IMarginVault.MarketParamsSet(market=_market, params=_params)


@external
def set_liquidator(_liquidator: address, _max_keeper_reward: uint256, _min_keeper_reward: uint256):
    """
    @notice Set the LiquidationKeeper (the only caller of `liquidate`; the zero address
            stops liquidations), the cap on the keeper's reward and its floor (USD, WAD).
            The reward is the collected fee up to the cap; below the floor the insurance
            fund pays the difference. Bounds: cap <= 1,000,000 USD; floor <= the cap and
            <= 100 USD.
    @dev Owner only.
    """
    self._check_delegated()
    ownable._check_owner()
    liquidation._set_liquidator(_liquidator, _max_keeper_reward, _min_keeper_reward)


@external
def set_pool_caps(
    _reserve_factor: uint256, _max_exposure_factor: uint256, _max_pnl_factor: uint256, _pool_loss_cap: uint256
):
    """
    @notice Set how much open interest the pool takes on (WAD fractions of pool_value()):
            per market and side `OI * price <= _reserve_factor * pool_value`, across all
            markets and sides `sum(OI * price) <= _max_exposure_factor * pool_value`; how
            much of the traders' profit it pays in full: up to `_max_pnl_factor` of the
            pool's cash, pro rata beyond it; and how much bad debt it absorbs: up to
            `_pool_loss_cap` of its cash per 24 h, the rest recovered by ADL (SPEC 14).
            Bounds: 0 < reserve_factor <= 2, reserve_factor <= max_exposure_factor <= 4,
            0 < max_pnl_factor <= 1, pool_loss_cap <= 1.
    @dev Owner only. Only trades that grow open interest and LP withdrawals are checked.
    """
    self._check_delegated()
    ownable._check_owner()
    pool._set_caps(_reserve_factor, _max_exposure_factor, _max_pnl_factor, _pool_loss_cap)


@external
def set_router(_router: address):
    """
    @notice Set the OrderRouter, the only filler of two-step requests (zero: none fill).
    @dev Owner only.
    """
    self._check_delegated()
    ownable._check_owner()
    roles.router = _router
    log IMarginVault.RouterSet(router=_router)

@external
def set_deleverager(_deleverager: address):
    """
    @notice Set the only caller of `deleverage` (zero: nobody).
    @dev Owner only.
    """
    self._check_delegated()
    ownable._check_owner()
    roles.deleverager = _deleverager
    log IMarginVault.DeleveragerSet(deleverager=_deleverager)


# ================================================================== ADL


@external
@nonreentrant
def deleverage(_owner: address, _sub: uint256, _market: uint256, _size: uint256) -> uint256:
    """
    @notice Auto-deleverage (SPEC 14): close up to `_size` of the position of `(_owner, _sub)`
            in `_market` at the bankruptcy price its side owes (`adl_pending`), giving back
            to the pool what bankrupt accounts on the other side could not pay beyond the
            insurance fund and the pool's loss cap. Only the deleverager calls it; the ADL
            keeper picks the most profitable positions first.
    @dev The position's funding is settled first. Refused unless its side owes ADL, the
         close at the bankruptcy price realizes no loss (the account gives up at most the
         profit it had against the mark: a long's entry at or below that price, a short's at
         or above), the mark is past that price (there is something to recover), and the
         account's equity stays >= 0. Profit is paid at the pool's pro-rata share like any.
         Works while paused and on a settled market.
    @return The size closed (base units, WAD).
    """
    self._check_delegated()
    if not (msg.sender == roles.deleverager):
        errors._fail("vault: not the deleverager")
    positions._settle_funding(_owner, _sub)
    pos: IMarginVault.Position = positions._load_position(_owner, _sub, _market)
    if not (pos.size != 0):
        errors._fail("vault: no position")
    side: uint256 = adl.LONGS
    if pos.size < 0:
        side = adl.SHORTS
    pending: uint256 = adl._owed(_market, side)
    if not (pending != 0):
        errors._fail("vault: nothing to deleverage")
    bankruptcy: uint256 = adl._price(_market, side)
    mark: uint256 = markets._strict_price(_market)
    closed: uint256 = min(min(_size, convert(abs(pos.size), uint256)), pending)
    if not (closed != 0):
        errors._fail("vault: zero size")
    recovered: uint256 = 0
    left: int256 = 0
    if side == adl.LONGS:
        if not (pos.entry_price <= bankruptcy):
            errors._fail("vault: not in profit at the bankruptcy price")
        if not (bankruptcy < mark):
            errors._fail("vault: nothing to recover")
        recovered = closed * (mark - bankruptcy) // WAD
        left = pos.size - convert(closed, int256)
    else:
        if not (pos.entry_price >= bankruptcy):
            errors._fail("vault: not in profit at the bankruptcy price")
        if not (bankruptcy > mark):
            errors._fail("vault: nothing to recover")
        recovered = closed * (bankruptcy - mark) // WAD
        left = pos.size + convert(closed, int256)
    signed: int256 = pos.size - left
    # >= 0 by the entry check; floored, then at the pool's pro-rata share
    pnl: int256 = signed * (convert(bankruptcy, int256) - convert(pos.entry_price, int256)) // convert(WAD, int256)
    if pnl > 0:
        pnl = positions._capped_profit(pnl)
    positions._move_position(_owner, _sub, _market, pos, left, pos.entry_price, pos.funding_index)
    collateral: int256 = 0
    mask: uint256 = 0
    collateral, mask = positions._load_account(_owner, _sub)
    pnl = pool._pay_trader(_owner, _sub, pnl, convert(max(-collateral, 0), uint256))
    collateral += pnl
    if left == 0:
        mask ^= 1 << _market
    positions._store_account(_owner, _sub, collateral, mask)
    adl._consume(_market, side, closed)
    if not (positions._health(_owner, _sub, True).equity >= 0):
        errors._fail("vault: ADL would leave negative equity")
    log IMarginVault.Deleveraged(
        owner=_owner,
        sub=_sub,
        market=_market,
        closed_size=signed,
        size=left,
        price=bankruptcy,
        mark_price=mark,
        realized_pnl=pnl,
        recovered=recovered,
    )
    return closed





@external
def pause():
    """
    @notice Stop new risk in every market. Closing, reducing, withdrawing free collateral,
            liquidity removal and liquidations keep working.
    @dev Owner only.
    """
    self._set_paused(True)


@external
def unpause():
    """
    @dev Owner only.
    """
    self._set_paused(False)


@external
def pause_market(_market: uint256):
    """
    @notice Stop new risk in `_market` only.
    @dev Owner only.
    """
    self._set_market_paused(_market, True)


@external
def unpause_market(_market: uint256):
    """
    @dev Owner only.
    """
    self._set_market_paused(_market, False)


@internal
def _set_paused(_paused: bool):
    self._check_delegated()
    ownable._check_owner()
    markets._set_paused(_paused)


@internal
def _set_market_paused(_market: uint256, _paused: bool):
    self._check_delegated()
    ownable._check_owner()
    markets._set_market_paused(_market, _paused)




@view
@internal
def _check_delegated():
    if not (self != THIS):
        errors._fail("vault: call the vault")
