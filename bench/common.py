"""What the benchmarks share: shared speech, a server subprocess, a paced client, tables.

Every benchmark prints exactly one JSON object on stdout (and writes it with
``--json-out``) and a readable table on stderr, so ``python bench/x.py | jq`` works.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shlex
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from multipa_core import settings

ROOT = Path(__file__).resolve().parents[1]
DATA = settings.data_dir()  # MULTIPA_DATA, read where every MULTIPA_* variable of multipa_core is
RATE = 16_000


def threads() -> int:
    """CPU threads per model: MULTIPA_THREADS, else every core."""
    return settings.threads() or os.cpu_count() or 1


def load_utterances(data: Path = DATA) -> list[dict[str, Any]]:
    with open(data / "utterances.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_pcm16(path: Path) -> np.ndarray:
    """A shared utterance as int16 samples at 16 kHz."""
    import soundfile as sf

    samples, rate = sf.read(path, dtype="int16")
    if samples.ndim > 1:
        samples = samples[:, 0]
    assert rate == RATE, f"{path}: {rate} Hz"
    return samples


def pick_turns(
    count: int, min_s: float, max_s: float, *, part: str = "development", seed: int = 7
) -> list[tuple[str, np.ndarray]]:
    """``count`` utterances of development speakers lasting min_s to max_s, in a seeded order."""
    from multipa_core.data import load_split

    speakers = set(load_split()[part])
    pool = []
    for row in load_utterances():
        if row["speaker"] not in speakers:
            continue
        samples = read_pcm16(DATA / "audio" / f"{row['utt']}.flac")
        if min_s <= len(samples) / RATE <= max_s:
            pool.append((row["utt"], samples))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))[:count]
    if len(order) < count:
        raise SystemExit(f"only {len(order)} utterances of {min_s}-{max_s} s among the {part} speakers")
    return [pool[i] for i in order]


def conversation(turns: list[np.ndarray], gap_s: float) -> np.ndarray:
    """The turns joined by ``gap_s`` of silence, with the same before the first and after the last."""
    gap = np.zeros(int(gap_s * RATE), dtype=np.int16)
    parts = [gap]
    for samples in turns:
        parts += [samples, gap]
    return np.concatenate(parts)


class ServerProcess:
    """``multipa-server`` on a free port, until :meth:`stop`."""

    def __init__(
        self, args: list[str], *, log: Path | None = None, timeout: float = 600.0, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = log or Path(f"/tmp/multipa-bench-server-{os.getpid()}.log")
        self._log = open(self.log_path, "w")
        command = [sys.executable, "-m", "multipa_server.cli", "--port", "0", *args]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=ROOT, env={**os.environ, **(env or {})}
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                found = re.search(r"listening on (ws://\S+)", line)
                if found:
                    self.url = found.group(1)
                    return
        self.stop()
        raise RuntimeError(f"the server did not start: {line!r}; log {self.log_path}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
        return int(self.proc.returncode)

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of the server and each of its worker processes."""
        out = {"server": _rss_mib(self.proc.pid)}
        for child in _children(self.proc.pid):
            out[f"worker-{child}"] = _rss_mib(child)
        return out


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


@dataclass
class Received:
    """An event and when it arrived (perf_counter seconds)."""

    at: float
    event: dict[str, Any]


@dataclass
class StreamOutcome:
    events: list[Received] = field(default_factory=list)
    started_at: float = 0.0

    def of(self, kind: str) -> list[Received]:
        return [r for r in self.events if r.event["type"] == kind]


async def stream(
    url: str,
    audio: np.ndarray,
    *,
    realtime: bool = True,
    chunk_ms: int = 20,
    start: dict | None = None,
    timeout: float = 900.0,
    on_event: Callable[[Received], None] | None = None,
) -> StreamOutcome:
    """Stream int16 audio as one session (paced at real time if asked) and collect every event.

    ``on_event`` sees each event as it arrives, on the event loop (it must not block).
    """
    from websockets.asyncio.client import connect

    outcome = StreamOutcome()
    chunk = RATE * chunk_ms // 1000
    async with connect(url, max_size=None, open_timeout=60) as ws:

        async def receive() -> None:
            async for message in ws:
                received = Received(time.perf_counter(), json.loads(message))
                outcome.events.append(received)
                if on_event is not None:
                    on_event(received)

        receiver = asyncio.create_task(receive())
        await ws.send(json.dumps({"type": "session.start", "sample_rate": RATE, "realtime": realtime, **(start or {})}))
        outcome.started_at = begin = time.perf_counter()
        for i, offset in enumerate(range(0, len(audio), chunk)):
            if realtime:
                delay = begin + i * chunk_ms / 1000.0 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(audio[offset : offset + chunk].tobytes())
        await ws.send(json.dumps({"type": "session.end"}))
        await asyncio.wait_for(receiver, timeout)
    return outcome


def tree_env(tree: str) -> dict[str, str]:
    """The environment that runs the packages of another checkout (``tree``: its root),
    through a folder of links named as they are imported (PYTHONPATH goes before the
    editable install's finder). MULTIPA_DATA is this checkout's data folder, so that a
    checkout elsewhere reads the same corpus lexicon."""
    links = Path(f"/tmp/multipa-bench-tree-{os.getpid()}")
    links.mkdir(exist_ok=True)
    for name, folder in (
        ("multipa_core", "multipa_core"),
        ("multipa_server", "server"),
        ("multipa_client", "client_sdk"),
    ):
        link = links / name
        if link.is_symlink():
            link.unlink()
        link.symlink_to(Path(tree).resolve() / folder)
    return {**os.environ, "PYTHONPATH": str(links), "MULTIPA_DATA": str(DATA)}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "max": round(float(a.max()), 1),
        "mean": round(float(a.mean()), 1),
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def where(r: dict) -> str:
    """A result's machine, date and command, as docs/benchmarks.md gives them."""
    m = r["machine"]
    return f"{m['cpus']} cores ({m['cpu']}), Python {m['python']}, {m['date']}; `{r.get('command', 'see above')}` (`bench/results/`)"


def row(cells: list) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(result: dict[str, Any], readable: str, json_out: str | None) -> None:
    """The JSON on stdout (and in ``json_out``), the table on stderr."""
    result = {**result, "command": shlex.join(["python", *sys.argv])}
    text = json.dumps(result, indent=2)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(text + "\n")
    print(readable, file=sys.stderr)
    print(text)
