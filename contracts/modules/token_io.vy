# pragma version ~=0.4.3
"""
@title token_io
@notice The vault's collateral token: every transfer in or out (each result checked) and
        the one conversion from token units to WAD.
@dev Token amounts are in the token's own units; TOKEN_SCALE = 10**(18 - decimals) WAD per
     unit. Paying out, callers round WAD down to units; the token must not take a fee on
     transfer nor rebase.
"""

from ethereum.ercs import IERC20
from . import errors

TOKEN: public(immutable(IERC20))
TOKEN_SCALE: public(immutable(uint256))  # WAD per token unit (10**12 for 6 decimals)


@deploy
def __init__(_token: IERC20, _token_decimals: uint8):
    if not (_token_decimals <= 18):
        errors._fail("vault: bad decimals")
    TOKEN = _token
    TOKEN_SCALE = 10 ** convert(18 - _token_decimals, uint256)


@internal
def _pull(_amount: uint256) -> uint256:
    """
    @dev Takes `_amount` from the caller and returns what the vault's balance actually grew
         by: what is credited (a token that takes a fee on transfer credits what arrived;
         one that returns false or moves nothing credits nothing).
    """
    before: uint256 = staticcall TOKEN.balanceOf(self)
    if not extcall TOKEN.transferFrom(msg.sender, self, _amount, default_return_value=True):
        errors._fail("vault: transfer failed")
    received: uint256 = staticcall TOKEN.balanceOf(self) - before
    if not (received != 0):
        errors._fail("vault: nothing received")
    return received


@internal
def _push(_to: address, _amount: uint256):
    if not extcall TOKEN.transfer(_to, _amount, default_return_value=True):
        errors._fail("vault: transfer failed")


@view
@internal
def _to_wad(_amount: uint256) -> int256:
    return convert(_amount * TOKEN_SCALE, int256)
