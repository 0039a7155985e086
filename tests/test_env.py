import json
import re
import sys

import torch

from nvila_bench.core.env import capture_environment


def test_capture_is_json_serialisable_and_complete():
    env = capture_environment(attn_implementation="sdpa", device="cpu")
    json.dumps(env)
    assert env["torch"] == torch.__version__
    assert env["attn_implementation"] == "sdpa" and env["device"] == "cpu"
    assert env["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]  # local tags differ by wheel
    assert "flash-attn" in env["packages"] and env["nvila_bench"]
    assert env["cpu_count"] >= 1 and env["memory_bytes"] > 0
    assert env["torch_device_name"] is None


def test_gpu_is_reported_or_explained():
    env = capture_environment()
    if env["gpu"] is None:
        assert isinstance(env["gpu_error"], str) and env["gpu_error"] and "\n" not in env["gpu_error"]
    else:
        assert env["gpu"] and all("name" in gpu for gpu in env["gpu"])


def test_git_revision_is_a_sha_or_none():
    env = capture_environment()
    if env["git_revision"] is None:
        assert env["git_dirty"] is None
    else:
        assert re.fullmatch(r"[0-9a-f]{40}", env["git_revision"])
        assert isinstance(env["git_dirty"], bool)


class _BrokenNvml:
    def nvmlInit(self):
        raise RuntimeError("driver exploded\nsecond line")


def test_broken_nvml_never_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _BrokenNvml())
    env = capture_environment()
    assert env["gpu"] is None
    assert env["gpu_error"] == "RuntimeError: driver exploded"


def test_missing_pynvml_never_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    env = capture_environment()
    assert env["gpu"] is None and "pynvml" in env["gpu_error"]


class _FakeNvml:
    """Two GPUs; GPU 1 fails some queries, as old drivers and consumer boards do."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    class _Memory:
        total = 80 * 2**30

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-{handle}abc"

    def nvmlDeviceGetMemoryInfo(self, handle):
        return self._Memory()

    def nvmlDeviceGetClockInfo(self, handle, clock):
        return 1980

    def nvmlDeviceGetMaxClockInfo(self, handle, clock):
        if handle == 1:
            raise RuntimeError("Not Supported")
        return 1980

    def nvmlDeviceGetPowerManagementLimit(self, handle):
        return 700_000

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 40

    def nvmlDeviceGetPersistenceMode(self, handle):
        return 1

    def nvmlDeviceGetMigMode(self, handle):
        raise RuntimeError("Not Supported")


def test_nvml_fields_and_unsupported_queries(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = capture_environment()["gpu"]
    assert [gpu["index"] for gpu in gpus] == [0, 1]
    first, second = gpus
    assert first["driver_version"] == "550.54.15" and first["power_limit_w"] == 700.0
    assert first["memory_total_bytes"] == 80 * 2**30 and first["max_sm_clock_mhz"] == 1980
    assert second["max_sm_clock_mhz"] is None and second["mig_mode"] is None


def test_cuda_visible_devices_selects_and_orders_gpus(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1,0,7,1")
    assert [gpu["index"] for gpu in capture_environment()["gpu"]] == [1, 0]  # the list ends at unknown "7"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    env = capture_environment()
    assert env["gpu"] is None and env["gpu_error"]


