"""A throwaway Ray cluster on this machine: a head and worker nodes as `ray start` processes.

For the tests and benchmarks (and for trying ``--ray`` without a real cluster): every node is
its own ``ray start --block`` process in its own session, bound to 127.0.0.1 ports, with a
small object store and a private temporary folder. :meth:`LocalCluster.stop` ends exactly the
processes this object started (the node sessions, then anything still running from its
private folder), never other Ray instances on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: seconds to wait for a node to join before giving up
START_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> list[str]:
    exe = Path(sys.executable).with_name("ray")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "ray.scripts.scripts"]


class LocalCluster:
    """``with LocalCluster(workers=1) as c: ... c.address ...``: head plus worker nodes."""

    def __init__(self, *, workers: int = 1, cpus_per_node: int = 1,
                 object_store_bytes: int = 200 * 1000 * 1000) -> None:
        self.workers = workers
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # short: Ray puts socket paths under it, and those are limited to about 100 bytes
        self.temp_dir = Path(tempfile.mkdtemp(prefix="qtr", dir="/tmp"))
        self.procs: list[subprocess.Popen] = []
        self._log = open(self.temp_dir / "nodes.log", "ab")  # noqa: SIM115 - closed in stop()

    # -- lifecycle ----------------------------------------------------------------------------
    def _node(self, *extra: str) -> None:
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        cmd = [*_ray_cli(), "start", "--block", "--disable-usage-stats",
               f"--num-cpus={self.cpus_per_node}",
               f"--object-store-memory={self.object_store_bytes}",
               "--node-ip-address=127.0.0.1", *extra]
        self.procs.append(subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=env,
                                           start_new_session=True))

    def start(self) -> LocalCluster:
        try:
            self._node("--head", f"--port={self.port}", "--include-dashboard=false",
                       f"--temp-dir={self.temp_dir}",
                       f"--ray-client-server-port={_free_port()}")
            self._wait_port()
            for _ in range(self.workers):  # they join as soon as the head's GCS answers
                self._node(f"--address={self.address}")
            self._wait_nodes(1 + self.workers)
        except BaseException:
            self.stop()
            raise
        return self

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def _wait_port(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._listening():
            self._check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local Ray head did not listen on {self.address} in "
                                   f"{START_TIMEOUT_S:.0f} s; see {self.temp_dir / 'nodes.log'}")
            time.sleep(0.2)

    def _check_running(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"a Ray node exited at start (code {p.returncode}); see "
                                   f"{self.temp_dir / 'nodes.log'}")

    def _alive_nodes(self) -> int:
        if not self._listening():  # `ray status` retries for a minute while nobody listens
            return 0
        r = subprocess.run([*_ray_cli(), "status", f"--address={self.address}"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
        if r.returncode != 0:
            return 0
        active = r.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return active.count("node_")

    def _wait_nodes(self, n: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_running()
            if self._alive_nodes() >= n:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the local Ray cluster did not reach {n} nodes in "
                           f"{START_TIMEOUT_S:.0f} s; see {self.temp_dir / 'nodes.log'}")

    def worker_pids(self, task_name: str | None = None) -> list[int]:
        """Ray worker processes of this cluster (optionally only those running ``task_name``)."""
        out = []
        for pid in _pids():
            cmd = _cmdline(pid)
            if not cmd.startswith("ray::") or "Agent" in cmd or "Runtime" in cmd:
                continue
            if task_name is not None and task_name not in cmd:
                continue
            if self._ours(pid):
                out.append(pid)
        return out

    def _ours(self, pid: int) -> bool:
        """Started by one of this cluster's node sessions, or running from its folder."""
        try:
            sid = os.getsid(pid)
        except OSError:
            return False
        if sid in {p.pid for p in self.procs}:
            return True
        with contextlib.suppress(OSError):
            env = Path(f"/proc/{pid}/environ").read_bytes()
            if str(self.temp_dir).encode() in env:
                return True
        return str(self.temp_dir) in _cmdline(pid, raw=True)

    def stop(self) -> None:
        """End every process of this cluster; wait for them; remove its folder."""
        for p in self.procs:
            with contextlib.suppress(OSError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
        for _ in range(3):
            left = [pid for pid in _pids() if self._ours(pid)]
            sessions = {p.pid for p in self.procs}
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for sid in sessions:
                with contextlib.suppress(OSError):
                    os.killpg(sid, signal.SIGKILL)
            if not left:
                break
            time.sleep(0.5)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        self.procs.clear()
        self._log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _cmdline(pid: int, raw: bool = False) -> str:
    try:
        data = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return data.replace(b"\0", b" ").decode("utf-8", "replace").strip()
