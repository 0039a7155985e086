"""nvila-bench: benchmark and profiling suite around a reference implementation of NVILA."""

__version__ = "0.1.0"
