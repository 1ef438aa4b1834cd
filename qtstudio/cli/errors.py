"""The command line's own error: a problem reported to the user as one line, exit status 2."""

from __future__ import annotations


class CliError(Exception):
    """A problem to report to the user as one line, with exit status 2."""
