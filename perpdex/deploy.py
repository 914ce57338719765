"""Deploy the whole system: one function for scripts, tests, the demo and the keepers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from perpdex import governance as gov
from perpdex.config import load_config
from perpdex.model import MarketParams, to_wad

ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def contracts_project() -> Any:
    """The Ape project holding perpdex's contracts, wherever the caller's cwd is."""
    import ape

    if Path(ape.project.path).resolve() == ROOT:
        return ape.project
    return ape.Project(ROOT)


def merged_abi(vault_abi: list[dict[str, Any]], extension_abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MarginVault's ABI plus VaultExtension's functions and events that the vault lacks:
    the vault runs them by delegatecall, so callers and event decoders see one contract."""
    def key(item: dict[str, Any]) -> tuple[Any, ...]:
        return item["type"], item.get("name"), tuple(i["type"] for i in item.get("inputs", []))

    seen = {key(item) for item in vault_abi}
    return vault_abi + [i for i in extension_abi if i["type"] in ("function", "event") and key(i) not in seen]


def vault_container(project: Any) -> Any:
    """`project.MarginVault` whose ABI includes VaultExtension's entry points and events (the
    owner's functions and `liquidate` run there, in the vault's storage)."""
    from ethpm_types import ContractType

    vault = project.MarginVault
    dump = vault.contract_type.model_dump(mode="json", by_alias=True)
    ext = project.VaultExtension.contract_type.model_dump(mode="json", by_alias=True)
    contract_type = ContractType.model_validate({**dump, "abi": merged_abi(dump["abi"], ext["abi"])})
    if hasattr(vault, "with_contract_type"):  # perpdex.revm_chain
        return vault.with_contract_type(contract_type)
    from ape.contracts import ContractContainer

    return ContractContainer(contract_type)


@dataclass
class Deployment:
    """Handles on a deployed perpdex (Ape contract instances)."""

    usd: Any
    oracle: Any
    vault: Any
    funding: Any  # the VaultLens: funding rate, index, prediction and accrued funding (the vault accrues it)
    keeper: Any  # LiquidationKeeper
    markets: dict[str, int]
    router: Any = None  # OrderRouter
    lens: Any = None  # VaultLens: funding views, fill quotes, open markets
    deployer: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    governance: Any = None  # Governance: the timelock that owns vault, oracle and router; the guardian's pause

    def contracts(self) -> dict[str, Any]:
        """Every deployed contract by its deployment-file name (None where not deployed)."""
        return {"usd": self.usd, "oracle": self.oracle, "vault": self.vault, "keeper": self.keeper,
                "router": self.router, "lens": self.lens, "governance": self.governance}

    def addresses(self) -> dict[str, str]:
        return {name: str(c.address) for name, c in self.contracts().items() if c is not None}

    def govern(self, target: Any, function: str, *args: Any, sender: Any = None) -> gov.Operation:
        """`target.function(*args)` as the owner, through the Governance timelock: scheduled
        by `sender` (default: the deployer, a proposer and executor) and, when the delay is
        0, executed at once (`op.executed` is then the receipt with the target's events);
        otherwise `op.eta` says when `execute(op)` may run. Reverts as the target does."""
        return gov.govern(self.governance, target, function, args, sender or self.deployer)

    def execute(self, op: gov.Operation, sender: Any = None) -> gov.Operation:
        """Execute a scheduled operation once its eta has passed (any executor; default the deployer)."""
        return gov.execute(self.governance, op, sender or self.deployer)

    def guard(self, action: str, *args: Any, sender: Any = None) -> Any:
        """A guardian's immediate call on the Governance: `pause_vault`, `unpause_vault`,
        `pause_market(m)` or `unpause_market(m)` (default sender: the deployer, a guardian)."""
        if action not in GUARDIAN_ACTIONS:
            raise ValueError(f"{action!r} is not a guardian action: {', '.join(GUARDIAN_ACTIONS)}")
        return getattr(self.governance, action)(*args, sender=sender or self.deployer)

    def to_json(self, chain_id: int, block: int) -> str:
        return json.dumps(
            {"chain_id": chain_id, "block": block, "addresses": self.addresses(), "markets": self.markets},
            indent=2,
        )


GUARDIAN_ACTIONS = ("pause_vault", "unpause_vault", "pause_market", "unpause_market")


def deploy_system(deployer: Any, **overrides: Any) -> Deployment:
    """Deploy token (unless `token={"address": ...}` names one), oracle, vault, liquidation
    keeper, order router and lens; create the configured markets; make `deployer` a price
    feeder and set every initial price. Trading goes through the router unless
    `atomic_trading=True` (unit tests of the margin math only). Last, deploy the Governance
    timelock (`deployer` its proposer, executor, canceller and guardian; delay
    `governance_delay`, 1 day by default, `governance_delay=0` for tests and demos) and hand
    it the ownership of the vault, the oracle and the router: from then on owner calls go
    through `Deployment.govern`.

    `overrides` deep-merge into perpdex/defaults.toml, e.g.
    `deploy_system(admin, markets={"ETH-USD": {"max_leverage": 10}}, oracle={"max_price_age": 60})`,
    `deploy_system(admin, atomic_trading=True)`.
    """
    return deploy_from(contracts_project(), deployer, **overrides)


def deploy_from(project: Any, deployer: Any, **overrides: Any) -> Deployment:
    """`deploy_system` from `project`: Ape's contracts project, or anything with the same
    `project.Name.deploy(*args, sender=)` / `.at(address)` (perpdex.revm_chain.RevmProject)."""
    cfg = load_config(**overrides)
    if address := cfg["token"].get("address"):
        usd = project.MockUSD.at(address)
    else:
        usd = project.MockUSD.deploy(sender=deployer)
    oracle = project.PriceOracle.deploy(
        int(cfg["oracle"]["max_price_age"]), to_wad(cfg["oracle"]["max_price_jump"]), sender=deployer
    )
    decimals = int(cfg["token"]["decimals"])
    extension = project.VaultExtension.deploy(usd, oracle, decimals, sender=deployer)
    vault = vault_container(project).deploy(usd, oracle, decimals, bool(cfg["atomic_trading"]), extension, sender=deployer)
    oracle.set_feeder(deployer, True, sender=deployer)
    keeper = project.LiquidationKeeper.deploy(vault, sender=deployer)
    liq = cfg["liquidation"]
    vault.set_liquidator(keeper, to_wad(liq["max_keeper_reward"]), to_wad(liq["min_keeper_reward"]), sender=deployer)
    r = cfg["router"]
    router = project.OrderRouter.deploy(
        vault, to_wad(r["settlement_reward"]), int(r["settlement_delay"]), int(r["settlement_window"]), sender=deployer
    )
    vault.set_router(router, sender=deployer)
    caps = cfg["pool"]
    vault.set_pool_caps(
        to_wad(caps["reserve_factor"]), to_wad(caps["max_exposure_factor"]), to_wad(caps["max_pnl_factor"]),
        to_wad(caps["pool_loss_cap"]), sender=deployer,
    )
    # the ADL keeper's account: the deployer's (`perpdex keeper adl` runs with it)
    vault.set_deleverager(deployer, sender=deployer)
    lens = project.VaultLens.deploy(vault, sender=deployer)

    markets: dict[str, int] = {}
    for name, values in cfg["markets"].items():
        vault.add_market(MarketParams.from_human(values).as_tuple(), sender=deployer)
        markets[name] = len(markets)
    oracle.set_prices(
        list(markets.values()), [to_wad(cfg["markets"][n]["price"]) for n in markets], sender=deployer
    )
    governance = project.Governance.deploy(
        vault, int(cfg["governance_delay"]), [deployer], [deployer], [deployer], sender=deployer
    )
    hand_over(governance, (vault, oracle, router), deployer)
    return Deployment(
        usd=usd, oracle=oracle, vault=vault, funding=lens, keeper=keeper, markets=markets, deployer=deployer,
        config=cfg, router=router, lens=lens, governance=governance,
    )


def hand_over(governance: Any, owned: tuple[Any, ...], owner: Any) -> None:
    """Make `governance` the owner of each of `owned` (two-step: `owner` starts the transfer,
    the Governance's public `accept_ownership_of` completes it)."""
    for contract in owned:
        contract.transfer_ownership(governance, sender=owner)
        governance.accept_ownership_of(contract, sender=owner)


def attach(data: dict[str, Any]) -> Deployment:
    """A Deployment from a deployment file's content (see `Deployment.to_json`)."""
    project = contracts_project()
    a = data["addresses"]
    vault = vault_container(project).at(a["vault"])
    keeper = project.LiquidationKeeper.at(a["keeper"]) if "keeper" in a else None
    router = project.OrderRouter.at(a["router"]) if "router" in a else None
    lens = project.VaultLens.at(a["lens"]) if "lens" in a else None
    governance = project.Governance.at(a["governance"]) if "governance" in a else None
    return Deployment(
        usd=project.MockUSD.at(a["usd"]), oracle=project.PriceOracle.at(a["oracle"]), vault=vault,
        funding=lens, keeper=keeper, markets=dict(data["markets"]), router=router, lens=lens, governance=governance,
    )
