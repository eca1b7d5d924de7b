"""The precompute job's order: speakers interleaved, so that a run stopped at any point covers them evenly."""

from pathlib import Path

from multipa_core import cli
from multipa_core.data import Utterance
from multipa_core.precompute import interleaved


def _utt(speaker: str, n: int) -> Utterance:
    return Utterance(utt=f"{speaker}{n}", speaker=speaker, text="A", audio_path=Path("x.flac"), words=[])


def test_speakers_are_interleaved_and_capped():
    items = [_utt("a", 0), _utt("a", 1), _utt("a", 2), _utt("b", 0), _utt("c", 0), _utt("c", 1)]
    assert [u.utt for u in interleaved(items)] == ["a0", "b0", "c0", "a1", "c1", "a2"]
    assert [u.utt for u in interleaved(items, 1)] == ["a0", "b0", "c0"]
    assert interleaved([]) == []


def test_a_bad_shard_is_a_clear_error(capsys):
    assert cli.main(["precompute", "--shard", "2/2"]) == 2
    assert "error [" in capsys.readouterr().err
