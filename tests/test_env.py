import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nvila_bench.core.measuring.env import capture_environment, git_state


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
        assert env["git_dirty"] is None and env["git_diff_sha256"] is None
    else:
        assert re.fullmatch(r"[0-9a-f]{40}", env["git_revision"])
        assert isinstance(env["git_dirty"], bool)
        assert (env["git_diff_sha256"] is not None) == env["git_dirty"]


def _git(repo, *args):
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
    ).stdout


def test_a_dirty_tree_names_its_changes_by_the_digest_of_its_diff(tmp_path):
    """A record taken on an uncommitted tree carries sha256(git diff HEAD): two dirty runs with other changes
    differ, the same changes give the same digest, and a clean tree has none."""
    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    _git(package, "init", "-q")
    _git(package, "add", ".")
    _git(package, "commit", "-q", "-m", "one")
    clean = git_state(package)
    assert clean["git_dirty"] is False and clean["git_diff_sha256"] is None and len(clean["git_revision"]) == 40
    (package / "__init__.py").write_text("x = 2\n")
    (package / "new.py").write_text("untracked: not in the diff, as git_dirty ignores it\n")
    dirty = git_state(package)
    diff = _git(package, "diff", "--binary", "HEAD")
    assert dirty["git_dirty"] is True and dirty["git_revision"] == clean["git_revision"]
    assert dirty["git_diff_sha256"] == hashlib.sha256(diff).hexdigest() and b"+x = 2" in diff
    assert git_state(package) == dirty
    (package / "__init__.py").write_text("x = 3\n")
    assert git_state(package)["git_diff_sha256"] not in (None, dirty["git_diff_sha256"])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "__init__.py").write_text("")
    assert git_state(outside) == {"git_revision": None, "git_dirty": None, "git_diff_sha256": None}


def _record_dict() -> dict:
    line = (Path(__file__).parents[1] / "results" / "h100-sxm-2026-11-28" / "results.jsonl").read_text().splitlines()[0]
    return json.loads(line)


def test_the_digest_is_part_of_the_record_schema():
    from nvila_bench.core.measuring.record_schema import validate_record

    record = _record_dict()
    record["environment"]["git_diff_sha256"] = "f" * 64
    validate_record(record)
    record["environment"]["git_diff_sha256"] = "not a digest"
    with pytest.raises(ValueError, match="git_diff_sha256"):
        validate_record(record)


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
