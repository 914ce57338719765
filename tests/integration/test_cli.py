"""The CLI's main job runs and prints the deployed system and a position."""

from click.testing import CliRunner

from perpdex.cli import main


def test_demo__prints_system_position_margin_and_liquidation_price():
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    for expected in ("Contracts", "vault", "ETH-USD", "BTC-USD", "Positions of", "liquidation", "Margin", "equity"):
        assert expected in result.output
