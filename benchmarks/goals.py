"""The goals of issues 15 (fast inference) and 16 (the deployment ladder), read from a results folder that
benchmarks/gpu_session.sh wrote: one table, each goal met, missed or unmeasured, with its figure and its record.

    python benchmarks/goals.py FOLDER [--write] [--report] [--versions]
      --write     also write FOLDER/goals.md
      --report    also write FOLDER/report.html (the HTML report of FOLDER/results.jsonl), in the same process
      --versions  first write FOLDER/versions.txt (GPU, driver, torch, triton, torchao, gemlite...) and print it

Issue 15's point: NVILA-8B, bf16, batch 1, one 1920x1080 image + 64 text tokens (decode: 128 new tokens), GPU
preprocessing, the compiled engine (not a JPEG file's point); its peer, hf-static, from the same run. Decode is
judged by its MBU against the run's own measured copy rate (ceilings.json), which carries from an H100 to an H200;
the time per token is shown beside it. Issue 16's: the ladder's image rungs of NVILA-8B with the compiled engine
(bf16, W4A16 LLM, + W8A8 vision tower) and transformers + torchao int4 (hf-static, the W4A16 rung).
A figure from a point whose engine fell back (any `engine_note`) never meets a goal: it reads "missed (fell back:
note)". The A/A rows read aa-decode.txt / aa-prefill.txt (benchmarks/aa_pairs.py); versions.txt and parts.txt
(gpu_session.sh) are listed below the table.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from nvila_bench.reports.engines import AGREE_TOKENS, LOGITS_CLOSE, agreement
from nvila_bench.reports.views.deployment import matches

from nvila_bench.core.measuring.result_files import read_results
from nvila_bench.core.measuring.results import Record, hardware_of

BIG, SMALL = "nvila-8b", "nvila-lite-2b"
AA_PAIRS, AA_PROCESSES = 5, 2  # the A/A goal: 0 false alarms in 5 pairs, each side measured in 2+ fresh processes


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    figure: str | None  # the measured figure in words; None: unmeasured
    met: bool | None  # None: unmeasured, or a figure reported without a target
    records: tuple[Record, ...] = ()  # the records the figure comes from
    reported: bool = False  # a figure the issue asks to report, with no target

    @property
    def fell_back(self) -> str | None:
        """The engine notes of the records behind the figure: a compiled engine, prefill, vision tower or int4
        kernel that ran another way."""
        notes = dict.fromkeys(str(r.value("engine_note")) for r in self.records if r.value("engine_note"))
        return "; ".join(notes) or None

    @property
    def verdict(self) -> bool | None:
        """met, missed (a fallen-back figure is missed), or None: unmeasured or reported."""
        if self.figure is None or self.reported and not self.fell_back:
            return None
        return False if self.fell_back else self.met

    @property
    def status(self) -> str:
        if self.figure is None:
            return "unmeasured"
        if self.fell_back:
            return f"**missed** (fell back: {self.fell_back})"
        return "reported" if self.reported else {None: "unmeasured", True: "met", False: "**missed**"}[self.met]

    def row(self) -> str:
        source = ", ".join(f"`{r.suite}/{r.point_id}` run `{r.run_id}`" for r in self.records) or "-"
        return f"| {self.name} | {self.target} | {self.figure or '-'} | {self.status} | {source} |"


# ---- which record stands for a goal ------------------------------------------------------------------------
def _request(r: Record, suite: str, preset: str, engine: str) -> bool:
    c = r.config
    return (
        r.suite == suite
        and r.preset == preset
        and r.ok
        and r.provenance == "measured"
        and c.get("engine") == engine
        and c.get("batch_size", 1) == 1
        and c.get("dtype") == "bfloat16"
        and c.get("images") == ["1920x1080"]
        and c.get("prompt_tokens") == 64
        and c.get("preprocess", "gpu") == "gpu"
        and (suite == "prefill" or c.get("new_tokens") == 128)
        and not r.extra.get("image_file")
    )  # a JPEG file's point: its decoding is inside preprocessing


def _newest(found: list[Record], run_id: str | None = None) -> Record | None:
    """The newest of `found`, of run `run_id` where that run has one."""
    same = [r for r in found if r.run_id == run_id]
    return max(same or found, key=lambda r: r.timestamp) if found else None


def pick(records: list[Record], suite: str, preset: str, engine: str = "compiled", run_id: str | None = None):
    """The newest record of the goal point (of run `run_id` where given), or None."""
    found = [r for r in records if _request(r, suite, preset, engine) and run_id in (None, r.run_id)]
    return _newest(found)


def rung(records: list[Record], name: str, engine: str = "compiled", run_id: str | None = None) -> Record | None:
    """The newest image-request record of NVILA-8B's ladder rung `name` (of run `run_id` where it has one), with
    a bf16 LM head (the paper's deployment), or None."""
    found = [r for r in records if _request(r, "deployment", BIG, engine) and r.extra.get("rung") == name]
    found = [r for r in found if r.extra.get("media") == "image" and r.extra.get("lm_head") != "quantized"]
    return _newest(found, run_id)


# ---- goal rows ---------------------------------------------------------------------------------------------
def _at_most(name: str, target: float, record: Record | None, metric: str, scale: float, unit: str) -> Goal:
    v = record.value(metric) if record else None
    if v is None:
        return Goal(name, f"<= {target:g} {unit}", None, None)
    return Goal(name, f"<= {target:g} {unit}", f"{v * scale:.4g} {unit}", v * scale <= target, (record,))


def _at_least(name: str, target: float, v: float | None, text: str | None = None, records=(), unit: str = "") -> Goal:
    if v is None:
        return Goal(name, f">= {target:g}{unit}", None, None)
    return Goal(name, f">= {target:g}{unit}", text or f"{v:.3g}", v >= target, tuple(r for r in records if r))


def _ratio(
    name: str,
    target: float,
    ours: Record | None,
    theirs: Record | None,
    metric: str,
    higher: bool,
    unit: str,
    scale: float = 1.0,
) -> Goal:
    """`ours` over `theirs` on `metric` (a rate: ours / theirs; a time: theirs / ours), >= target."""
    a, b = (r.value(metric) if r else None for r in (ours, theirs))
    if not a or not b:
        return Goal(name, f">= {target:g}x", None, None)
    x = a / b if higher else b / a
    other = "" if ours.run_id == theirs.run_id else ", another run"
    figure = f"{x:.2f}x ({a * scale:.4g} vs {b * scale:.4g} {unit}{other})"
    return Goal(name, f">= {target:g}x", figure, x >= target, (ours, theirs))


def mbu_goal(decode: Record | None) -> Goal:
    """Decode MBU against the run's own copy rate: bytes per step over (copy rate x time per token)."""
    name, target = "NVILA-8B decode MBU, of the run's measured copy rate (~5.6 ms/token on an H100)", ">= 0.85"
    mbu = decode.value("decode_step_mbu") if decode else None
    if mbu is None:
        return Goal(name, target, None, None)
    floor, tpot = decode.value("decode_step_floor"), decode.value("tpot")
    figure = f"{mbu:.3f} ({tpot * 1e3:.3f} ms/token" + (f"; floor {floor * 1e3:.2f} ms)" if floor else ")")
    if not str(decode.value("peaks_source") or "").startswith("measured"):  # a datasheet's rate: not the goal's
        return Goal(name, target, figure + ", datasheet peaks: no ceilings.json", None, (decode,))
    return Goal(name, target, figure, mbu >= 0.85, (decode,))


def same_output(decode: Record | None, peer: Record | None) -> Goal:
    """The compiled engine computes what hf-static does: the same first ids (the issue's check) and, since a
    random-weight model's ids can be one id repeated, last-step logits within LOGITS_CLOSE (reports/engines.py)."""
    name = "NVILA-8B decode: compiled = hf-static, same run (bf16)"
    target = f"same first {AGREE_TOKENS} ids, logits within {LOGITS_CLOSE:.0%}"
    found = agreement(decode, peer) if decode and peer else None
    if found is None:
        return Goal(name, target, None, None)
    both = (decode, peer)
    ids = f"ids {'agree' if found['agree'] else 'differ'} ({found['distinct']} distinct of {found['compared']})"
    if found["logits_nan"]:
        return Goal(name, target, f"{ids}; NaN in the logits ({found['logits_nan']})", False, both)
    if found["logits_close"] is not None:
        figure = f"{ids}; last-step logits {found['logits_difference']:.1e} apart"
        return Goal(name, target, figure, found["agree"] and found["logits_close"], both)
    if not found["agree"]:
        return Goal(name, target, ids, False, both)
    # The ids alone then, which say nothing where they are one id repeated
    recorded = all(r.value("last_step_logits") is not None for r in both)
    why = "logits recorded but not comparable:" if recorded else "logits not recorded (before 2026-12-06):"
    if found["same_sequence"] is False:
        why = "the sequences part later (bf16 near-ties can), so"
    figure = f"{ids}; {why} the logits part is unchecked"
    return Goal(name, target, figure, None if found["distinct"] == 1 else True, both)


def aa_goal(folder: Path, suite: str) -> Goal:
    """The last summary line of aa_pairs.py's output ('N false alarm(s) in M A/A pairs (K processes a side)'):
    met with 0 alarms in >= 5 pairs of >= 2 processes a side; a cut run's pairs so far are shown."""
    path = folder / f"aa-{suite}.txt"
    pattern = r"(\d+) false alarm\(s\) in (\d+) A/A pairs(?: \((\d+) processes? a side\))?"
    found = re.findall(pattern, path.read_text()) if path.exists() else []
    name = f"A/A pairs of one {suite} point through `gate` at 5%"
    target = f"0 false alarms in {AA_PAIRS}, {AA_PROCESSES}+ processes a side"
    if not found:
        return Goal(name, target, None, None)
    alarms, pairs, processes = int(found[-1][0]), int(found[-1][1]), int(found[-1][2] or 1)
    figure = f"{alarms} in {pairs}, {processes} process{'es' if processes > 1 else ''} a side"
    if alarms:
        return Goal(name, target, figure, False)
    enough = pairs >= AA_PAIRS and processes >= AA_PROCESSES
    return Goal(name, target, figure + ("" if enough else ": not the goal's setting yet"), True if enough else None)


def peer_ratio(decode: Record | None, peer: Record | None) -> Goal:
    """How many times faster the compiled decode step is than hf-static's, side by side: reported, no target."""
    name = "NVILA-8B decode speed-up over hf-static, same run"
    tpot, peer_tpot = (r.value("tpot") if r else None for r in (decode, peer))
    if not tpot or not peer_tpot:
        return Goal(name, "reported", None, None, reported=True)
    figure = f"{peer_tpot / tpot:.2f}x ({peer_tpot * 1e3:.2f} / {tpot * 1e3:.3f} ms)"
    return Goal(name, "reported", figure, None, (decode, peer), reported=True)


def cv_goal(decode: Record | None) -> Goal:
    cv = (decode.metrics["tpot"].summary or {}).get("cv") if decode else None
    if cv is None:
        return Goal("Time-per-token CV, compiled", "< 2%", None, None)
    return Goal("Time-per-token CV, compiled", "< 2%", f"{cv:.2%}", cv < 0.02, (decode,))


def fast_inference(records: list[Record], folder: Path) -> list[Goal]:
    """Issue 15's goals."""
    decode = pick(records, "decode", BIG)
    peer = decode and pick(records, "decode", BIG, "hf-static", decode.run_id)  # side by side, or none
    big, small = pick(records, "prefill", BIG), pick(records, "prefill", SMALL)
    mfu = [r.value("vision_mfu") if r else None for r in (big, small)]
    both = None if None in mfu else min(mfu)
    return [
        mbu_goal(decode),
        peer_ratio(decode, peer),
        same_output(decode, peer),
        cv_goal(decode),
        _at_most("NVILA-8B TTFT, 1920x1080 + 64 tokens", 110.0, big, "ttft", 1e3, "ms"),
        _at_most("Preprocessing, NVILA-8B", 5.0, big, "preprocess", 1e3, "ms"),
        _at_most("Preprocessing, NVILA-Lite-2B", 5.0, small, "preprocess", 1e3, "ms"),
        _at_least(
            "Vision tower MFU, NVILA-8B / Lite-2B (both)",
            0.55,
            both,
            both and f"{mfu[0]:.3f} / {mfu[1]:.3f}",
            (big, small),
        ),
        _at_least("NVILA-Lite-2B LLM prefill MFU", 0.40, small and small.value("llm_prefill_mfu"), records=(small,)),
        aa_goal(folder, "decode"),
        aa_goal(folder, "prefill"),
    ]


COMPONENTS = ("vision", "projector", "llm")


def bytes_goal(w4: Record | None) -> Goal:
    """The W4A16 rung's weight bytes, every component within 1% of the cost model's prediction."""
    name, target = "W4A16 rung: weight bytes measured vs predicted (ViT, projector, LLM)", "within 1%"
    pairs = [(w4.value(f"{c}_weights_bytes"), w4.value(f"{c}_weights_bytes_predicted")) for c in COMPONENTS if w4]
    if not pairs or any(None in p for p in pairs):
        return Goal(name, target, None, None)
    measured, predicted = sum(m for m, _ in pairs), sum(p for _, p in pairs)
    figure = f"{measured / 1e9:.3f} GB vs {predicted / 1e9:.3f} GB ({measured / predicted - 1:+.2%})"
    return Goal(name, target, figure, all(matches(m, p) for m, p in pairs), (w4,))


def prefill_goal(w4: Record | None, bf16: Record | None) -> Goal:
    """W4A16's LLM prefill (gemlite: dequantize + cuBLAS from 256 tokens) no slower than the bf16 rung's."""
    name = "W4A16 LLM prefill vs the bf16 rung's"
    ours, theirs = (r.value("llm_prefill") if r else None for r in (w4, bf16))
    if ours is None or theirs is None:
        return Goal(name, "no slower", None, None)
    other = "" if w4.run_id == bf16.run_id else ", another run"
    figure = f"{ours * 1e3:.2f} vs {theirs * 1e3:.2f} ms ({ours / theirs:.2f}x the time{other})"
    return Goal(name, "no slower", figure, ours <= theirs, (w4, bf16))


def deployment(records: list[Record]) -> list[Goal]:
    """Issue 16's goals: the W4A16 rung against 300 tokens/s, the bf16 rung and transformers + torchao int4; its
    prefill against bf16's; its weight bytes against the prediction; the W8A8 vision tower against bf16's."""
    w4 = rung(records, "w4a16-llm")
    bf16 = rung(records, "bf16", run_id=w4.run_id if w4 else None)
    peer = rung(records, "w4a16-llm", "hf-static")
    w8 = rung(records, "w8a8-vit-int8")
    tower = bf16 or rung(records, "bf16", run_id=w8.run_id if w8 else None)  # the bf16 tower to compare with
    tps = w4.value("decode_tokens_per_s") if w4 else None
    kernel = f" ({w4.extra['int4_kernel']})" if w4 and w4.extra.get("int4_kernel") else ""
    peer_kernel = f", {peer.extra['int4_kernel']}" if peer and peer.extra.get("int4_kernel") else ""
    return [
        _at_least(
            "W4A16 decode, NVILA-8B image request", 300, tps, tps and f"{tps:.1f} tokens/s{kernel}", (w4,), " tokens/s"
        ),
        _ratio("W4A16 decode over the bf16 rung", 1.8, w4, bf16, "decode_tokens_per_s", True, "tokens/s"),
        _ratio(
            f"W4A16 decode over transformers + torchao int4 (hf-static{peer_kernel})",
            3.0,
            w4,
            peer,
            "decode_tokens_per_s",
            True,
            "tokens/s",
        ),
        prefill_goal(w4, bf16),
        bytes_goal(w4),
        _ratio("W8A8 vision tower over the bf16 rung's tower", 1.4, w8, tower, "vision", False, "ms", 1e3),
    ]


def goals(folder: Path) -> tuple[list[Goal], list[Goal], str]:
    """Issue 15's and issue 16's goals in the folder's results (none yet: all unmeasured), and the hardware."""
    records = read_results(folder) if (folder / "results.jsonl").exists() else []
    fast, ladder = fast_inference(records, folder), deployment(records)
    hardware = sorted({hardware_of(r) for g in fast + ladder for r in g.records})
    return fast, ladder, ", ".join(hardware) or "no goal point measured"


# ---- the page ----------------------------------------------------------------------------------------------
HEAD = ["| goal | target | measured | | record |", "|---|---|---|---|---|"]


def _listed(folder: Path, name: str, title: str) -> list[str]:
    path = folder / name
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return ["", f"{title} ({name}):", ""] + [f"- {line}" for line in lines] if lines else []


def table(folder: Path) -> str:
    fast, ladder, hardware = goals(folder)
    lines = [
        f"Goals in {folder} ({hardware}; bf16 activations, batch 1, 1920x1080 + 64 tokens, 128 new tokens)",
        "",
        "Issue 15, fast inference (NVILA-8B, compiled engine, GPU preprocessing):",
        "",
        *HEAD,
        *(g.row() for g in fast),
        "",
        "Issue 16, the deployment ladder (NVILA-8B, image request, compiled engine):",
        "",
        *HEAD,
        *(g.row() for g in ladder),
        *_listed(folder, "versions.txt", "Versions"),
        *_listed(folder, "parts.txt", "Parts of the session"),
    ]
    return "\n".join(lines) + "\n"


def versions() -> str:
    """The GPU, its driver and the versions that decide a GPU run's figures, one `name: value` a line."""
    import importlib.metadata as metadata

    import torch

    from nvila_bench.core.measuring.env import git_state, gpu_info

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    gpus = gpu_info()["gpu"] or []
    lines = [f"gpu: {g.get('name')} (driver {g.get('driver_version')})" for g in gpus] or ["gpu: none visible to NVML"]
    lines.append(f"torch: {torch.__version__} (CUDA {torch.version.cuda}, available: {torch.cuda.is_available()})")
    lines += [f"{name}: {version(name)}" for name in ("triton", "transformers", "torchao", "gemlite", "fastjsonschema")]
    git = git_state()
    dirty = f", dirty, diff sha256 {git['git_diff_sha256']}" if git["git_dirty"] else ""
    lines.append(f"nvila-bench: {git['git_revision'] or 'not a git checkout'}{dirty}")
    return "\n".join(lines) + "\n"


def report(folder: Path) -> str:
    """FOLDER/report.html from FOLDER/results.jsonl (the `nvila-bench report` page), or why not."""
    from nvila_bench.reports.render import render_report

    from nvila_bench.core.measuring.files import write_atomic

    results = folder / "results.jsonl"
    if not results.exists():
        return "no report: no records yet"
    records = read_results(results)
    html = render_report(records, [str(results)], f"nvila-bench GPU session: {folder.name}")
    path = write_atomic(folder / "report.html", html)
    return f"report: {len(records)} record(s) -> {path}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--write", action="store_true", help="also write FOLDER/goals.md")
    p.add_argument("--report", action="store_true", help="also write FOLDER/report.html")
    p.add_argument("--versions", action="store_true", help="first write FOLDER/versions.txt and print it")
    a = p.parse_args()
    if a.versions:
        text = versions()
        a.folder.mkdir(parents=True, exist_ok=True)
        (a.folder / "versions.txt").write_text(text)
        print(text, end="")
        if not (a.write or a.report):
            return
    text = table(a.folder)
    print(text, end="")
    if a.write:
        (a.folder / "goals.md").write_text(text)
    if a.report:
        print(report(a.folder))


if __name__ == "__main__":
    main()
