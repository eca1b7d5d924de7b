"""The embedded worker pool: N local processes, each holding the models once.

Jobs wait in a bounded queue, fair between sessions
(:class:`~multipa_server.pool.FairQueue`), and go to idle workers; an idle worker takes up to
``WorkerOptions.batch`` waiting jobs at once and assesses them together (one encoder
and scorer pass; a job sent again after a crash goes alone). A worker that dies on a job
(a segfault, the OOM killer) is replaced and the job runs once more on another
worker; if that one dies too the job fails with ``worker_crashed``. A worker that
dies while idle is noticed at once (the event loop watches its process sentinel) and
replaced, after a growing back-off when it keeps dying soon after it started. A job that
outlives the job timeout fails with ``timeout`` and its worker, which may be
stuck, is killed and replaced. Workers are spawned (never forked: the server's
event loop and threads must not be copied) and talk over a pipe each; the
blocking pipe calls run on a small thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import multiprocessing
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Callable

from . import worker
from .exceptions import (
    AssessmentError,
    JobTimeoutError,
    OverloadedError,
    PoolClosedError,
    PoolStartError,
    WorkerCrashedError,
)
from .pool import FairQueue, Job, JobResult, PoolStats, WorkerPool

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # a job whose worker crashed runs once more, then fails
RESPAWN_DELAYS_S = (1.0, 5.0, 30.0)  # between failed restarts of a worker
STABLE_S = 60.0  # a worker that dies again this soon after it was ready is crash-looping ...
CRASH_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # ... and waits this long before its next restart


@dataclass(frozen=True)
class LocalPoolOptions:
    """Size and timeouts of the embedded pool."""

    workers: int = 1  # processes, each with its own copy of the models
    max_queue: int = 16  # jobs waiting for a worker; beyond, new turns fail with overloaded
    job_timeout_s: float = 120.0  # queue plus assessment; past it the job fails with timeout
    start_timeout_s: float = 600.0  # a worker not ready by then has failed to start
    worker: worker.WorkerOptions = field(default_factory=worker.WorkerOptions)  # what each worker loads


class _SlotState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    DEAD = "dead"


@dataclass
class _Slot:
    index: int
    process: Any = None  # multiprocessing.Process
    conn: Connection | None = None
    state: _SlotState = _SlotState.STARTING
    name: str = ""
    ready_at: float | None = None  # loop time it last became ready
    quick_deaths: int = 0  # deaths in a row within STABLE_S of being ready
    watched: int | None = None  # the process sentinel the event loop watches


@dataclass
class _Entry:
    job: Job
    future: asyncio.Future[JobResult]
    submitted: float
    attempts: int = 0
    abandoned: bool = False  # the submitter stopped waiting (cancelled or timed out)
    timed_out: bool = False


class LocalPool(WorkerPool):
    """Worker processes on this machine.

    Args:
        options: pool size, queue bound, timeouts and worker options.
        target: the worker entry point (tests pass a fake with the same pipe protocol).
    """

    def __init__(
        self,
        options: LocalPoolOptions | None = None,
        *,
        target: Callable[[Connection, worker.WorkerOptions], None] = worker.main,
    ) -> None:
        self.options = options or LocalPoolOptions()
        self._target = target
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i) for i in range(self.options.workers)]
        self._queue: FairQueue[_Entry] = FairQueue(lambda e: e.job.session, self.options.max_queue)
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=2 * self.options.workers + 1, thread_name_prefix="multipa-pool"
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running: dict[int, tuple[_Slot, _Entry]] = {}  # id(entry) -> where it runs
        self._closed = False
        self._restarts = 0

    # --- WorkerPool ---------------------------------------------------------------

    async def start(self) -> None:
        results = await asyncio.gather(*(self._start_slot(s) for s in self._slots), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise errors[0]

    async def submit(self, job: Job) -> JobResult:
        displaced = self._queue.admit(self._closed, job.session)
        if displaced is not None and not displaced.future.done():
            displaced.future.set_exception(
                OverloadedError(
                    "the queue is full and this session has more turns waiting than others; try again later"
                )
            )
        loop = asyncio.get_running_loop()
        entry = _Entry(job, loop.create_future(), loop.time())
        self._queue.append(entry)
        self._dispatch()
        try:
            return await asyncio.wait_for(asyncio.shield(entry.future), self.options.job_timeout_s)
        except asyncio.TimeoutError:
            self._abandon(entry, timed_out=True)
            raise JobTimeoutError(f"no assessment within {self.options.job_timeout_s:.0f} s") from None
        except asyncio.CancelledError:
            self._abandon(entry)
            raise

    async def close(self) -> None:
        self._closed = True
        while self._queue:
            entry = self._queue.popleft()
            if not entry.future.done():
                entry.future.set_exception(PoolClosedError("the worker pool is shutting down"))
        for _, entry in self._running.values():
            if not entry.future.done():
                entry.future.set_exception(PoolClosedError("the worker pool shut down during the assessment"))
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            self._unwatch(slot)
        slots = [s for s in self._slots if s.process is not None]
        await asyncio.gather(
            *(
                loop.run_in_executor(self._threads, _stop_process, s.process, s.conn, s.state is not _SlotState.BUSY)
                for s in slots
            )
        )
        for slot in slots:
            slot.state, slot.process, slot.conn = _SlotState.DEAD, None, None
        for task in list(self._tasks):
            task.cancel()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> PoolStats:
        alive = [
            s
            for s in self._slots
            if s.state in (_SlotState.READY, _SlotState.BUSY) and s.process is not None and s.process.is_alive()
        ]
        busy = sum(1 for s in alive if s.state is _SlotState.BUSY)
        return PoolStats(len(self._slots), len(alive), busy, len(self._queue), self.options.max_queue, self._restarts)

    # --- internals ----------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=self._target, args=(child, self.options.worker), name=f"multipa-worker-{slot.index}", daemon=True
        )
        process.start()
        child.close()  # so that the parent's recv sees EOF when the worker dies
        slot.process, slot.conn, slot.state = process, parent, _SlotState.STARTING
        slot.name = f"local-{slot.index}:{process.pid}"

    async def _start_slot(self, slot: _Slot) -> None:
        self._spawn(slot)
        assert slot.conn is not None
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(self._threads, _receive, slot.conn, self.options.start_timeout_s)
        if isinstance(reply, worker.Ready):
            slot.state, slot.ready_at = _SlotState.READY, loop.time()
            self._watch(slot)
            log.info("worker %s ready on %s", slot.name, reply.device)
            self._dispatch()
            return
        slot.state = _SlotState.DEAD
        await loop.run_in_executor(self._threads, _stop_process, slot.process, slot.conn, False)
        slot.process = slot.conn = None
        if isinstance(reply, worker.Failed):
            raise PoolStartError(f"worker {slot.name} could not load the models: [{reply.code}] {reply.message}")
        raise PoolStartError(f"worker {slot.name} {reply}")

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.state is _SlotState.READY:
                entries = [self._queue.popleft()]
                while (
                    len(entries) < self.options.worker.batch
                    and self._queue
                    and entries[0].attempts == 0
                    and self._queue[0].attempts == 0
                ):
                    entries.append(self._queue.popleft())
                slot.state = _SlotState.BUSY
                self._spawn_task(self._run(slot, entries))

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, slot: _Slot, entries: list[_Entry]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert slot.conn is not None
        for entry in entries:
            entry.attempts += 1
            self._running[id(entry)] = (slot, entry)
        message = entries[0].job if len(entries) == 1 else [e.job for e in entries]  # a list: one batch
        try:
            reply = await loop.run_in_executor(self._threads, _call, slot.conn, message)
        except (EOFError, OSError) as exc:
            log.error(
                "worker %s died on job %s (%s)", slot.name, ", ".join(e.job.id for e in entries), type(exc).__name__
            )
            self._crashed(slot, entries)
            return
        finally:
            for entry in entries:
                self._running.pop(id(entry), None)
        slot.state = _SlotState.READY
        for entry, answer in zip(entries, reply if isinstance(message, list) else [reply]):
            if not entry.abandoned and not entry.future.done():
                if isinstance(answer, worker.Done):
                    entry.future.set_result(
                        JobResult(
                            answer.assessment,
                            _ms(started - entry.submitted),
                            _ms(loop.time() - started),
                            slot.name,
                            entry.attempts,
                        )
                    )
                else:
                    entry.future.set_exception(AssessmentError(answer.code, answer.message))
        self._dispatch()

    def _crashed(self, slot: _Slot, entries: list[_Entry]) -> None:
        slot.state = _SlotState.DEAD
        if not self._closed:
            self._spawn_task(self._replace(slot))
        for entry in reversed(entries):  # reversed: they go back to the head of the queue in order
            if entry.abandoned or entry.future.done():
                continue
            if self._closed:
                entry.future.set_exception(PoolClosedError("the worker pool is shutting down"))
            elif entry.attempts < MAX_ATTEMPTS:
                self._queue.appendleft(entry)  # first in line: it has waited longest
            else:
                entry.future.set_exception(WorkerCrashedError(f"the worker died on this turn {entry.attempts} times"))
        self._dispatch()

    def _watch(self, slot: _Slot) -> None:
        """Notice the worker's death the moment it happens (its process sentinel becomes
        readable), not at its next job: an idle worker that dies is replaced at once."""
        process, loop = slot.process, asyncio.get_running_loop()
        fd = process.sentinel

        def died() -> None:
            self._unwatch(slot)
            if self._closed or slot.process is not process or slot.state is not _SlotState.READY:
                return  # a busy worker's death is _run's to handle: it retries the job
            log.error("worker %s died while idle (exit code %s); replacing it", slot.name, process.exitcode)
            slot.state = _SlotState.DEAD
            self._spawn_task(self._replace(slot))

        loop.add_reader(fd, died)
        slot.watched = fd

    def _unwatch(self, slot: _Slot) -> None:
        if slot.watched is not None:
            asyncio.get_running_loop().remove_reader(slot.watched)
            slot.watched = None

    async def _replace(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        self._unwatch(slot)
        await loop.run_in_executor(self._threads, _stop_process, slot.process, slot.conn, False)
        slot.process = slot.conn = None
        lived = loop.time() - slot.ready_at if slot.ready_at is not None else STABLE_S
        slot.quick_deaths = slot.quick_deaths + 1 if lived < STABLE_S else 0
        # the first quick death restarts at once (a job timeout kills a worker too); a second one in a row backs off
        backoff = (
            CRASH_BACKOFF_S[min(slot.quick_deaths - 1, len(CRASH_BACKOFF_S)) - 1] if slot.quick_deaths > 1 else 0.0
        )
        if backoff:
            log.warning(
                "worker %d died %d times in a row within %.0f s of starting; backing off %.0f s before restarting it",
                slot.index,
                slot.quick_deaths,
                STABLE_S,
                backoff,
            )
        for attempt, delay in enumerate((backoff, *RESPAWN_DELAYS_S)):
            if self._closed:
                return
            await asyncio.sleep(delay)
            self._restarts += 1
            try:
                await self._start_slot(slot)
                return
            except PoolStartError as exc:
                log.error("restarting worker %d (attempt %d): %s", slot.index, attempt + 1, exc)
        log.error("worker %d stays down; %d workers left", slot.index, self.stats().ready)

    def _abandon(self, entry: _Entry, *, timed_out: bool = False) -> None:
        entry.abandoned, entry.timed_out = True, timed_out
        if entry in self._queue:
            self._queue.remove(entry)
        elif timed_out and id(entry) in self._running:
            slot, _ = self._running[id(entry)]
            if slot.process is not None:
                log.error("job %s timed out on worker %s; killing it", entry.job.id, slot.name)
                slot.process.kill()  # it may be stuck; _run sees EOF and replaces it
        if not entry.future.done():
            entry.future.cancel()


def _call(conn: Connection, message: Job | list[Job]) -> Any:
    conn.send(message)
    return conn.recv()


def _receive(conn: Connection, timeout: float) -> Any:
    """The worker's first message, or why there is none (a string)."""
    try:
        if not conn.poll(timeout):
            return f"was not ready within {timeout:.0f} s"
        return conn.recv()
    except (EOFError, OSError):
        return "exited while loading the models (see its log above)"


def _stop_process(process: Any, conn: Connection | None, polite: bool) -> None:
    """Ask a worker to exit (``polite``), else kill it; reap it either way."""
    if process is None:
        return
    if polite and conn is not None and process.is_alive():
        try:
            conn.send(None)
            process.join(timeout=10)
        except (OSError, EOFError, ValueError):
            pass
    if process.is_alive():
        process.kill()
    process.join(timeout=10)
    if conn is not None:
        conn.close()


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)
