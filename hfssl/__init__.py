"""hfssl: self-supervised pretraining of text and speech encoders on the Hugging Face stack.

The public names are in `__all__`: the commands as functions (`hfssl.api`: `pretrain`, `finetune`, `probe`,
`evaluate`, `label_efficiency`, `export`, `train_tokenizer`, `load_recipe`, ...) and the errors they raise. They are
imported on first use, so `import hfssl` loads neither torch nor transformers. The collators and pretraining heads
for a `transformers.Trainer` of your own are in `hfssl.collators` and `hfssl.heads`.

`hfssl.pretrain` and `hfssl.export` are the API's functions even though modules of the same names exist (the loop,
and the export of a checkpoint): the package keeps them bound to the functions when those modules are imported.
Import from the modules by name (``from hfssl.pretrain import setup``), never as ``from hfssl import pretrain``.
"""

import importlib
import sys
import types

from hfssl.errors import HfsslError, TrainingStopped, UsageError

__version__ = "0.1.0"

_API = (
    "Result",
    "dry_run",
    "evaluate",
    "export",
    "finetune",
    "label_efficiency",
    "load_recipe",
    "pretrain",
    "probe",
    "train_tokenizer",
)
_LAZY = {name: "hfssl.api" for name in _API} | {"push": "hfssl.hub"}

__all__ = ["HfsslError", "TrainingStopped", "UsageError", "__version__", *_LAZY]


class _Package(types.ModuleType):
    """The `hfssl` module object: importing the submodule `hfssl.pretrain` (or `hfssl.export`) would bind its name on
    the package to the module, hiding the API's function of that name; the binding is skipped."""

    def __setattr__(self, name, value):
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'hfssl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
