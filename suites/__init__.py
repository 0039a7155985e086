"""Benchmark suites (prefill, decode, train, finetune, accuracy): each measures and writes result records,
never renders. Installed as `nvila_bench.suites`."""
