"""`perpdex bench funding` in small: trade gas does not grow with the open positions.

On the boa provider receipts leave out the 21,000 intrinsic gas; flatness does not need it.
"""

from perpdex.bench import FLAT_TOLERANCE, funding_flatness, is_flat


def test_funding_flatness__trade_gas_at_5_positions_within_2_percent_of_1():
    one, five = funding_flatness(counts=(1, 5))

    assert (one.positions, five.positions) == (1, 5)
    assert abs(five.increase_gas - one.increase_gas) <= one.increase_gas * FLAT_TOLERANCE / 100
    assert abs(five.reduce_gas - one.reduce_gas) <= one.reduce_gas * FLAT_TOLERANCE / 100
    assert one.poke_gas > 0 and five.poke_gas > 0
    assert is_flat([one, five])
