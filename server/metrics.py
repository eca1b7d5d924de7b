"""Prometheus metrics of the server, in the text exposition format (version 0.0.4).

Written by hand (a few counters and histograms do not need a client library):
:class:`Metrics` observes every server event and renders itself with the pool's
gauges for ``GET /metrics``.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from .pool import PoolStats
from .protocol import Error, ServerEvent, SessionEnded, TurnAssessed, TurnFailed, TurnStarted

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class Histogram:
    """Cumulative buckets, sum and count of one labelled series."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """Counters of one server process."""

    def __init__(self) -> None:
        self.sessions_total = 0
        self.sessions_active = 0
        self.turns_started = 0
        self.turns_assessed = 0
        self.failures: Counter[str] = Counter()  # turn.failed by code
        self.errors: Counter[str] = Counter()  # error events by code
        self.audio_seconds = 0.0
        self.latency: dict[str, Histogram] = {}  # queue, assess, total
        self.stages: dict[str, Histogram] = {}  # pipeline stages of multipa_core

    def session_opened(self) -> None:
        self.sessions_total += 1
        self.sessions_active += 1

    def session_closed(self) -> None:
        self.sessions_active -= 1

    def observe(self, event: ServerEvent) -> None:
        """Count one event (sent or, for a vanished client, only logged)."""
        if isinstance(event, TurnStarted):
            self.turns_started += 1
        elif isinstance(event, TurnAssessed):
            self.turns_assessed += 1
            for stage, ms in event.latency_ms.items():
                self.latency.setdefault(stage, Histogram()).observe(ms / 1000.0)
            timings = event.assessment.get("timings_ms", {})
            for stage, ms in timings.items() if isinstance(timings, dict) else ():
                if isinstance(ms, (int, float)):
                    self.stages.setdefault(stage, Histogram()).observe(ms / 1000.0)
        elif isinstance(event, TurnFailed):
            self.failures[event.code] += 1
        elif isinstance(event, Error):
            self.errors[event.code] += 1
        elif isinstance(event, SessionEnded):
            self.audio_seconds += event.audio_ms / 1000.0

    def render(self, pool: PoolStats, *, draining: bool = False) -> str:
        """The exposition text."""
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        metric("multipa_sessions_total", "counter", "Sessions opened.", [("", self.sessions_total)])
        metric("multipa_sessions_active", "gauge", "Sessions connected now.", [("", self.sessions_active)])
        metric("multipa_turns_started_total", "counter", "Turns announced by turn.started.", [("", self.turns_started)])
        metric("multipa_turns_assessed_total", "counter", "Turns that got turn.assessed.", [("", self.turns_assessed)])
        metric(
            "multipa_turn_failures_total",
            "counter",
            "Turns that got turn.failed, by code.",
            [(_labels(code=c), n) for c, n in sorted(self.failures.items())],
        )
        metric(
            "multipa_errors_total",
            "counter",
            "Error events sent, by code.",
            [(_labels(code=c), n) for c, n in sorted(self.errors.items())],
        )
        metric(
            "multipa_audio_seconds_total", "counter", "Audio received by ended sessions.", [("", self.audio_seconds)]
        )
        metric("multipa_queue_depth", "gauge", "Turns waiting for a worker.", [("", pool.queued)])
        metric(
            "multipa_queue_capacity",
            "gauge",
            "Queue bound; beyond it turns fail with overloaded.",
            [("", pool.max_queue)],
        )
        metric(
            "multipa_workers",
            "gauge",
            "Workers by state.",
            [
                (_labels(state="configured"), pool.workers),
                (_labels(state="ready"), pool.ready),
                (_labels(state="busy"), pool.busy),
            ],
        )
        metric(
            "multipa_worker_restarts_total",
            "counter",
            "Workers replaced after a crash or timeout.",
            [("", pool.restarts)],
        )
        metric("multipa_draining", "gauge", "1 while the server shuts down.", [("", int(draining))])
        if pool.extra:  # the pool's own gauges and counters (the MQTT gateway's re-sends, reconnects, ...)
            metric(
                "multipa_pool",
                "gauge",
                "Pool-specific gauges and counters, by name.",
                [(_labels(name=k), v) for k, v in sorted(pool.extra.items())],
            )
        for name, help_text, series in (
            (
                "multipa_turn_latency_seconds",
                "Turn latency by stage: queue, assess, total (turn.ended to turn.assessed).",
                self.latency,
            ),
            ("multipa_pipeline_stage_seconds", "Time of each pipeline stage inside the worker.", self.stages),
        ):
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} histogram")
            for stage, hist in sorted(series.items()):
                for bound, count in zip(hist.bounds, hist.counts):
                    out.append(f"{name}_bucket{_labels(stage=stage, le=_number(bound))} {count}")
                out.append(f"{name}_bucket{_labels(stage=stage, le='+Inf')} {hist.count}")
                out.append(f"{name}_sum{_labels(stage=stage)} {_number(hist.sum)}")
                out.append(f"{name}_count{_labels(stage=stage)} {hist.count}")
        return "\n".join(out) + "\n"


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
