"""The fuzz machines' revm backend (perpdex.revm_chain) against Ape + titanoboa: one scripted
sequence (deposits, trades committed and settled, a price round, time and funding, a
liquidation, reverts with reasons, a snapshot restored) gives the same reads, events and revert
reasons on both. Also: revm runs the bytecode Ape built, and perpdex.abi_static encodes and
decodes as eth_abi does."""

from __future__ import annotations

from typing import Any, Callable

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from ethpm_types import ContractType

from perpdex.abi_static import Codec, split_types
from perpdex.chain import current_chain, move_time, reverts, set_clock, using
from perpdex.deploy import deploy_from
from perpdex.logs import EventDecoder
from perpdex.model import WAD
from perpdex.revm_chain import SOURCES, TEST_ADDRESSES, RevmChain, RevmProject, compiled
from perpdex.sdk import MAX_UINT256, Exchange, liquidation_price_of, price_steps

from fastchain import FastChain  # tests/fuzz is on sys.path

TOKEN = 10**6
ETH, BTC = 0, 1
POOL_USD = 1_000_000  # the routed deployment's LP liquidity (tests/conftest.py)
# both chains are put on this clock first: the stored times the sequence reads then agree
# (the Ape session's deployment and the revm one were made at different times)
START = 2_000_000_000


def _normalize(value: Any, names: dict[str, str]) -> Any:
    """Contract addresses (which differ: Ape's session deployed more first) to their role."""
    if isinstance(value, str):
        return names.get(value.lower(), value)
    if isinstance(value, dict):
        return {k: _normalize(v, names) for k, v in value.items()}
    if isinstance(value, tuple) and value and value[0] in ("events", "reverted"):  # a tagged entry
        return (value[0], _normalize(value[1], names))
    if isinstance(value, (list, tuple)):
        return [_normalize(v, names) for v in value]
    return value


class Trace:
    """What a sequence saw: reads, every event of ours, revert reasons; in order."""

    def __init__(self, x: Exchange, accounts: list[Any]) -> None:
        self.x, self.a, self.entries = x, accounts, []
        self.names = {a.lower(): role for role, a in x.d.addresses().items()}
        self.decoder = EventDecoder([x.d.usd, x.d.oracle, x.vault, x.d.keeper, x.d.router])

    def add(self, label: str, value: Any) -> None:
        self.entries.append((label, _normalize(value, self.names)))

    def send(self, label: str, receipt: Any) -> Any:
        """Record every event of ours in `receipt` (name and arguments); return the receipt."""
        self.add(label, ("events", [d for log in receipt.logs if (d := self.decoder.decode(log)) is not None]))
        return receipt

    def refused(self, label: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:  # Ape's ContractLogicError, or RevmRevert (one)
            self.add(label, ("reverted", getattr(exc, "revert_message", str(exc))))
            return
        raise AssertionError(f"{label}: did not revert")

    def read(self, label: str) -> dict[str, Any]:
        a = self.a
        state = FastChain(self.x).state([a[1], a[2]], [0, 1], [ETH, BTC], [a[3]], {a[4]: 0})
        self.add(label, state)
        return state


def sequence(x: Exchange, accounts: list[Any]) -> list[tuple[str, Any]]:
    """The scripted sequence on the chain in use (perpdex.chain.current_chain)."""
    chain, t = current_chain(), Trace(x, accounts)
    admin, trader, trader2, keeper = accounts[0], accounts[1], accounts[2], accounts[4]
    v, router = x.vault, x.d.router
    assert int(chain.pending_timestamp) < START
    set_clock(START)
    x.refresh_prices()  # not recorded: what these accrue depends on when the system was deployed
    for mk in (ETH, BTC):
        v.poke(mk, sender=admin)
    t.read("start")

    for who, usd in ((trader, 1_000), (trader2, 20_000)):
        x.fund(who, 100 * TOKEN)  # the settlement rewards
        t.send(f"deposit {usd}", x.deposit(who, usd * TOKEN))
    orders = [x.order_id(t.send("commit long ETH", router.commit_order(0, ETH, 5 * WAD, MAX_UINT256, sender=trader))),
              x.order_id(t.send("commit short BTC", router.commit_order(0, BTC, -WAD, 0, sender=trader2)))]
    t.send("price round", x.next_round())
    for order_id in orders:
        t.send(f"settle {order_id}", router.settle(order_id, sender=admin))
    t.read("after the trades")

    move_time(8 * 3600)
    t.send("price round after 8 h", x.refresh_prices())
    t.send("poke after 8 h", v.poke(ETH, sender=admin))
    t.add("funding", [v.funding(ETH), v.funding(BTC), x.d.lens.funding_rate(ETH)])
    t.read("after funding")

    target = liquidation_price_of(x, trader, 0, ETH)
    assert target is not None
    for price in price_steps(x.price(ETH), target * 9_990 // 10_000, int(x.d.oracle.max_price_jump())):
        move_time(1)
        t.send(f"ETH at {price}", x.set_price(ETH, price))
    t.send("BTC fresh again", x.refresh_prices())
    assert v.is_liquidatable(trader, 0)
    t.send("liquidate", x.d.keeper.liquidate(trader, 0, sender=keeper))
    t.read("after the liquidation")

    t.refused("withdraw too much", lambda: v.withdraw(0, 10**6 * TOKEN, sender=trader2))
    t.refused("zero deposit", lambda: v.deposit(0, 0, sender=trader2))
    t.refused("liquidate healthy", lambda: x.d.keeper.liquidate(trader2, 0, sender=keeper))
    with reverts("router: zero size"):
        router.commit_order(0, ETH, 0, MAX_UINT256, sender=trader2)

    before = t.read("before the snapshot")
    snapshot = chain.snapshot()
    t.send("deposit in the snapshot", x.deposit(trader2, 5_000 * TOKEN, sub=1))
    t.send("commit in the snapshot", router.commit_order(1, ETH, WAD, MAX_UINT256, sender=trader2))
    assert t.read("inside the snapshot") != before
    chain.restore(snapshot)
    assert t.read("restored") == before
    return t.entries


def test_revm__a_sequence__reads_events_and_reverts_as_on_ape(rx: Exchange, accounts: Any) -> None:
    on_ape = sequence(rx, [accounts[i] for i in range(10)])
    revm = RevmChain()
    with using(revm):
        x = Exchange(deploy_from(RevmProject(revm), revm.accounts[0], governance_delay=0))
        x.add_liquidity(revm.accounts[3], x.tokens(POOL_USD))
        on_revm = sequence(x, revm.accounts)
    names = [label for label, _ in on_ape]
    assert names == [label for label, _ in on_revm]
    for (label, ape_value), (_, revm_value) in zip(on_ape, on_revm):
        assert revm_value == ape_value, label
    events = [name for _, value in on_ape if isinstance(value, tuple) and value[0] == "events" for name, _ in value[1]]
    assert "Liquidation" in events and "OrderSettled" in events and "PositionModified" in events  # it did all that
    reasons = [value[1] for _, value in on_ape if isinstance(value, tuple) and value[0] == "reverted"]
    assert reasons == ["vault: insufficient collateral", "vault: zero amount", "keeper: account healthy"], reasons


def test_revm__accounts_and_bytecode__are_apes(accounts: Any, project: Any) -> None:
    """The same test accounts, and the bytecode Ape's build deploys (the same compiler settings)."""
    assert [a.address for a in RevmChain().accounts] == [accounts[i].address for i in range(len(TEST_ADDRESSES))]
    ours = compiled()
    assert set(ours) == set(SOURCES)
    for name, code in ours.items():
        apes = bytes.fromhex(getattr(project, name).contract_type.deployment_bytecode.bytecode[2:])
        assert without_metadata(code.bytecode) == without_metadata(apes), name


def without_metadata(code: bytes) -> bytes:
    """The code without vyper's CBOR metadata (its last two bytes give its length, those two
    included): the metadata's integrity hash covers every source a contract imports, and Ape
    does not recompile a contract when only a file it imports changed (a stale .build may
    then differ from a fresh compile in that hash alone)."""
    return code[:-int.from_bytes(code[-2:], "big")]


def test_abi_static__encodes_and_decodes_as_eth_abi() -> None:
    """Every method and event of the contracts, through the hand-sliced path where it applies."""
    def sample(kind: str) -> Any:
        """A value of `kind` that uses its top bits (a sign for ints)."""
        if kind.endswith("[]"):
            return (sample(kind[:-2]), sample(kind[:-2]))
        if kind.startswith("("):
            return tuple(sample(k) for k in split_types(kind[1:-1]))
        if kind.startswith(("uint", "int")):
            bits = int(kind.lstrip("uint") or 256)
            return 2 ** (bits - 1) + 7 if kind.startswith("uint") else -(2 ** (bits - 2)) - 3
        return {"address": TEST_ADDRESSES[1].lower(), "bool": True}[kind]

    checked = 0
    for code in compiled().values():
        ct = ContractType.model_validate({"abi": code.abi})
        for abi in [*ct.methods, *ct.events]:
            for types in ([i.canonical_type for i in abi.inputs], [o.canonical_type for o in getattr(abi, "outputs", [])]):
                if any("string" in k or "bytes" in k for k in types):
                    continue
                values = [sample(k) for k in types]
                codec = Codec(types)
                assert codec.by_hand, types
                data = abi_encode(types, values)
                assert codec.encode(values) == data, types
                assert codec.decode(data) == tuple(abi_decode(types, data)), types
                checked += 1
    assert checked > 50
    assert not Codec(["string"]).by_hand and Codec(["string"]).decode(abi_encode(["string"], ["x"])) == ("x",)


def test_revm_chain__snapshots_nest_and_restore_time() -> None:
    """Restoring rewinds state, block and clock; an inner snapshot goes with its outer one."""
    chain = RevmChain()
    with using(chain):
        usd = RevmProject(chain).MockUSD.deploy(sender=chain.accounts[0])
        a = chain.accounts[1]
        outer = chain.snapshot()
        usd.mint(a, 5, sender=a)
        inner = chain.snapshot()
        move_time(100)
        usd.mint(a, 7, sender=a)
        assert (int(usd.balanceOf(a)), chain.pending_timestamp) == (12, chain.blocks.head.timestamp)
        chain.restore(inner)
        assert int(usd.balanceOf(a)) == 5 and chain.pending_timestamp == 1_700_000_000 and inner == 1
        chain.restore(outer)
        assert int(usd.balanceOf(a)) == 0 and chain.snapshot() == outer  # used up: the id is free again
        with reverts("erc20: transfer amount exceeds balance"):
            usd.transfer(chain.accounts[2], 1, sender=a)
        receipt = usd.mint(a, 3, sender=a)
        [ev] = receipt.decode_logs(usd.Transfer)
        assert (ev.receiver, int(ev.value)) == (a.address, 3) and receipt.timestamp == chain.pending_timestamp
