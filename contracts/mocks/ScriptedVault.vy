# pragma version ~=0.4.3
"""
@title ScriptedVault
@notice Test double of the MarginVault's liquidation entry point: `liquidate` does what
        was scripted for the owner, so the LiquidationKeeper's batch can be tested against
        failures the real vault never produces on demand (a revert without a reason, a
        reason too long to decode).
@dev Never deployed by perpdex.deploy; tests only.
"""

OK: constant(uint256) = 0           # liquidated, reward 7
REASON: constant(uint256) = 1       # reverts "vault: scripted failure"
SILENT: constant(uint256) = 2       # reverts with no data (as an out-of-gas call returns)
LONG_REASON: constant(uint256) = 3  # reverts with an 80-byte reason

ORACLE: public(immutable(address))
script: public(HashMap[address, uint256])


@deploy
def __init__(_oracle: address):
    ORACLE = _oracle


@external
def set_script(_owner: address, _mode: uint256):
    self.script[_owner] = _mode


@external
def liquidate(_owner: address, _sub: uint256, _keeper: address) -> (bool, uint256):
    mode: uint256 = self.script[_owner]
    if mode == REASON:
        raise "vault: scripted failure"
    if mode == SILENT:
        raw_revert(b"")
    if mode == LONG_REASON:
        raise "vault: a scripted failure whose message is far longer than the sixty-four bytes"
    return True, 7
