# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title VaultExtension
@notice The second half of MarginVault: the owner's entry points (markets, parameters,
        caps, roles, pause, ending a market) and liquidations, and `close_settled`. MarginVault runs this code on its own storage
        by delegatecall (its `__default__` and `liquidate`), so every function here reads
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

# the same modules in the same order as MarginVault: the same storage layout
initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: markets
initializes: funding_index[markets := markets]
initializes: token_io
initializes: pool[markets := markets, funding_index := funding_index, token_io := token_io]
initializes: positions[markets := markets, funding_index := funding_index, pool := pool, token_io := token_io]
initializes: liquidation[markets := markets, pool := pool, positions := positions, token_io := token_io]
initializes: roles

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


# ================================================================== ending a market


@external
@nonreentrant
def close_settled(_owner: address, _sub: uint256, _market: uint256):
    """
    @notice Close the whole position of `(_owner, _sub)` in a settled market at its final
            price (no price impact, no fee), its PnL and funding into collateral. Anyone may
            call it: the price was fixed by `settle_market`, so closing now or later, by the
            owner (directly, through the router, or here) or by anyone else, ends the same;
            it only frees the account (and the pool) of a position that can never change.
    @dev A shortfall left by the close goes down the bad-debt waterfall (SPEC 11.6).
    """
    self._check_delegated()
    if not markets._is_settled(_market):
        errors._fail("vault: market not settled")
    size: int256 = positions._open_size(_owner, _sub, _market)
    bound: uint256 = max_value(uint256)
    if size > 0:
        bound = 0
    positions._modify(_owner, _sub, _market, -size, bound)


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
def set_pool_caps(_reserve_factor: uint256, _max_exposure_factor: uint256):
    """
    @notice Set how much open interest the pool takes on (WAD fractions of pool_value()):
            per market and side `OI * price <= _reserve_factor * pool_value`, across all
            markets and sides `sum(OI * price) <= _max_exposure_factor * pool_value`.
            Bounds: 0 < reserve_factor <= 2, reserve_factor <= max_exposure_factor <= 4.
    @dev Owner only. Only trades that grow open interest and LP withdrawals are checked.
    """
    self._check_delegated()
    ownable._check_owner()
    pool._set_caps(_reserve_factor, _max_exposure_factor)


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
