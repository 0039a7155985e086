"""Architecture checks: the import layers (import-linter's contracts in pyproject.toml), the size of source
files, and that a new suite is one module plus one registry line."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib
from conftest import read_dicts

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def installed_layout(dest: Path) -> Path:
    """The package as it installs (model/, suites/, reports/ inside nvila_bench/), copied under `dest`:
    import-linter walks the package's folder, which in the repository lacks the three mapped subpackages."""
    for package, folder in sorted(PACKAGE_DIRS.items()):
        target = dest / package.replace(".", "/")
        shutil.copytree(REPO / folder, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_import_layers_hold(tmp_path):
    site = installed_layout(tmp_path / "site")
    env = os.environ | {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    proc = subprocess.run(
        [lint, str(REPO / "pyproject.toml"), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 5 kept, 0 broken" in proc.stdout


def test_every_suite_is_in_the_independence_contract():
    """The contract "suites are independent" (pyproject.toml) lists exactly the registry's suite modules."""
    from nvila_bench.suites.registry import REGISTRY

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (independent,) = [c for c in contracts if c["type"] == "independence"]
    assert sorted(independent["modules"]) == sorted(f"nvila_bench.suites.{m}" for m in REGISTRY.values())


def test_a_suite_importing_another_breaks_independence(tmp_path):
    site = installed_layout(tmp_path / "site")
    with (site / "nvila_bench" / "suites" / "overhead.py").open("a") as f:
        f.write("from .prefill import measure_point as _prefill  # noqa\n")
    env = os.environ | {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    proc = subprocess.run(
        [lint, str(REPO / "pyproject.toml"), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "nvila_bench.suites.overhead -> nvila_bench.suites.prefill" in proc.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    site = installed_layout(tmp_path / "site")
    (site / "nvila_bench" / "core" / "upward.py").write_text("from nvila_bench.suites import registry\n")
    env = os.environ | {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    proc = subprocess.run(
        [lint, str(REPO / "pyproject.toml"), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "nvila_bench.core.upward -> nvila_bench.suites.registry" in proc.stdout


def test_no_source_file_over_400_lines():
    files = [p for folder in ("nvila_bench", "model", "suites", "reports") for p in (REPO / folder).rglob("*.py")]
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > 400}
    assert files and not long


EXAMPLE_SUITE = """
from nvila_bench.core.measuring.results import Metric
from nvila_bench.model import count_visual_tokens, get_preset

from .registry import Option, Suite


def measure(point, session):
    count = count_visual_tokens(get_preset(point.preset), point.images, point.video_frames, point.temporal_pool)
    return {"media_tokens": Metric.measured(count.total_tokens * point.extra["scale"], "tokens")}


SUITE = Suite("example", "Counts tokens.", measure, options=(Option("scale", "A factor.", int, 1),))
"""


def test_a_new_suite_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    """What docs/architecture.md tells a newcomer: write suites/example.py, add one line to REGISTRY."""
    import nvila_bench.suites
    from nvila_bench.suites import registry

    from nvila_bench.cli import main

    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "example.py").write_text(EXAMPLE_SUITE)
    monkeypatch.setattr(nvila_bench.suites, "__path__", [*nvila_bench.suites.__path__, str(folder)])
    monkeypatch.setitem(registry.REGISTRY, "example", "example")
    out = tmp_path / "out"
    assert (
        main(["run", "example", "--preset", "nvila-tiny", "--image", "1920x1080", "--scale", "3", "--out", str(out)])
        == 0
    )
    (record,) = read_dicts(out)
    assert record["suite"] == "example" and record["status"] == "ok"
    assert record["metrics"]["media_tokens"]["value"] == 3 * 3073  # NVILA-8B geometry at 1920x1080, times --scale
    assert record["config"]["extra"] == {"scale": 3}  # the suite's options are recorded with the point
    assert main(["run", "example", "--preset", "nvila-tiny", "--recipe", "x", "--out", str(out)]) == 2


TOY_SUITE = """
from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec
from nvila_bench.model import count_visual_tokens, get_preset

from .registry import Suite

COST = MetricSpec("toy_time", "s", "lower", gated=True, headline=True, help="A microsecond per media token.")


def measure(point, session):
    count = count_visual_tokens(get_preset(point.preset), point.images, point.video_frames, point.temporal_pool)
    return {"toy_time": Metric.timing([count.total_tokens * 1e-6 * (1 + i / 100) for i in range(5)])}


SUITE = Suite("toy", "A toy suite that declares one metric.", measure, metrics=(COST,))
"""


def test_a_declared_metric_reaches_the_report_the_gate_and_the_dashboard(tmp_path, monkeypatch, capsys):
    """A new suite declares a metric (gated, headline, with its unit and help) and nothing else changes: the
    report's generic table shows it, `gate` compares it by default, the dashboard charts it."""
    import nvila_bench.suites
    from nvila_bench.suites import registry

    from nvila_bench.cli import main

    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY_SUITE)
    monkeypatch.setattr(nvila_bench.suites, "__path__", [*nvila_bench.suites.__path__, str(folder)])
    monkeypatch.setitem(registry.REGISTRY, "toy", "toy")
    history = tmp_path / "history"
    for day in ("2026-11-01", "2026-11-02"):
        argv = ["run", "toy", "--preset", "nvila-tiny", "--image", "1920x1080", "--out", str(history / day)]
        assert main(argv) == 0
    page = tmp_path / "report.html"
    assert main(["report", str(history / "2026-11-02"), "--out", str(page)]) == 0
    html = page.read_text()
    start = html.index('<section id="suite-toy">')
    toy = html[start : html.index("</section>", start)]
    assert "A toy suite that declares one metric." in toy and "nvila-tiny 1920x1080 b1 float32" in toy
    assert '<th title="A microsecond per media token.">toy_time</th>' in toy
    assert '<td class="num">3.134 ms</td>' in toy  # the record's median (3073 tokens x 1.02 us), in its column
    assert 'href="#suite-toy">toy</a>' in html  # and in the page's navigation
    capsys.readouterr()
    assert main(["gate", "--baseline", str(history / "2026-11-01"), "--candidate", str(history / "2026-11-02")]) == 0
    row = "| toy nvila-tiny 1920x1080 b1 float32 | toy_time | 3.134 ms | 3.134 ms | +0.0% ["  # then the CI
    assert row in (out := capsys.readouterr().out) and out.count("| pass |") == 1
    site = tmp_path / "site"
    assert main(["dashboard", str(history), "--out", str(site)]) == 0
    index = (site / "index.html").read_text()
    trends = index[index.index('<section id="trends">') :]
    assert "toy_time" in trends and "<svg" in trends
