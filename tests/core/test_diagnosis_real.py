"""The diagnosis on real speech: a learner of the shared set, espeak-ng speech, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multipa_core import diagnosis_eval
from multipa_core.errors import AudioError

pytestmark = pytest.mark.models

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"
UTT = "000530003"  # development speaker 0053: "MIKE LIKES THE ORANGE ONE"
ERRORS = {"mispronunciation", "omission", "unexpected_break", "missing_break"}


@pytest.fixture(scope="module")
def assessor():
    from multipa_core.assess import Assessor

    return Assessor()


def check_diagnosis(doc: dict) -> None:
    """The shape every assessment's diagnosis has, whatever was said."""
    assert len(doc["feedback"]) <= 3
    costs = [f["cost"] for f in doc["feedback"]]
    assert costs == sorted(costs, reverse=True)
    for f in doc["feedback"]:
        assert f["sentence"].endswith(".") and f["type"] in ERRORS | {"insertion", "monotone", "stress"}
        if f["word_index"] is not None:
            assert f["word"] == doc["words"][f["word_index"]]["text"]
    for w in doc["words"]:
        assert set(w["errors"]) <= ERRORS and w["ipa"]
        for p in w["phones"]:
            assert p["ipa"] and p["error"] in ("none", "substitution", "deletion")
            assert (p["heard"] is None) == (p["error"] == "deletion")
            probs = [n["probability"] for n in p["nbest"]]
            assert 1 <= len(probs) <= 3 and probs == sorted(probs, reverse=True) and all(0 <= x <= 1 for x in probs)
    prosody = doc["diagnosis"]["prosody"]
    assert prosody["speaking_rate"] > 0 and prosody["articulation_rate"] >= prosody["speaking_rate"]
    assert set(prosody["readings"]) >= {"speaking_rate", "pauses"}


@pytest.mark.parametrize("closed", [False, True])
def test_learner_speech(assessor, closed):
    from multipa_core import audio as audio_io

    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    samples = audio_io.load(DATA / "audio" / f"{UTT}.flac")
    doc = assessor.assess(samples, reference="MIKE LIKES THE ORANGE ONE" if closed else None).to_dict()
    check_diagnosis(doc)
    assert doc["timings_ms"]["diagnosis"] > 0
    flagged = [w for w in doc["words"] if w["needs_improvement"]]
    assert all(
        "mispronunciation" in w["errors"] or "omission" in w["errors"] for w in flagged
    )  # a flagged word says why


def test_multipa_assess_shows_heard_phones_and_feedback():
    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    proc = subprocess.run(
        [sys.executable, "-m", "multipa_core.cli", "assess", str(DATA / "audio" / f"{UTT}.flac")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "/dʒ/" in proc.stdout and "/ð/" in proc.stdout  # the IPA lines under "orange" and "the"
    assert "syllables per second" in proc.stdout


@pytest.fixture(scope="module")
def espeak():
    if not diagnosis_eval.espeak_available():
        pytest.skip("espeak-ng is not installed")


def test_espeak_speech_correct_and_with_a_planted_error(assessor, espeak):
    sentence = "Very vivid voices move over the valley"
    phon = diagnosis_eval.espeak_phonemes(sentence)
    clean = assessor.assess(diagnosis_eval.espeak_say(phon), reference=sentence).to_dict()
    check_diagnosis(clean)
    assert [w["text"] for w in clean["words"]] == sentence.lower().split()
    assert not any("omission" in w["errors"] for w in clean["words"])
    # ASR_r may hear a word twice in synthetic speech ("voice voices"): an insertion is reported, well formed
    assert all(i["text"] and i["start_ms"] <= i["end_ms"] for i in clean["diagnosis"]["insertions"])
    mutated, planted = diagnosis_eval.plant(phon[0], "v->w")
    assert planted is not None and mutated.startswith("w")
    wrong = assessor.assess(diagnosis_eval.espeak_say([mutated, *phon[1:]]), reference=sentence).to_dict()
    check_diagnosis(wrong)


def test_bad_input_one_word_and_silence(assessor, espeak):
    one = assessor.assess(
        diagnosis_eval.espeak_say(diagnosis_eval.espeak_phonemes("hello")), reference="hello"
    ).to_dict()
    assert len(one["words"]) == 1 and one["diagnosis"]["errors"] == [] and len(one["feedback"]) <= 1
    assert one["diagnosis"]["prosody"]["pauses"] == []
    with pytest.raises(AudioError):  # silence is refused by the audio checks, before any diagnosis
        assessor.assess(np.zeros(32000, np.float32))
    nothing = assessor.assess(
        diagnosis_eval.espeak_say(diagnosis_eval.espeak_phonemes("hello")), reference="..."
    ).to_dict()
    assert nothing["words"] == [] and nothing["feedback"] == [] and json.dumps(nothing)
