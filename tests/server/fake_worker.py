"""A stand-in for multipa_server.worker.main with the same pipe protocol and no models.

A list of jobs is a batch, answered by a list. The job's ``reference`` says what to do: ``crash`` (exit at once), ``crash-once:PATH``
(exit unless PATH exists, creating it), ``sleep:SECONDS``, ``reject`` (a multipa_core
error), else answer. ``WorkerOptions.scorer`` says how to start: ``fail`` or ``die``; ``die-idle:SECONDS``
starts, then exits that long after it was ready.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from multipa_server.worker import Done, Failed, Ready


def main(conn, options) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if options.scorer == "fail":
        conn.send(Failed("model_files", "the scorer checkpoint is missing"))
        return
    if options.scorer == "die":
        os._exit(7)
    conn.send(Ready(os.getpid(), "cpu"))
    if options.scorer.startswith("die-idle:"):  # ready, then dies while idle
        time.sleep(float(options.scorer.split(":", 1)[1]))
        os._exit(9)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        if isinstance(message, list):  # a batch: answered by a list, in order
            conn.send([answer(job, len(message)) for job in message])
        else:
            conn.send(answer(message, 1))


def answer(job, batch: int):
    what = job.reference or ""
    if what == "crash":
        os._exit(3)
    if what.startswith("crash-once:"):
        marker = Path(what.split(":", 1)[1])
        if not marker.exists():
            marker.touch()
            os._exit(3)
    if what.startswith("sleep:"):
        time.sleep(float(what.split(":", 1)[1]))
    if what == "reject":
        return Failed("audio_silent", "the audio is silent (peak below -60 dBFS)")
    return Done({"pid": os.getpid(), "bytes": len(job.pcm), "job": job.id, "batch": batch})
