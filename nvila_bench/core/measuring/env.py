"""The software and hardware environment recorded with every benchmark run.

A latency number is only meaningful next to the GPU, driver, clocks and library versions that produced it, so
`capture_environment` collects them into one JSON-serialisable dict. Capturing must never fail a run: every probe
(NVML, git, /proc) is guarded and degrades to None plus, for the GPU, a one-line reason.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch
import transformers

import nvila_bench

# Distribution names (as pip knows them) whose versions can change results.
PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "peft",
    "safetensors",
    "numpy",
    "pandas",
    "click",
    "jinja2",
    "nvidia-ml-py",
    "flash-attn",
    "lmms-eval",
)

# The fields that decide whether two runs' numbers may be compared directly.
FINGERPRINT_FIELDS = ("torch", "cuda", "transformers", "attn_implementation", "device")

GIT_TIMEOUT_S = 5.0


def capture_environment(attn_implementation: str | None = None, device: str = "cpu") -> dict:
    """Everything that can explain a difference between two runs' numbers; never raises."""
    env = gpu_info()
    env.update(
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=_cudnn_version(),
        transformers=transformers.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count(),
        memory_bytes=_memory_bytes(),
        attn_implementation=attn_implementation,
        device=device,
        torch_device_name=_torch_device_name(device),
        nvila_bench=nvila_bench.__version__,
        packages=package_versions(),
    )
    env.update(git_state())
    return env


def gpu_info() -> dict:
    """{"gpu": [per-GPU dict, ...]} from NVML, or {"gpu": None, "gpu_error": why} when NVML is unusable.

    pynvml is imported here, not at module level, so machines without it (or without a driver) can still
    import this module.
    """
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        return {"gpu": None, "gpu_error": _one_line(exc)}
    try:
        driver = _text(_nvml(pynvml.nvmlSystemGetDriverVersion))
        indices = _visible_indices(pynvml)
        gpus = [_gpu_entry(pynvml, pynvml.nvmlDeviceGetHandleByIndex(i), i, driver) for i in indices]
    except Exception as exc:
        return {"gpu": None, "gpu_error": _one_line(exc)}
    finally:
        _nvml(pynvml.nvmlShutdown)
    if not gpus:
        return {"gpu": None, "gpu_error": "NVML found no visible GPU"}
    return {"gpu": gpus}


def _gpu_entry(nvml, handle, index: int, driver: str | None) -> dict:
    """One GPU's identity, clocks and limits; each field is None when this GPU or driver does not report it."""
    memory = _nvml(nvml.nvmlDeviceGetMemoryInfo, handle)
    power_mw = _nvml(nvml.nvmlDeviceGetPowerManagementLimit, handle)
    mig = _nvml(nvml.nvmlDeviceGetMigMode, handle)  # (current, pending)
    return {
        "index": index,
        "name": _text(_nvml(nvml.nvmlDeviceGetName, handle)),
        "uuid": _text(_nvml(nvml.nvmlDeviceGetUUID, handle)),
        "driver_version": driver,
        "memory_total_bytes": None if memory is None else int(memory.total),
        "sm_clock_mhz": _nvml(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
        "memory_clock_mhz": _nvml(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
        "max_sm_clock_mhz": _nvml(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM),
        "max_memory_clock_mhz": _nvml(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_MEM),
        "power_limit_w": None if power_mw is None else power_mw / 1000,
        "temperature_c": _nvml(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
        "persistence_mode": _nvml(nvml.nvmlDeviceGetPersistenceMode, handle),
        "mig_mode": None if mig is None else mig[0],
    }


def _visible_indices(nvml) -> list[int]:
    """NVML indices of the GPUs this process may use, in CUDA_VISIBLE_DEVICES order.

    NVML ignores CUDA_VISIBLE_DEVICES, so without this a run pinned to GPU 3 would record GPU 0. As in CUDA,
    the list ends at the first entry that names no GPU; entries may be indices or (prefixes of) GPU UUIDs.
    """
    count = nvml.nvmlDeviceGetCount()
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return list(range(count))
    uuids = [_text(_nvml(nvml.nvmlDeviceGetUUID, nvml.nvmlDeviceGetHandleByIndex(i))) or "" for i in range(count)]
    indices: list[int] = []
    for token in (t.strip() for t in spec.split(",")):
        match = _resolve_device(token, uuids)
        if match is None or match in indices:
            break
        indices.append(match)
    return indices


def _resolve_device(token: str, uuids: list[str]) -> int | None:
    if token.isdigit():
        return int(token) if int(token) < len(uuids) else None
    hits = [i for i, uuid in enumerate(uuids) if token and uuid.startswith(token)]
    return hits[0] if len(hits) == 1 else None


def _nvml(fn, *args):
    """Call one NVML query; None when this GPU/driver does not support it or it fails."""
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value) -> str | None:
    """NVML strings are bytes in older nvidia-ml-py releases and str in newer ones."""
    return value.decode() if isinstance(value, bytes) else value


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _cudnn_version() -> int | None:
    try:
        return torch.backends.cudnn.version()
    except Exception:
        return None


def _torch_device_name(device: str) -> str | None:
    """The name torch reports for `device`; None off CUDA, where there is no such name."""
    if not device.startswith("cuda"):
        return None
    try:
        return torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else None
    except Exception:
        return None


def cpu_model() -> str | None:
    """The CPU's marketing name; /proc/cpuinfo first because platform.processor() is often just 'x86_64'."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf on Windows; name unknown elsewhere
        return None


def package_versions() -> dict[str, str | None]:
    """Installed version of each distribution in PACKAGES, None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(package_dir: Path | None = None) -> dict:
    """{"git_revision", "git_dirty", "git_diff_sha256"} of the checkout nvila_bench is imported from (or of
    `package_dir`); all None outside one. The digest is `git diff --binary HEAD | sha256sum` (the tracked changes),
    None on a clean tree: a record taken on a dirty tree names the changes it ran with.

    The package directory must be tracked by git: a wheel installed into a venv that happens to sit inside
    some repository must not be credited with that repository's revision.
    """
    package_dir = package_dir or Path(nvila_bench.__file__).resolve().parent
    tracked = _git(package_dir, "ls-files", "--error-unmatch", "__init__.py")
    revision = _git(package_dir, "rev-parse", "HEAD") if tracked is not None else None
    if revision is None:
        return {"git_revision": None, "git_dirty": None, "git_diff_sha256": None}
    status = _git(package_dir, "status", "--porcelain", "--untracked-files=no")
    dirty = None if status is None else bool(status)
    diff = _git_bytes(package_dir, "diff", "--no-ext-diff", "--no-color", "--binary", "HEAD") if dirty else None
    digest = None if diff is None else hashlib.sha256(diff).hexdigest()
    return {"git_revision": revision, "git_dirty": dirty, "git_diff_sha256": digest}


def _git(cwd: Path, *args: str) -> str | None:
    """stdout of one git command (stripped text), or None when git is missing, fails or hangs."""
    out = _git_bytes(cwd, *args)
    return None if out is None else out.decode(errors="replace").strip()


def _git_bytes(cwd: Path, *args: str) -> bytes | None:
    """stdout of one git command as it came, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None
