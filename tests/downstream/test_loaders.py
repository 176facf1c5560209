"""What downstream commands load: a model's modality is known from its type before its processor is looked for."""

import pytest

from hfssl.downstream.loaders import modality


@pytest.mark.parametrize(
    "model_type, kind",
    [("wav2vec2", "audio"), ("hubert", "audio"), ("wav2vec2-bert", "audio"), ("modernbert", "text"),
     ("bert", "text"), ("gpt2", "text"), ("not-a-model", None)],
)  # fmt: skip
def test_a_model_types_modality(model_type, kind):
    assert modality(model_type) == kind
