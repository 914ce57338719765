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
# Traders' profit is paid in full while it is at most this share of the pool's cash.
MAX_PNL_FACTOR: constant(uint256) = 10**18
# The pool absorbs bad debt up to this share of its cash per window; 0 = never (all to ADL).
MAX_POOL_LOSS_CAP: constant(uint256) = 10**18
LOSS_WINDOW: constant(uint256) = 86400
MASK64: constant(uint256) = 2**64 - 1

pool_balance: public(int256)       # LP cash: deposits + fees + trader losses - trader gains
insurance_fund: public(uint256)    # USD (WAD): liquidation fees in, bad debt out
lp_shares: public(HashMap[address, uint256])
total_lp_shares: public(uint256)
# The sum of the negative collateral of accounts that still hold positions, USD (WAD): losses
# booked to the pool that the vault does not hold until those accounts pay (or their bad debt
# is covered). An LP withdrawal may only take cash the vault holds (SPEC 11.12, 14).
unpaid_losses: public(uint256)
# reserve_factor | max_exposure_factor << 64 | max_pnl_factor << 128 | pool_loss_cap << 192
# (WAD each, bounded below 2**64 by _set_caps). 0 until set: no open interest can grow on a
# vault whose caps were never set.
_caps: uint256
# The pool's loss window (SPEC 14): its start time | the bad debt the pool may still absorb
# in it (USD, WAD) << 64. A window opens at the first bad debt 24 h or more after the last
# one opened, with pool_loss_cap of the pool's cash as its budget.
_loss_window: uint256


@internal
def _add_liquidity(_provider: address, _amount: uint256) -> uint256:
    """
    @dev Shares for `_amount` tokens paid by the caller, credited to `_provider`: for what
         the deposit adds to the pool's value (a fee on transfer is the provider's). That is
         all of it, except while the traders' profit is capped (`_max_pnl_room`): then part
         of the cash goes to paying more of the winners' profit, and shares for the whole
         amount would take it from the LPs already in.
    """
    if not (_amount != 0):
        errors._fail("vault: zero amount")
    value: int256 = self._pool_value(True)
    if not (value >= 0):
        errors._fail("vault: pool insolvent")
    received: uint256 = token_io._pull(_amount)
    self.pool_balance += convert(received * token_io.TOKEN_SCALE, int256)
    after: int256 = self._pool_value(True)
    # the value added is at most the amount, and >= 0 (the profit deducted grows by at most
    # max_pnl_factor <= 1 of the cash added)
    shares: uint256 = convert(after - value, uint256) * (self.total_lp_shares + VIRTUAL_SHARES) // (convert(value, uint256) + VIRTUAL_ASSETS)
    if not (shares != 0):
        errors._fail("vault: zero shares")
    self.lp_shares[_provider] += shares
    self.total_lp_shares += shares
    log IMarginVault.LiquidityAdded(provider=_provider, amount=received, shares=shares, pool_value=after)
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
    profit: uint256 = 0
    value, gross, largest, profit = self._valuation(True, MAX_MARKETS, 0)
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
    # the traders' profit must stay payable in full from what stays (an LP cannot leave the
    # winners to be paid pro rata)
    if not (profit * WAD <= self._max_pnl_room(cash)):
        errors._fail("vault: traders' profit locks liquidity")
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
def _cover_bad_debt(_owner: address, _sub: uint256, _bad_debt: uint256) -> uint256:
    """
    @dev The bad-debt waterfall (SPEC 14): the insurance fund pays what it can; the pool
         advances the rest, and keeps as its loss at most what is left of its loss window's
         budget (pool_loss_cap of its cash per 24 h); the part beyond is returned, for the
         caller to book as ADL against the other side of the account's losing markets
         (modules/adl.vy), which gives it back to the pool.
    @return The part of the bad debt to recover by ADL (USD, WAD).
    """
    from_insurance: uint256 = min(self.insurance_fund, _bad_debt)
    self.insurance_fund -= from_insurance
    rest: uint256 = _bad_debt - from_insurance
    to_adl: uint256 = 0
    if rest != 0:
        budget: uint256 = self._loss_budget(_bad_debt)
        absorbed: uint256 = min(rest, budget)
        to_adl = rest - absorbed
        self._loss_window = (self._loss_window & MASK64) | ((budget - absorbed) << 64)
    self.pool_balance -= convert(rest, int256)
    log IMarginVault.BadDebtCovered(
        owner=_owner, sub=_sub, bad_debt=_bad_debt, from_insurance=from_insurance, from_pool=rest - to_adl, to_adl=to_adl
    )
    return to_adl


@internal
def _loss_budget(_bad_debt: uint256) -> uint256:
    """
    @dev What the pool may still absorb in the current loss window, opening a new one (the
         budget pool_loss_cap of the pool's cash the vault holds) when 24 h have passed. The
         pool's books already count the bankrupt account's loss in full, and `_bad_debt` of it
         was never paid: the cash held is the rest.
    """
    window: uint256 = self._loss_window
    if window != 0 and block.timestamp < (window & MASK64) + LOSS_WINDOW:
        return window >> 64
    held: int256 = self.pool_balance - convert(self.unpaid_losses + _bad_debt, int256)
    budget: uint256 = 0
    if held > 0:
        budget = convert(held, uint256) * (self._caps >> 192) // WAD
    self._loss_window = block.timestamp | (budget << 64)
    return budget


@view
@internal
def _pool_value(_strict: bool) -> int256:
    return self._valuation(_strict, MAX_MARKETS, 0)[0]


@view
@internal
def _max_pnl_room(_cash: int256) -> uint256:
    """
    @dev max_pnl_factor * (the pool's cash the vault holds: `_cash` - unpaid_losses), WAD *
         WAD: how much traders' profit the pool pays in full.
    """
    held: int256 = _cash - convert(self.unpaid_losses, int256)
    if held <= 0:
        return 0
    return convert(held, uint256) * ((self._caps >> 128) & MASK64)


@view
@internal
def _profit_ratio() -> (uint256, uint256):
    """
    @dev (numerator, denominator) of the share of a trader's profit the pool pays (SPEC 14,
         GMX v2's max pnl factor): 1 while the traders' profit, summed per market side at the
         latest prices, is at most max_pnl_factor of the pool's cash; pro rata beyond it.
         Equity counts profit at this share, and closing realizes it at this share.
    """
    profit: uint256 = 0
    for m: uint256 in range(markets.market_count, bound=MAX_MARKETS):
        oi: uint256 = markets._markets[m].oi
        if oi != 0:
            price: uint256 = markets._price(m, False)
            skew: int256 = convert(oi & MASK128, int256) - convert(oi >> 128, int256)
            profit += self._sides_profit(m, oi, price, skew * convert(price, int256) - markets._markets[m].entry_sum)
    room: uint256 = self._max_pnl_room(self.pool_balance)
    if profit * WAD <= room:
        return 1, 1
    return room, profit * WAD


@internal
def _pay_trader(_owner: address, _sub: uint256, _amount: int256, _own_debt: uint256) -> int256:
    """
    @dev What the pool actually pays of `_amount` owed to an account whose negative
         collateral is `_own_debt`: a gain is paid at most from the cash the pool holds (its
         cash beyond unpaid_losses, plus the account's own debt, which the gain repays), so
         pool cash never goes below zero and no winner is paid from another account's
         collateral (SPEC 11.12). Books it in the pool's cash.
    """
    paid: int256 = _amount
    if _amount > 0:
        held: int256 = self.pool_balance - convert(self.unpaid_losses, int256) + convert(_own_debt, int256)
        paid = min(_amount, max(held, 0))
        if paid < _amount:
            log IMarginVault.TraderPaymentCapped(owner=_owner, sub=_sub, owed=_amount, paid=paid)
    self.pool_balance -= paid
    return paid


@view
@internal
def _valuation(_strict: bool, _market: uint256, _price: uint256) -> (int256, uint256, uint256, uint256):
    """
    @dev (pool value, gross exposure, largest side, traders' profit), USD (WAD), with
         `_market` (if any) valued at `_price`. Pool value: pool cash - sum(trader unrealized
         PnL) + sum(funding traders owe), in O(markets) from the aggregates kept per market:
         sum(size * (P - entry)) = skew * P - entry_sum and sum(size * (index - snapshot)) =
         skew * index - funding_sum; the traders' profit beyond what the pool pays in full
         (max_pnl_factor of its cash, `_max_pnl_room`) is not owed and not deducted. Gross
         exposure: sum over markets of (OI_long + OI_short) * P; largest side: the largest
         OI * P of one market's side; traders' profit: sum over market sides of the side's
         PnL when positive (longs: OI_long * P - long_entry_sum; shorts: the rest). All
         three rounded up, against the trader.
    """
    value: int256 = self.pool_balance
    gross: uint256 = 0
    largest: uint256 = 0
    profit: uint256 = 0
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
        profit += self._sides_profit(m, oi, price, trader_pnl)
    # profit beyond the room is never paid (_profit_ratio, _pay_trader): not the pool's debt
    room: uint256 = self._max_pnl_room(self.pool_balance)
    if profit * WAD > room:
        value += convert(profit - wad_math._ceil_div(room, WAD), int256)
    return value, gross, largest, profit


@view
@internal
def _sides_profit(_market: uint256, _oi: uint256, _price: uint256, _trader_pnl: int256) -> uint256:
    """
    @dev The traders' profit in one market: each side's PnL when positive (longs:
         OI_long * P - long_entry_sum; shorts: the market's PnL `_trader_pnl` (WAD * WAD)
         less the longs'), USD (WAD), rounded up.
    """
    profit: uint256 = 0
    long_pnl: int256 = convert((_oi & MASK128) * _price, int256) - convert(markets._markets[_market].long_entry_sum, int256)
    if long_pnl > 0:
        profit += wad_math._ceil_div(convert(long_pnl, uint256), WAD)
    if _trader_pnl - long_pnl > 0:
        profit += wad_math._ceil_div(convert(_trader_pnl - long_pnl, uint256), WAD)
    return profit


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
    profit: uint256 = 0
    value, gross, largest, profit = self._valuation(False, _market, _price)
    self._check_caps(wad_math._ceil_div(_side_oi * _price, WAD), gross, value)


@view
@internal
def _check_caps(_side: uint256, _gross: uint256, _value: int256):
    """
    @dev `_side` against reserve_factor and `_gross` against max_exposure_factor of
         `_value` (a pool worth nothing backs nothing).
    """
    caps: uint256 = self._caps
    if not (convert(_side * WAD, int256) <= convert(caps & MASK64, int256) * _value):
        errors._fail("vault: reserve cap")
    if not (convert(_gross * WAD, int256) <= convert((caps >> 64) & MASK64, int256) * _value):
        errors._fail("vault: exposure cap")


@internal
def _set_caps(_reserve_factor: uint256, _max_exposure_factor: uint256, _max_pnl_factor: uint256, _pool_loss_cap: uint256):
    if not (_reserve_factor != 0 and _reserve_factor <= MAX_RESERVE_FACTOR):
        errors._fail("vault: bad reserve_factor")
    if not (_max_exposure_factor >= _reserve_factor and _max_exposure_factor <= MAX_EXPOSURE_FACTOR):
        errors._fail("vault: bad max_exposure_factor")
    if not (_max_pnl_factor != 0 and _max_pnl_factor <= MAX_PNL_FACTOR):
        errors._fail("vault: bad max_pnl_factor")
    if not (_pool_loss_cap <= MAX_POOL_LOSS_CAP):
        errors._fail("vault: bad pool_loss_cap")
    self._caps = _reserve_factor | (_max_exposure_factor << 64) | (_max_pnl_factor << 128) | (_pool_loss_cap << 192)
    log IMarginVault.PoolCapsSet(
        reserve_factor=_reserve_factor,
        max_exposure_factor=_max_exposure_factor,
        max_pnl_factor=_max_pnl_factor,
        pool_loss_cap=_pool_loss_cap,
    )


@view
@internal
def _load_caps() -> (uint256, uint256, uint256, uint256):
    return self._caps & MASK64, (self._caps >> 64) & MASK64, (self._caps >> 128) & MASK64, self._caps >> 192


@view
@internal
def _loss_window_state() -> (uint256, uint256):
    """
    @dev (the loss window's start, what the pool may still absorb in it); (0, 0) before
         the first bad debt.
    """
    return self._loss_window & MASK64, self._loss_window >> 64


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
