"""Fast chain reads for the exchange state machine (issue 5: fuzz speed).

Ape view calls on the boa provider spend about half their time in Ape itself (building and
validating a transaction model, pydantic settings, return-data decoding) and half executing
EVM code. `FastChain` keeps the EVM half only: calldata is built from pre-computed selectors
(perpdex.abi_static: eth_abi's encoding, sliced by hand for static types), executed with titanoboa's `Env.execute_code(..., is_modifying=False)` (exactly
what ape-titanoboa's `send_call` runs, so block number and timestamp are the same), and the
return data decoded with eth_abi. On a RevmChain in use (perpdex.chain.using: the fuzz
machines' revm backend) the calldata goes to `RevmChain.call`; on any other provider through
`provider.send_call` (what Ape's own view calls use), so results are identical everywhere.

`FastChain.state(...)` returns every number the machine's `_compare` reads as a plain nested
dict; `model_state(...)` builds the same dict from a `perpdex.model.VaultModel`, so that
`assert chain.state(...) == model_state(...)` shows a readable pytest diff.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any, Mapping, Sequence

from eth_utils import function_signature_to_4byte_selector

from perpdex.abi_static import Codec
from perpdex.chain import current_chain
from perpdex.model import VaultModel
from perpdex.sdk import Exchange

State = dict[str, Any]


@dataclass(frozen=True)
class _Method:
    selector: bytes
    inputs: Codec
    outputs: Codec

    def calldata(self, args: Sequence[Any]) -> bytes:
        return self.selector + self.inputs.encode([_address(a) for a in args])

    def result(self, output: bytes) -> Any:
        values = self.outputs.decode(output)
        return values[0] if len(values) == 1 else values


def _address(value: Any) -> Any:
    """Ape accounts and contracts to their checksum address; everything else unchanged."""
    return getattr(value, "address", value)


def _method(contract: Any, name: str) -> _Method:
    abi = contract.contract_type.view_methods[name]
    return _Method(
        selector=function_signature_to_4byte_selector(abi.selector),
        inputs=Codec([i.canonical_type for i in abi.inputs]),
        outputs=Codec([o.canonical_type for o in abi.outputs]),
    )


class FastChain:
    """View calls on one deployment without Ape's per-call overhead (on boa and revm)."""

    def __init__(self, x: Exchange) -> None:
        chain = current_chain()
        self.x, self.provider = x, chain.provider
        self.revm = chain if self.provider.name == "revm" else None
        self.env = getattr(self.provider, "env", None) if self.provider.name == "boa" else None
        self.gas = 0 if self.revm else int(self.provider.max_gas)
        self._methods: dict[tuple[str, str], _Method] = {}

    @property
    def fast(self) -> bool:
        """True when reads bypass Ape (the boa provider, or revm)."""
        return self.env is not None or self.revm is not None

    def call(self, contract: Any, fn_name: str, *args: Any) -> Any:
        """`contract.fn_name(*args)` as plain Python: ints, bools, addresses, tuples for structs
        and multiple returns, lists for dynamic arrays. Reverts raise like Ape's do."""
        key = (contract.address, fn_name)
        method = self._methods.get(key)
        if method is None:
            method = self._methods[key] = _method(contract, fn_name)
        return method.result(self._execute(contract.address, method.calldata(args)))

    def _execute(self, address: str, data: bytes) -> bytes:
        if self.revm is not None:
            return self.revm.call(address, data)
        if self.env is None:
            txn = self.provider.network.ecosystem.create_transaction(receiver=address, data=data)
            return bytes(self.provider.send_call(txn))
        computation = self.env.execute_code(to_address=address, data=data, gas=self.gas, is_modifying=False)
        try:
            computation.raise_if_error()
        except Exception as err:  # boa's Revert, mapped to Ape's ContractLogicError as Ape does
            raise self.provider.get_virtual_machine_error(err) from err
        return bytes(computation.output)

    def head_timestamp(self) -> int:
        if self.revm is not None:
            return int(self.revm.blocks.head.timestamp)
        if self.env is not None:  # ape-titanoboa stamps the EVM with the head block's time
            return int(self.env.evm.patch.timestamp)
        from ape import chain

        return int(chain.blocks.head.timestamp)

    # ------------------------------------------------------------------ the machine's view

    def state(self, traders: Sequence[Any], subs: Sequence[int], markets: Sequence[int], lps: Sequence[Any],
              keepers: Mapping[Any, int]) -> State:
        """Every number the exchange machine compares with its model. `keepers` maps a keeper
        account to its token balance at the start (the state reports what it was paid since)."""
        v, usd = self.x.vault, self.x.d.usd
        return {
            "time": self.head_timestamp(),
            "markets": {mk: self._market(mk) for mk in markets},
            "pool": {
                "balance": self.call(v, "pool_balance"),
                "value": self.call(v, "pool_value"),
                "insurance_fund": self.call(v, "insurance_fund"),
                "total_lp_shares": self.call(v, "total_lp_shares"),
                "paused": self.call(v, "paused"),
                "unpaid_losses": self.call(v, "unpaid_losses"),
                "loss_window": self.call(v, "loss_window"),
            },
            "lp_shares": [self.call(v, "lp_shares", lp) for lp in lps],
            "accounts": {(w, s): self._account(owner, s) for w, owner in enumerate(traders) for s in subs},
            "keeper_paid": [self.call(usd, "balanceOf", k) - start for k, start in keepers.items()],
        }

    def _market(self, mk: int) -> State:
        v = self.x.vault
        return {
            "price": self.call(self.x.d.oracle, "latest", mk)[0],
            "state": self.call(v, "market_state", mk),
            "funding": self.call(v, "funding", mk),
            "paused": self.call(v, "market_paused", mk),
            "adl": [self.call(v, "adl_pending", mk, side) for side in (0, 1)],
        }

    def _account(self, owner: Any, sub: int) -> State:
        v = self.x.vault
        markets = list(self.call(self.x.d.lens, "open_markets", owner, sub))
        return {
            "open_markets": markets,
            "health": self.call(v, "account_health", owner, sub),
            "withdrawable": self.call(v, "withdrawable", owner, sub),
            "positions": {mk: self.call(v, "position", owner, sub, mk) for mk in markets},
        }


def model_state(m: VaultModel, traders: Sequence[str], subs: Sequence[int], markets: Sequence[int],
                lps: Sequence[str], keepers: Sequence[str]) -> State:
    """The same dict as `FastChain.state` from the reference model (accounts by name)."""
    return {
        "time": m.now,
        "markets": {mk: _model_market(m, mk) for mk in markets},
        "pool": {
            "balance": m.pool_balance,
            "value": m.pool_value(),
            "insurance_fund": m.insurance_fund,
            "total_lp_shares": m.total_lp_shares,
            "paused": m.paused,
            "unpaid_losses": m.unpaid_losses,
            "loss_window": (m.loss_window_start, m.loss_budget),
        },
        "lp_shares": [m.lp_shares.get(lp, 0) for lp in lps],
        "accounts": {(w, s): _model_account(m, name, s) for w, name in enumerate(traders) for s in subs},
        "keeper_paid": [m.keeper_paid.get(k, 0) for k in keepers],
    }


def _model_market(m: VaultModel, mk: int) -> State:
    st = m.markets[mk]
    return {
        "price": m.prices[mk],
        "state": (st.oi_long, st.oi_short, st.entry_sum, st.funding_sum, st.funding_rate, st.funding_index,
                  st.last_funding_time, st.long_entry_sum),
        "funding": m.funding_now(mk),
        "paused": st.paused,
        "adl": [m.adl_pending(mk, side) for side in (0, 1)],
    }


def _model_account(m: VaultModel, name: str, sub: int) -> State:
    markets = m.open_markets(name, sub)
    return {
        "open_markets": markets,
        "health": astuple(m.health(name, sub)),
        "withdrawable": m.withdrawable(name, sub),
        "positions": {mk: astuple(m.position(name, sub, mk)) for mk in markets},
    }
