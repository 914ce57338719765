"""Decoding a deployment's event logs from their raw topics and data, with the ABIs of the
contracts we hold (never Ape's address-to-contract cache, which a rolled-back chain can leave
pointing at a contract that no longer lives at that address).

`EventDecoder.decode(log)` is about ten times cheaper than Ape's `receipt.events` and works
on every provider; the report's event log and the SDK's receipt helpers share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address


@dataclass(frozen=True)
class Layout:
    """How to decode one event: its name, its indexed inputs and its data inputs."""

    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, abi type)
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]

    @classmethod
    def of(cls, abi: Any) -> "Layout":
        indexed = tuple((i.name, i.canonical_type) for i in abi.inputs if i.indexed)
        data = [i for i in abi.inputs if not i.indexed]
        return cls(abi.name, indexed, tuple(i.name for i in data), tuple(i.canonical_type for i in data))

    def decode(self, topics: list[Any], data: bytes) -> dict[str, Any]:
        args = {name: topic_value(bytes(topic), kind) for (name, kind), topic in zip(self.indexed, topics[1:])}
        args.update(zip(self.data_names, abi_decode(self.data_types, data)))
        return args


def topic_value(topic: bytes, kind: str) -> Any:
    word = topic.rjust(32, b"\0")
    if kind == "address":
        return to_checksum_address(word[-20:])
    if kind == "bool":
        return word[-1] == 1
    if kind.startswith("int"):
        return int.from_bytes(word, "big", signed=True)
    if kind.startswith("uint"):
        return int.from_bytes(word, "big")
    return "0x" + word.hex()  # hashed dynamic types and bytesN: the raw topic


class EventDecoder:
    """The events of a set of contracts (Ape contract instances), by (address, topic 0)."""

    def __init__(self, contracts: Iterable[Any]) -> None:
        self.layouts = {
            (str(c.address).lower(), keccak(text=abi.selector)): Layout.of(abi)
            for c in contracts
            for abi in c.contract_type.events
        }

    def decode(self, log: Any) -> tuple[str, dict[str, Any]] | None:
        """(event name, arguments) of a raw log, or None when it is none of ours."""
        topics = log["topics"]
        if not topics:
            return None
        layout = self.layouts.get((str(log["address"]).lower(), bytes(topics[0])))
        if layout is None:
            return None
        return layout.name, layout.decode(topics, bytes(log["data"]))

    def named(self, receipt: Any, name: str) -> list[dict[str, Any]]:
        """The arguments of every `name` event of ours in `receipt`, in log order."""
        found = []
        for log in receipt.logs:
            decoded = self.decode(log)
            if decoded is not None and decoded[0] == name:
                found.append(decoded[1])
        return found
