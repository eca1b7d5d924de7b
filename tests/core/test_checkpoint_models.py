"""Checkpoints name their ASR models: the record, its defaults, and the check at start.

Most tests read only model.bin headers and a MiB of weights (milliseconds); the last
ones load the real bundled assessor.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from multipa_core import checkpoint_models as cm
from multipa_core import registry, settings
from multipa_core.errors import ConfigError, ModelFilesError, ModelMismatchError, UnknownModelError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"
UTT = "000530003"  # development speaker 0053: "MIKE LIKES THE ORANGE ONE"


@pytest.fixture(scope="module")
def installed() -> cm.AsrModels:
    """The record of the installed default models (Whisper base joined into the user's cache once)."""
    return cm.current()


@pytest.fixture
def tiny_dir() -> str:
    """Whisper tiny.en as a plain directory (what --asr-target takes), 384-d frames."""
    return str(registry.resolve("whisper-tiny.en", kind="whisper"))


def linked_copy(source: str, folder: Path) -> str:
    """The same Whisper model in another directory (its files linked, not copied)."""
    folder.mkdir()
    for item in Path(source).iterdir():
        (folder / item.name).symlink_to(item)
    return str(folder)


# --- what a model is -------------------------------------------------------------------


def test_describe_reads_the_frame_size_and_a_fingerprint(installed: cm.AsrModels) -> None:
    assert installed.target.model == "whisper-base" and installed.target.frame_dim == 512
    assert installed.recognized is not None
    assert installed.recognized.model == "whisper-tiny.en" and installed.recognized.frame_dim == 384
    prints = {installed.target.fingerprint, installed.recognized.fingerprint}
    assert len(prints) == 2 and all(len(p) == 64 for p in prints)
    assert cm.describe("whisper-base") == installed.target  # stable


def test_the_same_weights_elsewhere_have_the_same_fingerprint(tmp_path: Path, tiny_dir: str) -> None:
    moved = cm.describe(linked_copy(tiny_dir, tmp_path / "tiny"))
    assert moved.fingerprint == cm.describe("whisper-tiny.en").fingerprint and moved.frame_dim == 384


def test_a_directory_without_a_whisper_model_bin_is_refused(tmp_path: Path) -> None:
    for name, content in (
        ("model.bin", b"\x01\x00\x00\x00not a model"),
        ("config.json", b"{}"),
        ("vocabulary.txt", b""),
    ):
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ModelFilesError):
        cm.describe(str(tmp_path))


def test_cache_tags_keep_registry_names_and_tell_directories_apart(tmp_path: Path, tiny_dir: str) -> None:
    assert cm.cache_tag("whisper-base") == "whisper-base"  # the caches made before the record keep their names
    tag = cm.cache_tag(linked_copy(tiny_dir, tmp_path / "tiny"))
    assert tag == f"tiny-{cm.describe('whisper-tiny.en').fingerprint[:12]}"


# --- the record ------------------------------------------------------------------------


def test_the_record_round_trips_and_a_malformed_one_is_a_model_files_error(installed: cm.AsrModels) -> None:
    assert cm.AsrModels.from_dict(json.loads(json.dumps(installed.to_dict()))) == installed
    aligner = cm.AsrModels(installed.target, None)
    assert "recognized" not in aligner.to_dict() and cm.AsrModels.from_dict(aligner.to_dict()) == aligner
    with pytest.raises(ModelFilesError) as info:
        cm.AsrModels.from_dict({"target": {"model": "whisper-base"}})
    assert info.value.code == "model_files"


def test_the_bundled_checkpoints_record_the_installed_models(installed: cm.AsrModels) -> None:
    """Recorded without retraining: the reports beside the bundled .pt files hold the record."""
    scorer = cm.recorded({}, registry.resolve("multipa-scorer"))
    aligner = cm.recorded({}, registry.resolve("multipa-aligner"))
    assert scorer == installed
    assert aligner.target == installed.target and aligner.recognized is None


def test_the_record_is_read_from_the_checkpoint_then_its_report_then_assumed(
    tmp_path: Path, installed: cm.AsrModels
) -> None:
    path = tmp_path / "scorer.pt"
    assert cm.recorded({}, path) == cm.LEGACY  # no record anywhere: the defaults, no fingerprints
    assert cm.LEGACY.target == cm.AsrModel("whisper-base", "", 512)
    (tmp_path / "scorer.json").write_text(json.dumps({"config": {}, "asr": installed.to_dict()}))
    assert cm.recorded({}, path) == installed
    inside = cm.AsrModels(replace(installed.target, model="elsewhere"), None)
    assert cm.recorded({"asr": inside.to_dict()}, path) == inside  # the checkpoint's own record wins


# --- the check at start ------------------------------------------------------------------


def test_a_worker_not_told_adopts_the_checkpoints_models(installed: cm.AsrModels) -> None:
    target, recognized = cm.choose(installed, target=None, recognized=None, checkpoint="multipa-scorer")
    assert (target, recognized) == (installed.target, installed.recognized)


def test_the_same_model_in_another_directory_is_accepted(
    tmp_path: Path, tiny_dir: str, installed: cm.AsrModels
) -> None:
    moved = linked_copy(tiny_dir, tmp_path / "tiny")
    _, recognized = cm.choose(installed, target=None, recognized=moved, checkpoint="multipa-scorer")
    assert recognized.model == moved


def test_an_explicit_other_model_is_a_mismatch_naming_both(tiny_dir: str, installed: cm.AsrModels) -> None:
    with pytest.raises(ModelMismatchError) as info:
        cm.choose(installed, target=tiny_dir, recognized=None, checkpoint="multipa-scorer")
    err = info.value
    assert err.code == "model_mismatch"
    text = str(err)
    assert "multipa-scorer" in text and "ASR_t" in text and "--asr-target" in text
    assert "whisper-base (512-d frames" in text and f"{tiny_dir} (384-d frames" in text
    assert installed.target.fingerprint[:12] in text


def test_an_old_checkpoint_is_checked_by_frame_size(tiny_dir: str) -> None:
    target, _ = cm.choose(cm.LEGACY, target="whisper-base", recognized=None, checkpoint="old.pt")
    assert target.frame_dim == 512
    with pytest.raises(ModelMismatchError):
        cm.choose(cm.LEGACY, target=tiny_dir, recognized=None, checkpoint="old.pt")


def test_a_recorded_name_that_resolves_to_other_weights_is_a_mismatch(installed: cm.AsrModels) -> None:
    other = cm.AsrModels(replace(installed.target, fingerprint="0" * 64), installed.recognized)
    with pytest.raises(ModelMismatchError, match="whisper-base"):
        cm.choose(other, target=None, recognized=None, checkpoint="retrained.pt")


def test_a_recorded_directory_missing_here_says_which_option_to_set(installed: cm.AsrModels) -> None:
    away = cm.AsrModels(installed.target, cm.AsrModel("/models/whisper-small.en", "f" * 64, 768))
    with pytest.raises(UnknownModelError, match="--asr-recognized"):
        cm.choose(away, target=None, recognized=None, checkpoint="gpu.pt")


def test_the_environment_names_the_models(monkeypatch: pytest.MonkeyPatch, tiny_dir: str) -> None:
    monkeypatch.delenv("MULTIPA_ASR_TARGET", raising=False)
    assert settings.asr_target() is None
    monkeypatch.setenv("MULTIPA_ASR_TARGET", "whisper-base")
    assert settings.asr_target() == "whisper-base"
    monkeypatch.setenv("MULTIPA_ASR_RECOGNIZED", tiny_dir)
    assert settings.asr_recognized() == tiny_dir
    for bad in ("minilm-l6", "/no/such/whisper"):
        monkeypatch.setenv("MULTIPA_ASR_TARGET", bad)
        with pytest.raises(ConfigError, match="MULTIPA_ASR_TARGET"):
            settings.asr_target()


# --- checkpoints written by training carry the record --------------------------------------


def test_saved_checkpoints_carry_their_record(tmp_path: Path, installed: cm.AsrModels) -> None:
    from multipa_core.align import AlignerConfig, Aligner, build_net, save_checkpoint
    from multipa_core.model import ScorerConfig, build_scorer
    from multipa_core.scorer import Scorer, save_scorer

    config = ScorerConfig(d_model=16, layers=1, heads=2)
    assert config.acoustic_dim == cm.DEFAULT_FRAME_DIM == 512
    save_scorer(
        str(tmp_path / "scorer.pt"),
        [build_scorer(config)],
        config,
        thresholds={},
        floor={},
        aligner="multipa-aligner",
        text_model="minilm-l6",
        metadata={},
        asr=installed,
    )
    assert Scorer(str(tmp_path / "scorer.pt")).asr == installed
    aligner_config = AlignerConfig(channels=8, layers=1)
    record = cm.AsrModels(installed.target, None)
    save_checkpoint(str(tmp_path / "aligner.pt"), build_net(aligner_config), aligner_config, {}, asr=record)
    assert Aligner(str(tmp_path / "aligner.pt")).asr == record


# --- the real assessor ---------------------------------------------------------------------


@pytest.mark.models
def test_a_pipeline_refuses_an_asr_t_its_aligner_was_not_trained_on(tiny_dir: str) -> None:
    from multipa_core.pipeline import FeaturePipeline, PipelineOptions
    from multipa_core.textemb import NO_TEXT

    with pytest.raises(ModelMismatchError, match="multipa-aligner was trained with ASR_t whisper-base"):
        FeaturePipeline(PipelineOptions(device="cpu", threads=1, target=tiny_dir, text_model=NO_TEXT))


@pytest.mark.models
def test_the_assessor_refuses_a_mismatch_at_start(tiny_dir: str) -> None:
    from multipa_core.assess import Assessor
    from multipa_core.pipeline import PipelineOptions

    with pytest.raises(ModelMismatchError) as info:
        Assessor(PipelineOptions(device="cpu", threads=1, target=tiny_dir))
    assert "whisper-base" in str(info.value) and tiny_dir in str(info.value)


@pytest.mark.models
def test_an_old_checkpoint_loads_with_the_defaults_and_scores_as_before(
    tmp_path: Path, installed: cm.AsrModels
) -> None:
    """A checkpoint and report without the record (as before it existed) load, adopt the
    defaults, and score a real utterance exactly as the bundled checkpoint does."""
    from multipa_core import audio as audio_io
    from multipa_core.assess import Assessor
    from multipa_core.pipeline import PipelineOptions

    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    bundled = registry.resolve("multipa-scorer")
    old = tmp_path / "old-scorer.pt"
    shutil.copyfile(bundled, old)
    report = json.loads(bundled.with_suffix(".json").read_text())
    del report["asr"]
    old.with_suffix(".json").write_text(json.dumps(report))
    samples = audio_io.load(DATA / "audio" / f"{UTT}.flac")
    scores = []
    for scorer in (str(old), "multipa-scorer"):
        assessor = Assessor(PipelineOptions(device="cpu", threads=1), scorer=scorer)
        assert assessor.asr_models == installed  # adopted (old: the defaults), fingerprints read here
        assessor.diagnose = False
        result = assessor.assess(samples)
        scores.append((result.sentence, [(w.accuracy, w.stress, w.total) for w in result.words]))
    assert scores[0] == scores[1] and scores[0][1]
    assert np.isfinite(list(scores[0][0].values())).all()


def test_evaluate_reads_the_asr_models_the_checkpoint_records(monkeypatch, tmp_path):
    """``multipa evaluate`` transcribes and encodes with the checkpoint's ASR, not the defaults."""
    from multipa_core import evaluate
    from multipa_core.checkpoint_models import AsrModel, AsrModels

    class Stop(Exception):
        pass

    class FakeScorer:
        encoder_layers = False
        asr = AsrModels(AsrModel("/models/large-v3", "ab", 1280), AsrModel("/models/small.en", "cd", 768))

    seen: dict = {}

    def fake_precompute(utterances, asr, cache_root, **options):
        seen.update(options)
        raise Stop

    monkeypatch.setattr(evaluate, "_utterances", lambda config: [])
    monkeypatch.setattr(evaluate, "_scorer", lambda config: (FakeScorer(), {}))
    monkeypatch.setattr(evaluate, "precompute", fake_precompute)
    with pytest.raises(Stop):
        evaluate.evaluate(evaluate.EvalConfig(data=str(tmp_path), cache=str(tmp_path)))
    assert seen["target_model"] == "/models/large-v3" and seen["recognized_model"] == "/models/small.en"
