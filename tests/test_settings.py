"""Settings declared once (core/measuring/settings.py): a point's fields and the measuring rules are the command
line's options, its sweep axes and a suite file's keys; the request sized for a CPU; sweep progress on stderr."""

from dataclasses import dataclass

import click
import pytest
from conftest import read_dicts

from nvila_bench.cli import main
from nvila_bench.cli.options import axes_given, measure_options, point_options
from nvila_bench.core.measuring.point import CPU_REQUEST, BenchPoint, points_from_axes
from nvila_bench.core.measuring.settings import declared, setting
from nvila_bench.core.measuring.timing import MeasureConfig


@dataclass(frozen=True)
class WiderPoint(BenchPoint):
    kv_bits: int = setting(16, kind=int, minimum=2, help="Bits per KV cache entry.")


def command_of(cls) -> click.Command:
    def callback(**params):
        return params

    for option in reversed(point_options(cls)):
        callback = option(callback)
    return click.command(name="x")(callback)


def test_a_new_field_is_an_option_a_sweep_axis_and_a_checked_setting():
    command = command_of(WiderPoint)
    text = " ".join(command.get_help(click.Context(command)).split())
    assert "--kv-bits INTEGER Bits per KV cache entry. [default: 16]" in text
    params = command.make_context("x", ["--preset", "nvila-tiny", "--kv-bits", "4", "--kv-bits", "8"]).params
    axes = {name: values for name, (_, values, _) in axes_given(params, cls=WiderPoint).items()}
    assert axes["kv_bits"] == [4, 8] and axes["preset"] == ["nvila-tiny"]
    points = points_from_axes(axes, WiderPoint)
    assert [p.kv_bits for p in points] == [4, 8] and points[0].to_config()["kv_bits"] == 4  # recorded
    with pytest.raises(ValueError, match="kv_bits must be >= 2, got 1"):
        WiderPoint("nvila-tiny", kv_bits=1)
    assert "kv_bits" not in axes_given(command.make_context("x", ["--preset", "nvila-tiny"]).params)  # BenchPoint's


def test_every_point_setting_and_measuring_rule_is_an_option_of_every_suite(capsys):
    assert main(["run", "prefill", "--help"]) == 0
    text = capsys.readouterr().out
    for d in [*declared(BenchPoint).values(), *declared(MeasureConfig).values()]:
        assert d.flag in text
    assert len(measure_options()) == len(declared(MeasureConfig)) == 5
    assert main(["run", "prefill", "--preset", "nvila-tiny", "--warmup", "-1", "--out", "x"]) == 2
    assert "'--warmup': -1 is not in the range 0<=x<=1000000" in capsys.readouterr().err


def test_the_profile_command_takes_the_same_declared_settings(capsys):
    assert main(["profile", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--preset", "--device", "--dtype", "--image", "--video-frames", "--no-temporal-pool", "--attn"):
        assert flag in text
    assert "--engine" not in text  # a profile runs the model's own forward


# ------------------------------------------------------------------------------------------ CPU-sized requests
def test_the_deployment_ladder_on_a_cpu_defaults_to_a_request_sized_for_it():
    from nvila_bench.suites.deployment import expand

    def request(axes):
        points = [j.point for j in expand(axes, {"rung": ("bf16",)})]
        return {(p.images, p.video_frames, p.new_tokens) for p in points}

    image, frames, new = CPU_REQUEST["images"], CPU_REQUEST["video_frames"], CPU_REQUEST["new_tokens"]
    assert request({"preset": ["nvila-tiny"]}) == {(image, None, new), ((), frames, new)}
    assert request({"preset": ["nvila-tiny"], "device": ["cuda"]}) == {(((1920, 1080),), None, 32), ((), 64, 32)}
    given = {"preset": ["nvila-tiny"], "images": [((640, 480),)], "video_frames": [4], "new_tokens": [3]}
    assert request(given) == {(((640, 480),), None, 3), ((), 4, 3)}  # what the user gives is measured


def test_scale_then_compress_sizes_its_request_for_a_cpu_only_where_it_measures_there():
    from nvila_bench.suites.scale_then_compress import expand

    def request(options, axes=None):
        return {(j.point.images, j.point.video_frames) for j in expand(axes or {"device": ["cpu"]}, options)}

    assert request({"tiny": True}) == {(CPU_REQUEST["images"], None), ((), CPU_REQUEST["video_frames"])}
    assert request({"tiny": False}) == {(((1920, 1080),), None), ((), 32)}  # analytic floors of a GPU's request
    assert request({"tiny": True}, {"device": ["cuda"]}) == {(((1920, 1080),), None), ((), 32)}


def test_run_help_states_the_cpu_request(capsys):
    assert main(["run", "deployment", "--help"]) == 0
    assert "on cpu one 448x448 image, 8 video frames, 8 new tokens" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------------------------------------------- progress
RUN = ["run", "scale-then-compress", "--hardware", "h100-sxm"]  # six analytic points, measured in no time


def test_progress_is_off_where_stderr_is_not_a_terminal_unless_asked_for(capsys, tmp_path):
    assert main([*RUN, "--out", str(tmp_path / "a")]) == 0
    assert "point 1/6" not in capsys.readouterr().err
    assert main([*RUN, "--progress", "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "scale-then-compress point 6/6" in err and "6/6 [" in err  # the count, then elapsed < ETA
    assert "nvila-8b 1920x1080 b1 bfloat16" in err  # the point's settings
    assert len(read_dicts(tmp_path / "b")) == 6
    assert main([*RUN, "--progress", "--quiet", "--out", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().err == ""


def test_progress_shows_on_a_terminal_and_not_with_quiet(capsys, tmp_path, monkeypatch):
    import importlib
    import sys

    run = importlib.import_module("nvila_bench.cli.run")  # the module (nvila_bench.cli.run is the click group)

    monkeypatch.setattr(run, "PROGRESS_DELAY", 0.0)  # a sweep of a few seconds shows none (3 s on a terminal)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*RUN, "--out", str(tmp_path / "a")]) == 0
    assert "scale-then-compress point 3/6" in capsys.readouterr().err
    assert main([*RUN, "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().err == ""
