"""The regression gate: decisions from samples, exit codes, and a measured false-alarm rate."""

import json
from pathlib import Path

import pytest
from fake_records import CPU_ENV, GATED, GPU_ENV, decode_record, prefill_record, train_record

from nvila_bench.cli import main
from nvila_bench.core.comparison import gate as gate_module
from nvila_bench.core.comparison.gate import IncomparableError, compare_metric, markdown_summary, parse_threshold
from nvila_bench.core.measuring.result_files import ResultWriter, read_results
from nvila_bench.core.measuring.results import Metric, Record

MEASUREMENTS = Path(__file__).resolve().parents[2] / "shared" / "measurements" / "h100-2026-11-27"


def gate(baseline, candidate, threshold=0.05, metrics=None):
    """The gate as the CLI calls it: the metrics named, else each suite's declared gated metrics (GATED)."""
    return gate_module.gate(baseline, candidate, threshold, metrics, GATED)


pytestmark = pytest.mark.usefixtures("declared_suites")  # the CLI's gate reads the suites' declarations


def write(path, records):
    writer = ResultWriter(path)
    for r in records:
        writer.write(r)
    return str(path)


def test_threshold_parsing():
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("0.05") == pytest.approx(0.05)
    assert parse_threshold("10") == pytest.approx(0.10)
    assert parse_threshold("1") == pytest.approx(0.01)  # from 1 up a bare number is percent, as "2" is 2%
    assert parse_threshold("0.9") == pytest.approx(0.9)
    with pytest.raises(ValueError, match="not a number"):
        parse_threshold("fast")
    with pytest.raises(ValueError, match=r"\[0%, 100%\)"):
        parse_threshold("150%")


@pytest.mark.parametrize("seed", range(30))
def test_aa_comparisons_pass_and_a_10_percent_slowdown_is_flagged(seed):
    """The measured false-alarm rate on synthetic 3%-CV timing noise: 0 of 30 A/A pairs flagged, while each
    10% slowdown of the same noise is flagged (30 of 30)."""
    base = [prefill_record(ttft=0.1, seed=seed)]
    same = [prefill_record(ttft=0.1, seed=1000 + seed, run_id="run-b")]
    slow = [prefill_record(ttft=0.11, seed=1000 + seed, run_id="run-c")]
    assert gate(base, same).passed
    result = gate(base, slow)
    assert [c.verdict for c in result.regressions] == ["regression"]
    low, high = result.regressions[0].ci
    assert 1.05 < low < high < 1.16


def test_a_change_below_the_threshold_passes_and_an_improvement_is_named():
    base = [prefill_record(ttft=0.1, seed=1)]
    assert gate(base, [prefill_record(ttft=0.103, seed=2)]).passed  # +3% < 5%
    better = gate(base, [prefill_record(ttft=0.08, seed=2)])
    assert better.passed and better.comparisons[0].verdict == "improvement"


def test_the_direction_comes_from_the_metric_not_the_unit():
    """The unit-suffix guess is gone: "/s" no longer means higher-is-better, and a unit without "/s" no longer
    means lower-is-better; the metric's own `better` decides."""
    assert not hasattr(gate_module, "lower_is_better")
    base, cand = Metric.measured(100.0, "items/s", better="lower"), Metric.measured(120.0, "items/s", better="lower")
    assert compare_metric("p", "odd", base, cand, 0.05).verdict == "regression"
    base, cand = Metric.measured(0.5, "fraction", better="higher"), Metric.measured(0.6, "fraction", better="higher")
    assert compare_metric("p", "mfu", base, cand, 0.05).verdict == "improvement"
    with pytest.raises(IncomparableError, match="no better direction"):
        compare_metric("p", "iterations", Metric.measured(5, "count"), Metric.measured(9, "count"), 0.05)


def test_an_mfu_drop_beyond_the_threshold_is_a_regression():
    base = [train_record(mfu=0.40, seed=1)]
    worse = gate(base, [train_record(mfu=0.30, seed=2, run_id="b")], metrics=("mfu",))
    (c,) = worse.comparisons
    assert c.metric == "mfu" and c.unit == "fraction" and c.verdict == "regression" and c.ci is None
    assert c.ratio == pytest.approx(0.75) and not worse.passed
    better = gate(base, [train_record(mfu=0.50, seed=2, run_id="b")], metrics=("mfu",))
    assert better.comparisons[0].verdict == "improvement" and better.passed
    assert gate(base, [train_record(mfu=0.39, seed=2, run_id="b")], metrics=("mfu",)).passed  # -2.5% < 5%


def _as_v1(record: Record) -> dict:
    """A record as version 1 wrote it: no better / merge; a derived metric names its source with "of"."""
    d = record.to_dict() | {"schema_version": 1}
    for m in d["metrics"].values():
        m.pop("better"), m.pop("merge")
        if "derived_from" in m:
            m["of"] = m.pop("derived_from")
    return d


def test_a_version_1_mfu_drop_is_a_regression(tmp_path):
    """Version 1 stored no direction, and the old gate guessed it from the unit: an MFU ("fraction") was taken
    as lower-is-better, so a drop passed as an improvement. Upgraded, the MFU is higher-is-better."""
    for side, mfu in (("a", 0.40), ("b", 0.30)):
        (tmp_path / side).mkdir()
        line = json.dumps(_as_v1(train_record(mfu=mfu, seed=ord(side), run_id=side)))
        (tmp_path / side / "results.jsonl").write_text(line + "\n")
    base, cand = read_results(tmp_path / "a"), read_results(tmp_path / "b")
    assert base[0].schema_version == 2 and base[0].metrics["mfu"].better == "higher"
    result = gate(base, cand, metrics=("mfu",))
    assert [(c.metric, c.verdict) for c in result.comparisons] == [("mfu", "regression")]
    assert (
        main(["gate", "--baseline", str(tmp_path / "a"), "--candidate", str(tmp_path / "b"), "--metrics", "mfu"]) == 1
    )


def test_metrics_without_a_direction_are_not_gated():
    base, cand = [train_record(seed=1)], [train_record(seed=2, run_id="b")]
    with pytest.raises(IncomparableError, match="trainable_params.*no better direction"):
        gate(base, cand, metrics=("trainable_params",))
    result = gate(base, cand, metrics=("trainable_params", "step_time"))
    assert [c.metric for c in result.comparisons] == ["step_time"] and result.not_gated == ["trainable_params"]
    assert "Not gated (no better direction stated): trainable_params" in markdown_summary(result, base, cand)


def test_the_note_says_which_way_a_change_below_the_threshold_went():
    """A pass whose CI excludes "no change" says whether it improved or got worse; an improvement is never
    called a mere change."""
    base = Metric.timing([0.1 + 0.0001 * (i % 7) for i in range(200)])
    faster = Metric.timing([0.097 + 0.0001 * (i % 7) for i in range(200)])
    slower = Metric.timing([0.103 + 0.0001 * (i % 7) for i in range(200)])
    down, up = compare_metric("p", "ttft", base, faster, 0.05), compare_metric("p", "ttft", base, slower, 0.05)
    assert (down.verdict, down.note) == ("pass", "improved, but less than the threshold")
    assert (up.verdict, up.note) == ("pass", "worse, but less than the threshold")

    def rate(tokens_per_s):
        return Metric.rate([1 / (tokens_per_s + 0.01 * (i % 7)) for i in range(200)], 1, "tokens/s")

    assert (
        compare_metric("p", "decode_tokens_per_s", rate(100), rate(97), 0.05).note
        == "worse, but less than the threshold"
    )
    assert (
        compare_metric("p", "decode_tokens_per_s", rate(100), rate(103), 0.05).note
        == "improved, but less than the threshold"
    )
    assert compare_metric("p", "ttft", base, faster, 0.01).verdict == "improvement"


def test_the_h100_aa_pair_gates_without_a_false_alarm():
    """The first H100 run (version-1 files): the same prefill point twice, three processes each. The gate
    reads them (upgraded), compares TTFT, and does not call the A/A pair a regression at 5%."""
    if not MEASUREMENTS.is_dir():
        pytest.skip(f"{MEASUREMENTS} is absent")
    base, cand = read_results(MEASUREMENTS / "aa-run-a.jsonl"), read_results(MEASUREMENTS / "aa-run-b.jsonl")
    result = gate(base, cand, 0.05)
    assert result.comparisons and result.hardware == "NVIDIA H100 80GB HBM3"
    (ttft,) = [c for c in result.comparisons if c.metric == "ttft"]
    assert ttft.verdict in ("pass", "improvement") and ttft.ci is not None
    if ttft.verdict == "pass" and ttft.ci[1] < 1:
        assert ttft.note == "improved, but less than the threshold"
    assert "changed, but" not in markdown_summary(result, base, cand)


def test_throughput_regresses_downwards():
    base = [decode_record(tpot=0.001, seed=1)]
    slow = gate(base, [decode_record(tpot=0.0012, seed=2)])
    verdicts = {c.metric: c.verdict for c in slow.comparisons}
    assert verdicts == {"tpot": "regression", "decode_tokens_per_s": "regression"}


def test_process_groups_widen_the_interval():
    """A candidate whose second process ran 12% slower: bootstrapping over processes says "unclear", where
    pooling the samples as if from one process would claim a significant change."""

    def merged(shift, seed):
        r = prefill_record(ttft=0.1, seed=seed)
        ttft = r.metrics["ttft"]
        a, b = ttft.samples[:100], [v * shift for v in ttft.samples[100:]]
        ttft.samples, ttft.groups = a + b, [100, 100]
        return r

    base, cand = merged(1.0, 1), merged(1.12, 2)  # candidate: second process 12% slower (run-to-run drift)
    wide = gate([base], [cand]).comparisons[0]
    cand.metrics["ttft"].groups = None
    base.metrics["ttft"].groups = None
    narrow = gate([base], [cand]).comparisons[0]
    assert wide.ci[0] < 1 < wide.ci[1]  # over processes: cannot tell the runs apart
    assert narrow.ci[0] > 1  # pooled as one process: a (false) significant slowdown
    assert (wide.ci[1] - wide.ci[0]) > 2 * (narrow.ci[1] - narrow.ci[0])


def test_a_point_that_now_fails_is_a_regression():
    base = [prefill_record()]
    config = base[0].config
    failed = Record("prefill", config, {}, "run-b", environment=CPU_ENV, status="oom", error="CUDA out of memory")
    result = gate(base, [failed])
    assert not result.passed and result.regressions[0].verdict == "failed"
    assert "out of memory" in markdown_summary(result, base, [failed])


def test_incomparable_inputs():
    with pytest.raises(IncomparableError, match="different hardware"):
        gate([prefill_record()], [prefill_record(env=GPU_ENV)])
    with pytest.raises(IncomparableError, match="no matching points"):
        gate([prefill_record(preset="nvila-tiny")], [prefill_record(preset="vila-tiny")])
    with pytest.raises(IncomparableError, match="none of the metrics"):
        gate([prefill_record()], [prefill_record(seed=3)], metrics=("no_such_metric",))
    # matching points, but nothing the gate compares: a pass would say nothing
    profiled = Record(
        "profile", prefill_record().config, {"profiler_overhead": Metric.measured(1.2, "x")}, "r", environment=CPU_ENV
    )
    with pytest.raises(IncomparableError, match=r"nothing to compare: the 1 matching point\(s\)"):
        gate([profiled], [profiled])
    failed = Record("prefill", prefill_record().config, {}, "run-a", environment=CPU_ENV, status="error", error="x")
    with pytest.raises(IncomparableError, match="nothing to compare"):  # the baseline's only run of it failed
        gate([failed], [prefill_record()])


def test_markdown_summary_names_the_verdict_and_escapes_pipes():
    base = [prefill_record(preset="nvila-tiny", extra={"variant": "a|b"})]
    slow = [prefill_record(preset="nvila-tiny", ttft=0.12, seed=5, extra={"variant": "a|b"}, run_id="run-b")]
    text = markdown_summary(gate(base, slow), base, slow)
    assert text.startswith("## nvila-bench gate: FAIL: 1 regression(s)")
    assert "a\\|b" in text and "| ttft |" in text and "❌ regression" in text


def test_cli_exit_codes(tmp_path, capsys):
    a = write(tmp_path / "a", [prefill_record(seed=1), decode_record(seed=1)])
    b = write(tmp_path / "b", [prefill_record(seed=2, run_id="b"), decode_record(seed=2, run_id="b")])
    c = write(tmp_path / "c", [prefill_record(ttft=0.115, seed=2, run_id="c"), decode_record(seed=2, run_id="c")])
    h = write(tmp_path / "h", [prefill_record(env=GPU_ENV)])
    md = tmp_path / "summary.md"
    assert main(["gate", "--baseline", a, "--candidate", b, "--summary-md", str(md)]) == 0
    assert "PASS" in md.read_text()
    assert main(["gate", "--baseline", a, "--candidate", c]) == 1
    assert "regression: prefill nvila-tiny 448x448" in capsys.readouterr().err
    assert main(["gate", "--baseline", a, "--candidate", c, "--threshold", "20%"]) == 0
    assert main(["gate", "--baseline", a, "--candidate", c, "--metrics", "tpot"]) == 0
    assert main(["gate", "--baseline", a, "--candidate", h]) == 2
    assert "different hardware" in capsys.readouterr().err
    assert main(["gate", "--baseline", a, "--candidate", c, "--threshold", "x"]) == 2
    capsys.readouterr()
    fewer = write(tmp_path / "fewer", [prefill_record(seed=2, run_id="f")])  # the decode point went missing
    assert main(["gate", "--baseline", a, "--candidate", fewer]) == 0
    assert "pass (1 comparison(s); 1 baseline point(s) not in the candidate)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json}\n", "not JSON"),
        ('{"schema_version": 1, "run_id": "r"', "truncated record"),
        (json.dumps({"schema_version": 99}) + "\n", "schema_version 99 is not one this version reads"),
        ("", "no result records"),
        ("[1, 2]\n", "must be a JSON object"),
    ],
)
def test_bad_results_files_exit_2_with_one_line(tmp_path, capsys, content, message):
    good = write(tmp_path / "good", [prefill_record()])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    for argv in (
        ["gate", "--baseline", good, "--candidate", str(bad)],
        ["report", str(bad), "--out", str(tmp_path / "r.html")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()
    assert main(["gate", "--baseline", str(tmp_path / "missing"), "--candidate", good]) == 2
    assert "no such results file" in capsys.readouterr().err


def test_several_runs_of_a_point_pool_as_process_groups():
    """A side given several runs of a point pools them as groups: two runs that disagree with each other widen
    the CI, so a candidate inside the baseline's own run-to-run spread is not flagged."""
    steady = [prefill_record(ttft=0.100, seed=s, run_id=f"r{s}") for s in (1, 2)]
    drifting = [prefill_record(ttft=t, seed=s, run_id=f"r{s}") for s, t in ((1, 0.100), (2, 0.120))]
    cand = [prefill_record(ttft=0.112, seed=7, run_id="c")]
    assert gate(steady, cand).comparisons[0].verdict == "regression"
    pooled = gate(drifting, cand).comparisons[0]
    assert pooled.verdict == "pass" and pooled.ci[0] < 1.0 < pooled.ci[1]
    assert not gate(drifting, cand).single_process and gate(steady[:1], cand).single_process


def test_single_process_runs_are_called_out_in_the_summary():
    base, cand = [prefill_record(seed=1)], [prefill_record(seed=2)]
    assert "--processes 5" in markdown_summary(gate(base, cand), base, cand)


# ---- host-CPU stages, improvements and direction ----------------------------------------------------------
HOST_WARNING = "warning: preprocess runs on the host CPU; its noise (not the GPU's) decides this comparison"


def _with_preprocess_share(record: Record, share: float) -> Record:
    """The record with its preprocess stage re-timed to `share` of its TTFT samples."""
    ttft = record.metrics["ttft"].samples
    record.metrics["preprocess"] = Metric.timing([t * share for t in ttft])
    return record


def test_a_host_cpu_stage_on_a_gpu_run_is_warned_about():
    """`preprocess` (PIL resize, tiling) runs on the host even in a GPU run: comparing it, the summary says the
    host's noise decides; a GPU stage (vision) or a CPU run gets no such warning."""
    base = [prefill_record(env=GPU_ENV, seed=1)]
    cand = [prefill_record(env=GPU_ENV, seed=2, run_id="run-b")]
    result = gate(base, cand, metrics=("preprocess", "vision"))
    assert {c.metric for c in result.comparisons} == {"preprocess", "vision"}
    assert result.warnings == [HOST_WARNING]
    text = markdown_summary(result, base, cand)
    assert f"- {HOST_WARNING}" in text and text.index(HOST_WARNING) < text.index("| point |")
    assert gate(base, cand, metrics=("vision",)).warnings == []
    cpu = gate([prefill_record(seed=1)], [prefill_record(seed=2, run_id="run-b")], metrics=("preprocess",))
    assert cpu.warnings == [] and HOST_WARNING not in markdown_summary(cpu, base, cand)
    on_device = [prefill_record(env=GPU_ENV, seed=s, run_id=f"run-{s}") for s in (1, 2)]
    for r in on_device:  # --preprocess gpu: the stage runs on the device, its noise is the GPU's
        r.config["preprocess"] = "gpu"
    assert gate(on_device[:1], on_device[1:], metrics=("preprocess",)).warnings == []


def test_a_ttft_mostly_spent_on_the_host_is_warned_about():
    """TTFT includes preprocess: when preprocess is a large share of it on a GPU run (the first H100 run's A/A
    pair: over half), the TTFT comparison carries the host's noise too; at the fake records' 10% it does not."""
    base = [_with_preprocess_share(prefill_record(env=GPU_ENV, seed=1), 0.6)]
    cand = [prefill_record(env=GPU_ENV, seed=2, run_id="run-b")]
    (line,) = gate(base, cand).warnings
    assert line.startswith("warning: ttft includes preprocess (up to 60% of it)") and "host CPU" in line
    assert gate([prefill_record(env=GPU_ENV, seed=1)], cand).warnings == []


def test_a_change_whose_whole_ci_is_below_minus_5_percent_is_an_improvement():
    """Lower is better (a timing): a -10% change whose whole CI lies below -5% is called an improvement, with no
    "less than the threshold" note, in the comparison and in the summary."""
    base = [prefill_record(ttft=0.100, seed=1)]
    cand = [prefill_record(ttft=0.090, seed=2, run_id="run-b")]
    (c,) = gate(base, cand).comparisons
    assert c.ci[1] < 0.95 and c.ratio == pytest.approx(0.9, rel=0.02)
    assert (c.verdict, c.note) == ("improvement", "")
    text = markdown_summary(gate(base, cand), base, cand)
    assert "✅ improvement |" in text and "less than the threshold" not in text


def test_direction_is_metric_better_even_when_the_unit_says_seconds():
    import dataclasses

    """A metric in seconds that states better="higher" (an odd but legal declaration) regresses when it drops:
    the unit suffix plays no part."""

    def timed(median, seed, better):
        m = Metric.timing(prefill_record(ttft=median, seed=seed).metrics["ttft"].samples)
        assert m.unit == "s" and m.better == "lower"
        return dataclasses.replace(m, better=better)

    assert compare_metric("p", "odd", timed(0.1, 1, "higher"), timed(0.08, 2, "higher"), 0.05).verdict == "regression"
    assert compare_metric("p", "odd", timed(0.1, 1, "lower"), timed(0.08, 2, "lower"), 0.05).verdict == "improvement"


# ---- the gated metrics are the caller's: the suites' declarations ------------------------------------------
def test_the_gate_names_no_suite_and_gates_what_the_caller_declares():
    """core/comparison/gate.py holds no suite's name and no default metric list: which metrics are gated is the
    declarations' (suite -> gated names), or the names the caller asks for."""
    from nvila_bench.suites.registry import REGISTRY

    source = Path(gate_module.__file__).read_text()
    assert not hasattr(gate_module, "DEFAULT_METRICS")
    assert not [name for name in REGISTRY if f'"{name}"' in source or f"'{name}'" in source]
    base, cand = [prefill_record(seed=1), decode_record(seed=1)], [prefill_record(seed=2), decode_record(seed=2)]
    only_tpot = gate_module.gate(base, cand, 0.05, gated={"decode": ("tpot",)})
    assert [(c.label.split()[0], c.metric) for c in only_tpot.comparisons] == [("decode", "tpot")]
    with pytest.raises(IncomparableError, match="their suites declare no gated metric.*name one with --metrics"):
        gate_module.gate(base, cand, 0.05)
    with pytest.raises(IncomparableError, match=r"have no measured metric the gate compares \(mfu\)"):
        gate_module.gate(base, cand, 0.05, gated={"prefill": ("mfu",)})


def test_the_cli_gates_each_suites_declared_metrics(tmp_path, monkeypatch, capsys):
    """Without --metrics, `nvila-bench gate` compares the metrics each record's suite declares gated; a run whose
    suites declare none is one line naming --metrics, exit 2."""
    from nvila_bench.suites import registry

    from nvila_bench.core.measuring.specs import MetricSpec, SuiteOutputs

    a = write(tmp_path / "a", [prefill_record(seed=1), decode_record(seed=1)])
    b = write(tmp_path / "b", [prefill_record(ttft=0.13, seed=2, run_id="b"), decode_record(seed=2, run_id="b")])
    tpot = SuiteOutputs("decode", "Decode.", (MetricSpec("tpot", "s", "lower", gated=True),))
    monkeypatch.setattr(registry, "declared_outputs", lambda: {"decode": tpot})
    assert main(["gate", "--baseline", a, "--candidate", b]) == 0  # TTFT regressed, but prefill gates nothing here
    out = capsys.readouterr().out
    assert "| tpot |" in out and "| ttft |" not in out
    monkeypatch.setattr(registry, "declared_outputs", lambda: {})
    assert main(["gate", "--baseline", a, "--candidate", b]) == 2
    err = capsys.readouterr().err
    assert "declare no gated metric" in err and "--metrics" in err and err.count("\n") == 1
    assert main(["gate", "--baseline", a, "--candidate", b, "--metrics", "ttft"]) == 1
