"""Phone posteriors from a Charsiu-format wav2vec2 frame classifier (a local directory).

The default posteriors come from the project's CTC aligner over Whisper frames.
Users with a Charsiu frame classifier (``Wav2Vec2ForFrameClassification`` in the
Charsiu code; ``Wav2Vec2ForAudioFrameClassification`` in transformers, the same
weights layout: ``wav2vec2.*`` and ``classifier.*``) can use it instead.

The checkpoint's labels (``config.id2label``: ``AA``, ``sil``, ``[PAD]``, maybe
lower-case or with stress digits) are mapped onto :mod:`multipa_core.phones`
classes: each of the 39 phones takes the summed probability of the labels that
name it, and class 0 (blank, no phone) takes the sum of every other label
(silence, padding, unknown). Frames come at 50 per second, ``ceil(samples / 320)``
of them, like the Whisper frames; a classifier with a finer frame rate (Charsiu's
10 ms models) is averaged down to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from . import phones, registry
from .acoustic import (
    SAMPLES_PER_FRAME,
    check_loaded,
    conv_stride,
    fit_frames,
    frame_count,
    prepare_waveform,
    wants_normalization,
)
from .errors import ModelFilesError

MIN_SHARED_PHONES = 30  # fewer phones in common than this: not an English ARPAbet classifier


def label_matrix(
    id2label: Mapping[int, str] | Mapping[str, str], *, source: str = "the model"
) -> tuple[np.ndarray, list[str]]:
    """(num_labels, NUM_CLASSES) 0/1 matrix sending each label's probability to its class.

    Returns the matrix and the sorted list of our phones the labels cover.

    Raises:
        ModelFilesError: the labels are not numbered 0..n-1, or they share fewer
            than :data:`MIN_SHARED_PHONES` phones with :data:`phones.PHONES`.
    """
    try:
        ids = sorted(int(k) for k in id2label)
    except (TypeError, ValueError) as exc:
        raise ModelFilesError(f"{source} has label ids that are not integers: {exc}") from exc
    if ids != list(range(len(ids))):
        raise ModelFilesError(f"{source} has label ids that are not numbered 0..{len(ids) - 1}")
    table = {int(k): str(v) for k, v in id2label.items()}
    matrix = np.zeros((len(ids), phones.NUM_CLASSES), dtype=np.float32)
    covered: set[str] = set()
    for i in ids:
        name = table[i].strip()
        if name and phones.is_known(name):
            matrix[i, phones.index(name) + 1] = 1.0
            covered.add(phones.base(name))
        else:
            matrix[i, phones.BLANK] = 1.0
    if len(covered) < MIN_SHARED_PHONES:
        missing = [p for p in phones.PHONES if p not in covered]
        raise ModelFilesError(
            f"{source} is not an English ARPAbet phone classifier: its {len(ids)} labels share only "
            f"{len(covered)} of the 39 ARPAbet phones (at least {MIN_SHARED_PHONES} are needed; "
            f"missing {', '.join(missing[:10])}{'...' if len(missing) > 10 else ''})"
        )
    return matrix, sorted(covered)


def resample_frames(frames: np.ndarray, stride: int, count: int) -> np.ndarray:
    """Frames produced every ``stride`` samples, brought to ``count`` frames of 320 samples.

    Each output frame averages the input frames that start inside it; an output
    frame no input frame starts in takes the nearest one.
    """
    if stride == SAMPLES_PER_FRAME or frames.shape[0] == 0:
        return fit_frames(frames, count)
    starts = np.arange(frames.shape[0]) * stride
    target = np.minimum(starts // SAMPLES_PER_FRAME, count - 1)
    out = np.zeros((count, frames.shape[1]), dtype=np.float64)
    hits = np.zeros(count, dtype=np.int64)
    np.add.at(out, target, frames)
    np.add.at(hits, target, 1)
    empty = hits == 0
    if empty.any():
        centres = (np.flatnonzero(empty) + 0.5) * SAMPLES_PER_FRAME
        nearest = np.clip(np.round(centres / stride).astype(np.int64), 0, frames.shape[0] - 1)
        out[empty] = frames[nearest]
        hits[empty] = 1
    return (out / hits[:, None]).astype(np.float32)


class CharsiuPosteriors:
    """Per-frame phone probabilities (blank = class 0) from a Charsiu frame classifier.

    Args:
        path: a local directory with ``config.json`` (holding ``id2label``) and weights.
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, path: str | Path, *, device: str = "cpu") -> None:
        import torch
        from transformers import Wav2Vec2Config, Wav2Vec2ForAudioFrameClassification

        self.path = registry.resolve(path, kind="charsiu")
        try:
            config = Wav2Vec2Config.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFilesError(f"cannot read a wav2vec2 config from {self.path}: {exc}") from exc
        # Check the labels before loading the (possibly large) weights.
        # transformers types id2label as optional; a loaded config always has one (two labels by default)
        self.matrix, self.covered = label_matrix(config.id2label or {}, source=str(self.path))
        try:
            loaded = Wav2Vec2ForAudioFrameClassification.from_pretrained(
                str(self.path), config=config, local_files_only=True, output_loading_info=True
            )
            # transformers types from_pretrained as returning the model alone, output_loading_info or not
            model, info = cast("tuple[Wav2Vec2ForAudioFrameClassification, dict[str, Any]]", loaded)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelFilesError(f"cannot load a Charsiu frame classifier from {self.path}: {exc}") from exc
        check_loaded(
            info,
            self.path,
            required_prefixes=("classifier.", "wav2vec2.feature_extractor.", "wav2vec2.encoder.layers."),
        )
        self.model = model.eval().to(device)
        self.device = device
        self.normalize = wants_normalization(self.path, config)
        self.stride = conv_stride(config)
        if SAMPLES_PER_FRAME % self.stride and self.stride % SAMPLES_PER_FRAME:
            raise ModelFilesError(
                f"{self.path} produces a frame every {self.stride} samples, which does not divide "
                f"into 50 frames per second ({SAMPLES_PER_FRAME} samples per frame)"
            )
        self._torch = torch
        self._matrix_t = torch.from_numpy(self.matrix)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(frames, phones.NUM_CLASSES) float32 probabilities, rows summing to 1, 50 frames/s."""
        torch = self._torch
        wave = prepare_waveform(audio, normalize=self.normalize)
        count = frame_count(len(audio))
        with torch.inference_mode():
            inputs = torch.from_numpy(wave)[None].to(self.device)
            logits = self.model(input_values=inputs).logits[0].float().cpu()
            probs = torch.softmax(logits, dim=-1) @ self._matrix_t
        out = resample_frames(probs.numpy().astype(np.float32, copy=False), self.stride, count)
        out = np.clip(out, 0.0, None)
        return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)
