"""hfssl's collators and pretraining head in a `transformers.Trainer` script of the user's own: whole-word and span
masking pretrain a masked LM (the loss falls; a Trainer checkpoint resumes), and BEST-RQ's masked-prediction head
trains on the audio collator's masks and codes."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    HubertConfig,
    Trainer,
    TrainingArguments,
    Wav2Vec2FeatureExtractor,
)

from hfssl.collators import AudioMaskCollator, MelTargets, SpanMaskCollator, WholeWordMaskCollator
from hfssl.data.synthetic import synthetic_documents
from hfssl.heads import MaskedSpeechConfig, MaskedSpeechForPreTraining, random_quantizer
from hfssl.tokenizer import train_tokenizer

STEPS, SAVE_AT = 30, 15


@pytest.fixture(scope="module")
def corpus():
    """A WordPiece tokenizer and tokenized documents, both made here."""
    texts = [doc["text"] for doc in synthetic_documents(300, seed=0)]
    tokenizer = train_tokenizer(texts, vocab_size=400, model_max_length=64)
    return tokenizer, Dataset.from_dict({"input_ids": tokenizer(texts, truncation=True, max_length=64)["input_ids"]})


def trainer(model, collator, dataset, out, batch_size: int = 16) -> Trainer:
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-2,
        logging_steps=5,
        save_steps=SAVE_AT,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)


def losses(run: Trainer, after: int = 0) -> list[float]:
    """The training losses the Trainer logged after step `after` (a resumed run's history has the checkpoint's)."""
    return [entry["loss"] for entry in run.state.log_history if "loss" in entry and entry["step"] > after]


def tiny_bert(tokenizer):
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return AutoModelForMaskedLM.from_config(config)


def masked_lm_loss(model, batch: dict) -> float:
    model.eval()
    with torch.no_grad():
        loss = model(**batch).loss.item()
    model.train()
    return loss


@pytest.mark.parametrize("make", [WholeWordMaskCollator, SpanMaskCollator], ids=["whole-word", "span"])
def test_the_trainer_pretrains_a_masked_lm_and_resumes_from_its_checkpoint(make, corpus, tmp_path):
    tokenizer, dataset = corpus
    model = tiny_bert(tokenizer)
    fixed = make(tokenizer, seed=1)([dataset[i] for i in range(64)])  # the same masks before and after
    before = masked_lm_loss(model, fixed)
    run = trainer(model, make(tokenizer, seed=0), dataset, tmp_path)
    run.train()
    assert masked_lm_loss(model, fixed) < before - 0.4

    trained = losses(run)
    resumed = trainer(tiny_bert(tokenizer), make(tokenizer, seed=0), dataset, tmp_path)
    resumed.train(resume_from_checkpoint=str(tmp_path / f"checkpoint-{SAVE_AT}"))
    assert resumed.state.global_step == STEPS
    # Continued from the checkpoint's weights and optimizer, not from the fresh model handed to the Trainer: its first
    # loss, five steps on, is near the first run's there, far above a fresh model's.
    first = losses(resumed, after=SAVE_AT)[0]
    assert first == pytest.approx(trained[SAVE_AT // 5], abs=0.2) and first < trained[0] - 0.2, (first, trained)


def tones(count: int, seed: int) -> list[np.ndarray]:
    """Clips of 0.6 to 1 s at 16 kHz: a tune of 0.2 s notes, each of four pitches, so a masked frame's log-mel code
    shows in the frames around it (a steady tone would not do: the targets are normalised over the clip)."""
    rng = np.random.default_rng(seed)
    notes = 0.2 * 16000
    clips = []
    for _ in range(count):
        pitch = rng.choice([200.0, 500.0, 1000.0, 2000.0], size=int(rng.integers(3, 6))).repeat(notes)
        clips.append(np.sin(2 * np.pi * np.cumsum(pitch) / 16000).astype(np.float32))
    return clips


def test_the_trainer_pretrains_a_masked_speech_head_on_the_audio_collators_masks(tmp_path):
    encoder = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    codes = MelTargets(encoder, sampling_rate=16000, mel_bins=40)
    codes.quantizer = random_quantizer(codes.dim, codebook_size=16, codebook_dim=8, seed=0)
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True)
    collator = AudioMaskCollator(extractor, encoder, mask_prob=0.1, mask_length=4, num_negatives=0, targets=codes)
    torch.manual_seed(0)
    model = MaskedSpeechForPreTraining(
        MaskedSpeechConfig(backbone_config=encoder.to_dict(), target="codes", num_classes=16, mel_bins=40)
    )
    run = trainer(model, collator, Dataset.from_dict({"input_values": tones(96, seed=0)}), tmp_path, batch_size=8)
    run.train()
    trained = losses(run)
    assert trained[-1] < trained[0] - 0.5, trained
