"""Exceptions of multipa_core.

Every error a caller can act on derives from :class:`MultipaError` and carries a
machine-readable ``code`` and a human sentence (``str(err)``)::

    MultipaError
    ├── AudioError                    code: bad_audio (and a specific code below)
    │   ├── AudioDecodeError          code: audio_decode
    │   ├── EmptyAudioError           code: audio_empty
    │   ├── SilentAudioError          code: audio_silent
    │   ├── NonFiniteAudioError       code: audio_non_finite
    │   ├── AudioTooShortError        code: audio_too_short
    │   └── AudioTooLongError         code: audio_too_long
    ├── ModelError                    code: model_error
    │   ├── UnknownModelError         code: model_unknown
    │   ├── ModelFilesError           code: model_files
    │   ├── ModelMismatchError        code: model_mismatch
    │   └── DeviceUnavailableError    code: device_unavailable
    ├── MissingDependencyError        code: missing_dependency
    ├── DataError                     code: data_error
    └── ConfigError                   code: config_error
"""

from __future__ import annotations


class MultipaError(Exception):
    """Root of every error raised on purpose by multipa_core."""

    code = "multipa_error"


class AudioError(MultipaError):
    """The audio cannot be assessed."""

    code = "bad_audio"


class AudioDecodeError(AudioError):
    """The bytes are not audio in a supported format."""

    code = "audio_decode"


class EmptyAudioError(AudioError):
    """The audio holds no samples."""

    code = "audio_empty"


class SilentAudioError(AudioError):
    """The audio holds only silence (or near-silence)."""

    code = "audio_silent"


class NonFiniteAudioError(AudioError):
    """The samples contain NaN or infinity."""

    code = "audio_non_finite"


class AudioTooShortError(AudioError):
    """The audio is shorter than the pipeline can assess."""

    code = "audio_too_short"


class AudioTooLongError(AudioError):
    """The audio is longer than the documented limit."""

    code = "audio_too_long"


class ModelError(MultipaError):
    """A model cannot be resolved or loaded."""

    code = "model_error"


class UnknownModelError(ModelError):
    """A model name is neither a known name nor an existing path."""

    code = "model_unknown"


class ModelFilesError(ModelError):
    """A model's files are missing, incomplete or corrupt."""

    code = "model_files"


class ModelMismatchError(ModelError):
    """A checkpoint was trained with other ASR models (or frame sizes) than the ones configured."""

    code = "model_mismatch"


class DeviceUnavailableError(ModelError):
    """The requested compute device is not there (``cuda`` without a usable GPU)."""

    code = "device_unavailable"


class MissingDependencyError(MultipaError):
    """An optional dependency is needed for this feature; the message names the extra."""

    code = "missing_dependency"


class DataError(MultipaError):
    """A data folder does not have the expected layout."""

    code = "data_error"


class ConfigError(MultipaError):
    """An option or a ``MULTIPA_*`` environment variable has an invalid value."""

    code = "config_error"
