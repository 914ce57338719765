# pragma version ~=0.4.3
"""
@title markets
@notice The vault's markets: their parameters (SPEC 4), their state (open interest, the
        aggregates behind pool_value, the funding word), pause flags, and the prices
        every valuation reads from the PriceOracle.
@dev Storage is packed so that a trade reads and writes as few slots as possible; the
     vault's views return the unpacked structs (`_load_params`, `_load_market`).
"""

from ..interfaces import IPriceOracle
from ..interfaces import IMarginVault
from . import errors

# ------------------------------------------------------------------ constants

WAD: constant(uint256) = 10**18
MAX_MARKETS: constant(uint256) = 64
MAX_ABS_SIZE: constant(int256) = 2**120
MASK60: constant(uint256) = 2**60 - 1
MASK68: constant(uint256) = 2**68 - 1
MASK80: constant(uint256) = 2**80 - 1
MASK88: constant(uint256) = 2**88 - 1
MASK128: constant(uint256) = 2**128 - 1
# The funding word packs rate (88 bits), index (128 bits) and time (40 bits), so that an
# accrual reads and writes one slot. At the largest max_funding_velocity (100 per day) the
# rate needs 4,000 years to reach RATE_BIAS; the index, 2**127, is 1.7e20 USD per unit.
RATE_BIAS: constant(int256) = 2**87
INDEX_BIAS: constant(int256) = 2**127

# ------------------------------------------------------------------ immutables

ORACLE: public(immutable(IPriceOracle))

# ------------------------------------------------------------------ storage


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
    # sum of size * entry over the longs alone: with entry_sum it splits the traders' PnL
    # by side (pool._valuation), which the profit cap needs (SPEC 14, max_pnl_factor)
    long_entry_sum: uint256


market_count: public(uint256)
_params: HashMap[uint256, StoredParams]
_markets: HashMap[uint256, StoredMarket]
market_paused: public(HashMap[uint256, bool])
paused: public(bool)
# Ended markets (SPEC 14, `settle_market`): bit m set = market m is settled, at its final
# price in `settled_price`. One slot, so that every price read checks it for ~100 gas once
# warm; a settled market never reads the oracle again.
_settled: uint256
settled_price: public(HashMap[uint256, uint256])

# While the router settles a request: the time its settlement rounds are measured from
# (committed_at + settlement_delay); every strict price read then takes each market's
# first round at or after it (PriceOracle.price_at). 0 otherwise: the latest price.
_settle_time: transient(uint256)


@deploy
def __init__(_oracle: IPriceOracle):
    ORACLE = _oracle


# ================================================================== parameters


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
        errors._fail("vault: bad max_leverage")
    # mmr < imr = 1 / max_leverage
    if not (_p.maintenance_margin_ratio != 0 and _p.maintenance_margin_ratio * _p.max_leverage < WAD * WAD):
        errors._fail("vault: bad maintenance_margin_ratio")
    if not (_p.taker_fee <= WAD // 10):
        errors._fail("vault: bad taker_fee")
    if not (_p.skew_scale != 0 and _p.skew_scale <= convert(MAX_ABS_SIZE, uint256)):
        errors._fail("vault: bad skew_scale")
    if not (_p.max_funding_velocity <= 100 * WAD):
        errors._fail("vault: bad max_funding_velocity")
    if not (_p.max_open_interest != 0 and _p.max_open_interest <= _p.skew_scale):
        errors._fail("vault: bad max_open_interest")
    # SPEC 14: a liquidation fee is at most 1% of the notional closed
    if not (_p.liquidation_fee_ratio < _p.maintenance_margin_ratio and _p.liquidation_fee_ratio <= WAD // 100):
        errors._fail("vault: bad liquidation_fee_ratio")
    if not (_p.min_position_margin <= 1_000_000 * WAD):
        errors._fail("vault: bad min_position_margin")
    if not (_p.max_pool_exposure != 0 and _p.max_pool_exposure <= 10 * WAD):
        errors._fail("vault: bad max_pool_exposure")


@view
@internal
def _check_known(_market: uint256):
    if not (_market < self.market_count):
        errors._fail("vault: unknown market")


# ================================================================== market state


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
        long_entry_sum=stored.long_entry_sum,
    )


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
        errors._fail("vault: funding rate out of range")
    if not (_index > -INDEX_BIAS and _index < INDEX_BIAS):
        errors._fail("vault: funding index out of range")
    return convert(_rate + RATE_BIAS, uint256) | (convert(_index + INDEX_BIAS, uint256) << 88) | (_time << 216)


# ================================================================== pause


@internal
def _set_paused(_paused: bool):
    self.paused = _paused
    log IMarginVault.GlobalPauseSet(paused=_paused)


@internal
def _set_market_paused(_market: uint256, _paused: bool):
    self._check_known(_market)
    self.market_paused[_market] = _paused
    log IMarginVault.MarketPauseSet(market=_market, paused=_paused)


@view
@internal
def _check_not_paused(_market: uint256):
    if not (not self.paused and not self.market_paused[_market]):
        errors._fail("vault: market paused")


# ================================================================== prices


@internal
def _set_settle_time(_at: uint256):
    self._settle_time = _at


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
    @dev The price trading is checked at: a settled market's final price; while the router
         settles a request, the market's settlement round; otherwise the latest price. Both
         oracle reads revert when stale.
    """
    if self._is_settled(_market):
        return self.settled_price[_market]
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
        errors._fail("vault: unknown market")
    if self._is_settled(_market):
        return self.settled_price[_market]
    p: uint256 = 0
    updated_at: uint256 = 0
    p, updated_at = staticcall ORACLE.latest(_market)
    return p


# ================================================================== ending a market


@view
@internal
def _is_settled(_market: uint256) -> bool:
    return (self._settled >> _market) & 1 == 1


@internal
def _settle(_market: uint256, _price: uint256):
    """
    @dev Marks the market settled at `_price` (for good: nothing clears the bit).
    """
    self._settled |= 1 << _market
    self.settled_price[_market] = _price
    log IMarginVault.MarketSettled(market=_market, price=_price)
