"""The worker pool interface: a turn's audio in, its assessment out, asynchronously.

The server only knows :class:`WorkerPool`. Two implementations share its shape:
the embedded :class:`multipa_server.local_pool.LocalPool` (worker processes on
this machine, the default) and the MQTT pool of the distributed setup (workers
anywhere, jobs through a broker). Both keep these promises:

- :meth:`WorkerPool.submit` returns the assessment or raises a
  :class:`~multipa_server.exceptions.PoolError` whose ``code`` goes to the client
  in ``turn.failed``; it never hangs past the pool's job timeout.
- A full queue fails a new job at once with ``overloaded``: memory stays bounded.
- The queue is fair between sessions (:class:`FairQueue`): the next job is that
  of the session that asked least lately (turns offered plus jobs served: busy
  sessions take turns, a quiet session's turn goes ahead of their backlogs), while other sessions wait one session holds at most
  :data:`SESSION_QUEUE_SHARE` of the queue, and when the queue is full a session with fewer waiting jobs takes
  the place of the newest job of the greediest one, which fails with ``overloaded``.
- Cancelling a ``submit`` (the client went away) withdraws a queued job.
"""

from __future__ import annotations

import abc
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from .exceptions import OverloadedError, PoolClosedError


@dataclass(frozen=True)
class Job:
    """One turn to assess."""

    id: str  # "<session id>/<turn id>", for logs
    pcm: bytes  # PCM16 little-endian mono
    sample_rate: int  # of pcm
    reference: str | None = None  # the expected sentence (closed mode), else None

    @property
    def session(self) -> str:
        """The session the job comes from (what the fair queue shares the workers by)."""
        return self.id.partition("/")[0]


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


SESSION_QUEUE_SHARE = 0.25  # of max_queue, at most one session's waiting jobs (at least 1)
SERVICE_HALF_LIFE_S = 60.0  # how long a session's past turns count against its place in the queue

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Jobs waiting for a worker, one lane per session; the next job comes from the lane
    whose session has asked least of the workers lately: a count of its turns offered
    to the queue (admitted or refused) plus its jobs served, halved every
    :data:`SERVICE_HALF_LIFE_S` (ties: the lane that has waited longest).

    A session speaking at real time offers a turn every few seconds; one pushing turns
    offers many a second, most refused, and each refusal puts it further back. So a
    quiet session's turn goes ahead of such backlogs (under plain round robin it waited
    for one turn of each: beside seven such sessions on 2 cores, a minute), and busy
    sessions take turns among themselves (a served job moves its session back). A job
    put back with :meth:`appendleft` (sent again after a crash) goes first of all.

    Quacks like the deque the pools used before (``append``, ``appendleft``,
    ``popleft``, ``[0]``, ``remove``, ``in``, ``len``, iteration).

    Args:
        session: the session of an item.
        max_queue: the bound :meth:`admit` enforces.
        share: the part of ``max_queue`` one session may hold.
        clock: seconds, for the decay of service (a test passes its own).
    """

    def __init__(
        self,
        session: Callable[[T], str],
        max_queue: int,
        share: float = SESSION_QUEUE_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self.max_queue = max_queue
        self.per_session = max(1, int(max_queue * share))
        self._lanes: OrderedDict[str, deque[T]] = OrderedDict()  # ties in service go to the earlier lane
        self._size = 0
        self._clock = clock
        self._usage: dict[str, tuple[float, float]] = {}  # session -> (decayed turns offered + jobs served, when)
        self._urgent: str | None = None  # the lane of a job put back first in line

    def _used(self, key: str, now: float) -> float:
        value, at = self._usage.get(key, (0.0, now))
        return float(value * 0.5 ** ((now - at) / SERVICE_HALF_LIFE_S))

    def _use(self, key: str) -> None:
        now = self._clock()
        self._usage[key] = (self._used(key, now) + 1.0, now)
        if len(self._usage) > 4 * (len(self._lanes) + 16):  # forget sessions long gone: memory stays bounded
            self._usage = {k: v for k, v in self._usage.items() if k in self._lanes or self._used(k, now) > 0.01}

    def _next(self) -> str:
        """The lane the next job comes from."""
        if self._urgent is not None and self._urgent in self._lanes:
            return self._urgent
        now = self._clock()
        return min(self._lanes, key=lambda k: round(self._used(k, now), 3))  # min keeps the first of equals

    def admit(self, closed: bool, session: str) -> T | None:
        """Check a new job of ``session`` in; returns the waiting job it displaces, if any,
        which the caller fails with ``overloaded``.

        Raises:
            PoolClosedError: the pool is closing.
            OverloadedError: ``session`` holds its share of the queue already while other
                sessions wait too, or the
                queue is full of other sessions' jobs that hold no more than it does.
        """
        if closed:
            raise PoolClosedError("the worker pool is shutting down")
        self._use(session)  # asking counts, whether or not the turn gets in
        mine = len(self._lanes.get(session, ()))
        others = len(self._lanes) - (session in self._lanes)
        if others and mine >= self.per_session:  # alone, a session may use the whole queue
            raise OverloadedError(
                f"{mine} turns of this session are already waiting for a worker; other sessions get their share first"
            )
        if self._size < self.max_queue:
            return None
        greedy = max(self._lanes, key=lambda k: len(self._lanes[k]), default=None)
        if greedy is None or len(self._lanes[greedy]) <= mine + 1:
            raise OverloadedError(f"{self._size} turns are already waiting for a worker; try again later")
        lane = self._lanes[greedy]
        displaced = lane.pop()  # its newest: the one that has waited least
        self._size -= 1
        if not lane:
            del self._lanes[greedy]
        return displaced

    def append(self, item: T) -> None:
        key = self._session(item)
        if key not in self._lanes:
            self._lanes[key] = deque()  # a new lane is served after those already waiting
        self._lanes[key].append(item)
        self._size += 1

    def appendleft(self, item: T) -> None:
        """First in line (a job sent again after a crash: it has waited longest)."""
        key = self._session(item)
        self._lanes.setdefault(key, deque()).appendleft(item)
        self._lanes.move_to_end(key, last=False)
        self._urgent = key
        self._size += 1

    def popleft(self) -> T:
        if not self._lanes:
            raise IndexError("pop from an empty queue")
        key = self._next()
        self._urgent = None
        lane = self._lanes[key]
        item = lane.popleft()
        self._size -= 1
        if lane:
            self._lanes.move_to_end(key)  # among equals, this session's next job waits for the others
        else:
            del self._lanes[key]
        self._use(key)
        return item

    def remove(self, item: T) -> None:
        key = self._session(item)
        lane = self._lanes[key]
        lane.remove(item)
        self._size -= 1
        if not lane:
            del self._lanes[key]

    def __getitem__(self, index: int) -> T:
        if index != 0 or not self._lanes:
            raise IndexError("only the next item can be looked at")
        return self._lanes[self._next()][0]

    def __contains__(self, item: object) -> bool:
        return any(item in lane for lane in self._lanes.values())

    def __iter__(self) -> Iterator[T]:
        for lane in list(self._lanes.values()):
            yield from list(lane)

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0
