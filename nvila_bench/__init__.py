"""nvila-bench: benchmark and profiling suite around a reference implementation of NVILA."""

__version__ = "0.1.0"

import logging as _logging

# torchao (the quantized-weights library), once installed, is imported by transformers with every model
# class, and on a CPU-only machine logs that its CUDA kernels cannot load, and torch that it re-registers
# two of its enums: noise on every command's stderr. Errors still show.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
