"""`hfssl` and `python -m hfssl`: subcommand -> function, in one dict."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from pathlib import Path

from hfssl import config as config_lib
from hfssl.config import (
    EvaluateConfig,
    FinetuneConfig,
    LabelEfficiencyConfig,
    ProbeConfig,
    TokenizerTrainConfig,
)
from hfssl.errors import PREEMPTED, Preempted, TrainingStopped, UsageError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and a suggestion for a mistyped option (never a silent prefix match)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        where = self.prog.removeprefix("hfssl").strip()
        print(f"hfssl: error: {where + ': ' if where else ''}{message}", file=sys.stderr)
        sys.exit(2)

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            options = [o for action in self._subparser_actions(parsed) for o in action.option_strings]
            close = difflib.get_close_matches(extra[0], options, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.error(f"unknown option {extra[0]}{hint}")
        return parsed

    def _subparser_actions(self, parsed):
        parser = self
        for dest in ("command", "tokenizer_command"):
            sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
            if sub is None or getattr(parsed, dest, None) not in sub.choices:
                break
            parser = sub.choices[getattr(parsed, dest)]
        return parser._actions


def add_schema_arguments(
    parser: argparse.ArgumentParser, schema: type, prefix: str = "", skip: tuple[str, ...] = ()
) -> None:
    """One `--section.field` option per schema field (sections in `skip` left out), with the field's help, type and
    default. An option the parser already has from another schema gets this schema's help appended, after
    `prefix`."""
    defaults = schema()
    taken = {o: action for action in parser._actions for o in action.option_strings}
    for name, section in config_lib.sections(schema).items():
        if name in skip:
            continue
        group = None
        for key, (tp, fld) in config_lib.section_fields(section).items():
            default = getattr(getattr(defaults, name), key)
            text = f"{fld.metadata['help']} [{config_lib.describe(tp)}; default: {default!r}]"
            option = f"--{name}.{key}"
            if option in taken:
                if taken[option].help != text:
                    taken[option].help += f" | {prefix.strip()}: {text}"
                continue
            group = group or parser.add_argument_group(f"{prefix}{name} ({section.__name__})")
            group.add_argument(option, dest=f"{name}.{key}", default=argparse.SUPPRESS, metavar="VALUE", help=text)
    for old in getattr(schema, "RENAMED", {}):  # still taken, read under the new name by the loader
        if f"--{old}" not in taken:
            parser.add_argument(f"--{old}", dest=old, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """Every objective's options: the shared text sections, the speech ones as 'speech ...' groups, and each
    objective's own settings, `--objective.name` first, each saying which objectives take it."""
    from hfssl.objectives import DEFAULT_SPEECH, DEFAULT_TEXT, OBJECTIVES, is_speech

    settings: dict[str, list[tuple[str, str]]] = {}  # key -> (objective, help) for each objective that takes it
    for name, module in OBJECTIVES.items():
        add_schema_arguments(parser, module.SCHEMA, prefix="speech " if is_speech(name) else "", skip=("objective",))
        section = config_lib.sections(module.SCHEMA)["objective"]
        defaults = section()
        for key, (tp, fld) in config_lib.section_fields(section).items():
            text = (
                fld.metadata["help"]
                if key == "name"
                else (f"{fld.metadata['help']} [{config_lib.describe(tp)}; default: {getattr(defaults, key)!r}]")
            )
            settings.setdefault(key, []).append((name, text))
    group = parser.add_argument_group("objective (each objective's own settings, with the objectives that take it)")
    for key, takers in settings.items():
        if key == "name":
            text = "; ".join(h for _, h in takers) + (
                f" [one of {', '.join(OBJECTIVES)}; default: {DEFAULT_TEXT}, {DEFAULT_SPEECH} for a speech model.arch]"
            )
        else:
            texts = dict.fromkeys(h for _, h in takers)
            text = " | ".join(texts) + f" (objective.name {', '.join(n for n, _ in takers)})"
        group.add_argument(
            f"--objective.{key}", dest=f"objective.{key}", default=argparse.SUPPRESS, metavar="VALUE", help=text
        )


def overrides(args: argparse.Namespace, schema: type) -> dict[str, str]:
    keys = {f"{n}.{k}" for n, s in config_lib.sections(schema).items() for k in config_lib.section_fields(s)}
    keys |= set(getattr(schema, "RENAMED", {}))
    return {k: v for k, v in vars(args).items() if k in keys}


def settings_given(args: argparse.Namespace) -> dict[str, str]:
    """The `--section.key` options given on the command line (a pretraining recipe's schema follows its objective,
    which checks them)."""
    return {k: v for k, v in vars(args).items() if "." in k}


def pretrain_command(args: argparse.Namespace) -> None:
    from hfssl.objectives import load_pretrain

    cfg = load_pretrain(args.recipe, settings_given(args))
    if args.dry_run and args.resume:
        raise UsageError("--dry-run estimates a run from its start; leave out --resume")
    from hfssl.hub import check_can_push, push_final
    from hfssl.pretrain import pretrain

    if args.dry_run:
        from hfssl.dry_run import dry_run, format_report

        result = dry_run(cfg)
        if first_process():
            print(f"dry run of {args.recipe}:\n{format_report(result)}")
        return
    check_can_push(cfg.hub)
    metrics = pretrain(cfg, resume=args.resume)
    if not first_process():
        return
    scores = ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in metrics.items() if k.startswith("eval_"))
    final = Path(cfg.train.output_dir) / "final"
    print(f"eval {scores} after {metrics['steps']} steps; model in {final}")
    report_push(cfg.hub, push_final(cfg.hub, final))


def first_process() -> bool:
    """False in every process but the first of a torchrun or accelerate launch, which speaks for the run."""
    return int(os.environ.get("RANK", "0")) == 0


def hubert_targets_command(args: argparse.Namespace) -> None:
    from hfssl.hubert_targets import run_hubert_targets
    from hfssl.objectives import load_pretrain
    from hfssl.objectives.hubert import HubertConfig

    cfg = load_pretrain(args.recipe, settings_given(args))
    if not isinstance(cfg, HubertConfig):
        raise UsageError(
            f"objective.name: {cfg.objective.name} trains on no cluster targets; hfssl hubert-targets is for "
            "objective.name hubert"
        )

    print(run_hubert_targets(cfg, overwrite=args.overwrite))


def tokenizer_train_command(args: argparse.Namespace) -> None:
    cfg = config_lib.load(TokenizerTrainConfig, args.recipe, overrides(args, TokenizerTrainConfig))
    from hfssl.data.text import load_corpus
    from hfssl.io import atomic_dir, check_replaceable
    from hfssl.tokenizer import train_on_corpus

    check_replaceable(Path(args.out), args.overwrite)
    corpus, _ = load_corpus(cfg.data)
    tokenizer = train_on_corpus(corpus, cfg.tokenizer, model_max_length=cfg.data.seq_len)
    with atomic_dir(Path(args.out)) as tmp:
        tokenizer.save_pretrained(tmp)
    print(f"{cfg.tokenizer.kind} tokenizer with {len(tokenizer):,} tokens saved to {args.out}")


def export_command(args: argparse.Namespace) -> None:
    from hfssl.export import export_checkpoint
    from hfssl.io import check_replaceable

    check_replaceable(Path(args.out), args.overwrite)
    out = export_checkpoint(args.checkpoint, args.out)
    print(f"exported {args.checkpoint} to {out}")


def finetune_command(args: argparse.Namespace) -> None:
    cfg = config_lib.load(FinetuneConfig, args.recipe, overrides(args, FinetuneConfig))
    from hfssl.downstream.finetune import finetune, summary
    from hfssl.hub import check_can_push, push_final

    if cfg.hub.push_checkpoints:
        raise UsageError(
            "hub.push_checkpoints: pretraining only; for fine-tuning checkpoints use the Trainer's own "
            "(--training.push_to_hub true --training.hub_strategy all_checkpoints)"
        )
    check_can_push(cfg.hub)
    metrics = finetune(cfg, overwrite=args.overwrite)
    final = Path(cfg.training.output_dir) / "final"
    print(f"{summary(metrics)}; model in {final}")
    report_push(cfg.hub, push_final(cfg.hub, final))


def report_push(hub, url: str | None) -> None:
    """The line a run that pushed its export ends with (`hub.push_to_hub`)."""
    if url is not None:
        print(f"pushed to {hub.repo_id}: {url}")


def probe_command(args: argparse.Namespace) -> None:
    cfg = config_lib.load(ProbeConfig, args.recipe, overrides(args, ProbeConfig))
    from hfssl.downstream.probe import probe_model

    result = probe_model(cfg, overwrite=args.overwrite)
    scratch = ", a randomly initialised encoder" if cfg.model.from_scratch else ""
    print(
        f"probe accuracy {result['accuracy']:.4f}, macro F1 {result['f1']:.4f} (layer {result['layer']}{scratch}); "
        f"{cfg.probe.output}"
    )


def label_efficiency_command(args: argparse.Namespace) -> None:
    cfg = config_lib.load(LabelEfficiencyConfig, args.recipe, overrides(args, LabelEfficiencyConfig))
    from hfssl.downstream.label_efficiency import label_efficiency

    result = label_efficiency(cfg)
    for entry in result["summary"]:
        print(
            f"{entry['model']:>10}  {entry['labels']:>6} labels  accuracy {entry['accuracy']:.4f} "
            f"± {entry['accuracy_std']:.4f}"
        )
    print(f"table, plot and card section in {cfg.sweep.output_dir}")


def evaluate_command(args: argparse.Namespace) -> None:
    given = overrides(args, EvaluateConfig)
    cfg = config_lib.load(EvaluateConfig, args.recipe, given)
    from hfssl.downstream.suites import run_suite

    # the data settings the recipe or the command line gives apply to every task, over the task's own
    recipe = config_lib.read_recipe(args.recipe) if args.recipe is not None else {}
    keys = set(recipe.get("data") or {}) | {k.removeprefix("data.") for k in given if k.startswith("data.")}
    result = run_suite(cfg, {key: getattr(cfg.data, key) for key in keys})
    for entry in result["summary"]:
        print(f"{entry['row']:>14}  {entry['metric']} {entry['mean']:.4f} ± {entry['std']:.4f}")
    print(f"{'average':>14}  {result['average']:.4f}; table in {cfg.suite.output_dir}")


def push_command(args: argparse.Namespace) -> None:
    from hfssl.hub import push

    url = push(
        args.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        include_training_state=args.include_training_state,
    )
    print(f"pushed {args.folder} to {args.repo_id}: {url}")


COMMANDS = {
    "pretrain": pretrain_command,
    "hubert-targets": hubert_targets_command,
    "tokenizer train": tokenizer_train_command,
    "finetune": finetune_command,
    "probe": probe_command,
    "label-efficiency": label_efficiency_command,
    "evaluate": evaluate_command,
    "export": export_command,
    "push": push_command,
}


def command(args: argparse.Namespace) -> str:
    """The `COMMANDS` key of the parsed command line: the subcommand, and the tokenizer's action after it."""
    return " ".join(part for part in (args.command, getattr(args, "tokenizer_command", None)) if part)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. With `command` (the subcommand being run), only its settings are added: the pretraining
    schemas import every objective module, which the other commands need not load."""

    def wanted(name: str) -> bool:
        return command is None or command == name

    parser = Parser(prog="hfssl", description="Self-supervised pretraining on the Hugging Face stack.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "pretrain",
        help="pretrain a text or speech model from a recipe",
        description="Pretrain a text model (masked LM, replaced-token detection, next-word prediction, contrastive "
        "sentence embeddings) or a speech encoder (wav2vec 2.0, HuBERT, BEST-RQ, reconstruction, data2vec); the "
        "recipe's objective.name selects the objective, or else a speech model.arch selects speech. Speech-only "
        "settings are listed as 'speech ...' groups, and each objective's own in the 'objective' group. On SIGTERM or "
        f"SIGUSR1 (preemption) a run finishes its step, saves a checkpoint and exits {PREEMPTED}; --resume continues "
        "it exactly (docs/faults.md).",
    )
    p.add_argument("recipe", help="YAML recipe (a path, or a shipped recipe name such as text/mlm-tiny)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="DIR",
        help="continue from the latest complete checkpoint in DIR (default: the recipe's output directory, which must "
        "hold one); 'auto': the output directory's latest if it holds one, else start, so that torchrun "
        "--max-restarts and a requeued job continue the run with the same command",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="report the data size, steps, time per step (a few timed steps), total time and disk footprint, "
        "writing nothing to the output directory",
    )
    if wanted("pretrain"):
        add_pretrain_arguments(p)

    p = commands.add_parser(
        "hubert-targets",
        help="cluster speech features into HuBERT targets for a speech recipe",
        description="Fit k-means on MFCCs (iteration 1) or on a layer of the previous model (targets.features "
        "hidden), label every frame of the recipe's training and validation clips, and save the labels in "
        "targets.dir (default: <train.output_dir>/targets), where `hfssl pretrain` finds them.",
    )
    p.add_argument("recipe", help="YAML speech recipe (a path, or a shipped recipe name)")
    p.add_argument("--overwrite", action="store_true", help="rebuild the targets when the directory exists")
    if wanted("hubert-targets"):
        from hfssl.objectives.hubert import HubertConfig

        add_schema_arguments(p, HubertConfig)

    p = commands.add_parser("tokenizer", help="tokenizer tools")
    tok_commands = p.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    t = tok_commands.add_parser("train", help="train a WordPiece, byte-level BPE or Unigram tokenizer on a corpus")
    t.add_argument("recipe", nargs="?", default=None, help="optional YAML recipe with data: and tokenizer: sections")
    t.add_argument("--out", required=True, help="directory to save the tokenizer to")
    t.add_argument("--overwrite", action="store_true", help="replace --out when it already holds files")
    if wanted("tokenizer"):
        add_schema_arguments(t, TokenizerTrainConfig)

    for name, schema, text in (
        ("finetune", FinetuneConfig, "fine-tune a classifier with the Trainer API"),
        ("probe", ProbeConfig, "score frozen features with a linear probe"),
        (
            "label-efficiency",
            LabelEfficiencyConfig,
            "pretrained vs from scratch at several label fractions: table, plot, model-card section",
        ),
        (
            "evaluate",
            EvaluateConfig,
            "run a suite of tasks (embedded, keywords, glue, or your own) on one export: table, card entries",
        ),
    ):
        p = commands.add_parser(name, help=text)
        p.add_argument("recipe", nargs="?", default=None, help="YAML recipe (a path or a shipped recipe name)")
        if name in ("finetune", "probe"):
            p.add_argument("--overwrite", action="store_true", help="replace an earlier run's output")
        if wanted(name):
            add_schema_arguments(p, schema)

    p = commands.add_parser("export", help="export a training checkpoint as a from_pretrained-loadable model")
    p.add_argument("checkpoint", help="a checkpoint directory (checkpoints/step-N) or a run directory (its latest)")
    p.add_argument("out", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace the output directory when it already holds files")
    p = commands.add_parser("push", help="upload an exported model to the Hugging Face Hub")
    p.add_argument("folder", help="an exported model directory (a run's final/, or `hfssl export` output)")
    p.add_argument("--repo-id", required=True, help="Hub repository, owner/name or name")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", default=None, help="branch to commit to (created if missing; default: main)")
    p.add_argument("--commit-message", default=None, help="commit summary")
    p.add_argument(
        "--include-training-state", action="store_true", help="upload checkpoints and optimizer state as well"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    running = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(running).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if first_process() else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Accelerate reports every file it writes at INFO; hfssl's own lines say what matters.
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    for name in ("httpx", "httpx2", "httpcore"):  # one INFO line per HTTP request
        logging.getLogger(name).setLevel(logging.WARNING)
    # datasets' per-split bars would interleave with (and, on bad input, precede) hfssl's one-line messages; hfssl
    # logs what it loaded instead.
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    try:
        COMMANDS[command(args)](args)
    except UsageError as err:
        print(f"hfssl: error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrainingStopped as err:
        print(f"hfssl: stopped: {err}", file=sys.stderr)
        sys.exit(1)
    except Preempted as err:
        print(f"hfssl: preempted: {err}", file=sys.stderr)
        sys.exit(PREEMPTED)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
