"""The report as files (PNGs, timeseries.csv, one self-contained HTML page, summary.json) and
as rich tables. What a person reads is in human units (perpdex.report.units): a header saying
what ran where and when, titled rows, every amount in USD; a rich table wraps its words and
never cuts a number (numbers do not wrap and keep their width; at 80 columns too)."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Collection

from rich.console import Console
from rich.table import Table

from perpdex.model import WAD
from perpdex.money import wad_usd
from perpdex.report.build import Report
from perpdex.report.charts import write_charts, write_timeseries
from perpdex.report.units import figure_text, title

LIQUIDATION_ROWS = 20  # shown in the terminal and the HTML; summary.json has them all


def _liquidation_cells(row: Any) -> list[str]:
    return [
        f"{row.block:,}", f"{row.owner}/{row.sub}", "full" if row.full else f"{row.fraction * 100 / WAD:.2f}%",
        wad_usd(row.notional_closed), wad_usd(row.fee), wad_usd(row.keeper_reward), wad_usd(row.bad_debt),
    ]


LIQUIDATION_COLUMNS = ("Block", "Account / sub", "Closed", "Notional closed", "Fee", "Keeper reward", "Bad debt")
WORDS = (1,)  # the liquidation table's columns of words (the account wraps; the rest are numbers)


def summary_rows(report: Report) -> list[tuple[str, str]]:
    """(title, value) of every figure of the whole run (not per market), in human units."""
    return [(title(k), figure_text(k, v)) for k, v in report.summary.items() if "." not in k]


def market_rows(report: Report) -> list[list[str]]:
    """[title, value per market] of every market figure."""
    names = list(report.markets)
    return [[title(k), *(figure_text(k, report.markets[n][k]) for n in names)]
            for k in (report.markets[names[0]] if names else [])]


# ---------------------------------------------------------------- terminal


def figures_table(title_: str, headers: list[str] | None, rows: list[list[str]], words: Collection[int] = (0,)) -> Table:
    """A table (no header row when `headers` is None) whose `words` columns (by index) are
    left-aligned and whose others hold numbers, right-aligned and at least as wide as their
    widest cell without a space: a number never wraps, a sentence among them (a funding
    history's gap) wraps at its spaces. Anything longer folds: rich's last resort is never "…"."""
    table = Table(title=title_, show_header=headers is not None)
    for i, head in enumerate(headers or [""] * (len(rows[0]) if rows else 0)):
        if i in words:
            table.add_column(head, overflow="fold")
        else:
            widest = max([len(r[i]) for r in rows if " " not in r[i]] + [1])
            table.add_column(head, justify="right", overflow="fold", min_width=widest)
    for row in rows:
        table.add_row(*row)
    return table


def report_tables(report: Report) -> list[Table]:
    header = figures_table(f"{report.title}: the run", None, [list(r) for r in report.header.rows()], (0, 1))
    summary = figures_table(f"{report.title}: summary (from chain events and state)", ["Figure", "Value"],
                            [list(r) for r in summary_rows(report)])
    markets = figures_table("Per market", ["Figure", *report.markets], market_rows(report))
    tables = [header, summary, markets]
    if report.liquidations:
        shown = report.liquidations[:LIQUIDATION_ROWS]
        tables.append(figures_table(f"Liquidations ({len(shown)} of {len(report.liquidations)})",
                                    list(LIQUIDATION_COLUMNS), [_liquidation_cells(r) for r in shown], WORDS))
    checks = Table(title="Checks: " + ("[green]all passed[/green]" if report.ok else f"[red]{len(report.failed)} FAILED[/red]"))
    for col in ("Check", "Result", "Detail"):
        checks.add_column(col, overflow="fold")
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
    """The report's figures (amounts in USD) for programs. The header without its date: two
    runs of a seed write the same file."""
    return {
        "title": report.title,
        "header": report.header.to_json(),
        "ok": report.ok,
        "summary": report.summary,
        "markets": report.markets,
        "checks": [asdict(c) for c in report.checks],
        "liquidations": [_liquidation_json(r) for r in report.liquidations],
    }


def _liquidation_json(row: Any) -> dict[str, Any]:
    """A liquidation with its amounts in USD (WAD fields converted) and its fraction in %."""
    usd_fields = {"notional_closed", "fee", "keeper_reward", "bad_debt"}
    out: dict[str, Any] = {}
    for k, v in asdict(row).items():
        if k in usd_fields:
            out[f"{k}_usd"] = float(v) / WAD
        elif k == "fraction":
            out["closed_pct"] = v * 100 / WAD
        else:
            out[k] = v
    return out


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr class='{(classes or [''] * len(rows))[i]}'>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = """body{font-family:sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
tr.fail td{background:#fdd}tr.pass td:nth-child(2){color:green}img{max-width:100%;display:block;margin:1em 0}
table.header th,table.header td{text-align:left;border:none;padding:1px 8px}"""


def render_html(report: Report, images: dict[str, Path]) -> str:
    names = list(report.markets)
    status = "all checks passed" if report.ok else f"{len(report.failed)} check(s) FAILED"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(report.title)}</h1><p><b>{status}</b></p>",
        "<table class='header'>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                           for k, v in report.header.rows()) + "</table>",
        "<h2>Checks</h2>",
        _table(["Check", "Result", "Detail"], [[c.name, "pass" if c.ok else "FAIL", c.detail] for c in report.checks],
               ["pass" if c.ok else "fail" for c in report.checks]),
        "<h2>Summary</h2>",
        _table(["Figure", "Value"], [list(r) for r in summary_rows(report)]),
        "<h2>Per market</h2>",
        _table(["Figure", *names], market_rows(report)),
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
    """Writes the charts (`<name>.png`), `timeseries.csv` (the samples the charts draw),
    `report.html` (self-contained) and `summary.json` into `out_dir`; returns every file by name."""
    out_dir = Path(out_dir)
    written = write_charts(report, out_dir)
    page = out_dir / "report.html"
    page.write_text(render_html(report, written))
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps(summary_json(report), indent=2))
    return {**written, "timeseries.csv": write_timeseries(report, out_dir), "report.html": page, "summary.json": summary}
