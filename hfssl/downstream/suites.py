"""`hfssl evaluate`: a suite of downstream tasks run on one export with one set of hyperparameters and several seeds,
reported as the field reports them (mean ± standard deviation per task, the suite's average).

A suite is a YAML list of tasks. Each task names its labelled data in the form of a fine-tuning recipe's `data:`
section, how the export is evaluated on it (`method: finetune`, or `probe`: frozen features, a learned mix of layers
and a linear classifier, as SUPERB does), the metric its row reports, and optionally which splits are reported under
which row names (MNLI reports matched and mismatched from one run). `method: embedding` scores the export's sentence
embeddings as they are (a sentence-transformers export with its pooling, any other text model mean-pooled): Spearman
correlation with graded similarity scores, or recall@k of relevant texts; its data is `train:` (hfssl's generated
sets, `synthetic`, or a similarity set: a file or Hub dataset with sentence1, sentence2 and score), `hub_config` and
`split`. Shipped suites live in `recipes/suites/`.

Nothing looks at an evaluated split before it is scored: fine-tuning trains the recipe's epochs and is scored at its
last step (no early stopping or best-checkpoint choice on a split that is then reported), and the probe's penalty is
fixed. GLUE's test labels are hidden, so its rows are validation scores, as GLUE papers report them.

With `suite.baseline`, each classification task that is fine-tuned or probed also gets the classic pipeline's rows
(`hfssl.downstream.baselines`: TF-IDF + logistic regression for text, MFCC statistics + logistic regression for audio),
fitted with each seed on the training data that seed's run trains on and scored on the same splits: rows named
"<row> (TF-IDF + LR)", their method the baseline's name, shown in the table but kept out of the suite's average and the
card's model-index. Tasks that share their data (a probe and a fine-tune of the same set) share one baseline row.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import yaml

from hfssl import config as config_lib
from hfssl.cards import put_card_section
from hfssl.config import EvaluateConfig, ExportArgs, FinetuneConfig, HubArgs, LabelledDataArgs
from hfssl.data.labelled import load_labelled
from hfssl.data.similarity import embedded_retrieval, embedded_similarity, load_similarity
from hfssl.downstream import baselines, report
from hfssl.errors import UsageError, first_line
from hfssl.io import check_local, check_output_dir, write_json, write_text
from hfssl.metrics import METRIC_NAMES, REGRESSION_METRIC_NAMES, metric_names

logger = logging.getLogger(__name__)

SUITES = Path(__file__).parent.parent / "recipes" / "suites"
SECTION_START, SECTION_END = "<!-- hfssl:evaluate -->", "<!-- /hfssl:evaluate -->"
_SPLITS = ("validation", "test")
EMBEDDING_METRICS = ("spearman", "recall@1", "recall@10")
EMBEDDING_METHODS = ("embedding", "mteb")
"""Methods that score embeddings as they are: once, whatever the seeds."""
CSV_COLUMNS = ["task", "row", "method", "split", "seed", "metric", "value", *METRIC_NAMES, *REGRESSION_METRIC_NAMES]
CSV_COLUMNS += [name for name in (*EMBEDDING_METRICS, "main_score") if name not in CSV_COLUMNS]


@dataclass
class EmbeddingData:
    """An embedding task's data: hfssl's generated sets, or a similarity set by file, Hub id or local copy."""

    train: str = "synthetic"
    hub_config: str | None = None
    split: str = "test"
    local: str | None = None
    """mteb: a folder of local copies, one per task's Hub dataset, named as the dataset is (DIR/stsbenchmark-sts for
    mteb/stsbenchmark-sts)."""
    task: str = "text"
    """Embeddings are of texts (for `check_model_fits`)."""


@dataclass
class Task:
    name: str
    data: LabelledDataArgs | EmbeddingData
    method: str = "finetune"
    metric: str = "accuracy"
    scores: dict[str, str] = field(default_factory=dict)
    """row name -> split scored under it; empty: one row, the task's name, on test (validation without one)."""
    dataset: str | None = None
    """what the card's model-index calls the data (the Hub id the task names; empty: its data.train)."""

    def rows(self, has_test: bool) -> dict[str, str]:
        return self.scores or {self.name: "test" if has_test else "validation"}


def suite_file(name: str) -> Path:
    """A shipped suite's file, or the YAML file a user names."""
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UsageError(f"suite.name: {name}: no such suite file")
        return path
    shipped = SUITES / f"{name}.yaml"
    if not shipped.is_file():
        names = ", ".join(sorted(p.stem for p in SUITES.glob("*.yaml")))
        raise UsageError(f"suite.name: {name!r} is not a suite; choose from {names}, or name a YAML file of tasks")
    return shipped


def load_suite(name: str, data_dir: str | None = None, overrides: dict | None = None) -> list[Task]:
    """The suite's tasks, each task's data checked as a recipe's `data:` section would be, with `overrides`
    (data settings for every task) applied over the task's own and `data_dir` in place of the Hub dataset."""
    path = suite_file(name)
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if isinstance(entries, dict) and "tasks" in entries:
        entries = entries["tasks"]
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path}: a suite is a non-empty YAML list of tasks (name, method, metric, data)")
    fields = config_lib.section_fields(LabelledDataArgs)
    tasks, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: task {i + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise UsageError(f"{where}: each task is a mapping with a name")
        where = f"{path}: task {entry['name']!r}"
        unknown = set(entry) - {"name", "method", "metric", "data", "scores", "dataset"}
        if unknown:
            raise UsageError(
                f"{where}: unknown key {sorted(unknown)[0]!r}; a task has name, method, metric, data, scores, dataset"
            )
        if entry["name"] in seen:
            raise UsageError(f"{where}: a second task of that name")
        seen.add(entry["name"])
        method, metric = entry.get("method", "finetune"), entry.get("metric", "accuracy")
        if method not in ("finetune", "probe", *EMBEDDING_METHODS):
            raise UsageError(f"{where}: method {method!r} is not finetune, probe, embedding or mteb")
        if method == "mteb":
            tasks.append(_mteb_task(entry, where, data_dir))
            continue
        if method == "embedding":
            tasks.append(_embedding_task(entry, where, metric, data_dir))
            continue
        known = (*METRIC_NAMES, *REGRESSION_METRIC_NAMES)
        if metric not in known:
            raise UsageError(f"{where}: metric {metric!r} is not one hfssl computes ({', '.join(known)})")
        given = dict(entry.get("data") or {})
        dataset = entry.get("dataset") or given.get("train")
        if data_dir is not None and given.get("hub_config") and given.get("train", "synthetic") != "synthetic":
            given["train"] = data_dir
        given |= overrides or {}
        kwargs = {}
        for key, value in given.items():
            if key not in fields:
                raise config_lib.unknown_key(f"{where}: data.{key}", list(fields))
            kwargs[key] = config_lib.coerce(value, fields[key][0], f"{where}: data.{key}")
        try:
            data = LabelledDataArgs(**kwargs)
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None
        if metric not in metric_names(data.regression):
            kind = "real-valued (data.regression)" if data.regression else "classes"
            raise UsageError(f"{where}: its labels are {kind}, which metric {metric} does not score")
        if method == "probe" and data.regression:
            raise UsageError(f"{where}: the probe classifies; fine-tune for real-valued labels")
        scores = entry.get("scores") or {}
        if not isinstance(scores, dict) or any(split not in _SPLITS for split in scores.values()):
            raise UsageError(f"{where}: scores maps row names to validation or test")
        tasks.append(Task(entry["name"], data, method, metric, dict(scores), dataset))
    return tasks


def _embedding_task(entry: dict, where: str, metric: str, data_dir: str | None) -> Task:
    if metric not in EMBEDDING_METRICS:
        raise UsageError(
            f"{where}: metric {metric!r} is not one hfssl scores embeddings by ({', '.join(EMBEDDING_METRICS)})"
        )
    given = dict(entry.get("data") or {})
    unknown = set(given) - {"train", "hub_config", "split"}
    if unknown:
        raise UsageError(f"{where}: data.{sorted(unknown)[0]}: an embedding task's data has train, hub_config, split")
    data = EmbeddingData(**given)
    if data.split not in _SPLITS:
        raise UsageError(f"{where}: data.split {data.split!r} is not validation or test")
    if data.train != "synthetic" and metric != "spearman":
        raise UsageError(
            f"{where}: retrieval (recall@k) is scored on hfssl's generated set only (data.train synthetic)"
        )
    if data_dir is not None and data.train != "synthetic":
        data.train = data_dir
    scores = entry.get("scores") or {}
    if scores:
        raise UsageError(f"{where}: an embedding task reports one row, its data.split; scores is for fine-tuning")
    return Task(
        entry["name"], data, "embedding", metric, {entry["name"]: data.split}, entry.get("dataset") or data.train
    )


def check_model_fits(cfg: EvaluateConfig, tasks: list[Task], suite: str) -> None:
    """A text export for text tasks, a speech encoder for audio ones."""
    from hfssl.downstream.loaders import load_model_config
    from hfssl.models.speech import is_speech_encoder

    check_local(cfg.model.name_or_path, "model.name_or_path", "pretrain or export a model there first")
    config = load_model_config(cfg.model)
    speech = is_speech_encoder(config)
    for task in tasks:
        if (task.data.task == "audio") != speech:
            kind = "a speech encoder" if speech else "a text model"
            raise UsageError(
                f"suite.name: {suite}'s task {task.name!r} is {task.data.task}, and {cfg.model.name_or_path} is {kind} "
                f"({config.model_type}); evaluate it on a {'speech' if speech else 'text'} suite"
            )


def run_suite(cfg: EvaluateConfig, data_overrides: dict | None = None) -> dict:
    """Every task x seed, then the table: results.json/.csv/.md in `suite.output_dir`, and the model's card."""
    suite = cfg.suite
    tasks = load_suite(suite.name, suite.data_dir, data_overrides)
    if suite.tasks:
        missing = [name for name in suite.tasks if name not in {t.name for t in tasks}]
        if missing:
            raise UsageError(
                f"suite.tasks: {missing[0]!r} is not a task of {suite.name} ({', '.join(t.name for t in tasks)})"
            )
        tasks = [t for t in tasks if t.name in suite.tasks]
    check_model_fits(cfg, tasks, suite.name)
    out = Path(suite.output_dir)
    check_output_dir(out, "suite.output_dir")  # before the suite runs, not after

    def seeds(task: Task) -> list[int]:
        # Scoring embeddings as they are involves no seed: once is enough (from scratch, the first seed's weights).
        return suite.seeds[:1] if task.method in EMBEDDING_METHODS else suite.seeds

    rows = report.sweep(tasks, seeds, partial(_run_task, cfg, _baseline_tasks(tasks) if suite.baseline else set()))
    summary = summarise(rows)
    average = statistics.fmean(entry["mean"] for entry in summary if entry["method"] not in baselines.TITLES)
    result = {
        "suite": suite.name,
        "model": cfg.model.name_or_path,
        "from_scratch": cfg.model.from_scratch,
        "seeds": suite.seeds,
        "rows": rows,
        "summary": summary,
        "average": average,
        "selection": "none: fine-tuning trains its epochs and is scored at its last step; the probe's L2 is fixed",
    }
    table = markdown_table(summary, average)
    write_json(out / "results.json", result)
    write_text(out / "results.csv", report.csv_text(rows, CSV_COLUMNS))
    write_text(out / "results.md", table + "\n")
    model_dir = Path(cfg.model.name_or_path)
    if suite.update_card and not cfg.model.from_scratch and (model_dir / "config.json").is_file():
        add_to_card(model_dir, suite.name, summary, average, tasks, cfg)
    return result


def _mteb_task(entry: dict, where: str, data_dir: str | None) -> Task:
    metric = entry.get("metric", "main_score")
    if metric != "main_score":
        raise UsageError(f"{where}: an mteb task reports its task's main score (metric main_score), not {metric!r}")
    given = dict(entry.get("data") or {})
    unknown = set(given) - {"train", "split"}
    if unknown or not isinstance(given.get("train"), str):
        raise UsageError(f"{where}: an mteb task's data is train (the MTEB task's name) and optionally split")
    data = EmbeddingData(train=given["train"], split=given.get("split", "test"), local=data_dir)
    return Task(entry["name"], data, "mteb", metric, {entry["name"]: data.split}, entry.get("dataset") or data.train)


def _baseline_tasks(tasks: list[Task]) -> set[str]:
    """The tasks that get the classic baseline's rows: those that fine-tune or probe a classification task, the first
    of any that share their data."""
    chosen, seen = set(), set()
    for task in tasks:
        if task.method in EMBEDDING_METHODS or task.data.regression or repr(task.data) in seen:
            continue
        seen.add(repr(task.data))
        chosen.add(task.name)
    return chosen


def _run_task(cfg: EvaluateConfig, with_baseline: set[str], task: Task, seed: int) -> list[dict]:
    try:
        rows = _task_rows(cfg, task, seed)
        return rows + (_baseline_rows(cfg, task, seed) if task.name in with_baseline else [])
    except UsageError as err:
        raise UsageError(f"task {task.name}: {err}") from None


def _task_rows(cfg: EvaluateConfig, task: Task, seed: int) -> list[dict]:
    if task.method in EMBEDDING_METHODS:
        by_split, has_test = {task.data.split: _embed(cfg, task, seed)}, True
    elif task.method == "probe":
        scores, has_test = _probe(cfg, task, seed)
        by_split = {("test" if has_test else "validation"): scores}
    else:
        by_split = _finetune(cfg, task, seed)
        has_test = "test" in by_split
    rows = []
    for row, split in task.rows(has_test).items():
        if split not in by_split:
            raise UsageError(f"scores: row {row} reports the {split} split, which the task's data does not have")
        rows.append(_row(task, row, task.method, split, seed, by_split[split]))
    return rows


def _row(task: Task, row: str, method: str, split: str, seed: int, scores: dict) -> dict:
    logger.info("%s, seed %d: %s %.4f", row, seed, task.metric, scores[task.metric])
    return {
        "task": task.name,
        "row": row,
        "method": method,
        "split": split,
        "seed": seed,
        "metric": task.metric,
        "value": scores[task.metric],
        **{name: scores[name] for name in (*METRIC_NAMES, *REGRESSION_METRIC_NAMES) if name in scores},
        **{name: scores[name] for name in (*EMBEDDING_METRICS, "main_score") if name in scores},
    }


def _baseline_rows(cfg: EvaluateConfig, task: Task, seed: int) -> list[dict]:
    """The classic pipeline fitted on the training split that `seed`'s run of the task trains on (the same subsample
    at a label fraction below 1), scored on each split the task's rows report."""
    from hfssl.downstream.loaders import load_processor

    splits = load_labelled(dataclasses.replace(task.data, few_label_validation="full"), seed=seed)
    rate = load_processor(dataclasses.replace(cfg, data=task.data)).sampling_rate if task.data.task == "audio" else None
    baseline = baselines.for_task(task.data, len(splits.label_names), rate, l2=cfg.probe.l2)
    reported = task.rows(splits.test is not None)
    by_split = {"validation": splits.validation, "test": splits.test}
    evaluated = [split for split in _SPLITS if split in reported.values()]
    scores = baseline.score(
        baseline.inputs(splits.train),
        torch.tensor(splits.train["label"]),
        [(baseline.inputs(by_split[split]), torch.tensor(by_split[split]["label"])) for split in evaluated],
        seed,
    )
    by_name = dict(zip(evaluated, scores, strict=True))
    return [
        _row(task, f"{row} ({baseline.title})", baseline.name, split, seed, by_name[split])
        for row, split in reported.items()
    ]


def _finetune(cfg: EvaluateConfig, task: Task, seed: int) -> dict[str, dict]:
    from hfssl.downstream.finetune import SCORED_AT_LAST_STEP, finetune

    with tempfile.TemporaryDirectory(prefix="hfssl-evaluate-") as scratch:
        run_cfg = FinetuneConfig(
            model=cfg.model,
            data=dataclasses.replace(task.data, few_label_validation="full"),
            finetune=cfg.finetune,
            training=dataclasses.replace(cfg.training, output_dir=str(Path(scratch) / "run"), seed=seed),
            export=ExportArgs(),
            hub=HubArgs(),
        )
        metrics = finetune(run_cfg, export=False, changes=SCORED_AT_LAST_STEP)
    return {split: metrics[split] for split in _SPLITS if split in metrics}


def _probe(cfg: EvaluateConfig, task: Task, seed: int) -> tuple[dict, bool]:
    from hfssl.downstream.loaders import load_backbone, load_processor
    from hfssl.downstream.probe import probe

    processor = load_processor(dataclasses.replace(cfg, data=task.data))
    splits = load_labelled(dataclasses.replace(task.data, few_label_validation="full"), seed=seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone = load_backbone(cfg.model, scratch=cfg.model.from_scratch, seed=seed).to(device)
    p = cfg.probe
    scores = probe(
        backbone, processor, splits, p.layer, p.l2, p.batch_size, task.data.max_length, device, seed=seed,
        max_seconds=task.data.max_seconds,
    )  # fmt: skip
    return scores, splits.test is not None


def _embed(cfg: EvaluateConfig, task: Task, seed: int) -> dict[str, float]:
    """The export's embeddings scored on the task's set."""
    from hfssl.downstream import embeddings
    from hfssl.downstream.loaders import load_backbone, load_processor

    embeddings.require_sentence_transformers(f"task {task.name}")
    d = task.data
    similarity = retrieval = None
    if task.method == "mteb":
        benchmark = _mteb_benchmark(task)
    elif task.metric == "spearman":
        similarity = (
            embedded_similarity()
            if d.train == "synthetic"
            else load_similarity(d.train, "data.train", d.hub_config, d.split)
        )
    else:
        retrieval = embedded_retrieval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = Path(cfg.model.name_or_path)
    if (path / "modules.json").is_file() and not cfg.model.from_scratch:
        model = embeddings.load(path, device=device)
    else:
        # Any other text model (or its random twin) as sentence-transformers wraps a plain one: mean pooling.
        with tempfile.TemporaryDirectory(prefix="hfssl-embed-") as folder:
            load_backbone(cfg.model, scratch=cfg.model.from_scratch, seed=seed).save_pretrained(folder)
            load_processor(cfg).save_pretrained(folder)
            model = embeddings.build(Path(folder), "mean", cfg.data.max_length, device=device)
    if task.method == "mteb":
        return {"main_score": _run_mteb(model, benchmark, task)}
    return embeddings.score(model, similarity, retrieval, batch_size=cfg.probe.batch_size)


def _mteb_benchmark(task: Task):
    """The MTEB task the suite's task names, reading its data from the local copy when the suite has one."""
    try:
        import mteb
    except ImportError:
        raise UsageError(
            f"task {task.name}: MTEB tasks are run by the mteb package, which is not installed; pip install "
            "'hfssl[mteb]'"
        ) from None
    try:
        benchmark = mteb.get_task(task.data.train)
    except (KeyError, ValueError) as err:
        raise UsageError(f"data.train: {task.data.train!r} is not an MTEB task ({first_line(err)})") from None
    if task.data.split not in benchmark.metadata.eval_splits:
        raise UsageError(
            f"data.split: MTEB's {task.data.train} is scored on {', '.join(benchmark.metadata.eval_splits)}, "
            f"not {task.data.split}"
        )
    if task.data.local is not None:
        repo = benchmark.metadata.dataset["path"]
        benchmark.metadata.dataset["path"] = str(Path(task.data.local) / repo.split("/")[-1])
    return benchmark


def _run_mteb(model, benchmark, task: Task) -> float:
    """The task's main score on its split (the mean over its subsets, e.g. languages), results cached nowhere."""
    import mteb

    try:
        result = mteb.evaluate(model, benchmark, cache=None, show_progress_bar=False)
    except Exception as err:  # offline, a missing or malformed copy: the user's to fix
        where = benchmark.metadata.dataset["path"]
        raise UsageError(f"data.train: MTEB's {task.data.train} could not run on {where} ({first_line(err)})") from err
    subsets = result.task_results[0].scores[task.data.split]
    return statistics.fmean(subset["main_score"] for subset in subsets)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per row name, in the order the rows first appear."""
    return report.summarise(rows, by=("row", "task", "method", "split", "metric"), scores={"value": ("mean", "std")})


def markdown_table(summary: list[dict], average: float) -> str:
    lines = [[e["row"], e["method"], e["metric"], e["split"], f"{e['mean']:.3f} ± {e['std']:.3f}"] for e in summary]
    lines.append(["**average**", "", "", "", f"**{average:.3f}**"])
    return report.markdown_table(["task", "method", "metric", "split", "score"], lines)


def add_to_card(model_dir: Path, suite: str, summary: list[dict], average: float, tasks: list[Task], cfg) -> None:
    """The table as a section of the model's card, and each row's mean as a model-index entry (replacing entries of
    the same dataset, configuration, split and metric)."""
    from huggingface_hub import EvalResult, ModelCard

    by_name = {t.name: t for t in tasks}
    card_path = model_dir / "README.md"
    card = ModelCard.load(card_path) if card_path.is_file() else ModelCard("---\n---\n")
    results = []
    for e in summary:
        if e["method"] in baselines.TITLES:  # the classic pipeline's scores, not this model's
            continue
        task = by_name[e["task"]]
        synthetic = task.data.train == "synthetic"
        kind = "audio" if task.data.task == "audio" else "text"
        if task.method == "mteb":
            generated, task_type = "", "feature-extraction"
        elif task.method == "embedding":
            generated = "similarity" if task.metric == "spearman" else "retrieval"
            task_type = "sentence-similarity" if task.metric == "spearman" else "text-retrieval"
        else:
            generated = task.data.synthetic_task if kind == "text" else "keywords"
            task_type = f"{kind}-classification"
        name = f"hfssl synthetic {generated}" if synthetic else task.dataset
        if task.method == "mteb":
            name = f"MTEB {task.data.train}"
        results.append(
            EvalResult(
                task_type=task_type,
                task_name=e["row"],
                dataset_type=f"hfssl/{name.removeprefix('hfssl synthetic ')}" if synthetic else task.dataset,
                dataset_name=name,
                dataset_config=task.data.hub_config,
                dataset_split=e["split"],
                metric_type=e["metric"],
                metric_value=round(e["mean"], 4),
                metric_name=f"{e['metric']} ({e['method']}, mean of {e['seeds']} seeds)",
            )
        )
    key = lambda r: (r.dataset_type, r.dataset_config, r.dataset_split, r.metric_type, r.task_name)  # noqa: E731
    kept = [r for r in card.data.eval_results or [] if key(r) not in {key(n) for n in results}]
    card.data.eval_results = kept + results
    card.data.model_name = card.data.model_name or model_dir.resolve().name
    t = cfg.training
    about = [
        f"Every task run on this checkpoint with one set of hyperparameters (learning rate {t.learning_rate:g}, "
        f"{t.num_train_epochs:g} epochs, batch size {t.per_device_train_batch_size}), each fine-tuning scored at "
        f"its last step with no checkpoint chosen on a reported split; mean ± standard deviation over "
        f"{len(cfg.suite.seeds)} seeds (written by `hfssl evaluate`)."
    ]
    titles = list(dict.fromkeys(baselines.TITLES[e["method"]] for e in summary if e["method"] in baselines.TITLES))
    if titles:
        about.append(
            f"Rows marked {' or '.join(titles)} are the classic pipeline a practitioner tries first, fitted on the "
            "same training data with each seed: pretraining pays off where the task's own row beats them. They are "
            "not in the average."
        )
    section = report.card_section(
        SECTION_START, SECTION_END, f"Evaluation: the {suite} suite", [*about, "", markdown_table(summary, average)]
    )
    put_card_section(card_path, card.content, SECTION_START, SECTION_END, section)
