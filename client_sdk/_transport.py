"""How the client reaches a server: a websocket, or anything shaped like one.

The client only needs :class:`Transport` (open a connection, with the API key)
and :class:`Connection` (send text or bytes, receive text, close). The default
is :class:`WebsocketTransport` over ``websockets``;
:class:`multipa_client.testing.FakeServer` is another, for tests without a server.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, Union

from ._exceptions import AuthenticationError, ConnectionLost, ConnectionRefused


class Connection(Protocol):
    """One open connection to the stream endpoint."""

    async def send(self, message: Union[str, bytes]) -> None:
        """Send a text (JSON) or binary (PCM16) frame. Raises ConnectionLost once closed."""
        ...

    async def recv(self) -> str:
        """The next text frame. Raises ConnectionLost (with ``close_code``) once closed."""
        ...

    async def close(self) -> None:
        """Close (idempotent)."""
        ...


class Transport(Protocol):
    """Opens connections."""

    async def connect(self, url: str, *, api_key: str | None) -> Connection:
        """Raises AuthenticationError (401) or ConnectionRefused (anything else that is not an upgrade)."""
        ...


def lost(message: str, close_code: int | None = None, reason: str = "") -> ConnectionLost:
    exc = ConnectionLost(message)
    exc.close_code, exc.reason = close_code, reason  # type: ignore[attr-defined]
    return exc


class _WebsocketConnection:
    def __init__(self, ws: object) -> None:
        self._ws = ws

    async def send(self, message: Union[str, bytes]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(message)  # type: ignore[attr-defined]
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def recv(self) -> str:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                message = await self._ws.recv()  # type: ignore[attr-defined]
            except ConnectionClosed as exc:
                raise _closed(exc) from None
            if isinstance(message, str):
                return message  # the server sends no binary frames; skip any

    async def close(self) -> None:
        await self._ws.close()  # type: ignore[attr-defined]


def _closed(exc: Exception) -> ConnectionLost:
    rcvd = getattr(exc, "rcvd", None)
    code = rcvd.code if rcvd is not None else 1006
    reason = rcvd.reason if rcvd is not None else ""
    return lost(f"the connection closed (code {code}{', ' + reason if reason else ''})", code, reason)


class WebsocketTransport:
    """The real thing: ``websockets``' asyncio client; the key goes in ``Authorization: Bearer``.

    Args:
        open_timeout_s: how long the TCP connection and handshake may take.
    """

    def __init__(self, *, open_timeout_s: float = 15.0) -> None:
        self.open_timeout_s = open_timeout_s

    async def connect(self, url: str, *, api_key: str | None) -> Connection:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        try:
            ws = await connect(
                url, additional_headers=headers, max_size=None, compression=None, open_timeout=self.open_timeout_s
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = (exc.response.body or b"").decode("utf-8", "replace").strip()
            if status == 401:
                raise AuthenticationError(
                    f"{url}: the server refused the API key (401){': ' + body if body else ''}"
                ) from None
            raise ConnectionRefused(
                f"{url}: the server answered {status}{': ' + body if body else ''}", status=status
            ) from None
        except InvalidURI as exc:
            raise ConnectionRefused(f"{url}: not a ws:// or wss:// URL ({exc})") from None
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
            raise ConnectionRefused(f"{url}: cannot connect ({exc or type(exc).__name__})") from None
        return _WebsocketConnection(ws)
