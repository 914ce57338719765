"""Which node the Ape scripts (`ape run deploy`, `ape run keeper ...`) talk to on Anvil: the
deployment file's rpc_url unless APE_FOUNDRY_HOST is set, and one line when nothing answers
there (tests/integration/test_ape_scripts_anvil.py runs the scripts against a real Anvil)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from perpdex import ape_scripts, chain
from perpdex.devnet import free_port, host_url
from perpdex.errors import UserError

FOUNDRY = SimpleNamespace(name="foundry")


@pytest.fixture
def no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ape_scripts.FOUNDRY_HOST_VARIABLE, raising=False)
    monkeypatch.setattr(chain, "wait_for_blocks", lambda: None)  # it patches ape-foundry for the whole process


def deployment_at(tmp_path: Path, url: str | None) -> Path:
    path = tmp_path / "devnet.json"
    path.write_text(json.dumps({"chain_id": 31337, "addresses": {}, "rpc_url": url}))
    return path


def test_devnet_url__the_files_rpc_url__else_the_devnets_default(tmp_path):
    assert ape_scripts.devnet_url(deployment_at(tmp_path, "http://127.0.0.1:9999")) == "http://127.0.0.1:9999"
    assert ape_scripts.devnet_url(deployment_at(tmp_path, None)) == host_url()  # a file `deploy --out` wrote
    assert ape_scripts.devnet_url(tmp_path / "missing.json") == "http://127.0.0.1:8545"


def test_aim_at_devnet__nothing_listening__one_line_and_no_host_set(tmp_path, no_host):
    url = host_url(free_port())
    with pytest.raises(UserError, match=f"no devnet at {url}: start one with `perpdex devnet`"):
        ape_scripts.aim_at_devnet(FOUNDRY, deployment_at(tmp_path, url))
    assert ape_scripts.FOUNDRY_HOST_VARIABLE not in ape_scripts.os.environ


def test_aim_at_devnet__a_set_host_wins__other_networks_untouched(tmp_path, no_host, monkeypatch):
    ape_scripts.aim_at_devnet(SimpleNamespace(name="boa"), deployment_at(tmp_path, host_url(free_port())))
    assert ape_scripts.FOUNDRY_HOST_VARIABLE not in ape_scripts.os.environ  # boa: not checked, not set
    monkeypatch.setenv(ape_scripts.FOUNDRY_HOST_VARIABLE, "http://10.0.0.1:8545")
    ape_scripts.aim_at_devnet(FOUNDRY, deployment_at(tmp_path, host_url(free_port())))  # no check: the user's node
    assert ape_scripts.os.environ[ape_scripts.FOUNDRY_HOST_VARIABLE] == "http://10.0.0.1:8545"
