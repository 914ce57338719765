"""Nodes and keepers as real separate processes: an Anvil the caller owns (start, restart,
kill), and keeper bots (and the dashboard) whose output is collected line by line. Used by the Anvil tests,
`perpdex demo --network ethereum:local:foundry` and `perpdex bench`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from perpdex.devnet import host_url, is_listening, kill_anvil, free_port, spawn_anvil


def wait_until(condition: Callable[[], bool], timeout: float, what: str, proc: "KeeperProcess | None" = None) -> None:
    """Poll `condition` every 0.2 s; raise with `what` (and the process's output) on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\noutput:\n{proc.text()}" if proc else ""))
        time.sleep(0.2)


class Devnet:
    """Anvil on a free port, started and killed by its owner (who can also restart it);
    automining, or with `block_time` also a block every that many seconds (spawn_anvil)."""

    def __init__(self, workdir: Path, port: int | None = None, block_time: float | None = None):
        self.port, self.log, self.block_time = port or free_port(), workdir / "anvil.log", block_time
        self.proc = spawn_anvil(self.port, self.log, block_time=block_time)

    @property
    def url(self) -> str:
        return host_url(self.port)

    def restart(self) -> None:
        self.stop()
        self.proc = spawn_anvil(self.port, self.log, block_time=self.block_time)

    def stop(self) -> None:
        kill_anvil(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        wait_until(lambda: not is_listening(self.port), 10, "anvil to stop")


class KeeperProcess:
    """A command in its own process (a keeper bot); stdout and stderr collected by a thread."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)

    def saw(self, needle: str) -> bool:
        return any(needle in line for line in self.lines)

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        wait_until(lambda: self.saw(needle) or self.proc.poll() is not None, timeout, repr(needle), self)
        assert self.saw(needle), f"process exited before {needle!r}:\n{self.text()}"

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.reader.join(5)

    def finish(self, timeout: float = 120) -> str:
        """Wait for the command to exit on its own (a keeper run with --once); its output.
        Raises if it is still running after `timeout` seconds or exits with an error."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running after {timeout:g}s:\n{self.text()}") from None
        self.reader.join(5)
        if code != 0:
            raise AssertionError(f"exited with {code}:\n{self.text()}")
        return self.text()

    def stop(self) -> str:
        """SIGINT (the keepers finish their pass and exit), SIGKILL after 20 s; the output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.reader.join(5)
        return self.text()


def _cli(*args: str) -> list[str]:
    """`perpdex ARGS` run by this interpreter (no PATH lookup)."""
    quoted = ", ".join(repr(a) for a in args)
    return [sys.executable, "-c", f"from perpdex.cli import main; main([{quoted}])"]


def liquidator_process(rpc: str, deployment: Path, db: Path, account: int, interval: float = 0.2,
                       max_batch: int = 50, options: tuple[str, ...] = ()) -> KeeperProcess:
    """`perpdex keeper liquidator` against the node at `rpc`, signing with test account `account`
    (`options`: more of its command-line options)."""
    return KeeperProcess(_cli("keeper", "liquidator", "--rpc", rpc, "--deployment", str(deployment), "--db", str(db),
                              "--account", str(account), "--interval", str(interval), "--max-batch", str(max_batch),
                              *options))


def adl_process(rpc: str, deployment: Path, account: int = 0, once: bool = True) -> KeeperProcess:
    """`perpdex keeper adl --log-format json` against the node at `rpc`, signing with test
    account `account` (0, the deployer, holds the deleverager role); one pass with `once`."""
    return KeeperProcess(_cli("keeper", "adl", "--rpc", rpc, "--deployment", str(deployment), "--account", str(account),
                              "--log-format", "json", *(("--once",) if once else ())))


def cli_json(*args: str, timeout: float = 120) -> Any:
    """`perpdex ARGS` (a command given --json) run in its own process, as a user would: its output parsed."""
    done = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"perpdex {' '.join(args)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout)


def funding_process(port: int, deployment: Path, account: int, max_idle: int = 3600,
                    interval: float = 1.0) -> KeeperProcess:
    """`perpdex keeper funding` against the devnet on `port`, signing with test account `account`."""
    return KeeperProcess(_cli("keeper", "funding", "--port", str(port), "--deployment", str(deployment),
                              "--account", str(account), "--max-idle", str(max_idle), "--interval", str(interval)))


def silverback_keeper(bot: str, rpc: str, deployment: Path, db: Path, account: int,
                      env: dict[str, str] | None = None) -> KeeperProcess:
    """A keeper run by Silverback: `bot` is `perpdex.keepers.silverback_bot` (the liquidator),
    `perpdex.keepers.silverback_settler`, `perpdex.keepers.silverback_orders` or
    `perpdex.keepers.silverback_feeder`; `env` adds
    the bot's own settings (PERPDEX_FEEDER_INTERVAL)."""
    silverback = str(Path(sys.executable).with_name("silverback"))
    command = [silverback, "run", f"{bot}:bot", "--network", "ethereum:local:foundry", "--account", f"TEST::{account}"]
    return KeeperProcess(command, {"APE_FOUNDRY_HOST": rpc, "PERPDEX_DEPLOYMENT": str(deployment), "PERPDEX_DB": str(db),
                                   **(env or {})})


def silverback_liquidator(rpc: str, deployment: Path, db: Path, account: int) -> KeeperProcess:
    """The same liquidator run by Silverback (`perpdex.keepers.silverback_bot`)."""
    return silverback_keeper("perpdex.keepers.silverback_bot", rpc, deployment, db, account)


def settler_process(rpc: str, deployment: Path, db: Path, account: int, interval: float = 0.2) -> KeeperProcess:
    """`perpdex keeper settler` against the node at `rpc`, signing with test account `account`."""
    return KeeperProcess(_cli("keeper", "settler", "--rpc", rpc, "--deployment", str(deployment), "--db", str(db),
                              "--account", str(account), "--interval", str(interval)))


def orders_process(rpc: str, deployment: Path, db: Path, account: int, once: bool = False,
                   interval: float = 0.2, max_batch: int = 100) -> KeeperProcess:
    """`perpdex keeper orders` against the node at `rpc`, signing with test account `account`
    (one pass with `once`; batches of at most `max_batch` orders)."""
    return KeeperProcess(_cli("keeper", "orders", "--rpc", rpc, "--deployment", str(deployment), "--db", str(db),
                              "--account", str(account), "--interval", str(interval), "--max-batch", str(max_batch),
                              *(("--once",) if once else ())))


def feeder_process(rpc: str, deployment: Path, db: Path, account: int = 0, interval: float = 1.0,
                   source: str = "hold") -> KeeperProcess:
    """`perpdex keeper feeder` (writes rounds, settles what they made due) against the node at `rpc`."""
    return KeeperProcess(_cli("keeper", "feeder", "--rpc", rpc, "--deployment", str(deployment), "--db", str(db),
                              "--account", str(account), "--interval", str(interval), "--path", source))


def dashboard_process(port: int, deployment: Path, http_port: int) -> KeeperProcess:
    """`perpdex dashboard` over the devnet on `port`, serving its page on `http_port`."""
    return KeeperProcess(_cli("dashboard", "--port", str(port), "--deployment", str(deployment),
                              "--http-port", str(http_port)))
