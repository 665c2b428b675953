"""Every number of a report has a bounded width: fixed notation while narrow, ``1.0e+300`` beyond."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from feph_finetune.results.number_text import LARGE, LARGE_COUNT, SMALL, format_count, format_number

MAGNITUDES = [sign * 10.0**exponent * mantissa for sign in (1, -1) for exponent in range(-320, 309, 7) for mantissa in (1.0, 1.7, 9.99)]


@pytest.mark.parametrize("decimals, small", [(0, 0.0), (1, 0.0), (3, SMALL)])
def test_every_finite_number_is_at_most_11_characters_and_reads_back_as_itself(decimals, small):
    for value in [*MAGNITUDES, 0.0, -0.0, 999999.9996, -999999.9996, 5e-324, 1.7976931348623157e308]:
        text = format_number(value, decimals, small=small)
        assert len(text) <= 11, (value, text)  # "-999999.999": the widest fixed notation below LARGE
        if "e" in text:
            assert abs(value) >= LARGE * 0.9999 or abs(value) < small, (value, text)
            assert abs(Decimal(text) - Decimal(value)) <= Decimal(0.05) * abs(Decimal(value)), (value, text)  # one decimal of the mantissa: within 5% (Decimal: 1.8e+308 is past a float)
        else:
            assert abs(float(text) - value) <= 0.5 * 10.0**-decimals, (value, text)  # rounded to the shown decimals


def test_the_forms_the_reports_show():
    assert format_number(1e300, 3) == "1.0e+300" and format_number(-1e300, 3) == "-1.0e+300"
    assert format_number(0.4321, 3, small=SMALL) == "0.432" and format_number(62.44, 1) == "62.4"
    assert format_number(1e-4, 3, small=SMALL) == "1.0e-04" and format_number(0.0, 3, small=SMALL) == "0.000"
    assert format_number(1e-4, 1) == "0.0"  # a percentage: tenths of a point, never scientific when small
    assert format_number(999999.9996, 3) == "1.0e+06"  # rounds up to LARGE: scientific, not "1000000.000"
    assert format_number(math.inf, 3) == "inf" and format_number(-math.inf, 1) == "-inf"


def test_a_number_shown_as_zero_has_no_sign():
    assert format_number(-0.0, 3) == "0.000" and format_number(-0.0, 1) == "0.0" and format_count(-0.0) == "0"
    assert format_number(-4e-5, 1) == "0.0"  # a percentage rounded to zero: "-0.0" would claim a sign the table cannot show
    assert format_number(-0.04, 1) == "0.0" and format_number(-0.06, 1) == "-0.1"


def test_counts_are_whole_up_to_15_digits():
    assert format_count(999_999_999_999_999) == "999999999999999" and format_count(LARGE_COUNT) == "1.0e+15"
    assert format_count(4) == "4" and format_count(12.5) == "12.5"
