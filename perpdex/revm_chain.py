"""The exchange on revm (PyPI `pyrevm`, Rust bindings), Ape-shaped: the fuzz machines' fast backend.

A step of the exchange state machine on Ape + titanoboa's py-evm spends most of its time in the
EVM interpreter and in Ape's per-call machinery. `RevmChain` runs the same bytecode in revm and
hands the machine objects shaped like Ape's, so the machine runs unchanged:

- contracts are compiled once (per source hash, cached in `.build/revm-<hash>.json`) with the
  project's vyper exactly as ape-vyper compiles them (the same compiler, search paths and
  defaults: optimize gas unless a source pragma says otherwise, vyper's default EVM version,
  prague: `compiled()` gives the same bytecode as Ape's build), run on revm's Cancun (the same
  bytecode as for prague: see SPEC) and deployed with `RevmProject`,
  which `perpdex.deploy.deploy_from` uses like Ape's project (`project.MarginVault.deploy(...)`);
- `RevmContract` exposes each ABI function as a method: views return decoded values (structs
  as named tuples: attribute access like Ape's structs), mutating calls take `sender=` and
  return a `Receipt` (`return_value`, raw `logs`, `decode_logs(contract.Event)`, `timestamp`);
  a revert raises `RevmRevert` (an Ape `ContractLogicError`, with the `Error(string)` reason
  as its message) and `RevmChain.reverts(reason)` checks one like `ape.reverts`;
- the clock is frozen like the tests' embedded chain: every transaction runs in its own
  block (the oracle's jump limit is per block) at the same timestamp, and time moves only in
  `move_time`/`mine`; `snapshot()`/`restore()` rewind state, block number and clock
  (journal checkpoints: restoring one uses it up and releases the journal above it, so a long
  run that snapshots and restores once per example keeps the journal bounded);
- `perpdex.chain.using(chain)` makes perpdex's module-level helpers (`move_time`, `set_clock`,
  `reverts`, `current_chain`) act on this chain instead of Ape's.
"""

from __future__ import annotations

import hashlib
import json
import re
import site
from collections import namedtuple
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

from ape.exceptions import ContractLogicError
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from ethpm_types import ContractType
from ethpm_types.abi import ABIType, EventABI, MethodABI

from perpdex.abi_static import Codec
from perpdex.logs import Layout

ROOT = Path(__file__).resolve().parent.parent
# The contracts are compiled for vyper's default EVM version, prague (ape-vyper sets none), which
# emits the same bytecode for them as cancun. pyrevm 0.3.7's revm knows forks up to Cancun (MCOPY,
# transient storage) and takes spec names title-cased: an unknown name silently means "Latest".
SPEC = "Cancun"
SOURCES = {
    "MockUSD": "contracts/mocks/MockUSD.vy",
    "PriceOracle": "contracts/PriceOracle.vy",
    "MarginVault": "contracts/MarginVault.vy",
    "VaultExtension": "contracts/VaultExtension.vy",
    "LiquidationKeeper": "contracts/LiquidationKeeper.vy",
    "OrderRouter": "contracts/OrderRouter.vy",
    "VaultLens": "contracts/VaultLens.vy",
    "Governance": "contracts/Governance.vy",
}
# Ape's test accounts (the default test mnemonic, "test ... junk", m/44'/60'/0'/0/i): the
# same owners on both backends, so a failure's addresses read the same when replayed on Ape
TEST_ADDRESSES = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65", "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9", "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f", "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
    "0xBcd4042DE499D14e55001CcbB24a551F3b954096", "0x71bE63f3384f5fb98995898A86B02Fb2426c5788",
)
START_TIME = 1_700_000_000
GAS = 30_000_000  # per transaction or call (a block's worth; no test comes near it)
ERROR_SELECTOR = function_signature_to_4byte_selector("Error(string)")
_REVERT_OUTPUT = re.compile(r"output: 0x([0-9a-fA-F]*)")


# ---------------------------------------------------------------------- compiling


@dataclass(frozen=True)
class Compiled:
    abi: list[dict[str, Any]]
    bytecode: bytes


def _search_paths(root: Path) -> list[Path]:
    """What ape-vyper passes to vyper: the environment's site-packages (snekmate), then the project."""
    return [Path(p) for p in site.getsitepackages()] + [root]


@lru_cache(maxsize=4)
def compiled(root: Path = ROOT) -> dict[str, Compiled]:
    """ABI and deployment bytecode of every deployable under `root` (vyper with its defaults,
    as ape-vyper compiles them), cached on disk by the hash of all sources and the compiler."""
    import vyper
    from vyper.compiler.input_bundle import FilesystemInputBundle

    sources = sorted((root / "contracts").rglob("*.vy*"))
    digest = hashlib.sha256(vyper.__version__.encode())
    for path in sources:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    cache = root / ".build" / f"revm-{digest.hexdigest()[:16]}.json"
    if cache.exists():
        data = json.loads(cache.read_text())
    else:
        bundle = FilesystemInputBundle(_search_paths(root))
        data = {}
        for name, rel in SOURCES.items():
            out = vyper.compile_code((root / rel).read_text(), contract_path=rel, input_bundle=bundle,
                                     output_formats=["abi", "bytecode"])
            data[name] = {"abi": out["abi"], "bytecode": out["bytecode"]}
        cache.parent.mkdir(exist_ok=True)
        cache.write_text(json.dumps(data))
    return {name: Compiled(d["abi"], bytes.fromhex(d["bytecode"].removeprefix("0x"))) for name, d in data.items()}


# ---------------------------------------------------------------------- values in and out


def _to_abi(value: Any) -> Any:
    """Accounts and contracts to their address; lists and tuples element-wise."""
    if hasattr(value, "address"):
        return value.address
    if isinstance(value, (list, tuple)):
        return type(value)(_to_abi(v) for v in value) if not hasattr(value, "_fields") else tuple(map(_to_abi, value))
    return value


def _struct_type(abi_type: ABIType) -> Any:
    return namedtuple(abi_type.internal_type.split(".")[-1] if abi_type.internal_type else "Struct",
                      [c.name for c in abi_type.components or []], rename=True)


def _shape(abi_type: ABIType, value: Any) -> Any:
    """A decoded value as Ape hands it out: structs (ABI tuples) as named tuples, addresses
    checksummed, dynamic arrays as lists."""
    if abi_type.components and abi_type.type == "tuple":
        return _struct_type(abi_type)(*(_shape(c, v) for c, v in zip(abi_type.components, value)))
    if abi_type.type == "address":
        return to_checksum_address(value)
    if abi_type.type == "address[]":
        return [to_checksum_address(v) for v in value]
    if abi_type.type.endswith("[]"):
        return list(value)
    return value


class RevmRevert(ContractLogicError):
    """A reverted transaction or call; the message is the `Error(string)` reason, when there is one."""

    def __init__(self, reason: str | None, data: bytes = b"") -> None:
        super().__init__(reason or "Transaction failed.", set_ape_traceback=False)
        self.reason, self.data = reason, data


def revert_reason(data: bytes) -> str | None:
    """The `Error(string)` reason in revert data, or None (no data, a custom error, a panic)."""
    if data[:4] != ERROR_SELECTOR:
        return None
    return str(abi_decode(["string"], data[4:])[0])


def _revert_from(err: RuntimeError) -> RevmRevert:
    """pyrevm reports a revert as RuntimeError('Revert { gas_used: N, output: 0x... }'), a halt
    (out of gas, an invalid opcode) as 'Halt { reason: ... }': no reason then."""
    found = _REVERT_OUTPUT.search(str(err))
    data = bytes.fromhex(found.group(1)) if found else b""
    return RevmRevert(revert_reason(data), data)


# ---------------------------------------------------------------------- receipts and events


class EventArgs(dict):  # type: ignore[type-arg]
    """A decoded event, as Ape's ContractLog reads: `ev.owner` and `ev["owner"]`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class RevmEvent:
    """`contract.EventName`: what `Receipt.decode_logs` filters and decodes by."""

    address: str
    abi: EventABI

    @cached_property
    def topic(self) -> bytes:
        return keccak(text=self.abi.selector)

    @cached_property
    def layout(self) -> Layout:
        return Layout.of(self.abi)


@dataclass
class Receipt:
    """What a transaction left, shaped like the parts of Ape's receipt the tests read."""

    txn_hash: str
    block_number: int
    timestamp: int
    return_value: Any
    logs: list[dict[str, Any]] = field(default_factory=list)  # raw: address, topics (bytes), data (bytes)

    def decode_logs(self, event: RevmEvent) -> list[EventArgs]:
        address = event.address.lower()
        return [EventArgs(event.layout.decode(log["topics"], log["data"])) for log in self.logs
                if log["topics"] and log["topics"][0] == event.topic and log["address"].lower() == address]


# ---------------------------------------------------------------------- contracts


@dataclass(frozen=True)
class RevmAccount:
    """A test account: `.address`, and `str()` the checksummed address, as Ape's."""

    address: str

    def __str__(self) -> str:
        return self.address


class RevmMethod:
    """One ABI function name (its overloads told apart by argument count)."""

    def __init__(self, contract: "RevmContract", abis: list[MethodABI]) -> None:
        self.contract = contract
        self.by_arity = {len(a.inputs): _Encoded.of(a) for a in abis}

    def __call__(self, *args: Any, sender: Any = None) -> Any:
        try:
            method = self.by_arity[len(args)]
        except KeyError:
            raise TypeError(f"{self.contract.name}: no overload with {len(args)} arguments") from None
        data = method.calldata(args)
        chain = self.contract.chain
        if method.view:
            return method.result(chain.call(self.contract.address, data))
        if sender is None:
            raise TypeError(f"{self.contract.name}.{method.abi.name}: a transaction needs sender=")
        output, receipt = chain.transact(sender, self.contract.address, data)
        receipt.return_value = method.result(output)
        return receipt


@dataclass(frozen=True)
class _Encoded:
    abi: MethodABI
    selector: bytes
    inputs: Codec
    outputs: Codec
    view: bool

    @classmethod
    def of(cls, abi: MethodABI) -> "_Encoded":
        return cls(abi, function_signature_to_4byte_selector(abi.selector),
                   Codec([i.canonical_type for i in abi.inputs]), Codec([o.canonical_type for o in abi.outputs]),
                   abi.stateMutability in ("view", "pure"))

    def calldata(self, args: Sequence[Any]) -> bytes:
        return self.selector + self.inputs.encode([_to_abi(a) for a in args])

    def result(self, output: bytes) -> Any:
        if not self.outputs.types:
            return None
        values = [_shape(t, v) for t, v in zip(self.abi.outputs, self.outputs.decode(output))]
        return values[0] if len(values) == 1 else tuple(values)


class RevmContract:
    """A deployed contract: `contract.fn(*args)` for views, `contract.fn(*args, sender=a)` for
    transactions, `contract.Event` for `Receipt.decode_logs`; `contract_type` is the ethpm
    ContractType, as Ape's contract instances have (perpdex.logs decodes events with it)."""

    def __init__(self, chain: "RevmChain", name: str, address: str, contract_type: ContractType) -> None:
        self.chain, self.name, self.contract_type = chain, name, contract_type
        self.address = to_checksum_address(address)
        self._members: dict[str, Any] = {}

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        member = self._members.get(attr)
        if member is None:
            member = self._members[attr] = self._member(attr)
        return member

    def _member(self, attr: str) -> Any:
        abis = [a for a in self.contract_type.abi if isinstance(a, MethodABI) and a.name == attr]
        if abis:
            return RevmMethod(self, abis)
        events = [a for a in self.contract_type.abi if isinstance(a, EventABI) and a.name == attr]
        if events:
            return RevmEvent(self.address, events[0])
        raise AttributeError(f"{self.name} has no function or event {attr!r}")

    def __str__(self) -> str:
        return self.address

    def __repr__(self) -> str:
        return f"<{self.name} {self.address}>"


class RevmContainer:
    """`project.Name`: `deploy(*args, sender=)` and `at(address)`, as Ape's ContractContainer."""

    def __init__(self, chain: "RevmChain", name: str, code: Compiled) -> None:
        self.chain, self.name, self.code = chain, name, code
        self.contract_type = ContractType.model_validate({"abi": code.abi, "contractName": name})

    def with_contract_type(self, contract_type: ContractType) -> "RevmContainer":
        """The same code under another ABI (perpdex.deploy.vault_container)."""
        other = RevmContainer(self.chain, self.name, self.code)
        other.contract_type = contract_type
        return other

    def deploy(self, *args: Any, sender: Any) -> RevmContract:
        ctor = self.contract_type.constructor
        types = [i.canonical_type for i in ctor.inputs] if ctor else []
        address = self.chain.deploy(sender, self.code.bytecode + abi_encode(types, [_to_abi(a) for a in args]))
        return self.at(address)

    def at(self, address: str) -> RevmContract:
        return RevmContract(self.chain, self.name, address, self.contract_type)


class RevmProject:
    """The project's deployables on one chain: `project.MarginVault.deploy(...)`."""

    def __init__(self, chain: "RevmChain", root: Path = ROOT) -> None:
        self._containers = {name: RevmContainer(chain, name, code) for name, code in compiled(root).items()}

    def __getattr__(self, name: str) -> RevmContainer:
        try:
            return self._containers[name]
        except KeyError:
            raise AttributeError(name) from None


# ---------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class Block:
    number: int
    timestamp: int


class RevmChain:
    """One revm EVM with a frozen clock, snapshots and Ape's test accounts (see the module doc)."""

    def __init__(self, n_accounts: int = len(TEST_ADDRESSES), start_time: int = START_TIME, spec: str = SPEC) -> None:
        import pyrevm

        self._pyrevm = pyrevm
        self.evm = pyrevm.EVM(spec_id=spec, tracing=False)
        self.accounts = [RevmAccount(a) for a in TEST_ADDRESSES[:n_accounts]]
        for account in self.accounts:
            self.evm.set_balance(account.address, 10**24)
        self.number, self.timestamp = 0, start_time  # the head block
        self._set_block_env()
        self._snapshots: list[tuple[Any, int, int]] = []  # (journal checkpoint, head number, clock)
        self._tx_count = 0
        self.provider = SimpleNamespace(name="revm")  # perpdex.checks asks the provider's name

    # ---- blocks and time (the pending block: number head + 1, stamped with the frozen clock)
    def _set_block_env(self) -> None:
        self.evm.set_block_env(self._pyrevm.BlockEnv(number=self.number + 1, timestamp=self.timestamp))

    @property
    def blocks(self) -> Any:
        return SimpleNamespace(head=Block(self.number, self.timestamp))

    @property
    def pending_timestamp(self) -> int:
        return self.timestamp

    @pending_timestamp.setter
    def pending_timestamp(self, timestamp: int) -> None:
        self.timestamp = int(timestamp)
        self._set_block_env()

    def mine(self, timestamp: int | None = None) -> None:
        """An empty block (at `timestamp`, else now): later transactions and views keep its time."""
        self.number += 1
        if timestamp is not None:
            self.timestamp = int(timestamp)
        self._set_block_env()

    def move_time(self, seconds: int) -> None:
        self.mine(self.timestamp + int(seconds))

    # ---- snapshots
    def snapshot(self) -> int:
        self._snapshots.append((self.evm.snapshot(), self.number, self.timestamp))
        return len(self._snapshots) - 1

    def restore(self, snapshot_id: int) -> None:
        """Back to `snapshot_id` (state, block number and clock). The snapshot and those after
        it are used up (as Anvil's evm_revert): the journal above it is released, so a machine
        that snapshots and restores once per example keeps it bounded however long it runs."""
        checkpoint, self.number, self.timestamp = self._snapshots[snapshot_id]
        del self._snapshots[snapshot_id:]
        self.evm.revert(checkpoint)
        self._set_block_env()

    # ---- executing
    def deploy(self, sender: Any, code: bytes) -> str:
        try:
            address = self.evm.deploy(_to_abi(sender), code, gas=GAS)
        except RuntimeError as err:
            raise _revert_from(err) from None
        self._end_transaction()
        return to_checksum_address(address)

    def call(self, to: str, data: bytes) -> bytes:
        """A view: executed in the pending block, nothing kept."""
        try:
            return bytes(self.evm.message_call(TEST_ADDRESSES[0], to, data, gas=GAS, is_static=True))
        except RuntimeError as err:
            raise _revert_from(err) from None

    def transact(self, sender: Any, to: str, data: bytes) -> tuple[bytes, Receipt]:
        """One transaction in its own block (at the frozen clock): its output and receipt."""
        try:
            output = bytes(self.evm.message_call(_to_abi(sender), to, data, gas=GAS))
        except RuntimeError as err:
            self.evm.reset_transient_storage()
            raise _revert_from(err) from None
        result = self.evm.result
        logs = [{"address": log.address, "topics": list(log.data[0]), "data": bytes(log.data[1])}
                for log in (result.logs if result is not None else [])]
        self._tx_count += 1
        receipt = Receipt(txn_hash="0x" + keccak(self._tx_count.to_bytes(32, "big")).hex(),
                          block_number=self.number + 1, timestamp=self.timestamp, return_value=None, logs=logs)
        self._end_transaction()
        return output, receipt

    def _end_transaction(self) -> None:
        self.evm.reset_transient_storage()  # transient storage lives for one transaction (EIP-1153)
        self.number += 1
        self._set_block_env()

    @contextmanager
    def reverts(self, reason: str | None = None) -> Iterator[None]:
        """Like `ape.reverts(reason)`: the block must revert, with exactly `reason` when given."""
        try:
            yield
        except RevmRevert as exc:
            if reason is not None and exc.reason != reason:
                raise AssertionError(f"expected revert {reason!r}, got {exc.reason!r}") from exc
            return
        raise AssertionError(f"expected revert {reason!r}, but nothing reverted")
