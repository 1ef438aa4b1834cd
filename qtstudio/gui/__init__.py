"""The desktop app: the only package that imports Qt (PySide6) or pyqtgraph.

Modules here import Qt at their top, except ``app`` (the entry point) and ``document`` (the plan
state the widgets observe), which stay importable without a display.
"""

from . import refguard

refguard.top_up()  # before the first Qt call: see refguard for the PySide6 6.12 bug it covers
