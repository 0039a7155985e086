"""The regression gate: compare a candidate run with a baseline, point by point, from raw samples.

Two points match when they ran the same suite with the same settings (the number of processes aside) on
the same hardware. Which metrics are gated is the caller's: the names asked for (`--metrics`), else each suite's
declared gated metrics (`SuiteOutputs.gated`, which the CLI reads from the suite registry). For each gated metric
the change is the ratio of medians, candidate / baseline, with a
bootstrap 95% confidence interval drawn from both runs' per-iteration samples (and over processes when a
run used `--processes`). A point regresses only when the whole interval lies beyond the threshold:

    better = "lower" (timings, bytes):        CI low  > 1 + threshold
    better = "higher" (rates, MFU, scores):   CI high < 1 - threshold

and improves when the whole interval lies beyond the threshold on the other side. The direction is the
metric's own (`Metric.better`, written by the suite, inferred by name and unit for version-1 files), never
guessed from the unit here; a metric with no direction (a count, a setting) is not gated. A change smaller
than the threshold, or one the noise cannot tell from zero, passes (its note says which way it leaned when
the interval excludes no change). A candidate point that failed (oom / error) where the baseline was ok is a
regression too. Metrics without samples (peak memory, MFU) are compared by value against the same threshold.

A stage that runs on the host CPU (`preprocess`: PIL resize, tiling, normalisation) is timed on the host even
in a GPU run, so the host's noise, not the GPU's, decides its comparison; the summary warns when one is compared
on a GPU run (HOST_STAGES), and when a compared total (TTFT) is at least HOST_SHARE host time.

Several runs of one point on a side (a folder of nightly runs, or interleaved repeats) are pooled as process
groups: the CI then carries run-to-run noise, which on a shared runner is larger than within-run noise (a
2-vCPU cloud VM drifted by up to 30% between consecutive runs of the same point).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from nvila_bench.core.measuring.results import Metric, Record, hardware_of, point_id
from nvila_bench.core.measuring.stats import median_ratio_ci, split_groups
from nvila_bench.model.stages import PREPROCESS

HOST_STAGES = (PREPROCESS,)  # stage metrics timed on the host CPU whatever the device
HOST_TOTALS = {"ttft": PREPROCESS}  # totals that include a host stage
HOST_SHARE = 0.25  # a total this much host time (median share, either side) is warned about too
ENV_FIELDS = ("torch", "cuda", "transformers", "attn_implementation", "nvila_bench")


class IncomparableError(ValueError):
    """The two runs cannot be compared at all (exit code 2)."""


@dataclass(frozen=True)
class Comparison:
    """One metric of one matched point."""

    label: str  # e.g. "prefill nvila-tiny 1920x1080 b1 float32"
    metric: str
    unit: str
    baseline: float | None
    candidate: float | None
    ratio: float | None  # candidate / baseline
    ci: tuple[float, float] | None  # of the ratio; None when compared by value
    verdict: str  # "regression" | "improvement" | "pass" | "failed"
    note: str = ""

    @property
    def change_text(self) -> str:
        if self.ratio is None:
            return "—"
        text = f"{(self.ratio - 1) * 100:+.1f}%"
        if self.ci is not None:
            text += f" [{(self.ci[0] - 1) * 100:+.1f}%, {(self.ci[1] - 1) * 100:+.1f}%]"
        return text


@dataclass
class GateResult:
    threshold: float
    comparisons: list[Comparison]
    unmatched_baseline: int
    unmatched_candidate: int
    hardware: str
    environment_changes: list[str] = field(default_factory=list)
    single_process: bool = False  # every point on both sides is one process run: run-to-run noise not in the CIs
    not_gated: list[str] = field(default_factory=list)  # metrics asked for by name that state no better direction
    # Compared metrics of GPU (non-CPU) points timed on the host CPU: metric -> None for a host stage itself,
    # or the largest share of a total (TTFT) that its host stage took.
    host_stages: dict[str, float | None] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """Caveats on how far the verdicts can be trusted, one line each."""
        out = []
        for name, share in sorted(self.host_stages.items()):
            if share is None:
                out.append(f"warning: {name} runs on the host CPU; its noise (not the GPU's) decides this comparison")
            else:
                out.append(
                    f"warning: {name} includes {HOST_TOTALS[name]} (up to {share:.0%} of it), which runs on the "
                    f"host CPU; its noise (not the GPU's) can decide this comparison"
                )
        return out

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict in ("regression", "failed")]

    @property
    def passed(self) -> bool:
        return not self.regressions


def direction(runs: list[Metric]) -> str | None:
    """Which way one metric improves, as its records state it: "lower", "higher", or None when no record
    states a direction or the records disagree (then it is not gated)."""
    stated = {m.better for m in runs} - {None}
    return stated.pop() if len(stated) == 1 else None


def match_key(record: Record) -> str:
    """Identity of a point across runs: suite and settings, minus how many processes measured it."""
    config = {k: v for k, v in record.config.items() if k != "processes"}
    return point_id(record.suite, config)


def _portable_key(record: Record) -> str:
    """The match key without the device: equal keys on different devices mean different hardware."""
    config = {k: v for k, v in record.config.items() if k not in ("processes", "device")}
    return point_id(record.suite, config)


def settings_label(record: Record) -> str:
    """A point in words: suite, preset, media, batch, dtype, then its suite's own settings (the record's `extra`).
    The gate's default label; the CLI passes the report's, which knows each suite's telling settings."""
    c = record.config
    media = list(c.get("images") or []) + ([f"{c['video_frames']}f"] if c.get("video_frames") else [])
    own = [
        PurePath(v).name if k == "image_file" else v
        for k, v in record.extra.items()
        if isinstance(v, (str, int)) and not isinstance(v, bool)
    ]
    parts = [record.suite, record.preset, "+".join(media), f"b{c.get('batch_size', 1)}", c.get("dtype"), *own]
    return " ".join(str(p) for p in parts if p is not None and p != "")


def sample_groups(metrics: list[Metric]) -> list:
    """Every process group of one metric over one or more runs of a point (each run adds its own groups)."""
    return [g for m in metrics for g in split_groups(m.samples, m.groups)]


def compare_metric(
    label: str, name: str, base: Metric | list[Metric], cand: Metric | list[Metric], threshold: float, seed: int = 0
) -> Comparison:
    """Verdict on one metric of one matched point (see the module docstring for the rule). Each side is the
    metric of one run, or of several runs of the point, pooled as process groups. The direction is the
    metric's `better`; a metric without one cannot be judged (IncomparableError)."""
    base_runs = base if isinstance(base, list) else [base]
    cand_runs = cand if isinstance(cand, list) else [cand]
    better_side = direction(base_runs + cand_runs)
    if better_side is None:
        raise IncomparableError(f"metric {name!r} states no better direction (lower or higher): it is not gated")
    base, cand = base_runs[-1], cand_runs[-1]
    unit, lower = base.unit, better_side == "lower"
    b, c = base.value, cand.value
    note = ""
    if all(m.samples for m in base_runs + cand_runs):
        base_groups, cand_groups = sample_groups(base_runs), sample_groups(cand_runs)
        ratio, low, high = median_ratio_ci(base_groups, cand_groups, seed=seed)
        ci = (low, high)
        if len(base_runs) > 1 or len(cand_runs) > 1:  # the pooled medians are what was compared
            b = float(np.median(np.concatenate(base_groups)))
            c = float(np.median(np.concatenate(cand_groups)))
    else:  # no distribution recorded: the value alone decides
        ratio = c / b if b else None
        low = high = ratio
        ci = None
    if ratio is None:
        return Comparison(label, name, unit, b, c, None, None, "pass", "baseline value is zero")
    worse = low > 1 + threshold if lower else high < 1 - threshold
    better = high < 1 - threshold if lower else low > 1 + threshold
    verdict = "regression" if worse else "improvement" if better else "pass"
    if verdict == "pass" and ci is not None and (low > 1 or high < 1):  # the CI excludes "no change"
        went_down = high < 1
        note = f"{'improved' if went_down == lower else 'worse'}, but less than the threshold"
    return Comparison(label, name, unit, b, c, ratio, ci, verdict, note)


def gate(
    baseline: list[Record],
    candidate: list[Record],
    threshold: float = 0.05,
    metrics: tuple[str, ...] | None = None,
    gated: Mapping[str, tuple[str, ...]] | None = None,
    label: Callable[[Record], str] = settings_label,
) -> GateResult:
    """Compare the measured points the two runs share, on the `metrics` named (for every suite), else on each
    suite's `gated` metrics (suite -> names: the declarations), those that state a better direction. `label`
    names a point in the comparisons. Raises IncomparableError (exit 2) when nothing can be compared: no
    measured points, no point in common, the common points ran on different hardware, or none of the metrics is
    measured there with a direction."""
    if not 0 <= threshold < 1:
        raise IncomparableError(f"threshold must be in [0%, 100%), got {threshold * 100:g}%")
    base = _measured(baseline, "baseline")
    cand = _measured(candidate, "candidate")
    common = [k for k in base if k in cand]
    if not common and {_portable_key(rs[0]) for rs in base.values()} & {_portable_key(rs[0]) for rs in cand.values()}:
        base_hw = sorted({hardware_of(rs[0]) for rs in base.values()})
        cand_hw = sorted({hardware_of(rs[0]) for rs in cand.values()})
        raise IncomparableError(
            f"different hardware: baseline ran on {', '.join(base_hw)}; candidate on {', '.join(cand_hw)}"
        )
    if not common:
        raise IncomparableError(
            f"no matching points: the baseline's {len(base)} and the candidate's {len(cand)} measured points share "
            "no suite + settings"
        )
    base_hw = sorted({hardware_of(r) for k in common for r in base[k]})
    cand_hw = sorted({hardware_of(r) for k in common for r in cand[k]})
    if base_hw != cand_hw or len(base_hw) != 1:
        raise IncomparableError(
            f"different hardware: baseline ran on {', '.join(base_hw)}; candidate on {', '.join(cand_hw)}"
        )
    wanted = set(metrics) if metrics else None
    gated = gated or {}
    comparisons, not_gated, host_stages = [], set(), {}
    for key in common:
        b_ok = [r for r in base[key] if r.ok]
        c_ok = [r for r in cand[key] if r.ok]
        last = cand[key][-1]
        name_of_point = label(base[key][-1])
        if not b_ok:
            continue  # nothing to regress from
        if not last.ok:  # the candidate's latest run of the point failed
            comparisons.append(
                Comparison(
                    name_of_point, "status", "", None, None, None, None, "failed", f"{last.status}: {last.error}"
                )
            )
            continue
        names = [m for m in b_ok[-1].metrics if m in (wanted or gated.get(last.suite, ()))]
        for name in names:
            bm = [r.metrics[name] for r in b_ok if name in r.metrics]
            cm = [r.metrics[name] for r in c_ok if name in r.metrics]
            if not cm or bm[-1].provenance != "measured" or not (_is_number(bm[-1].value) and _is_number(cm[-1].value)):
                continue
            if direction(bm + cm) is None:  # a count or a setting: nothing is better
                not_gated.add(name)
                continue
            comparisons.append(compare_metric(name_of_point, name, bm, cm, threshold))
            # --preprocess gpu moves the stage onto the device; records before that option preprocessed on the host.
            if _on_gpu(last) and last.config.get("preprocess", "cpu") == "cpu":
                if name in HOST_STAGES:
                    host_stages[name] = None
                elif name in HOST_TOTALS and (share := _host_share(name, b_ok[-1], c_ok[-1])) >= HOST_SHARE:
                    host_stages[name] = max(share, host_stages.get(name) or 0.0)
    if wanted and not comparisons:
        if not_gated:
            raise IncomparableError(
                f"none of the metrics {', '.join(sorted(wanted))} can be gated: {', '.join(sorted(not_gated))} "
                "state(s) no better direction (lower or higher), or its runs disagree on it, so no change of it is a "
                "regression"
            )
        raise IncomparableError(f"none of the metrics {', '.join(sorted(wanted))} is measured in the matching points")
    if not comparisons:  # a pass would say nothing: e.g. profile records only, or every baseline point failed
        declared = sorted({m for k in common for m in gated.get(base[k][-1].suite, ())})
        raise IncomparableError(
            f"nothing to compare: the {len(common)} matching point(s) have no measured metric the gate compares "
            f"({', '.join(declared) or 'their suites declare no gated metric'}) in a baseline run that succeeded; "
            "name one with --metrics"
        )
    return GateResult(
        threshold,
        comparisons,
        len(set(base) - set(cand)),
        len(set(cand) - set(base)),
        base_hw[0],
        _environment_changes(base[common[0]][-1], cand[common[0]][-1]),
        single_process=all(_groups(rs) < 2 for rs in list(base.values()) + list(cand.values())),
        not_gated=sorted(not_gated),
        host_stages=host_stages,
    )


def _on_gpu(record: Record) -> bool:
    return str(record.config.get("device") or "cpu").split(":")[0] != "cpu"


def _host_share(total: str, *records: Record) -> float:
    """The largest share of `total` (its median) that its host stage took in `records` (0 when not recorded)."""
    shares = [
        r.value(HOST_TOTALS[total]) / r.value(total)
        for r in records
        if _is_number(r.value(HOST_TOTALS[total])) and _is_number(r.value(total)) and r.value(total) > 0
    ]
    return max(shares, default=0.0)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _measured(records: list[Record], side: str) -> dict[str, list[Record]]:
    """Measured records by match key, oldest first. Several runs of a point (a directory of nightly runs,
    or interleaved repeats) are pooled by the comparison as process groups, so run-to-run noise enters the CI."""
    out: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.provenance == "measured":
            out[match_key(r)].append(r)
    if not out:
        raise IncomparableError(f"the {side} holds no measured points (only analytic records)")
    return dict(out)


def _groups(records: list[Record]) -> int:
    """Process groups behind a point: runs times each run's processes."""
    return sum(int(r.config.get("processes") or 1) for r in records if r.ok)


def _environment_changes(base: Record, cand: Record) -> list[str]:
    """Software differences that could explain a change (same hardware is already established)."""
    b, c = base.environment or {}, cand.environment or {}
    return [f"{k}: {b.get(k)} → {c.get(k)}" for k in ENV_FIELDS if b.get(k) != c.get(k)]


def parse_threshold(text: str) -> float:
    """'5%', '5' or '0.05' -> 0.05: a bare number from 1 up is read as percent ('1' is 1%), below 1 as a
    fraction ('0.9' is 90%)."""
    raw = str(text).strip()
    try:
        value = float(raw.rstrip("%"))
    except ValueError:
        raise ValueError(f"threshold {text!r} is not a number: use e.g. 5% or 0.05") from None
    value = value / 100 if raw.endswith("%") or value >= 1 else value
    if not 0 <= value < 1:
        raise ValueError(f"threshold must be in [0%, 100%), got {text!r}")
    return value


def _run_line(records: list[Record]) -> str:
    r = records[0]
    env = r.environment or {}
    rev = (env.get("git_revision") or "unknown")[:10] + ("+dirty" if env.get("git_dirty") else "")
    runs = sorted({x.run_id for x in records})
    return f"run {', '.join(runs[:3])}{' …' if len(runs) > 3 else ''} (revision {rev}, {r.timestamp})"


def markdown_summary(result: GateResult, baseline: list[Record], candidate: list[Record]) -> str:
    """A CI job summary: the verdict first, then one row per compared metric."""
    status = f"FAIL: {len(result.regressions)} regression(s)" if not result.passed else "PASS"
    lines = [
        f"## nvila-bench gate: {status}",
        "",
        f"Threshold {result.threshold * 100:g}%; a point regresses only when the whole 95% bootstrap CI of its "
        f"change lies beyond the threshold. Hardware: {result.hardware}.",
        "",
        f"- Baseline: {_run_line(baseline)}",
        f"- Candidate: {_run_line(candidate)}",
    ]
    lines += [f"- {w}" for w in result.warnings]
    if result.environment_changes:
        lines.append(f"- Software changed: {'; '.join(result.environment_changes)}")
    if result.single_process:
        lines.append(
            "- Each side is one process run, so the CIs hold within-run noise only; a shared runner's run-to-run "
            "drift is not in them. Measure with `--processes 5`, or pass several runs per side, to cover it."
        )
    if result.not_gated:
        lines.append(f"- Not gated (no better direction stated): {', '.join(result.not_gated)}")
    if result.unmatched_baseline or result.unmatched_candidate:
        lines.append(
            f"- Not compared: {result.unmatched_baseline} baseline-only and {result.unmatched_candidate} "
            "candidate-only point(s)"
        )
    lines += ["", "| point | metric | baseline | candidate | change [95% CI] | verdict |", "|---|---|---|---|---|---|"]
    icon = {"regression": "❌ regression", "failed": "❌ failed", "improvement": "✅ improvement", "pass": "pass"}
    order = {"failed": 0, "regression": 1, "improvement": 2, "pass": 3}
    for c in sorted(result.comparisons, key=lambda c: order[c.verdict]):
        note = f" ({c.note})" if c.note else ""
        lines.append(
            f"| {_md(c.label)} | {c.metric} | {_fmt(c.baseline, c.unit)} | {_fmt(c.candidate, c.unit)} | "
            f"{c.change_text} | {icon[c.verdict]}{_md(note)} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value * 1e3:.3f} ms"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    return f"{value:.4g} {unit}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
