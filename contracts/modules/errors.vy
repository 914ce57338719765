# pragma version ~=0.4.3
"""
@title errors
@notice The vault's one revert path. Every check of the vault's modules fails through
        `_fail`: one copy of the message-encoding code instead of one per `assert`
        (about 120 bytes each, 2.8 KB with the vault's messages), which is what keeps the
        MarginVault 2 KB under the contract size limit (SPEC 16).
"""


@pure
@internal
def _fail(_msg: String[48]):
    raise _msg
