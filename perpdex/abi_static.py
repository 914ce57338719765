"""ABI encoding and decoding of argument lists, fast for static types.

On revm a fuzz step's EVM work is cheap and eth_abi's general codec (a registry lookup,
validation and a stream per value) took more than half of the step: about 90 us a call, for
calls whose arguments and results are a few 32-byte words. `Codec(types)` encodes and decodes a
list of ABI types the way eth_abi 5 does (addresses in lower case, bools, signed ints, structs as
tuples, dynamic arrays as tuples); when every type is static (scalars and tuples of them) or a
dynamic array of static scalars it slices words itself, else it hands the list to eth_abi
(strings, bytes, arrays of tuples). tests/fuzz/test_revm_backend.py checks it against eth_abi.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

Decoder = Callable[[bytes, int], tuple[Any, int]]  # (data, offset) -> (value, next offset)
Encoder = Callable[[Any], bytes]


def split_types(types: str) -> list[str]:
    """The top-level members of a tuple type's inside: "uint256,(int256,bool)" -> 2 members."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(types):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(types[start:i])
            start = i + 1
    out.append(types[start:])
    return [t for t in out if t]


def _scalar(kind: str) -> tuple[Decoder, Encoder] | None:
    """Word decoder and encoder of a static scalar type, or None (arrays, strings, bytes)."""
    if "[" in kind:
        return None
    if kind.startswith("uint"):
        return (lambda d, o: (int.from_bytes(d[o:o + 32], "big"), o + 32)), (lambda v: int(v).to_bytes(32, "big"))
    if kind.startswith("int"):
        return ((lambda d, o: (int.from_bytes(d[o:o + 32], "big", signed=True), o + 32)),
                (lambda v: int(v).to_bytes(32, "big", signed=True)))
    if kind == "address":
        return ((lambda d, o: ("0x" + d[o + 12:o + 32].hex(), o + 32)),
                (lambda v: bytes.fromhex(str(getattr(v, "address", v))[2:]).rjust(32, b"\0")))
    if kind == "bool":
        return (lambda d, o: (d[o + 31] == 1, o + 32)), (lambda v: (1 if v else 0).to_bytes(32, "big"))
    if kind == "bytes32":
        return (lambda d, o: (bytes(d[o:o + 32]), o + 32)), (lambda v: bytes(v).ljust(32, b"\0"))
    return None


def _static(kind: str) -> tuple[Decoder, Encoder] | None:
    """Decoder and encoder of a static type (a scalar or a tuple of static types), or None."""
    if kind.startswith("(") and kind.endswith(")"):
        parts = [_static(t) for t in split_types(kind[1:-1])]
        if any(p is None for p in parts):
            return None
        decoders = [p[0] for p in parts if p is not None]
        encoders = [p[1] for p in parts if p is not None]

        def decode_tuple(data: bytes, offset: int) -> tuple[Any, int]:
            values = []
            for dec in decoders:
                value, offset = dec(data, offset)
                values.append(value)
            return tuple(values), offset

        return decode_tuple, lambda v: b"".join(enc(x) for enc, x in zip(encoders, v, strict=True))
    return _scalar(kind)


def _array(kind: str) -> tuple[Decoder, Encoder] | None:
    """Decoder and encoder of a dynamic array of static scalars ("uint256[]", "address[]"):
    the tail part (length, then the elements), or None."""
    if not kind.endswith("[]") or (element := _scalar(kind[:-2])) is None:
        return None
    dec, enc = element

    def decode_array(data: bytes, offset: int) -> tuple[Any, int]:
        n = int.from_bytes(data[offset:offset + 32], "big")
        if len(data) < offset + 32 * (n + 1):
            raise ValueError(f"{len(data)} bytes: too short for {n} elements of {kind}")
        return tuple(dec(data, offset + 32 * (i + 1))[0] for i in range(n)), offset + 32 * (n + 1)

    return decode_array, lambda v: len(v).to_bytes(32, "big") + b"".join(enc(x) for x in v)


class Codec:
    """Encode and decode one list of canonical ABI types (as eth_abi.encode / decode): by hand
    when each is static or a dynamic array of static scalars, else with eth_abi."""

    def __init__(self, types: Sequence[str]) -> None:
        self.types = list(types)
        self._parts: list[tuple[bool, Decoder, Encoder]] = []  # (dynamic, decoder, encoder)
        for t in self.types:
            static, dynamic = _static(t), _array(t)
            if static is not None:
                self._parts.append((False, *static))
            elif dynamic is not None:
                self._parts.append((True, *dynamic))
        self.by_hand = len(self._parts) == len(self.types)
        # the head: one word per static scalar, one offset word per dynamic array
        self._head = sum(32 if dynamic else 32 * (1 + t.count(",")) for t, (dynamic, _, _) in
                         zip(self.types, self._parts)) if self.by_hand else 0

    def encode(self, values: Sequence[Any]) -> bytes:
        if not self.by_hand:
            return abi_encode(self.types, list(values))
        head, tail = [], []
        for (dynamic, _, enc), value in zip(self._parts, values, strict=True):
            if dynamic:
                head.append((self._head + sum(map(len, tail))).to_bytes(32, "big"))
                tail.append(enc(value))
            else:
                head.append(enc(value))
        return b"".join(head + tail)

    def decode(self, data: bytes) -> tuple[Any, ...]:
        if not self.by_hand:
            return tuple(abi_decode(self.types, data))
        if len(data) < self._head:
            raise ValueError(f"{len(data)} bytes of return data for {self.types} (needs {self._head})")
        out, offset = [], 0
        for dynamic, dec, _ in self._parts:
            if dynamic:
                out.append(dec(data, int.from_bytes(data[offset:offset + 32], "big"))[0])
                offset += 32
            else:
                value, offset = dec(data, offset)
                out.append(value)
        return tuple(out)
