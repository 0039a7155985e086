"""nvila_bench.core.measuring.stats against independently computed values (statistics module, hand arithmetic)."""

import json
import math
import statistics

import numpy as np
import pytest

from nvila_bench.core.measuring import stats
from nvila_bench.core.measuring.stats import (
    Summary,
    bootstrap_median_ci,
    bounded_samples,
    summarize,
    throughput_from_samples,
)

ONE_TO_TEN = [float(v) for v in range(1, 11)]


def _summary(ci_low: float, ci_high: float, unit: str = "s") -> Summary:
    return Summary(unit, 5, 2.0, 2.0, 0.5, 0.25, 1.0, 3.0, 2.8, 2.98, ci_low, ci_high)


def test_summarize_exact_values():
    s = summarize(ONE_TO_TEN, "s")
    assert s.unit == "s" and s.n == 10
    assert s.median == 5.5
    assert s.mean == 5.5
    assert s.stdev == pytest.approx(statistics.stdev(ONE_TO_TEN))
    assert s.stdev == pytest.approx(math.sqrt(82.5 / 9))  # sum of squared deviations 82.5, ddof=1
    assert s.cv == pytest.approx(statistics.stdev(ONE_TO_TEN) / 5.5)
    assert (s.min, s.max) == (1.0, 10.0)
    # Linear interpolation: position 0.9 * 9 = 8.1 -> 9 + 0.1 * (10 - 9); 0.99 * 9 = 8.91 -> 9.91.
    assert s.p90 == pytest.approx(9.1)
    assert s.p99 == pytest.approx(9.91)
    assert s.p90 == pytest.approx(statistics.quantiles(ONE_TO_TEN, n=10, method="inclusive")[8])
    assert s.p99 == pytest.approx(statistics.quantiles(ONE_TO_TEN, n=100, method="inclusive")[98])


def test_summarize_unsorted_input_and_odd_n():
    s = summarize([3.0, 1.0, 7.0, 2.0, 5.0], "ms")
    assert s.median == 3.0
    assert s.mean == pytest.approx(3.6)
    assert (s.min, s.max) == (1.0, 7.0)


def test_single_sample():
    s = summarize([4.0], "s")
    assert (s.n, s.median, s.mean, s.stdev, s.cv) == (1, 4.0, 4.0, 0.0, 0.0)
    assert (s.ci_low, s.ci_high) == (4.0, 4.0)
    assert bootstrap_median_ci([4.0]) == (4.0, 4.0)


def test_cv_zero_when_mean_zero():
    s = summarize([-1.0, 1.0], "s")
    assert s.mean == 0.0 and s.cv == 0.0 and s.stdev > 0


@pytest.mark.parametrize("data", [ONE_TO_TEN, [5.0, 1.0, 9.0, 2.0, 2.5, 30.0, 4.0], [2.0, 2.0, 2.0]])
def test_ci_contains_median_within_range(data):
    s = summarize(data, "s")
    assert s.min <= s.ci_low <= s.median <= s.ci_high <= s.max


def test_ci_narrows_with_n():
    rng = np.random.default_rng(42)
    widths = []
    for n in (20, 200, 2000):
        low, high = bootstrap_median_ci(rng.normal(10, 1, n), seed=1)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0


def test_ci_of_normal_sample_contains_true_median():
    s = summarize(np.random.default_rng(1).normal(10, 1, 1000), "s")  # this draw's median is 0.8 SE below 10
    assert s.ci_low < 10 < s.ci_high
    # Standard error of the median ~ 1.2533 / sqrt(1000) ~ 0.04: a 95% CI is about 0.16 wide.
    assert 0.05 < s.ci_high - s.ci_low < 0.4


def test_ci_coverage_near_nominal():
    # One fixed draw proves little (a 95% CI misses 1 time in 20), so count hits over many data sets.
    rng = np.random.default_rng(11)
    cis = [bootstrap_median_ci(rng.normal(10, 1, 100), resamples=400, seed=i) for i in range(200)]
    hits = [low <= 10 <= high for low, high in cis]
    assert 0.88 <= np.mean(hits) <= 0.99


def test_higher_confidence_is_wider():
    data = np.random.default_rng(3).exponential(1.0, 300)
    low90, high90 = bootstrap_median_ci(data, confidence=0.90)
    low99, high99 = bootstrap_median_ci(data, confidence=0.99)
    assert low99 <= low90 and high99 >= high90 and (high99 - low99) > (high90 - low90)


def test_bootstrap_deterministic_per_seed():
    data = np.random.default_rng(0).lognormal(0, 0.5, 100)
    assert bootstrap_median_ci(data, seed=5) == bootstrap_median_ci(data, seed=5)
    # CI ends are order statistics (or means of two), so two seeds may agree by chance; ten should not all.
    assert len({bootstrap_median_ci(data, seed=seed) for seed in range(10)}) > 1
    assert summarize(data, "s", seed=5) == summarize(data, "s", seed=5)


def test_bootstrap_chunking_does_not_change_result(monkeypatch):
    data = np.random.default_rng(1).normal(0, 1, 50)
    whole = bootstrap_median_ci(data, resamples=500, seed=3)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 7 * 50 + 13)  # 7 rows per chunk, last chunk partial
    assert bootstrap_median_ci(data, resamples=500, seed=3) == whole


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": 0.0}, {"resamples": 0}])
def test_bootstrap_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        bootstrap_median_ci(ONE_TO_TEN, **kwargs)


@pytest.mark.parametrize(
    "bad, message",
    [([], "empty"), ([1.0, float("nan")], "finite"), ([1.0, float("inf")], "finite"), ([[1.0, 2.0]], "one-dim")],
)
def test_bad_input_raises(bad, message):
    with pytest.raises(ValueError, match=message):
        summarize(bad, "s")


def test_bounded_samples_short_input_kept_as_floats():
    out = bounded_samples([3, 1, 2], limit=5)
    assert out == [3.0, 1.0, 2.0] and all(type(v) is float for v in out)
    assert bounded_samples(list(range(5)), limit=5) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_bounded_samples_long_input():
    data = [float(v) for v in range(10_000)]
    out = bounded_samples(data, limit=1000)
    assert len(out) == 1000
    assert out[0] == 0.0 and out[-1] == 9999.0
    assert out == sorted(set(out))  # original order, no index picked twice
    gaps = np.diff(out)
    assert gaps.min() >= 10 and gaps.max() <= 11  # evenly spaced: 9999 / 999 ~ 10.01
    assert all(type(v) is float for v in out)


def test_bounded_samples_limit_close_to_length():
    out = bounded_samples(list(range(11)), limit=10)
    assert len(out) == 10 and len(set(out)) == 10 and out[0] == 0 and out[-1] == 10
    with pytest.raises(ValueError):
        bounded_samples([1.0, 2.0, 3.0], limit=1)


def test_dict_round_trip_is_json_plain():
    s = summarize(np.array([0.5, 0.7, 0.6, 0.9]), "s")
    d = s.to_dict()
    assert type(d["n"]) is int and all(type(d[k]) is float for k in d if k not in ("unit", "n"))
    assert Summary.from_dict(json.loads(json.dumps(d))) == s
    with pytest.raises(KeyError, match="median"):
        Summary.from_dict({k: v for k, v in d.items() if k != "median"})


def test_throughput_from_samples():
    s = throughput_from_samples([0.5, 0.25], items=10, unit="tokens/s")
    assert s.unit == "tokens/s" and s.n == 2
    assert s.median == 30.0  # median of [20, 40], not 10 / median latency (26.67)
    assert (s.min, s.max) == (20.0, 40.0)
    assert s.mean == 30.0


def test_throughput_passes_options_and_rejects_bad_latencies():
    data = [0.1, 0.2, 0.15, 0.12, 0.3]
    assert throughput_from_samples(data, 4, "img/s", seed=9) == summarize([4 / v for v in data], "img/s", seed=9)
    with pytest.raises(ValueError, match="> 0"):
        throughput_from_samples([0.5, 0.0], 10, "tokens/s")
    with pytest.raises(ValueError, match="items"):
        throughput_from_samples([0.5], 0, "tokens/s")


def test_hierarchical_ci_carries_run_to_run_spread():
    from nvila_bench.core.measuring.stats import hierarchical_median_ci, summarize_groups

    rng = np.random.default_rng(1)
    runs = [rng.normal(loc, 0.01, 300) for loc in (1.0, 1.05, 0.95, 1.02)]  # tight runs, drifting means
    flat_low, flat_high = bootstrap_median_ci(np.concatenate(runs))
    low, high = hierarchical_median_ci(runs)
    assert high - low > 5 * (flat_high - flat_low)
    assert low < 0.96 and high > 1.03
    summary = summarize_groups(runs, "s")
    assert summary.n == 1200
    assert (summary.ci_low, summary.ci_high) == hierarchical_median_ci(runs, resamples=1000)
    assert hierarchical_median_ci([runs[0]]) == bootstrap_median_ci(runs[0])
