# pragma version ~=0.4.3
"""
@title HostileUSD
@notice A 6-decimal token that misbehaves on demand, for the vault's token attack tests
        (SPEC 14): `mode` 0 behaves; 1 returns false instead of reverting and moves nothing;
        2 returns true and moves nothing; 3 takes a 1% fee on every transfer (burned).
@custom:kill A test token: never deploy it outside a test.
"""

from snekmate.auth import ownable as ow
from snekmate.tokens import erc20

initializes: ow
initializes: erc20[ownable := ow]

exports: (
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.allowance,
    erc20.approve,
    erc20.decimals,
)

mode: public(uint256)


@deploy
def __init__():
    ow.__init__()
    erc20.__init__("Hostile USD", "hUSD", 6, "Hostile USD", "1")


@external
def set_mode(_mode: uint256):
    self.mode = _mode


@external
def mint(_to: address, _amount: uint256):
    erc20._mint(_to, _amount)


@external
def transfer(_to: address, _amount: uint256) -> bool:
    return self._move(msg.sender, _to, _amount)


@external
def transferFrom(_owner: address, _to: address, _amount: uint256) -> bool:
    if self.mode == 0 or self.mode == 3:
        erc20._spend_allowance(_owner, msg.sender, _amount)
    return self._move(_owner, _to, _amount)


@internal
def _move(_from: address, _to: address, _amount: uint256) -> bool:
    mode: uint256 = self.mode
    if mode == 1:
        return False
    if mode == 2:
        return True
    erc20._transfer(_from, _to, _amount)
    if mode == 3:
        erc20._burn(_to, _amount // 100)
    return True
