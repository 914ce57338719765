# pragma version ~=0.4.3
"""
@title liquidation
@notice Liquidations (SPEC 8): partial first, the share of every position that restores
        initial margin, everything when what remains would be dust or equity is far below
        maintenance; the fee to the keeper (capped) and the insurance fund; bad debt down
        the waterfall of modules/pool.vy. model.liquidation_fraction is the same rule.
        Keeper pay (SPEC 14) comes only from the fee actually collected (what the account
        could pay), never from bad debt; a floor (`min_keeper_reward`, sized to a
        liquidation's gas) is topped up by the insurance fund, never by the pool.
"""

from ..interfaces import IMarginVault
from . import errors
from . import wad_math
from . import markets
from . import pool
from . import positions
from . import token_io
from . import adl

uses: markets
uses: pool
uses: positions
uses: token_io
uses: adl

WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
MAX_MARKETS: constant(uint256) = 64
MAX_MARKETS_PER_ACCOUNT: constant(uint256) = 8
MASK60: constant(uint256) = 2**60 - 1
MASK96: constant(uint256) = 2**96 - 1
# Everything is closed when equity is below FULL_LIQUIDATION_RATIO of MM, or when what
# would remain holds less than DUST_MARGIN of initial margin above the fixed per-position
# minimums.
FULL_LIQUIDATION_RATIO: constant(uint256) = 5 * 10**17
DUST_MARGIN: constant(uint256) = 10**18

# Hard bounds (USD, WAD): the cap on the keeper's reward, and the floor (which the
# insurance fund tops up: at most the cap, at most 100 USD).
MAX_KEEPER_REWARD_BOUND: constant(uint256) = 1_000_000 * 10**18
MIN_KEEPER_REWARD_BOUND: constant(uint256) = 100 * 10**18


# One market's close in a liquidation, kept for ADL should the account end bankrupt.
struct Close:
    market: uint256
    size: int256        # the size closed (signed like the position)
    price: uint256
    loss: uint256       # the realized loss of the close (0 for a gain), WAD
    notional: uint256

# The cap on the part of a liquidation fee paid to the caller (USD, WAD, <= 10**24) in the
# low 96 bits, the LiquidationKeeper (the only caller of `liquidate`) in the high 160: a
# liquidation reads both from one slot.
_liquidation: uint256
# The keeper's floor (USD, WAD): when the collected fee pays less, the insurance fund pays
# the difference (as far as it holds it). Its own slot (the first one is full); read only
# when the fee part of the reward is below the cap.
_min_keeper_reward: uint256


@internal
def _liquidate(_owner: address, _sub: uint256, _keeper: address) -> (bool, uint256):
    """
    @dev See MarginVault.liquidate. Funding is settled first; then every position is closed
         by the same share (at the oracle price, or a settled market's final price; no
         price impact).
    """
    config: uint256 = self._liquidation
    if msg.sender != convert(config >> 96, address):
        errors._fail("vault: not liquidator")
    positions._settle_funding(_owner, _sub)
    # funding is settled: the health's funding term is 0
    h: IMarginVault.AccountHealth = positions._health(_owner, _sub, True)
    if h.equity >= convert(h.maintenance_margin, int256):
        return False, 0
    mask: uint256 = positions._load_account(_owner, _sub)[1]

    # pass 1: the fixed minimums and the fee of closing everything decide the share
    min_margins: uint256 = 0
    fee_full: uint256 = 0
    gains: bool = False
    rest: uint256 = mask
    for m: uint256 in range(MAX_MARKETS):
        if rest == 0:
            break
        if rest & 1 == 1:
            min_margins += markets._params[m].margin >> 160
            n: uint256 = 0
            p: int256 = 0
            left: int256 = 0
            c: Close = empty(Close)
            n, p, left, c = self._close_share(_owner, _sub, m, WAD, False)
            fee_full += self._close_fee(m, n)
            gains = gains or p > 0
        rest = rest >> 1
    fraction: uint256 = self._liquidation_fraction(h, min_margins, fee_full)

    # pass 2: close the same share of every position
    # winning positions realize their profit at the share the pool pays, as health counted it
    # (the share before anything closes; only looked up when a position gains)
    num: uint256 = 1
    den: uint256 = 1
    if gains:
        num, den = pool._profit_ratio()
    notional: uint256 = 0
    pnl: int256 = 0
    fee: uint256 = 0
    # what each market's close was, for ADL should the account end bankrupt
    closes: DynArray[Close, MAX_MARKETS_PER_ACCOUNT] = []
    rest = mask
    for m: uint256 in range(MAX_MARKETS):
        if rest == 0:
            break
        if rest & 1 == 1:
            n: uint256 = 0
            p: int256 = 0
            left: int256 = 0
            c: Close = empty(Close)
            n, p, left, c = self._close_share(_owner, _sub, m, fraction, True)
            closes.append(c)
            if p > 0 and num != den:
                p = convert(convert(p, uint256) * num // den, int256)
            notional += n
            pnl += p
            fee += self._close_fee(m, n)
            if left == 0:
                mask ^= 1 << m
        rest = rest >> 1

    # The fee actually collected (SPEC 14): at most what the account can pay, its equity
    # before the fee (closing at the oracle price moves no other value; after a full
    # liquidation that is the collateral left after the realized PnL). A partial
    # liquidation always leaves equity above the fee, so only a full one collects less;
    # what it does not collect is neither charged nor bad debt.
    collected: uint256 = fee
    if h.equity < convert(fee, int256):
        collected = convert(max(h.equity, 0), uint256)
    pnl = pool._pay_trader(_owner, _sub, pnl, convert(max(-h.collateral, 0), uint256))
    collateral: int256 = h.collateral + pnl - convert(collected, int256)
    bad_debt: uint256 = 0
    if mask == 0 and collateral < 0:
        # only the account's real shortfall; covered before the keeper's floor below, so
        # the floor can never make the pool pay more of it
        bad_debt = convert(-collateral, uint256)
        # beyond the pool's loss cap, the other sides of the markets it lost in give it back
        self._book_adl(closes, pool._cover_bad_debt(_owner, _sub, bad_debt))
        collateral = 0
    positions._store_account(_owner, _sub, collateral, mask)
    from_insurance: uint256 = 0
    reward: uint256 = 0
    from_insurance, reward = self._keeper_pay(collected, config & MASK96)
    if reward != 0:
        token_io._push(_keeper, reward)
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
        insurance_fee=collected + from_insurance - reward * token_io.TOKEN_SCALE,
        bad_debt=bad_debt,
        collateral=collateral,
        fee_collected=collected,
        reward_from_insurance=from_insurance,
    )
    return True, reward


@internal
def _book_adl(_closes: DynArray[Close, MAX_MARKETS_PER_ACCOUNT], _to_adl: uint256):
    """
    @dev Shares what is beyond the pool's loss cap among the markets the bankrupt account
         closed, by the loss each close realized (by notional when none lost: the shortfall
         came from funding or earlier losses), and books each share against the other side
         of that market (modules/adl.vy). Shares are floored: the pool keeps the dust.
    """
    if _to_adl == 0:
        return
    total_loss: uint256 = 0
    total_notional: uint256 = 0
    for c: Close in _closes:
        total_loss += c.loss
        total_notional += c.notional
    for c: Close in _closes:
        share: uint256 = 0
        if total_loss != 0:
            share = _to_adl * c.loss // total_loss
        else:
            share = _to_adl * c.notional // total_notional
        adl._book(c.market, c.size, c.price, share)


@internal
def _keeper_pay(_collected: uint256, _max_reward: uint256) -> (uint256, uint256):
    """
    @dev Books the collected fee and pays the keeper: the reward is the collected fee up to
         `_max_reward`; when that is below the floor, the insurance fund adds the
         difference, as far as it holds it. Paid in tokens rounded down; the insurance fund
         keeps the rest of the collected fee and the rounding dust. Never touches the pool.
    @return (the part of the reward the insurance fund paid (WAD), the reward in tokens)
    """
    due: uint256 = min(_collected, _max_reward)
    if due < _max_reward:
        least: uint256 = self._min_keeper_reward
        if due < least:
            due += min(least - due, pool.insurance_fund)
    reward: uint256 = due // token_io.TOKEN_SCALE
    paid: uint256 = reward * token_io.TOKEN_SCALE
    from_insurance: uint256 = paid - min(paid, _collected)
    # paid <= collected + the fund's balance: never negative
    pool.insurance_fund = pool.insurance_fund + _collected - paid
    return from_insurance, reward


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
def _close_share(_owner: address, _sub: uint256, _market: uint256, _fraction: uint256, _write: bool) -> (uint256, int256, int256, Close):
    """
    @dev Closes `_fraction` of one position (|size| * fraction rounded up; all of it at WAD)
         at the oracle price, without price impact; funding is already settled. Returns the
         notional closed, the realized PnL (floored) and the size left. With `_write` off it
         only computes them.
    """
    pos: IMarginVault.Position = positions._load_position(_owner, _sub, _market)
    price: uint256 = markets._strict_price(_market)
    closed: int256 = pos.size
    if _fraction < WAD:
        closed = convert(wad_math._ceil_div(wad_math._abs(pos.size) * _fraction, WAD), int256)
        if pos.size < 0:
            closed = -closed
    left: int256 = pos.size - closed
    pnl: int256 = wad_math._floor_div(closed * (convert(price, int256) - convert(pos.entry_price, int256)), IWAD)
    if _write:
        positions._move_position(_owner, _sub, _market, pos, left, pos.entry_price, pos.funding_index)
        log IMarginVault.PositionLiquidated(
            owner=_owner, sub=_sub, market=_market, closed_size=closed, size=left, price=price, realized_pnl=pnl
        )
    notional: uint256 = wad_math._ceil_div(wad_math._abs(closed) * price, WAD)
    loss: uint256 = 0
    if pnl < 0:
        loss = convert(-pnl, uint256)
    return notional, pnl, left, Close(market=_market, size=closed, price=price, loss=loss, notional=notional)


@view
@internal
def _close_fee(_market: uint256, _notional: uint256) -> uint256:
    return wad_math._ceil_div(_notional * ((markets._params[_market].trading >> 60) & MASK60), WAD)


@internal
def _set_liquidator(_liquidator: address, _max_keeper_reward: uint256, _min_keeper_reward: uint256):
    if _max_keeper_reward > MAX_KEEPER_REWARD_BOUND:
        errors._fail("vault: bad max_keeper_reward")
    if not (_min_keeper_reward <= _max_keeper_reward and _min_keeper_reward <= MIN_KEEPER_REWARD_BOUND):
        errors._fail("vault: bad min_keeper_reward")
    self._liquidation = (convert(_liquidator, uint256) << 96) | _max_keeper_reward
    self._min_keeper_reward = _min_keeper_reward
    log IMarginVault.LiquidatorSet(
        liquidator=_liquidator, max_keeper_reward=_max_keeper_reward, min_keeper_reward=_min_keeper_reward
    )


@view
@internal
def _liquidator() -> address:
    return convert(self._liquidation >> 96, address)
