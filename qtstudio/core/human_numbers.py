"""Sizes and counts as people read them, the same in the command line's output and the window."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """Binary units: ``512 B``, ``1.50 KiB`` ... ``2.00 TiB`` (TiB is the largest)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024.0 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024.0
    return f"{n:.2f} TiB"


def human_count(n: int) -> str:
    """Decimal suffixes for parameter counts: ``999``, ``1.50K``, ``7.00B`` (B: billions)."""
    n = int(n)
    for unit, scale in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)
