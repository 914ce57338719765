"""The report as files (PNGs, one self-contained HTML page, summary.json) and as rich tables."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from perpdex.model import WAD
from perpdex.report.build import Number, Report, usd
from perpdex.report.charts import write_charts

LIQUIDATION_ROWS = 20  # shown in the terminal and the HTML; summary.json has them all


def _fmt(value: Number) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _liquidation_cells(row: Any) -> list[str]:
    return [
        f"{row.block:,}", f"{row.owner[:10]}…/{row.sub}", "full" if row.full else f"{row.fraction * 100 / WAD:.2f}%",
        _fmt(usd(row.notional_closed)), _fmt(usd(row.fee)), _fmt(row.keeper_reward_tokens), _fmt(usd(row.bad_debt)),
    ]


LIQUIDATION_COLUMNS = ("block", "account", "closed", "notional usd", "fee usd", "keeper reward tokens", "bad debt usd")


def _general(report: Report) -> dict[str, Number]:
    return {k: v for k, v in report.summary.items() if "." not in k}


# ---------------------------------------------------------------- terminal


def report_tables(report: Report) -> list[Table]:
    summary = Table(title=f"{report.title}: summary (from chain events and state)")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for k, v in _general(report).items():
        summary.add_row(k, _fmt(v))
    names = list(report.markets)
    markets = Table(title="Per market")
    markets.add_column("figure")
    for name in names:
        markets.add_column(name, justify="right")
    for k in report.markets[names[0]] if names else []:
        markets.add_row(k, *(_fmt(report.markets[n][k]) for n in names))
    tables = [summary, markets]
    if report.liquidations:
        shown = report.liquidations[:LIQUIDATION_ROWS]
        liq = Table(title=f"Liquidations ({len(shown)} of {len(report.liquidations)})")
        for col in LIQUIDATION_COLUMNS:
            liq.add_column(col, justify="right")
        for row in shown:
            liq.add_row(*_liquidation_cells(row))
        tables.append(liq)
    checks = Table(title="Checks: " + ("[green]all passed[/green]" if report.ok else f"[red]{len(report.failed)} FAILED[/red]"))
    for col in ("check", "result", "detail"):
        checks.add_column(col)
    for c in report.checks:
        checks.add_row(c.name, "[green]pass[/green]" if c.ok else "[red]FAIL[/red]", c.detail)
    tables.append(checks)
    return tables


def print_report(report: Report, console: Console | None = None) -> None:
    out = console or Console()
    for table in report_tables(report):
        out.print(table)


# ---------------------------------------------------------------- files


def summary_json(report: Report) -> dict[str, Any]:
    return {
        "title": report.title,
        "ok": report.ok,
        "summary": report.summary,
        "markets": report.markets,
        "checks": [asdict(c) for c in report.checks],
        "liquidations": [asdict(r) for r in report.liquidations],
    }


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr class='{(classes or [''] * len(rows))[i]}'>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = """body{font-family:sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
tr.fail td{background:#fdd}tr.pass td:nth-child(2){color:green}img{max-width:100%;display:block;margin:1em 0}"""


def render_html(report: Report, images: dict[str, Path]) -> str:
    names = list(report.markets)
    status = "all checks passed" if report.ok else f"{len(report.failed)} check(s) FAILED"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(report.title)}</h1><p><b>{status}</b></p>",
        "<h2>Checks</h2>",
        _table(["check", "result", "detail"], [[c.name, "pass" if c.ok else "FAIL", c.detail] for c in report.checks],
               ["pass" if c.ok else "fail" for c in report.checks]),
        "<h2>Summary</h2>",
        _table(["figure", "value"], [[k, _fmt(v)] for k, v in _general(report).items()]),
        "<h2>Per market</h2>",
        _table(["figure", *names], [[k, *(_fmt(report.markets[n][k]) for n in names)]
                                    for k in (report.markets[names[0]] if names else [])]),
    ]
    if report.liquidations:
        shown = report.liquidations[:LIQUIDATION_ROWS]
        parts += [f"<h2>Liquidations ({len(shown)} of {len(report.liquidations)})</h2>",
                  _table(list(LIQUIDATION_COLUMNS), [_liquidation_cells(r) for r in shown])]
    parts.append("<h2>Charts</h2>")
    for name, path in images.items():
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<h3>{html.escape(name)}</h3><img alt='{name}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Writes the charts (`<name>.png`), `report.html` (self-contained) and `summary.json`
    into `out_dir`; returns every file by name."""
    out_dir = Path(out_dir)
    written = write_charts(report, out_dir)
    page = out_dir / "report.html"
    page.write_text(render_html(report, written))
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps(summary_json(report), indent=2))
    return {**written, "report.html": page, "summary.json": summary}
