"""`hfssl export`: a training checkpoint (or a run directory's latest) as a plain transformers model with its
preprocessor and model card, written by the run's objective exactly as the run's own final export is."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from hfssl import objectives
from hfssl.checkpoint import checkpoint_weights, find_checkpoint, load_weights, read_state, state_metrics
from hfssl.errors import UsageError


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Rebuild the run's objective from its saved config, load the checkpoint's weights and export them."""
    if Path(out_dir).resolve() in (Path(checkpoint).resolve(), *Path(checkpoint).resolve().parents):
        raise UsageError(f"{out_dir}: holds the checkpoint being exported, which an export must not replace; choose "
                         "another output directory")  # fmt: skip
    checkpoint = find_checkpoint(str(checkpoint), Path(checkpoint))
    run_dir = checkpoint.parent.parent
    for needed in ("config.yaml", "model_config"):
        if not (run_dir / needed).exists():
            raise UsageError(f"{checkpoint}: the run directory {run_dir} lacks {needed}; is this an hfssl checkpoint?")
    recipe = run_dir / "config.yaml"
    cfg = objectives.load_pretrain(recipe, saved=True)
    module = objectives.module(cfg)
    for needed in module.RUN_FILES:
        if not (run_dir / needed).exists():
            raise UsageError(f"{checkpoint}: the run directory {run_dir} lacks {needed}; is this an hfssl checkpoint?")
    objective = module.rebuild(cfg, AutoConfig.from_pretrained(run_dir / "model_config"))
    weights = checkpoint_weights(checkpoint)
    poisoned = [name for name, tensor in weights.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if poisoned:  # a run stops before saving such weights; a checkpoint from elsewhere may still hold them
        raise UsageError(
            f"{checkpoint}: {len(poisoned)} weights are not finite ({poisoned[0]}, ...); export an earlier checkpoint"
        )
    load_weights(objective, weights, str(checkpoint))
    metrics = state_metrics(read_state(checkpoint), module.UNIT)
    return module.export(cfg, objective, run_dir, Path(out_dir), metrics)
