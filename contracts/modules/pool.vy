# pragma version ~=0.4.3
"""
@title pool
@notice The LP pool, counterparty to the traders' net position: its cash, LP shares, the
        insurance fund, the pool's value (SPEC 8, 11.10), how much exposure it takes on
        (SPEC 14: the caps below), and the bad-debt waterfall (insurance fund first, then
        the pool).
        The caps, both against pool_value() at the settlement prices:
          per market and side    OI * price <= reserve_factor * pool_value
          all markets and sides  sum(OI * price) <= max_exposure_factor * pool_value
        checked on every trade that grows open interest and on every LP withdrawal (what
        stays must still back the open interest); plus the net rule of each market,
        |skew| * price <= max_pool_exposure * pool cash. model.VaultModel mirrors them.
@dev Virtual shares and assets make the first LP deposit and donations unable to move the
     share price (no inflation attack): price = (value + VA) / (shares + VS).
"""

from ..interfaces import IMarginVault
from . import errors
from . import wad_math
from . import markets
from . import funding_index
from . import token_io

uses: markets
uses: funding_index
uses: token_io

WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
MAX_MARKETS: constant(uint256) = 64
VIRTUAL_SHARES: constant(uint256) = 10**18
VIRTUAL_ASSETS: constant(uint256) = 10**18
MASK128: constant(uint256) = 2**128 - 1
# Hard bounds of the caps (WAD): open interest per side at most twice the pool's value,
# all of it at most four times.
MAX_RESERVE_FACTOR: constant(uint256) = 2 * 10**18
MAX_EXPOSURE_FACTOR: constant(uint256) = 4 * 10**18

pool_balance: public(int256)       # LP cash: deposits + fees + trader losses - trader gains
insurance_fund: public(uint256)    # USD (WAD): liquidation fees in, bad debt out
lp_shares: public(HashMap[address, uint256])
total_lp_shares: public(uint256)
# The sum of the negative collateral of accounts that still hold positions, USD (WAD): losses
# booked to the pool that the vault does not hold until those accounts pay (or their bad debt
# is covered). An LP withdrawal may only take cash the vault holds (SPEC 11.12, 14).
unpaid_losses: public(uint256)
# reserve_factor | max_exposure_factor << 128 (WAD each). 0 until set: no open interest
# can grow on a vault whose caps were never set.
_caps: uint256


@internal
def _add_liquidity(_provider: address, _amount: uint256) -> uint256:
    """
    @dev Shares for `_amount` tokens paid by the caller, credited to `_provider`.
    """
    if not (_amount != 0):
        errors._fail("vault: zero amount")
    value: int256 = self._pool_value(True)
    if not (value >= 0):
        errors._fail("vault: pool insolvent")
    # shares for what arrived (a fee on transfer is the provider's)
    received: uint256 = token_io._pull(_amount)
    amount_wad: uint256 = received * token_io.TOKEN_SCALE
    shares: uint256 = amount_wad * (self.total_lp_shares + VIRTUAL_SHARES) // (convert(value, uint256) + VIRTUAL_ASSETS)
    if not (shares != 0):
        errors._fail("vault: zero shares")
    self.pool_balance += convert(amount_wad, int256)
    self.lp_shares[_provider] += shares
    self.total_lp_shares += shares
    log IMarginVault.LiquidityAdded(provider=_provider, amount=received, shares=shares, pool_value=value + convert(amount_wad, int256))
    return shares


@internal
def _remove_liquidity(_provider: address, _shares: uint256) -> uint256:
    if not (_shares != 0):
        errors._fail("vault: zero shares")
    if not (_shares <= self.lp_shares[_provider]):
        errors._fail("vault: insufficient shares")
    value: int256 = 0
    gross: uint256 = 0
    largest: uint256 = 0
    value, gross, largest = self._valuation(True, MAX_MARKETS, 0)
    if not (value > 0):
        errors._fail("vault: pool insolvent")
    # The virtual shares and assets dampen the first deposit; on the way out they would pay
    # more than a pro-rata part when a share is worth less than one unit (the last LP could
    # then never leave), so the payout is the smaller of the two, in the pool's favour.
    owed_wad: uint256 = min(
        _shares * (convert(value, uint256) + VIRTUAL_ASSETS) // (self.total_lp_shares + VIRTUAL_SHARES),
        _shares * convert(value, uint256) // self.total_lp_shares,
    )
    amount: uint256 = owed_wad // token_io.TOKEN_SCALE
    if not (amount != 0):
        errors._fail("vault: zero amount")
    paid_wad: int256 = convert(amount * token_io.TOKEN_SCALE, int256)
    cash: int256 = self.pool_balance - paid_wad
    if not (cash >= convert(self.unpaid_losses, int256)):
        errors._fail("vault: pool cash locked")
    self._check_pool_backs_exposure(cash)
    # what stays must still back the open interest (a withdrawal cannot leave the LPs who
    # stay carrying more than the caps allow)
    self._check_caps(largest, gross, value - paid_wad)
    self.pool_balance = cash
    self.lp_shares[_provider] -= _shares
    self.total_lp_shares -= _shares
    token_io._push(_provider, amount)
    log IMarginVault.LiquidityRemoved(provider=_provider, amount=amount, shares=_shares, pool_value=value - paid_wad)
    return amount


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


@view
@internal
def _pool_value(_strict: bool) -> int256:
    return self._valuation(_strict, MAX_MARKETS, 0)[0]


@view
@internal
def _valuation(_strict: bool, _market: uint256, _price: uint256) -> (int256, uint256, uint256):
    """
    @dev (pool value, gross exposure, largest side), USD (WAD), with `_market` (if any)
         valued at `_price`. Pool value: pool cash - sum(trader unrealized PnL) + sum(funding
         traders owe), in O(markets) from the aggregates kept per market:
         sum(size * (P - entry)) = skew * P - entry_sum and sum(size * (index - snapshot)) =
         skew * index - funding_sum. Gross exposure: sum over markets of
         (OI_long + OI_short) * P; largest side: the largest OI * P of one market's side (both
         rounded up, against the trader).
    """
    value: int256 = self.pool_balance
    gross: uint256 = 0
    largest: uint256 = 0
    for m: uint256 in range(markets.market_count, bound=MAX_MARKETS):
        oi: uint256 = markets._markets[m].oi
        if oi == 0:
            continue
        price: uint256 = _price
        if m != _market:
            price = markets._price(m, _strict)
        rate: int256 = 0
        index: int256 = 0
        rate, index = funding_index._funding_now(m, price)
        skew: int256 = convert(oi & MASK128, int256) - convert(oi >> 128, int256)
        trader_pnl: int256 = skew * convert(price, int256) - markets._markets[m].entry_sum
        owed_funding: int256 = skew * index - markets._markets[m].funding_sum
        value += wad_math._floor_div(owed_funding - trader_pnl, IWAD)
        gross += wad_math._ceil_div(((oi & MASK128) + (oi >> 128)) * price, WAD)
        largest = max(largest, wad_math._ceil_div(max(oi & MASK128, oi >> 128) * price, WAD))
    return value, gross, largest


@view
@internal
def _check_trade_caps(_market: uint256, _side_oi: uint256, _price: uint256):
    """
    @dev After a trade of `_market` at `_price` that grew its side's open interest to
         `_side_oi`. The other markets are valued at their latest prices: a gate reads no
         settlement round (one market's missing round never blocks another's trades), and
         costs one oracle read per other market with open interest.
    """
    value: int256 = 0
    gross: uint256 = 0
    largest: uint256 = 0
    value, gross, largest = self._valuation(False, _market, _price)
    self._check_caps(wad_math._ceil_div(_side_oi * _price, WAD), gross, value)


@view
@internal
def _check_caps(_side: uint256, _gross: uint256, _value: int256):
    """
    @dev `_side` against reserve_factor and `_gross` against max_exposure_factor of
         `_value` (a pool worth nothing backs nothing).
    """
    caps: uint256 = self._caps
    if not (convert(_side * WAD, int256) <= convert(caps & MASK128, int256) * _value):
        errors._fail("vault: reserve cap")
    if not (convert(_gross * WAD, int256) <= convert(caps >> 128, int256) * _value):
        errors._fail("vault: exposure cap")


@internal
def _set_caps(_reserve_factor: uint256, _max_exposure_factor: uint256):
    if not (_reserve_factor != 0 and _reserve_factor <= MAX_RESERVE_FACTOR):
        errors._fail("vault: bad reserve_factor")
    if not (_max_exposure_factor >= _reserve_factor and _max_exposure_factor <= MAX_EXPOSURE_FACTOR):
        errors._fail("vault: bad max_exposure_factor")
    self._caps = _reserve_factor | (_max_exposure_factor << 128)
    log IMarginVault.PoolCapsSet(reserve_factor=_reserve_factor, max_exposure_factor=_max_exposure_factor)


@view
@internal
def _load_caps() -> (uint256, uint256):
    return self._caps & MASK128, self._caps >> 128


@view
@internal
def _check_pool_backs_exposure(_cash: int256):
    for m: uint256 in range(markets.market_count, bound=MAX_MARKETS):
        skew: int256 = markets._skew(m)
        if skew == 0:
            continue
        if not (self._pool_backs(skew, markets._price(m, True), _cash, markets._params[m].trading)):
            errors._fail("vault: liquidity locked by open interest")


@pure
@internal
def _pool_backs(_skew: int256, _price: uint256, _cash: int256, _trading: uint256) -> bool:
    """
    @dev The pool carries a net exposure |skew| * price of at most max_pool_exposure (the
         top field of the packed `trading` word) times its cash. model.pool_backs mirrors it.
    """
    exposure: uint256 = wad_math._abs(_skew) * _price // WAD
    return convert(exposure, int256) * IWAD <= _cash * convert(_trading >> 188, int256)
