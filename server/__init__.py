"""multipa_server: the streaming service of MultiPA Live.

Learners' audio arrives over a websocket (``/v1/stream``, protocol
``multipa.v1``, see ``docs/protocol.md``), is cut into turns by a VAD and
assessed by worker processes; feedback events go back on the same connection.

Modules, in the order data flows: :mod:`~multipa_server.protocol` (messages,
pure), :mod:`~multipa_server.segmenter` (VAD turns, pure),
:mod:`~multipa_server.session` (per-connection state machine, pure),
:mod:`~multipa_server.connection` (its asyncio adapter, over any
:mod:`~multipa_server.transport`; :mod:`~multipa_server.memory_transport` is an in-memory one),
:mod:`~multipa_server.pool` (the worker pool interface),
:mod:`~multipa_server.local_pool` and :mod:`~multipa_server.worker` (the
embedded pool), :mod:`~multipa_server.metrics`, :mod:`~multipa_server.app`
(the server), :mod:`~multipa_server.cli` (``multipa-server``).
"""

from .exceptions import ServerError
from .protocol import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION", "ServerError"]
