"""Running ``python -m qtstudio.cli`` as a child process, as a user at a terminal would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def interrupt_after_progress(args: list[str], *, wait_s: float = 60) -> tuple[int, str, str]:
    """Start the command, send it SIGINT (Ctrl-C) once its progress bar shows a percentage on
    stderr (or after ``wait_s``), and return (exit status, stdout, rest of stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "qtstudio.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    deadline = time.monotonic() + wait_s
    line = ""
    while time.monotonic() < deadline and "%" not in line:
        line = proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err
