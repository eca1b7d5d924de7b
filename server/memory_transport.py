"""A connection in memory: two ends, each a :class:`~multipa_server.transport.Transport`.

For tests, and for integrations that run the server in the same process as the
client (a framework plugin's test, an embedded assessment service): hand one
end to a :class:`~multipa_server.connection.Connection`, play the client with
the other. Messages arrive whole and in order; a close is seen by the other end
after the messages sent before it, with its code and reason; an abort drops
what was not yet received and reads as close code 1006, as a dropped TCP
connection does. Whoever runs the Connection closes its end once ``run``
returns, as the websocket server does when its handler returns (a no-op when
the session has closed it already)::

    server_end, client_end = memory_pipe()
    serving = asyncio.create_task(Connection(server_end, Session("s1"), pool).run())
    await client_end.send(json.dumps({"type": "session.start", "sample_rate": 16000}))
    print(await client_end.receive())  # {"type":"session.started",...}
    ...
    await serving
    await server_end.close()

Nothing here imports websockets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Union

from .exceptions import TransportClosed

__all__ = ["MemoryTransport", "memory_pipe"]

ABNORMAL_CLOSURE = 1006  # the websocket close code of a connection dropped without a close frame

Message = Union[str, bytes]


class _Channel:
    """One direction: messages in order, then the end, if any."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity  # 0: unbounded
        self.items: deque[Message] = deque()
        self.end: TransportClosed | None = None
        self._changed = asyncio.Event()

    async def put(self, message: Message) -> None:
        while self.end is None and self.capacity and len(self.items) >= self.capacity:
            await self._wait()
        if self.end is not None:
            raise _copy(self.end)
        self.items.append(message)
        self._wake()

    async def get(self) -> Message:
        while not self.items and self.end is None:
            await self._wait()
        if self.items:
            message = self.items.popleft()
            self._wake()
            return message
        assert self.end is not None
        raise _copy(self.end)

    def finish(self, end: TransportClosed, *, drop: bool) -> None:
        if self.end is None:
            self.end = end
        if drop:
            self.items.clear()
        self._wake()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()


def _copy(end: TransportClosed) -> TransportClosed:
    return TransportClosed(str(end), close_code=end.close_code, reason=end.reason)


class MemoryTransport:
    """One end of a :func:`memory_pipe`: what it sends, the other end receives."""

    def __init__(self, inbox: _Channel, outbox: _Channel) -> None:
        self._inbox = inbox
        self._outbox = outbox

    async def receive(self) -> Message:
        """The next message from the other end.

        Raises:
            TransportClosed: after the messages sent before a close or an abort, with its code.
        """
        return await self._inbox.get()

    async def send(self, message: Message) -> None:
        """Hand a message to the other end; waits while it holds ``capacity`` unread messages.

        Raises:
            TransportClosed: either end has closed or aborted.
        """
        await self._outbox.put(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End both directions with this code and reason (idempotent; the first close wins)."""
        end = TransportClosed(f"the connection closed (code {code})", close_code=code, reason=reason)
        self._outbox.finish(end, drop=False)
        self._inbox.finish(end, drop=False)

    def abort(self) -> None:
        """Drop the connection: unread messages are lost and both ends read close code 1006."""
        end = TransportClosed("the connection was dropped", close_code=ABNORMAL_CLOSURE)
        self._outbox.finish(end, drop=True)
        self._inbox.finish(end, drop=True)

    @property
    def closed(self) -> TransportClosed | None:
        """How this end's incoming side ended (code and reason), or None while it is open."""
        return self._inbox.end


def memory_pipe(capacity: int = 0) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected ends.

    Args:
        capacity: unread messages each direction holds before ``send`` waits (0: no limit);
            a small one plays a client that does not read.

    Returns:
        The server's end and the client's end (the two are alike).
    """
    up, down = _Channel(capacity), _Channel(capacity)
    return MemoryTransport(up, down), MemoryTransport(down, up)
