"""Keeper bots: the funding keeper (pokes idle markets) and, later, the liquidator."""
