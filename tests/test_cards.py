"""The model card of every kind of export hfssl writes, read as the Hub reads it: the metadata parses and round-trips
through huggingface_hub's own types (ModelCardData, EvalResult), names what a Hub page needs, and the body has the
sections a reader looks for. `ModelCard.validate` asks the Hub, so it is not used here."""

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import EvalResult, ModelCard, ModelCardData, metadata_load
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results
from transformers.pipelines import SUPPORTED_TASKS

from hfssl import config as config_lib
from hfssl.config import FinetuneConfig, LabelEfficiencyConfig
from hfssl.data.labelled import LabelledSplits
from hfssl.metrics import METRIC_NAMES
from hfssl.objectives import load_pretrain

SECTIONS = [
    "## Intended use",
    "## How to use",
    "## Training objective",
    "## Training data",
    "## Training procedure",
    "## Compute",
    "## Evaluation",
    "## Limitations",
]


def checked_card(folder: Path, pipeline_tag: str, tags: set[str]) -> ModelCard:
    """Load `folder`'s card and check what every hfssl card has; returns it for the kind-specific checks."""
    path = folder / "README.md"
    card = ModelCard.load(path)
    meta = metadata_load(path)
    assert card.data.to_dict() == meta
    assert ModelCardData(**meta).to_dict() == meta  # parses back into huggingface_hub's own fields, model-index too
    assert meta["license"] == "apache-2.0"
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == pipeline_tag and pipeline_tag in SUPPORTED_TASKS
    assert tags <= set(meta["tags"]) and all(isinstance(t, str) and t.strip() == t != "" for t in meta["tags"])
    assert meta["language"] == ["en"]
    positions = [card.text.find(section + "\n") for section in SECTIONS]
    assert -1 not in positions, [s for s, p in zip(SECTIONS, positions, strict=True) if p == -1]
    assert positions == sorted(positions)
    assert "{{" not in card.text and "{%" not in card.text  # every template placeholder filled
    return card


def section(card: ModelCard, heading: str) -> str:
    return card.text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]


def table(card: ModelCard, heading: str) -> dict[str, str]:
    rows = [line.strip("|").split("|") for line in section(card, heading).splitlines() if line.startswith("| ")]
    return {key.strip(): value.strip() for key, value in rows[1:]}


def check_compute(card: ModelCard, metrics: dict, seen: str) -> dict[str, str]:
    compute = table(card, "## Compute")
    assert compute["hardware"].startswith("1 x ") and metrics["device"].split(":")[0] in compute["hardware"].lower()
    assert compute["wall time"] == f"{metrics['wall_time_s']:,.1f} s"
    assert seen in compute
    return compute


def test_text_mlm_card(mlm_export):
    card = checked_card(mlm_export, "fill-mask", {"hfssl", "masked-language-modeling", "modernbert"})
    metrics = json.loads((mlm_export.parent / "metrics.json").read_text())
    assert card.data.datasets is None  # the embedded corpus is on no Hub
    assert card.data.base_model is None  # trained from scratch
    compute = check_compute(card, metrics, "tokens seen")
    assert compute["tokens seen"] == f"{int(metrics['tokens_seen']):,}" and metrics["tokens_seen"] > 0
    evaluation = table(card, "## Evaluation")
    assert evaluation["loss"] == f"{metrics['eval_loss']:.4f}"
    assert evaluation["masked-token accuracy"] == f"{metrics['eval_accuracy']:.4f}"
    assert "30% of tokens" in section(card, "## Training objective")
    assert "peak learning rate" in table(card, "## Training procedure")


def test_text_mlm_card_from_hfssl_export(mlm_export, tmp_path):
    """`hfssl export` rebuilds the card from a checkpoint: the same metadata, the compute it cannot know marked so."""
    from hfssl.export import export_checkpoint

    out = export_checkpoint(mlm_export.parent, tmp_path / "exported")
    card = checked_card(out, "fill-mask", {"hfssl", "masked-language-modeling"})
    assert card.data.to_dict() == ModelCard.load(mlm_export / "README.md").data.to_dict()
    compute = table(card, "## Compute")
    assert compute["hardware"] == compute["wall time"] == "not recorded"
    metrics = json.loads((mlm_export.parent / "metrics.json").read_text())
    assert compute["tokens seen"] == f"{int(metrics['tokens_seen']):,}"


def test_speech_backbone_card(speech_export):
    card = checked_card(speech_export, "feature-extraction", {"hfssl", "audio", "speech", "wav2vec2"})
    metrics = json.loads((speech_export.parent / "metrics.json").read_text())
    compute = check_compute(card, metrics, "audio seen")
    assert compute["audio seen"] == f"{metrics['audio_seconds_seen'] / 3600:,.3f} h"
    assert table(card, "## Evaluation")["contrastive loss"] == f"{metrics['eval_loss']:.4f}"
    assert "contrastive" in section(card, "## Training objective")


def check_eval_results(card: ModelCard, run: Path, task: str, dataset_type: str) -> None:
    """The model-index holds one EvalResult per metric of the test split, equal to what metrics.json says."""
    metrics = json.loads((run / "metrics.json").read_text())
    name, results = model_index_to_eval_results(metadata_load(run / "final" / "README.md")["model-index"])
    assert name == card.data.model_name == run.name
    assert results == card.data.eval_results
    assert eval_results_to_model_index(name, results) == card.data.to_dict()["model-index"]
    assert all(isinstance(r, EvalResult) for r in results)
    assert sorted(r.metric_type for r in results) == sorted(METRIC_NAMES)
    for result in results:
        assert result.task_type == task
        assert result.dataset_type == dataset_type and result.dataset_name and result.dataset_split == "test"
        assert result.metric_value == pytest.approx(metrics["test"][result.metric_type], abs=1e-4)
    rows = {line.split("|")[1].strip(): line for line in section(card, "## Evaluation").splitlines() if "|" in line}
    assert f"{metrics['test']['accuracy']:.4f}" in rows["test"]


def test_text_classifier_card(text_classifier, mlm_export):
    final = text_classifier / "final"
    card = checked_card(final, "text-classification", {"hfssl", "text-classification", "modernbert"})
    check_eval_results(card, text_classifier, "text-classification", "hfssl/synthetic-topics")
    # A local base model is no Hub id: the card names its path in the text, and leaves base_model out.
    assert card.data.base_model is None and str(mlm_export) in card.text
    metrics = json.loads((text_classifier / "metrics.json").read_text())
    compute = check_compute(card, metrics, "tokens seen")
    assert compute["tokens seen"] == f"{metrics['tokens_seen']:,}" and metrics["tokens_seen"] > 0
    assert "cross-entropy over the 8 labels" in section(card, "## Training objective")


def test_audio_classifier_card(audio_classifier, speech_export):
    final = audio_classifier / "final"
    card = checked_card(final, "audio-classification", {"hfssl", "audio-classification", "wav2vec2"})
    check_eval_results(card, audio_classifier, "audio-classification", "hfssl/synthetic-keywords")
    assert card.data.base_model is None and str(speech_export) in card.text
    metrics = json.loads((audio_classifier / "metrics.json").read_text())
    compute = check_compute(card, metrics, "audio seen")
    assert compute["audio seen"] == f"{metrics['audio_seconds_seen'] / 3600:,.3f} h"
    assert metrics["audio_seconds_seen"] > 0
    # keywords-tiny fine-tunes the convolutional front end too, so the card must not say it stayed frozen.
    assert "cross-entropy over the 10 labels" in section(card, "## Training objective")
    assert "stayed frozen" not in section(card, "## Training objective")


# --------------------------------------------------------------------------- metadata from the recipe's values

RUN = {"steps": 10, "tokens_seen": 5000, "audio_seconds_seen": 90.0, "wall_time_s": 4.0, "device": "cpu"}


def test_hub_data_and_base_model_come_from_the_recipe(mlm_export, speech_export, tmp_path):
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForPreTraining, AutoTokenizer

    from hfssl.objectives import wav2vec2
    from hfssl.objectives.audio import render_card as render_speech_card
    from hfssl.objectives.mlm import render_card

    model, tokenizer = AutoModelForMaskedLM.from_pretrained(mlm_export), AutoTokenizer.from_pretrained(mlm_export)
    hub = {"data.train": "someone/corpus", "data.validation": "someone/corpus-dev", "model.name_or_path": "org/bert"}
    cfg = load_pretrain("text/mlm-tiny", hub)
    card = render_card(model, tokenizer, cfg, RUN)
    assert card.data.datasets == ["someone/corpus", "someone/corpus-dev"]
    assert card.data.base_model == "org/bert"

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("some text\n")
    local = {"data.train": str(corpus), "model.name_or_path": str(mlm_export)}
    card = render_card(model, tokenizer, load_pretrain("text/mlm-tiny", local), RUN)
    assert card.data.datasets is None and card.data.base_model is None
    given = local | {"export.datasets": "[someone/corpus]", "export.base_model": "org/mlm"}
    card = render_card(model, tokenizer, load_pretrain("text/mlm-tiny", given), RUN)
    assert card.data.datasets == ["someone/corpus"] and card.data.base_model == "org/mlm"

    encoder = AutoModelForPreTraining.from_config(AutoConfig.from_pretrained(speech_export))
    speech = {"data.train": "someone/speech", "data.hub_config": "clean"}
    cfg = load_pretrain("speech/wav2vec2-tiny", speech)
    card = render_speech_card(encoder, cfg, RUN, wav2vec2.describe(cfg), {})
    assert card.data.datasets == ["someone/speech"] and card.data.base_model is None


def test_finetune_metadata_names_the_hub_model_and_dataset(text_classifier):
    from transformers import AutoModelForSequenceClassification

    from hfssl.downstream.finetune import render_card

    model = AutoModelForSequenceClassification.from_pretrained(text_classifier / "final")
    names = list(model.config.id2label.values())
    values = {
        "model.name_or_path": "org/mlm",
        "data.train": "nyu-mll/glue",
        "data.hub_config": "sst2",
        "training.output_dir": str(text_classifier.parent / "sst2"),
    }
    cfg = config_lib.load(FinetuneConfig, "text/sst2", values)
    scores = {name: 0.5 for name in METRIC_NAMES}
    metrics = RUN | {"train_examples": 100, "validation": scores, "test": scores | {"accuracy": 0.75}}
    card = render_card(cfg, LabelledSplits(None, None, None, names, "nyu-mll/glue"), metrics, model)
    assert card.data.base_model == "org/mlm"
    assert card.data.datasets == ["nyu-mll/glue"]
    accuracy = next(r for r in card.data.eval_results if r.metric_type == "accuracy")
    assert (accuracy.dataset_type, accuracy.dataset_config, accuracy.dataset_split) == ("nyu-mll/glue", "sst2", "test")
    assert accuracy.metric_value == 0.75
    f1 = next(r for r in card.data.eval_results if r.metric_type == "f1")
    assert f1.metric_args == {"average": "macro"}
    again = ModelCardData(**card.data.to_dict())
    assert again.eval_results == card.data.eval_results

    scratch = config_lib.load(FinetuneConfig, "text/sst2", values | {"model.from_scratch": "true"})
    assert render_card(scratch, LabelledSplits(None, None, None, names, "x"), metrics, model).data.base_model is None


# --------------------------------------------------------------------------- the label-efficiency section


def test_label_efficiency_section_keeps_the_card_valid(mlm_export, tmp_path):
    from hfssl.downstream.label_efficiency import PLOT, SECTION_START, label_efficiency

    model = tmp_path / "mlm"
    shutil.copytree(mlm_export, model)
    values = {
        "model.name_or_path": str(model),
        "data.synthetic_examples": "200",
        "data.max_length": "32",
        "sweep.method": "probe",
        "sweep.fractions": "[0.2, 1.0]",
        "sweep.seeds": "[0]",
        "sweep.output_dir": str(tmp_path / "sweep"),
    }
    result = label_efficiency(config_lib.load(LabelEfficiencyConfig, "text/label-efficiency-tiny", values))
    card = checked_card(model, "fill-mask", {"hfssl", "masked-language-modeling"})
    assert card.text.count(SECTION_START) == 1
    efficiency = section(card, "## Label efficiency")
    assert card.text.index("## Evaluation") < card.text.index("## Label efficiency") < card.text.index("## Limitations")
    for entry in result["summary"]:
        assert f"{entry['accuracy']:.3f} ± {entry['accuracy_std']:.3f}" in efficiency
    assert f"]({PLOT})" in efficiency
    assert (model / PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
