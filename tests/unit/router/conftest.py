"""Helpers over the routed deployment (tests/conftest.py `routed`, `rx`: the default
two-step trading, atomic trading off): every trade and LP move is a request to the
OrderRouter, filled at its settlement round."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from perpdex.deploy import Deployment
from perpdex.sdk import Exchange


@pytest.fixture(scope="session")
def router(routed: Deployment) -> Any:
    return routed.router


@pytest.fixture
def funded(rx: Exchange) -> Callable[..., Any]:
    """funded(account, usd=10_000, sub=0): collateral deposited, wallet funded for rewards."""

    def _funded(account: Any, usd: int = 10_000, sub: int = 0) -> Any:
        rx.deposit(account, rx.tokens(usd), sub=sub)
        rx.fund(account, rx.tokens(100))
        return account

    return _funded


@pytest.fixture
def commit(rx: Exchange, router: Any) -> Callable[..., int]:
    """commit(account, size, market=0, sub=0, acceptable=None) -> order id (1% slippage bound by default)."""

    def _commit(account: Any, size: int, market: int = 0, sub: int = 0, acceptable: int | None = None) -> int:
        if acceptable is None:
            return rx.order_id(rx.trade(account, market, size, sub=sub, settle=False))
        return rx.order_id(router.commit_order(sub, market, size, acceptable, sender=account))

    return _commit


@pytest.fixture(scope="session")
def usd(routed: Deployment) -> Any:
    """The routed deployment's token (overrides the atomic system's in this folder)."""
    return routed.usd
