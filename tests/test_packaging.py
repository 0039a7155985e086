"""model/, suites/ and reports/ install as nvila_bench.model / .suites / .reports, never top-level, both
from a built wheel and from the editable install."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("model", "suites", "reports")
LAYERS = ("core", "runner", "cli")  # inside nvila_bench/


def _python(code: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"} | ({"PYTHONPATH": str(pythonpath)} if pythonpath else {})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_built_wheel_layout_and_import(tmp_path):
    # Built from a copy of the tracked files (a stale build/ of the checkout cannot leak in), without build
    # isolation: no package index is needed, the machine's setuptools builds it.
    src = tmp_path / "src"
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    )
    for name in filter(None, files):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((REPO / name).read_bytes())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("nvila_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for sub in SUBPACKAGES:
        assert f"nvila_bench/{sub}/__init__.py" in names
    for layer in LAYERS:
        assert f"nvila_bench/{layer}/__init__.py" in names
    assert "nvila_bench/model/nvila.py" in names and "nvila_bench/core/analysis/hardware.toml" in names
    assert "nvila_bench/model/engines/compiled.py" in names  # a subpackage of a mapped one
    assert not [n for n in names if n.split("/")[0] in (*SUBPACKAGES, "tests")]
    assert any(n.endswith("entry_points.txt") for n in names)

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True
    )
    proc = _python(
        "import nvila_bench.model.tokens as t, nvila_bench.suites, nvila_bench.reports; print(t.__file__)",
        cwd=tmp_path,
        pythonpath=site,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(site / "nvila_bench" / "model"))


def test_editable_install_maps_to_repository_folders(tmp_path):
    proc = _python(
        "import nvila_bench.model as m, nvila_bench.reports as r; print(m.__path__[0]); print(r.__path__[0])", tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(REPO / "model"), str(REPO / "reports")]


def test_no_top_level_model_package(tmp_path):
    proc = _python("import model", tmp_path)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
