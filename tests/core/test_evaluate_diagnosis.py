"""The diagnosis' word flag as a second detector, the per-speaker subsample, the
cross-validated member of a bagged checkpoint, and the pooling of folds."""

import json
from pathlib import Path

import numpy as np
import pytest

from multipa_core import evaluate as ev
from multipa_core.data import Utterance
from multipa_core.diagnosis_eval import PROBLEM_TYPES, TURN_TYPES, WORD_TYPES, problem_flags
from multipa_core.evaluate import EvalConfig, diagnosis_detection, flag_detection, summarize

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"


def errors(*rows: tuple[str, ...] | None) -> np.ndarray:
    """A word_errors matrix: one row per word, its error types (None: not diagnosed)."""
    return np.array([[np.nan] * len(WORD_TYPES) if r is None else [t in r for t in WORD_TYPES] for r in rows], float)


def test_the_word_flag_is_mispronunciation_or_omission():
    assert PROBLEM_TYPES == ("mispronunciation", "omission")
    m = errors(("mispronunciation",), ("omission",), ("unexpected_break",), (), None)
    flags = problem_flags(m)
    np.testing.assert_array_equal(flags[:4], [1, 1, 0, 0])
    assert np.isnan(flags[4])


def test_flag_detection_leaves_out_words_without_label_or_verdict():
    flags = np.array([1, 0, 1, 0, np.nan, 1])
    ref = np.array([[4.0], [3.0], [10.0], [10.0], [2.0], [np.nan]])
    d = flag_detection(flags, ref)
    assert d["words"] == 4 and d["need_work"] == 2 and d["flagged"] == 2 and d["true_positives"] == 1
    assert d["precision"] == 0.5 and d["recall"] == 0.5 and d["f1"] == 0.5


def test_flag_detection_with_no_words():
    d = flag_detection(np.zeros(0), np.zeros((0, 3)))
    assert d["words"] == 0 and d["precision"] is None and d["recall"] is None


def test_diagnosis_detection_counts_each_error_type():
    word_errors = errors(
        ("mispronunciation",), ("mispronunciation", "unexpected_break"), ("omission",), (), ("missing_break",), None
    )
    ref = np.array([[3.0, 10, 3], [10, 10, 10], [0, 10, 0], [4, 10, 4], [10, 10, 10], [9, 10, 9]])
    lev = ref.copy()
    lev[0] = np.nan
    turns = np.array([[1.0, 2.0], [0.0, 1.0]])
    assert TURN_TYPES == ("monotone", "insertion")
    d = diagnosis_detection({"word_errors": word_errors, "word_ref": ref, "word_lev_ref": lev, "turn_errors": turns})
    assert d["words"] == 6 and d["not_diagnosed"] == 1 and d["turns"] == 2
    det = d["detection"]
    assert (det["words"], det["need_work"], det["flagged"], det["true_positives"]) == (5, 3, 3, 2)
    assert det["precision"] == round(2 / 3, 4) and det["recall"] == round(2 / 3, 4)
    assert d["detection_levenshtein"]["words"] == 4
    types = d["error_types"]
    assert types["mispronunciation"] == {"words": 2, "labelled": 2, "below_10": 1, "precision": 0.5}
    assert types["omission"]["words"] == 1 and types["omission"]["precision"] == 1.0
    assert types["unexpected_break"]["words"] == 1 and types["missing_break"]["precision"] == 0.0
    assert types["insertion"] == {"words": 3} and types["monotone"] == {"turns": 1}
    assert d["turns_not_diagnosed"] == 0

    # a turn the diagnosis could not analyse is a row of NaN: counted apart, not a crash
    undiagnosed = np.vstack([turns, np.full((1, 2), np.nan)])
    d = diagnosis_detection(
        {**{"word_errors": word_errors, "word_ref": ref, "word_lev_ref": lev}, "turn_errors": undiagnosed}
    )
    assert d["turns"] == 3 and d["turns_not_diagnosed"] == 1
    assert d["error_types"]["insertion"] == {"words": 3} and d["error_types"]["monotone"] == {"turns": 1}


def test_summarize_of_pooled_folds_uses_their_flags():
    w = np.array([[3.0, 10, 3], [10, 10, 10], [8, 10, 8]])
    arrays = {
        "sentence_pred": np.ones((2, 4)),
        "sentence_ref": np.ones((2, 4)),
        "word_pred": w,
        "word_ref": w,
        "word_lev_pred": w,
        "word_lev_ref": w,
        "word_needs": np.array([1.0, 0.0, 1.0]),  # each fold judged its words with its own thresholds
        "word_errors": errors(("mispronunciation",), (), ()),
        "turn_errors": np.zeros((2, 2)),
    }
    report = summarize(arrays, {})
    assert report["needs_improvement"]["flagged"] == 2 and report["needs_improvement"]["precision"] == 1.0
    assert report["diagnosis"]["detection"]["precision"] == 1.0 and report["diagnosis"]["detection"]["recall"] == 0.5


def test_per_speaker_keeps_the_first_utterances_of_each_speaker(monkeypatch):
    items = [
        Utterance(utt=f"u{k}", speaker=s, text="a", audio_path=Path("/none"), words=[])
        for k, s in enumerate("aabbbcab")
    ]
    monkeypatch.setattr(ev.data, "load_utterances", lambda folder: items)
    picked = ev._utterances(EvalConfig(data="x", per_speaker=2))
    assert [u.utt for u in picked] == ["u0", "u1", "u2", "u3", "u5"]
    assert [u.utt for u in ev._utterances(EvalConfig(data="x", per_speaker=1, limit=2))] == ["u0", "u2"]


def test_evaluate_folds_pools_every_fold(monkeypatch):
    from multipa_core import crossval

    def fake(config):
        rng = np.random.default_rng(config.fold)
        s, w = rng.uniform(0, 10, (6, 4)), rng.choice([3.0, 10.0], (9, 3))
        arrays = {"sentence_pred": s, "sentence_ref": s, "word_pred": w, "word_ref": w}
        arrays |= {"word_lev_pred": w, "word_lev_ref": w, "word_needs": (w[:, 0] < 5).astype(float)}
        arrays |= {"word_errors": errors(*[("mispronunciation",) if x < 5 else () for x in w[:, 0]])}
        arrays["turn_errors"] = np.zeros((6, 2))
        report = {"n": 6, "failed": 0, "cross_validated": True, "member": config.fold, "probe_blend": False}
        return report | summarize(arrays, {}), arrays

    monkeypatch.setattr(crossval, "evaluate_with_predictions", fake)
    report = crossval.evaluate_folds(EvalConfig(data="x", per_speaker=2), folds=(0, 1, 2))
    assert report["n"] == 18 and report["folds"] == [0, 1, 2] and report["cross_validated"] is True
    assert report["probe_blend"] is False and report["per_speaker"] == 2
    assert report["needs_improvement"]["words"] == 27 and report["needs_improvement"]["precision"] == 1.0
    assert report["diagnosis"]["detection"]["recall"] == 1.0
    assert report["across_folds"]["diagnosis"]["detection"]["f1"] == {"mean": 1.0, "std": 0.0}
    assert [r["member"] for r in report["per_fold"]] == [0, 1, 2]
    json.dumps(report)
    ev.format_table(report)


@pytest.mark.models
def test_fold_on_the_bagged_scorer_keeps_its_own_network_only():
    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    import torch

    from multipa_core import registry

    scorer, said = ev._scorer(EvalConfig(data=str(DATA), fold=3))
    assert said["cross_validated"] is True and said["member"] == 3 and said["probe_blend"] is False
    assert len(scorer.nets) == 1 and scorer.probe is None
    assert said["word_stage"] is True and scorer.word_model is scorer.fold_word_models[3]  # fitted without fold 3
    state = torch.load(registry.resolve("multipa-scorer", kind="scorer"), map_location="cpu", weights_only=False)
    assert state["metadata"]["folds"] == [0, 1, 2, 3, 4]
    name, value = next(iter(state["members"][3].items()))
    torch.testing.assert_close(scorer.nets[0].state_dict()[name], value.float())
    assert set(scorer.thresholds) == {"accuracy", "stress", "total"}
    whole, said = ev._scorer(EvalConfig(data=str(DATA)))
    assert said == {"cross_validated": False, "probe_blend": True, "word_stage": True} and len(whole.nets) == 5
    assert whole.word_model is not None and whole.word_model is not whole.fold_word_models[3]
    _, said = ev._scorer(EvalConfig(data=str(DATA), fold=3, word_stage=False))
    assert said["word_stage"] is False


@pytest.mark.models
def test_multipa_evaluate_one_fold_for_real(capsys):
    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    from multipa_core import cli

    args = ["evaluate", "--fold", "0", "--per-speaker", "1", "--limit", "2", "--mode", "closed", "--json"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 2 and report["cross_validated"] is True and report["member"] == 0
    assert report["probe_blend"] is False
    assert {"precision", "recall", "f1"} <= set(report["needs_improvement"])
    diagnosis = report["diagnosis"]
    assert {"precision", "recall", "f1"} <= set(diagnosis["detection"])
    assert set(diagnosis["error_types"]) == {*WORD_TYPES, *TURN_TYPES}
