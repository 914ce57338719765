"""`perpdex dashboard`: a small ASGI app (Starlette, served by uvicorn) over the devnet.

The main thread watches the chain: at each new block it makes a snapshot
(`perpdex.dashboard.Board`) and publishes it; the web app, in a thread of its own, serves
the page (`perpdex/static/`, no CDN: plain HTML, CSS and JS), the newest snapshot as JSON
(`/api/snapshot`) and a stream of them as server-sent events (`/api/stream`), one event per
new block. Ape's connection is only ever used by the main thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

STATIC = Path(__file__).with_name("static")
KEEP_ALIVE = 15.0  # seconds between SSE comments when no block comes (proxies drop idle streams)


class Latest:
    """The newest snapshot as JSON bytes with a version number, shared by the chain loop
    (which publishes) and the web app's streams (which wait for a newer version)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.body = b"null"
        self.closed = False

    def publish(self, snapshot: dict[str, Any]) -> None:
        body = json.dumps(snapshot).encode()  # one line: an SSE data field must not hold a newline
        with self._lock:
            self.version, self.body = self.version + 1, body

    def get(self) -> tuple[int, bytes]:
        with self._lock:
            return self.version, self.body

    def close(self) -> None:
        """Ends every stream (the server is stopping)."""
        self.closed = True


async def stream(latest: Latest, poll: float = 0.1) -> AsyncIterator[bytes]:
    """Server-sent events: the snapshot now, then each newer one; a comment line now and
    then while nothing changes; ends when `latest` is closed."""
    seen, quiet_since = -1, time.monotonic()
    while not latest.closed:
        version, body = latest.get()
        if version != seen and version > 0:
            seen, quiet_since = version, time.monotonic()
            yield b"data: " + body + b"\n\n"
        elif time.monotonic() - quiet_since > KEEP_ALIVE:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(poll)


def make_app(latest: Latest) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "dashboard.html")

    async def current(_request: Request) -> Response:
        return Response(latest.get()[1], media_type="application/json")

    async def events(_request: Request) -> Response:
        return StreamingResponse(stream(latest), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return Starlette(routes=[Route("/", page), Route("/api/snapshot", current), Route("/api/stream", events),
                             Mount("/static", StaticFiles(directory=STATIC), name="static")])


def listen(host: str, port: int) -> socket.socket:
    """The page's listening socket, bound now so that a port in use is a clear error before
    anything else starts. Raises OSError."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(64)
    return sock


def publish_next(board: Any, latest: Latest, last: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """One turn of the chain loop: publish `board`'s snapshot if there is a new block; if
    reading the chain fails (the node not answering), publish the `last` good snapshot with
    the error (the page shows both) and say so on stderr. Returns the newest good snapshot
    and whether the read went well."""
    try:
        snap = board.refresh()
    except Exception as exc:  # noqa: BLE001 - the node may answer again: report it, keep serving
        text = str(exc).strip()
        error = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        print(f"dashboard: reading the chain failed: {error}", file=sys.stderr)
        latest.publish({**(last or {}), "error": error})
        return last, False
    if snap is not None:
        latest.publish(snap)
        return snap, True
    return last, True


def serve(board: Any, sock: socket.socket, poll: float = 0.25, say: Callable[[str], None] = print) -> None:
    """Serve the page on `sock` and publish `board`'s snapshot of every new block until
    interrupted (Ctrl-C). A failing read (the node not answering) is reported on the page and
    on stderr, and tried again each second (`publish_next`)."""
    import uvicorn

    latest = Latest()
    config = uvicorn.Config(make_app(latest), log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
    server = uvicorn.Server(config)
    web = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    web.start()
    host, port = sock.getsockname()[:2]
    say(f"dashboard on http://{host}:{port}/ (a snapshot every new block; Ctrl-C stops it)")
    last: dict[str, Any] | None = None
    try:
        while web.is_alive():
            last, ok = publish_next(board, latest, last)
            time.sleep(poll if ok else 1.0)
    except KeyboardInterrupt:
        pass
    finally:
        latest.close()
        server.should_exit = True
        web.join(5)
