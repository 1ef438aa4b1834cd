"""The sizes and counts that the command line and the window both print."""

from qtstudio.core.human_numbers import human_bytes, human_count


def test_bytes_use_binary_units_and_switch_at_1024():
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1024) == "1.00 KiB"
    assert human_bytes(1536) == "1.50 KiB"
    assert human_bytes(6400) == "6.25 KiB"
    assert human_bytes(3 * 2**30 + 2**29) == "3.50 GiB"
    # TiB is the largest unit: larger sizes stay in it
    assert human_bytes(5 * 2**50) == "5120.00 TiB"


def test_counts_use_decimal_suffixes():
    assert human_count(999) == "999"
    assert human_count(1000) == "1.00K"
    assert human_count(1_500_000) == "1.50M"
    assert human_count(7_000_000_000) == "7.00B"
