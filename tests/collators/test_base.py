"""Every collator an objective hands the loop keeps the contract the loop relies on (`hfssl.collators.base`)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

from hfssl.collators.audio import AudioMaskCollator
from hfssl.collators.base import Collator, ScheduledCollator
from hfssl.collators.pairs import ContrastiveCollator, CropCollator
from hfssl.collators.text import CausalLMCollator
from hfssl.data.stream import POSITION, ResumableStream
from hfssl.objectives.mlm import make_collator
from hfssl.tokenizer import train_tokenizer

TEXTS = [f"the cat number {i} sat on the mat, then the dog number {i + 1} sat on it" for i in range(40)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, kind="wordpiece", vocab_size=120)


def masking(strategy: str) -> SimpleNamespace:
    return SimpleNamespace(strategy=strategy, mask_rate=0.3, replace_prob=0.8, random_prob=0.1, span_p=0.2, max_span=3)


# What each objective's setup builds: objectives/mlm.py and rtd.py, clm.py, simcse.py, audio.py.
def text_collators(tokenizer) -> dict:
    return {
        "mlm-token": make_collator(masking("token"), tokenizer, seed=0),
        "mlm-whole_word": make_collator(masking("whole_word"), tokenizer, seed=0, documents=True),
        "rtd-span": make_collator(masking("span"), tokenizer, seed=0, sampling_noise=True),
        "clm": CausalLMCollator(tokenizer, documents=True),
        "simcse": ContrastiveCollator(tokenizer.pad_token_id),
        "simcse-crops": CropCollator(tokenizer.pad_token_id, tokenizer.cls_token_id),
    }


def audio_collator() -> AudioMaskCollator:
    extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    return AudioMaskCollator(extractor, Wav2Vec2Config(), mask_length=2, num_negatives=3)


def collators_and_items(tokenizer) -> list[tuple[str, object, list[dict]]]:
    texts = [{"input_ids": ids} for ids in tokenizer(TEXTS[:4])["input_ids"]]
    clips = [{"input_values": np.random.default_rng(i).standard_normal(8000).astype(np.float32)} for i in range(2)]
    out = [(name, collator, texts) for name, collator in text_collators(tokenizer).items()]
    return out + [("wav2vec2", audio_collator(), clips)]


def test_every_collator_keeps_the_contract(tokenizer):
    for name, collator, _ in collators_and_items(tokenizer):
        assert isinstance(collator, Collator), name
        # Only masked-LM takes a masking-rate schedule (the others refuse masking settings).
        assert isinstance(collator, ScheduledCollator) == name.startswith(("mlm", "rtd")), name


class Deterministic:
    """Everything the contract asks of a collator, for taking one member away at a time."""

    seed = 0

    def __call__(self, examples):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def reset(self, seed=None):
        pass


@pytest.mark.parametrize("member", ["seed", "__call__", "state_dict", "load_state_dict", "reset"])
def test_a_collator_missing_a_member_breaks_the_contract(member):
    assert isinstance(Deterministic(), Collator)
    lacking = type("Lacking", (), {k: v for k, v in vars(Deterministic).items() if k != member})
    assert not isinstance(lacking(), Collator)


def test_every_collator_collates_a_stream(tokenizer):
    """A streamed corpus reseeds its collator before every batch with the collator's own seed, whatever its kind."""
    for name, collator, items in collators_and_items(tokenizer):

        def batches(part, parts, state, items=items):
            for i in range(2):
                yield items, {"read": i}

        stream = iter(ResumableStream(batches, collator, rank=0, world_size=1, workers=0))
        for batch in (next(stream), next(stream)):
            assert batch.pop(POSITION)["batches"] in (1, 2), name
            assert batch and all(isinstance(value, torch.Tensor) for value in batch.values()), name
