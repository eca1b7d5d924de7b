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
                await greedy.send(
                    json.dumps({"type": "ping", "id": f"{sent}-{padding}"})
                )  # each pong is 2 kB we never read
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


# --- issue 19 ---------------------------------------------------------------------------


def raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_duplicate_headers_get_400_not_500(caplog):
    """Issue 19: two Authorization (or If-None-Match) headers raised in the hook: HTTP 500 and a traceback."""

    async def test(server):
        loop = asyncio.get_running_loop()
        auth = b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n"
        etag = b'GET /demo HTTP/1.1\r\nHost: x\r\nIf-None-Match: "a"\r\nIf-None-Match: "b"\r\n\r\n'
        return [await loop.run_in_executor(None, raw_http, server.port, r) for r in (auth, etag)]

    for reply in serve(test, api_keys=("k",)):
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert b"more than once" in reply
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("method", ["PUT", "POST", "HEAD", "DELETE"])
def test_methods_other_than_get_get_405_with_allow(method):
    async def test(server):
        loop = asyncio.get_running_loop()
        request = f"{method} /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
        return await loop.run_in_executor(None, raw_http, server.port, request)

    reply = serve(test)
    assert reply.startswith(b"HTTP/1.1 405"), reply[:200]
    assert b"\r\nAllow: GET\r\n" in reply


def test_a_connection_without_session_start_is_closed_at_the_start_deadline():
    from multipa_server.session import Limits

    async def test(server):
        async with connect(server.url) as ws:
            began = time.perf_counter()
            await ws.send(json.dumps({"type": "ping", "id": "no start"}))  # messages do not extend the deadline
            assert json.loads(await ws.recv())["type"] == "pong"
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert event["type"] == "error" and event["code"] == "start_timeout" and event["fatal"], event
            assert json.loads(await ws.recv())["type"] == "session.ended"
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1008 and 0.4 < time.perf_counter() - began < 5

    serve(test, limits=Limits(start_timeout_s=0.5))


def test_the_per_client_address_cap_refuses_with_429_and_trusts_only_the_proxys_entry():
    async def test(server):
        first = [await open_session(server.url) for _ in range(2)]
        with pytest.raises(InvalidStatus) as info:
            await connect(server.url)
        assert info.value.response.status_code == 429 and b"2 sessions from your address" in info.value.response.body
        for ws in first:
            await ws.close()

    serve(test, max_sessions_per_client=2)

    async def behind_proxy(server):
        def via(client: str):
            return connect(server.url, additional_headers={"X-Forwarded-For": f"6.6.6.6, {client}"})

        kept = [await via("10.0.0.1"), await via("10.0.0.1"), await via("10.0.0.2")]
        with pytest.raises(InvalidStatus) as info:
            await via("10.0.0.1")
        assert info.value.response.status_code == 429
        for ws in kept:
            await ws.close()

    serve(behind_proxy, max_sessions_per_client=2, client_address_header="X-Forwarded-For")
