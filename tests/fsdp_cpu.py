"""`python -m hfssl` with FSDP across CPU processes (gloo), for the tests: accelerate turns FSDP on only where it finds
GPUs, so this turns it on after the Accelerator is made, from the FSDP_* variables that
`accelerate launch --config_file recipes/accelerate/fsdp.yml` exports. Everything else is hfssl's own code path."""

import importlib
import sys

from accelerate import FullyShardedDataParallelPlugin
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

from hfssl.__main__ import main

loop = importlib.import_module("hfssl.pretrain")  # the module: `hfssl.pretrain` is the API's function
_make_accelerator = loop.make_accelerator


def make_accelerator(*args, **kwargs):
    accelerator = _make_accelerator(*args, **kwargs)
    state = AcceleratorState()
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = FullyShardedDataParallelPlugin()
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # AcceleratorState() copies it back
    return accelerator


loop.make_accelerator = make_accelerator
if __name__ == "__main__":
    main(sys.argv[1:])
