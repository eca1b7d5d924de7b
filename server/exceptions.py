"""Exceptions of multipa_server.

Every error raised on purpose derives from :class:`ServerError` and carries a
machine-readable ``code`` (the one a client sees in an ``error`` or
``turn.failed`` event) and a human sentence (``str(err)``)::

    ServerError                       code: internal_error
    ├── ProtocolError                 code: an ErrorCode of the protocol (malformed_json, ...)
    ├── PoolError                     code: internal_error
    │   ├── OverloadedError           code: overloaded
    │   ├── WorkerCrashedError        code: worker_crashed
    │   ├── WorkerUnavailableError    code: worker_unavailable (MQTT pool)
    │   ├── JobTimeoutError           code: timeout
    │   ├── PoolClosedError           code: shutting_down
    │   ├── PoolStartError            code: worker_start_failed
    │   └── AssessmentError           code: from multipa_core (audio_too_short, audio_silent, ...)
    ├── TransportClosed               code: client_disconnected (the peer of a connection is gone)
    └── ConfigError                   code: config_error
"""

from __future__ import annotations


class ServerError(Exception):
    """Root of every error raised on purpose by multipa_server."""

    code: str = "internal_error"


class ProtocolError(ServerError):
    """A client message breaks the protocol.

    Args:
        code: the protocol's :class:`~multipa_server.protocol.ErrorCode` (its string value).
        message: a sentence for the client.
        message_type: the ``type`` of the offending message when it was readable.
    """

    def __init__(self, code: str, message: str, *, message_type: str | None = None) -> None:
        super().__init__(message)
        self.code: str = getattr(code, "value", code)  # the plain string, also for an enum member
        self.message_type = message_type


class PoolError(ServerError):
    """A job got no assessment from the worker pool."""


class OverloadedError(PoolError):
    """The pool's queue is full; the turn fails at once instead of waiting."""

    code = "overloaded"


class WorkerCrashedError(PoolError):
    """The worker running the job died, and so did its replacement on the retry."""

    code = "worker_crashed"


class WorkerUnavailableError(PoolError):
    """No MQTT worker answered the job within its deadlines, after every re-send."""

    code = "worker_unavailable"


class JobTimeoutError(PoolError):
    """The job took longer than the pool's job timeout (its worker is replaced)."""

    code = "timeout"


class PoolClosedError(PoolError):
    """The pool is closing or closed and takes no new jobs."""

    code = "shutting_down"


class PoolStartError(PoolError):
    """A worker could not load its models."""

    code = "worker_start_failed"


class AssessmentError(PoolError):
    """The worker rejected the turn; ``code`` is the one multipa_core gave (e.g. ``audio_silent``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TransportClosed(ServerError):
    """A transport's peer is gone, or the connection was closed: raised by ``receive`` and ``send``.

    Args:
        message: what happened, for the log.
        close_code: the websocket close code that ended it (1006: dropped without a close).
        reason: the close reason, if any.
    """

    code = "client_disconnected"

    def __init__(self, message: str = "the connection is closed", *, close_code: int = 1006, reason: str = "") -> None:
        super().__init__(message)
        self.close_code = close_code
        self.reason = reason


class ConfigError(ServerError):
    """An option or environment variable of the server is invalid."""

    code = "config_error"
