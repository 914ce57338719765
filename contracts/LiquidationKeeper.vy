# pragma version ~=0.4.3
"""
@title LiquidationKeeper
@notice Permissionless liquidation of perpdex accounts: one (reverts on a healthy account,
        or with the vault's reason) or a batch (skips accounts that are healthy, that a
        competitor liquidated first, or whose liquidation fails with a reason, such as a
        stale price in one of its markets: one account never spoils the batch; each failure
        is logged as LiquidationSkipped with its reason), plus the views keepers and traders need:
        which accounts are liquidatable, a health breakdown with the margin ratio, and the
        liquidation price of a position. The reward goes to whoever calls.
@dev The liquidation itself (funding settlement, partial/full close at the oracle price, fee
     split, bad-debt waterfall) runs in MarginVault.liquidate, which only this contract may
     call. This contract holds no funds and keeps no state.
@custom:kill The vault's owner calls `vault.set_liquidator(empty(address), 0, 0)`: the vault
             then refuses every liquidation. There is nothing to pause here.
"""

from interfaces import IMarginVault
from interfaces import IPriceOracle
from interfaces import ILiquidationKeeper
from modules import wad_math

implements: ILiquidationKeeper

MAX_BATCH: constant(uint256) = 100
WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18


struct HealthBreakdown:
    collateral: int256          # settled, USD (WAD)
    unrealized_pnl: int256
    funding: int256             # accrued, not yet settled
    equity: int256
    initial_margin: uint256
    maintenance_margin: uint256
    margin_ratio: uint256       # equity / MM (WAD); below WAD = liquidatable; max_value when MM = 0
    liquidatable: bool
    positions: uint256


VAULT: public(immutable(IMarginVault))
ORACLE: public(immutable(IPriceOracle))


@deploy
def __init__(_vault: IMarginVault):
    VAULT = _vault
    ORACLE = IPriceOracle(staticcall _vault.ORACLE())


@external
def liquidate(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Liquidate one account; reverts if it is not liquidatable.
    @return The keeper reward paid to the caller (token units).
    """
    ok: bool = False
    reward: uint256 = 0
    ok, reward = extcall VAULT.liquidate(_owner, _sub, msg.sender)
    assert ok, "keeper: account healthy"
    return reward


@external
def liquidate_many(_owners: DynArray[address, MAX_BATCH], _subs: DynArray[uint256, MAX_BATCH]) -> uint256:
    """
    @notice Liquidate every liquidatable account of the list, skipping the others: healthy
            ones silently, and ones whose liquidation fails with a reason (a stale price in
            one of its markets, say) with a LiquidationSkipped log carrying that reason.
    @dev A liquidation that fails without a reason (out of gas) reverts the whole batch
         instead: otherwise a caller could skip an account by the gas it sends (the 63/64
         rule leaves this contract enough to go on after the vault ran dry).
    @return How many were liquidated.
    """
    assert len(_owners) == len(_subs), "keeper: length mismatch"
    count: uint256 = 0
    for i: uint256 in range(len(_owners), bound=MAX_BATCH):
        ok: bool = False
        response: Bytes[256] = b""
        ok, response = raw_call(
            VAULT.address,
            abi_encode(_owners[i], _subs[i], msg.sender, method_id=method_id("liquidate(address,uint256,address)")),
            max_outsize=256,
            revert_on_failure=False,
        )
        if not ok:
            reason: String[64] = self._reason(response)
            assert len(reason) != 0, "keeper: liquidation failed without a reason"
            log ILiquidationKeeper.LiquidationSkipped(owner=_owners[i], sub=_subs[i], keeper=msg.sender, reason=reason)
            continue
        liquidated: bool = False
        reward: uint256 = 0
        liquidated, reward = abi_decode(response, (bool, uint256))
        if liquidated:
            count += 1
    return count


@pure
@internal
def _reason(_response: Bytes[256]) -> String[64]:
    """
    @dev The message of an `Error(string)` revert; empty for anything else. A message
         longer than 64 bytes (the vault's are at most 48) reads as a fixed one rather than
         reverting the batch in the decoder.
    """
    if len(_response) < 68 or slice(_response, 0, 4) != method_id("Error(string)"):
        return ""
    if extract32(_response, 36, output_type=uint256) > 64:
        return "keeper: revert reason too long"
    return abi_decode(slice(_response, 4, len(_response) - 4), String[64])


@view
@external
def liquidatable(_owners: DynArray[address, MAX_BATCH], _subs: DynArray[uint256, MAX_BATCH]) -> DynArray[bool, MAX_BATCH]:
    """
    @notice For each account, whether it is liquidatable now (at the latest prices).
    """
    assert len(_owners) == len(_subs), "keeper: length mismatch"
    result: DynArray[bool, MAX_BATCH] = []
    for i: uint256 in range(len(_owners), bound=MAX_BATCH):
        result.append(staticcall VAULT.is_liquidatable(_owners[i], _subs[i]))
    return result


@view
@external
def health(_owner: address, _sub: uint256) -> HealthBreakdown:
    """
    @notice Collateral, unrealized PnL, funding, equity, IM, MM and the margin ratio: the
            numbers the CLI shows and a liquidation uses (at the latest prices).
    """
    h: IMarginVault.AccountHealth = staticcall VAULT.account_health(_owner, _sub)
    ratio: uint256 = max_value(uint256)
    if h.maintenance_margin != 0:
        ratio = 0
        if h.equity > 0:
            ratio = convert(h.equity, uint256) * WAD // h.maintenance_margin
    return HealthBreakdown(
        collateral=h.collateral,
        unrealized_pnl=h.unrealized_pnl,
        funding=h.funding,
        equity=h.equity,
        initial_margin=h.initial_margin,
        maintenance_margin=h.maintenance_margin,
        margin_ratio=ratio,
        liquidatable=h.equity < convert(h.maintenance_margin, int256),
        positions=h.positions,
    )


@view
@external
def liquidation_price(_owner: address, _sub: uint256, _market: uint256) -> uint256:
    """
    @notice The oracle price of `_market` at which the account becomes liquidatable, every
            other price fixed; 0 when there is no position or no positive price liquidates it.
    @dev Solves  E' + size * (P - entry) + funding = MM' + |size| * P * mmr + min_margin
         exactly, where E' and MM' are the account's equity and MM without this position,
         floored for a long and rounded up for a short (model.liquidation_price).
    """
    pos: IMarginVault.Position = staticcall VAULT.position(_owner, _sub, _market)
    if pos.size == 0:
        return 0
    h: IMarginVault.AccountHealth = staticcall VAULT.account_health(_owner, _sub)
    p: uint256 = 0
    updated_at: uint256 = 0
    p, updated_at = staticcall ORACLE.latest(_market)
    rate: int256 = 0
    index: int256 = 0
    rate, index = staticcall VAULT.funding(_market)
    params: IMarginVault.MarketParams = staticcall VAULT.market_params(_market)
    price: int256 = convert(p, int256)
    entry: int256 = convert(pos.entry_price, int256)
    mmr: int256 = convert(params.maintenance_margin_ratio, int256)
    funding: int256 = wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)
    own_mm: uint256 = wad_math._ceil_div(
        wad_math._ceil_div(wad_math._abs(pos.size) * p, WAD) * params.maintenance_margin_ratio, WAD
    ) + params.min_position_margin
    equity_without: int256 = h.equity - wad_math._floor_div(pos.size * (price - entry), IWAD) - funding
    mm_without: int256 = convert(h.maintenance_margin - own_mm, int256)
    numerator: int256 = (mm_without + convert(params.min_position_margin, int256) - equity_without - funding) * IWAD + pos.size * entry
    denominator: int256 = pos.size * IWAD - convert(wad_math._abs(pos.size), int256) * mmr
    liq: int256 = 0
    if denominator > 0:
        liq = wad_math._floor_div(numerator * IWAD, denominator)
    else:
        liq = -wad_math._floor_div(numerator * IWAD, -denominator)  # rounded up: denominator < 0
    if liq <= 0:
        return 0
    return convert(liq, uint256)
