"""The simulation on Anvil: a fresh node on a free port, the keeper bots as real separate
processes (`perpdex keeper liquidator`, `perpdex keeper funding`), prices fed and trades sent
from this process, and the report's events read back with eth_getLogs at the end.

Signers: the feeder is test account 0, the LP 1, the liquidator process 2, the funding keeper
process 3, traders are sub-accounts of 4..11 (no two processes share a nonce).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from perpdex.chain import DEVNET, connect
from perpdex.devnet import write_deployment
from perpdex.processes import Devnet, KeeperProcess, funding_process, liquidator_process
from perpdex.report import Report, build_report
from perpdex.sim.engine import PositionKey, Progress, SimConfig, SimResult, Simulation

CATCH_UP_SECONDS = 60.0  # at the end, how long the liquidator process gets to clear what is liquidatable
KEEPER_INTERVAL = 0.5
LIQUIDATOR_ACCOUNT, FUNDING_ACCOUNT = 2, 3


class AnvilSimulation(Simulation):
    """The same block loop; keepers are processes, events come from the node's logs."""

    def __init__(self, config: SimConfig, progress: Progress | None, workdir: Path, node: Devnet):
        super().__init__(config, progress)
        self.workdir, self.node = workdir, node
        self.books.liquidations = None  # the liquidator process keeps its own books
        self.keeper_output: dict[str, str] = {}

    def run(self) -> SimResult:
        result = super().run()
        result.keeper_logs = dict(self.keeper_output)
        return result

    def deploy(self) -> Any:
        from ape import chain

        x = super().deploy()
        head = int(chain.blocks.head.number)
        self.deployment = write_deployment(x.d.to_json(chain.chain_id, head), self.workdir / "deployment.json")
        self.first_block = head + 1  # the deployment's own price feed is not part of the run
        return x

    def record(self, receipt: Any) -> Any:
        return receipt  # read back with eth_getLogs in finish()

    def positions(self, keys: set[PositionKey]) -> dict[PositionKey, int]:
        """The log is read only at the end (and the liquidator process trades too): ask the vault."""
        return self.orders.vault_positions(keys)

    def start_keepers(self) -> list[KeeperProcess]:
        max_idle = self.config.funding_max_idle_blocks * self.config.seconds_per_block
        return [
            liquidator_process(self.node.url, self.deployment, self.workdir / "liquidator.db", LIQUIDATOR_ACCOUNT,
                               interval=KEEPER_INTERVAL),
            funding_process(self.node.port, self.deployment, FUNDING_ACCOUNT, max_idle=max_idle, interval=KEEPER_INTERVAL),
        ]

    def keep(self, block: int, keepers: Any) -> None:
        """The keeper processes act on their own."""

    def stop_keepers(self, keepers: list[KeeperProcess]) -> None:
        self.wait_for_liquidator()
        for name, keeper in zip(("liquidator", "funding"), keepers):
            self.keeper_output[name] = keeper.stop()

    def wait_for_liquidator(self, timeout: float = CATCH_UP_SECONDS) -> None:
        """Until no simulated account is liquidatable (or `timeout`): the last price moves
        may have left work for the liquidator process."""
        owners, subs = [t.owner for t in self.traders], [t.sub for t in self.traders]
        deadline = time.monotonic() + timeout
        while any(self.x.d.keeper.liquidatable(owners, subs)) and time.monotonic() < deadline:
            time.sleep(KEEPER_INTERVAL)

    def finish(self) -> Report:
        self.log.add_range(self.first_block)
        return build_report(
            self.x, self.log, self.sampler, accounts=[t.account for t in self.traders], lps=[self.roles.lp],
            keeper=self.roles.liquidator, title=f"{self.config.name} (anvil)", expected=self.books.expected(),
            run=self.config.run_info(),
        )


def run_on_anvil(
    config: SimConfig, progress: Progress | None = None, workdir: Path | None = None,
    then: Callable[[SimResult], None] | None = None,
) -> SimResult:
    """Start Anvil on a free port, run `config` there with keeper processes, stop it all."""
    if config.network != DEVNET:
        raise ValueError(f"run_on_anvil runs on {DEVNET}, not {config.network!r}")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="perpdex-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    node = Devnet(workdir)
    try:
        with connect(DEVNET, host=node.url, manage_process=False):
            result = AnvilSimulation(config, progress, workdir, node).run()
            if then:
                then(result)
            return result
    finally:
        node.stop()
