"""The MQTT wire format between gateways and workers, schema 1: topics and payloads.

Pure code over ``bytes`` and dataclasses, like :mod:`multipa_server.protocol`:
nothing here touches a broker. ``docs/protocol.md`` ("Workers over MQTT") is the
reference.

Every payload but the worker status is one binary frame::

    magic    4 bytes   b"MPAW"
    schema   1 byte    1
    kind     1 byte    b"J" job, b"A" accepted, b"R" result, b"C" cancel
    length   4 bytes   big-endian length of the header
    header   JSON object, UTF-8, ``length`` bytes
    body     the rest: PCM16 little-endian mono for a job, empty otherwise

so the audio travels as raw bytes, never base64. The worker status (retained,
read by people and tools too) is a JSON object. Parsing is strict and only ever
raises :class:`WireError`, whatever the bytes.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

from .exceptions import ServerError
from .protocol import MAX_REFERENCE_CHARS, SAMPLE_RATES

SCHEMA = 1
MAGIC = b"MPAW"
DEFAULT_PREFIX = "multipa/v1"
SHARE_GROUP = "multipa-workers"  # the shared subscription's group: each job reaches one worker
MAX_HEADER_BYTES = 1 << 20  # an assessment of a long turn is a few tens of kB
MAX_PCM_BYTES = 16 << 20  # 8 minutes at 16 kHz; far above the session's turn limit
MAX_ID_CHARS = 200
_PREFIX = struct.Struct(">4sBcI")


class WireError(ServerError):
    """A payload or topic that does not follow the wire format."""

    code = "invalid_payload"


# --- topics ---------------------------------------------------------------------------


def check_prefix(prefix: str) -> str:
    """A topic prefix without wildcards or empty levels; raises WireError otherwise."""
    if (
        not prefix
        or any(c in prefix for c in "+#\0")
        or prefix.startswith(("/", "$"))
        or prefix.endswith("/")
        or "//" in prefix
    ):
        raise WireError(f"invalid topic prefix {prefix!r}: no wildcards, no leading $ or /, no empty levels")
    return prefix


def jobs_topic(prefix: str) -> str:
    """Where gateways publish jobs."""
    return f"{prefix}/jobs"


def jobs_subscription(prefix: str) -> str:
    """What workers subscribe to: the MQTT 5 shared subscription of the jobs topic."""
    return f"$share/{SHARE_GROUP}/{jobs_topic(prefix)}"


def cancel_topic(prefix: str) -> str:
    """Where gateways withdraw jobs (every worker subscribes; not shared)."""
    return f"{prefix}/cancel"


def results_topic(prefix: str, gateway: str) -> str:
    """A gateway's response topic (results and acceptances of its jobs)."""
    return f"{prefix}/gateways/{gateway}/results"


def status_topic(prefix: str, worker: str = "+") -> str:
    """A worker's retained status (``+``: every worker's)."""
    return f"{prefix}/workers/{worker}/status"


def events_topic(prefix: str, session_id: str) -> str:
    """Where the gateway fans out one session's events (``--publish-events``)."""
    return f"{prefix}/sessions/{session_id}/events"


def worker_of_status_topic(prefix: str, topic: str) -> str:
    """The worker id in a status topic; raises WireError for another topic."""
    head, tail = f"{prefix}/workers/", "/status"
    name = topic[len(head) : -len(tail)] if topic.startswith(head) and topic.endswith(tail) else ""
    if not name or "/" in name:
        raise WireError(f"not a worker status topic: {topic!r}")
    return name


# --- messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class JobMessage:
    """A turn to assess (gateway to the jobs topic); ``pcm`` is the body."""

    id: str  # unique per gateway and job; the correlation data of every answer
    turn: str  # "<session id>/<turn id>", for logs
    attempt: int  # 1 for the first send, +1 for each re-send
    sample_rate: int
    deadline: float  # unix seconds; a worker that gets to it later skips the job
    pcm: bytes
    reference: str | None = None


@dataclass(frozen=True)
class Accepted:
    """A worker took a job (to the response topic, at once)."""

    id: str
    attempt: int
    worker: str


@dataclass(frozen=True)
class ResultMessage:
    """A job's outcome (to the response topic): an assessment, or a code and a sentence."""

    id: str
    attempt: int
    worker: str
    assess_ms: float
    assessment: dict[str, Any] | None = None  # Assessment.to_dict() when it succeeded
    code: str | None = None  # else a multipa_core code or internal_error
    message: str | None = None


@dataclass(frozen=True)
class CancelMessage:
    """The gateway no longer needs a job's answer."""

    id: str


@dataclass(frozen=True)
class WorkerStatus:
    """A worker's retained announcement; its last will says ``offline``."""

    worker: str
    state: str  # "online" or "offline"
    device: str = ""
    batch: int = 1  # turns it assesses together; the gateway keeps at most this many in flight to it
    host: str = ""
    pid: int = 0
    schema: int = SCHEMA


Message = JobMessage | Accepted | ResultMessage | CancelMessage
_KINDS = {b"J": JobMessage, b"A": Accepted, b"R": ResultMessage, b"C": CancelMessage}


def encode(message: Message) -> bytes:
    """The frame of a message."""
    kind = next(k for k, cls in _KINDS.items() if isinstance(message, cls))
    fields = asdict(message)
    body: bytes = fields.pop("pcm", b"")
    header = json.dumps(
        {k: v for k, v in fields.items() if v is not None}, separators=(",", ":"), allow_nan=False
    ).encode()
    return _PREFIX.pack(MAGIC, SCHEMA, kind, len(header)) + header + body


def decode(payload: bytes) -> Message:
    """Parse a frame; raises WireError for anything that is not a valid message of schema 1."""
    if not isinstance(payload, (bytes, bytearray)) or len(payload) < _PREFIX.size:
        raise WireError("payload too short for a multipa frame")
    magic, schema, kind, length = _PREFIX.unpack_from(payload)
    if magic != MAGIC:
        raise WireError("not a multipa frame (bad magic)")
    if schema != SCHEMA:
        raise WireError(f"wire schema {schema} is not supported (this side speaks {SCHEMA})")
    cls = _KINDS.get(kind)
    if cls is None:
        raise WireError(f"unknown message kind {kind!r}")
    if length > MAX_HEADER_BYTES or _PREFIX.size + length > len(payload):
        raise WireError("header length out of range")
    try:
        header = json.loads(
            bytes(payload[_PREFIX.size : _PREFIX.size + length]).decode("utf-8"),
            parse_constant=_no_constant,
            parse_float=_finite,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WireError("header is not a UTF-8 JSON object with finite numbers") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    body = bytes(payload[_PREFIX.size + length :])
    if cls is JobMessage:
        return _job(header, body)
    if body:
        raise WireError("only a job carries a body")
    if cls is Accepted:
        _only(header, {"id", "attempt", "worker"})
        return Accepted(_id(header, "id"), _attempt(header), _id(header, "worker"))
    if cls is CancelMessage:
        _only(header, {"id"})
        return CancelMessage(_id(header, "id"))
    return _result(header)


def _job(header: dict[str, Any], pcm: bytes) -> JobMessage:
    _only(header, {"id", "turn", "attempt", "sample_rate", "deadline", "reference"})
    rate = header.get("sample_rate")
    if type(rate) is not int or rate not in SAMPLE_RATES:
        raise WireError(f"sample_rate must be one of {SAMPLE_RATES}")
    deadline = header.get("deadline")
    if not _is_number(deadline) or not abs(deadline) < 1e300:  # not math.isfinite: it overflows on a huge int
        raise WireError("deadline must be a number (unix seconds)")
    reference = header.get("reference")
    if reference is not None and (
        not isinstance(reference, str) or not reference.strip() or len(reference) > MAX_REFERENCE_CHARS
    ):
        raise WireError(f"reference must be a non-empty string of at most {MAX_REFERENCE_CHARS} characters")
    if len(pcm) % 2 or not pcm or len(pcm) > MAX_PCM_BYTES:
        raise WireError(f"the audio must be whole 16-bit samples, 1 to {MAX_PCM_BYTES} bytes")
    return JobMessage(_id(header, "id"), _id(header, "turn"), _attempt(header), rate, float(deadline), pcm, reference)


def _result(header: dict[str, Any]) -> ResultMessage:
    _only(header, {"id", "attempt", "worker", "assess_ms", "assessment", "code", "message"})
    assess_ms = header.get("assess_ms")
    if not _is_number(assess_ms) or not 0 <= assess_ms < 1e300:
        raise WireError("assess_ms must be a non-negative number")
    assessment, code, message = header.get("assessment"), header.get("code"), header.get("message")
    if assessment is not None:
        if not isinstance(assessment, dict) or code is not None or message is not None:
            raise WireError("a result has either an assessment object or a code and a message")
    elif not (isinstance(code, str) and code and isinstance(message, str)):
        raise WireError("a failed result needs a code and a message")
    return ResultMessage(
        _id(header, "id"), _attempt(header), _id(header, "worker"), float(assess_ms), assessment, code, message
    )


def _only(header: dict[str, Any], allowed: set[str]) -> None:
    extra = set(header) - allowed
    if extra:
        raise WireError(f"unknown field(s): {', '.join(sorted(extra))}")


def _id(header: dict[str, Any], key: str) -> str:
    return check_id(header.get(key), key, topic_level=key == "worker")


def check_id(value: Any, what: str, *, topic_level: bool = True) -> str:
    """A job, turn or worker id: a non-empty string without MQTT wildcards (nor ``/``
    when it names a topic level, as a worker id does); raises WireError."""
    banned = "+#/\0" if topic_level else "+#\0"
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS or any(c in value for c in banned):
        raise WireError(
            f"{what} must be a non-empty string of at most {MAX_ID_CHARS} characters without {' '.join(banned[:-1])} or NUL"
        )
    return value


def _attempt(header: dict[str, Any]) -> int:
    value = header.get("attempt")
    if type(value) is not int or not 1 <= value <= 100:
        raise WireError("attempt must be an integer from 1 to 100")
    return value


def _is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number: an int or a float, not a bool (``true`` is no number here)."""
    return type(value) in (int, float)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON cannot carry it on to the client
        raise ValueError(text)
    return value


# --- worker status (JSON) -------------------------------------------------------------


def encode_status(status: WorkerStatus) -> bytes:
    """The retained status payload."""
    return json.dumps(asdict(status), separators=(",", ":")).encode()


def decode_status(payload: bytes) -> WorkerStatus:
    """Parse a status; raises WireError. An empty payload (a cleared retained message) is not a status."""
    try:
        data = json.loads(bytes(payload).decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError):
        raise WireError("status is not a UTF-8 JSON object") from None
    if not isinstance(data, dict):
        raise WireError("status is not a JSON object")
    if data.get("schema") != SCHEMA:
        raise WireError(f"status schema {data.get('schema')!r} is not supported")
    _only(data, {"worker", "state", "device", "batch", "host", "pid", "schema"})
    state, batch = data.get("state"), data.get("batch", 1)
    if state not in ("online", "offline"):
        raise WireError("state must be online or offline")
    if type(batch) is not int or not 1 <= batch <= 256:
        raise WireError("batch must be an integer from 1 to 256")
    device, host, pid = data.get("device", ""), data.get("host", ""), data.get("pid", 0)
    if not isinstance(device, str) or not isinstance(host, str) or type(pid) is not int:
        raise WireError("device and host must be strings, pid an integer")
    return WorkerStatus(_id(data, "worker"), state, device, batch, host, pid)
