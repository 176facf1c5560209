"""Collators: what each objective hides from the model and asks it to predict. Each is a callable that turns a list
of examples into a batch, so it is a `transformers.Trainer`'s `data_collator` as it is hfssl's loop's.

Text (examples with `input_ids`, unpadded; the collator pads them):

- `MLMCollator`: BERT's token masking; `WholeWordMaskCollator`: all the pieces of a word together;
  `SpanMaskCollator`: SpanBERT's spans of whole words. They return `input_ids`, `attention_mask` and `labels` (-100
  where no loss is taken), the batch any transformers masked LM takes.
- `CausalLMCollator`: next-word labels that take no loss across a document boundary, for a causal LM.

Speech (examples with `input_values`, raw mono audio at the feature extractor's rate):

- `AudioMaskCollator`: wav2vec 2.0 span masks over the encoder's frames (`mask_time_indices`) and, with
  `num_negatives`, contrastive negatives (`sampled_negative_indices`); with `targets=MelTargets(...)` it also returns
  each frame's log-mel features, or with a quantizer BEST-RQ's codes, as `labels` for
  `hfssl.heads.MaskedSpeechForPreTraining`; an example's own per-frame `labels` (HuBERT's clusters) pass through.

In your own Trainer script::

    from transformers import AutoModelForMaskedLM, AutoTokenizer, Trainer, TrainingArguments
    from hfssl.collators import WholeWordMaskCollator

    tokenizer = AutoTokenizer.from_pretrained("google-bert/bert-base-uncased")
    trainer = Trainer(
        model=AutoModelForMaskedLM.from_pretrained("google-bert/bert-base-uncased"),
        args=TrainingArguments("runs/wwm", max_steps=1000),
        train_dataset=tokenized,  # a dataset with an input_ids column
        data_collator=WholeWordMaskCollator(tokenizer, mask_rate=0.15, seed=0),
    )
    trainer.train()

Each collator draws its masks from its own seeded stream, one per DataLoader worker and process. hfssl's loop saves
and restores the stream's position with a checkpoint; the Trainer restores its own random state but not the
collator's, so after `resume_from_checkpoint` the masks differ from those an unbroken run would have drawn (the
training itself resumes as usual).

What takes hfssl's loop (`hfssl pretrain`) rather than a collator in a Trainer:

- replaced-token detection (ELECTRA, `objective.name: rtd`): a generator and a discriminator trained together on one
  combined loss, the discriminator reading the tokens the generator samples in the same step; that is a pair of
  models and a sampling step in between, where the Trainer trains one model's loss (the collator's `sampling_noise`
  is the randomness the sampling takes, for exact resumes).
- data2vec: the targets are an EMA teacher's averaged top layers, which a teacher forward pass computes per batch
  and which follow the student after every optimizer step; the collator gives the masks, not the targets.
- wav2vec 2.0 with `Wav2Vec2ForPreTraining`: the collator's masks and negatives are what it takes, but its Gumbel
  temperature decays with the step, which hfssl's loop sets and a plain Trainer leaves fixed.
- SimCSE and contrastive sentence pairs (`ContrastiveCollator` in `hfssl.collators.pairs`): the in-batch loss is
  hfssl's objective, not a model's `labels`.
"""

from hfssl.collators.audio import AudioMaskCollator, MelTargets, sample_negatives, span_mask
from hfssl.collators.base import Collator, ScheduledCollator
from hfssl.collators.text import (
    CausalLMCollator,
    MaskingCollator,
    MLMCollator,
    SpanMaskCollator,
    WholeWordMaskCollator,
    mask_tokens,
)

__all__ = [
    "AudioMaskCollator",
    "CausalLMCollator",
    "Collator",
    "MLMCollator",
    "MaskingCollator",
    "MelTargets",
    "ScheduledCollator",
    "SpanMaskCollator",
    "WholeWordMaskCollator",
    "mask_tokens",
    "sample_negatives",
    "span_mask",
]
