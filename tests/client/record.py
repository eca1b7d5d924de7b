"""Record a real server session for :class:`multipa_client.testing.FakeServer`.

Streams audio over a plain websocket (not through the SDK, so the recording
holds the server's own JSON, byte for byte as parsed) and writes one JSON
object per line: a header, then every event with the audio the client had
sent when it arrived (``audio_ms``) and whether ``session.end`` had been sent.

    .venv/bin/python -m tests.client.record client_sdk/recordings/three_turns.jsonl

starts its own ``multipa-server`` (one worker, the shipped scorer) and records
the three-turn conversation of the end-to-end tests at real-time pace.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

RATE = 16_000
THREE_TURNS = (["004820045", "010290094", "001350134"], [0.6, 1.0, 1.0, 0.9])  # utterances and the silences around them


def three_turns_audio() -> np.ndarray:
    """The conversation the shipped recording was made from (shared speechocean762 data)."""
    from tests.server.speech import conversation
    from tests.server.test_segmenter import noisy

    audio, _ = conversation(*THREE_TURNS)
    return noisy(audio)


async def record(
    url: str,
    audio: np.ndarray,
    *,
    realtime: bool = True,
    api_key: str | None = None,
    chunk_ms: int = 20,
    note: str = "",
) -> list[dict[str, Any]]:
    """One session's lines: a header, then each event as the server sent it."""
    lines: list[dict[str, Any]] = []
    sent = {"samples": 0, "ended": False}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None

    async def receive(ws: Any) -> None:
        try:
            async for message in ws:
                lines.append(
                    {
                        "audio_ms": sent["samples"] * 1000 // RATE,
                        "after_end": sent["ended"],
                        "event": json.loads(message),
                    }
                )
        except ConnectionClosed:
            pass

    async with connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
        receiver = asyncio.create_task(receive(ws))
        await ws.send(json.dumps({"type": "session.start", "sample_rate": RATE, "realtime": realtime}))
        size, began = RATE * chunk_ms // 1000, time.monotonic()
        for i in range(0, len(audio), size):
            if realtime:
                await asyncio.sleep(max(0.0, began + i / RATE - time.monotonic()))
            await ws.send(audio[i : i + size].tobytes())
            sent["samples"] = min(len(audio), i + size)
        sent["ended"] = True
        await ws.send(json.dumps({"type": "session.end"}))
        await asyncio.wait_for(receiver, 300)
    header = {
        "recording": "multipa.v1",
        "sample_rate": RATE,
        "audio_ms": len(audio) * 1000 // RATE,
        "realtime": realtime,
        "note": note,
    }
    return [header, *lines]


def write(lines: list[dict[str, Any]], path: Path) -> None:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))


def main(argv: list[str]) -> int:
    from tests.server.wsclient import ServerProcess

    out = Path(argv[0] if argv else "client_sdk/recordings/three_turns.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(["--workers", "1"], Path(tmp) / "server.log")
        try:
            note = (
                "speechocean762 "
                + " ".join(THREE_TURNS[0])
                + " joined with silences "
                + str(THREE_TURNS[1])
                + " and a -60 dBFS noise floor, streamed at real time"
            )
            lines = asyncio.run(record(server.url, three_turns_audio(), note=note))
        finally:
            server.stop()
    write(lines, out)
    print(f"{out}: {len(lines) - 1} events")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
