"""`build_report`: the run's figures from events and samples, the invariant checks, and the
simulator's own bookkeeping compared with what the chain says."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Iterable

from perpdex.checks import Check, everyone_exits, ledger_check, open_interest_check, pool_loss_check
from perpdex.keepers.adl import SIDE_NAMES, pending
from perpdex.model import WAD, from_wad
from perpdex.money import tokens_usd, units_text, usd_text, wad_usd, wad_usd_text
from perpdex.report.events import ChainEvent, EventLog
from perpdex.conditional import KIND_NAMES
from perpdex.report.figures import (
    StopFill, Tally, add_unsettled_funding, funding_baseline, funding_rounding_bound, tally,
)
from perpdex.report.samples import Sample, Sampler
from perpdex.sdk import Exchange

Account = tuple[Any, int]
Number = int | float | str


@dataclass
class Expected:
    """The simulator's own bookkeeping; None = not known. Each known field must equal the
    chain's figure of the same name (token units, counts)."""

    trades: int | None = None
    liquidations: int | None = None
    deposits_tokens: int | None = None
    withdrawals_tokens: int | None = None
    lp_added_tokens: int | None = None
    price_updates: int | None = None
    conditional_placed: int | None = None
    conditional_filled: int | None = None


@dataclass(frozen=True)
class LiquidationRow:
    block: int
    timestamp: int
    owner: str
    sub: int
    keeper: str
    fraction: int  # WAD; WAD = full
    notional_closed: int  # WAD USD
    fee: int  # WAD USD
    keeper_reward: int  # WAD USD (the event's token units, scaled)
    bad_debt: int  # WAD USD

    @property
    def full(self) -> bool:
        return self.fraction >= WAD


@dataclass(frozen=True)
class RunInfo:
    """What the simulation was asked to run (None: not a simulation, e.g. a test's history)."""

    seed: int | None = None
    traders: int | None = None
    blocks: int | None = None


@dataclass(frozen=True)
class Header:
    """The report's header: what ran, where, when. `date` (the wall clock at the end of the
    run) is shown on the page and in the terminal but kept out of summary.json, so two runs
    of a seed write the same file."""

    title: str
    network: str
    contracts: dict[str, str]  # name -> address
    first_block: int
    last_block: int
    run: RunInfo
    date: str

    def rows(self) -> list[tuple[str, str]]:
        """(title, value) of every line of the header, in order."""
        r = self.run
        given = [("Seed", r.seed), ("Traders", r.traders), ("Blocks simulated", r.blocks)]
        return [("Run", self.title), *((k, f"{v:,}") for k, v in given if v is not None),
                ("Network", self.network), ("Chain blocks", f"{self.first_block:,} to {self.last_block:,}"),
                ("Date", self.date), *((f"Contract: {name}", a) for name, a in self.contracts.items())]

    def to_json(self) -> dict[str, Any]:
        r = self.run
        return {"title": self.title, "network": self.network, "seed": r.seed, "traders": r.traders,
                "blocks": r.blocks, "first_block": self.first_block, "last_block": self.last_block,
                "contracts": self.contracts}


@dataclass
class Report:
    title: str
    summary: dict[str, Number]
    markets: dict[str, dict[str, Number]]  # market name -> its figures
    liquidations: list[LiquidationRow]
    checks: list[Check]
    events: list[ChainEvent] = field(repr=False)
    samples: list[Sample] = field(repr=False)
    market_names: dict[int, str] = field(repr=False)
    equities_usd: list[float] = field(repr=False)  # every account's equity at the end
    header: Header = field(repr=False)
    stop_fills: list[StopFill] = field(default_factory=list, repr=False)  # stop and stop-loss fills, in order

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def usd(wad: int) -> float:
    return round(float(from_wad(wad)), 6)


def build_report(
    x: Exchange,
    log: EventLog,
    sampler: Sampler,
    accounts: Iterable[Account] | None = None,
    lps: Iterable[Any] | None = None,
    keeper: Any | None = None,
    title: str = "perpdex",
    expected: Expected | None = None,
    exit_check: bool = True,
    run: RunInfo | None = None,
) -> Report:
    """Figures from `log` and `sampler` (a last sample is taken now if the head moved since),
    then the checks. `accounts`/`lps` default to every account/LP the events name; `keeper`
    (liquidates during the exit check) defaults to the deployer; `run` goes in the header."""
    from ape import chain, networks

    if not sampler.rows or sampler.rows[-1].block < int(chain.blocks.head.number):
        sampler.sample()
    events, names = log.events, x.market_names()
    t = tally(events, names, funding_baseline(sampler.rows[0], events))
    add_unsettled_funding(t, x.vault, x.d.lens)
    accounts = list(accounts) if accounts is not None else [(signer_of(o), sub) for o, sub in accounts_in(events)]
    lps = list(lps) if lps is not None else [signer_of(p) for p in lps_in(events)]
    decimals = int(x.d.usd.decimals())
    adl_left = adl_pending_text(x)
    summary = _summary(events, sampler.rows, t, len(accounts), decimals)
    summary |= _loss_figures(t, sampler.rows[0].pool_value, int(x.vault.pool_caps()[3]), adl_left)
    markets = {name: _market_figures(m, t, events, sampler.rows) for m, name in names.items()}
    for name, figures in markets.items():
        summary.update({f"{name}.{k}": v for k, v in figures.items()})
    checks = [ledger_check(x, accounts), open_interest_check(x, accounts), *_funding_check(t)]
    if exit_check:
        checks.append(everyone_exits(x, accounts, lps, keeper or x.d.deployer).check())
    checks.append(pool_loss_check(t.bad_debt_from_pool, t.adl_unrecovered, sampler.rows[0].pool_value,
                                  _beyond_the_cap(t, adl_left)))
    checks += compare(expected or Expected(), t, decimals)
    equities = [usd(int(x.vault.equity(owner, sub))) for owner, sub in accounts]
    network = str(getattr(networks.active_provider, "network_choice", "") or "unknown")
    header = Header(title, network, x.d.addresses(), int(summary["first_block"]), int(summary["last_block"]),
                    run or RunInfo(), datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return Report(title, summary, markets, _liquidations(events, 10 ** (18 - decimals)), checks, events,
                  sampler.rows, names, equities, header, t.orders.stop_fills)


def accounts_in(events: Iterable[ChainEvent]) -> list[Account]:
    """Every (owner, sub) the events name, in order of first appearance."""
    seen: dict[Account, None] = {}
    for e in events:
        if e.name == "MarginTransferred":
            seen.setdefault((e.args["owner"], int(e.args["from_sub"])))
            seen.setdefault((e.args["owner"], int(e.args["to_sub"])))
        elif "owner" in e.args and "sub" in e.args:
            seen.setdefault((e.args["owner"], int(e.args["sub"])))
    return list(seen)


def signer_of(address: Any) -> Any:
    """The Ape account that signs for `address` when Ape knows it (test accounts), else the
    address itself (then the exit check reports that it could not act for it)."""
    from ape import accounts
    from ape.exceptions import ApeException

    try:
        return accounts[str(address)]
    except (ApeException, IndexError, KeyError):
        return address


def lps_in(events: Iterable[ChainEvent]) -> list[Any]:
    return list(dict.fromkeys(e.args["provider"] for e in events if e.name == "LiquidityAdded"))


def compare(expected: Expected, t: Tally, decimals: int) -> list[Check]:
    """One check per field the simulator knows: its count or sum against the chain's (token
    sums compared to the unit and shown in USD, `decimals` places)."""
    chain_figures = {
        "trades": t.trades, "liquidations": t.liquidations, "deposits_tokens": t.deposits_tokens,
        "withdrawals_tokens": t.withdrawals_tokens, "lp_added_tokens": t.lp_added_tokens,
        "price_updates": t.price_updates, "conditional_placed": len(t.orders.placed),
        "conditional_filled": t.orders.filled,
    }
    checks = []
    for f in fields(Expected):
        mine = getattr(expected, f.name)
        if mine is None:
            continue
        theirs = chain_figures[f.name]
        name = f.name.removesuffix("_tokens")
        places = decimals if name != f.name else None
        detail = f"simulator {_amount(mine, places)}, chain {_amount(theirs, places)}" + (
            "" if mine == theirs else f" (off by {'+' if mine > theirs else ''}{_amount(mine - theirs, places)})")
        checks.append(Check(f"simulator == chain: {name.replace('_', ' ')}", mine == theirs, detail))
    return checks


def _amount(n: int, token_decimals: int | None) -> str:
    """A count, or (with the token's decimals) token units as USD to the unit."""
    return f"{n:,}" if token_decimals is None else usd_text(tokens_usd(n, token_decimals), token_decimals)


def _funding_check(t: Tally) -> list[Check]:
    """Longs + shorts + pool funding == 0 up to rounding; only when the log holds the whole
    history (otherwise the pool's side cannot be known from events)."""
    if t.gaps:
        return []
    longs = sum(m.funding_longs for m in t.markets.values())
    shorts = sum(m.funding_shorts for m in t.markets.values())
    pool = sum(m.funding_pool for m in t.markets.values())
    total, bound = longs + shorts + pool, funding_rounding_bound(t)
    detail = (f"longs {usd_text(usd(longs))}, shorts {usd_text(usd(shorts))}, pool {usd_text(usd(pool))}: "
              f"sum {wad_usd_text(total)} (rounding bound {wad_usd_text(bound)})")
    return [Check("funding is zero-sum", abs(total) <= bound, detail)]


def _summary(events: list[ChainEvent], rows: list[Sample], t: Tally, accounts: int, decimals: int) -> dict[str, Number]:
    """Every amount in USD (perpdex.report.units.FIGURES titles each figure); token sums converted with
    the token's `decimals`."""
    start, end = rows[0], rows[-1]
    first_time = min([start.timestamp, *(e.timestamp for e in events[:1])])
    ms = t.markets.values()
    return {
        "first_block": min([start.block, *(e.block for e in events[:1])]),
        "last_block": end.block,
        "duration_hours": round((end.timestamp - first_time) / 3600, 3),
        "events": len(events),
        "accounts": accounts,
        "trades": t.trades,
        "volume_usd": usd(sum(m.volume for m in ms)),
        "fees_usd": usd(sum(m.fees for m in ms)),
        "deposits_usd": tokens_usd(t.deposits_tokens, decimals),
        "withdrawals_usd": tokens_usd(t.withdrawals_tokens, decimals),
        "margin_transfers": t.margin_transfers,
        "lp_added_usd": tokens_usd(t.lp_added_tokens, decimals),
        "lp_removed_usd": tokens_usd(t.lp_removed_tokens, decimals),
        "price_updates": t.price_updates,
        **_request_figures(t),
        **conditional_figures(t),
        "funding_paid_by_longs_usd": usd(-sum(m.funding_longs for m in ms)),
        "funding_received_by_shorts_usd": usd(sum(m.funding_shorts for m in ms)),
        "funding_to_pool_usd": usd(sum(m.funding_pool for m in ms)),
        "funding_history": "complete" if not t.gaps else f"partial: {t.gaps[0]}",
        "liquidations": t.liquidations,
        "liquidations_partial": t.liquidations_partial,
        "liquidations_full": t.liquidations - t.liquidations_partial,
        "liquidated_notional_usd": usd(sum(m.liquidated_notional for m in ms)),
        "liquidation_fees_usd": usd(t.liquidation_fees),
        "keeper_rewards_usd": tokens_usd(t.keeper_rewards_tokens, decimals),
        "insurance_fees_usd": usd(t.insurance_fees),
        "bad_debt_usd": usd(t.bad_debt),
        "bad_debt_from_insurance_usd": usd(t.bad_debt_from_insurance),
        "bad_debt_from_pool_usd": usd(t.bad_debt_from_pool),
        "bad_debt_to_adl_usd": usd(t.bad_debt_to_adl),
        "adl_booked_usd": usd(t.adl_booked),
        "adl_deleverages": t.adl_closes,
        "adl_notional_usd": usd(t.adl_notional),
        "adl_recovered_usd": usd(t.adl_recovered),
        "profit_cut_by_share_usd": usd(t.profit_capped),
        "payments_capped_usd": usd(t.payments_capped),
        "pnl_capped_usd": usd(t.pnl_capped),
        "insurance_start_usd": usd(start.insurance_fund),
        "insurance_end_usd": usd(end.insurance_fund),
        "pool_value_start_usd": usd(start.pool_value),
        "pool_value_end_usd": usd(end.pool_value),
        "pool_value_min_usd": usd(min(r.pool_value for r in rows)),
        "pool_max_drawdown_pct": round(max_drawdown(r.pool_value for r in rows) * 100, 4),
        "vault_balance_end_usd": tokens_usd(end.vault_tokens, decimals),
    }


def _loss_figures(t: Tally, pool_start: int, loss_cap: int, adl_left: str) -> dict[str, Number]:
    """How much of its loss cap the pool used: the bad debt it absorbed (from_pool) as a share
    of `loss_cap` (pool_loss_cap, WAD) times its value at the start (`pool_start`, WAD USD:
    the cap's base is the pool's cash when a loss window opens, about that); the ADL still
    owed at the end; and the bad debt LPs bear (absorbed, plus advanced to ADL and not
    recovered: pending ADL expires to the pool), in USD and as a share of the start value."""
    budget = max(pool_start, 0) * loss_cap // WAD
    return {"pool_loss_cap_used_pct": round(t.bad_debt_from_pool * 100 / budget, 4) if budget else 0.0,
            "adl_pending_at_end": adl_left,
            "adl_unrecovered_usd": usd(t.adl_unrecovered),
            "bad_debt_to_lps_usd": usd(t.bad_debt_to_lps),
            "bad_debt_to_lps_pct": round(t.bad_debt_to_lps * 100 / pool_start, 4) if pool_start > 0 else 0.0}


def adl_pending_text(x: Exchange) -> str:
    """What ADL still owes now, per market side (size, bankruptcy price); "none"."""
    names = x.market_names()
    return "; ".join(f"{names[p.market]} {SIDE_NAMES[p.side]} {units_text(p.size)} at {wad_usd(p.price)}"
                     for p in pending(x)) or "none"


def _beyond_the_cap(t: Tally, adl_left: str) -> str:
    """The pool-loss check's note on what went beyond the loss cap."""
    return (f"beyond the loss cap {wad_usd(t.bad_debt_to_adl)} to ADL, {wad_usd(t.adl_recovered)} recovered by "
            f"{t.adl_closes} deleverages; ADL pending at the end: {adl_left}")


def _request_figures(t: Tally) -> dict[str, Number]:
    """Two-step requests: committed, settled, cancelled (by reason), pending, commit to fill."""
    waits = sorted(t.fill_seconds)
    return {
        "requests_committed": t.requests_committed,
        "requests_settled": t.requests_settled,
        "requests_cancelled": t.requests_cancelled,
        "requests_cancelled_by_reason": "; ".join(f"{r}: {n}" for r, n in sorted(t.cancel_reasons.items())) or "none",
        "requests_pending_at_end": t.requests_committed - t.requests_settled - t.requests_cancelled,
        "commit_to_fill_seconds_median": waits[len(waits) // 2] if waits else 0,
        "commit_to_fill_seconds_max": waits[-1] if waits else 0,
    }


def conditional_figures(t: Tally) -> dict[str, Number]:
    """Conditional orders (SPEC 15): placed (by kind), triggered, filled, cancelled (by reason),
    open or triggered at the end; the stop fills (stop and stop-loss orders) and their
    slippage against their trigger prices in basis points (mean and worst; + is worse)."""
    o = t.orders
    mean, worst = o.slippage_bps()
    return {
        "conditional_placed": len(o.placed),
        "conditional_placed_by_kind": "; ".join(f"{KIND_NAMES[k]}: {n}" for k, n in sorted(o.by_kind().items())) or "none",
        "conditional_triggered": o.triggered,
        "conditional_filled": o.filled,
        "conditional_cancelled": o.cancelled,
        "conditional_cancelled_by_reason": "; ".join(f"{r}: {n}" for r, n in sorted(o.cancel_reasons.items())) or "none",
        "conditional_open_at_end": o.open_at_end,
        "stops_filled": len(o.stop_fills),
        "stop_slippage_mean_bps": round(mean, 2),
        "stop_slippage_worst_bps": round(worst, 2),
    }


def _market_figures(market: int, t: Tally, events: list[ChainEvent], rows: list[Sample]) -> dict[str, Number]:
    m = t.markets[market]
    prices = [p for _, p in price_path(market, events, rows)]
    last = rows[-1].markets[market]
    return {
        "trades": m.trades,
        "volume_usd": usd(m.volume),
        "fees_usd": usd(m.fees),
        "liquidated_notional_usd": usd(m.liquidated_notional),
        "funding_paid_by_longs_usd": usd(-m.funding_longs),
        "funding_received_by_shorts_usd": usd(m.funding_shorts),
        "funding_to_pool_usd": usd(m.funding_pool),
        "price_start_usd": usd(prices[0]),
        "price_end_usd": usd(prices[-1]),
        "price_min_usd": usd(min(prices)),
        "price_max_usd": usd(max(prices)),
        "oi_long_end_usd": usd(last.oi_long * last.price // WAD),  # notional at the last price
        "oi_short_end_usd": usd(last.oi_short * last.price // WAD),
        "funding_rate_end_pct_per_day": round(float(from_wad(last.funding_rate * 100)), 6),
    }


def price_path(market: int, events: list[ChainEvent], rows: list[Sample]) -> list[tuple[int, int]]:
    """(timestamp, price) of every PriceUpdated and every sample of `market`, in chain order
    (a sample reads the state after its block)."""
    points = [((e.block, e.log_index), e.timestamp, int(e.args["price"]))
              for e in events if e.name == "PriceUpdated" and int(e.args["market"]) == market]
    points += [((r.block, 1 << 64), r.timestamp, r.markets[market].price) for r in rows]
    return [(ts, price) for _, ts, price in sorted(points, key=lambda p: p[0])]


def max_drawdown(values: Iterable[int]) -> float:
    """The largest fall from a running peak, as a fraction of the peak (0 when it never fell)."""
    peak, worst = None, 0.0
    for v in values:
        peak = v if peak is None or v > peak else peak
        if peak > 0:
            worst = max(worst, (peak - v) / peak)
    return worst


def _liquidations(events: list[ChainEvent], token_scale: int) -> list[LiquidationRow]:
    """The Liquidation events; the keeper's reward (token units) scaled to WAD USD."""
    return [
        LiquidationRow(
            e.block, e.timestamp, str(e.args["owner"]), int(e.args["sub"]), str(e.args["keeper"]),
            int(e.args["fraction"]), int(e.args["notional_closed"]), int(e.args["fee"]),
            int(e.args["keeper_reward"]) * token_scale, int(e.args["bad_debt"]),
        )
        for e in events
        if e.name == "Liquidation"
    ]
