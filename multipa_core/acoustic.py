"""HuBERT (or wav2vec2) frames as the acoustic embedding, from a local directory.

The default acoustic embedding is the Whisper base encoder output (512-d, 50
frames per second). Users with a HuBERT checkpoint can use its last hidden layer
instead: HuBERT and wav2vec2 downsample 16 kHz audio 320 times, which is also 50
frames per second, so the frames line up with the Whisper convention
(``ceil(samples / 320)`` frames, see :func:`multipa_core.asr.encoder_frame_count`).
The convolutional stack yields one or two frames fewer than that; the last frame
is repeated to make up the difference.

Nothing is downloaded: the directory is checked by :func:`registry.resolve` and
loaded with ``local_files_only=True``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .errors import EmptyAudioError, ModelFilesError, NonFiniteAudioError

SAMPLES_PER_FRAME = 320  # 16 kHz / 50 frames per second
_MIN_SAMPLES = 400  # the receptive field of the standard 7-layer convolutional stack


def frame_count(num_samples: int) -> int:
    """Frames (50 per second) covering ``num_samples`` of 16 kHz audio; at least one.

    Equal to :func:`multipa_core.asr.encoder_frame_count` for audio up to 30 s
    (the longest the pipeline accepts); unlike it, not capped at one window.
    """
    return max(1, math.ceil(num_samples / SAMPLES_PER_FRAME))


def fit_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """Trim ``frames`` (T, D) to ``count`` rows, or pad it by repeating the last row."""
    if frames.shape[0] >= count:
        return frames[:count]
    if frames.shape[0] == 0:
        raise ModelFilesError("the model produced no frames for this audio")
    pad = np.repeat(frames[-1:], count - frames.shape[0], axis=0)
    return np.concatenate([frames, pad], axis=0)


def conv_stride(config: Any) -> int:
    """Samples per output frame of a wav2vec2-family config (product of its conv strides)."""
    return int(np.prod(config.conv_stride))


def wants_normalization(path: Path, config: Any) -> bool:
    """Whether the waveform is normalised to zero mean, unit variance before the model.

    ``preprocessor_config.json``'s ``do_normalize`` decides when the directory has
    one; otherwise the rule of the HuBERT/wav2vec2 releases: models whose feature
    encoder uses layer norm (``feat_extract_norm == "layer"``) expect it.
    """
    preprocessor = path / "preprocessor_config.json"
    if preprocessor.is_file():
        try:
            return bool(json.loads(preprocessor.read_text()).get("do_normalize", True))
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"{preprocessor} is not valid JSON: {exc}") from exc
    return getattr(config, "feat_extract_norm", "group") == "layer"


def prepare_waveform(audio: np.ndarray, *, normalize: bool) -> np.ndarray:
    """A float32 mono waveform ready for a wav2vec2-family model.

    Normalised like ``Wav2Vec2FeatureExtractor`` when asked, then zero-padded to
    the convolutional stack's receptive field so very short clips still give a frame.
    """
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio (a 1-D array), got shape {wave.shape}")
    if wave.size == 0:
        raise EmptyAudioError("the audio holds no samples")
    if not np.all(np.isfinite(wave)):
        raise NonFiniteAudioError("the audio contains NaN or infinite samples")
    if normalize:
        wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    if wave.size < _MIN_SAMPLES:
        wave = np.pad(wave, (0, _MIN_SAMPLES - wave.size))
    return wave.astype(np.float32, copy=False)


def check_loaded(info: dict[str, Any], path: Path, *, required_prefixes: tuple[str, ...]) -> None:
    """Raise when the checkpoint lacked weights the model needs (they would be random)."""
    missing = [k for k in info.get("missing_keys", ()) if k.startswith(required_prefixes)]
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        raise ModelFilesError(
            f"{path} does not hold the weights this model needs ({len(missing)} missing, e.g. {shown}); "
            "is it the right kind of checkpoint?"
        )


class HubertEmbedder:
    """Last-layer HuBERT (or wav2vec2) frames of a clip, 50 per second.

    Args:
        path: a local transformers directory (``config.json`` and weights).
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, path: str | Path, *, device: str = "cpu") -> None:
        import torch
        from transformers import AutoConfig, AutoModel

        self.path = registry.resolve(path, kind="hubert")
        try:
            config = AutoConfig.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFilesError(f"cannot read a model config from {self.path}: {exc}") from exc
        if getattr(config, "conv_stride", None) is None:
            raise ModelFilesError(
                f"{self.path} is not a HuBERT or wav2vec2 model (its config says model_type "
                f"{getattr(config, 'model_type', None)!r}); the acoustic embedding needs a speech encoder"
            )
        try:
            model, info = AutoModel.from_pretrained(
                str(self.path), config=config, local_files_only=True, output_loading_info=True
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelFilesError(f"cannot load a HuBERT model from {self.path}: {exc}") from exc
        check_loaded(info, self.path, required_prefixes=("feature_extractor.", "encoder.layers."))
        self.model = model.eval().to(device)
        self.device = device
        self.dim = int(model.config.hidden_size)
        self.normalize = wants_normalization(self.path, model.config)
        self.stride = conv_stride(model.config)
        if self.stride != SAMPLES_PER_FRAME:
            raise ModelFilesError(
                f"{self.path} produces a frame every {self.stride} samples; the acoustic embedding "
                f"needs 50 frames per second ({SAMPLES_PER_FRAME} samples per frame)"
            )
        self._torch = torch

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(frames, dim) float32 for 16 kHz mono float32 ``audio``; frames = ceil(samples / 320)."""
        torch = self._torch
        wave = prepare_waveform(audio, normalize=self.normalize)
        count = frame_count(len(audio))
        with torch.inference_mode():
            inputs = torch.from_numpy(wave)[None].to(self.device)
            hidden = self.model(input_values=inputs).last_hidden_state[0].float().cpu().numpy()
        return fit_frames(hidden.astype(np.float32, copy=False), count)
