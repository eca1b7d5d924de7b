"""Exceptions of multipa_client.

Every error the SDK raises on purpose derives from :class:`MultipaClientError`;
the ones that carry the server's answer have its machine-readable ``code`` and
its sentence (``str(err)``)::

    MultipaClientError
    ├── AuthenticationError     the server answered 401: no or a wrong API key
    ├── ConnectionRefused       the server could not be reached, or refused the handshake (status)
    ├── ServerError             a fatal ``error`` event ended the session (code, message)
    ├── ConnectionLost          the connection dropped and reconnecting was off or gave up
    ├── InvalidEvent            a known event the SDK cannot read (a server of another version)
    ├── AudioError              audio the SDK cannot read or convert
    └── MissingDependency       an optional package is not installed (names the extra)
"""

from __future__ import annotations


class MultipaClientError(Exception):
    """Root of every error raised on purpose by multipa_client."""

    code: str = "client_error"


class AuthenticationError(MultipaClientError):
    """The server refused the API key (HTTP 401); retrying with the same key cannot help."""

    code = "unauthorized"


class ConnectionRefused(MultipaClientError):
    """The server could not be reached, or answered the handshake with ``status`` (not 101)."""

    code = "connection_refused"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerError(MultipaClientError):
    """A fatal ``error`` event from the server; ``code`` is the protocol's (``too_fast``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


class ConnectionLost(MultipaClientError):
    """The connection dropped mid-session and could not be resumed."""

    code = "connection_lost"


class InvalidEvent(MultipaClientError):
    """A server event of a known type with missing or ill-typed fields."""

    code = "invalid_event"


class AudioError(MultipaClientError):
    """Audio the SDK cannot read (a missing file, an unknown format) or convert."""

    code = "bad_audio"


class MissingDependency(MultipaClientError):
    """An optional dependency is missing; the message names the pip extra that installs it."""

    code = "missing_dependency"
