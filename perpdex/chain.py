"""Connecting to a network and choosing signers, the same way for every command."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, ContextManager, Iterator

# Chains standing in for Ape's (perpdex.revm_chain.RevmChain), innermost last: while one is in
# use (`using`), move_time, set_clock, reverts and current_chain act on it
_STAND_INS: list[Any] = []

EMBEDDED = "ethereum:local:boa"
EXACT = "ethereum:local:test"
DEVNET = "ethereum:local:foundry"


@contextmanager
def connect(network: str = EMBEDDED, host: str | None = None, manage_process: bool = True) -> Iterator[Any]:
    """Connect Ape to `network` (an Ape network choice) for the duration of the block.
    `manage_process=False`: connect to the node at `host`, never start one (keepers)."""
    from ape import networks

    if network == DEVNET:
        wait_for_blocks()
    settings: dict[str, Any] = {"host": host} if host else {}
    if not manage_process:
        settings["manage_process"] = False
    with networks.parse_network_choice(network, provider_settings=settings) as provider:
        yield provider


def wait_for_blocks() -> None:
    """Make Ape wait for each transaction's block on an Anvil that mines on a clock
    (`perpdex devnet --block-time`). Before every transaction Ape's foundry provider asks the
    node whether it automines (`anvil_getAutomine`) and, when it does not, hands back an unmined
    receipt at once (block -1, no logs, no contract address) for the caller to mine by hand;
    perpdex reads the receipts it sends (deployments, order ids, keepers' logs) and the node
    mines them itself, so here it is treated like a live network: the receipt is waited for.
    On an automining node nothing changes. For this process; calling it again is harmless."""
    from ape_foundry.provider import FoundryProvider

    setter = FoundryProvider.auto_mine.fset  # turning automine on or off still goes to the node
    FoundryProvider.auto_mine = property(lambda self: True, setter)  # type: ignore[method-assign,assignment]


def signer(alias: str | None = None, index: int = 0) -> Any:
    """An Ape account: the named one (`ape accounts` alias), test account N when `alias` is
    a number, or else the index-th test account."""
    from ape import accounts

    if alias and alias.isdigit():
        return accounts.test_accounts[int(alias)]
    if alias:
        return accounts.load(alias)
    return accounts.test_accounts[index]


def test_signers(n: int, start: int = 0) -> list[Any]:
    from ape import accounts

    return [accounts.test_accounts[i] for i in range(start, start + n)]


@contextmanager
def using(chain: Any) -> Iterator[Any]:
    """Make `chain` (a perpdex.revm_chain.RevmChain) the chain of this module's helpers for the block."""
    _STAND_INS.append(chain)
    try:
        yield chain
    finally:
        _STAND_INS.remove(chain)


def current_chain() -> Any:
    """The chain in use: the innermost `using` one, else Ape's."""
    if _STAND_INS:
        return _STAND_INS[-1]
    from ape import chain

    return chain


def reverts(reason: str | None = None) -> ContextManager[Any]:
    """`ape.reverts(reason)` on the chain in use."""
    if _STAND_INS:
        return _STAND_INS[-1].reverts(reason)
    import ape

    return ape.reverts(reason)


def move_time(seconds: int) -> None:
    """Move chain time `seconds` on for every later transaction and view. On Anvil: mine a
    block stamped `seconds` after the head (moving Anvil's clock offset instead would make
    views depend on the wall clock). py-evm mines a block to get there; boa only stamps the
    next transaction with the new time and later ones would go back to its own clock: an
    empty block makes the new time stick. On a stand-in chain: its own `move_time`."""
    if _STAND_INS:
        _STAND_INS[-1].move_time(seconds)
        return
    from ape import chain

    head = chain.blocks.head
    if chain.provider.name == "foundry":
        chain.mine(timestamp=int(head.timestamp) + seconds)
        return
    chain.pending_timestamp += seconds
    if chain.blocks.head.number == head.number:
        chain.mine()


def set_clock(timestamp: int) -> None:
    """Make `timestamp` the time of the next transaction and of the chain's clock from then
    on (it may go back: after a snapshot restore, which the embedded chains do not rewind
    their clock for). On boa the clock is the wall time plus an offset: the offset is set
    (setting `pending_timestamp` would hold for one transaction only). A stand-in chain's
    clock is frozen: its pending timestamp is set."""
    if _STAND_INS:
        _STAND_INS[-1].pending_timestamp = timestamp
        return
    from ape import chain

    provider = chain.provider
    if hasattr(provider, "_timestamp_offset"):  # ape-titanoboa 0.8.0a1
        import ape_titanoboa.provider as boa_provider

        provider._pending_timestamp = None
        provider._execution_timestamp = None
        provider._timestamp_offset = timestamp - int(boa_provider.time.time())
    else:
        chain.pending_timestamp = timestamp


@contextmanager
def frozen_clock() -> Iterator[None]:
    """Stop the embedded chain's clock for the block: every transaction and view then has the
    time the chain already shows until `move_time` moves it, so a run is the same run
    whatever the machine's speed (boa otherwise stamps each transaction with the wall time
    plus an offset: funding over a few milliseconds more, a slightly different result). The
    clock restarts one second after the head. Other providers' clocks are left alone (py-evm
    and Anvil, as the tests set it up, only move when blocks are mined)."""
    from ape import chain

    if not hasattr(chain.provider, "_timestamp_offset"):  # not ape-titanoboa 0.8.0a1
        yield
        return
    import ape_titanoboa.provider as boa_provider

    wall = boa_provider.time
    stopped = int(wall.time())
    boa_provider.time = SimpleNamespace(time=lambda: stopped)
    try:
        set_clock(int(chain.blocks.head.timestamp) + 1)
        yield
    finally:
        boa_provider.time = wall
