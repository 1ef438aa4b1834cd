"""The choices of Edit ▸ Assign encoding (Ctrl+E): each with the bits per weight it gives the
selection, quantized encodings first, and the selection's own encoding (or a common 4-bit one)
chosen, never F32 by accident."""

from __future__ import annotations

from typing import Any

from .document import FLOAT_ENCODINGS

#: the choice offered first when the selection is still float
PREFERRED = ("Q4_K", "Q4_0", "Q8_0")


def assign_choices(doc: Any, names: list[str], options: list[tuple[str, int]],
                   ) -> tuple[list[str], int]:
    """(item texts, index of the default) for the Assign dialog."""
    from qtstudio.core.encodings import get_encoding

    def bits(enc: str) -> float:
        take = [doc.model.tensor(n) for n in names if enc in doc.candidates(n)]
        params = sum(t.params for t in take)
        e = get_encoding(enc)
        return 8.0 * sum(e.nbytes(tuple(t.shape)) for t in take) / params if params else e.bpw

    ordered = sorted(options, key=lambda o: (o[0] in FLOAT_ENCODINGS, -o[1]))
    items = []
    for enc, n in ordered:
        who = "" if n == len(names) else f", {n} of {len(names)} can take it"
        items.append(f"{enc}  ({bits(enc):.2f} bpw{who})")
    current: dict[str, int] = {}
    for n in names:
        enc = doc.plan.entry(n).encoding
        current[enc] = current.get(enc, 0) + 1
    encs = [enc for enc, _ in ordered]
    mine = max(current, key=current.get) if current else None
    if mine in encs and mine not in FLOAT_ENCODINGS:
        return items, encs.index(mine)
    for enc in PREFERRED:
        if enc in encs:
            return items, encs.index(enc)
    return items, 0
