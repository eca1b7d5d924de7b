"""The ``multipa-client`` command: stream a file to a server and print the feedback as it comes.

``multipa-client stream URL FILE [--realtime] [--json] [--api-key KEY] [--reference TEXT]``

Readable by default (each turn: its span, transcripts, sentence scores, every
word with its scores and a mark on the words that need improvement); one JSON
object per event and line with ``--json``. Exit status: 0 when every turn was
assessed, 1 when a turn failed or the stream broke off, 2 on a usage error or a
refused connection (wrong key, server unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Sequence, TextIO

from ._client import MultipaClient
from ._events import (
    Event,
    Reconnected,
    SessionEnded,
    SessionStarted,
    TurnAssessed,
    TurnEnded,
    TurnFailed,
    TurnStarted,
    UnknownEvent,
    to_dict,
)
from ._events import Error as ErrorEvent
from ._exceptions import AudioError, AuthenticationError, ConnectionRefused, MissingDependency, MultipaClientError

API_KEY_ENV = "MULTIPA_API_KEY"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multipa-client", description="Stream audio to a MultiPA Live server and print its pronunciation feedback."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    stream = commands.add_parser("stream", help="stream one audio file (WAV; FLAC and others with soundfile)")
    stream.add_argument("url", help="the stream endpoint, e.g. ws://127.0.0.1:8765/v1/stream")
    stream.add_argument("file", help="the audio file")
    stream.add_argument(
        "--realtime",
        action="store_true",
        help="send at real-time pace, like a microphone (default: as fast as the server takes it)",
    )
    stream.add_argument("--json", action="store_true", help="one JSON object per event and line")
    stream.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), help=f"the server's API key ({API_KEY_ENV})")
    stream.add_argument(
        "--reference", help="the sentence the speaker reads: the first turn is assessed against it (closed response)"
    )
    stream.add_argument(
        "--mode", choices=["open", "closed"], default="open", help="closed: every turn needs a reference"
    )
    stream.add_argument(
        "--no-reconnect", action="store_true", help="fail instead of resuming after a dropped connection"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_stream(args, sys.stdout))
    except (AuthenticationError, ConnectionRefused, AudioError, MissingDependency) as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except MultipaClientError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1


async def _stream(args: argparse.Namespace, out: TextIO) -> int:
    client = MultipaClient(args.url, api_key=args.api_key, mode=args.mode, reconnect=not args.no_reconnect)
    failed = False
    async with client:
        if args.reference:
            await client.set_reference(args.reference)
        async for event in client.stream_file(args.file, realtime=args.realtime):
            failed |= isinstance(event, TurnFailed)
            if args.json:
                print(json.dumps(to_dict(event), ensure_ascii=False), file=out, flush=True)
            else:
                _print(event, out)
    return 1 if failed else 0


def _s(ms: int) -> str:
    return f"{ms / 1000:.2f}"


def _print(event: Event, out: TextIO) -> None:
    lines: list[str] = []
    if isinstance(event, SessionStarted):
        lines.append(
            f"session {event.session_id}: {event.sample_rate} Hz, {event.mode} response, {'real time' if event.realtime else 'as fast as possible'}"
        )
    elif isinstance(event, TurnStarted):
        lines.append(f"turn {event.turn_id}: speech from {_s(event.start_ms)} s")
    elif isinstance(event, TurnEnded):
        lines.append(f"turn {event.turn_id}: {_s(event.start_ms)}-{_s(event.end_ms)} s ({event.reason}), assessing")
    elif isinstance(event, TurnAssessed):
        a = event.assessment
        lines.append(
            f"turn {event.turn_id}: {_s(event.start_ms)}-{_s(event.end_ms)} s, assessed in {event.latency_ms.total / 1000:.2f} s"
        )
        lines.append(f"  recognized: {a.transcript.strip()}")
        lines.append(f"  target:     {a.target_transcript.strip()}")
        scores = [
            ("accuracy", a.sentence.accuracy),
            ("fluency", a.sentence.fluency),
            ("prosody", a.sentence.prosody),
            ("total", a.sentence.total),
        ]
        if a.sentence.completeness is not None:
            scores.append(("completeness", a.sentence.completeness))
        lines.append("  " + "  ".join(f"{name} {value:.2f}" for name, value in scores))
        lines.append(f"  {'word':<16}{'time (ms)':>11}  {'acc':>5} {'str':>5} {'tot':>5}")
        for w in a.words:
            mark = "  <- needs improvement" if w.needs_improvement else ""
            lines.append(
                f"  {w.text:<16}{f'{w.start_ms}-{w.end_ms}':>11}  {w.accuracy:5.1f} {w.stress:5.1f} {w.total:5.1f}{mark}"
            )
    elif isinstance(event, TurnFailed):
        lines.append(
            f"turn {event.turn_id}: {_s(event.start_ms)}-{_s(event.end_ms)} s, failed [{event.code}]: {event.message}"
        )
    elif isinstance(event, SessionEnded):
        lines.append(
            f"session ended ({event.reason}): {event.turns_started} turns, {event.turns_assessed} assessed, {event.turns_failed} failed, {_s(event.audio_ms)} s of audio"
        )
    elif isinstance(event, ErrorEvent):
        lines.append(f"{'fatal ' if event.fatal else ''}error [{event.code}]: {event.message}")
    elif isinstance(event, Reconnected):
        lines.append(
            f"reconnected (try {event.attempt}, session {event.session_id}): resent {_s(event.resent_ms)} s from {_s(event.resumed_from_ms)} s; the connection had closed: {event.cause}"
        )
    elif isinstance(event, UnknownEvent):
        lines.append(f"({event.type}: {json.dumps(event.data)[:200]})")
    else:
        return
    print("\n".join(lines), file=out, flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
