"""What a session's connection needs of the wire: send, receive, close, abort.

:class:`~multipa_server.connection.Connection` drives a session over any
object with these four methods; it never sees a socket. The websocket server
adapts websockets' connections to it (:class:`multipa_server.app.WebsocketTransport`);
:mod:`multipa_server.memory_transport` is a pair of in-memory ends, for tests
and for in-process integrations that have no websocket. A transport carries the
protocol's messages whole: a ``str`` is a JSON text message, ``bytes`` audio.
"""

from __future__ import annotations

from typing import Protocol, Union

from .exceptions import TransportClosed

__all__ = ["Transport", "TransportClosed"]


class Transport(Protocol):
    """One connection to a client, as the session's connection uses it."""

    async def receive(self) -> Union[str, bytes]:
        """The client's next message: text (``str``) or audio (``bytes``).

        Raises:
            TransportClosed: the client is gone or the connection was closed.
        """
        ...

    async def send(self, message: str) -> None:
        """Send one text message; may wait while the client is not reading (the caller bounds it).

        Raises:
            TransportClosed: the client is gone or the connection was closed.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close code and reason, as a websocket does (idempotent)."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake (idempotent): for a client
        that does not read, whose buffer a close could not get through."""
        ...
