"""Blocking wrappers for scripts: no event loop to manage."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Iterator

from ._client import MultipaClient
from ._events import Event


class SyncClient:
    """:class:`MultipaClient` for code without asyncio; each stream runs on its own event loop.

    Args:
        url, **options: as for :class:`MultipaClient`.
    """

    def __init__(self, url: str, **options: Any) -> None:
        self.url, self.options = url, options

    def stream_file(
        self, path: str | os.PathLike[str], *, realtime: bool | None = None, reference: str | None = None
    ) -> Iterator[Event]:
        """Events of one file's stream, as they arrive (the stream pauses while the caller works).

        Raises:
            what :meth:`MultipaClient.stream` raises.
        """
        loop = asyncio.new_event_loop()
        client = MultipaClient(self.url, **self.options)
        events = None
        try:
            loop.run_until_complete(client.__aenter__())
            if reference is not None:
                loop.run_until_complete(client.set_reference(reference))
            events = client.stream_file(path, realtime=realtime)
            while True:
                try:
                    yield loop.run_until_complete(events.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if events is not None:
                loop.run_until_complete(events.aclose())
            loop.run_until_complete(client.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def assess_file(
    url: str, path: str | os.PathLike[str], *, realtime: bool = False, reference: str | None = None, **options: Any
) -> list[Event]:
    """Stream one file and return every event, ``session.ended`` last.

    Args:
        url: the stream endpoint.
        path: a WAV file (FLAC and others with soundfile).
        realtime: pace at real time; False (the default) sends as fast as the server takes it.
        reference: the expected sentence of the first turn (closed response).
        **options: :class:`MultipaClient` options (``api_key``, ``mode``, ``vad``, ...).

    Raises:
        what :meth:`MultipaClient.stream` raises.
    """
    return list(SyncClient(url, **options).stream_file(path, realtime=realtime, reference=reference))
