"""The worker runtime both pools run: load the assessor once for a device, answer batches of jobs.

The embedded pool's worker processes (:mod:`multipa_server.worker`, over a pipe) and
``multipa-worker`` (:mod:`multipa_server.mqtt_worker`, over a broker) are adapters
around it: they move jobs in and answers out, and this module does the work the
same way for both:

- :func:`start` loads every model on one device and warms them up, and reports
  :class:`Ready` (with the device) or :class:`Failed` (a multipa_core code, or
  ``internal_error`` for a broken install);
- :meth:`Runtime.answer` assesses a batch of jobs, each answered by one
  :class:`Done` or :class:`Failed` in order; the Whisper encoders, the encoder layers
  and the scoring network run once for the batch, and a rejected turn or a bug
  fails its own job (or the batch), never the worker.

Heavy imports (torch, multipa_core's models) happen in :func:`start`, so that the
commands can check their options first.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

log = logging.getLogger(__name__)

MAX_BATCH = 256  # the most jobs one batch may hold (--batch)


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker loads, where it runs, and how many jobs it takes at once."""

    scorer: str = "multipa-scorer"  # scorer checkpoint name or path (it names its aligner)
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    asr_target: str | None = None  # ASR_t: Whisper name or directory (None: the scorer checkpoint's)
    asr_recognized: str | None = None  # ASR_r: Whisper name or directory (None: the scorer checkpoint's)
    threads: int = 0  # CPU threads for torch and each Whisper model (0: the libraries' defaults)
    batch: int = 1  # most jobs assessed together (one encoder and scorer pass for all of them)


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


class JobAudio(Protocol):
    """What the runtime reads of a job (a pool :class:`~multipa_server.pool.Job` or an MQTT job).

    Read-only properties, so that frozen dataclasses (the MQTT job) match.
    """

    @property
    def id(self) -> str: ...
    @property
    def pcm(self) -> bytes: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def reference(self) -> str | None: ...


class Runtime:
    """The loaded assessor of one worker.

    Args:
        assessor: a :class:`multipa_core.assess.Assessor` (or anything with its ``assess_many``).
        device: where its models run, for :class:`Ready`.
    """

    def __init__(self, assessor: Any, device: str) -> None:
        self.assessor = assessor
        self.device = device

    def ready(self) -> Ready:
        """The readiness report."""
        return Ready(os.getpid(), self.device)

    def answer(self, jobs: Sequence[JobAudio]) -> list[Done | Failed]:
        """Assess a batch of jobs; one answer per job, in order (never raises)."""
        from multipa_core import audio
        from multipa_core.errors import MultipaError

        started = time.perf_counter()
        turns: list[Any] = []
        for job in jobs:
            try:
                turns.append((audio.from_pcm16(job.pcm, job.sample_rate), job.reference))
            except MultipaError as exc:
                turns.append(Failed(exc.code, str(exc)))
        valid = [t for t in turns if not isinstance(t, Failed)]
        try:
            outcomes = iter(self.assessor.assess_many(valid) if valid else [])
        except Exception as exc:  # a bug must not take the worker down
            log.exception("the assessment of jobs %s failed", ", ".join(j.id for j in jobs))
            failure = Failed("internal_error", f"the assessment failed ({type(exc).__name__})")
            outcomes = iter([failure] * len(valid))
        answers: list[Done | Failed] = []
        for turn in turns:
            outcome = turn if isinstance(turn, Failed) else next(outcomes)
            if isinstance(outcome, MultipaError):
                answers.append(Failed(outcome.code, str(outcome)))
            elif isinstance(outcome, Failed):
                answers.append(outcome)
            else:
                answers.append(Done(outcome.to_dict()))
        log.info("jobs %s: %.2f s", ", ".join(j.id for j in jobs), time.perf_counter() - started)
        return answers


def load(options: WorkerOptions) -> Runtime:
    """Load every model on the options' device and run them once.

    Raises:
        MultipaError: a model or the device is missing (``device_unavailable``, ``model_unknown``, ...),
            or a Whisper model is not the one the scorer was trained with (``model_mismatch``).
    """
    from multipa_core.assess import Assessor
    from multipa_core.pipeline import PipelineOptions

    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    pipeline = PipelineOptions(
        device=options.device, threads=options.threads, target=options.asr_target, recognizer=options.asr_recognized
    )
    assessor = Assessor(pipeline, scorer=options.scorer)
    assessor.warm_up()
    return Runtime(assessor, assessor.device)


def start(options: WorkerOptions) -> Runtime | Failed:
    """:func:`load`, with a failure reported rather than raised (what a pool's worker sends back)."""
    from multipa_core.errors import MultipaError

    try:
        return load(options)
    except MultipaError as exc:
        return Failed(exc.code, str(exc))
    except Exception as exc:  # a broken install: say what; the pool reports it at start
        log.exception("loading the models failed")
        return Failed("internal_error", f"loading the models failed: {type(exc).__name__}: {exc}")
