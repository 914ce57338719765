"""Amounts of money as a person reads them: USD with thousands separators, never token units
or raw WAD integers. A bottom module (only perpdex.model below it): the checks and the report
both write their details with it."""

from __future__ import annotations

from decimal import Decimal

from perpdex.model import WAD


def usd_text(value: float, places: int = 2) -> str:
    """$1,234.56; -$1,234.56."""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{places}f}"


def wad_usd_text(wad: int) -> str:
    """A WAD USD amount to the wei, as USD: exact, for differences that rounding to cents would
    hide ($0.000000000000000003)."""
    text = f"{Decimal(abs(wad)).scaleb(-18):,f}".rstrip("0").rstrip(".")
    return ("-" if wad < 0 else "") + "$" + (text or "0")


def units_text(wad: int) -> str:
    """A WAD quantity of a market's base asset, exact (36, 0.5), not a WAD integer."""
    return wad_usd_text(wad).replace("$", "")


def tokens_usd(tokens: int, decimals: int) -> float:
    """Token units of the USD stablecoin to USD."""
    return round(tokens / 10**decimals, decimals)


def wad_usd(wad: int) -> str:
    """A WAD USD amount to the cent ($1,234.56)."""
    return usd_text(float(Decimal(wad) / WAD))
