"""Serves one client connection: moves messages, events and jobs between its transport, a Session and the pool.

Every protocol decision is the :class:`~multipa_server.session.Session`'s; this
adapter only does the I/O it asks for, over any
:class:`~multipa_server.transport.Transport` (a websocket in
:mod:`~multipa_server.app`, a :mod:`~multipa_server.memory_transport` pipe
in process); it imports no websocket library. One reader task feeds the session, one
writer task sends its events in order, one task per submitted turn waits on the
pool. Whatever ends the connection (session.end, an error, the idle timeout,
shutdown, the client vanishing), the session accounts for every turn, and when
the client is gone the terminal events it can no longer receive are logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Union

from .exceptions import PoolError, TransportClosed
from .pool import Job, WorkerPool
from .protocol import CloseCode, ErrorCode, ServerEvent, SessionStarted, TurnAssessed, TurnFailed, serialize
from .session import Action, Cancel, Close, Send, Session, SessionState, Submit
from .transport import Transport

log = logging.getLogger(__name__)


class Connection:
    """Drives one session until it is closed.

    Args:
        transport: the client's connection (a websocket, or anything with the
            :class:`~multipa_server.transport.Transport` methods).
        session: its protocol state machine.
        pool: where turns are assessed.
        shutdown: set when the server stops: the session drains and closes with 1001.
        drain_timeout_s: after shutdown, turns still unfinished then fail with ``shutting_down``.
        observe: called with every event (metrics), sent or not.
        max_outbox: events waiting to be sent; a client that lets more pile up is not
            reading and is disconnected (``slow_consumer``), so memory stays bounded.
        send_timeout_s: a send blocked this long (the client stopped reading) does the same.
    """

    def __init__(
        self,
        transport: Transport,
        session: Session,
        pool: WorkerPool,
        *,
        shutdown: asyncio.Event | None = None,
        drain_timeout_s: float = 60.0,
        observe: Callable[[ServerEvent], None] | None = None,
        max_outbox: int = 256,
        send_timeout_s: float = 30.0,
    ) -> None:
        self.transport = transport
        self.session = session
        self.pool = pool
        self.shutdown = shutdown or asyncio.Event()
        self.drain_timeout_s = drain_timeout_s
        self.observe = observe
        self.max_outbox = max_outbox
        self.send_timeout_s = send_timeout_s
        self._outbox: asyncio.Queue[Union[ServerEvent, Close, None]] = asyncio.Queue()
        self._jobs: dict[str, asyncio.Task[None]] = {}  # job id -> the task waiting on the pool
        self._gone = False
        self._aborting: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Serve until the session has closed the connection or the client has gone."""
        writer = asyncio.create_task(self._write())
        helpers = [asyncio.create_task(self._read()), asyncio.create_task(self._watch_shutdown())]
        try:
            await writer
        finally:
            jobs = list(self._jobs.values())
            for task in (*helpers, *jobs):
                task.cancel()
            await asyncio.gather(*helpers, *jobs, return_exceptions=True)

    # --- tasks --------------------------------------------------------------------

    async def _read(self) -> None:
        limits = self.session.limits
        loop = asyncio.get_running_loop()
        start_deadline = loop.time() + limits.start_timeout_s  # a client that never starts holds a slot for nothing
        while True:
            waiting = self.session.state in (SessionState.AWAITING_START, SessionState.STREAMING)
            timeout = limits.idle_timeout_s if waiting else None
            if self.session.state is SessionState.AWAITING_START:
                timeout = min(limits.idle_timeout_s, max(0.0, start_deadline - loop.time()))
            try:
                message = await asyncio.wait_for(self.transport.receive(), timeout)
            except asyncio.TimeoutError:
                starting = self.session.state is SessionState.AWAITING_START and loop.time() >= start_deadline
                self._step(self.session.start_timeout if starting else self.session.idle)
                continue
            except TransportClosed:
                self._disconnected()
                return
            if isinstance(message, str):
                self._step(self.session.receive_text, message)
            else:
                self._step(self.session.receive_audio, message)

    async def _write(self) -> None:
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            if isinstance(item, Close):
                try:
                    await self.transport.close(int(item.code), item.reason)
                except TransportClosed:
                    pass
                return
            try:
                await asyncio.wait_for(self.transport.send(serialize(item)), self.send_timeout_s)
            except asyncio.TimeoutError:
                self._lost(item)
                self._slow()
                return
            except TransportClosed:
                self._lost(item)
                while not self._outbox.empty():
                    self._lost(self._outbox.get_nowait())
                self._disconnected()
                return

    async def _watch_shutdown(self) -> None:
        await self.shutdown.wait()
        self._step(self.session.shutdown)
        await asyncio.sleep(self.drain_timeout_s)
        self._step(
            self.session.abort,
            ErrorCode.SHUTTING_DOWN,
            "the server could not finish this turn before shutting down",
            CloseCode.GOING_AWAY,
        )

    async def _job(self, turn_id: int, job: Job) -> None:
        try:
            result = await self.pool.submit(job)
        except PoolError as exc:
            self._step(self.session.job_failed, turn_id, exc.code, str(exc), job.id)
        except Exception:
            log.exception("session %s: turn %d: the pool failed", self.session.id, turn_id)
            self._step(
                self.session.job_failed,
                turn_id,
                ErrorCode.INTERNAL_ERROR.value,
                "the assessment failed unexpectedly",
                job.id,
            )
        else:
            self._step(self.session.job_succeeded, turn_id, result, job.id)

    def _submit(self, action: Submit) -> None:
        if action.speculative and not _idle_worker(self.pool):
            # a speculation only uses spare capacity; the turn is submitted when it ends. What the
            # session asks for in return (the turn's own job) is carried out in this same step.
            self._call(self.session.job_failed, action.turn_id, "speculation_skipped", "no idle worker", action.job.id)
            return
        task = asyncio.create_task(self._job(action.turn_id, action.job))
        self._jobs[action.job.id] = task
        task.add_done_callback(lambda _: self._jobs.pop(action.job.id, None))

    # --- helpers ------------------------------------------------------------------

    def _step(self, method: Callable[..., None], *args: Any) -> None:
        """Call one session input, then carry out what it asks for, including what carrying
        it out makes the session ask for (a skipped speculation), until nothing is left."""
        self._call(method, *args)
        while True:
            actions = self.session.actions()
            if not actions:
                break
            self._carry_out(actions)
        if self._gone:
            self._outbox.put_nowait(None)

    def _call(self, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:  # a bug: the client gets a code, never a traceback
            log.exception("session %s: internal error", self.session.id)
            self.session.abort(ErrorCode.INTERNAL_ERROR, "internal server error", CloseCode.INTERNAL_ERROR)

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                if isinstance(action.event, SessionStarted) and self.session.start is not None:
                    log.info(
                        "session %s: started, %s Hz, %s, realtime=%s, metadata %s",
                        self.session.id,
                        action.event.sample_rate,
                        action.event.mode.value,
                        action.event.realtime,
                        json.dumps(self.session.start.metadata)[:500],
                    )
                if self.observe is not None:
                    self.observe(action.event)
                if self._gone:  # the turn's fate still goes on record
                    level = logging.WARNING if isinstance(action.event, (TurnAssessed, TurnFailed)) else logging.INFO
                    log.log(level, "session %s (client gone): %s", self.session.id, serialize(action.event)[:300])
                elif self._outbox.qsize() >= self.max_outbox:
                    self._lost(action.event)
                    self._slow()
                else:
                    self._outbox.put_nowait(action.event)
            elif isinstance(action, Submit):
                self._submit(action)
            elif isinstance(action, Cancel):
                task = self._jobs.pop(action.job_id, None)
                if task is not None:
                    task.cancel()  # withdraws it if queued; a running one finishes unheard
            elif not self._gone:
                self._outbox.put_nowait(action)

    def _slow(self) -> None:
        """The client does not read what we send: drop it rather than buffer without end."""
        if self._gone:
            return
        log.warning(
            "session %s: the client is not reading its events; disconnecting it (%s)",
            self.session.id,
            ErrorCode.SLOW_CONSUMER.value,
        )
        while not self._outbox.empty():
            self._lost(self._outbox.get_nowait())
        self._disconnected()
        self._aborting = asyncio.get_running_loop().create_task(self._abort())

    async def _abort(self) -> None:
        try:
            await asyncio.wait_for(
                self.transport.close(int(CloseCode.POLICY_VIOLATION), ErrorCode.SLOW_CONSUMER.value), 5.0
            )
        except (asyncio.TimeoutError, TransportClosed):
            pass
        finally:
            self.transport.abort()  # the close frame could not get through a full buffer

    def _lost(self, item: Union[ServerEvent, Close, None]) -> None:
        if isinstance(item, (TurnAssessed, TurnFailed)):
            log.warning(
                "session %s: the client left before receiving %s of turn %d", self.session.id, item.type, item.turn_id
            )

    def _disconnected(self) -> None:
        if self._gone:
            return
        self._gone = True
        if self.session.state is not SessionState.CLOSED:
            log.info("session %s: the client disconnected", self.session.id)
        self._step(self.session.disconnected)
        for task in list(self._jobs.values()):
            task.cancel()  # withdraws queued jobs; nobody is left to tell


def _idle_worker(pool: WorkerPool) -> bool:
    """Whether a job submitted now would start at once."""
    stats = pool.stats()
    return stats.queued == 0 and stats.ready > stats.busy
