"""Statistics of benchmark samples: one `Summary` per metric, as stored in result records.

A benchmark repeats a measurement and reports its distribution, not one number. The median is the headline
figure (robust to the odd slow iteration: a GC pause, a clock boost ending), with a bootstrap confidence
interval so that two runs can be told apart from noise (`Summary.overlaps`). Everything here is a pure function
of its input and, for the bootstrap, a seed, so the same samples always give the same record. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

Samples = Sequence[float] | np.ndarray

# Most index elements one bootstrap chunk may hold (8 MiB of int64): memory stays bounded for any n.
_CHUNK_ELEMENTS = 1 << 20

_FLOAT_FIELDS = ("median", "mean", "stdev", "cv", "min", "max", "p90", "p99", "ci_low", "ci_high")


@dataclass(frozen=True)
class Summary:
    """The distribution of one metric's samples, in `unit`."""

    unit: str
    n: int
    median: float
    mean: float
    stdev: float  # sample standard deviation (ddof=1); 0.0 when n == 1
    cv: float  # stdev / mean; 0.0 when mean == 0
    min: float
    max: float
    p90: float
    p99: float
    ci_low: float  # percentile-bootstrap confidence interval of the median
    ci_high: float

    def to_dict(self) -> dict:
        """Plain str/int/float values (never numpy scalars), ready for `json.dumps`."""
        values = {name: float(getattr(self, name)) for name in _FLOAT_FIELDS}
        return {"unit": str(self.unit), "n": int(self.n), **values}

    @classmethod
    def from_dict(cls, d: dict) -> Summary:
        """Inverse of `to_dict`; keys other than the fields are ignored, a missing field raises KeyError."""
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise KeyError(f"Summary dict lacks {', '.join(missing)}")
        return cls(unit=str(d["unit"]), n=int(d["n"]), **{name: float(d[name]) for name in _FLOAT_FIELDS})


def _as_samples(samples: Samples) -> np.ndarray:
    """Samples as a 1-D float64 array; empty or non-finite input is an error, since every statistic would lie."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"samples must be one-dimensional, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("no samples: cannot summarise an empty measurement")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"samples must be finite: {int(bad.sum())} of {x.size} are NaN or infinite")
    return x


def bootstrap_median_ci(
    samples: Samples, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median.

    Timing samples are skewed and far from normal, so a normal-theory interval would mislead; the bootstrap
    assumes nothing about the shape. Resample indices are drawn in chunks of rows so memory stays bounded for
    large n, from one seeded `numpy.random.Generator`, so a seed always gives the same interval.
    """
    x = _as_samples(samples)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n = x.size
    if n == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    medians = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        medians[start:stop] = np.median(x[rng.integers(0, n, size=(stop - start, n))], axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(medians, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def summarize(samples: Samples, unit: str, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Summary:
    """Summarise one metric's samples (raises ValueError for empty or non-finite input)."""
    x = _as_samples(samples)
    mean = float(np.mean(x))
    stdev = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    p90, p99 = np.percentile(x, [90, 99])
    ci_low, ci_high = bootstrap_median_ci(x, confidence=confidence, resamples=resamples, seed=seed)
    return Summary(
        unit=unit,
        n=int(x.size),
        median=float(np.median(x)),
        mean=mean,
        stdev=stdev,
        cv=stdev / mean if mean != 0 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
        p90=float(p90),
        p99=float(p99),
        ci_low=ci_low,
        ci_high=ci_high,
    )


def hierarchical_median_ci(
    groups: Sequence[Samples], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap CI of the median of samples that come in groups (one group per process run).

    Each resample draws the groups with replacement, then samples within each drawn group, so the interval
    carries the run-to-run spread (CPU frequency, memory layout, the neighbours of a VM) that samples from a
    single process cannot show.
    """
    arrays = [_as_samples(g) for g in groups]
    if len(arrays) < 2:
        return bootstrap_median_ci(arrays[0], confidence, resamples, seed)
    rng = np.random.default_rng(seed)
    medians = np.empty(resamples)
    for r in range(resamples):
        picked = rng.integers(0, len(arrays), len(arrays))
        medians[r] = np.median(np.concatenate([rng.choice(arrays[i], arrays[i].size) for i in picked]))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def summarize_groups(groups: Sequence[Samples], unit: str, confidence: float = 0.95, seed: int = 0) -> Summary:
    """`summarize` over the pooled samples, with the median's CI from `hierarchical_median_ci`."""
    pooled = summarize(np.concatenate([_as_samples(g) for g in groups]), unit, confidence, seed=seed)
    low, high = hierarchical_median_ci(groups, confidence, resamples=1000, seed=seed)
    return replace(pooled, ci_low=low, ci_high=high)


def bounded_samples(samples: Samples, limit: int = 1000) -> list[float]:
    """At most `limit` raw samples for a result file, as floats in their original order.

    Long runs would otherwise bloat records; evenly spaced picks (first and last always kept) preserve trends
    over the run such as warm-up or thermal throttling, which a random subset would blur.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size <= limit:
        return x.tolist()
    if limit < 2:
        raise ValueError(f"limit must be >= 2 to keep the first and last sample, got {limit}")
    # Integer arithmetic: exact ends, and distinct indices since the spacing (n-1)/(limit-1) exceeds 1.
    idx = np.arange(limit) * (x.size - 1) // (limit - 1)
    return x[idx].tolist()


def throughput_from_samples(samples_seconds: Samples, items: float, unit: str, **kw) -> Summary:
    """Rate summary (items per second) from per-iteration latencies in seconds.

    Each sample is inverted before summarising, because a latency Summary cannot be inverted: the mean and
    percentiles of 1/x are not 1/mean or 1/percentile of x. `kw` goes to `summarize` (confidence, resamples, seed).
    """
    x = _as_samples(samples_seconds)
    if not (np.isfinite(items) and items > 0):
        raise ValueError(f"items must be a positive finite number, got {items}")
    if (x <= 0).any():
        raise ValueError("latency samples must be > 0 seconds to be turned into a rate")
    return summarize(items / x, unit, **kw)


def _resampled_medians(groups: Sequence[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap medians: with one group, resample its samples; with several (one per process run), resample
    the groups, then the samples within each drawn group."""
    if len(groups) == 1:
        x = groups[0]
        rows = max(1, _CHUNK_ELEMENTS // x.size)
        out = np.empty(resamples)
        for start in range(0, resamples, rows):
            stop = min(start + rows, resamples)
            out[start:stop] = np.median(x[rng.integers(0, x.size, size=(stop - start, x.size))], axis=1)
        return out
    out = np.empty(resamples)
    for r in range(resamples):
        picked = rng.integers(0, len(groups), len(groups))
        out[r] = np.median(np.concatenate([rng.choice(groups[i], groups[i].size) for i in picked]))
    return out


def split_groups(samples: Samples, sizes: Sequence[int] | None) -> list[np.ndarray]:
    """Cut a pooled sample list back into its process groups (`sizes` as stored by a merged record)."""
    x = _as_samples(samples)
    if not sizes or len(sizes) < 2:
        return [x]
    if sum(sizes) != x.size or min(sizes) < 1:
        raise ValueError(f"group sizes {list(sizes)} do not partition {x.size} samples")
    return np.split(x, np.cumsum(sizes)[:-1])


def median_ratio_ci(
    baseline: Sequence[Samples],
    candidate: Sequence[Samples],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """median(candidate) / median(baseline) and a bootstrap confidence interval of that ratio.

    Each side is a list of sample groups (one per process run; one group for a single-process run). The two
    sides are resampled independently, so the interval carries the noise of both runs: a regression gate
    that flags only when the whole interval lies beyond its threshold does not cry wolf on noise.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    base = [_as_samples(g) for g in baseline]
    cand = [_as_samples(g) for g in candidate]
    if any((g <= 0).any() for g in base):
        raise ValueError("baseline samples must be > 0 to form a ratio")
    rng = np.random.default_rng(seed)
    ratios = _resampled_medians(cand, resamples, rng) / _resampled_medians(base, resamples, rng)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    point = float(np.median(np.concatenate(cand)) / np.median(np.concatenate(base)))
    return point, float(low), float(high)
