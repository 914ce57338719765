"""perpdex: an on-chain perpetual-futures exchange in Vyper, with Python tooling on Ape."""

__version__ = "0.1.0"
