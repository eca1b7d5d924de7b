"""The diagnosis fields of turn.assessed: typed when present, absent from older servers' messages."""

import copy

from multipa_client import FeedbackItem, TurnAssessed, parse_event, to_dict

OLD = {
    "type": "turn.assessed", "turn_id": 1, "start_ms": 0, "end_ms": 900,
    "assessment": {
        "mode": "open", "transcript": "red", "target_transcript": "red",
        "sentence": {"accuracy": 7.0, "fluency": 8.0, "prosody": 8.0, "total": 7.5},
        "words": [{"text": "red", "start_ms": 0, "end_ms": 400, "accuracy": 4.0, "stress": 10.0, "total": 4.5, "needs_improvement": True,
                   "phones": [{"phone": "R", "start_ms": 0, "end_ms": 100, "probability": 0.2}]}],
        "duration_ms": 900, "timings_ms": {"total": 10.0},
    },
    "latency_ms": {"queue": 0.0, "assess": 10.0, "total": 11.0},
}  # fmt: skip


def _new() -> dict:
    doc = copy.deepcopy(OLD)
    word = doc["assessment"]["words"][0]
    word["phones"][0].update(
        {
            "ipa": "ɹ",
            "heard": "L",
            "heard_ipa": "l",
            "error": "substitution",
            "nbest": [{"phone": "L", "ipa": "l", "probability": 0.7}],
        }
    )
    word.update({"ipa": "ɹɛd", "errors": ["mispronunciation"], "inserted_phones": [], "stress_check": None})
    doc["assessment"]["diagnosis"] = {
        "errors": [], "insertions": [],
        "prosody": {"speaking_rate": 2.5, "articulation_rate": 2.5, "phones_per_second": 7.5, "pauses": [], "longest_pause_ms": 0,
                    "f0_range_semitones": None, "f0_median_hz": None, "monotone": False, "readings": {"pauses": "no pauses between words."}},
    }  # fmt: skip
    doc["assessment"]["feedback"] = [{
        "type": "mispronunciation", "sentence": "In 'red' the first sound came out like /l/; say /ɹ/ as in 'run'.", "cost": 6.0, "word_index": 0, "word": "red",
        "detail": "substitution", "phone_index": 0, "expected": "R", "expected_ipa": "ɹ", "heard": "L", "heard_ipa": "l", "start_ms": 0, "end_ms": 100,
    }]  # fmt: skip
    return doc


def test_old_messages_parse_and_round_trip_unchanged():
    event = parse_event(OLD)
    assert isinstance(event, TurnAssessed)
    assert (
        event.assessment.feedback is None
        and event.assessment.diagnosis is None
        and event.assessment.words[0].errors is None
    )
    assert to_dict(event) == OLD


def test_new_fields_are_typed_and_round_trip():
    doc = _new()
    event = parse_event(doc)
    a = event.assessment
    phone = a.words[0].phones[0]
    assert (phone.ipa, phone.heard, phone.error, phone.nbest[0].phone) == ("ɹ", "L", "substitution", "L")
    assert a.words[0].errors == ("mispronunciation",) and a.words[0].stress_check is None
    assert a.diagnosis.prosody.speaking_rate == 2.5 and a.diagnosis.prosody.readings["pauses"].startswith("no pauses")
    assert isinstance(a.feedback[0], FeedbackItem) and a.feedback[0].heard_ipa == "l"
    assert to_dict(event) == doc


def test_a_deletion_keeps_its_null_heard_and_junk_is_tolerated():
    doc = _new()
    doc["assessment"]["words"][0]["phones"][0].update({"heard": None, "heard_ipa": None, "error": "deletion"})
    doc["assessment"]["feedback"].append({"type": 3})  # not an item: skipped, never an error
    doc["assessment"]["diagnosis"]["insertions"] = "junk"
    event = parse_event(doc)
    assert event.assessment.words[0].phones[0].heard is None and event.assessment.words[0].phones[0].error == "deletion"
    assert len(event.assessment.feedback) == 1 and event.assessment.diagnosis.insertions == ()
    assert to_dict(event)["assessment"]["words"][0]["phones"][0]["heard"] is None


def _paths(doc, path=()):
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in items:
        yield path + (k,)
        yield from _paths(v, path + (k,))


def test_any_field_replaced_by_junk_parses_or_raises_invalid_event():
    import json

    from multipa_client import InvalidEvent

    base = _new()
    for path in _paths(base):
        for junk in (None, -1, 2.5, "x", [], {}, [1], {"a": 1}, True, [{"phone": 3}]):
            doc = json.loads(json.dumps(base))
            node = doc
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = junk
            try:
                event = parse_event(doc)
            except InvalidEvent:
                continue
            json.dumps(to_dict(event))
