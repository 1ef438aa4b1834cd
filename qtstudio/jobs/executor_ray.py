"""Run a job's tasks on a Ray cluster, results in task order, cancel and worker death handled.

The driver (the CLI or the window's job process) connects as a Ray client of a running cluster
and submits tasks a bounded window ahead of the writer: at most ``window`` tasks past the next
one the writer needs are submitted or held, so the object store and the driver hold a few
results, never the model. Results are fetched in order. A worker that dies (killed, out of
memory, node lost) has its task resubmitted by Ray up to ``max_retries`` times; the tasks are
pure functions of their arguments and of the checkpoint, so a retry gives the same bytes.
When the job stops early the outstanding tasks are cancelled (their workers are stopped).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from qtstudio.core.progress import Cancelled, CancelToken

from .executor_base import ClusterError, Executor, TaskEvent

#: attempts after the first when a task's worker dies; application errors are not retried
MAX_RETRIES = 3
#: seconds between checks of the cancel token while waiting for results
_WAIT_S = 0.1
_LOST = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError",
         "OutOfMemoryError", "ObjectReconstructionFailedError", "LocalRayletDiedError",
         "TaskUnschedulableError", "ObjectFetchTimedOutError")


def _reachable(address: str) -> None:
    """A quick TCP check of HOST:PORT (Ray's own client retries for about a minute)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray {address}: expected 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: "
                           f"{exc.strerror or exc} (is `ray start --head` running there?)"
                           ) from None


def _connect(address: str) -> tuple[Any, bool]:
    """(the ray module, whether this call opened the connection)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return ray, False
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                 logging_level="warning", include_dashboard=False)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError from the client
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (" (is a cluster running? start one with `ray start --head`)"
                if address == "auto" else "")
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {first}{hint}"
                           ) from None
    return ray, True


class RayExecutor(Executor):
    """Tasks as Ray tasks of ``threads`` CPUs each (one codec thread each by default)."""

    name = "ray"

    def __init__(self, address: str = "auto", *, threads: int | None = None,
                 window: int | None = None, max_retries: int = MAX_RETRIES) -> None:
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.address = address
        self._ray, self._owns_connection = _connect(address)
        self._cpus = threads or 1
        self._max_retries = max_retries
        cpus = float(self._ray.cluster_resources().get("CPU", 0))
        if cpus < self._cpus:
            raise ClusterError(f"the Ray cluster at {address} has {cpus:g} CPUs; a task needs "
                               f"{self._cpus} (lower --threads)")
        self._parallelism = max(1, int(cpus // self._cpus))
        self._window = window or max(2, 2 * self._parallelism)
        self._remotes: dict[Callable[..., Any], Any] = {}

    @property
    def parallelism(self) -> int:
        return self._parallelism

    @property
    def task_threads(self) -> int | None:
        return self._cpus

    def describe(self) -> str:
        return f"Ray cluster {self.address} ({self._parallelism} tasks at once)"

    def _remote(self, fn: Callable[..., Any]) -> Any:
        r = self._remotes.get(fn)
        if r is None:
            r = self._ray.remote(num_cpus=self._cpus, max_retries=self._max_retries,
                                 retry_exceptions=False)(fn)
            self._remotes[fn] = r
        return r

    def _get(self, ref: Any, label: str) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ModuleNotFoundError) and "qtstudio" in str(cause):
                raise ClusterError("a Ray worker cannot import qtstudio: install the same "
                                   "qtstudio on every node (see docs/ray.md)") from None
            if isinstance(cause, Exception):
                raise cause from None
            raise ClusterError(f"{label} failed on the cluster: {_first_line(exc)}") from None
        except ray.exceptions.RayError as exc:
            if type(exc).__name__ in _LOST:
                raise ClusterError(f"{label} was lost on the cluster after "
                                   f"{self._max_retries} retries: {_first_line(exc)}") from None
            raise ClusterError(f"{label} failed on the cluster: {_first_line(exc)}") from None

    def ordered(self, fn: Callable[..., Any], tasks: Sequence[tuple],
                cancel: CancelToken | None = None, labels: Sequence[str] | None = None,
                ) -> Iterator[TaskEvent]:
        ray = self._ray
        remote = self._remote(fn)
        n = len(tasks)
        refs: dict[int, Any] = {}      # submitted, not yet handed to the writer
        pending: dict[Any, int] = {}   # submitted, not yet finished
        ready: set[int] = set()
        submitted = finished = next_i = 0
        try:
            while next_i < n:
                while submitted < n and submitted < next_i + self._window:
                    ref = remote.remote(*tasks[submitted])
                    refs[submitted] = ref
                    pending[ref] = submitted
                    submitted += 1
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled")
                if next_i in ready:
                    ready.discard(next_i)
                    label = labels[next_i] if labels else f"task {next_i + 1} of {n}"
                    value = self._get(refs.pop(next_i), label)
                    yield TaskEvent(finished, n, next_i, value)
                    next_i += 1
                    continue
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_WAIT_S)
                for ref in done:
                    ready.add(pending.pop(ref))
                    finished += 1
                if done and next_i not in ready:
                    yield TaskEvent(finished, n, None)
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):  # already finished or gone
                    ray.cancel(ref, force=True)
            refs.clear()
            pending.clear()

    def close(self) -> None:
        """Disconnect, if this executor opened the connection (the cluster keeps running)."""
        if self._owns_connection and self._ray.is_initialized():
            self._ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
