"""A scripted websocket client and a server subprocess for the end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

RATE = 16_000


@dataclass
class Outcome:
    """What one client saw."""

    events: list[dict] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def terminal(self) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {}
        for e in self.events:
            if e["type"] in ("turn.assessed", "turn.failed"):
                out.setdefault(e["turn_id"], []).append(e)
        return out

    def check_every_turn_finished(self) -> None:
        started = [e["turn_id"] for e in self.of("turn.started")]
        terminal = self.terminal()
        assert sorted(terminal) == sorted(started), (started, terminal.keys())
        assert all(len(v) == 1 for v in terminal.values())
        assert self.events[-1]["type"] == "session.ended"


@dataclass(frozen=True)
class Wait:
    """Pause the script until ``count`` events of ``kind`` have arrived."""

    kind: str
    count: int = 1


async def converse(
    url: str,
    script: list,
    *,
    realtime: bool = False,
    rate: int = RATE,
    chunk_ms: int = 20,
    headers: dict | None = None,
    timeout: float = 180.0,
) -> Outcome:
    """Play ``script`` (dicts: JSON messages; int16 arrays: audio in chunks, paced at real
    time if ``realtime``; bytes: one raw frame; Wait; a callable: called) and collect events
    until the server closes."""
    outcome = Outcome()
    arrived = asyncio.Condition()

    async def receive(ws) -> None:
        try:
            async for message in ws:
                async with arrived:
                    outcome.events.append(json.loads(message))
                    arrived.notify_all()
        except ConnectionClosed:  # closed with an error code: the events before it count
            pass

    async with connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
        receiver = asyncio.create_task(receive(ws))
        sent_samples, began = 0, time.monotonic()
        for step in script:
            if isinstance(step, dict):
                await ws.send(json.dumps(step))
            elif isinstance(step, bytes):
                await ws.send(step)
            elif callable(step):
                step()
            elif isinstance(step, Wait):
                async with arrived:
                    await asyncio.wait_for(arrived.wait_for(lambda: len(outcome.of(step.kind)) >= step.count), timeout)
            else:
                size = rate * chunk_ms // 1000
                for i in range(0, len(step), size):
                    if realtime:  # never ahead of the clock: the audio's own time since the first frame
                        await asyncio.sleep(max(0.0, began + sent_samples / rate - time.monotonic()))
                    await ws.send(step[i : i + size].tobytes())
                    sent_samples += len(step[i : i + size])
        await asyncio.wait_for(receiver, timeout)
        outcome.close_code, outcome.close_reason = ws.close_code, ws.close_reason or ""
    return outcome


def talk(url: str, script: list, **options) -> Outcome:
    return asyncio.run(converse(url, script, **options))


class ChildProcess:
    """A command of this project as a subprocess, ready once a line of its stdout matches ``ready``
    (stderr goes to ``log``); SIGTERM stops it."""

    def __init__(self, what: str, command: list[str], log: Path, ready: str, *, timeout: float = 300.0) -> None:
        self.log_path = log
        self._log = open(log, "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{what} did not start: {self.log()[-3000:]}")
            readable, _, _ = select.select([self.proc.stdout], [], [], remaining)
            found = re.search(ready, self.proc.stdout.readline() if readable else "")
            if found:
                self.ready = found
                return

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class ServerProcess(ChildProcess):
    """``multipa-server`` as a subprocess on a free port."""

    def __init__(self, args: list[str], log: Path, *, timeout: float = 300.0) -> None:
        super().__init__(
            "the server",
            [sys.executable, "-m", "multipa_server.cli", "--port", "0", *args],
            log,
            r"listening on (ws://\S+)",
            timeout=timeout,
        )
        self.url = self.ready.group(1)
        self.http = self.url.replace("ws://", "http://").rsplit("/v1/", 1)[0]


def one_worker_server(scorer: str, key: str, folder: Path) -> Iterator[ServerProcess]:
    """A real ``multipa-server`` with one worker and an API key, for a module's
    end-to-end tests: yields it, then checks it stopped cleanly with no traceback."""
    process = ServerProcess(["--workers", "1", "--scorer", scorer, "--api-key", key], folder / "server.log")
    yield process
    assert process.stop() == 0, process.log()[-3000:]
    assert "Traceback" not in process.log()


def http_get(url: str) -> tuple[int, str, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()
