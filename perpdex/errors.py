"""User errors of the command line: one line that says what is wrong and how to fix it,
exit code 2, never a traceback (`perpdex --debug ...` shows it).

`explain` turns the exceptions a user's mistake raises deep inside Ape or the contracts
(no devnet listening, an unknown network, a deployment file that is not there, a stale
oracle price, an address that is not one) into that line; anything it does not know is a
bug of ours and keeps its traceback."""

from __future__ import annotations

import re
from typing import Any

import click

USER_ERROR = 2


class UserError(click.ClickException):
    """A mistake in what the user asked for (exit code 2)."""

    exit_code = USER_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


_NO_NODE = re.compile(r"Failed to connect to remote Anvil node at '([^']+)'")
_STALE = ("oracle: price stale", "oracle: stale price")


def explain(exc: BaseException) -> UserError | None:
    """The one line for a known user error, or None (then it is a bug: keep the traceback)."""
    text = str(exc).strip()
    name = type(exc).__name__
    if match := _NO_NODE.search(text):
        return UserError(f"no devnet at {match.group(1)}: start one with `perpdex devnet` (or give the right --port)")
    if name in ("NetworkNotFoundError", "EcosystemNotFoundError", "ProviderNotFoundError"):
        first = text.split(". Options:")[0].split("\n")[0]
        return UserError(f"{first} (a network choice looks like ethereum:local:boa or ethereum:local:foundry)")
    if isinstance(exc, FileNotFoundError) and "perpdex devnet" in text:
        return UserError(text)
    if any(reason in text for reason in _STALE):
        return UserError(
            f"{_first_line(text)}: the oracle's last price is older than its max_price_age; "
            "start the price feeder (`perpdex keeper feeder`, or `perpdex devnet` starts one)"
        )
    if name == "ConversionError" and "address" in text.lower():
        return UserError(f"not an address: {_first_line(text)}")
    return None


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text


def address(value: str | None) -> str | None:
    """A --owner / --to value: a 0x address of 20 bytes (checksummed or not)."""
    if value is None:
        return None
    from eth_utils import is_address, to_checksum_address

    if not is_address(value):
        raise click.BadParameter(f"{value!r} is not an address (0x and 40 hex digits)")
    return to_checksum_address(value)


class Group(click.Group):
    """`perpdex`'s command group: user errors raised anywhere below become one line (see
    `explain`) unless --debug was given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:
            if ctx.meta.get("perpdex.debug"):
                raise
            error = explain(exc)
            if error is None:
                raise
            raise error from None
