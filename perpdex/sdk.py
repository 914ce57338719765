"""A typed layer over the deployed contracts: tests, scripts, the CLI and keepers call these
instead of writing contract calls again. Amounts: `tokens` are token units, everything else WAD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perpdex import model
from perpdex.deploy import Deployment
from perpdex.model import WAD, Health, MarketParams, Position

MAX_UINT256 = 2**256 - 1
DEFAULT_SLIPPAGE = WAD // 100  # 1%


def slippage_bound(quote: int, size_delta: int, slippage: int = DEFAULT_SLIPPAGE) -> int:
    """The acceptable price for a trade quoted at `quote`: above it for buys, below for sells."""
    if size_delta > 0:
        return quote * (WAD + slippage) // WAD
    return quote * (WAD - slippage) // WAD


@dataclass
class Exchange:
    """Convenience calls on one deployment."""

    d: Deployment

    @property
    def vault(self) -> Any:
        return self.d.vault

    @property
    def token_scale(self) -> int:
        return int(self.vault.TOKEN_SCALE())

    def tokens(self, usd: int | float) -> int:
        """Whole USD to token units."""
        return int(usd * 10 ** int(self.d.usd.decimals()))

    # ---- money in and out
    def fund(self, account: Any, tokens: int) -> None:
        """Mint devnet tokens to `account` and approve the vault for them."""
        self.d.usd.mint(account, tokens, sender=account)
        self.d.usd.approve(self.vault, MAX_UINT256, sender=account)

    def deposit(self, account: Any, tokens: int, sub: int = 0, mint: bool = True) -> Any:
        if mint:
            self.fund(account, tokens)
        return self.vault.deposit(sub, tokens, sender=account)

    def add_liquidity(self, account: Any, tokens: int, mint: bool = True) -> Any:
        if mint:
            self.fund(account, tokens)
        return self.vault.add_liquidity(tokens, sender=account)

    # ---- trading
    def quote(self, market: int, size_delta: int) -> int:
        return int(self.vault.fill_price(market, size_delta))

    def trade(
        self, account: Any, market: int, size_delta: int, sub: int = 0, slippage: int = DEFAULT_SLIPPAGE
    ) -> Any:
        bound = slippage_bound(self.quote(market, size_delta), size_delta, slippage)
        return self.vault.modify_position(sub, market, size_delta, bound, sender=account)

    def close(self, account: Any, market: int, sub: int = 0, slippage: int = DEFAULT_SLIPPAGE) -> Any:
        size = self.position(account, sub, market).size
        bound = slippage_bound(self.quote(market, -size), -size, slippage)
        return self.vault.close_position(sub, market, bound, sender=account)

    def set_price(self, market: int, price: int, feeder: Any | None = None) -> Any:
        return self.d.oracle.set_price(market, price, sender=feeder or self.d.deployer)

    def refresh_prices(self, markets: tuple[int, ...] | None = None, feeder: Any | None = None) -> Any:
        """Feed every market's (or `markets`') current price again, stamped now: after time
        passes, trading would otherwise see prices older than `max_price_age`."""
        wanted = list(markets if markets is not None else self.market_names())
        return self.d.oracle.set_prices(wanted, [self.price(m) for m in wanted], sender=feeder or self.d.deployer)

    # ---- reading
    def position(self, owner: Any, sub: int, market: int) -> Position:
        p = self.vault.position(owner, sub, market)
        return Position(int(p.size), int(p.entry_price), int(p.funding_index))

    def health(self, owner: Any, sub: int = 0) -> Health:
        h = self.vault.account_health(owner, sub)
        return Health(*(int(getattr(h, f)) for f in Health.__dataclass_fields__))

    def params(self, market: int) -> MarketParams:
        return MarketParams.from_chain(self.vault.market_params(market))

    def price(self, market: int) -> int:
        return int(self.d.oracle.latest(market)[0])

    def market_names(self) -> dict[int, str]:
        return {i: name for name, i in self.d.markets.items()}



def liquidation_price_of(x: Exchange, owner: Any, sub: int, market: int) -> int | None:
    """Model-computed liquidation price of one position from chain state (other prices fixed)."""
    pos = x.position(owner, sub, market)
    if pos.size == 0:
        return None
    h = x.health(owner, sub)
    price, params = x.price(market), x.params(market)
    own_funding = model.accrued_funding(pos.size, int(x.vault.funding(market)[1]), pos.funding_index)
    equity_excluding = h.equity - model.unrealized_pnl(pos.size, pos.entry_price, price) - own_funding
    mm_excluding = h.maintenance_margin - model.maintenance_margin(pos.size, price, params)
    return model.liquidation_price(equity_excluding, mm_excluding, pos.size, pos.entry_price, own_funding, params)
