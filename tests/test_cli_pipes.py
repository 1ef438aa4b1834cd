"""The CLI behaves in shell pipelines: a closed reader is not an error."""

import subprocess
import sys


def test_closed_pipe_is_silent():
    cli = [sys.executable, "-c", "import sys; from qtstudio.cli import main; sys.exit(main())"]
    proc = subprocess.Popen([*cli, "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert first.startswith(b"qtstudio ")
    assert err == ""
