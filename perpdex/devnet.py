"""The Anvil devnet: start it (from node_modules/.bin/anvil) and keep its deployment file.

`perpdex devnet` starts Anvil in the background if nothing answers on the port (mining a
block per transaction, or every `--block-time` seconds), deploys the system, and writes
`.perpdex/devnet.json` (with how the node mines); keepers and later commands read that file.
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
FEEDER_PID_FILE = STATE_DIR / "feeder.pid"
FEEDER_LOG_FILE = STATE_DIR / "feeder.log"
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


def spawn_anvil(port: int, log_path: Path, timeout: float = 20.0, block_time: float | None = None) -> subprocess.Popen[bytes]:
    """Start Anvil on `port` (in its own session, output to `log_path`) and wait until it
    answers: automining (a block per transaction), or with `block_time` also a block every
    that many seconds whether or not there are transactions (Anvil's `--block-time` with
    `--mixed-mining`: commands stay as quick as on the automining devnet, and bots woken by
    blocks are woken on a clock). The caller owns the process."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [anvil_binary(), "--port", str(port), "--mnemonic", TEST_MNEMONIC, "--accounts", "20", "--hardfork", "prague"]
    if block_time is not None:  # mixed: a transaction still gets its block at once
        command += ["--block-time", f"{block_time:g}", "--mixed-mining"]
    proc = subprocess.Popen(command, stdout=log_path.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_anvil(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"anvil did not start on port {port}; see {log_path}")
        time.sleep(0.1)
    return proc


def start_anvil(port: int = DEFAULT_PORT, timeout: float = 20.0, block_time: float | None = None) -> int | None:
    """Start Anvil in the background (with `block_time`: see spawn_anvil) unless something
    already listens on `port`; a running node is left as it is, its mining included.

    Returns the new process id, or None when a node was already running.
    """
    if is_listening(port):
        return None
    proc = spawn_anvil(port, LOG_FILE, timeout, block_time)
    PID_FILE.write_text(str(proc.pid))
    return proc.pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill_anvil(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Signal Anvil's whole process group: `node_modules/.bin/anvil` is a node launcher
    whose child is the real node, so signalling the launcher alone would leave it running."""
    try:
        os.killpg(pid, sig)  # spawn_anvil starts a new session: its group id is its pid
    except ProcessLookupError:
        return False
    return True


def stop_anvil() -> bool:
    """Stop the Anvil that `start_anvil` started (if any)."""
    if not PID_FILE.exists():
        return False
    pid = int(PID_FILE.read_text())
    PID_FILE.unlink()
    return kill_anvil(pid)


def start_feeder(port: int = DEFAULT_PORT, deployment: Path = DEPLOYMENT_FILE, interval: float = 2.0,
                 pid_file: Path = FEEDER_PID_FILE, log_file: Path = FEEDER_LOG_FILE) -> int:
    """Start `perpdex keeper feeder` (a round every `interval` seconds, due requests settled)
    in the background against the devnet on `port`; returns its process id."""
    import sys

    command = [sys.executable, "-c", "from perpdex.cli import main; main()", "keeper", "feeder", "--port", str(port),
               "--deployment", str(deployment), "--interval", str(interval),
               "--db", str(pid_file.with_name("feeder-settler.db"))]
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop_feeder(pid_file: Path = FEEDER_PID_FILE) -> bool:
    """Stop the feeder that `start_feeder` started (if any)."""
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    return True


def automine(provider: Any) -> bool | None:
    """Whether the node mines a block per transaction and only then (Anvil's
    `anvil_getAutomine`; false with a block time); None from a node that cannot say."""
    try:
        result = provider.make_request("anvil_getAutomine", [])
    except Exception:  # noqa: BLE001 - not Anvil: the question has no answer, not an error
        return None
    return result if isinstance(result, bool) else None


def with_mining(deployment_json: str, block_time: float | None, automine: bool | None, rpc_url: str | None = None) -> str:
    """The deployment file's JSON with its node: `rpc_url`, and how it mines: `block_time`, the
    seconds between blocks of an Anvil `perpdex devnet` started with `--block-time` (null for
    one it started automining, or one it found running: that node's interval is not known,
    and not changed), and `automine` as the node says (null if it cannot say)."""
    data = json.loads(deployment_json)
    data.update(rpc_url=rpc_url, block_time=block_time, automine=automine)
    return json.dumps(data, indent=2)


def live_deployment(provider: Any, path: Path | None = None) -> dict[str, Any] | None:
    """The deployment file's content when it describes a deployment on this node (the same
    chain id, and its vault's code is there), else None: `perpdex devnet` then attaches to it
    instead of deploying again with new addresses."""
    path = path or DEPLOYMENT_FILE  # read now: tests point it elsewhere
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("chain_id") != provider.chain_id:
        return None
    vault = data.get("addresses", {}).get("vault")
    return data if vault and len(provider.get_code(vault)) > 0 else None


SEED_LP_USD = 1_000_000
SEED_TRADER_USD = 10_000
SEED_TRADERS_MAX = 7  # test accounts 2-8: 0 feeds prices, 1 is the CLI's default trader, 9 the LP


def seed(x: Any, traders: int, accounts: Any) -> list[str]:
    """What a fresh devnet needs to be played with: a funded LP (test account 9, 1,000,000 USD)
    and `traders` traders (test accounts 2, 3, ...), each with 10,000 USD and a 2-5x position,
    long and short, ETH and BTC, every one a request filled at the next round (moving time
    as a feeder would: call it before the feeder starts). Returns a line per account."""
    from perpdex.model import WAD

    lp = accounts[9]
    x.add_liquidity(lp, x.tokens(SEED_LP_USD))
    lines = [f"LP {lp.address}: {SEED_LP_USD:,} USD in the pool"]
    markets = list(x.d.markets.items())
    for i in range(min(traders, SEED_TRADERS_MAX)):
        who = accounts[2 + i]
        name, market = markets[i % len(markets)]
        # ETH long and BTC short, then (from the fifth) the other way round: seven seeded
        # books net 0 ETH, within the net rule (10% of the pool's cash: 100,000 USD of skew)
        leverage, side = 2 + i % 4, (1 if i % 2 == 0 else -1) * (1 if i < 4 else -1)
        x.deposit(who, x.tokens(SEED_TRADER_USD))
        x.fund(who, x.tokens(10))  # settlement rewards
        size = side * SEED_TRADER_USD * leverage * WAD * WAD // x.price(market)
        x.trade(who, market, size)
        lines.append(f"trader {who.address}: {SEED_TRADER_USD:,} USD, {'long' if side > 0 else 'short'} {name} at {leverage}x")
    return lines


def write_deployment(data: str, path: Path = DEPLOYMENT_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


def record_deployment(x: Any, provider: Any, path: Path | None = None, block_time: float | None = None,
                      rpc_url: str | None = None) -> Path:
    """Write the deployment file of `x` (an Exchange) deployed on `provider`'s node: addresses,
    markets, chain id, block, and the node (`with_mining`: its `rpc_url`, default the
    provider's HTTP URI, and how it mines). `perpdex devnet` and `ape run deploy` write it;
    the keepers, CLI and Ape script alike, read it."""
    data = x.d.to_json(provider.chain_id, provider.get_block("latest").number)
    url = rpc_url or provider.http_uri
    return write_deployment(with_mining(data, block_time, automine(provider), url), path or DEPLOYMENT_FILE)


def read_deployment(path: Path = DEPLOYMENT_FILE) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `perpdex devnet` (or `perpdex deploy`) first")
    return json.loads(path.read_text())


def host_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}"
