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
from modules import wad_math
from modules import funding_math

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)

# ------------------------------------------------------------------ constants

WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
MAX_MARKETS: constant(uint256) = 64
MAX_MARKETS_PER_ACCOUNT: constant(uint256) = 8
# Sizes and prices are packed into one slot (see _store_position): 128 bits each.
MAX_ABS_SIZE: constant(int256) = 2**120
MAX_PRICE: constant(uint256) = 2**128 - 1
SIZE_BIAS: constant(int256) = 2**127
COLLATERAL_BIAS: constant(int256) = 2**191
MASK192: constant(uint256) = 2**192 - 1
MASK80: constant(uint256) = 2**80 - 1
MASK60: constant(uint256) = 2**60 - 1
MASK68: constant(uint256) = 2**68 - 1
MASK128: constant(uint256) = 2**128 - 1
MASK88: constant(uint256) = 2**88 - 1
MASK96: constant(uint256) = 2**96 - 1
# The funding word packs rate (88 bits), index (128 bits) and time (40 bits), so that an
# accrual reads and writes one slot. At the largest max_funding_velocity (100 per day) the
# rate needs 4,000 years to reach RATE_BIAS; the index, 2**127, is 1.7e20 USD per unit.
RATE_BIAS: constant(int256) = 2**87
INDEX_BIAS: constant(int256) = 2**127
# Liquidation (SPEC 8; model.liquidation_fraction is the same rule): everything is closed when
# equity is below FULL_LIQUIDATION_RATIO of MM, or when what would remain holds less than
# DUST_MARGIN of initial margin above the fixed per-position minimums.
FULL_LIQUIDATION_RATIO: constant(uint256) = 5 * 10**17
DUST_MARGIN: constant(uint256) = 10**18
# Virtual shares and assets make the first LP deposit and donations unable to move
# the share price (no inflation attack): price = (value + VA) / (shares + VS).
VIRTUAL_SHARES: constant(uint256) = 10**18
VIRTUAL_ASSETS: constant(uint256) = 10**18

# ------------------------------------------------------------------ immutables

TOKEN: public(immutable(IERC20))
ORACLE: public(immutable(IPriceOracle))
TOKEN_SCALE: public(immutable(uint256))  # WAD per token unit (10**12 for 6 decimals)
ATOMIC_TRADING: immutable(bool)

# ------------------------------------------------------------------ storage


# Storage is packed so that a trade reads and writes as few slots as possible; the
# external views (`position`, `market_params`, `market_state`) return the unpacked structs.


struct StoredPosition:
    size_entry: uint256     # low 128 bits: size + 2**127, high 128 bits: entry price
    funding_index: int256


struct StoredParams:
    margin: uint256         # max_leverage | maintenance_margin_ratio << 80 | min_position_margin << 160
    # taker_fee | liquidation_fee_ratio << 60 | max_funding_velocity << 120 | max_pool_exposure << 188
    # (_check_params: at most 10**17, below 10**18, at most 100 * 10**18 and 10 * 10**18)
    trading: uint256
    sizes: uint256          # skew_scale | max_open_interest << 128 (never 0 for a market)


struct StoredMarket:
    oi: uint256             # oi_long | oi_short << 128
    funding: uint256        # (rate + 2**87) | (index + 2**127) << 88 | last_funding_time << 216
    entry_sum: int256
    funding_sum: int256


market_count: public(uint256)
_params: HashMap[uint256, StoredParams]
_markets: HashMap[uint256, StoredMarket]
market_paused: public(HashMap[uint256, bool])
paused: public(bool)

_positions: HashMap[address, HashMap[uint256, HashMap[uint256, StoredPosition]]]
# Per account: (collateral + 2**191) in the low 192 bits, the set of markets with a
# position (bit m = market m) in the high 64. 0 = empty account. A trade writes this one
# slot for both its fee/PnL and its market set.
_accounts: HashMap[address, HashMap[uint256, uint256]]

pool_balance: public(int256)       # LP cash: deposits + fees + trader losses - trader gains
insurance_fund: public(uint256)    # USD (WAD): liquidation fees in, bad debt out
lp_shares: public(HashMap[address, uint256])
total_lp_shares: public(uint256)

# The cap on the part of a liquidation fee paid to the caller (USD, WAD, <= 10**24) in the
# low 96 bits, the LiquidationKeeper (the only caller of `liquidate`) in the high 160: a
# liquidation reads both from one slot.
_liquidation: uint256

# The OrderRouter: the only caller of `settle_trade` and `settle_liquidity`.
router: public(address)
# While the router settles a request: the time its settlement rounds are measured from
# (committed_at + settlement_delay); every strict price read then takes each market's
# first round at or after it (PriceOracle.price_at). 0 otherwise: the latest price.
_settle_time: transient(uint256)


@deploy
def __init__(_token: IERC20, _oracle: IPriceOracle, _token_decimals: uint8, _atomic_trading: bool):
    """
    @param _token The collateral stablecoin (no fee-on-transfer, no rebasing).
    @param _oracle The PriceOracle read for every market.
    @param _token_decimals The token's decimals (at most 18).
    @param _atomic_trading Let owners trade and move liquidity directly at the latest price
           (never in production: fills at a price everyone sees coming are a free option).
    """
    ownable.__init__()
    ownable_2step.__init__()
    if not (_token_decimals <= 18):
        self._fail("vault: bad decimals")
    TOKEN = _token
    ORACLE = _oracle
    TOKEN_SCALE = 10 ** convert(18 - _token_decimals, uint256)
    ATOMIC_TRADING = _atomic_trading


# ================================================================== traders: collateral


@external
@nonreentrant
def deposit(_sub: uint256, _amount: uint256):
    """
    @notice Move `_amount` tokens from the caller into sub-account `_sub`.
    """
    if not (_amount != 0):
        self._fail("vault: zero amount")
    self._pull(_amount)
    collateral: int256 = 0
    mask: uint256 = 0
    collateral, mask = self._load_account(msg.sender, _sub)
    collateral += self._to_wad(_amount)
    self._store_account(msg.sender, _sub, collateral, mask)
    log IMarginVault.Deposit(owner=msg.sender, sub=_sub, amount=_amount, collateral=collateral)


@external
@nonreentrant
def withdraw(_sub: uint256, _amount: uint256):
    """
    @notice Pay `_amount` tokens out of sub-account `_sub` to the caller. Afterwards
            `min(collateral, equity) >= initial margin`: unrealized profit and funding
            not yet settled are never paid out.
    """
    if not (_amount != 0):
        self._fail("vault: zero amount")
    collateral: int256 = self._debit_free_collateral(msg.sender, _sub, _amount)
    self._push(msg.sender, _amount)
    log IMarginVault.Withdraw(owner=msg.sender, sub=_sub, amount=_amount, collateral=collateral)


@external
@nonreentrant
def transfer_margin(_from_sub: uint256, _to_sub: uint256, _amount: uint256):
    """
    @notice Move `_amount` (token units) of collateral between two of the caller's
            sub-accounts. The source must stay above initial margin, as for a withdrawal.
    """
    if not (_amount != 0):
        self._fail("vault: zero amount")
    if not (_from_sub != _to_sub):
        self._fail("vault: same sub-account")
    self._debit_free_collateral(msg.sender, _from_sub, _amount)
    collateral: int256 = 0
    mask: uint256 = 0
    collateral, mask = self._load_account(msg.sender, _to_sub)
    self._store_account(msg.sender, _to_sub, collateral + self._to_wad(_amount), mask)
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
    self._modify(msg.sender, _sub, _market, _size_delta, _acceptable_price)


@external
@nonreentrant
def close_position(_sub: uint256, _market: uint256, _acceptable_price: uint256):
    """
    @notice Close the whole position of sub-account `_sub` in `_market`.
    """
    self._check_atomic()
    self._modify(msg.sender, _sub, _market, -self._open_size(msg.sender, _sub, _market), _acceptable_price)


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
    fill, fee = self._modify(_owner, _sub, _market, _size_delta, _acceptable_price)
    self._settle_time = 0
    return _size_delta, fill, fee


@external
def poke(_market: uint256):
    """
    @notice Accrue funding of `_market` up to now. Anyone may call it.
    """
    if not (self._params[_market].sizes != 0):
        self._fail("vault: unknown market")
    self._accrue(_market, staticcall ORACLE.price(_market), self._skew(_market))


@view
@external
def market_params(_market: uint256) -> IMarginVault.MarketParams:
    """
    @notice The market's parameters (ratios and leverage in WAD, sizes in base units).
    """
    return self._load_params(_market)


# ================================================================== liquidity providers


@external
@nonreentrant
def add_liquidity(_amount: uint256) -> uint256:
    """
    @notice Deposit `_amount` tokens into the LP pool for shares priced at pool value.
    @return The shares minted.
    """
    self._check_atomic()
    return self._add_liquidity(msg.sender, _amount)


@external
@nonreentrant
def remove_liquidity(_shares: uint256) -> uint256:
    """
    @notice Burn `_shares` for their part of the pool value, paid in tokens (rounded down).
            Cash that backs the traders' net exposure stays locked.
    @return The tokens paid out.
    """
    self._check_atomic()
    return self._remove_liquidity(msg.sender, _shares)


@external
@nonreentrant
def settle_liquidity(_provider: address, _amount: uint256, _add: bool, _at: uint256) -> uint256:
    """
    @notice Fill an LP request of `_provider` with the pool valued at the settlement rounds
            of `_at`: `_add` deposits `_amount` tokens (paid by the router, which escrowed
            them) for shares; otherwise burns `_amount` shares and pays the provider.
    @dev Router only.
    @return The shares minted or the tokens paid.
    """
    self._check_router(_at)
    result: uint256 = 0
    if _add:
        result = self._add_liquidity(_provider, _amount)
    else:
        result = self._remove_liquidity(_provider, _amount)
    self._settle_time = 0
    return result


# ================================================================== views


@view
@external
def position(_owner: address, _sub: uint256, _market: uint256) -> IMarginVault.Position:
    """
    @notice The stored position (size, entry price, funding index at last settlement).
    """
    return self._load_position(_owner, _sub, _market)


@view
@external
def collateral(_owner: address, _sub: uint256) -> int256:
    """
    @notice Settled collateral in USD (WAD); negative only while positions are open (an account
            that ends empty and short has its shortfall covered as bad debt).
    """
    return self._load_account(_owner, _sub)[0]


@view
@external
def equity(_owner: address, _sub: uint256) -> int256:
    """
    @notice Collateral + unrealized PnL + unsettled funding, USD (WAD), at the latest prices.
    """
    return self._health(_owner, _sub, False).equity


@view
@external
def initial_margin(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Sum over positions of notional / max_leverage + min_position_margin, USD (WAD).
    """
    return self._health(_owner, _sub, False).initial_margin


@view
@external
def maintenance_margin(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Sum over positions of notional * mmr + min_position_margin, USD (WAD).
    """
    return self._health(_owner, _sub, False).maintenance_margin


@view
@external
def is_liquidatable(_owner: address, _sub: uint256) -> bool:
    """
    @notice True when equity < maintenance margin (an empty account never is: its collateral is
            never negative).
    """
    h: IMarginVault.AccountHealth = self._health(_owner, _sub, False)
    return h.equity < convert(h.maintenance_margin, int256)


@view
@external
def account_health(_owner: address, _sub: uint256) -> IMarginVault.AccountHealth:
    """
    @notice The full breakdown: collateral, unrealized PnL, funding, equity, IM, MM.
    """
    return self._health(_owner, _sub, False)


@view
@external
def withdrawable(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Token units that `withdraw` would pay out now (at the latest prices).
    """
    return self._free_collateral(self._health(_owner, _sub, False)) // TOKEN_SCALE


@view
@external
def market_state(_market: uint256) -> IMarginVault.MarketState:
    """
    @notice Open interest, aggregate sums and the stored (last accrued) funding state.
    """
    return self._load_market(_market)


@view
@external
def pool_value() -> int256:
    """
    @notice Pool cash minus what the pool owes traders at the latest prices (unrealized
            PnL) plus the funding traders owe the pool and have not settled, USD (WAD).
    """
    return self._pool_value(False)


@view
@external
def funding(_market: uint256) -> (int256, int256):
    """
    @notice `(funding_rate, funding_index)` as of now, including time not yet accrued:
            the rate in WAD per day (> 0: longs pay shorts), the index in USD (WAD) per
            unit of size.
    """
    return self._funding_now(_market, self._latest_price(_market))


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
         pays `_keeper` up to `max_keeper_reward` (in tokens, rounded down) and the insurance
         fund the rest. If a full liquidation leaves negative collateral, the insurance fund
         covers it, then the LP pool. Works while paused. A second call in the same block
         finds the account healthy (or empty) and pays nothing.
    @return (liquidated, keeper reward in token units)
    """
    config: uint256 = self._liquidation
    if msg.sender != convert(config >> 96, address):
        self._fail("vault: not liquidator")
    self._settle_funding(_owner, _sub)
    # funding is settled: the health's funding term is 0
    h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
    if h.equity >= convert(h.maintenance_margin, int256):
        return False, 0
    mask: uint256 = self._load_account(_owner, _sub)[1]

    # pass 1: the fixed minimums and the fee of closing everything decide the share
    min_margins: uint256 = 0
    fee_full: uint256 = 0
    rest: uint256 = mask
    for m: uint256 in range(MAX_MARKETS):
        if rest == 0:
            break
        if rest & 1 == 1:
            min_margins += self._params[m].margin >> 160
            fee_full += self._close_fee(m, self._close_share(_owner, _sub, m, WAD, False)[0])
        rest = rest >> 1
    fraction: uint256 = self._liquidation_fraction(h, min_margins, fee_full)

    # pass 2: close the same share of every position
    notional: uint256 = 0
    pnl: int256 = 0
    fee: uint256 = 0
    rest = mask
    for m: uint256 in range(MAX_MARKETS):
        if rest == 0:
            break
        if rest & 1 == 1:
            n: uint256 = 0
            p: int256 = 0
            left: int256 = 0
            n, p, left = self._close_share(_owner, _sub, m, fraction, True)
            notional += n
            pnl += p
            fee += self._close_fee(m, n)
            if left == 0:
                mask ^= 1 << m
        rest = rest >> 1

    reward: uint256 = min(fee, config & MASK96) // TOKEN_SCALE
    collateral: int256 = h.collateral + pnl - convert(fee, int256)
    self.pool_balance -= pnl
    self.insurance_fund += fee - reward * TOKEN_SCALE
    bad_debt: uint256 = 0
    if mask == 0 and collateral < 0:
        bad_debt = convert(-collateral, uint256)
        self._cover_bad_debt(_owner, _sub, bad_debt)
        collateral = 0
    self._store_account(_owner, _sub, collateral, mask)
    if reward != 0:
        self._push(_keeper, reward)
    log IMarginVault.Liquidation(
        owner=_owner,
        sub=_sub,
        keeper=_keeper,
        equity=h.equity,
        maintenance_margin=h.maintenance_margin,
        fraction=fraction,
        notional_closed=notional,
        realized_pnl=pnl,
        fee=fee,
        keeper_reward=reward,
        insurance_fee=fee - reward * TOKEN_SCALE,
        bad_debt=bad_debt,
        collateral=collateral,
    )
    return True, reward


@view
@external
def liquidation_price(_owner: address, _sub: uint256, _market: uint256) -> uint256:
    """
    @notice The oracle price of `_market` at which the account becomes liquidatable, every
            other price fixed (0: no position, or no positive price liquidates it).
    @dev Computed by the LiquidationKeeper from this vault's views (it keeps the vault under
         the contract size limit); model.liquidation_price is the same formula.
    """
    return staticcall ILiquidationKeeper(convert(self._liquidation >> 96, address)).liquidation_price(_owner, _sub, _market)


@view
@external
def liquidator() -> address:
    """
    @notice The LiquidationKeeper: the only caller of `liquidate` (zero: liquidations stopped).
    """
    return convert(self._liquidation >> 96, address)


@view
@external
def max_keeper_reward() -> uint256:
    """
    @notice Cap on the part of a liquidation fee paid to the caller, USD (WAD).
    """
    return self._liquidation & MASK96


# ================================================================== owner


@external
def add_market(_params: IMarginVault.MarketParams) -> uint256:
    """
    @notice Create a market; ids are assigned 0, 1, 2... The oracle must price it.
    @dev Owner only.
    @return The new market's id.
    """
    ownable._check_owner()
    market: uint256 = self.market_count
    if not (market < MAX_MARKETS):
        self._fail("vault: too many markets")
    self._check_params(_params)
    self._store_params(market, _params)
    self._markets[market].funding = self._pack_funding(0, 0, block.timestamp)
    self.market_count = market + 1
    log IMarginVault.MarketAdded(market=market, params=_params)
    return market


@external
def set_market_params(_market: uint256, _params: IMarginVault.MarketParams):
    """
    @notice Replace a market's parameters. Funding is accrued first under the old ones.
    @dev Owner only.
    """
    ownable._check_owner()
    if not (_market < self.market_count):
        self._fail("vault: unknown market")
    self._check_params(_params)
    self._accrue(_market, self._latest_price(_market), self._skew(_market))
    self._store_params(_market, _params)
    log IMarginVault.MarketParamsSet(market=_market, params=_params)


@external
def set_liquidator(_liquidator: address, _max_keeper_reward: uint256):
    """
    @notice Set the LiquidationKeeper (the only caller of `liquidate`; the zero address
            stops liquidations) and the cap on the keeper's reward (USD, WAD).
    @dev Owner only.
    """
    ownable._check_owner()
    if _max_keeper_reward > 1_000_000 * WAD:
        self._fail("vault: bad max_keeper_reward")
    self._liquidation = (convert(_liquidator, uint256) << 96) | _max_keeper_reward
    log IMarginVault.LiquidatorSet(liquidator=_liquidator, max_keeper_reward=_max_keeper_reward)


@external
def set_router(_router: address):
    """
    @notice Set the OrderRouter, the only filler of two-step requests (zero: none fill).
    @dev Owner only.
    """
    ownable._check_owner()
    self.router = _router
    log IMarginVault.RouterSet(router=_router)


@view
@external
def atomic_trading() -> bool:
    """
    @notice Whether owners may trade and move liquidity directly at the latest price
            (fixed at deployment; off unless deployed for unit tests of the margin math).
    """
    return ATOMIC_TRADING


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
    ownable._check_owner()
    self.paused = _paused
    log IMarginVault.GlobalPauseSet(paused=_paused)


@internal
def _set_market_paused(_market: uint256, _paused: bool):
    ownable._check_owner()
    if not (_market < self.market_count):
        self._fail("vault: unknown market")
    self.market_paused[_market] = _paused
    log IMarginVault.MarketPauseSet(market=_market, paused=_paused)


# ================================================================== internals: pool


@internal
def _add_liquidity(_provider: address, _amount: uint256) -> uint256:
    """
    @dev Shares for `_amount` tokens paid by the caller, credited to `_provider`.
    """
    if not (_amount != 0):
        self._fail("vault: zero amount")
    value: int256 = self._pool_value(True)
    if not (value >= 0):
        self._fail("vault: pool insolvent")
    amount_wad: uint256 = _amount * TOKEN_SCALE
    shares: uint256 = amount_wad * (self.total_lp_shares + VIRTUAL_SHARES) // (convert(value, uint256) + VIRTUAL_ASSETS)
    if not (shares != 0):
        self._fail("vault: zero shares")
    self._pull(_amount)
    self.pool_balance += convert(amount_wad, int256)
    self.lp_shares[_provider] += shares
    self.total_lp_shares += shares
    log IMarginVault.LiquidityAdded(provider=_provider, amount=_amount, shares=shares, pool_value=value + convert(amount_wad, int256))
    return shares


@internal
def _remove_liquidity(_provider: address, _shares: uint256) -> uint256:
    if not (_shares != 0):
        self._fail("vault: zero shares")
    if not (_shares <= self.lp_shares[_provider]):
        self._fail("vault: insufficient shares")
    value: int256 = self._pool_value(True)
    if not (value > 0):
        self._fail("vault: pool insolvent")
    # The virtual shares and assets dampen the first deposit; on the way out they would pay
    # more than a pro-rata part when a share is worth less than one unit (the last LP could
    # then never leave), so the payout is the smaller of the two, in the pool's favour.
    owed_wad: uint256 = min(
        _shares * (convert(value, uint256) + VIRTUAL_ASSETS) // (self.total_lp_shares + VIRTUAL_SHARES),
        _shares * convert(value, uint256) // self.total_lp_shares,
    )
    amount: uint256 = owed_wad // TOKEN_SCALE
    if not (amount != 0):
        self._fail("vault: zero amount")
    paid_wad: int256 = convert(amount * TOKEN_SCALE, int256)
    cash: int256 = self.pool_balance - paid_wad
    if not (cash >= 0):
        self._fail("vault: pool cash locked")
    self._check_pool_backs_exposure(cash)
    self.pool_balance = cash
    self.lp_shares[_provider] -= _shares
    self.total_lp_shares -= _shares
    self._push(_provider, amount)
    log IMarginVault.LiquidityRemoved(provider=_provider, amount=amount, shares=_shares, pool_value=value - paid_wad)
    return amount


# ================================================================== internals: trading


@view
@internal
def _check_atomic():
    if not ATOMIC_TRADING:
        self._fail("vault: use the order router")


@internal
def _check_router(_at: uint256):
    """
    @dev Only the router fills requests, always at a settlement time (0 would mean the
         latest price: the free option the router exists to close).
    """
    if not (msg.sender == self.router and _at != 0):
        self._fail("vault: not the order router")
    self._settle_time = _at


@view
@internal
def _open_size(_owner: address, _sub: uint256, _market: uint256) -> int256:
    size: int256 = self._load_position(_owner, _sub, _market).size
    if not (size != 0):
        self._fail("vault: no position")
    return size


@internal
def _modify(_owner: address, _sub: uint256, _market: uint256, _size_delta: int256, _acceptable_price: uint256) -> (uint256, uint256):
    if not (_size_delta != 0):
        self._fail("vault: zero size")
    if not (_size_delta >= -MAX_ABS_SIZE and _size_delta <= MAX_ABS_SIZE):
        self._fail("vault: size out of range")
    sizes: uint256 = self._params[_market].sizes
    if not (sizes != 0):
        self._fail("vault: unknown market")
    price: uint256 = self._strict_price(_market)
    skew: int256 = self._skew(_market)
    index: int256 = self._accrue(_market, price, skew)
    trading: uint256 = self._params[_market].trading

    pos: IMarginVault.Position = self._load_position(_owner, _sub, _market)
    size: int256 = pos.size + _size_delta
    increases_risk: bool = self._increases_risk(pos.size, size)
    healthy_before: bool = True
    if not increases_risk:
        h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
        healthy_before = h.equity >= convert(h.maintenance_margin, int256)

    fill: uint256 = self._fill_price(price, skew, _size_delta, sizes & MASK128)
    if _size_delta > 0:
        if not (fill <= _acceptable_price):
            self._fail("vault: fill above acceptable price")
    else:
        if not (fill >= _acceptable_price):
            self._fail("vault: fill below acceptable price")
    fee: uint256 = wad_math._ceil_div(wad_math._ceil_div(wad_math._abs(_size_delta) * fill, WAD) * (trading & MASK60), WAD)

    funding: int256 = wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)
    pnl: int256 = 0
    entry: uint256 = 0
    pnl, entry = self._trade_pnl_and_entry(pos.size, pos.entry_price, _size_delta, fill)

    oi: uint256 = self._move_position(_owner, _sub, _market, pos, size, entry, index)

    # money: everything the trader gains the pool pays, and the other way round
    delta: int256 = pnl + funding - convert(fee, int256)
    collateral: int256 = 0
    mask: uint256 = 0
    collateral, mask = self._load_account(_owner, _sub)
    collateral += delta
    if pos.size == 0 or size == 0:
        mask ^= 1 << _market
    self.pool_balance -= delta
    if mask == 0 and collateral < 0:
        # An underwater owner closed their last position: what they cannot pay is bad debt,
        # covered now, never left as negative collateral on an empty account (SPEC 11.6).
        self._cover_bad_debt(_owner, _sub, convert(-collateral, uint256))
        collateral = 0
    self._store_account(_owner, _sub, collateral, mask)


    if increases_risk:
        if not (not self.paused and not self.market_paused[_market]):
            self._fail("vault: market paused")
        max_open_interest: uint256 = sizes >> 128
        if size > 0:
            if not (oi & MASK128 <= max_open_interest):
                self._fail("vault: open interest cap")
        else:
            if not (oi >> 128 <= max_open_interest):
                self._fail("vault: open interest cap")
        if not (self._pool_backs(skew + _size_delta, price, self.pool_balance, trading)):
            self._fail("vault: pool cannot back open interest")
        if pos.size == 0:
            self._check_market_count(mask)
        h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
        if not (h.equity >= convert(h.initial_margin, int256)):
            self._fail("vault: below initial margin")
    elif healthy_before:
        h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
        if not (h.equity >= convert(h.maintenance_margin, int256)):
            self._fail("vault: trade would make account liquidatable")

    log IMarginVault.PositionModified(
        owner=_owner,
        sub=_sub,
        market=_market,
        size_delta=_size_delta,
        size=size,
        entry_price=entry,
        fill_price=fill,
        oracle_price=price,
        fee=fee,
        realized_pnl=pnl,
        funding=funding,
        collateral=collateral,
    )
    return fill, fee


@internal
def _cover_bad_debt(_owner: address, _sub: uint256, _bad_debt: uint256):
    """
    @dev The bad-debt waterfall: the insurance fund pays what it can, the LP pool the rest.
    """
    from_insurance: uint256 = min(self.insurance_fund, _bad_debt)
    self.insurance_fund -= from_insurance
    self.pool_balance -= convert(_bad_debt - from_insurance, int256)
    log IMarginVault.BadDebtCovered(
        owner=_owner, sub=_sub, bad_debt=_bad_debt, from_insurance=from_insurance, from_pool=_bad_debt - from_insurance
    )


@pure
@internal
def _increases_risk(_old: int256, _new: int256) -> bool:
    # Growing |size| or flipping to the other side opens risk; shrinking does not.
    if _new == 0:
        return False
    if _old == 0:
        return True
    if (_old > 0) != (_new > 0):
        return True
    return wad_math._abs(_new) > wad_math._abs(_old)


@pure
@internal
def _trade_pnl_and_entry(_size: int256, _entry: uint256, _delta: int256, _fill: uint256) -> (int256, uint256):
    """
    @dev Realized PnL of the part that closes (floored: the trader never gains from
         rounding) and the entry price after the trade: unchanged on a reduce, the fill on
         a flip or open, the size-weighted average on an increase (rounded up for longs,
         down for shorts, against the trader).
    """
    new_size: int256 = _size + _delta
    if _size == 0:
        return 0, _fill
    if (_size > 0) == (_delta > 0):
        # increase on the same side
        total: uint256 = wad_math._abs(_size) * _entry + wad_math._abs(_delta) * _fill
        if _size > 0:
            return 0, wad_math._ceil_div(total, wad_math._abs(new_size))
        return 0, total // wad_math._abs(new_size)
    closed: int256 = _size
    if wad_math._abs(_delta) < wad_math._abs(_size):
        closed = -_delta
    pnl: int256 = wad_math._floor_div(closed * (convert(_fill, int256) - convert(_entry, int256)), IWAD)
    if new_size == 0:
        return pnl, 0
    if (new_size > 0) != (_size > 0):
        return pnl, _fill
    return pnl, _entry


@view
@internal
def _fill_price(_price: uint256, _skew: int256, _delta: int256, _skew_scale: uint256) -> uint256:
    """
    @dev fill = P * (1 + (skew_before + skew_after) / (2 * skew_scale)), rounded up for a
         buy and down for a sell.
    """
    scale2: int256 = 2 * convert(_skew_scale, int256)
    numerator: int256 = convert(_price, int256) * (scale2 + 2 * _skew + _delta)
    if not (numerator > 0):
        self._fail("vault: fill price not positive")
    fill: uint256 = 0
    if _delta > 0:
        fill = wad_math._ceil_div(convert(numerator, uint256), convert(scale2, uint256))
    else:
        fill = convert(numerator, uint256) // convert(scale2, uint256)
    if not (fill != 0 and fill <= MAX_PRICE):
        self._fail("vault: fill price out of range")
    return fill


@pure
@internal
def _check_market_count(_mask: uint256):
    count: uint256 = 0
    mask: uint256 = _mask
    for m: uint256 in range(MAX_MARKETS):
        if mask == 0:
            break
        count += mask & 1
        mask = mask >> 1
    if not (count <= MAX_MARKETS_PER_ACCOUNT):
        self._fail("vault: too many positions")


# ================================================================== internals: liquidation


@pure
@internal
def _liquidation_fraction(_h: IMarginVault.AccountHealth, _min_margins: uint256, _fee_full: uint256) -> uint256:
    """
    @dev The smallest share f (WAD, rounded up) with  E - f * F >= (1 - f) * I + M0, where
         I is the notional part of IM, M0 the fixed minimums and F the fee of closing
         everything (closing at the oracle price moves no value but the fee). WAD (close
         everything) when equity < FULL_LIQUIDATION_RATIO * MM, when f >= 1, or when what
         would remain is dust. Only called with equity < MM <= IM, so the need is > 0.
    """
    if _h.equity * IWAD < convert(_h.maintenance_margin * FULL_LIQUIDATION_RATIO, int256):
        return WAD
    im_notional: uint256 = _h.initial_margin - _min_margins
    if im_notional <= _fee_full:
        return WAD
    need: uint256 = convert(convert(_h.initial_margin, int256) - _h.equity, uint256)
    f: uint256 = wad_math._ceil_div(need * WAD, im_notional - _fee_full)
    if f >= WAD or (WAD - f) * im_notional < DUST_MARGIN * WAD:
        return WAD
    return f


@internal
def _close_share(_owner: address, _sub: uint256, _market: uint256, _fraction: uint256, _write: bool) -> (uint256, int256, int256):
    """
    @dev Closes `_fraction` of one position (|size| * fraction rounded up; all of it at WAD)
         at the oracle price, without price impact; funding is already settled. Returns the
         notional closed, the realized PnL (floored) and the size left. With `_write` off it
         only computes them.
    """
    pos: IMarginVault.Position = self._load_position(_owner, _sub, _market)
    price: uint256 = staticcall ORACLE.price(_market)
    closed: int256 = pos.size
    if _fraction < WAD:
        closed = convert(wad_math._ceil_div(wad_math._abs(pos.size) * _fraction, WAD), int256)
        if pos.size < 0:
            closed = -closed
    left: int256 = pos.size - closed
    pnl: int256 = wad_math._floor_div(closed * (convert(price, int256) - convert(pos.entry_price, int256)), IWAD)
    if _write:
        self._move_position(_owner, _sub, _market, pos, left, pos.entry_price, pos.funding_index)
        log IMarginVault.PositionLiquidated(
            owner=_owner, sub=_sub, market=_market, closed_size=closed, size=left, price=price, realized_pnl=pnl
        )
    return wad_math._ceil_div(wad_math._abs(closed) * price, WAD), pnl, left


@view
@internal
def _close_fee(_market: uint256, _notional: uint256) -> uint256:
    return wad_math._ceil_div(_notional * ((self._params[_market].trading >> 60) & MASK60), WAD)


# ================================================================== internals: funding


@view
@internal
def _funding_now(_market: uint256, _price: uint256) -> (int256, int256):
    """
    @dev Funding rate and index as of now, including time not yet accrued.
    """
    rate: int256 = 0
    index: int256 = 0
    time: uint256 = 0
    rate, index, time = self._load_funding(_market)
    return self._advance(_market, rate, index, block.timestamp - time, _price, self._skew(_market))


@view
@internal
def _advance(_market: uint256, _rate: int256, _index: int256, _dt: uint256, _price: uint256, _skew: int256) -> (int256, int256):
    """
    @dev The market's funding `_dt` seconds on (see modules/funding_math.vy).
    """
    return funding_math._advance(
        _rate, _index, _dt, _price, _skew, self._params[_market].sizes & MASK128, (self._params[_market].trading >> 120) & MASK68
    )


@internal
def _accrue(_market: uint256, _price: uint256, _skew: int256) -> int256:
    """
    @dev Brings the stored funding up to now (one slot read, one written) and returns the
         funding index. Emits FundingAccrued when time has passed.
    """
    rate: int256 = 0
    index: int256 = 0
    time: uint256 = 0
    rate, index, time = self._load_funding(_market)
    if time == block.timestamp:
        return index
    elapsed: uint256 = block.timestamp - time
    rate, index = self._advance(_market, rate, index, elapsed, _price, _skew)
    self._markets[_market].funding = self._pack_funding(rate, index, block.timestamp)
    log IMarginVault.FundingAccrued(
        market=_market,
        funding_rate=rate,
        funding_index=index,
        skew=_skew,
        price=_price,
        elapsed=elapsed,
    )
    return index


@internal
def _settle_funding(_owner: address, _sub: uint256) -> int256:
    """
    @dev Settles the account's accrued funding into its collateral, market by market (the
         pool takes the other side), and returns the collateral. Every margin move that
         takes collateral out calls it first, so what was received is withdrawable and
         what is owed is paid.
    """
    collateral: int256 = 0
    mask: uint256 = 0
    collateral, mask = self._load_account(_owner, _sub)
    rest: uint256 = mask
    settled: int256 = 0
    for m: uint256 in range(MAX_MARKETS):
        if rest == 0:
            break
        if rest & 1 == 1:
            settled += self._settle_position(_owner, _sub, m, self._strict_price(m))[1]
        rest = rest >> 1
    if settled != 0:
        collateral += settled
        self.pool_balance -= settled
        self._store_account(_owner, _sub, collateral, mask)
    return collateral


@internal
def _settle_position(_owner: address, _sub: uint256, _market: uint256, _price: uint256) -> (IMarginVault.Position, int256):
    """
    @dev Accrues the market's funding, then settles what the position received (+) or owes
         (-) since its last settlement: returns the position with its new funding snapshot
         and that amount, which the caller books into collateral and the pool.
    """
    index: int256 = self._accrue(_market, _price, self._skew(_market))
    pos: IMarginVault.Position = self._load_position(_owner, _sub, _market)
    if index == pos.funding_index:
        return pos, 0
    amount: int256 = wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)
    self._markets[_market].funding_sum += pos.size * (index - pos.funding_index)
    self._positions[_owner][_sub][_market].funding_index = index
    log IMarginVault.FundingSettled(owner=_owner, sub=_sub, market=_market, amount=amount, funding_index=index)
    pos.funding_index = index
    return pos, amount


# ================================================================== internals: valuation


@view
@internal
def _health(_owner: address, _sub: uint256, _strict: bool) -> IMarginVault.AccountHealth:
    """
    @dev The one function that values an account. `_strict` reads prices that revert when
         stale (trading, withdrawing); views use the latest price and never revert.
    """
    h: IMarginVault.AccountHealth = empty(IMarginVault.AccountHealth)
    mask: uint256 = 0
    h.collateral, mask = self._load_account(_owner, _sub)
    for m: uint256 in range(MAX_MARKETS):
        if mask == 0:
            break
        if mask & 1 == 1:
            price: uint256 = self._price(m, _strict)
            pos: IMarginVault.Position = self._load_position(_owner, _sub, m)
            rate: int256 = 0
            index: int256 = 0
            rate, index = self._funding_now(m, price)
            h.unrealized_pnl += wad_math._floor_div(pos.size * (convert(price, int256) - convert(pos.entry_price, int256)), IWAD)
            h.funding += wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)
            notional: uint256 = wad_math._ceil_div(wad_math._abs(pos.size) * price, WAD)
            margin: uint256 = self._params[m].margin
            min_margin: uint256 = margin >> 160
            h.initial_margin += wad_math._ceil_div(notional * WAD, margin & MASK80) + min_margin
            h.maintenance_margin += wad_math._ceil_div(notional * ((margin >> 80) & MASK80), WAD) + min_margin
            h.positions += 1
        mask = mask >> 1
    h.equity = h.collateral + h.unrealized_pnl + h.funding
    return h


@view
@internal
def _free_collateral(_h: IMarginVault.AccountHealth) -> uint256:
    """
    @dev What may leave the account: min(collateral + funding, equity) - IM, never negative.
         Funding counts as settled (a withdrawal settles it first); unrealized PnL does not.
    """
    free: int256 = min(_h.collateral + _h.funding, _h.equity) - convert(_h.initial_margin, int256)
    if free <= 0:
        return 0
    return convert(free, uint256)


@internal
def _debit_free_collateral(_owner: address, _sub: uint256, _amount: uint256) -> int256:
    """
    @dev Settles the account's funding, then takes `_amount` tokens' worth of collateral
         out of it if it is free (see `_free_collateral`); returns the collateral left.
    """
    amount_wad: int256 = self._to_wad(_amount)
    self._settle_funding(_owner, _sub)
    h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
    if amount_wad > h.collateral:
        if amount_wad <= h.equity - convert(h.initial_margin, int256):
            self._fail("vault: unrealized profit not withdrawable")
        self._fail("vault: insufficient collateral")
    if not (amount_wad <= convert(self._free_collateral(h), int256)):
        self._fail("vault: below initial margin")
    left: int256 = h.collateral - amount_wad
    self._store_account(_owner, _sub, left, self._load_account(_owner, _sub)[1])
    return left


@view
@internal
def _pool_value(_strict: bool) -> int256:
    """
    @dev pool cash - sum(trader unrealized PnL) + sum(funding traders owe), in O(markets)
         from the aggregates kept per market: sum(size * (P - entry)) = skew * P - entry_sum
         and sum(size * (index - snapshot)) = skew * index - funding_sum.
    """
    value: int256 = self.pool_balance
    for m: uint256 in range(self.market_count, bound=MAX_MARKETS):
        if self._markets[m].oi == 0:
            continue
        price: uint256 = self._price(m, _strict)
        rate: int256 = 0
        index: int256 = 0
        rate, index = self._funding_now(m, price)
        skew: int256 = self._skew(m)
        trader_pnl: int256 = skew * convert(price, int256) - self._markets[m].entry_sum
        owed_funding: int256 = skew * index - self._markets[m].funding_sum
        value += wad_math._floor_div(owed_funding - trader_pnl, IWAD)
    return value


@view
@internal
def _check_pool_backs_exposure(_cash: int256):
    for m: uint256 in range(self.market_count, bound=MAX_MARKETS):
        skew: int256 = self._skew(m)
        if skew == 0:
            continue
        if not (self._pool_backs(skew, self._price(m, True), _cash, self._params[m].trading)):
            self._fail("vault: liquidity locked by open interest")


@pure
@internal
def _pool_backs(_skew: int256, _price: uint256, _cash: int256, _trading: uint256) -> bool:
    """
    @dev The pool carries a net exposure |skew| * price of at most max_pool_exposure (the
         top field of the packed `trading` word) times its cash. model.pool_backs mirrors it.
    """
    exposure: uint256 = wad_math._abs(_skew) * _price // WAD
    return convert(exposure, int256) * IWAD <= _cash * convert(_trading >> 188, int256)


@view
@internal
def _price(_market: uint256, _strict: bool) -> uint256:
    if _strict:
        return self._strict_price(_market)
    return self._latest_price(_market)


@view
@internal
def _strict_price(_market: uint256) -> uint256:
    """
    @dev The price trading is checked at: while the router settles a request, the market's
         settlement round; otherwise the latest price. Both revert when stale.
    """
    at: uint256 = self._settle_time
    if at == 0:
        return staticcall ORACLE.price(_market)
    return (staticcall ORACLE.price_at(_market, at))[0]


@view
@internal
def _latest_price(_market: uint256) -> uint256:
    """
    @dev The last oracle price, however old (views never revert on a stale price).
    """
    if not (self._params[_market].sizes != 0):
        self._fail("vault: unknown market")
    p: uint256 = 0
    updated_at: uint256 = 0
    p, updated_at = staticcall ORACLE.latest(_market)
    return p


# ================================================================== internals: storage & math


@view
@internal
def _load_position(_owner: address, _sub: uint256, _market: uint256) -> IMarginVault.Position:
    stored: StoredPosition = self._positions[_owner][_sub][_market]
    if stored.size_entry == 0:
        return empty(IMarginVault.Position)
    return IMarginVault.Position(
        size=convert(stored.size_entry & (2**128 - 1), int256) - SIZE_BIAS,
        entry_price=stored.size_entry >> 128,
        funding_index=stored.funding_index,
    )


@internal
def _store_position(_owner: address, _sub: uint256, _market: uint256, _size: int256, _entry: uint256, _funding_index: int256):
    """
    @dev Size (biased to unsigned) and entry price share one slot: a first open writes two
         slots instead of three. An empty position is stored as zeros.
    """
    if _size == 0:
        self._positions[_owner][_sub][_market] = empty(StoredPosition)
        return
    if not (_size >= -MAX_ABS_SIZE and _size <= MAX_ABS_SIZE):
        self._fail("vault: size out of range")
    self._positions[_owner][_sub][_market] = StoredPosition(
        size_entry=(_entry << 128) | convert(_size + SIZE_BIAS, uint256),
        funding_index=_funding_index,
    )


@view
@internal
def _load_account(_owner: address, _sub: uint256) -> (int256, uint256):
    word: uint256 = self._accounts[_owner][_sub]
    if word == 0:
        return 0, 0
    return convert(word & MASK192, int256) - COLLATERAL_BIAS, word >> 192


@internal
def _store_account(_owner: address, _sub: uint256, _collateral: int256, _mask: uint256):
    if _collateral == 0 and _mask == 0:
        self._accounts[_owner][_sub] = 0
        return
    if not (_collateral > -COLLATERAL_BIAS and _collateral < COLLATERAL_BIAS):
        self._fail("vault: collateral out of range")
    self._accounts[_owner][_sub] = convert(_collateral + COLLATERAL_BIAS, uint256) | (_mask << 192)


@view
@internal
def _skew(_market: uint256) -> int256:
    oi: uint256 = self._markets[_market].oi
    return convert(oi & MASK128, int256) - convert(oi >> 128, int256)


@view
@internal
def _load_market(_market: uint256) -> IMarginVault.MarketState:
    stored: StoredMarket = self._markets[_market]
    rate: int256 = 0
    index: int256 = 0
    time: uint256 = 0
    rate, index, time = self._load_funding(_market)
    return IMarginVault.MarketState(
        oi_long=stored.oi & MASK128,
        oi_short=stored.oi >> 128,
        entry_sum=stored.entry_sum,
        funding_sum=stored.funding_sum,
        funding_rate=rate,
        funding_index=index,
        last_funding_time=time,
    )


@internal
def _move_position(
    _owner: address, _sub: uint256, _market: uint256, _pos: IMarginVault.Position, _size: int256, _entry: uint256, _index: int256
) -> uint256:
    """
    @dev Stores the account's new position and books the change in the market's open
         interest and in the aggregates behind pool_value, all exact; returns the new open
         interest word (long | short << 128, each capped far below 2**128 by
         max_open_interest). Trades and liquidations both go through here.
    """
    oi: uint256 = self._markets[_market].oi
    if _pos.size > 0:
        oi -= convert(_pos.size, uint256)
    elif _pos.size < 0:
        oi -= convert(-_pos.size, uint256) << 128
    if _size > 0:
        oi += convert(_size, uint256)
    elif _size < 0:
        oi += convert(-_size, uint256) << 128
    self._markets[_market].oi = oi
    self._markets[_market].entry_sum += _size * convert(_entry, int256) - _pos.size * convert(_pos.entry_price, int256)
    self._markets[_market].funding_sum += _size * _index - _pos.size * _pos.funding_index
    self._store_position(_owner, _sub, _market, _size, _entry, _index)
    return oi


@view
@internal
def _load_funding(_market: uint256) -> (int256, int256, uint256):
    word: uint256 = self._markets[_market].funding
    return (
        convert(word & MASK88, int256) - RATE_BIAS,
        convert((word >> 88) & MASK128, int256) - INDEX_BIAS,
        word >> 216,
    )


@pure
@internal
def _pack_funding(_rate: int256, _index: int256, _time: uint256) -> uint256:
    if not (_rate > -RATE_BIAS and _rate < RATE_BIAS):
        self._fail("vault: funding rate out of range")
    if not (_index > -INDEX_BIAS and _index < INDEX_BIAS):
        self._fail("vault: funding index out of range")
    return convert(_rate + RATE_BIAS, uint256) | (convert(_index + INDEX_BIAS, uint256) << 88) | (_time << 216)


@view
@internal
def _load_params(_market: uint256) -> IMarginVault.MarketParams:
    stored: StoredParams = self._params[_market]
    return IMarginVault.MarketParams(
        max_leverage=stored.margin & MASK80,
        maintenance_margin_ratio=(stored.margin >> 80) & MASK80,
        taker_fee=stored.trading & MASK60,
        skew_scale=stored.sizes & MASK128,
        max_funding_velocity=(stored.trading >> 120) & MASK68,
        max_open_interest=stored.sizes >> 128,
        liquidation_fee_ratio=(stored.trading >> 60) & MASK60,
        min_position_margin=stored.margin >> 160,
        max_pool_exposure=stored.trading >> 188,
    )


@internal
def _store_params(_market: uint256, _p: IMarginVault.MarketParams):
    # _check_params bounds every packed field below its width (see StoredParams); the
    # liquidation fee ratio is below the MMR, itself below 1 / max_leverage <= 1
    self._params[_market] = StoredParams(
        margin=_p.max_leverage | (_p.maintenance_margin_ratio << 80) | (_p.min_position_margin << 160),
        trading=_p.taker_fee | (_p.liquidation_fee_ratio << 60) | (_p.max_funding_velocity << 120) | (_p.max_pool_exposure << 188),
        sizes=_p.skew_scale | (_p.max_open_interest << 128),
    )


@view
@internal
def _check_params(_p: IMarginVault.MarketParams):
    if not (_p.max_leverage >= WAD and _p.max_leverage <= 1000 * WAD):
        self._fail("vault: bad max_leverage")
    # mmr < imr = 1 / max_leverage
    if not (_p.maintenance_margin_ratio != 0 and _p.maintenance_margin_ratio * _p.max_leverage < WAD * WAD):
        self._fail("vault: bad maintenance_margin_ratio")
    if not (_p.taker_fee <= WAD // 10):
        self._fail("vault: bad taker_fee")
    if not (_p.skew_scale != 0 and _p.skew_scale <= convert(MAX_ABS_SIZE, uint256)):
        self._fail("vault: bad skew_scale")
    if not (_p.max_funding_velocity <= 100 * WAD):
        self._fail("vault: bad max_funding_velocity")
    if not (_p.max_open_interest != 0 and _p.max_open_interest <= _p.skew_scale):
        self._fail("vault: bad max_open_interest")
    if not (_p.liquidation_fee_ratio < _p.maintenance_margin_ratio):
        self._fail("vault: bad liquidation_fee_ratio")
    if not (_p.min_position_margin <= 1_000_000 * WAD):
        self._fail("vault: bad min_position_margin")
    if not (_p.max_pool_exposure != 0 and _p.max_pool_exposure <= 10 * WAD):
        self._fail("vault: bad max_pool_exposure")


@internal
def _pull(_amount: uint256):
    if not extcall TOKEN.transferFrom(msg.sender, self, _amount, default_return_value=True):
        self._fail("vault: transfer failed")


@internal
def _push(_to: address, _amount: uint256):
    if not extcall TOKEN.transfer(_to, _amount, default_return_value=True):
        self._fail("vault: transfer failed")


@view
@internal
def _to_wad(_amount: uint256) -> int256:
    return convert(_amount * TOKEN_SCALE, int256)


@pure
@internal
def _fail(_msg: String[48]):
    """
    @dev Every revert goes through here: one copy of the message-encoding code instead of
         one per check (about 120 bytes each, 2.8 KB in all, with the same messages).
    """
    raise _msg
