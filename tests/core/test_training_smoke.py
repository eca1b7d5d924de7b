"""Smoke runs of both trainers on a handful of real utterances (seconds, not minutes)."""

import json
from pathlib import Path

import numpy as np
import pytest

from multipa_core import data

pytestmark = pytest.mark.models

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def aligner(cache, tmp_path_factory):
    from multipa_core.train_aligner import TrainAlignerConfig, train

    out = tmp_path_factory.mktemp("aligner") / "aligner.pt"
    report = train(TrainAlignerConfig(data=str(DATA), out=str(out), cache=cache, epochs=2, limit=6))
    assert out.is_file() and out.with_suffix(".json").is_file()
    return out, report


def test_aligner_smoke_run_reports_development_metrics(aligner):
    out, report = aligner
    dev = report["development"]
    assert 0.0 <= dev["phone_error_rate"] and 0.0 <= dev["word_boundary_within_tolerance"] <= 1.0
    assert report["train_utterances"] == 6 and len(report["history"]) >= 1
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["development"] == dev


def test_training_never_reads_development_speakers(monkeypatch, cache, aligner, tmp_path):
    """The scorer trainer sees only training and validation speakers, in both kinds of
    examples (reference and ASR_t transcripts), and resumes."""
    from multipa_core import dataset, train as train_mod

    seen, made = [], []

    def spying(real):
        def spy(utterances, *args, **kwargs):
            utterances = list(utterances)
            seen.extend(u.speaker for u in utterances)
            examples, skipped = real(utterances, *args, **kwargs)
            made.extend(examples)
            return examples, skipped

        return spy

    monkeypatch.setattr(train_mod, "closed_examples", spying(dataset.closed_examples))
    monkeypatch.setattr(train_mod, "open_examples", spying(dataset.open_examples))
    config = train_mod.TrainConfig(
        data=str(DATA),
        out=str(tmp_path / "scorer.pt"),
        cache=cache,
        aligner=str(aligner[0]),
        epochs=2,
        limit=6,
        members=2,
        transcripts="both",
    )

    calls = {"n": 0}
    real_save = train_mod.save_scorer

    def failing_save(*args, **kwargs):  # the first run dies after its last epoch
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real_save(*args, **kwargs)

    monkeypatch.setattr(train_mod, "save_scorer", failing_save)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(config)
    assert (tmp_path / "scorer.state0.pt").is_file() and (tmp_path / "scorer.state1.pt").is_file()
    report = train_mod.train(config)  # resumes: no epoch is run again
    assert [len(m["history"]) for m in report["members"]] == [2, 2]
    assert report["train_examples"] == 2 * report["train_utterances"] == 12
    opened = [e for e in made if e.mode == "open"]
    assert {e.mode for e in made} == {"closed", "open"} and len(opened) == len(made) // 2
    assert all(len(e.words) == len(e.features.word_text) for e in opened)
    assert any(np.isfinite(e.words).any() for e in opened)  # labels carried over by time overlap
    assert (tmp_path / "scorer.pt").is_file()
    assert not list(tmp_path.glob("scorer.state*"))

    split = data.load_split()
    assert seen and not set(seen) & set(split["development"])
    assert set(seen) <= set(split["train"]) | set(split["validation"])
