# pragma version ~=0.4.3
"""
@title wad_math
@notice Rounding helpers shared by the MarginVault and the LiquidationKeeper: every division
        in perpdex says which way it rounds (always in the protocol's favour).
"""


@pure
@internal
def _abs(_x: int256) -> uint256:
    return convert(abs(_x), uint256)


@pure
@internal
def _ceil_div(_a: uint256, _b: uint256) -> uint256:
    q: uint256 = _a // _b
    if _a % _b != 0:
        q += 1
    return q


@pure
@internal
def _floor_div(_a: int256, _b: int256) -> int256:
    # _b > 0. EVM signed division truncates toward zero; floor moves negatives down.
    q: int256 = _a // _b
    if _a % _b != 0 and _a < 0:
        q -= 1
    return q
