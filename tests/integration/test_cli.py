"""The CLI's main job runs and prints the deployed system and a position."""

from click.testing import CliRunner

from perpdex.cli import main


def test_demo__prints_system_book_report_and_writes_the_files(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--traders", "10", "--blocks", "30", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for expected in ("Contracts", "vault", "ETH-USD", "BTC-USD", "Positions of", "liquidation", "Margin", "equity",
                     "hedged", "report written to"):
        assert expected in result.output
    assert (tmp_path / "report.html").stat().st_size > 10_000 and (tmp_path / "summary.json").exists()


def test_bench__without_a_sub_command__runs_the_parts_and_prints_the_figures():
    skip = [arg for part in ("gas", "funding", "fuzz", "anvil", "liquidator", "adl", "orders") for arg in ("--skip", part)]
    result = CliRunner().invoke(main, ["bench", *skip, "--demo-traders", "5", "--demo-blocks", "10"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "perpdex bench" in out and "demo blocks/s (ethereum:local:boa)" in out and "blocks/s (5 traders, 10 blocks" in out
    assert "fuzz steps/s" not in out and "gap into ADL" not in out  # skipped


def test_liquidation_example__health_breakdown_then_partial_liquidation_with_fee_split():
    result = CliRunner().invoke(main, ["liquidation", "--example"])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in ("margin ratio", "liquidation price", "Liquidation of", "to keeper", "to insurance", "closed size"):
        assert expected in out
    before, after = out.split("3. A keeper calls")
    assert "LIQUIDATABLE" in before.split("2. ETH falls")[1]  # after the fall, before the keeper
    assert "LIQUIDATABLE" not in after.split("4. After")[1]  # healthy again
    assert "Bad debt covered" not in out  # a partial liquidation at 2,860 leaves no bad debt


def test_liquidation__needs_an_owner_or_the_example():
    result = CliRunner().invoke(main, ["liquidation"])
    assert result.exit_code != 0 and "--owner" in result.output
