"""A Pipecat bot with pronunciation feedback from a MultiPA Live server (docs/integrations.md).

    multipa-server --port 8765 &
    python examples/pipecat_bot.py ws://127.0.0.1:8765/v1/stream --wav learner.wav   # a file as the "microphone"
    python examples/pipecat_bot.py ws://127.0.0.1:8765/v1/stream --mic               # pip install 'pipecat-ai[local]'

The pipeline is the user side of a Pipecat voice bot: the transport's input, the
pronunciation processor, and the context aggregator whose Silero VAD decides the
learner's turns. Put your STT, LLM and TTS services where the comment says; this
script prints what the app receives instead (the feedback frames, the RTVI
messages a client UI would get) and, at the end, the notes the LLM context got.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator, LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi import RTVIServerMessageFrame
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from multipa_client import read_file
from multipa_client.pipecat import PronunciationAssessmentFrame, PronunciationFailedFrame, PronunciationProcessor

RATE = 16_000


class ShowFeedback(FrameProcessor):
    """What the app sees: one line per learner turn, and the RTVI message a client UI would get."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, PronunciationAssessmentFrame):
            a = frame.event.assessment
            weak = ", ".join(w.text for w in a.words if w.needs_improvement) or "none"
            print(
                f"turn {frame.learner_turn}: heard {a.transcript.strip()!r}, total {a.sentence.total:.1f}/10 "
                f"(accuracy {a.sentence.accuracy:.1f}, fluency {a.sentence.fluency:.1f}, prosody {a.sentence.prosody:.1f}); to practise: {weak}"
            )
        elif isinstance(frame, PronunciationFailedFrame):
            print(f"turn {frame.learner_turn}: no feedback ({frame.code}: {frame.message})")
        elif isinstance(frame, RTVIServerMessageFrame):
            print(
                f"  RTVI server-message to the client: {frame.data['type']} (learner turn {frame.data['learner_turn']})"
            )
        await self.push_frame(frame, direction)


async def play_file(worker: PipelineWorker, path: str) -> None:
    """The file as a transport's input would deliver it: 20 ms frames in real time, then 2 s of quiet."""
    samples, rate = read_file(path)
    samples = np.concatenate([samples, np.zeros(2 * rate, np.int16)])
    step, loop = rate // 50, asyncio.get_running_loop()
    clock = loop.time()
    for i in range(0, len(samples), step):
        clock += 0.02
        await asyncio.sleep(max(0.0, clock - loop.time()))
        await worker.queue_frame(
            InputAudioRawFrame(audio=samples[i : i + step].tobytes(), sample_rate=rate, num_channels=1)
        )
    await asyncio.sleep(3.0)  # the last turn's feedback
    await worker.queue_frame(EndFrame())


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="ws://HOST:PORT/v1/stream of a multipa-server")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", help="play this file as the learner's microphone")
    source.add_argument("--mic", action="store_true", help="the local microphone (pipecat-ai[local])")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--reference", default=None, help="closed response: what the learner is asked to say first")
    args = parser.parse_args()

    context = LLMContext(messages=[{"role": "system", "content": "You are a friendly English conversation partner."}])
    user = LLMUserAggregator(
        context,
        params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(),
            user_turn_strategies=UserTurnStrategies(
                start=[VADUserTurnStartStrategy()], stop=[SpeechTimeoutUserTurnStopStrategy(wait_for_transcript=False)]
            ),
        ),
    )
    feedback = PronunciationProcessor(args.url, api_key=args.api_key, rtvi=True, llm_note=True)
    if args.reference:
        feedback.set_reference(args.reference)  # or push PronunciationReferenceFrame(text) when the bot asks
    transport = None
    if args.mic:
        from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams

        transport = LocalAudioTransport(LocalAudioTransportParams(audio_in_enabled=True, audio_in_sample_rate=RATE))
    stages = [transport.input()] if transport else []
    # a real bot: stages += [feedback, stt, user, llm, tts, transport.output(), assistant]
    stages += [feedback, ShowFeedback(), user]
    worker = PipelineWorker(Pipeline(stages), params=PipelineParams(audio_in_sample_rate=RATE))
    runner = WorkerRunner(handle_sigint=True)
    await runner.add_workers(worker)
    if args.wav:
        await asyncio.gather(runner.run(), play_file(worker, args.wav))
    else:
        await runner.run()  # Ctrl-C ends it
    print("\nnotes the LLM context got:")
    for message in context.get_messages()[1:]:
        print(f"  [{message['role']}] {message['content']}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
