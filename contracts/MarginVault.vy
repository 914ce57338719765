# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title MarginVault
@notice Collateral, positions, margin, funding and the LP pool of perpdex.
        An account is `(owner, sub)`; margin is cross inside a sub-account and isolated
        across sub-accounts. The LP pool is the counterparty to the traders' net position.
@dev Units: prices and USD values are WAD; sizes are signed base units in WAD; token
     amounts that move (deposit, withdraw, liquidity) are in the token's own units.
     Every conversion and every rounding favours the protocol (see perpdex/model.py, the
     Python reference model the contract is tested against).
     Trading and LP moves are two-step: with `atomic_trading()` off (the default) only the
     OrderRouter may fill them (`settle_trade`, `settle_liquidity`), at the prices of the
     request's settlement rounds (SPEC 13); the direct `modify_position`,
     `close_position`, `add_liquidity` and `remove_liquidity` exist for deployments made
     with atomic trading on (unit tests of the margin math).
     This file is the vault's external interface; each formula lives in one module:
       modules/markets.vy      market parameters and state, pause flags, oracle prices
       modules/funding_index.vy funding accrual (the FundingIndex); funding_math.vy the formula
       modules/positions.vy    accounts, positions, trades, health and margin
       modules/pool.vy         LP pool, pool value, insurance fund, bad-debt waterfall
       modules/liquidation.vy  liquidations
       modules/token_io.vy     the collateral token in and out
       modules/errors.vy       the one revert path
       modules/roles.vy        the OrderRouter
     The owner's entry points and liquidations live in VaultExtension, run on this
     storage by delegatecall: the vault keeps room under the 24,576-byte limit.
@custom:kill The owner calls `pause()` (all markets) or `pause_market(m)`: no new risk can
             be opened, while closing, reducing, depositing, withdrawing free collateral,
             removing liquidity and liquidations keep working. `set_router(empty(address))`
             stops every two-step fill. Revoking the oracle's feeders stops everything that
             needs a fresh price.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from interfaces import IPriceOracle
from interfaces import IMarginVault
from interfaces import ILiquidationKeeper
from modules import errors
from modules import markets
from modules import funding_index
from modules import token_io
from modules import pool
from modules import positions
from modules import liquidation
from modules import roles
from modules import adl

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
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    # immutables
    token_io.TOKEN,
    token_io.TOKEN_SCALE,
    markets.ORACLE,
    # markets
    markets.market_count,
    markets.market_paused,
    markets.paused,
    markets.settled_price,
    # pool
    pool.pool_balance,
    pool.insurance_fund,
    pool.lp_shares,
    pool.total_lp_shares,
    pool.unpaid_losses,
    # roles
    roles.router,
)

# ------------------------------------------------------------------ constants

WAD: constant(uint256) = 10**18
MAX_MARKETS: constant(uint256) = 64
MASK96: constant(uint256) = 2**96 - 1

# ------------------------------------------------------------------ immutables

ATOMIC_TRADING: immutable(bool)
# The vault's second half: the owner's entry points and liquidations, run on this storage
# by delegatecall (see `__default__`); same modules, same storage layout, same immutables.
EXTENSION: public(immutable(address))


interface IVaultExtension:
    def TOKEN() -> address: view
    def ORACLE() -> address: view
    def TOKEN_SCALE() -> uint256: view


@deploy
def __init__(_token: IERC20, _oracle: IPriceOracle, _token_decimals: uint8, _atomic_trading: bool, _extension: address):
    """
    @param _token The collateral stablecoin (not rebasing; a fee on transfer is credited net).
    @param _oracle The PriceOracle read for every market.
    @param _token_decimals The token's decimals (at most 18).
    @param _atomic_trading Let owners trade and move liquidity directly at the latest price
           (never in production: fills at a price everyone sees coming are a free option).
    @param _extension A VaultExtension deployed with the same token, oracle and decimals.
    """
    ext: IVaultExtension = IVaultExtension(_extension)
    assert staticcall ext.TOKEN() == _token.address, "vault: extension token"
    assert staticcall ext.ORACLE() == _oracle.address, "vault: extension oracle"
    EXTENSION = _extension
    ownable.__init__()
    ownable_2step.__init__()
    token_io.__init__(_token, _token_decimals)
    assert staticcall ext.TOKEN_SCALE() == token_io.TOKEN_SCALE, "vault: extension decimals"
    markets.__init__(_oracle)
    ATOMIC_TRADING = _atomic_trading


# ================================================================== traders: collateral


@external
@nonreentrant
def deposit(_sub: uint256, _amount: uint256):
    """
    @notice Move `_amount` tokens from the caller into sub-account `_sub`; what the vault's
            balance grew by is credited (and logged).
    """
    if not (_amount != 0):
        errors._fail("vault: zero amount")
    received: uint256 = token_io._pull(_amount)
    collateral: int256 = positions._credit(msg.sender, _sub, received)
    log IMarginVault.Deposit(owner=msg.sender, sub=_sub, amount=received, collateral=collateral)


@external
@nonreentrant
def withdraw(_sub: uint256, _amount: uint256):
    """
    @notice Pay `_amount` tokens out of sub-account `_sub` to the caller. Afterwards
            `min(collateral, equity) >= initial margin`: unrealized profit and funding
            not yet settled are never paid out.
    """
    if not (_amount != 0):
        errors._fail("vault: zero amount")
    collateral: int256 = positions._debit_free_collateral(msg.sender, _sub, _amount)
    token_io._push(msg.sender, _amount)
    log IMarginVault.Withdraw(owner=msg.sender, sub=_sub, amount=_amount, collateral=collateral)


@external
@nonreentrant
def transfer_margin(_from_sub: uint256, _to_sub: uint256, _amount: uint256):
    """
    @notice Move `_amount` (token units) of collateral between two of the caller's
            sub-accounts. The source must stay above initial margin, as for a withdrawal.
    """
    if not (_amount != 0):
        errors._fail("vault: zero amount")
    if not (_from_sub != _to_sub):
        errors._fail("vault: same sub-account")
    positions._debit_free_collateral(msg.sender, _from_sub, _amount)
    positions._credit(msg.sender, _to_sub, _amount)
    log IMarginVault.MarginTransferred(owner=msg.sender, from_sub=_from_sub, to_sub=_to_sub, amount=_amount)


# ================================================================== traders: positions


@external
@nonreentrant
def modify_position(_sub: uint256, _market: uint256, _size_delta: int256, _acceptable_price: uint256):
    """
    @notice Buy (`_size_delta > 0`) or sell base units of `_market` for sub-account `_sub`
            at the oracle price adjusted for skew. Reverts if the fill is worse than
            `_acceptable_price` (above it for a buy, below it for a sell).
    @dev A trade that opens or increases risk must leave equity >= initial margin and is
         refused while the market is paused. A trade that only reduces risk is always
         allowed, except that it may not turn a healthy account liquidatable.
    """
    self._check_atomic()
    positions._modify(msg.sender, _sub, _market, _size_delta, _acceptable_price)


@external
@nonreentrant
def close_position(_sub: uint256, _market: uint256, _acceptable_price: uint256):
    """
    @notice Close the whole position of sub-account `_sub` in `_market`.
    """
    self._check_atomic()
    positions._modify(msg.sender, _sub, _market, -positions._open_size(msg.sender, _sub, _market), _acceptable_price)


@external
@nonreentrant
def settle_trade(
    _owner: address, _sub: uint256, _market: uint256, _size_delta: int256, _acceptable_price: uint256, _at: uint256
) -> (int256, uint256, uint256):
    """
    @notice Fill a request of `_owner`'s sub-account at the settlement rounds of `_at`
            (each market's first oracle round at or after it), with every check of
            `modify_position`.
    @dev Router only; `_at` is the request's committed_at + settlement_delay, never 0.
    @return (size filled, fill price, fee in USD WAD)
    """
    self._check_router(_at)
    fill: uint256 = 0
    fee: uint256 = 0
    fill, fee = positions._modify(_owner, _sub, _market, _size_delta, _acceptable_price)
    markets._set_settle_time(0)
    return _size_delta, fill, fee


@external
def poke(_market: uint256):
    """
    @notice Accrue funding of `_market` up to now (a settled market's stays frozen).
            Anyone may call it.
    """
    if not (markets._params[_market].sizes != 0):
        errors._fail("vault: unknown market")
    funding_index._accrue(_market, markets._strict_price(_market), markets._skew(_market))


@view
@external
def market_params(_market: uint256) -> IMarginVault.MarketParams:
    """
    @notice The market's parameters (ratios and leverage in WAD, sizes in base units).
    """
    return markets._load_params(_market)


# ================================================================== liquidity providers


@external
def add_liquidity(_amount: uint256) -> uint256:
    """
    @notice Deposit `_amount` tokens into the LP pool for shares priced at pool value (not
            while ADL owed can still come back: `adl_pending`). Runs in VaultExtension.
    @return The shares minted.
    """
    self._check_atomic()
    return abi_decode(self._delegate(), uint256)


@external
def remove_liquidity(_shares: uint256) -> uint256:
    """
    @notice Burn `_shares` for their part of the pool value, paid in tokens (rounded down).
            Cash that backs the traders' net exposure stays locked. Runs in VaultExtension.
    @return The tokens paid out.
    """
    self._check_atomic()
    return abi_decode(self._delegate(), uint256)


@external
def settle_liquidity(_provider: address, _amount: uint256, _add: bool, _at: uint256) -> uint256:
    """
    @notice Fill an LP request of `_provider` with the pool valued at the settlement rounds
            of `_at`: `_add` deposits `_amount` tokens (paid by the router, which escrowed
            them) for shares; otherwise burns `_amount` shares and pays the provider.
    @dev Router only. Runs in VaultExtension, at the settlement time set here.
    @return The shares minted or the tokens paid.
    """
    self._check_router(_at)
    result: uint256 = abi_decode(self._delegate(), uint256)
    markets._set_settle_time(0)
    return result


@external
def deleverage(_owner: address, _sub: uint256, _market: uint256, _size: uint256) -> uint256:
    """
    @notice Auto-deleverage a profitable position against a bankruptcy (SPEC 14): runs
            VaultExtension.deleverage (see there for the rule). The deleverager only.
    @return The size closed (base units, WAD).
    """
    return abi_decode(self._delegate(), uint256)


@view
@external
def adl_pending(_market: uint256, _side: uint256) -> (uint256, uint256, uint256):
    """
    @notice What `_side` (0 longs, 1 shorts) of `_market` still owes by ADL: (the size to
            close, base units WAD; the bankruptcy price to close it at, WAD; when it
            expires, ADL_EXPIRY = 1 hour after its last booking): (0, 0, 0) when none or
            expired. LP deposits wait while any is owed.
    """
    owed: uint256 = adl._owed(_market, _side)
    if owed == 0:
        return 0, 0, 0
    return owed, adl._price(_market, _side), adl.pending[_market][_side].booked_at + adl.ADL_EXPIRY


@view
@external
def loss_window() -> (uint256, uint256):
    """
    @notice The pool's loss window (SPEC 14): (its start time, the bad debt the pool may still
            absorb in it, USD WAD); (0, 0) before the first bad debt. A new window opens at
            the first bad debt 24 h or more after the start, with a budget of pool_loss_cap
            of the pool's cash.
    """
    return pool._loss_window_state()


# ================================================================== views


@view
@external
def position(_owner: address, _sub: uint256, _market: uint256) -> IMarginVault.Position:
    """
    @notice The stored position (size, entry price, funding index at last settlement).
    """
    return positions._load_position(_owner, _sub, _market)


@view
@external
def collateral(_owner: address, _sub: uint256) -> int256:
    """
    @notice Settled collateral in USD (WAD); negative only while positions are open (an account
            that ends empty and short has its shortfall covered as bad debt).
    """
    return positions._load_account(_owner, _sub)[0]


@view
@external
def equity(_owner: address, _sub: uint256) -> int256:
    """
    @notice Collateral + unrealized PnL + unsettled funding, USD (WAD), at the latest prices.
    """
    return positions._health(_owner, _sub, False).equity


@view
@external
def initial_margin(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Sum over positions of notional / max_leverage + min_position_margin, USD (WAD).
    """
    return positions._health(_owner, _sub, False).initial_margin


@view
@external
def maintenance_margin(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Sum over positions of notional * mmr + min_position_margin, USD (WAD).
    """
    return positions._health(_owner, _sub, False).maintenance_margin


@view
@external
def is_liquidatable(_owner: address, _sub: uint256) -> bool:
    """
    @notice True when equity < maintenance margin (an empty account never is: its collateral is
            never negative).
    """
    h: IMarginVault.AccountHealth = positions._health(_owner, _sub, False)
    return h.equity < convert(h.maintenance_margin, int256)


@view
@external
def account_health(_owner: address, _sub: uint256) -> IMarginVault.AccountHealth:
    """
    @notice The full breakdown: collateral, unrealized PnL, funding, equity, IM, MM.
    """
    return positions._health(_owner, _sub, False)


@view
@external
def withdrawable(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Token units that `withdraw` would pay out now (at the latest prices).
    """
    return positions._free_collateral(positions._health(_owner, _sub, False)) // token_io.TOKEN_SCALE


@view
@external
def market_state(_market: uint256) -> IMarginVault.MarketState:
    """
    @notice Open interest, aggregate sums and the stored (last accrued) funding state.
    """
    return markets._load_market(_market)


@view
@external
def pool_value() -> int256:
    """
    @notice Pool cash minus what the pool owes traders at the latest prices (unrealized
            PnL) plus the funding traders owe the pool and have not settled, USD (WAD).
    """
    return pool._pool_value(False)


@view
@external
def funding(_market: uint256) -> (int256, int256):
    """
    @notice `(funding_rate, funding_index)` as of now, including time not yet accrued:
            the rate in WAD per day (> 0: longs pay shorts), the index in USD (WAD) per
            unit of size.
    """
    return funding_index._funding_now(_market, markets._latest_price(_market))


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
    @dev A shortfall left by the close goes down the bad-debt waterfall (SPEC 11.6). Here, not
         in VaultExtension: the vault has the trade code (`positions._modify`) already.
    """
    if not markets._is_settled(_market):
        errors._fail("vault: market not settled")
    size: int256 = positions._open_size(_owner, _sub, _market)
    bound: uint256 = max_value(uint256)
    if size > 0:
        bound = 0
    positions._modify(_owner, _sub, _market, -size, bound)


# ================================================================== liquidation


@external
def liquidate(_owner: address, _sub: uint256, _keeper: address) -> (bool, uint256):
    """
    @notice Liquidate account `(_owner, _sub)` if its equity is below its maintenance margin;
            returns `(False, 0)` and changes nothing when it is not. Only the
            LiquidationKeeper may call it. Runs VaultExtension.liquidate in this vault's
            storage (see there for the rule).
    @return (liquidated, keeper reward in token units)
    """
    return abi_decode(self._delegate(), (bool, uint256))


@view
@external
def liquidation_price(_owner: address, _sub: uint256, _market: uint256) -> uint256:
    """
    @notice The oracle price of `_market` at which the account becomes liquidatable, every
            other price fixed (0: no position, or no positive price liquidates it).
    @dev Computed by the LiquidationKeeper from this vault's views (it keeps the vault under
         the contract size limit); model.liquidation_price is the same formula.
    """
    return staticcall ILiquidationKeeper(liquidation._liquidator()).liquidation_price(_owner, _sub, _market)


@view
@external
def liquidator() -> address:
    """
    @notice The LiquidationKeeper: the only caller of `liquidate` (zero: liquidations stopped).
    """
    return liquidation._liquidator()


@view
@external
def max_keeper_reward() -> uint256:
    """
    @notice Cap on the part of a liquidation fee paid to the caller, USD (WAD).
    """
    return liquidation._liquidation & MASK96


@view
@external
def min_keeper_reward() -> uint256:
    """
    @notice Floor of a liquidation's keeper reward, USD (WAD): when the collected fee pays
            less, the insurance fund pays the difference (as far as it holds it).
    """
    return liquidation._min_keeper_reward


# ================================================================== owner


# ================================================================== owner (in VaultExtension)


@external
def __default__():
    """
    @notice Every other entry point (the owner's: set_market_params, set_liquidator,
            set_pool_caps, set_router, set_deleverager, pause, unpause, pause_market,
            unpause_market, settle_market) runs in VaultExtension's code on this vault's
            storage (delegatecall), with the caller's address; an unknown selector reverts
            there. Entry points that return a value have forwarders of their own (add_market,
            liquidate, deleverage, add_liquidity, remove_liquidity, settle_liquidity).
    """
    self._delegate()


@external
def add_market(_params: IMarginVault.MarketParams) -> uint256:
    """
    @notice Create a market (owner only); ids are assigned 0, 1, 2... Runs in VaultExtension.
    @return The new market's id.
    """
    return abi_decode(self._delegate(), uint256)


@view
@external
def pool_caps() -> (uint256, uint256, uint256, uint256):
    """
    @notice (reserve_factor, max_exposure_factor, max_pnl_factor, pool_loss_cap), WAD (see
            `set_pool_caps`).
    """
    return pool._load_caps()


@view
@external
def atomic_trading() -> bool:
    """
    @notice Whether owners may trade and move liquidity directly at the latest price
            (fixed at deployment; off unless deployed for unit tests of the margin math).
    """
    return ATOMIC_TRADING


# ================================================================== internals


@view
@internal
def _check_atomic():
    if not ATOMIC_TRADING:
        errors._fail("vault: use the order router")


@internal
def _delegate() -> Bytes[256]:
    """
    @dev Runs the call's own calldata in VaultExtension on this storage; bubbles a revert
         up unchanged (reasons fit in 256 bytes).
    """
    ok: bool = False
    response: Bytes[256] = b""
    ok, response = raw_call(EXTENSION, msg.data, max_outsize=256, is_delegate_call=True, revert_on_failure=False)
    if not ok:
        raw_revert(response)
    return response


@internal
def _check_router(_at: uint256):
    """
    @dev Only the router fills requests, always at a settlement time (0 would mean the
         latest price: the free option the router exists to close).
    """
    if not (msg.sender == roles.router and _at != 0):
        errors._fail("vault: not the order router")
    markets._set_settle_time(_at)
