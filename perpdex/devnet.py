"""The Anvil devnet: start it (from node_modules/.bin/anvil) and keep its deployment file.

`perpdex devnet` starts Anvil in the background if nothing answers on the port, deploys
the system, and writes `.perpdex/devnet.json`; keepers and later commands read that file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from perpdex.deploy import ROOT

STATE_DIR = ROOT / ".perpdex"
DEPLOYMENT_FILE = STATE_DIR / "devnet.json"
PID_FILE = STATE_DIR / "anvil.pid"
LOG_FILE = STATE_DIR / "anvil.log"
DEFAULT_PORT = 8545
# Ape's test accounts and Anvil's funded accounts come from this same mnemonic.
TEST_MNEMONIC = "test test test test test test test test test test test junk"


def anvil_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if not found:
        raise RuntimeError("anvil not found: run ./run setup (installs @foundry-rs/anvil from package.json)")
    return found


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def start_anvil(port: int = DEFAULT_PORT, timeout: float = 20.0) -> int | None:
    """Start Anvil in the background unless something already listens on `port`.

    Returns the new process id, or None when a node was already running.
    """
    if is_listening(port):
        return None
    STATE_DIR.mkdir(exist_ok=True)
    log = LOG_FILE.open("ab")
    proc = subprocess.Popen(
        [anvil_binary(), "--port", str(port), "--mnemonic", TEST_MNEMONIC, "--accounts", "20", "--hardfork", "prague"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    PID_FILE.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"anvil did not start on port {port}; see {LOG_FILE}")
        time.sleep(0.1)
    return proc.pid


def stop_anvil() -> bool:
    """Stop the Anvil that `start_anvil` started (if any)."""
    if not PID_FILE.exists():
        return False
    pid = int(PID_FILE.read_text())
    PID_FILE.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def write_deployment(data: str, path: Path = DEPLOYMENT_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


def read_deployment(path: Path = DEPLOYMENT_FILE) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `perpdex devnet` (or `perpdex deploy`) first")
    return json.loads(path.read_text())


def host_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}"
