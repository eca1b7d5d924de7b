"""multipa_client.pipecat in real Pipecat pipelines: with the SDK's fake server (seconds), and
end to end with Silero VAD, real learner speech and the real server, killed mid-conversation."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the pipecat extra is not installed")

from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    Frame,
    InputAudioRawFrame,
    LLMMessagesAppendFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.processors.frameworks.rtvi import RTVIServerMessageFrame  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from multipa_client import ReconnectPolicy, TurnAssessed  # noqa: E402
from multipa_client.pipecat import (  # noqa: E402
    SERVER_UNAVAILABLE,
    PronunciationAssessmentFrame,
    PronunciationFailedFrame,
    PronunciationProcessor,
    PronunciationReferenceFrame,
)
from multipa_client.testing import FakeServer, Recording  # noqa: E402

RATE = 16_000
FRAME_MS = 20


def audio_frames(samples: np.ndarray, rate: int = RATE, channels: int = 1) -> list[InputAudioRawFrame]:
    """int16 samples (frames x channels when stereo) as 20 ms transport frames."""
    step = rate * FRAME_MS // 1000
    return [
        InputAudioRawFrame(audio=samples[i : i + step].tobytes(), sample_rate=rate, num_channels=channels)
        for i in range(0, len(samples), step)
    ]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tap:
    """A transport around another that keeps every message the client sends, in order."""

    def __init__(self, inner) -> None:
        self.inner, self.sent = inner, []

    async def connect(self, url: str, *, api_key: str | None):
        conn, sent = await self.inner.connect(url, api_key=api_key), self.sent

        class Tapped:
            async def send(self, message) -> None:
                sent.append(message)
                await conn.send(message)

            async def recv(self) -> str:
                return await conn.recv()

            async def close(self) -> None:
                await conn.close()

        return Tapped()

    def audio_samples(self) -> int:
        return sum(len(m) // 2 for m in self.sent if isinstance(m, bytes))


class Recorder(FrameProcessor):
    """Keeps every frame that passes, in order, with its direction."""

    def __init__(self) -> None:
        super().__init__(enable_direct_mode=True)
        self.frames: list[tuple[Frame, FrameDirection]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.frames.append((frame, direction))
        await self.push_frame(frame, direction)

    def of(self, kind: type) -> list:
        return [f for f, _ in self.frames if isinstance(f, kind)]


# --- with the fake server ------------------------------------------------------------


def test_server_turns_from_a_48k_stereo_transport_with_rtvi_and_notes():
    """The shipped three-turn recording: three assessment frames, each with an RTVI message and a
    note; the audio frames go on as the same objects, in order, among the feedback frames."""
    recording = Recording.load("three_turns")
    mono = (np.sin(np.arange(recording.audio_ms * 48) / 7.0) * 3000).astype(np.int16)  # never analysed
    stereo = np.stack([mono, mono], axis=1)
    frames = audio_frames(stereo, 48_000, 2)
    tap = Tap(FakeServer("three_turns"))
    processor = PronunciationProcessor(
        "ws://fake/v1/stream",
        turns="server",
        rtvi=True,
        llm_note=True,
        note_role="developer",
        transport=tap,
        realtime=False,
        end_timeout_s=120,
    )
    down, _ = asyncio.run(run_test(processor, frames_to_send=[*frames, SleepFrame(sleep=2.0)]))

    assert [f for f in down if isinstance(f, InputAudioRawFrame)] == frames and all(
        a is b for a, b in zip([f for f in down if isinstance(f, InputAudioRawFrame)], frames)
    )
    assessed = [f for f in down if isinstance(f, PronunciationAssessmentFrame)]
    assert [f.event.turn_id for f in assessed] == [1, 2, 3] and all(isinstance(f.event, TurnAssessed) for f in assessed)
    assert all(f.learner_turn is None for f in assessed)  # no user turns in this pipeline
    rtvi = [f.data for f in down if isinstance(f, RTVIServerMessageFrame)]
    assert [d["type"] for d in rtvi] == ["pronunciation.assessed"] * 3 and [d["turn_id"] for d in rtvi] == [1, 2, 3]
    assert rtvi[0]["assessment"]["transcript"] == assessed[0].event.assessment.transcript
    notes = [f.messages[0] for f in down if isinstance(f, LLMMessagesAppendFrame)]
    assert [n["role"] for n in notes] == ["developer"] * 3 and assessed[2].event.assessment.transcript.strip() in notes[
        2
    ]["content"]
    assert not [f for f in down if isinstance(f, PronunciationFailedFrame)]
    # 48 kHz stereo reached the server as 16 kHz mono: the whole stream, give or take the resampler's tail
    assert abs(tap.audio_samples() - recording.audio_ms * 16) <= 16 * FRAME_MS


def test_no_server_every_learner_turn_fails_and_the_audio_flows_on():
    """Nothing listens on the port: each user turn gets one server_unavailable frame, nothing waits."""
    url = f"ws://127.0.0.1:{closed_port()}/v1/stream"
    processor = PronunciationProcessor(url, retry_after_s=0.0, rtvi=True, reconnect=ReconnectPolicy(attempts=0))
    speech = audio_frames(np.full(RATE // 2, 1000, np.int16))
    frames: list[Frame] = []
    for _ in range(3):
        frames += [UserStartedSpeakingFrame(), *speech, UserStoppedSpeakingFrame(), SleepFrame(sleep=0.2)]
    down, _ = asyncio.run(run_test(processor, frames_to_send=[*frames, SleepFrame(sleep=0.5)]))

    sent_audio = [f for f in frames if isinstance(f, InputAudioRawFrame)]
    got_audio = [f for f in down if isinstance(f, InputAudioRawFrame)]
    assert len(got_audio) == len(sent_audio) and all(a is b for a, b in zip(got_audio, sent_audio))
    failed = [f for f in down if isinstance(f, PronunciationFailedFrame)]
    assert [(f.learner_turn, f.code) for f in failed] == [
        (1, SERVER_UNAVAILABLE),
        (2, SERVER_UNAVAILABLE),
        (3, SERVER_UNAVAILABLE),
    ]
    assert [f.data["code"] for f in down if isinstance(f, RTVIServerMessageFrame)] == [SERVER_UNAVAILABLE] * 3


def test_pipeline_turns_send_turn_end_after_the_turns_audio_and_the_reference_before_it():
    """What the server receives: a session with the VAD off, each turn's audio (with pre-roll) then
    turn.end, the reference before the turn it belongs to, nothing between turns."""
    tap = Tap(FakeServer("three_turns"))
    processor = PronunciationProcessor("ws://fake/v1/stream", transport=tap, pre_roll_ms=100, realtime=False)
    quiet = audio_frames(np.zeros(RATE, np.int16))  # 1 s before the turn: only 100 ms of it is sent
    speech = audio_frames(np.full(RATE, 500, np.int16))
    frames = [
        *quiet,
        PronunciationReferenceFrame("MIKE LIKES THE ORANGE ONE"),
        UserStartedSpeakingFrame(),
        *speech,
        UserStoppedSpeakingFrame(),
        *quiet,
        SleepFrame(sleep=0.5),
    ]
    down, _ = asyncio.run(run_test(processor, frames_to_send=frames))

    assert [f for f in down if isinstance(f, PronunciationReferenceFrame)][
        0
    ].text == "MIKE LIKES THE ORANGE ONE"  # passed on too
    import json

    received = tap.sent
    start = json.loads(received[0])
    assert start["vad"]["enabled"] is False and start["sample_rate"] == RATE
    controls = [(i, json.loads(m)) for i, m in enumerate(received) if isinstance(m, str)]
    kinds = [c["type"] for _, c in controls]
    assert kinds[:3] == ["session.start", "turn.reference", "turn.end"], kinds
    audio_before_end = sum(len(m) // 2 for m in received[: controls[2][0]] if isinstance(m, bytes))
    assert audio_before_end == RATE + RATE // 10  # the turn and its 100 ms pre-roll, no more
    assert sum(len(m) // 2 for m in received if isinstance(m, bytes)) == audio_before_end  # nothing after the turn


def test_options_are_checked():
    with pytest.raises(ValueError):
        PronunciationProcessor("ws://x", turns="both")
    with pytest.raises(ValueError):
        PronunciationProcessor("ws://x", mode="half")
    with pytest.raises(ValueError):
        PronunciationProcessor("ws://x", note_role="user")


# --- end to end: Silero VAD, real learner speech, the real server -----------------------


def free_port() -> int:
    return closed_port()


class Conversation:
    """A running Pipecat pipeline: transport frames in at real-time pace, what passed our processor kept."""

    def __init__(self, processor: PronunciationProcessor, context) -> None:
        from pipecat.audio.vad.silero import SileroVADAnalyzer
        from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator, LLMUserAggregatorParams
        from pipecat.turns.user_start import VADUserTurnStartStrategy
        from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
        from pipecat.turns.user_turn_strategies import UserTurnStrategies

        # the bot's user side as Pipecat builds it: Silero VAD and its turn strategies in the
        # context aggregator, which broadcasts UserStarted/StoppedSpeakingFrame back to us
        strategies = UserTurnStrategies(
            start=[VADUserTurnStartStrategy()],
            stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.4, wait_for_transcript=False)],
        )
        user = LLMUserAggregator(
            context, params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer(), user_turn_strategies=strategies)
        )
        self.after = Recorder()  # right after our processor: what the rest of the bot gets
        self.worker = PipelineWorker(
            Pipeline([processor, self.after, user]),
            params=PipelineParams(audio_in_sample_rate=RATE),
            cancel_on_idle_timeout=False,
        )
        self.sent: list[InputAudioRawFrame] = []

    async def __aenter__(self) -> "Conversation":
        started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def _started(worker, frame) -> None:
            started.set()

        self.runner = WorkerRunner(handle_sigint=False)
        await self.runner.add_workers(self.worker)
        self.running = asyncio.create_task(self.runner.run())
        await asyncio.wait_for(started.wait(), 30)
        self.clock = asyncio.get_running_loop().time()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.worker.queue_frame(EndFrame())
        await asyncio.wait_for(self.running, 60)

    async def say(self, samples: np.ndarray) -> None:
        """Send audio as a transport does: a 20 ms frame every 20 ms."""
        loop = asyncio.get_running_loop()
        for frame in audio_frames(samples):
            self.clock += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, self.clock - loop.time()))
            self.sent.append(frame)
            await self.worker.queue_frame(frame)

    async def silence_until(self, done, timeout: float) -> None:
        """Silence, in real time, until ``done()`` (the pipeline keeps running meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            assert loop.time() < deadline, f"timed out: {self.feedback()}"
            await self.say(np.zeros(RATE // 5, np.int16))

    def feedback(self) -> list:
        return [
            f for f, _ in self.after.frames if isinstance(f, (PronunciationAssessmentFrame, PronunciationFailedFrame))
        ]

    def turns_ended(self) -> int:
        return len(
            [
                f
                for f, d in self.after.frames
                if isinstance(f, UserStoppedSpeakingFrame) and d is FrameDirection.UPSTREAM
            ]
        )


@pytest.mark.models
@pytest.mark.timeout(2400)  # two server starts with the models: minutes on a busy 2-core machine
def test_a_real_pipeline_with_silero_vad_against_the_real_server_killed_mid_conversation(scorer, tmp_path):
    from pipecat.processors.aggregators.llm_context import LLMContext

    from tests.server.speech import silence, utterance
    from tests.server.wsclient import ServerProcess

    port = free_port()
    args = ["--workers", "1", "--scorer", scorer, "--port", str(port)]
    server = ServerProcess(args, tmp_path / "first.log", timeout=900)
    url = f"ws://127.0.0.1:{port}/v1/stream"
    context = LLMContext(messages=[{"role": "system", "content": "You are an English tutor."}])
    processor = PronunciationProcessor(
        url,
        llm_note=True,
        rtvi=True,
        retry_after_s=1.0,
        reconnect=ReconnectPolicy(attempts=2, initial_delay_s=0.2, max_delay_s=0.5),
    )
    reference = "HE IS A BIG BOY"
    second = None

    async def go() -> Conversation:
        nonlocal server, second
        async with Conversation(processor, context) as talk:
            await talk.say(silence(1.0))
            for utt in ("004820045", "010290094"):  # two turns with the server up
                await talk.say(utterance(utt))
                await talk.say(silence(1.2))
            await talk.silence_until(lambda: len(talk.feedback()) == 2 == talk.turns_ended(), 240)
            server.proc.kill()  # mid-conversation, without a goodbye
            server.proc.wait(30)
            await talk.say(utterance("000480014"))  # the server is down: this turn fails, nothing stops
            await talk.silence_until(lambda: len(talk.feedback()) == 3 == talk.turns_ended(), 60)
            restart = asyncio.ensure_future(
                asyncio.to_thread(ServerProcess, args, tmp_path / "second.log", timeout=900)
            )
            await talk.silence_until(
                restart.done, 960
            )  # the bot goes on while the server starts again, on the same port
            second = restart.result()
            await talk.say(silence(0.5))
            await talk.worker.queue_frame(PronunciationReferenceFrame(reference))  # the bot asked for this sentence
            await talk.say(utterance("001350134"))
            await talk.say(silence(1.2))
            await talk.say(utterance("004820045"))
            await talk.silence_until(lambda: len(talk.feedback()) == 5 == talk.turns_ended(), 240)
            return talk

    try:
        talk = asyncio.run(go())
    finally:
        server.stop()
        if second is not None:
            assert second.stop() == 0 and "Traceback" not in second.log()

    # the bot's audio: every frame went on, the same objects in the same order
    passed = [f for f, d in talk.after.frames if isinstance(f, InputAudioRawFrame)]
    assert len(passed) == len(talk.sent) and all(a is b for a, b in zip(passed, talk.sent))
    # one frame per learner turn: turns 1, 2, 4 and 5 assessed, turn 3 (server down) failed
    feedback = talk.feedback()
    assert [f.learner_turn for f in feedback] == [1, 2, 3, 4, 5], feedback
    assert [type(f).__name__ for f in feedback] == ["PronunciationAssessmentFrame"] * 2 + [
        "PronunciationFailedFrame"
    ] + ["PronunciationAssessmentFrame"] * 2, feedback
    assert feedback[2].code in (SERVER_UNAVAILABLE, "connection_lost")
    said = [f.event.assessment for f in feedback if isinstance(f, PronunciationAssessmentFrame)]
    assert "good" in said[0].transcript.lower() and "good" in said[1].transcript.lower()
    assert said[2].mode == "closed" and said[2].target_transcript.upper().strip(" .") == reference
    # a reference is for one turn; the learner's "step" is heard as "step" or "stack" depending on
    # where the VAD cut the turn (a loaded machine moves it), so the turn is known by "good"
    assert said[3].mode == "open" and "good" in said[3].transcript.lower()
    # the LLM context got a note for each assessed turn, after the system prompt
    notes = [m["content"] for m in context.get_messages() if m["role"] == "system"][1:]
    assert len(notes) == 4 and all("Pronunciation feedback" in n for n in notes)
    assert said[0].transcript.strip() in notes[0]
    rtvi = [f.data["type"] for f, _ in talk.after.frames if isinstance(f, RTVIServerMessageFrame)]
    assert rtvi == ["pronunciation.assessed"] * 2 + ["pronunciation.failed"] + ["pronunciation.assessed"] * 2
