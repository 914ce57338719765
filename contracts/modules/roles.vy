# pragma version ~=0.4.3
"""
@title roles
@notice Who may fill two-step requests: the OrderRouter (SPEC 13). Kept in a module so
        that MarginVault and VaultExtension, which share one storage layout, both see it.
"""

# The OrderRouter: the only caller of `settle_trade` and `settle_liquidity` (zero: none).
router: public(address)
# The only caller of `deleverage` (SPEC 14; zero: nobody): the ADL keeper, which picks the
# most profitable positions from its index.
deleverager: public(address)
