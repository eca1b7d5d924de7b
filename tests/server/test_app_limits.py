"""The real websocket server (in process, a fake pool: no models) under hostile clients:
a connection flood beyond the session limit, a client that never reads its events."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from multipa_server.app import Server, ServerOptions

from .test_connection import FakePool, ok

START = {"type": "session.start", "sample_rate": 16000, "realtime": False}


def serve(test, **options):
    async def main():
        server = Server(FakePool(ok()), ServerOptions(port=0, **options))
        await server.start()
        try:
            return await asyncio.wait_for(test(server), 90)
        finally:
            server.shutdown()
            await server.wait_closed()

    return asyncio.run(main())


async def open_session(url: str):
    ws = await connect(url)
    await ws.send(json.dumps(START))
    assert json.loads(await ws.recv())["type"] == "session.started"
    return ws


def test_a_connection_flood_beyond_the_limit_is_refused_with_503():
    async def test(server):
        sessions = [await open_session(server.url) for _ in range(3)]
        flood = await asyncio.gather(*(connect(server.url, open_timeout=20) for _ in range(12)), return_exceptions=True)
        refused = [r for r in flood if isinstance(r, InvalidStatus)]
        assert len(refused) == 12 and all(r.response.status_code == 503 for r in refused), flood
        assert b"limit of 3 sessions" in refused[0].response.body and refused[0].response.headers["Retry-After"] == "5"
        # the sessions already open are untouched, and a slot that frees up is usable again
        await sessions[0].send(json.dumps({"type": "ping", "id": "still-here"}))
        assert json.loads(await sessions[0].recv()) == {"type": "pong", "id": "still-here"}
        await sessions[1].close()
        for _ in range(50):
            try:
                sessions[1] = await open_session(server.url)
                break
            except InvalidStatus:
                await asyncio.sleep(0.1)  # the server sees the close a moment later
        else:
            pytest.fail("a freed slot was never usable again")
        for ws in sessions:
            await ws.close()

    serve(test, max_sessions=3)


def test_a_client_that_never_reads_is_disconnected_and_memory_stays_bounded():
    async def test(server):
        host, port = "127.0.0.1", server.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        greedy = await connect(server.url, sock=sock, max_queue=1)  # stops reading once one message waits
        await greedy.send(json.dumps(START))
        padding = "x" * 2000
        closed, started = False, time.monotonic()
        sent = 0
        while time.monotonic() - started < 60:
            try:
                await greedy.send(json.dumps({"type": "ping", "id": f"{sent}-{padding}"}))  # each pong is 2 kB we never read
            except ConnectionClosed:
                closed = True
                break
            sent += 1
            if sent % 50 == 0:
                await asyncio.sleep(0.01)
        assert closed, f"the server kept a client that read nothing after {sent} pings"
        # the server still serves everyone else
        other = await open_session(server.url)
        await other.send(json.dumps({"type": "ping", "id": "ok"}))
        assert json.loads(await other.recv()) == {"type": "pong", "id": "ok"}
        await other.close()

    serve(test, max_outbox=32, send_timeout_s=3.0)
