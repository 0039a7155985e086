"""Timing harness: warm-up and repeat rules, per-stage samples."""

import time

import pytest
import torch

from nvila_bench.core.measuring.timing import MeasureConfig, OneTimeClock, measure


def test_repeats_and_stage_samples():
    calls = []

    def iteration(clock):
        calls.append(1)
        time.sleep(0.001)
        clock.lap("a")
        clock.lap("b")

    samples = measure(iteration, torch.device("cpu"), MeasureConfig(warmup=3, repeats=7, min_seconds=0))
    assert len(calls) == 10
    assert len(samples["a"]) == len(samples["b"]) == len(samples["total"]) == 7
    assert all(a >= 0.001 for a in samples["a"])
    for a, b, total in zip(samples["a"], samples["b"], samples["total"]):
        assert total == pytest.approx(a + b)


def test_min_seconds_extends_repeats_and_max_repeats_caps_them():
    def iteration(clock):
        time.sleep(0.01)
        clock.lap("x")

    samples = measure(iteration, torch.device("cpu"), MeasureConfig(warmup=0, repeats=1, min_seconds=0.1))
    assert 8 <= len(samples["x"]) <= 20
    capped = measure(iteration, torch.device("cpu"), MeasureConfig(warmup=0, repeats=1, min_seconds=10, max_repeats=3))
    assert len(capped["x"]) == 3


def test_repeated_laps_give_one_sample_each():
    def iteration(clock):
        clock.lap("prefill")
        for _ in range(4):
            clock.lap("decode_step")

    samples = measure(iteration, torch.device("cpu"), MeasureConfig(warmup=0, repeats=2, min_seconds=0))
    assert len(samples["decode_step"]) == 8 and len(samples["prefill"]) == 2


def test_warmup_seconds_is_honoured():
    started = time.perf_counter()
    measure(
        lambda clock: clock.lap("x"),
        torch.device("cpu"),
        MeasureConfig(warmup=0, warmup_seconds=0.05, repeats=1, min_seconds=0),
    )
    assert time.perf_counter() - started >= 0.05


@pytest.mark.parametrize("kw", [{"repeats": 0}, {"warmup": -1}, {"repeats": 5, "max_repeats": 2}, {"min_seconds": -1}])
def test_bad_config(kw):
    with pytest.raises(ValueError):
        MeasureConfig(**kw)


def test_one_time_sections_nest_and_add_up():
    """An engine's setup (compile + capture) with its graph captures inside: each name sums its own time."""
    clock = OneTimeClock(torch.device("cpu"))
    with clock.section("setup"):
        for _ in range(2):
            with clock.section("graph_capture"):
                time.sleep(0.01)
    assert clock.seconds["graph_capture"] >= 0.02 and clock.seconds["setup"] >= clock.seconds["graph_capture"]
    with pytest.raises(RuntimeError), clock.section("failed"):
        raise RuntimeError("a capture that failed")
    assert "failed" not in clock.seconds  # a setup that failed has no time
