"""The one exception every reader raises: :class:`ModelFormatError`.

It is defined in :mod:`qtstudio.core.format_error` (the model itself raises it for an unreadable
tensor, and core sits below the readers); readers and their callers import it from here or from
:mod:`qtstudio.formats`.
"""

from __future__ import annotations

from qtstudio.core.format_error import ModelFormatError

__all__ = ["ModelFormatError"]
