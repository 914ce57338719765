# pragma version ~=0.4.3
"""
@title VaultLens
@notice Read-only views over a MarginVault that need not live in it (the vault keeps its
        bytecode room, SPEC 16): funding rate, index and prediction per market, the
        funding a position has accrued, the fill price a trade would get now, and the
        markets an account holds. Every figure comes from the vault's own views and the
        oracle's latest price, with the vault's formulas (modules/funding_math.vy).
@dev Holds no funds and keeps no state: `deployment.funding` and `deployment.lens`.
@custom:kill Nothing to pause: it only reads. A new lens can be deployed at any time.
"""

from interfaces import IMarginVault
from interfaces import IPriceOracle
from modules import wad_math
from modules import funding_math

IWAD: constant(int256) = 10**18
MAX_MARKETS: constant(uint256) = 64
MAX_MARKETS_PER_ACCOUNT: constant(uint256) = 8
MAX_HOURS: constant(uint256) = 24 * 365 * 100

VAULT: public(immutable(IMarginVault))
ORACLE: public(immutable(IPriceOracle))


@deploy
def __init__(_vault: IMarginVault):
    VAULT = _vault
    ORACLE = IPriceOracle(staticcall _vault.ORACLE())


@view
@external
def funding_rate(_market: uint256) -> int256:
    """
    @notice The funding rate now (WAD per day; > 0: longs pay shorts).
    """
    return (staticcall VAULT.funding(_market))[0]


@view
@external
def funding_index(_market: uint256) -> int256:
    """
    @notice The cumulative funding index now (USD per unit of size, WAD).
    """
    return (staticcall VAULT.funding(_market))[1]


@view
@external
def predicted_funding_rate(_market: uint256, _hours: uint256) -> int256:
    """
    @notice The funding rate `_hours` from now if the skew stays what it is (0 for a
            settled market: its funding is frozen).
    """
    rate: int256 = (staticcall VAULT.funding(_market))[0]
    assert _hours <= MAX_HOURS, "lens: horizon too long"
    if staticcall VAULT.settled_price(_market) != 0:
        return 0
    params: IMarginVault.MarketParams = staticcall VAULT.market_params(_market)
    return funding_math._advance(
        rate, 0, _hours * 3600, 0, self._skew(_market), params.skew_scale, params.max_funding_velocity
    )[0]


@view
@external
def accrued_funding(_owner: address, _sub: uint256, _market: uint256) -> int256:
    """
    @notice Funding the position has gained (+) or owes (-) since its last settlement,
            USD (WAD), rounded against the trader. Settled on the account's next trade,
            withdrawal, margin transfer or liquidation.
    """
    index: int256 = (staticcall VAULT.funding(_market))[1]
    pos: IMarginVault.Position = staticcall VAULT.position(_owner, _sub, _market)
    return wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)


@view
@external
def fill_price(_market: uint256, _size_delta: int256) -> uint256:
    """
    @notice The price a trade of `_size_delta` would fill at the latest oracle price:
            P * (1 + (skew_before + skew_after) / (2 * skew_scale)), rounded up for a buy
            and down for a sell (MarginVault._fill_price). A two-step order fills at its
            settlement round's price, so this is a quote, not a promise. A settled
            market fills at its final price, without price impact.
    """
    assert _market < staticcall VAULT.market_count(), "lens: unknown market"
    final: uint256 = staticcall VAULT.settled_price(_market)
    if final != 0:
        return final
    price: uint256 = (staticcall ORACLE.latest(_market))[0]
    scale2: int256 = 2 * convert((staticcall VAULT.market_params(_market)).skew_scale, int256)
    numerator: int256 = convert(price, int256) * (scale2 + 2 * self._skew(_market) + _size_delta)
    assert numerator > 0, "lens: fill price not positive"
    if _size_delta > 0:
        return wad_math._ceil_div(convert(numerator, uint256), convert(scale2, uint256))
    return convert(numerator, uint256) // convert(scale2, uint256)


@view
@external
def open_markets(_owner: address, _sub: uint256) -> DynArray[uint256, MAX_MARKETS_PER_ACCOUNT]:
    """
    @notice The markets in which the account holds a position, in id order.
    """
    result: DynArray[uint256, MAX_MARKETS_PER_ACCOUNT] = []
    for m: uint256 in range(staticcall VAULT.market_count(), bound=MAX_MARKETS):
        if (staticcall VAULT.position(_owner, _sub, m)).size != 0:
            result.append(m)
    return result


@view
@internal
def _skew(_market: uint256) -> int256:
    st: IMarginVault.MarketState = staticcall VAULT.market_state(_market)
    return convert(st.oi_long, int256) - convert(st.oi_short, int256)
