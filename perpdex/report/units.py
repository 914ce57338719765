"""How the report writes its figures for a person: amounts in USD with thousands separators
(never token units or raw WAD integers), rows titled in words, and each figure's kind.

The report's figures (`Report.summary`, `Report.markets`, summary.json) keep machine names
(`volume_usd`); `title` and `figure_text` are what the terminal tables and report.html show.
"""

from __future__ import annotations

from typing import Literal

from perpdex.money import tokens_usd, usd_text, wad_usd_text

__all__ = ["FIGURES", "figure_text", "title", "tokens_usd", "usd_text", "wad_usd_text"]

Kind = Literal["usd", "count", "pct", "pct_per_day", "bps", "hours", "seconds", "block", "text"]
Number = int | float | str

# every figure of the summary and of a market: (title, kind); the order is the tables' order
FIGURES: dict[str, tuple[str, Kind]] = {
    "first_block": ("First block", "block"),
    "last_block": ("Last block", "block"),
    "duration_hours": ("Duration (hours)", "hours"),
    "events": ("Chain events", "count"),
    "accounts": ("Trading accounts", "count"),
    "trades": ("Trades", "count"),
    "volume_usd": ("Volume", "usd"),
    "fees_usd": ("Trading fees", "usd"),
    "deposits_usd": ("Deposits", "usd"),
    "withdrawals_usd": ("Withdrawals", "usd"),
    "margin_transfers": ("Margin transfers", "count"),
    "lp_added_usd": ("Liquidity added", "usd"),
    "lp_removed_usd": ("Liquidity removed", "usd"),
    "price_updates": ("Price updates", "count"),
    "requests_committed": ("Requests committed", "count"),
    "requests_settled": ("Requests settled", "count"),
    "requests_cancelled": ("Requests cancelled", "count"),
    "requests_cancelled_by_reason": ("Cancelled, by reason", "text"),
    "requests_pending_at_end": ("Requests pending at the end", "count"),
    "commit_to_fill_seconds_median": ("Commit to fill, median (s)", "seconds"),
    "commit_to_fill_seconds_max": ("Commit to fill, max (s)", "seconds"),
    "conditional_placed": ("Conditional orders placed", "count"),
    "conditional_placed_by_kind": ("Conditional orders placed, by kind", "text"),
    "conditional_triggered": ("Conditional orders triggered", "count"),
    "conditional_filled": ("Conditional orders filled", "count"),
    "conditional_cancelled": ("Conditional orders cancelled", "count"),
    "conditional_cancelled_by_reason": ("Conditional orders cancelled, by reason", "text"),
    "conditional_open_at_end": ("Conditional orders open or triggered at the end", "count"),
    "stops_filled": ("Stop fills (stop and stop-loss orders filled)", "count"),
    "stop_slippage_mean_bps": ("Stop fills' slippage from the trigger, mean (bps; + worse)", "bps"),
    "stop_slippage_worst_bps": ("Stop fills' slippage from the trigger, worst (bps)", "bps"),
    "funding_paid_by_longs_usd": ("Funding paid by longs", "usd"),
    "funding_received_by_shorts_usd": ("Funding received by shorts", "usd"),
    "funding_to_pool_usd": ("Funding to the pool", "usd"),
    "funding_history": ("Funding history", "text"),
    "liquidations": ("Liquidations", "count"),
    "liquidations_partial": ("Liquidations, partial", "count"),
    "liquidations_full": ("Liquidations, full", "count"),
    "liquidated_notional_usd": ("Notional liquidated", "usd"),
    "liquidation_fees_usd": ("Liquidation fees", "usd"),
    "keeper_rewards_usd": ("Keeper rewards", "usd"),
    "insurance_fees_usd": ("Fees to the insurance fund", "usd"),
    "bad_debt_usd": ("Bad debt", "usd"),
    "bad_debt_from_insurance_usd": ("Bad debt covered by insurance", "usd"),
    "bad_debt_from_pool_usd": ("Bad debt absorbed by the pool (within its loss cap)", "usd"),
    "bad_debt_to_adl_usd": ("Bad debt beyond the loss cap, to ADL", "usd"),
    "adl_booked_usd": ("ADL booked against the other side", "usd"),
    "adl_deleverages": ("ADL closes (deleverages)", "count"),
    "adl_notional_usd": ("Notional deleveraged (ADL)", "usd"),
    "adl_recovered_usd": ("Recovered by ADL", "usd"),
    "profit_cut_by_share_usd": ("Profit cut by the pro-rata share", "usd"),
    "payments_capped_usd": ("Payments capped at the pool's cash", "usd"),
    "pnl_capped_usd": ("Capped PnL (pro-rata cut + capped payments)", "usd"),
    "insurance_start_usd": ("Insurance fund at the start", "usd"),
    "insurance_end_usd": ("Insurance fund at the end", "usd"),
    "pool_value_start_usd": ("Pool value at the start", "usd"),
    "pool_value_end_usd": ("Pool value at the end", "usd"),
    "pool_value_min_usd": ("Pool value, lowest", "usd"),
    "pool_max_drawdown_pct": ("Pool's largest drawdown (%)", "pct"),
    "vault_balance_end_usd": ("Vault's token balance at the end", "usd"),
    "pool_loss_cap_used_pct": ("Pool loss cap used (% of the cap x start value)", "pct"),
    "adl_pending_at_end": ("ADL pending at the end", "text"),
    "adl_unrecovered_usd": ("Advanced to ADL, not recovered", "usd"),
    "bad_debt_to_lps_usd": ("Bad debt to LPs (pool + ADL not recovered)", "usd"),
    "bad_debt_to_lps_pct": ("Bad debt to LPs (% of the pool's start value)", "pct"),
    # per market
    "price_start_usd": ("Price at the start", "usd"),
    "price_end_usd": ("Price at the end", "usd"),
    "price_min_usd": ("Price, lowest", "usd"),
    "price_max_usd": ("Price, highest", "usd"),
    "oi_long_end_usd": ("Open interest long at the end", "usd"),
    "oi_short_end_usd": ("Open interest short at the end", "usd"),
    "funding_rate_end_pct_per_day": ("Funding rate at the end (% per day)", "pct_per_day"),
}


def title(key: str) -> str:
    """A figure's row title (a market figure `ETH-USD.volume_usd` by its own name)."""
    return FIGURES[key.split(".")[-1]][0]


def figure_text(key: str, value: Number) -> str:
    """A figure as the tables show it, by its kind."""
    kind = FIGURES[key.split(".")[-1]][1]
    if kind == "usd":
        return usd_text(float(value), 4 if 0 < abs(float(value)) < 1 else 2)  # cents would hide a small sum
    if kind in ("count", "block"):
        return f"{int(value):,}"
    if kind in ("pct", "pct_per_day"):
        return f"{float(value):,.4f}%"
    if kind == "bps":
        return f"{float(value):,.1f} bps"
    if kind in ("hours", "seconds"):
        return f"{float(value):,.2f}" if isinstance(value, float) else f"{value:,}"
    return str(value)
