# pragma version ~=0.4.3
"""
@title MockUSD
@notice A 6-decimal USD stablecoin for devnets and tests. Anyone may mint.
@custom:kill Not pausable and not meant to be: it is a test token. Never deploy it
             outside a devnet or a test.
"""

from snekmate.auth import ownable as ow
from snekmate.tokens import erc20

initializes: ow
initializes: erc20[ownable := ow]

exports: (
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.allowance,
    erc20.transfer,
    erc20.transferFrom,
    erc20.approve,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
)


@deploy
def __init__():
    ow.__init__()
    erc20.__init__("Mock USD", "mUSD", 6, "Mock USD", "1")


@external
def mint(_to: address, _amount: uint256):
    """
    @notice Mint `_amount` token units (6 decimals) to `_to`. Open to anyone.
    """
    erc20._mint(_to, _amount)
