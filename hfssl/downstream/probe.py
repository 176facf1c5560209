"""Linear probes on frozen features: pooled hidden states of every layer, then logistic regression.

The encoder runs once over the data; the classifier is fitted full-batch with L-BFGS on the pooled features, so a
probe of a small model on a few thousand examples takes seconds and can run inside pretraining (`train.probe_every`).
The classifier reads one layer, or a softmax-weighted sum of all layers learned together with it (as in SUPERB).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import DataCollatorWithPadding

from hfssl.collators.classification import AudioClassificationCollator
from hfssl.config import ClassifierModelArgs, LabelledDataArgs, ProbeConfig, TrainArgs
from hfssl.data.labelled import LabelledSplits, load_labelled
from hfssl.downstream.loaders import load_backbone, load_processor
from hfssl.errors import UsageError
from hfssl.io import check_output_dir, check_replaceable, write_json
from hfssl.metrics import compute_classification_metrics

logger = logging.getLogger(__name__)

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "input_values", "input_features")
# How an encoder is trained, which a frozen probe never does: `hfssl probe` refuses them.
_TRAINING_ONLY = {
    "freeze_feature_encoder": "freezing the feature encoder",
    "mask_time_prob": "SpecAugment",
    "mask_time_length": "SpecAugment",
    "mask_feature_prob": "SpecAugment",
}


def load_probe_data(t: TrainArgs, task: str = "text", max_seconds: float = 10.0) -> LabelledSplits:
    """Labelled data for `train.probe_every`: half of it fits the probe, half scores it."""
    data = LabelledDataArgs(
        task=task,
        train=t.probe_data,
        synthetic_examples=t.probe_examples,
        validation_fraction=0.5,
        test_fraction=0.0,
        max_length=128,
        max_seconds=max_seconds,
    )
    return load_labelled(data, seed=t.seed)


@torch.no_grad()
def pooled_features(
    backbone: torch.nn.Module, batches, device: torch.device | str, pooling: str = "mean"
) -> torch.Tensor:
    """[examples, layers + 1, hidden]: each layer's hidden states averaged over the unpadded positions (`pooling`
    mean), or at the first position (cls: the class token of a text encoder).

    `backbone` is a transformers base model (`model.base_model`); `batches` yields dicts of its inputs. For audio
    models, whose frames outnumber nothing in the attention mask, the mask is mapped to frames as the model does.
    """
    was_training = backbone.training
    backbone.eval()
    pooled = []
    for batch in batches:
        inputs = {k: v.to(device) for k, v in batch.items() if k in _MODEL_INPUTS}
        hidden = torch.stack(backbone(**inputs, output_hidden_states=True).hidden_states, dim=1)
        if pooling == "cls":
            pooled.append(hidden[:, :, 0].float().cpu())
            continue
        mask = inputs.get("attention_mask")
        if mask is None:
            pooled.append(hidden.mean(dim=2).float().cpu())
            continue
        if mask.shape[1] != hidden.shape[2]:
            mask = backbone._get_feature_vector_attention_mask(hidden.shape[2], mask)
        weights = mask[:, None, :, None].to(hidden.dtype)
        pooled.append(((hidden * weights).sum(dim=2) / weights.sum(dim=2).clamp_min(1)).float().cpu())
    backbone.train(was_training)
    return torch.cat(pooled)


def text_batches(dataset, tokenizer, batch_size: int, max_length: int):
    """Padded batches of a dataset with "text" (and optional "text_pair") columns, in order."""
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    pair = "text_pair" in dataset.column_names
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        encoded = tokenizer(rows["text"], rows["text_pair"] if pair else None, truncation=True, max_length=max_length)
        yield collate([{k: v[i] for k, v in encoded.items()} for i in range(len(rows["text"]))])


def audio_batches(dataset, feature_extractor, batch_size: int, max_seconds: float):
    """Padded, normalised batches of a dataset with an undecoded "audio" column, in order."""
    collate = AudioClassificationCollator(feature_extractor, max_seconds)
    audio = dataset.select_columns(["audio"])
    for start in range(0, len(audio), batch_size):
        yield collate([audio[i] for i in range(start, min(start + batch_size, len(audio)))])


def example_batches(dataset, processor, batch_size: int, max_length: int = 128, max_seconds: float = 10.0):
    """Model-input batches of labelled examples: audio clips when the dataset has an "audio" column, else texts."""
    if "audio" in dataset.column_names:
        return audio_batches(dataset, processor, batch_size, max_seconds)
    return text_batches(dataset, processor, batch_size, max_length)


def parse_layer(layer: str, num_layers: int) -> int | None:
    """'weighted' -> None (learn a mix), 'last' -> the top layer, an integer -> that layer (0: the embeddings)."""
    if layer == "weighted":
        return None
    if layer == "last":
        return num_layers
    try:
        index = int(layer)
    except ValueError:
        raise UsageError(f"probe.layer: {layer!r} is not 'weighted', 'last' or a layer number") from None
    if not -num_layers - 1 <= index <= num_layers:
        raise UsageError(f"probe.layer: the model has layers 0 (embeddings) to {num_layers}, not {index}")
    return index % (num_layers + 1)


def fit_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    layer: int | None = None,
    l2: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
) -> dict:
    """Fit logistic regression on `train_x` ([n, layers, hidden]) and score it on `test_x`.

    Features are standardised with the training statistics. `layer` None learns softmax weights over layers
    jointly with the classifier. Returns the classification metrics and the layer weights.
    """
    generator = torch.Generator().manual_seed(seed)
    if layer is not None:
        train_x, test_x = train_x[:, layer : layer + 1], test_x[:, layer : layer + 1]
    mean = train_x.mean(dim=0, keepdim=True)
    std = train_x.std(dim=0, keepdim=True).clamp_min(1e-6) if len(train_x) > 1 else torch.ones_like(mean)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    hidden = train_x.shape[-1]
    weight = (torch.randn(hidden, num_classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    mix = torch.zeros(train_x.shape[1], requires_grad=True)

    def logits(x: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("nlh,l->nh", x, mix.softmax(0))
        return mixed @ weight + bias

    optimizer = torch.optim.LBFGS([weight, bias, mix], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits(train_x), train_y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predictions = logits(test_x).argmax(-1)
    result = compute_classification_metrics(predictions.tolist(), test_y.tolist())
    result["layer_weights"] = [round(w, 4) for w in mix.softmax(0).tolist()] if layer is None else None
    result["layer"] = "weighted" if layer is None else layer
    return result


def probe(
    backbone,
    processor,
    splits,
    layer: str = "weighted",
    l2: float = 1e-3,
    batch_size: int = 64,
    max_length: int = 128,
    device="cpu",
    seed: int = 0,
    max_seconds: float = 10.0,
    pooling: str = "mean",
) -> dict:
    """Probe `backbone` on labelled `splits` (hfssl.data.labelled.LabelledSplits): fit on train, score on test
    (validation when there is no test split). `processor` is the tokenizer (text) or feature extractor (audio);
    `pooling` as `pooled_features` takes it."""
    evaluation = splits.test if splits.test is not None else splits.validation
    num_layers = backbone.config.num_hidden_layers
    index = parse_layer(layer, num_layers)
    train_x = pooled_features(
        backbone, example_batches(splits.train, processor, batch_size, max_length, max_seconds), device, pooling
    )
    test_x = pooled_features(
        backbone, example_batches(evaluation, processor, batch_size, max_length, max_seconds), device, pooling
    )
    result = fit_probe(
        train_x,
        torch.tensor(splits.train["label"]),
        test_x,
        torch.tensor(evaluation["label"]),
        num_classes=len(splits.label_names),
        layer=index,
        l2=l2,
        seed=seed,
    )
    result["train_examples"], result["eval_examples"] = len(splits.train), len(evaluation)
    return result


def training_scores(result: dict) -> dict[str, float]:
    """What pretraining logs of a probe's `result`: its accuracy and macro F1."""
    return {"accuracy": result["accuracy"], "f1": result["f1"]}


def check_probe_settings(cfg: ProbeConfig) -> None:
    """Refuse, with one line naming the key, a setting `hfssl probe` would otherwise ignore."""
    if cfg.data.regression:
        raise UsageError("data.regression: the probe is a classifier (logistic regression); fine-tune for scores")
    defaults = ClassifierModelArgs()
    for name, what in _TRAINING_ONLY.items():
        if getattr(cfg.model, name) != getattr(defaults, name):
            raise UsageError(
                f"model.{name}: the probe trains no encoder (its features are frozen), so {what} changes nothing; "
                "leave it out, or fine-tune"
            )
    if cfg.data.few_label_validation != LabelledDataArgs().few_label_validation:
        raise UsageError(
            "data.few_label_validation: the probe chooses no checkpoint (its L2 penalty is fixed), so no validation "
            "split selects anything; leave it out"
        )
    if cfg.model.pooling == "cls" and cfg.data.task == "audio":
        raise UsageError("model.pooling: cls reads a text encoder's class token, which speech encoders lack; use mean")


def probe_model(cfg: ProbeConfig, overwrite: bool = False) -> dict:
    """`hfssl probe`: the recipe's model, or with `model.from_scratch` a randomly initialised encoder of its
    architecture (the baseline pretraining should beat), probed on the recipe's labelled data; the scores are
    written to `probe.output` (an existing file only with `overwrite`) and returned."""
    check_probe_settings(cfg)
    output = Path(cfg.probe.output)
    if output.is_dir():
        raise UsageError(f"probe.output: {output} is a directory; name the file the scores go to")
    check_output_dir(output.parent, "probe.output")
    check_replaceable(output, overwrite)
    processor = load_processor(cfg)
    # a probe selects nothing (its L2 penalty is fixed): validation is only scored, whole, when there is no test split
    splits = load_labelled(dataclasses.replace(cfg.data, few_label_validation="full"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone = load_backbone(cfg.model, scratch=cfg.model.from_scratch).to(device)
    p = cfg.probe
    result = probe(
        backbone, processor, splits, p.layer, p.l2, p.batch_size, cfg.data.max_length, device,
        max_seconds=cfg.data.max_seconds, pooling=cfg.model.pooling,
    )  # fmt: skip
    result["model"] = cfg.model.name_or_path
    result["from_scratch"] = cfg.model.from_scratch
    result["pooling"] = cfg.model.pooling
    write_json(output, result)
    return result
