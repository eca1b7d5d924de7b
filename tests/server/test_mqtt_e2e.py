"""End to end over MQTT: the real `multipa-server --broker`, real `multipa-worker` processes
with the real models, a real Mosquitto (a private one, so it can be stopped and started)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from .broker import Mosquitto
from .speech import UTTERANCES, conversation, silence, utterance
from .wsclient import ChildProcess, ServerProcess, Wait, converse, talk

pytestmark = [pytest.mark.models, pytest.mark.broker]

UTTS = list(UTTERANCES)


class WorkerProcess(ChildProcess):
    """``multipa-worker`` as a subprocess, ready once it says so."""

    def __init__(self, broker_url: str, name: str, scorer: str, log: Path, *extra: str) -> None:
        command = [
            sys.executable,
            "-m",
            "multipa_server.worker_cli",
            "--broker",
            broker_url,
            "--id",
            name,
            "--scorer",
            scorer,
            "--threads",
            "1",
            "-v",
            *extra,
        ]
        super().__init__(f"worker {name}", command, log, "ready on")
        self.name = name

    def answered(self) -> int:
        return len(re.findall(r"answered: assessed", self.log()))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    mosquitto = Mosquitto(tmp_path_factory.mktemp("broker"))
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(scope="module")
def workers(broker, scorer, tmp_path_factory):
    logs = tmp_path_factory.mktemp("workers")
    started = {name: WorkerProcess(broker.url, name, scorer, logs / f"{name}.log") for name in ("wa", "wb")}
    yield started
    for worker in started.values():
        worker.stop()
        assert "Traceback" not in worker.log(), worker.log()[-3000:]


@pytest.fixture(scope="module")
def gateway(broker, workers, tmp_path_factory):
    process = ServerProcess(
        ["--broker", broker.url, "--job-deadline", "30"], tmp_path_factory.mktemp("gateway") / "server.log"
    )
    yield process
    assert process.stop() == 0, process.log()[-3000:]
    assert "Traceback" not in process.log()


def start(**fields) -> dict:
    return {"type": "session.start", "sample_rate": 16000, **fields}


def one_turn(utt: str) -> list:
    return [start(realtime=False), silence(0.3), utterance(utt), silence(1.0), {"type": "session.end"}]


def test_two_workers_share_the_turns_of_concurrent_sessions(gateway, workers):
    async def sessions():
        return await asyncio.gather(
            *(converse(gateway.url, one_turn(UTTS[i % len(UTTS)]), chunk_ms=250) for i in range(6))
        )

    outcomes = asyncio.run(sessions())
    for outcome in outcomes:
        outcome.check_every_turn_finished()
        assessed = outcome.of("turn.assessed")
        assert len(assessed) == 1 and not outcome.of("turn.failed"), outcome.events
        assert assessed[0]["assessment"]["words"] and outcome.close_code == 1000
    assert workers["wa"].answered() >= 1 and workers["wb"].answered() >= 1, (
        workers["wa"].answered(),
        workers["wb"].answered(),
    )


def test_a_worker_killed_mid_turn_the_other_assesses_it_once(gateway, workers, broker, scorer, tmp_path):
    before = {n: w.answered() for n, w in workers.items()}
    for w in workers.values():  # only accepts from now on count
        w._log.flush()
    marks = {n: len(w.log()) for n, w in workers.items()}
    killed: list[str] = []

    def kill_the_one_assessing() -> None:
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            for name, worker in workers.items():
                if "accepted job" in worker.log()[marks[name] :]:
                    worker.proc.send_signal(signal.SIGKILL)
                    killed.append(name)
                    break
            time.sleep(0.01)

    script = [
        start(realtime=False),
        silence(0.3),
        utterance(UTTS[0]),
        silence(1.0),
        kill_the_one_assessing,
        Wait("turn.ended"),
        {"type": "turn.end"},
        {"type": "session.end"},
    ]
    outcome = talk(gateway.url, script, chunk_ms=250)
    assert killed, "no worker accepted the turn"
    outcome.check_every_turn_finished()
    assert len(outcome.of("turn.assessed")) == 1 and not outcome.of("turn.failed"), outcome.events
    survivor = next(n for n in workers if n not in killed)
    assert workers[survivor].answered() > before[survivor]
    assert "went offline" in gateway.log() and "send 2 of 3" in gateway.log()
    # a replacement, so the tests after this one have two workers again
    workers[killed[0]]._log.close()
    workers[killed[0]] = WorkerProcess(broker.url, killed[0] + "2", scorer, tmp_path / "replacement.log")


def test_the_broker_restarted_during_a_session(gateway, workers, broker):
    audio, _ = conversation(UTTS[:2], [0.6, 3.0, 1.0])
    first, second = audio[: int(16000 * 3.6)], audio[int(16000 * 3.6) :]

    def restart() -> None:
        broker.stop()
        time.sleep(1.0)
        broker.start()

    script = [start(realtime=True), first, Wait("turn.assessed"), restart, second, {"type": "session.end"}]
    outcome = talk(gateway.url, script, realtime=True, timeout=120)
    outcome.check_every_turn_finished()  # every turn has exactly one terminal event
    assert len(outcome.of("turn.started")) == 2
    # the gateway and the workers reconnected: the turn after the restart is assessed
    assert [e["turn_id"] for e in outcome.of("turn.assessed")] == [1, 2], outcome.events
    assert outcome.close_code == 1000


def test_no_worker_at_all_fails_turns_after_the_deadline(broker, tmp_path):
    server = ServerProcess(
        ["--broker", broker.url, "--prefix", "nobody/v1", "--job-deadline", "2"], tmp_path / "server.log"
    )
    try:
        began = time.monotonic()
        outcome = talk(server.url, one_turn(UTTS[1]), chunk_ms=250, timeout=60)
        outcome.check_every_turn_finished()
        failed = outcome.of("turn.failed")
        assert len(failed) == 1 and failed[0]["code"] == "worker_unavailable", outcome.events
        assert time.monotonic() - began < 20
    finally:
        assert server.stop() == 0
