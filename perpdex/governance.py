"""Owner actions through the Governance timelock (contracts/Governance.vy, SPEC 14).

Governance owns the vault, the oracle and the router, so every owner call is an operation:
`schedule` now, `execute` once `get_minimum_delay()` seconds have passed. `Deployment.govern`
(perpdex/deploy.py) is the one way perpdex's tests, scripts and CLI make an owner call:
it schedules and, when the delay is 0, executes at once. The operation's salt is the first
one whose id is unused, so the same call (a pause, the same parameters) can be governed
again and a run stays deterministic (no random salt).

Pending operations are rebuilt from the Governance's events: `CallScheduled` (target,
payload, delay), `CallSalt` (the salt, when not zero), and `CallExecuted` / `Cancelled`,
which end one. `describe` names the target and decodes the call with the ABIs we hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

ZERO32 = b"\0" * 32
DONE = 1  # Governance.get_timestamp(id) of an executed operation (0: unknown or cancelled)


@dataclass(frozen=True)
class Operation:
    """One single-call operation of the timelock: what `execute` needs, and when it may run."""

    id: str  # 0x-prefixed bytes32
    target: str
    payload: bytes
    salt: bytes = ZERO32
    predecessor: bytes = ZERO32
    eta: int = 0  # the timestamp from which it may execute
    scheduled: Any = None  # the schedule receipt, when we sent it
    executed: Any = None  # the execute receipt, once executed by us

    @property
    def receipt(self) -> Any:
        """The execute receipt (with the target's events) once executed, else the schedule's."""
        return self.executed if self.executed is not None else self.scheduled


def _abi_value(value: Any) -> Any:
    """Accounts and contracts to their address, tuples (structs) and lists element-wise."""
    if hasattr(value, "address"):
        return str(value.address)
    if isinstance(value, (list, tuple)):
        return type(value)(_abi_value(v) for v in value) if not hasattr(value, "_fields") else tuple(map(_abi_value, value))
    return value


def _method(contract: Any, name: str, arity: int) -> Any:
    for abi in contract.contract_type.abi:
        if getattr(abi, "type", None) == "function" and abi.name == name and len(abi.inputs) == arity:
            return abi
    raise ValueError(f"{contract_name(contract)} has no function {name} taking {arity} arguments")


def contract_name(contract: Any) -> str:
    return str(getattr(contract.contract_type, "name", None) or getattr(contract, "name", "contract"))


def encode_call(contract: Any, name: str, args: Sequence[Any]) -> bytes:
    """The calldata of `contract.name(*args)` (an Ape or revm contract: both carry `contract_type`)."""
    abi = _method(contract, name, len(args))
    types = [i.canonical_type for i in abi.inputs]
    return function_signature_to_4byte_selector(abi.selector) + abi_encode(types, [_abi_value(a) for a in args])


def operation_id(target: str, payload: bytes, predecessor: bytes = ZERO32, salt: bytes = ZERO32) -> str:
    """Governance.hash_operation(target, 0, payload, predecessor, salt), computed here."""
    encoded = abi_encode(["address", "uint256", "bytes", "bytes32", "bytes32"], [target, 0, payload, predecessor, salt])
    return "0x" + keccak(encoded).hex()


def _as_bytes32(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def schedule(governance: Any, target: Any, payload: bytes, sender: Any, delay: int | None = None) -> Operation:
    """Schedule `payload` on `target` with `delay` seconds (default: the minimum delay), under
    the first unused salt."""
    address = str(target.address if hasattr(target, "address") else target)
    salt_n = 0
    while True:
        salt = salt_n.to_bytes(32, "big")
        op_id = operation_id(address, payload, ZERO32, salt)
        if int(governance.get_timestamp(_as_bytes32(op_id))) == 0:
            break
        salt_n += 1
    if delay is None:
        delay = int(governance.get_minimum_delay())
    receipt = governance.schedule(address, 0, payload, ZERO32, salt, delay, sender=sender)
    eta = int(governance.get_timestamp(_as_bytes32(op_id)))
    return Operation(op_id, to_checksum_address(address), payload, salt, ZERO32, eta, scheduled=receipt)


def execute(governance: Any, op: Operation, sender: Any) -> Operation:
    """Execute a ready operation (reverts "timelock_controller: operation is not ready" before
    its eta, and with the target's own reason when the call fails)."""
    receipt = governance.execute(op.target, 0, op.payload, op.predecessor, op.salt, sender=sender)
    return replace(op, executed=receipt)


def govern(governance: Any, target: Any, name: str, args: Sequence[Any], sender: Any) -> Operation:
    """`target.name(*args)` as its owner: scheduled, and executed at once when the delay is 0."""
    op = schedule(governance, target, encode_call(target, name, args), sender)
    if int(governance.get_minimum_delay()) == 0:
        return execute(governance, op, sender)
    return op


# ---------------------------------------------------------------------- pending operations


def pending_operations(events: Iterable[tuple[str, dict[str, Any]]]) -> list[Operation]:
    """Operations scheduled and neither executed nor cancelled, oldest first, from the
    Governance's events (name, args) in chain order. `eta` is left 0: read it from
    `Governance.get_timestamp(id)` (the chain knows it exactly)."""
    pending: dict[str, Operation] = {}
    for name, args in events:
        op_id = _hex32(args.get("id"))
        if name == "CallScheduled":
            pending[op_id] = Operation(op_id, to_checksum_address(str(args["target"])), bytes(args["payload"]),
                                       predecessor=_raw32(args["predecessor"]))
        elif name == "CallSalt" and op_id in pending:
            pending[op_id] = replace(pending[op_id], salt=_raw32(args["salt"]))
        elif name in ("CallExecuted", "Cancelled"):
            pending.pop(op_id, None)
    return list(pending.values())


def _raw32(value: Any) -> bytes:
    return _as_bytes32(value) if isinstance(value, str) else bytes(value)


def _hex32(value: Any) -> str:
    return "0x" + _raw32(value).hex()


def with_eta(governance: Any, ops: Iterable[Operation]) -> list[Operation]:
    return [replace(op, eta=int(governance.get_timestamp(_as_bytes32(op.id)))) for op in ops]


def describe(op: Operation, contracts: dict[str, Any]) -> tuple[str, str]:
    """(target name, "fn(arg, ...)") of an operation, decoded with the ABI of the contract
    at its target among `contracts` (name -> contract); the raw payload when none matches."""
    for label, contract in contracts.items():
        if contract is not None and str(contract.address).lower() == op.target.lower():
            return label, _decode_call(contract, op.payload)
    return op.target, "0x" + op.payload.hex()


def _decode_call(contract: Any, payload: bytes) -> str:
    for abi in contract.contract_type.abi:
        if getattr(abi, "type", None) != "function":
            continue
        if function_signature_to_4byte_selector(abi.selector) == payload[:4]:
            values = abi_decode([i.canonical_type for i in abi.inputs], payload[4:])
            return f"{abi.name}({', '.join(_show(v) for v in values)})"
    return "0x" + payload.hex()


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:  # eth_abi's addresses are lowercase
        return to_checksum_address(value)
    return str(value)


def when(eta: int, now: int) -> tuple[str, str]:
    """(UTC time, "in 23h 59m" or "ready") of an operation's eta, seen at `now`."""
    utc = datetime.fromtimestamp(eta, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    left = eta - now
    if left <= 0:
        return utc, "ready"
    hours, rest = divmod(left, 3_600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return utc, f"in {hours}h {minutes}m"
    return utc, f"in {minutes}m {seconds}s" if minutes else f"in {seconds}s"
