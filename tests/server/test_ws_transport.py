"""The websockets adapter (app.WebsocketTransport) on a real websockets server on a free port:
messages pass whole, and every way a connection ends becomes TransportClosed with the right code."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from multipa_server.app import WebsocketTransport
from multipa_server.exceptions import TransportClosed


def with_server(test):
    """Run ``test(server_transport, client)`` on a fresh connection; the handler lives until it is done."""

    async def main():
        accepted: asyncio.Queue[WebsocketTransport] = asyncio.Queue()
        done = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            await accepted.put(WebsocketTransport(ws))
            await done.wait()

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as client:
                transport = await asyncio.wait_for(accepted.get(), 5)
                try:
                    await asyncio.wait_for(test(transport, client), 10)
                finally:
                    done.set()

    asyncio.run(main())


async def client_close(client: ClientConnection) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv()
    return closed.value


def test_text_and_audio_pass_whole_both_ways():
    async def test(transport: WebsocketTransport, client: ClientConnection) -> None:
        await client.send('{"type": "ping"}')
        await client.send(b"\x00\x01\x02")
        assert await transport.receive() == '{"type": "ping"}'
        assert await transport.receive() == b"\x00\x01\x02"
        await transport.send('{"type": "pong"}')
        assert await client.recv() == '{"type": "pong"}'

    with_server(test)


def test_the_clients_close_code_and_reason_reach_receive_and_send():
    async def test(transport: WebsocketTransport, client: ClientConnection) -> None:
        await client.close(4000, "bye")
        with pytest.raises(TransportClosed) as closed:
            await transport.receive()
        assert (closed.value.close_code, closed.value.reason) == (4000, "bye")
        with pytest.raises(TransportClosed):
            await transport.send("{}")

    with_server(test)


def test_the_servers_close_reaches_the_client_and_ends_receive():
    async def test(transport: WebsocketTransport, client: ClientConnection) -> None:
        await transport.close(1008, "idle_timeout")
        closed = await client_close(client)
        assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (1008, "idle_timeout")
        with pytest.raises(TransportClosed):
            await transport.receive()
        await transport.close(1000, "")  # idempotent

    with_server(test)


def test_a_dropped_client_reads_as_1006():
    async def test(transport: WebsocketTransport, client: ClientConnection) -> None:
        client.transport.abort()  # the TCP connection goes, no close frame
        with pytest.raises(TransportClosed) as closed:
            await transport.receive()
        assert closed.value.close_code == 1006

    with_server(test)


def test_abort_drops_the_connection_without_a_close_frame():
    async def test(transport: WebsocketTransport, client: ClientConnection) -> None:
        transport.abort()
        transport.abort()  # idempotent
        closed = await client_close(client)
        assert closed.rcvd is None  # the client saw 1006: no closing handshake
        with pytest.raises(TransportClosed) as gone:
            await transport.receive()
        assert gone.value.close_code == 1006

    with_server(test)
