"""The report's PNG charts (matplotlib, Agg backend) and `timeseries.csv`, the samples they
draw. x axis: hours since the first event or sample (the stop fills: their trigger price);
every axis labelled with its unit; at least MIN_WIDTH_PX wide. Liquidations are counted per time bin (one marker per bin and kind,
its size and label the count), so markers never hide one another."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import csv  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from perpdex.model import WAD  # noqa: E402
from perpdex.report.build import Report, price_path  # noqa: E402
from perpdex.report.samples import Sample  # noqa: E402

SIZE = (13.0, 4.6)  # inches: 1,300 x 460 px at DPI
DPI = 100
MIN_WIDTH_PX = 1200
LIQUIDATION_BINS = 60  # time bins over the run for the liquidation markers
HOURS = "hours since the start"


def _origin(report: Report) -> int:
    return min([r.timestamp for r in report.samples[:1]] + [e.timestamp for e in report.events[:1]])


def _hours(report: Report, timestamp: int) -> float:
    return (timestamp - _origin(report)) / 3600


def _tick(value: float, _position: Any = None) -> str:
    """A y tick with thousands separators and no exponent (5,000,000; 0.0125)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"


def _axes(markets: int) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, markets, figsize=SIZE, dpi=DPI, squeeze=False, layout="constrained")
    return fig, list(axes[0])


@dataclass(frozen=True)
class LiquidationMarker:
    """The liquidations of one kind (full or partial) in one market and time bin."""

    hours: float  # the bin's mean time
    price: float  # the mean liquidation price, USD
    count: int
    full: bool


def liquidation_markers(report: Report, market: int, bins: int = LIQUIDATION_BINS) -> list[LiquidationMarker]:
    """The market's liquidated positions (PositionLiquidated) grouped by kind and by one of
    `bins` equal time bins over the run: one marker each, so none hides another."""
    span = max([_hours(report, r.timestamp) for r in report.samples] + [_hours(report, e.timestamp) for e in report.events]
               + [1e-9])
    groups: dict[tuple[bool, int], list[tuple[float, float]]] = {}
    for e in report.events:
        if e.name == "PositionLiquidated" and int(e.args["market"]) == market:
            hours = _hours(report, e.timestamp)
            key = (int(e.args["size"]) == 0, min(int(hours / span * bins), bins - 1))
            groups.setdefault(key, []).append((hours, int(e.args["price"]) / WAD))
    return [LiquidationMarker(sum(h for h, _ in g) / len(g), sum(p for _, p in g) / len(g), len(g), full)
            for (full, _), g in sorted(groups.items())]


def price_liquidations(report: Report) -> Any:
    """Price per market (every update and sample) with the liquidations counted per time bin:
    a marker's size grows with its count, and a count above one is written next to it."""
    fig, axes = _axes(len(report.market_names))
    for ax, (market, name) in zip(axes, report.market_names.items()):
        path = price_path(market, report.events, report.samples)
        ax.step([_hours(report, t) for t, _ in path], [p / WAD for _, p in path], where="post", lw=1, label="price")
        markers = liquidation_markers(report, market)
        for full, shape, color in ((False, "v", "orange"), (True, "X", "red")):
            mine = [m for m in markers if m.full == full]
            if not mine:
                continue
            total = sum(m.count for m in mine)
            ax.scatter([m.hours for m in mine], [m.price for m in mine], s=[30 + 25 * (m.count - 1) for m in mine],
                       marker=shape, color=color, alpha=0.8, zorder=3,
                       label=f"{'full' if full else 'partial'} liquidations ({total}; size = count per bin)")
            for m in mine:
                if m.count > 1:
                    ax.annotate(f"{m.count}", (m.hours, m.price), xytext=(6, 6 if full else -10),
                                textcoords="offset points", fontsize=8, color=color)
        ax.set_title(f"{name}: price and liquidations", fontsize=10)
        ax.set_ylabel("price (USD)", fontsize=8)
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
    axes[0].set_title("funding rate (+ = longs pay)", fontsize=10)
    axes[0].set_ylabel("% per day", fontsize=8)
    axes[0].legend(fontsize=7)
    return fig


def open_interest(report: Report) -> Any:
    fig, axes = _axes(len(report.market_names))
    hours = [_hours(report, r.timestamp) for r in report.samples]
    for ax, (market, name) in zip(axes, report.market_names.items()):
        ax.plot(hours, [oi_usd(r, market, "long") for r in report.samples], lw=1, color="green", label="long")
        ax.plot(hours, [oi_usd(r, market, "short") for r in report.samples], lw=1, color="red", label="short")
        ax.set_title(f"{name} open interest (notional at the price of the time)", fontsize=10)
        ax.set_ylabel("USD", fontsize=8)
        ax.legend(fontsize=7)
    return fig


def pool_insurance(report: Report) -> Any:
    fig, axes = _axes(2)
    hours = [_hours(report, r.timestamp) for r in report.samples]
    axes[0].plot(hours, [r.pool_value / WAD for r in report.samples], lw=1, label="pool value")
    axes[0].plot(hours, [r.pool_balance / WAD for r in report.samples], lw=1, ls="--", label="pool cash")
    axes[0].set_title("LP pool", fontsize=10)
    axes[0].set_ylabel("USD", fontsize=8)
    axes[0].legend(fontsize=7)
    axes[1].plot(hours, [r.insurance_fund / WAD for r in report.samples], lw=1, color="purple")
    axes[1].set_title("insurance fund", fontsize=10)
    axes[1].set_ylabel("USD", fontsize=8)
    return fig


def equity_distribution(report: Report) -> Any:
    fig, axes = _axes(1)
    axes[0].hist(report.equities_usd or [0.0], bins=min(30, max(5, len(report.equities_usd) // 3)), color="steelblue")
    axes[0].set_title(f"account equity at the end ({len(report.equities_usd)} accounts)", fontsize=10)
    axes[0].set_xlabel("equity (USD)", fontsize=8)
    axes[0].set_ylabel("accounts", fontsize=8)
    return fig


def stop_fills(report: Report) -> Any:
    """Per market, each stop or stop-loss fill's price against its trigger price, with the line
    where they are equal: a sell below it (a buy above it) slipped, by the title's bps."""
    fig, axes = _axes(len(report.market_names))
    for ax, (market, name) in zip(axes, report.market_names.items()):
        fills = [f for f in report.stop_fills if f.market == market]
        for side, label, color in ((-1, "sells (a long's stop)", "red"), (1, "buys (a short's stop)", "green")):
            mine = [f for f in fills if f.side == side]
            if mine:
                ax.scatter([f.trigger_price / WAD for f in mine], [f.fill_price / WAD for f in mine], s=30, color=color,
                           alpha=0.7, zorder=3, label=f"{label}: {len(mine)}")
        prices = [p / WAD for f in fills for p in (f.trigger_price, f.fill_price)]
        if prices:
            low, high = min(prices), max(prices)
            ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--", label="fill = trigger")
            worst = max(f.slippage_bps for f in fills)
            mean = sum(f.slippage_bps for f in fills) / len(fills)
            ax.set_title(f"{name}: stop fills vs triggers (slippage mean {mean:,.0f} bps, worst {worst:,.0f})",
                         fontsize=10)
            ax.legend(fontsize=7)
        else:
            ax.set_title(f"{name}: no stop fills", fontsize=10)
        ax.set_xlabel("trigger price (USD)", fontsize=8)
        ax.set_ylabel("fill price (USD)", fontsize=8)
        ax.xaxis.set_major_formatter(FuncFormatter(_tick))  # prices on x too: separators, no exponent
    return fig


CHARTS: dict[str, Callable[[Report], Any]] = {
    "price_liquidations": price_liquidations,
    "funding_rate": funding_rate,
    "open_interest": open_interest,
    "pool_insurance": pool_insurance,
    "equity_distribution": equity_distribution,
    "stop_fills": stop_fills,
}


def write_charts(report: Report, out_dir: Path) -> dict[str, Path]:
    """Every chart as `<name>.png` in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, draw in CHARTS.items():
        fig = draw(report)
        for ax in fig.axes:
            ax.tick_params(labelsize=8)
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            ax.yaxis.set_major_formatter(FuncFormatter(_tick))
            if not ax.get_xlabel():
                ax.set_xlabel(HOURS, fontsize=8)
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written[name] = path
    return written


def oi_usd(row: Sample, market: int, side: str) -> float:
    """A sample's open interest on one side, as USD notional at the sample's price."""
    m = row.markets[market]
    return (m.oi_long if side == "long" else m.oi_short) * m.price / WAD / WAD


def timeseries_rows(report: Report) -> list[dict[str, Any]]:
    """One row per sample: block, time, each market's price, open interest and funding rate,
    the pool and the insurance fund, in USD (and % per day)."""
    rows = []
    for r in report.samples:
        row: dict[str, Any] = {"block": r.block, "timestamp": r.timestamp, "hours": round(_hours(report, r.timestamp), 6)}
        for market, name in report.market_names.items():
            m = r.markets[market]
            row[f"{name} price (USD)"] = m.price / WAD
            row[f"{name} open interest long (USD)"] = round(oi_usd(r, market, "long"), 6)
            row[f"{name} open interest short (USD)"] = round(oi_usd(r, market, "short"), 6)
            row[f"{name} funding rate (% per day)"] = m.funding_rate * 100 / WAD
        row["pool value (USD)"] = r.pool_value / WAD
        row["pool cash (USD)"] = r.pool_balance / WAD
        row["insurance fund (USD)"] = r.insurance_fund / WAD
        rows.append(row)
    return rows


def write_timeseries(report: Report, out_dir: Path) -> Path:
    """`timeseries.csv` in `out_dir`: `timeseries_rows`, for a spreadsheet."""
    rows, path = timeseries_rows(report), out_dir / "timeseries.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["block"])
        writer.writeheader()
        writer.writerows(rows)
    return path
