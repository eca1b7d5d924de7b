"""The Assessor on one device, and batches: every network on the requested device, ``cuda``
without a GPU refused at start, and a batch (one encoder pass for all its turns) assessed as
the same turns one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multipa_core.errors import DeviceUnavailableError

pytestmark = pytest.mark.models

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "speechocean762"
# development speakers, of different lengths (the batch is padded to the longest)
UTTS = {"000530003": "MIKE LIKES THE ORANGE ONE", "000530019": None, "007390013": None}


@pytest.fixture(scope="module")
def assessor():
    from multipa_core.assess import Assessor
    from multipa_core.pipeline import PipelineOptions

    return Assessor(PipelineOptions(device="cpu", threads=1))


@pytest.fixture(scope="module")
def turns():
    import soundfile as sf

    if not DATA.is_dir():
        pytest.skip(f"shared data missing at {DATA}")
    out = []
    for utt, text in UTTS.items():
        path = DATA / "audio" / f"{utt}.flac"
        if not path.exists():
            pytest.skip(f"{path} missing")
        samples, rate = sf.read(path, dtype="float32")
        assert rate == 16000
        out.append((samples, text))
    return out


def _torch_objects(root, seen=None, depth=0):
    """Every torch module and tensor reachable from ``root`` through attributes, lists and dicts."""
    import torch

    seen = set() if seen is None else seen
    if id(root) in seen or depth > 6:
        return
    seen.add(id(root))
    if isinstance(root, (torch.nn.Module, torch.Tensor)):
        yield root
        return
    if isinstance(root, dict):
        children = list(root.values())
    elif isinstance(root, (list, tuple)):
        children = list(root)
    elif hasattr(root, "__dict__") and type(root).__module__.startswith("multipa_core"):
        children = list(vars(root).values())
    else:
        return
    for child in children:
        yield from _torch_objects(child, seen, depth + 1)


def test_every_network_is_on_the_requested_device(assessor):
    import torch

    found = list(_torch_objects(assessor))
    modules = [m for m in found if isinstance(m, torch.nn.Module)]
    assert len(modules) >= 2  # the scorer's networks and the aligner at least
    tensors = [t for m in modules for t in [*m.parameters(), *m.buffers()]] + [
        t for t in found if isinstance(t, torch.Tensor)
    ]
    assert tensors and {t.device.type for t in tensors} == {"cpu"}
    placement = assessor.placement()
    assert {"asr_recognized", "asr_target", "scorer[0]", "aligner", "encoder_layers"} <= set(placement)
    assert set(placement.values()) == {"cpu"}


def test_cuda_without_a_gpu_fails_at_start():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from multipa_core.assess import Assessor
    from multipa_core.pipeline import PipelineOptions

    with pytest.raises(DeviceUnavailableError) as info:
        Assessor(PipelineOptions(device="cuda"), scorer="no-such-scorer")  # refused before the scorer is even looked up
    assert info.value.code == "device_unavailable" and "cuda" in str(info.value)


def test_a_batch_is_assessed_as_its_turns_one_by_one(assessor, turns):
    batched = assessor.assess_many(turns)
    assert len(batched) == len(turns)
    for (samples, reference), together in zip(turns, batched):
        alone = assessor.assess(samples, reference=reference)
        assert not isinstance(together, Exception), together
        assert (together.transcript, together.target_transcript) == (alone.transcript, alone.target_transcript)
        assert [w.text for w in together.words] == [w.text for w in alone.words]
        assert together.sentence.keys() == alone.sentence.keys()
        for key in alone.sentence:
            assert together.sentence[key] == pytest.approx(alone.sentence[key], abs=1e-3)
        for a, b in zip(alone.words, together.words):
            assert (b.accuracy, b.stress, b.total) == pytest.approx((a.accuracy, a.stress, a.total), abs=1e-3)
            assert [p.phone for p in b.phones] == [p.phone for p in a.phones]


def test_a_rejected_turn_leaves_the_rest_of_the_batch(assessor, turns):
    silent = np.zeros(16000, dtype=np.float32)
    outcomes = assessor.assess_many([turns[0], (silent, None)])
    assert not isinstance(outcomes[0], Exception)
    assert getattr(outcomes[1], "code", None) == "audio_silent"
