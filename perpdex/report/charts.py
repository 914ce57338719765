"""The report's PNG charts (matplotlib, Agg backend, small and fast). x axis: hours since the
first event or sample."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from perpdex.model import WAD  # noqa: E402
from perpdex.report.build import Report, price_path  # noqa: E402

SIZE = (7.0, 3.2)  # inches
DPI = 90


def _origin(report: Report) -> int:
    return min([r.timestamp for r in report.samples[:1]] + [e.timestamp for e in report.events[:1]])


def _hours(report: Report, timestamp: int) -> float:
    return (timestamp - _origin(report)) / 3600


def _axes(markets: int) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, markets, figsize=SIZE, dpi=DPI, squeeze=False, layout="constrained")
    return fig, list(axes[0])


def price_liquidations(report: Report) -> Any:
    """Price per market (every update and sample) with a marker at each liquidated position."""
    fig, axes = _axes(len(report.market_names))
    for ax, (market, name) in zip(axes, report.market_names.items()):
        path = price_path(market, report.events, report.samples)
        ax.step([_hours(report, t) for t, _ in path], [p / WAD for _, p in path], where="post", lw=1)
        closes = [e for e in report.events if e.name == "PositionLiquidated" and int(e.args["market"]) == market]
        for full, marker, color in ((False, "v", "orange"), (True, "X", "red")):
            hit = [e for e in closes if (int(e.args["size"]) == 0) == full]
            if hit:
                ax.scatter([_hours(report, e.timestamp) for e in hit], [int(e.args["price"]) / WAD for e in hit],
                           marker=marker, color=color, s=28, zorder=3, label="full" if full else "partial")
        ax.set_title(f"{name} price, liquidations", fontsize=9)
        if closes:
            ax.legend(fontsize=7)
    return fig


def funding_rate(report: Report) -> Any:
    fig, axes = _axes(1)
    for market, name in report.market_names.items():
        points = sorted(
            [(e.timestamp, int(e.args["funding_rate"])) for e in report.events
             if e.name == "FundingAccrued" and int(e.args["market"]) == market]
            + [(r.timestamp, r.markets[market].funding_rate) for r in report.samples]
        )
        axes[0].plot([_hours(report, t) for t, _ in points], [r * 100 / WAD for _, r in points], lw=1, label=name)
    axes[0].axhline(0, color="grey", lw=0.5)
    axes[0].set_title("funding rate, % per day (+ = longs pay)", fontsize=9)
    axes[0].legend(fontsize=7)
    return fig


def open_interest(report: Report) -> Any:
    fig, axes = _axes(len(report.market_names))
    hours = [_hours(report, r.timestamp) for r in report.samples]
    for ax, (market, name) in zip(axes, report.market_names.items()):
        ax.plot(hours, [r.markets[market].oi_long / WAD for r in report.samples], lw=1, color="green", label="long")
        ax.plot(hours, [r.markets[market].oi_short / WAD for r in report.samples], lw=1, color="red", label="short")
        ax.set_title(f"{name} open interest (base units)", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def pool_insurance(report: Report) -> Any:
    fig, axes = _axes(2)
    hours = [_hours(report, r.timestamp) for r in report.samples]
    axes[0].plot(hours, [r.pool_value / WAD for r in report.samples], lw=1, label="pool value")
    axes[0].plot(hours, [r.pool_balance / WAD for r in report.samples], lw=1, ls="--", label="pool cash")
    axes[0].set_title("pool, USD", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(hours, [r.insurance_fund / WAD for r in report.samples], lw=1, color="purple")
    axes[1].set_title("insurance fund, USD", fontsize=9)
    return fig


def equity_distribution(report: Report) -> Any:
    fig, axes = _axes(1)
    axes[0].hist(report.equities_usd or [0.0], bins=min(30, max(5, len(report.equities_usd) // 3)), color="steelblue")
    axes[0].set_title(f"account equity at the end ({len(report.equities_usd)} accounts)", fontsize=9)
    axes[0].set_xlabel("USD", fontsize=7)
    return fig


CHARTS: dict[str, Callable[[Report], Any]] = {
    "price_liquidations": price_liquidations,
    "funding_rate": funding_rate,
    "open_interest": open_interest,
    "pool_insurance": pool_insurance,
    "equity_distribution": equity_distribution,
}


def write_charts(report: Report, out_dir: Path) -> dict[str, Path]:
    """Every chart as `<name>.png` in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, draw in CHARTS.items():
        fig = draw(report)
        for ax in fig.axes:
            ax.tick_params(labelsize=7)
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            if not ax.get_xlabel():
                ax.set_xlabel("hours", fontsize=7)
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written[name] = path
    return written
