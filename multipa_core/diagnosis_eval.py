"""How well the diagnosis finds what went wrong: against the experts, and on controlled errors.

Two measurements (``bench/diagnosis.py`` runs both and writes their JSON):

- :func:`expert_agreement`: on labelled utterances (speechocean762 layout), precision,
  recall and F1 of "this word has a problem" (expert median word accuracy below 10)
  for each detector: the scorer's needs-improvement flag, a heard phone error, the
  ``mispronunciation`` type, and any word error type. Closed mode scores the
  reference words; open mode scores ASR_t's words against the reference words that
  overlap them in time (the evaluation's open-mode rule).
- :func:`synthetic_errors`: sentences spoken by espeak-ng from phoneme strings, once
  as written and once per planted error (/r/ -> /l/, /θ/ -> /s/, /v/ -> /w/,
  /ɪ/ -> /iː/, a final consonant dropped, a vowel inserted between consonants):
  how often the planted error is found, how often the heard phone is the one
  actually said, and how often a correctly said phone is called wrong. A synthetic
  voice is not a learner: these numbers say whether the machinery finds clear,
  isolated errors, not how it does on real accents.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import audio as audio_io
from .diagnosis import ERROR_TYPES
from .checkpoint_models import DEFAULT_RECOGNIZED, DEFAULT_TARGET

log = logging.getLogger(__name__)

VOICE = "en-us"


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_phonemes(text: str) -> list[str]:
    """espeak-ng's phoneme mnemonics of each word (``-x``), e.g. ``r'abIt``."""
    out = subprocess.run(
        ["espeak-ng", "-v", VOICE, "-q", "-x", text], check=True, capture_output=True, text=True
    ).stdout
    return out.split()


def espeak_say(phonemes: list[str], *, speed: int = 140) -> np.ndarray:
    """Speak a list of words given as espeak-ng phoneme mnemonics; 16 kHz mono float32."""
    wav = subprocess.run(
        ["espeak-ng", "-v", VOICE, "-s", str(speed), "--stdout", "[[" + " ".join(phonemes) + "]]"],
        check=True,
        capture_output=True,
    ).stdout
    return audio_io.load(wav)


@dataclass(frozen=True)
class PlantedError:
    """One error planted in one word of a sentence."""

    kind: str  # r->l, th->s, v->w, ih->iy, final_dropped, vowel_inserted
    word: int  # index of the word in the sentence
    old: str  # espeak mnemonic replaced ("" for an insertion)
    new: str  # espeak mnemonic said instead ("" for a deletion)
    expected: str  # the canonical ARPAbet phone concerned ("" for an insertion)
    said: str | None  # the ARPAbet phone actually said (None: nothing, a deletion)


# (sentence, [(word index, kind)]): each planted error gets its own recording
SENTENCES: list[tuple[str, list[tuple[int, str]]]] = [
    ("The red rabbit runs around the river", [(1, "r->l"), (2, "r->l"), (6, "r->l")]),
    ("I think three things are worth it", [(1, "th->s"), (3, "th->s"), (5, "th->s")]),
    ("Very vivid voices move over the valley", [(0, "v->w"), (2, "v->w"), (6, "v->w")]),
    ("This big ship will sit in it", [(1, "ih->iy"), (2, "ih->iy"), (4, "ih->iy")]),
    ("The cat sat on the mat with a fish", [(1, "final_dropped"), (2, "final_dropped"), (5, "final_dropped")]),
    ("Students play sports in the spring", [(1, "vowel_inserted"), (2, "vowel_inserted"), (5, "vowel_inserted")]),
    ("Black cats climb trees slowly", [(0, "vowel_inserted"), (2, "vowel_inserted"), (3, "r->l")]),
]
_SUBSTITUTIONS = {
    "r->l": ("r", "l", "R", "L"),
    "th->s": ("T", "s", "TH", "S"),
    "v->w": ("v", "w", "V", "W"),
    "ih->iy": ("I", "i:", "IH", "IY"),
}
_CONSONANTS = set("pbtdkgfvTDszSZhmnNlrwjx") | {"tS", "dZ"}


def plant(word: str, kind: str) -> tuple[str, PlantedError | None]:
    """The word's mnemonic with the error planted, and what was planted (None: not possible)."""
    if kind in _SUBSTITUTIONS:
        old, new, exp, said = _SUBSTITUTIONS[kind]
        at = word.find(old)
        if kind == "ih->iy":  # espeak writes /ɪ/ as I, but also inside I@ and I2
            at = next(
                (k for k in range(len(word)) if word[k] == "I" and word[k + 1 : k + 2] not in ("@", "2", "3")), -1
            )
        if at < 0:
            return word, None
        return word[:at] + new + word[at + len(old) :], PlantedError(kind, -1, old, new, exp, said)
    if kind == "final_dropped":
        if word and word[-1] in _CONSONANTS:
            return word[:-1], PlantedError(kind, -1, word[-1], "", "", None)
        return word, None
    if kind == "vowel_inserted":
        for k in range(len(word) - 1):
            if word[k] in _CONSONANTS and word[k + 1] in _CONSONANTS:
                return word[: k + 1] + "@" + word[k + 1 :], PlantedError(kind, -1, "", "@", "", "AH")
        return word, None
    raise ValueError(kind)


def _planted_index(phones: list[dict[str, Any]], planted: PlantedError) -> int | None:
    bases = [p["phone"].rstrip("012") for p in phones]
    if planted.kind == "final_dropped":
        return len(bases) - 1 if bases else None
    if planted.expected:
        return bases.index(planted.expected) if planted.expected in bases else None
    return None


def synthetic_errors(assess: Any) -> dict[str, Any]:
    """Plant each error of :data:`SENTENCES`, assess (closed mode) and count.

    Args:
        assess: ``(samples, reference) -> Assessment.to_dict()``.

    Returns:
        the counts and rates per error kind and overall, false alarms on the correct
        renditions, and every planted case (for the docs).
    """
    cases: list[dict[str, Any]] = []
    phones_ok = flagged_ok = words_ok = words_flagged_ok = 0
    for sentence, plan in SENTENCES:
        phon = espeak_phonemes(sentence)
        words = sentence.split()
        if len(phon) != len(words):
            log.warning("espeak-ng split %r into %d words; skipped", sentence, len(phon))
            continue
        clean = assess(espeak_say(phon), sentence)
        for w in clean["words"]:
            words_ok += 1
            words_flagged_ok += bool(w["errors"])
            for p in w["phones"]:
                phones_ok += 1
                flagged_ok += p["error"] not in (None, "none")
        for index, kind in plan:
            mutated, planted = plant(phon[index], kind)
            if planted is None:
                log.warning("cannot plant %s in %r", kind, phon[index])
                continue
            said = assess(espeak_say(phon[:index] + [mutated] + phon[index + 1 :]), sentence)
            target = said["words"][index] if index < len(said["words"]) and len(said["words"]) == len(words) else None
            case: dict[str, Any] = {
                "sentence": sentence,
                "word": words[index],
                "kind": kind,
                "espeak": f"{phon[index]} -> {mutated}",
                "found": False,
                "heard_right": False,
                "word_flagged": False,
            }
            if target is not None:
                k = _planted_index(target["phones"], planted)
                case["word_flagged"] = "mispronunciation" in target["errors"]
                case["heard"] = [(p["phone"], p["heard"], p["error"]) for p in target["phones"]]
                case["inserted"] = [p["phone"] for p in target["inserted_phones"]]
                if kind == "vowel_inserted":
                    case["found"] = bool(target["inserted_phones"])
                    case["heard_right"] = any(
                        p["phone"] in ("AH", "IH", "ER", "UH", "EH") for p in target["inserted_phones"]
                    )
                elif k is not None:
                    p = target["phones"][k]
                    case["found"] = p["error"] not in (None, "none")
                    case["heard_right"] = p["heard"] == planted.said if planted.said else p["error"] == "deletion"
                others = [p for i, w in enumerate(said["words"]) if i != index for p in w["phones"]]
                case["false_alarms"] = sum(p["error"] not in (None, "none") for p in others)
                case["other_phones"] = len(others)
            cases.append(case)
    kinds = sorted({c["kind"] for c in cases})

    def rates(items: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(items)
        return {
            "n": n,
            "detection_rate": round(sum(c["found"] for c in items) / n, 3) if n else None,
            "heard_is_said": round(sum(c["heard_right"] for c in items) / n, 3) if n else None,
            "word_flagged": round(sum(c["word_flagged"] for c in items) / n, 3) if n else None,
        }

    other = sum(c.get("other_phones", 0) for c in cases)
    return {
        "overall": rates(cases),
        "by_kind": {k: rates([c for c in cases if c["kind"] == k]) for k in kinds},
        "false_alarms": {
            "correct_renditions": {
                "phones": phones_ok,
                "flagged": flagged_ok,
                "rate": round(flagged_ok / phones_ok, 3) if phones_ok else None,
                "words": words_ok,
                "words_flagged": words_flagged_ok,
            },
            "other_words_of_error_renditions": {
                "phones": other,
                "flagged": sum(c.get("false_alarms", 0) for c in cases),
                "rate": round(sum(c.get("false_alarms", 0) for c in cases) / other, 3) if other else None,
            },
        },
        "cases": cases,
    }


def cached_inputs(
    utt: str, roots: list[str], *, target_model: str = DEFAULT_TARGET, recognized_model: str = DEFAULT_RECOGNIZED
) -> dict[str, Any] | None:
    """An utterance's cached ASR outputs and frames (of ``target_model``, ASR_t, and
    ``recognized_model``, ASR_r) from the first root that has them all (read only:
    nothing is computed or written)."""
    from .precompute import frames_cache, layers_cache, transcript_cache, transcript_from_dict

    for root in roots:
        frames = frames_cache(root, target_model).get_array(utt)
        r_frames = frames_cache(root, recognized_model).get_array(utt)
        r_doc = transcript_cache(root, recognized_model).get_json(utt)
        t_doc = transcript_cache(root, target_model).get_json(utt)
        layers = layers_cache(root, target_model).get_array(utt)
        if (
            frames is not None
            and r_frames is not None
            and r_doc is not None
            and t_doc is not None
            and layers is not None
        ):
            return {
                "frames": frames,
                "recognizer_frames": r_frames,
                "recognized": transcript_from_dict(r_doc),
                "target": transcript_from_dict(t_doc),
                "layers": layers,
            }
    return None


DETECTORS = ("needs_improvement", "phone_error", "mispronunciation", "any_error")
# the error types a target word can carry (monotone is the turn's; an insertion is a word said beyond the target's)
WORD_TYPES = tuple(t for t in ERROR_TYPES if t not in ("monotone", "insertion"))
TURN_TYPES = ("monotone", "insertion")  # counted per turn: whether it is monotone, how many words were inserted
# the diagnosis' "this word has a problem": the error types that say a word was said wrongly (omission: closed mode)
PROBLEM_TYPES = ("mispronunciation", "omission")


def word_error_matrix(
    analysis: Any, words: np.ndarray, thresholds: dict[str, float], samples: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The diagnosis of an analysed turn as arrays, for scoring it against labels.

    Args:
        analysis: the pipeline's ``TurnAnalysis``.
        words: the scorer's word scores (W, 3), in the order of ``model.WORD_HEADS``.
        thresholds: the needs-improvement thresholds the turn is judged with.
        samples: the turn's audio (16 kHz), for the break types and monotone (None: left out).

    Returns:
        per target word, 1.0 where it has each error type of :data:`WORD_TYPES` (W, types),
        and the turn's :data:`TURN_TYPES` (monotone 0/1, the number of inserted words).
    """
    from .diagnosis import diagnose_turn
    from .model import WORD_HEADS
    from .scorer import needs_improvement

    scores = [{h: float(row[i]) for i, h in enumerate(WORD_HEADS)} for row in words]
    needs = [needs_improvement(s, thresholds) for s in scores]
    found = diagnose_turn(analysis, [s["accuracy"] for s in scores], needs, samples)
    out = np.zeros((len(scores), len(WORD_TYPES)))
    for i, kinds in enumerate(found.word_errors):
        out[i] = [t in kinds for t in WORD_TYPES]
    return out, np.array([float("monotone" in found.errors), float(len(found.insertions))])


def problem_flags(word_errors: np.ndarray) -> np.ndarray:
    """The diagnosis' word flag from :func:`word_error_matrix` rows: a :data:`PROBLEM_TYPES` type (NaN rows stay NaN)."""
    columns = [WORD_TYPES.index(t) for t in PROBLEM_TYPES]
    flags = (word_errors[:, columns] > 0).any(axis=1).astype(float)
    flags[np.isnan(word_errors).any(axis=1)] = np.nan
    return flags


def _prf(pred: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    tp = int(np.sum(pred & gold))
    fp, fn = int(np.sum(pred & ~gold)), int(np.sum(~pred & gold))
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f = 2 * p * r / (p + r) if p and r else None
    return {
        "precision": None if p is None else round(p, 3),
        "recall": None if r is None else round(r, 3),
        "f1": None if f is None else round(f, 3),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def expert_agreement(
    utterances: list[Any], roots: list[str], mode: str, *, scorer: str = "multipa-scorer"
) -> dict[str, Any]:
    """Precision, recall and F1 of each detector against "expert median word accuracy below 10".

    Utterances whose ASR outputs are not cached under ``roots`` are skipped and counted.
    """
    from .assess import build_assessment
    from .asr import Transcript
    from .dataset import open_word_targets, word_labels
    from .pipeline import FeatureBuilder
    from .scorer import Scorer

    model = Scorer(scorer)
    builder = FeatureBuilder(aligner=model.aligner, text_model=model.text_model)
    rows: list[tuple[bool, ...]] = []
    examples: list[dict[str, Any]] = []
    used, missing = 0, 0
    for utt in utterances:
        inputs = cached_inputs(
            utt.utt, roots, target_model=model.asr.target.model, recognized_model=model.asr.recognized_model
        )
        if inputs is None:
            missing += 1
            continue
        samples = audio_io.load(utt.audio_path)
        target = inputs["target"] if mode == "open" else Transcript(utt.text)
        analysis = builder.analyze(
            inputs["frames"].astype(np.float32),
            target,
            inputs["recognized"],
            mode=mode,
            duration=len(samples) / 16000,
            recognizer_frames=inputs["recognizer_frames"],
            encoder_layers=inputs["layers"],
        )
        scores = model.score([analysis.features])[0]
        a = build_assessment(analysis, scores, model.thresholds, samples).to_dict()
        gold = open_word_targets(analysis, utt, builder)[:, 0] if mode == "open" else word_labels(utt)[:, 0]
        if len(gold) != len(a["words"]):
            continue
        used += 1
        for w, g in zip(a["words"], gold):
            if np.isnan(g):
                continue
            phone_error = any(p["error"] not in (None, "none") for p in w["phones"]) or bool(w["inserted_phones"])
            rows.append(
                (
                    bool(g < 10),
                    w["needs_improvement"],
                    phone_error,
                    "mispronunciation" in w["errors"],
                    bool(w["errors"]),
                )
            )
            if g <= 5 and "mispronunciation" in w["errors"] and len(examples) < 6:
                examples.append({"utt": utt.utt, "text": utt.text, "word": w["text"], "expert_accuracy": float(g), "model_accuracy": w["accuracy"],
                                 "heard": [(p["phone"], p["heard"], p["error"]) for p in w["phones"]], "feedback": [f["sentence"] for f in a["feedback"] if f.get("word_index") is not None and a["words"][f["word_index"]]["text"] == w["text"]]})  # fmt: skip
    table = np.array(rows, dtype=bool).reshape(-1, 1 + len(DETECTORS))
    gold_col = table[:, 0]
    return {
        "mode": mode, "utterances": used, "not_cached": missing, "words": int(len(table)), "words_with_problem": int(gold_col.sum()),
        "detectors": {d: _prf(table[:, 1 + k], gold_col) for k, d in enumerate(DETECTORS)}, "examples": examples,
    }  # fmt: skip
