"""multipa_client: the Python SDK of MultiPA Live (``docs/sdk.md``).

Stream a file, an array or the microphone to a ``multipa-server`` and get a
typed feedback event for every turn the learner speaks::

    async with MultipaClient("ws://127.0.0.1:8765/v1/stream", api_key=KEY) as client:
        async for event in client.stream_file("turns.wav", realtime=False):
            if isinstance(event, TurnAssessed):
                print(event.turn_id, event.assessment.sentence.total)
"""

from ._audio import Resampler, read_file, to_int16
from ._client import MultipaClient, ReconnectPolicy
from ._diagnosis import Diagnosis, FeedbackItem, InsertedWord, NBest, Pause, Prosody
from ._events import (
    CONNECTION_LOST,
    Assessment,
    Error,
    Event,
    Latency,
    Phone,
    Pong,
    Reconnected,
    SentenceScores,
    SessionEnded,
    SessionStarted,
    TurnAssessed,
    TurnEnded,
    TurnFailed,
    TurnStarted,
    UnknownEvent,
    VadOptions,
    Word,
    parse_assessment,
    parse_event,
    to_dict,
)
from ._exceptions import (
    AudioError,
    AuthenticationError,
    ConnectionLost,
    ConnectionRefused,
    InvalidEvent,
    MissingDependency,
    MultipaClientError,
    ServerError,
)
from ._sync import SyncClient, assess_file
from ._transport import Connection, Transport, WebsocketTransport

__all__ = [
    "Assessment",
    "AudioError",
    "AuthenticationError",
    "CONNECTION_LOST",
    "Connection",
    "ConnectionLost",
    "ConnectionRefused",
    "Diagnosis",
    "Error",
    "Event",
    "FeedbackItem",
    "InsertedWord",
    "InvalidEvent",
    "Latency",
    "MissingDependency",
    "MultipaClient",
    "MultipaClientError",
    "NBest",
    "Pause",
    "Phone",
    "Pong",
    "Prosody",
    "ReconnectPolicy",
    "Reconnected",
    "Resampler",
    "SentenceScores",
    "ServerError",
    "SessionEnded",
    "SessionStarted",
    "SyncClient",
    "Transport",
    "TurnAssessed",
    "TurnEnded",
    "TurnFailed",
    "TurnStarted",
    "UnknownEvent",
    "VadOptions",
    "WebsocketTransport",
    "Word",
    "assess_file",
    "parse_assessment",
    "parse_event",
    "read_file",
    "to_dict",
    "to_int16",
]
