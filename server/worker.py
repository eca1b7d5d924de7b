"""The assessment worker: loads every model once, then assesses the jobs it is given.

:func:`main` is the process entry of :class:`multipa_server.local_pool.LocalPool`.
It talks over one duplex pipe, in pickled dataclasses:

- worker to pool, once: :class:`Ready` (models loaded) or :class:`Failed` (they
  could not be, and the process exits);
- pool to worker: a :class:`~multipa_server.pool.Job`, answered by one
  :class:`Done` or :class:`Failed`; ``None`` asks the worker to exit.

The worker ignores SIGINT and SIGTERM: on Ctrl-C or a service stop the whole
process group gets the signal, and the server, which drains in-flight turns
first, decides when the workers stop. A worker whose server died exits when the
pipe closes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from .pool import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker loads and where it runs."""

    scorer: str = "multipa-scorer"  # scorer checkpoint name or path (it names its aligner)
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    threads: int = 0  # CPU threads for torch and each Whisper model (0: the libraries' defaults)


@dataclass(frozen=True)
class Ready:
    """The models are loaded."""

    pid: int
    device: str  # the device the models run on


@dataclass(frozen=True)
class Done:
    """A job's assessment."""

    assessment: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """A job (or the start) failed; ``code`` is a multipa_core code or ``internal_error``."""

    code: str
    message: str


def main(conn: Connection, options: WorkerOptions) -> None:
    """Run one worker until the pool sends ``None`` or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s worker[{os.getpid()}] %(name)s: %(message)s")
    from multipa_core.errors import MultipaError

    try:
        assessor, device = _load(options)
    except MultipaError as exc:
        conn.send(Failed(exc.code, str(exc)))
        return
    except Exception as exc:  # a broken install: say what, the pool reports it at start
        log.exception("loading the models failed")
        conn.send(Failed("internal_error", f"loading the models failed: {type(exc).__name__}: {exc}"))
        return
    conn.send(Ready(os.getpid(), device))
    serve(conn, assessor.assess)


def serve(conn: Connection, assess: Any) -> None:
    """Answer jobs with ``assess(samples, reference=...)`` until told to stop."""
    from multipa_core import audio
    from multipa_core.errors import MultipaError

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if job is None:
            return
        assert isinstance(job, Job)
        started = time.perf_counter()
        try:
            samples = audio.from_pcm16(job.pcm, job.sample_rate)
            reply: Done | Failed = Done(assess(samples, reference=job.reference).to_dict())
        except MultipaError as exc:
            reply = Failed(exc.code, str(exc))
        except Exception as exc:  # a bug on one turn must not take the worker down
            log.exception("job %s failed", job.id)
            reply = Failed("internal_error", f"the assessment failed ({type(exc).__name__})")
        log.info("job %s: %.2f s", job.id, time.perf_counter() - started)
        conn.send(reply)


def _load(options: WorkerOptions) -> tuple[Any, str]:
    from multipa_core.asr import resolve_device
    from multipa_core.assess import Assessor
    from multipa_core.pipeline import PipelineOptions

    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    assessor = Assessor(PipelineOptions(device=options.device, threads=options.threads), scorer=options.scorer)
    assessor.warm_up()
    return assessor, resolve_device(options.device)
