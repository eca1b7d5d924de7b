"""Cross-validation and evaluation from outside, for real, on a small foreign folder.

The folder holds real learner speech in the shared layout under speaker names the
project has never seen, with a two-fold file of its own: a crossval run trains a
scorer per fold without reading the held-out speakers, resumes without training
again, and `multipa evaluate --data DIR` scores every utterance of the folder.
"""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.models

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"
PICK = 8  # utterances: 4 speakers x 2


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    root = tmp_path_factory.mktemp("foreign")
    (root / "audio").mkdir()
    rows, by_speaker = [], {}
    for line in (DATA / "utterances.jsonl").read_text().splitlines():
        row = json.loads(line)
        if len(by_speaker.setdefault(row["speaker"], [])) < 2 and len(by_speaker) <= 4:
            by_speaker[row["speaker"]].append(row)
    for n, (speaker, items) in enumerate(list(by_speaker.items())[:4]):
        for row in items:
            utt = f"x{n}{row['utt']}"
            shutil.copy(DATA / "audio" / f"{row['utt']}.flac", root / "audio" / f"{utt}.flac")
            rows.append({**row, "utt": utt, "speaker": f"foreign{n}"})
    (root / "utterances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    folds = root / "folds.json"
    folds.write_text(json.dumps({"folds": [["foreign0", "foreign2"], ["foreign1", "foreign3"]]}))
    assert len(rows) == PICK
    return root, folds, tmp_path_factory.mktemp("cache")


def test_crossval_holds_each_fold_out_and_resumes(foreign, tmp_path, monkeypatch):
    from multipa_core import crossval as cv_mod, dataset, train as train_mod
    from multipa_core.train import TrainConfig

    root, folds, cache = foreign
    read: list[set[str]] = []

    def spying(real):
        def spy(utterances, *args, **kwargs):
            utterances = list(utterances)
            read[-1].update(u.speaker for u in utterances)
            return real(utterances, *args, **kwargs)

        return spy

    real_train = train_mod.train

    def counting_train(config):
        read.append(set())
        return real_train(config)

    monkeypatch.setattr(train_mod, "closed_examples", spying(dataset.closed_examples))
    monkeypatch.setattr(train_mod, "open_examples", spying(dataset.open_examples))
    monkeypatch.setattr(cv_mod, "train", counting_train)
    recipe = TrainConfig(
        data=str(root), out="", cache=str(cache), folds=str(folds), epochs=1, members=1, validation_speakers=1
    )
    config = cv_mod.CrossvalConfig(recipe=recipe, workdir=str(tmp_path / "cv"))
    report = cv_mod.crossval(config)

    assert read == [
        {"foreign1", "foreign3"},
        {"foreign0", "foreign2"},
    ]  # fold k's speakers never read while it is held out
    for mode in ("open", "closed"):
        s = report[mode]
        assert s["n"] == PICK and s["failed"] == 0
        assert set(s["across_folds"]) == {"sentence", "word", "word_levenshtein"}
        assert set(s["across_folds"]["sentence"]) == {"accuracy", "fluency", "prosody", "total"}
        assert {"mean", "std"} <= set(s["across_folds"]["sentence"]["total"]["mse"])
        assert s["pooled"]["sentence"]["total"]["n"] == PICK
        assert "needs_improvement" in s and s["needs_improvement_rule"]["chosen_k"] in cv_mod.K_GRID
    assert "cross-validation over folds [0, 1]" in cv_mod.format_table(report)
    tables = cv_mod.markdown(report)
    assert "| open | PCC |" in tables and "| closed | SCC |" in tables and "| open | Levenshtein |" in tables

    again = cv_mod.crossval(config)  # everything is on disk: nothing is trained or evaluated again
    assert len(read) == 2
    assert again["open"]["across_folds"] == report["open"]["across_folds"]

    # the shipped scorer bags every fold's networks; nothing is trained again
    read.append(set())
    shipped = cv_mod.ship(config, str(tmp_path / "shipped.pt"), 1.5, report)
    assert len(read) == 3 and read[-1] == {
        "foreign0",
        "foreign1",
        "foreign2",
        "foreign3",
    }  # every speaker, for the probe; no train() ran
    assert shipped["members"] == 2 and shipped["train_utterances"] == PICK and shipped["needs_improvement_k"] == 1.5
    from multipa_core.scorer import Scorer as _Scorer

    bagged = _Scorer(str(tmp_path / "shipped.pt"))
    assert len(bagged.nets) == 2 and bagged.metadata["folds"] == [0, 1] and bagged.probe is not None
    assert (
        bagged.metadata["crossval_estimate"]["open"]["sentence"]["total"]["pcc"]["mean"]
        == report["open"]["across_folds"]["sentence"]["total"]["pcc"]["mean"]
    )

    # the word stage: cross-validated on the bag's held-out predictions, shipped into a copy of it
    from multipa_core import word_crossval
    from multipa_core.word_model import WordFit

    stage_config = word_crossval.WordStageConfig(
        data=str(root),
        workdir=str(tmp_path / "words"),
        model=str(tmp_path / "shipped.pt"),
        cache=str(cache),
        folds=str(folds),
        fit=WordFit(epochs=2, members=1, hidden=8),
    )
    words = word_crossval.crossvalidate(stage_config)
    for mode in ("open", "closed"):
        assert words[mode]["words"] > 0
        assert set(words[mode]["stage"]["word"]) == {"accuracy", "stress", "total"}
        assert words[mode]["stage"]["word"]["accuracy"]["pooled"]["n"] > 0
        assert set(words[mode]["needs_improvement"]["stage"]) == {str(k) for k in word_crossval.RULE_KS}
    assert "| closed | stage | overlap |" in word_crossval.markdown(words)
    word_crossval.ship(stage_config, str(tmp_path / "staged.pt"))
    staged = _Scorer(str(tmp_path / "staged.pt"))
    assert staged.word_model is not None and set(staged.fold_word_models) == {0, 1}
    from multipa_core.evaluate import EvalConfig, evaluate_with_predictions

    held = EvalConfig(
        data=str(root), fold=0, folds=str(folds), model=str(tmp_path / "staged.pt"), cache=str(cache), diagnose=False
    )
    with_stage, arrays = evaluate_with_predictions(held)
    without, plain = evaluate_with_predictions(replace(held, word_stage=False))
    assert with_stage["word_stage"] is True and without["word_stage"] is False  # fold 0's own stage, or none
    assert arrays["word_inputs"].shape == (len(arrays["word_pred"]), len(word_crossval.INPUTS))
    assert not np.allclose(arrays["word_pred"], plain["word_pred"])

    # the needs-improvement rule of a checkpoint is set without retraining
    from multipa_core import cli
    from multipa_core.scorer import Scorer

    checkpoint = str(tmp_path / "cv" / "fold0" / "scorer.pt")
    before = Scorer(checkpoint).thresholds
    assert cli.main(["rethreshold", checkpoint, "--k", "2.5"]) == 0
    after = Scorer(checkpoint)
    assert after.metadata["needs_improvement_k"] == 2.5
    assert after.thresholds["accuracy"] < before["accuracy"] and after.thresholds["total"] < before["total"]


def test_evaluate_from_outside_on_a_foreign_folder(foreign, capsys):
    from multipa_core import cli

    root, _, cache = foreign
    assert cli.main(["evaluate", "--data", str(root), "--cache", str(cache), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == PICK and report["failed"] == 0 and report["mode"] == "open"
    assert report["sentence"]["total"]["pcc"] is not None
    assert set(report["word_levenshtein"]) == {"accuracy", "stress", "total"}
    assert 0.0 <= (report["needs_improvement"]["precision_flagging_every_word"] or 0.0) <= 1.0


def test_precompute_fills_the_cache_a_shard_at_a_time(foreign, capsys):
    from multipa_core import cli

    root, _, cache = foreign
    for shard in ("0/2", "1/2"):
        assert cli.main(["precompute", "--data", str(root), "--cache", str(cache), "--shard", shard]) == 0
        assert json.loads(capsys.readouterr().out) == {"utterances": PICK // 2, "cached": PICK // 2, "failed": []}
