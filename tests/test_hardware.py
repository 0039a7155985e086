import json
import re
from importlib import resources

import pytest
import tomllib
from nvila_bench.suites.ceilings import measure_ceilings

from nvila_bench.core.analysis.hardware import (
    CEILINGS_FILE,
    get_hardware,
    hardware_keys,
    load_ceilings,
    match_hardware,
    save_ceilings,
)

KEYS = ["h100-sxm", "h100-pcie", "h200", "a100-80gb", "rtx-4090", "rtx-6000-ada", "l40s", "jetson-orin"]


def test_table_has_the_expected_entries_with_sources():
    assert hardware_keys() == KEYS
    for key in KEYS:
        hw = get_hardware(key)
        assert hw.key == key and hw.source and hw.name
        assert hw.bandwidth > 0 and hw.memory_gb > 0
        assert hw.peak_flops("bfloat16") > 0 and hw.peak_flops("int8") >= hw.peak_flops("bfloat16")


def _table_file() -> dict:
    return tomllib.loads(resources.files("nvila_bench.core.analysis").joinpath("hardware.toml").read_text())


def test_toml_loads_every_entry_with_positive_rates():
    data = _table_file()
    assert [entry["key"] for entry in data["hardware"]] == hardware_keys() == KEYS
    for entry in data["hardware"]:
        hw = get_hardware(entry["key"])
        assert hw.name == entry["name"] and hw.source == entry["source"]
        rates = [hw.bf16_tflops, hw.fp16_tflops, hw.int8_tops, hw.memory_bandwidth_gbs, hw.memory_gb]
        assert all(rate > 0 for rate in rates)
        assert hw.fp8_tflops == entry.get("fp8_tflops") and (hw.fp8_tflops is None or hw.fp8_tflops > 0)
        assert "\n" not in hw.source and "  " not in hw.source  # line-ending backslashes joined cleanly


def test_every_pattern_names_a_known_entry_and_compiles():
    patterns = _table_file()["pattern"]
    assert len(patterns) == len(KEYS)
    for pattern in patterns:
        assert pattern["key"] in KEYS
        re.compile(pattern["regex"])


def test_pattern_order_puts_pcie_before_sxm():  # first match wins: "H100 PCIe" also contains "H100"
    keys = [pattern["key"] for pattern in _table_file()["pattern"]]
    assert keys.index("h100-pcie") < keys.index("h100-sxm")


def test_sources_keep_their_citations():
    assert get_hardware("h100-sxm").source == (
        "NVIDIA H100 Tensor Core GPU Architecture whitepaper (spec comparison table, dense columns); "
        "NVIDIA H100 datasheet https://www.nvidia.com/en-us/data-center/h100/ "
        "(its BF16 1979 / FP8 3958 / INT8 3958 figures are with sparsity, halved here)"
    )
    assert "https://www.nvidia.com/en-us/design-visualization/rtx-6000/ (its" in get_hardware("rtx-6000-ada").source
    assert "/en-zz/Solutions/gtcf21/jetson-orin/" in get_hardware("jetson-orin").source


def test_peaks_are_dense_not_sparse():
    h100 = get_hardware("h100-sxm")
    assert h100.peak_flops("bfloat16") == pytest.approx(989.4e12)
    assert h100.peak_flops("fp8") == pytest.approx(1978.9e12)
    assert h100.bandwidth == pytest.approx(3350e9)
    assert get_hardware("h200").peak_flops("float16") == h100.peak_flops("float16")
    assert get_hardware("rtx-4090").peak_flops("bfloat16") == pytest.approx(165.2e12)  # FP32 accumulate
    assert get_hardware("l40s").peak_flops("fp8") == pytest.approx(733e12)
    assert get_hardware("a100-80gb").peak_flops("int8") == pytest.approx(624e12)
    assert get_hardware("jetson-orin").bandwidth == pytest.approx(204.8e9)


def test_unsupported_dtypes_raise():
    with pytest.raises(ValueError, match="no fp8"):
        get_hardware("a100-80gb").peak_flops("fp8")
    with pytest.raises(ValueError, match="float32"):
        get_hardware("h100-sxm").peak_flops("float32")


def test_unknown_key_lists_known_keys():
    with pytest.raises(ValueError) as info:
        get_hardware("tpu-v5")
    assert all(key in str(info.value) for key in KEYS)


@pytest.mark.parametrize(
    "name, key",
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"),
        ("NVIDIA L40S", "l40s"),
        ("Orin", "jetson-orin"),
    ],
)
def test_match_hardware(name, key):
    assert match_hardware(name).key == key


OTHER_PRODUCTS = [
    "NVIDIA GH200 480GB",
    "NVIDIA H100 NVL",
    "NVIDIA A100-SXM4-40GB",
    "NVIDIA GeForce RTX 4090 D",
    "NVIDIA L40",
    "Orin Nano",
]


@pytest.mark.parametrize("name", OTHER_PRODUCTS)
def test_other_products_do_not_match(name):
    assert match_hardware(name) is None


def test_measure_ceilings_on_cpu():
    result = measure_ceilings(device="cpu", dtype="bfloat16", size=256, seconds=0.2)
    assert result["gemm_tflops"] > 0 and result["copy_gbs"] > 0
    assert result["dtype"] in ("bfloat16", "float32") and result["gemm_size"] == 256
    assert result["device"] == "cpu" and result["copy_bytes"] == 2 * 64 * 256 * 256 and result["timestamp"]
    assert set(result) == {
        "device",
        "dtype",
        "gemm_tflops",
        "gemm_size",
        "copy_gbs",
        "copy_bytes",
        "timestamp",
        "device_name",
    }
    json.dumps(result)


def test_measure_ceilings_float32_keeps_float32():
    result = measure_ceilings(device="cpu", dtype="float32", size=128, seconds=0.05)
    assert result["dtype"] == "float32" and result["gemm_tflops"] > 0


def test_measure_ceilings_uses_the_core_timing_harness(monkeypatch):
    from nvila_bench.suites import ceilings

    calls = []

    def counting(iteration, device, cfg, region=None):
        calls.append(cfg)
        return real(iteration, device, cfg, region)

    real = ceilings.measure
    monkeypatch.setattr(ceilings, "measure", counting)
    ceilings.measure_ceilings(device="cpu", dtype="float32", size=64, seconds=0.02)
    assert any(cfg.min_seconds == 0.02 for cfg in calls)  # the timed runs: `seconds` decides how many iterations


def test_measure_ceilings_rejects_unknown_dtype():
    with pytest.raises(ValueError, match="int4"):
        measure_ceilings(dtype="int4")


def test_save_load_round_trip_is_atomic(tmp_path):
    ceilings = {"device": "cpu", "gemm_tflops": 1.5, "copy_gbs": 20.0}
    path = save_ceilings(ceilings, tmp_path / "out")
    assert path == tmp_path / "out" / CEILINGS_FILE
    save_ceilings(ceilings | {"gemm_tflops": 2.0}, tmp_path / "out")  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == [CEILINGS_FILE]  # no temp files left
    assert load_ceilings(path)["gemm_tflops"] == 2.0
    assert load_ceilings(path.parent) == load_ceilings(path)
    assert load_ceilings(tmp_path / "missing.json") is None


def test_failed_save_leaves_no_temp_file(tmp_path):
    with pytest.raises(TypeError):
        save_ceilings({"bad": object()}, tmp_path)
    assert list(tmp_path.iterdir()) == []
