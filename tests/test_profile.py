"""`nvila-bench profile`: traces written and parseable, every stage range traced, operator tables that add up,
the overhead stated, energy absent without a GPU, bad input rejected with one line and exit code 2."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import read_dicts
from fake_records import GPU_ENV, html_section, prefill_record, report_html
from nvila_bench.suites.profile import STAGE_RANGES
from nvila_bench.suites.profiler import operator_tables
from torch.autograd import DeviceType

from nvila_bench.cli import main
from nvila_bench.core.measuring.energy import EnergyMeter, energy_metrics
from nvila_bench.core.measuring.results import Metric, Record


def metric(value, unit: str) -> dict:
    return Metric.measured(value, unit).to_dict()


def as_records(records) -> list[Record]:
    return [r if isinstance(r, Record) else Record.from_dict(r) for r in records]


ENERGY = ("energy_j", "joules_per_token", "avg_power_w")
FAST = ["--image", "64x64", "--prompt-tokens", "16", "--wait", "0", "--warmup", "1", "--active", "2", "--repeats", "2"]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """One profile run per stage on tiny presets (about a second of model time each on CPU)."""
    out = tmp_path_factory.mktemp("profile")
    for preset, stage, extra in (
        ("vila-tiny", "prefill", []),
        ("nvila-tiny", "decode", ["--new-tokens", "4"]),
        ("vila-tiny", "train", []),
    ):
        assert main(["profile", "--preset", preset, "--stage", stage, *FAST, *extra, "--out", str(out)]) == 0
    return out, {r["config"]["extra"]["stage"]: r for r in read_dicts(out)}


@pytest.mark.parametrize("stage", list(STAGE_RANGES))
def test_traces_are_written_parse_and_hold_every_stage_range(profiled, stage):
    out, records = profiled
    record = records[stage]
    chrome = json.loads((out / record["metrics"]["chrome_trace"]["value"]).read_text())
    (tb_file,) = (out / record["metrics"]["tensorboard_dir"]["value"]).glob("*.pt.trace.json")
    tensorboard = json.loads(tb_file.read_text())
    for trace in (chrome, tensorboard):
        ranges = {e["name"] for e in trace["traceEvents"] if e.get("cat") == "user_annotation"}
        assert set(STAGE_RANGES[stage]) <= ranges
        assert any(e.get("cat") == "cpu_op" for e in trace["traceEvents"])


@pytest.mark.parametrize("stage", list(STAGE_RANGES))
def test_top_operators_cover_every_stage_and_stage_times_add_up(profiled, stage):
    m = profiled[1][stage]["metrics"]
    top = m["top_ops"]["value"]
    assert top and {r["stage"] for r in top} == set(STAGE_RANGES[stage])
    assert all(r["self_cpu_s"] >= 0 and r["calls"] > 0 and r["self_cuda_s"] is None for r in top)  # CPU: no CUDA column
    assert any(r["flops"] for r in top)  # matmuls have a FLOP formula
    stages = m["stage_times"]["value"]
    assert [s["stage"] for s in stages] == list(STAGE_RANGES[stage])
    measured = m["profiled_step_time"]["summary"]["mean"]
    assert sum(s["seconds"] for s in stages) == pytest.approx(measured, rel=0.10)


def test_overhead_is_stated_and_energy_and_gpu_memory_are_absent_on_cpu(profiled):
    for record in profiled[1].values():
        m = record["metrics"]
        assert record["suite"] == "profile" and record["provenance"] == "measured"
        assert m["unprofiled_step_time"]["summary"]["n"] == 2 and m["profiled_step_time"]["summary"]["n"] == 2
        assert m["profiler_overhead"]["value"] == pytest.approx(
            m["profiled_step_time"]["value"] / m["unprofiled_step_time"]["value"]
        )
        for name in ENERGY + ("memory_snapshot", "peak_memory_breakdown"):
            assert name not in m  # absent, not zero


def test_report_shows_profiles_and_energy(profiled):
    out, records = profiled
    html = report_html(as_records(records.values()), [str(out)])
    section = html_section(html, "profile")
    assert "vila-tiny 64x64, train step" in section and "aten::mm" in section and "llm_forward" in section
    energy = html_section(html, "energy")  # every record's energy, whatever its suite: none on a CPU
    assert "not measured" in energy and "nvila-bench run prefill --preset nvila-8b --device cuda" in energy
    gpu = prefill_record(env=GPU_ENV).to_dict()
    gpu["metrics"] |= {
        "energy_j": metric(120.0, "J"),
        "joules_per_token": metric(0.0123, "J/token"),
        "avg_power_w": metric(412.5, "W"),
    }
    html = report_html(as_records([gpu]), ["x.jsonl"])
    energy = html_section(html, "energy")
    assert "0.0123" in energy and "412.5 W" in energy and "NVIDIA H100" in energy
    assert "nvila-bench profile --preset nvila-tiny --stage prefill" in html_section(html, "profile")  # the command


def test_prefill_suite_records_have_no_energy_fields_on_cpu(tmp_path):
    args = [
        "--preset",
        "vila-tiny",
        "--image",
        "64x64",
        "--prompt-tokens",
        "8",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--min-seconds",
        "0",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    assert main(["run", "prefill", *args]) == 0
    (record,) = read_dicts(tmp_path)
    assert record["status"] == "ok" and "ttft" in record["metrics"]
    assert not set(ENERGY) & set(record["metrics"])
    assert EnergyMeter.open("cpu") is None and energy_metrics(None, 100) == {}


class FakeNvml:
    """Just enough of pynvml: an energy counter (mJ) that advances 500 J per read."""

    def __init__(self):
        self.millijoules = 1_000_000

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.millijoules += 500_000
        return self.millijoules


def test_energy_meter_reads_the_nvml_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meter = EnergyMeter.open("cuda:0")
    assert meter is not None and meter.nvml_index == 0
    with meter:
        pass
    assert meter.joules == 500.0 and meter.seconds > 0
    m = energy_metrics(meter, tokens=1000)
    assert m["energy_j"].value == 500.0 and m["joules_per_token"].value == 0.5
    assert m["avg_power_w"].value == pytest.approx(500.0 / meter.seconds) and m["avg_power_w"].unit == "W"
    assert m["joules_per_token"].better == "lower"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope", "--stage", "prefill"], "nope"),
        (["--preset", "vila-tiny", "--stage", "generate"], "generate"),
        (["--preset", "vila-tiny", "--stage", "prefill", "--active", "0"], "--active"),
        (["--preset", "vila-tiny", "--stage", "prefill", "--wait", "-1"], "--wait"),
        (["--preset", "vila-tiny", "--stage", "prefill", "--warmup", "two"], "--warmup"),
        (["--preset", "vila-tiny", "--stage", "decode", "--new-tokens", "1"], "new-tokens"),
        (["--preset", "vila-tiny", "--stage", "prefill", "--image", "0x10"], "0x10"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, message):
    assert main(["profile", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nvila-bench: error: ") and err.count("\n") == 1 and message in err
    assert not Path(tmp_path / "out" / "results.jsonl").exists()


def _event(name, parent=None, annotation=False, cpu_us=0.0, cuda_us=0.0, flops=0):
    return SimpleNamespace(
        name=name,
        cpu_parent=parent,
        is_user_annotation=annotation,
        device_type=DeviceType.CPU,
        cpu_time_total=cpu_us,
        self_cpu_time_total=cpu_us,
        self_device_time_total=cuda_us,
        flops=flops,
    )


def test_operator_tables_attribute_ops_to_the_enclosing_stage_and_rank_by_cuda_time():
    step = _event("ProfilerStep#1", annotation=True, cpu_us=3000)
    vision, llm = _event("vision", step, True, 1000), _event("llm_prefill", step, True, 2000)
    linear = _event("aten::linear", llm, cpu_us=10)
    events = [
        step,
        vision,
        llm,
        linear,
        _event("aten::mm", linear, cpu_us=50, cuda_us=900, flops=4e9),
        _event("aten::cat", llm, cpu_us=300, cuda_us=5),
        _event("aten::conv2d", vision, cpu_us=70, cuda_us=400),
        _event("aten::empty", step, cpu_us=1),
    ]  # outside every stage: dropped
    stages, top = operator_tables(events, ("vision", "llm_prefill"), steps=2, top=2, cuda=True)
    assert [(s["stage"], s["seconds"]) for s in stages] == [("vision", 0.0005), ("llm_prefill", 0.001)]
    assert [(r["stage"], r["op"]) for r in top] == [
        ("vision", "aten::conv2d"),
        ("llm_prefill", "aten::mm"),
        ("llm_prefill", "aten::cat"),
    ]
    mm = top[1]
    assert mm["self_cuda_s"] == pytest.approx(450e-6) and mm["flops"] == 2e9 and mm["calls"] == 0.5
    assert top[0]["flops"] is None and stages[1]["flops"] == 2e9


def test_report_shows_gpu_profile_columns_and_memory_breakdown():
    row = {"stage": "vision", "seconds": 0.01, "ranges": 1, "self_cpu_s": 0.002, "self_cuda_s": 0.009, "flops": 5e12}
    op = {"stage": "vision", "op": "aten::mm", "self_cpu_s": 0.001, "self_cuda_s": 0.008, "calls": 24, "flops": 5e12}
    record = prefill_record(env=GPU_ENV).to_dict()
    record |= {
        "suite": "profile",
        "config": record["config"] | {"extra": {"stage": "prefill"}},
        "metrics": {
            "stage_times": metric([row], "per step"),
            "top_ops": metric([op], "per step"),
            "profiled_step_time": metric(0.012, "s"),
            "unprofiled_step_time": metric(0.011, "s"),
            "profiler_overhead": metric(0.012 / 0.011, "ratio"),
            "chrome_trace": metric("x.trace.json", "path"),
            "tensorboard_dir": metric("tb/x", "path"),
            "memory_snapshot": metric("x.memory.pickle", "path"),
            "peak_memory_allocated": metric(3 * 2**30, "bytes"),
            "peak_memory_breakdown": metric({"weights": 2**31, "activations_and_other": 2**30}, "bytes"),
        },
    }
    html = report_html(as_records([record]), ["x.jsonl"])
    section = html_section(html, "profile")
    assert "self CUDA / step" in section and "8.000 ms" in section and "5,000" in section
    assert (
        "x.memory.pickle" in section and "weights 2.00 GiB" in section and "activations and other 1.00 GiB" in section
    )
