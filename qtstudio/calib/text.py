"""Calibration text: a user's UTF-8 file, or the corpus every Python install carries.

The default corpus is the English reference documentation the standard library ships for
``help()`` (``pydoc_data.topics``): about 460k characters of prose and code about Python. It is
always there, so ``eval`` and ``imatrix`` work out of the box, but it is weaker than text like the
model's real inputs: an importance matrix or a KL figure measured on it says how the model fares
on Python documentation, not on the user's task. Pass ``--data FILE`` for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CalibrationError

DEFAULT_CORPUS_NAME = "pydoc_data.topics (Python reference documentation)"
#: refuse files beyond this before reading them whole: calibration sets are megabytes
MAX_TEXT_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class CalibrationText:
    text: str
    #: where it came from: a file path, or DEFAULT_CORPUS_NAME
    source: str
    path: Path | None = None

    @property
    def label(self) -> str:
        return self.path.name if self.path is not None else "pydoc_data.topics"


def default_corpus() -> CalibrationText:
    """The standard library's help topics, in a fixed (sorted) order."""
    from pydoc_data import topics

    parts = [topics.topics[k].strip() for k in sorted(topics.topics)]
    return CalibrationText("\n\n".join(p for p in parts if p), DEFAULT_CORPUS_NAME)


def read_text_file(path: str | Path) -> CalibrationText:
    """A UTF-8 text file; empty, binary or undecodable files are refused with one line."""
    p = Path(path)
    try:
        if p.is_dir():
            raise CalibrationError(p, "is a folder, not a text file")
        size = p.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise CalibrationError(p, f"{size} bytes is more calibration text than this tool "
                                      f"reads (limit {MAX_TEXT_BYTES // (1024 * 1024)} MiB)")
        data = p.read_bytes()
    except CalibrationError:
        raise
    except OSError as exc:
        raise CalibrationError(p, f"cannot read: {exc.strerror or exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise CalibrationError(p, "the calibration file is empty")
    if b"\x00" in data:
        raise CalibrationError(p, "holds NUL bytes: a binary file, not UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CalibrationError(p, f"is not UTF-8 text (byte {exc.start}: invalid "
                                  f"{exc.reason})") from None
    controls = sum(1 for ch in text[:65536] if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if controls > max(8, len(text[:65536]) // 100):
        raise CalibrationError(p, "is mostly control characters: a binary file, not text")
    return CalibrationText(text, str(p), p)


def load_text(path: str | Path | None) -> CalibrationText:
    """The file at ``path``, or the default corpus when ``path`` is None."""
    return default_corpus() if path is None else read_text_file(path)
