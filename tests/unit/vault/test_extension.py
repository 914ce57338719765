"""MarginVault runs its owner entry points and liquidations in VaultExtension by delegatecall:
the two must share one storage layout, and the extension must be useless on its own."""

import json
import subprocess
import sys
from pathlib import Path

import ape
import pytest

from perpdex.deploy import ROOT, contracts_project

SITE = [p for p in sys.path if p.endswith("site-packages")]


def _layout(name: str) -> dict:
    vyper = Path(sys.executable).parent / "vyper"
    args = [str(vyper), "-f", "layout"]
    for path in [str(ROOT / "contracts"), *SITE]:
        args += ["-p", path]
    out = subprocess.run([*args, f"{name}.vy"], cwd=ROOT / "contracts", capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_storage_layouts__vault_and_extension__identical():
    vault, extension = _layout("MarginVault"), _layout("VaultExtension")
    assert vault["storage_layout"] == extension["storage_layout"]
    assert vault["transient_storage_layout"] == extension["transient_storage_layout"]
    # the immutables the shared modules read sit at the same offsets in both codes
    for module in ("markets", "token_io"):
        assert vault["code_layout"][module] == extension["code_layout"][module]


def test_extension__called_directly__every_entry_point_reverts(system, admin, params_tuple):
    extension = contracts_project().VaultExtension.at(system.vault.EXTENSION())
    with ape.reverts("vault: call the vault"):
        extension.add_market(params_tuple, sender=admin)
    with ape.reverts("vault: call the vault"):
        extension.pause(sender=admin)
    with ape.reverts("vault: call the vault"):
        extension.liquidate(admin, 0, admin, sender=admin)


def test_vault__extension_for_another_token__refused_at_deploy(system, admin):
    project = contracts_project()
    other = project.MockUSD.deploy(sender=admin)
    extension = project.VaultExtension.deploy(other, system.oracle, 6, sender=admin)
    with ape.reverts("vault: extension token"):
        project.MarginVault.deploy(system.usd, system.oracle, 6, True, extension, sender=admin)
    extension = project.VaultExtension.deploy(system.usd, system.oracle, 18, sender=admin)
    with ape.reverts("vault: extension decimals"):
        project.MarginVault.deploy(system.usd, system.oracle, 6, True, extension, sender=admin)


def test_vault__unknown_selector__reverts(system, admin):
    with pytest.raises(ape.exceptions.ContractLogicError):
        admin.transfer(system.vault, 0, data=bytes.fromhex("deadbeef"))


def test_owner_call_through_the_vault__vault_storage_and_vault_events(system, admin):
    vault = system.vault
    receipt = system.guard("pause_vault")  # the Governance, the vault's owner, calls vault.pause()
    try:
        assert vault.paused()
        (event,) = receipt.events.filter(vault.GlobalPauseSet)
        assert event.contract_address == vault.address and event.paused
    finally:
        system.guard("unpause_vault")
    assert not vault.paused()


@pytest.fixture
def params_tuple(system):
    return tuple(system.vault.market_params(0))
