"""The worker pool interface: a turn's audio in, its assessment out, asynchronously.

The server only knows :class:`WorkerPool`. Two implementations share its shape:
the embedded :class:`multipa_server.local_pool.LocalPool` (worker processes on
this machine, the default) and the MQTT pool of the distributed setup (workers
anywhere, jobs through a broker). Both keep these promises:

- :meth:`WorkerPool.submit` returns the assessment or raises a
  :class:`~multipa_server.exceptions.PoolError` whose ``code`` goes to the client
  in ``turn.failed``; it never hangs past the pool's job timeout.
- A full queue fails a new job at once with ``overloaded``: memory stays bounded.
- Cancelling a ``submit`` (the client went away) withdraws a queued job.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from .exceptions import OverloadedError, PoolClosedError


@dataclass(frozen=True)
class Job:
    """One turn to assess."""

    id: str  # "<session id>/<turn id>", for logs
    pcm: bytes  # PCM16 little-endian mono
    sample_rate: int  # of pcm
    reference: str | None = None  # the expected sentence (closed mode), else None


@dataclass(frozen=True)
class JobResult:
    """A job's assessment and where its time went."""

    assessment: dict[str, Any]  # Assessment.to_dict() of multipa_core
    queue_ms: float  # waiting for a worker
    assess_ms: float  # on the worker, transfer included
    worker: str  # which worker ran it
    attempts: int = 1  # 2 when a worker crashed on the first


@dataclass(frozen=True)
class PoolStats:
    """A snapshot for /healthz and /metrics."""

    workers: int  # configured
    ready: int  # loaded and alive
    busy: int  # running a job
    queued: int  # jobs waiting for a worker
    max_queue: int  # the queue's bound
    restarts: int  # workers replaced since start
    extra: dict[str, float] = field(default_factory=dict)  # implementation-specific gauges


class WorkerPool(abc.ABC):
    """Where turns get assessed; start once, submit many, close once."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Bring the workers up; returns once the pool can take jobs.

        Raises:
            PoolStartError: no worker could load its models.
        """

    @abc.abstractmethod
    async def submit(self, job: Job) -> JobResult:
        """Assess one turn.

        Raises:
            OverloadedError: the queue is full (raised at once).
            PoolClosedError: the pool is closing.
            WorkerCrashedError: the worker died on it twice.
            JobTimeoutError: it took longer than the job timeout.
            AssessmentError: the worker rejected the audio (code from multipa_core).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop taking jobs, fail the queued ones with ``shutting_down`` and stop the workers.

        Callers that want in-flight turns finished wait for them before closing.
        """

    @abc.abstractmethod
    def stats(self) -> PoolStats:
        """Current worker and queue counts."""


def check_admission(closed: bool, queued: int, max_queue: int) -> None:
    """What every pool's :meth:`WorkerPool.submit` checks first.

    Raises:
        PoolClosedError: the pool is closing.
        OverloadedError: ``queued`` jobs already wait and that is the bound.
    """
    if closed:
        raise PoolClosedError("the worker pool is shutting down")
    if queued >= max_queue:
        raise OverloadedError(f"{queued} turns are already waiting for a worker; try again later")
