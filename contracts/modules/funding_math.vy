# pragma version ~=0.4.3
"""
@title funding_math
@notice The funding formula (SPEC 6), pure, so that the MarginVault (which accrues it) and
        the VaultLens (which predicts it) compute it from one copy. model.current_funding
        is the same formula in Python.
"""

from . import wad_math

IWAD: constant(int256) = 10**18
DAY: constant(int256) = 86_400


@pure
@internal
def _velocity(_skew: int256, _skew_scale: uint256, _max_velocity: uint256) -> int256:
    """
    @dev v = clamp(skew / skew_scale, -1, 1) * max_funding_velocity (WAD per day, per day).
    """
    proportional: int256 = max(min(_skew * IWAD // convert(_skew_scale, int256), IWAD), -IWAD)
    return proportional * convert(_max_velocity, int256) // IWAD


@pure
@internal
def _advance(
    _rate: int256, _index: int256, _dt: uint256, _price: uint256, _skew: int256, _skew_scale: uint256, _max_velocity: uint256
) -> (int256, int256):
    """
    @dev Over dt seconds the rate moves by v * dt / DAY and the index by the trapezoid
         (r0 + r1) / 2 * dt / DAY * price, floored. O(1) whatever the number of positions;
         dt = 0 changes nothing.
    """
    if _dt == 0:
        return _rate, _index
    elapsed: int256 = convert(_dt, int256)
    new_rate: int256 = _rate + self._velocity(_skew, _skew_scale, _max_velocity) * elapsed // DAY
    index: int256 = _index + wad_math._floor_div((_rate + new_rate) * elapsed * convert(_price, int256), 2 * DAY * IWAD)
    return new_rate, index
