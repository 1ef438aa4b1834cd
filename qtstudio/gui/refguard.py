"""Keep CPython's None, True and False alive under PySide6 6.12 on Python 3.11.

That shiboken release returns ``None`` from void methods (``label.setText``, ``timer.start``...)
and ``True``/``False`` from ``Signal.emit`` without taking a reference, as if they were immortal
(they are from Python 3.12 on). On 3.11 every such call drops one reference that was never taken;
``sys.getrefcount(None)`` falls by one per call and the interpreter aborts with "deallocating
None" after a few thousand calls (measured: 2,000 ``QTimer.setInterval`` calls take it from
5,375 to 3,375). The app makes that many calls in seconds.

The fix here is a bank of references, topped up from a timer long before it can run dry. It
costs a few MiB and does nothing on Python 3.12+.
"""

from __future__ import annotations

import sys

#: refill to this many references per object when below half of it
TARGET = 1 << 19
_bank: list[object] = []
AFFECTED = sys.version_info < (3, 12)


def top_up() -> None:
    if not AFFECTED:
        return
    for obj in (None, True, False):
        have = sys.getrefcount(obj)
        if have < TARGET // 2:
            _bank.extend([obj] * (TARGET - have))
