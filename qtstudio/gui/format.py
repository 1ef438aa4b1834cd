"""Human-readable times and words for the tables and the status bar (sizes and counts:
qtstudio.core.human_numbers, shared with the command line)."""

from __future__ import annotations


def human_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1.0:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 layer``, ``2 layers`` (``many`` for irregular plurals)."""
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


#: bytes per unit of the size units the window uses (binary, as human_bytes prints them)
SIZE_UNITS = {"MiB": 1024.0 ** 2, "GiB": 1024.0 ** 3}
