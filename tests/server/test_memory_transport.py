"""The in-memory transport: its pipe semantics, and a whole session through it with no websocket imported."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multipa_server.connection import Connection
from multipa_server.exceptions import TransportClosed
from multipa_server.local_pool import LocalPool, LocalPoolOptions
from multipa_server.memory_transport import memory_pipe
from multipa_server.session import Session

from . import fake_worker

ROOT = Path(__file__).resolve().parents[2]


def test_messages_arrive_in_order_then_the_close_with_its_code():
    async def main() -> None:
        a, b = memory_pipe()
        await a.send("one")
        await a.send(b"\x00\x01")
        await a.close(1008, "idle_timeout")
        await a.close(1000, "")  # the first close wins
        assert [await b.receive(), await b.receive()] == ["one", b"\x00\x01"]
        for end in (b, a):  # both directions are over
            with pytest.raises(TransportClosed) as closed:
                await end.receive()
            assert (closed.value.close_code, closed.value.reason) == (1008, "idle_timeout")
        with pytest.raises(TransportClosed):
            await b.send("too late")
        assert b.closed is not None and b.closed.close_code == 1008

    asyncio.run(main())


def test_an_abort_drops_what_was_not_received_and_reads_as_1006():
    async def main() -> None:
        a, b = memory_pipe()
        await a.send("lost")
        waiting = asyncio.create_task(a.receive())
        await asyncio.sleep(0)
        a.abort()
        a.abort()  # idempotent
        for receiving in (waiting, b.receive()):
            with pytest.raises(TransportClosed) as closed:
                await receiving
            assert closed.value.close_code == 1006

    asyncio.run(main())


def test_a_full_pipe_makes_send_wait_until_the_peer_reads():
    async def main() -> None:
        a, b = memory_pipe(capacity=1)
        await a.send("first")
        second = asyncio.create_task(a.send("second"))
        await asyncio.sleep(0.05)
        assert not second.done()
        assert await b.receive() == "first"
        await asyncio.wait_for(second, 1)
        assert await b.receive() == "second"
        await a.send("third")
        blocked = asyncio.create_task(a.send("fourth"))
        await asyncio.sleep(0.01)
        b.abort()  # a peer that goes away releases a blocked send with TransportClosed
        await asyncio.wait_for(asyncio.gather(blocked, return_exceptions=True), 1)
        assert isinstance(blocked.exception(), TransportClosed)

    asyncio.run(main())


async def converse() -> tuple[list[dict], list[int | str]]:
    """session.start, half a second of audio, turn.end, session.end through a memory pipe to a
    real Connection and a LocalPool of fake workers. Returns the events and the close (code, reason)."""
    pool = LocalPool(LocalPoolOptions(workers=1), target=fake_worker.main)
    await pool.start()
    try:
        server, client = memory_pipe()
        serving = asyncio.create_task(Connection(server, Session("mem"), pool).run())
        await client.send(json.dumps({"type": "session.start", "sample_rate": 16000, "vad": {"enabled": False}}))
        await client.send(np.full(8000, 1000, dtype=np.int16).tobytes())
        await client.send(json.dumps({"type": "turn.end"}))
        events = []
        while not events or events[-1]["type"] != "turn.assessed":
            events.append(json.loads(await client.receive()))
        await client.send(json.dumps({"type": "session.end"}))
        try:
            while True:
                events.append(json.loads(await client.receive()))
        except TransportClosed as closed:
            close = [closed.close_code, closed.reason]
        await asyncio.wait_for(serving, 10)
        return events, close
    finally:
        await pool.close()


SCRIPT = """
import asyncio, json, sys
from tests.server.test_memory_transport import converse
events, close = asyncio.run(converse())
print(json.dumps({"events": events, "close": close, "websockets": sorted(m for m in sys.modules if "websockets" in m)}))
"""


def test_a_whole_session_through_the_memory_pipe_without_websockets():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["websockets"] == [], "the session, its connection and the pool must not need websockets"
    events = out["events"]
    assert [e["type"] for e in events] == [
        "session.started",
        "turn.started",
        "turn.ended",
        "turn.assessed",
        "session.ended",
    ]
    assessed = events[3]
    assert assessed["turn_id"] == 1 and assessed["assessment"]["bytes"] == 16000 and assessed["assessment"]["job"]
    assert events[-1]["turns_assessed"] == 1 and events[-1]["reason"] == "client"
    assert out["close"] == [1000, ""]
