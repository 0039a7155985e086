"""The `deployment` suite's report view, the "Deployment ladder" section (paper Figure 5), as plain data: the
suite's records, one per rung, grouped per (hardware, media, NVILA preset family), with the paper's Figure 5 and
TinyChat figures beside them.

A ladder is what `nvila-bench run deployment --preset P` writes for one media: P's scaled-only variant, P (its
video model for the video request) in bf16 and quantized step by step, and P's VILA1.5 baseline in bf16 and
quantized. A peer VLM's records (family "peer") are a ladder of their own, without the paper's NVILA figures.
Each row shows the rung's TTFT (and its vision / LLM prefill split), decode tokens/s, the speed-up over the first
rung (scaled-only bf16) and over the rung it builds on (`PREVIOUS`), the weights' bytes per component (measured
after quantization, and the cost model's prediction, `model/quantize.py`) with their ratio to the same preset in
bf16, peak memory, and the quality cost (top-1 agreement and KL of next-token logits against the same model in
bf16). A rung that could not run here (fp8 without an FP8 GPU) is listed with why.

The paper's figures beside a ladder, and when they are comparable, are reports/deployment_paper.py's.
"""

from __future__ import annotations

import functools

from nvila_bench.model import get_preset
from nvila_bench.model.presets import preset_names

from nvila_bench.core.measuring.results import Record

from ..deployment_paper import PAPER_HARDWARE, PAPER_MODEL, figure5, same_hardware, tinychat
from ..records import COMPONENT_NAMES, COMPONENTS, formats_text, hardware_of, is_nvila, is_peer, preset_config, value

TITLE = "Deployment ladder"  # the page's navigation
ANCHOR = "deployment"  # the section's id
SUITE = "deployment"
COMMAND = "nvila-bench run deployment --preset nvila-8b --device cuda --out results/"
RUNGS = (
    "scaled-only bf16",
    "bf16",
    "w4a16-llm",
    "w8a8-vit-int8",
    "w8a8-vit-fp8",
    "w8a8-fp8-llm",
    "baseline bf16",
    "baseline quantized",
)  # suites/deployment.py RUNGS, in order (a test checks)
PREVIOUS = {  # rung -> the rung it adds one step to (fp8 is the alternative to int8, so both build on w4a16-llm)
    "bf16": "scaled-only bf16",
    "w4a16-llm": "bf16",
    "w8a8-vit-int8": "w4a16-llm",
    "w8a8-vit-fp8": "w4a16-llm",
    "w8a8-fp8-llm": "bf16",
    "baseline quantized": "baseline bf16",
}
MATCH_TOLERANCE = 0.01  # measured weights bytes "match" the prediction within 1%


# ---- which ladder a record belongs to ----------------------------------------------------------------------
@functools.cache
def _roots() -> tuple[dict[str, str], dict[str, str]]:
    """(preset -> the NVILA preset whose ladder it climbs, VILA1.5 baseline -> the first NVILA preset it serves)."""
    members, baselines = {}, {}
    roots = [get_preset(n) for n in preset_names()]
    roots = [c for c in roots if c.is_nvila and c.baseline and c.scaled_only]
    for cfg in roots:
        members[cfg.name] = cfg.name
        baselines.setdefault(cfg.baseline, cfg.name)
    for cfg in roots:
        for member in (cfg.scaled_only, cfg.video_model):
            if member:
                members.setdefault(member, cfg.name)
    return members, baselines


def family_of(record: Record, run_families: dict[tuple, str]) -> str:
    """The NVILA preset whose ladder the record is a rung of: from the registry for NVILA presets; for a
    baseline, the family of the NVILA rungs of the same run (else the first NVILA preset it is the baseline of);
    a peer VLM's own preset."""
    members, baselines = _roots()
    if is_peer(record):  # a peer VLM climbs its own ladder (bf16, w4a16-llm), never NVILA's
        return str(record.preset)
    if is_nvila(record):
        return members.get(record.preset, str(record.preset))
    return run_families.get((record.run_id, hardware_of(record))) or baselines.get(record.preset) or str(record.preset)


def request_text(r: Record) -> str:
    """The request a ladder serves: ladders of different requests (image size, frames, prompt, new tokens) are
    different ladders, never one mixed table."""
    c = r.config
    media = "+".join(list(c.get("images") or []) + ([f"{c['video_frames']} frames"] if c.get("video_frames") else []))
    return f"{media or 'text'}, {c.get('prompt_tokens')} prompt tokens, {c.get('new_tokens')} new tokens"


# ---- one rung ----------------------------------------------------------------------------------------------
def _speedup(ref: dict | None, row: dict, key: str, higher_is_better: bool) -> float | None:
    a, b = (ref or {}).get(key), row.get(key)
    if not a or not b or ref is row:
        return None
    return b / a if higher_is_better else a / b


def matches(measured, predicted, tolerance: float = MATCH_TOLERANCE) -> bool | None:
    """Whether measured bytes are within `tolerance` of the prediction; None without both."""
    if measured is None or predicted is None:
        return None
    return abs(measured - predicted) <= tolerance * max(abs(predicted), 1)


def _all(flags: list) -> bool | None:
    """True when every flag is, False when any is False, None when any is unknown."""
    return False if False in flags else None if None in flags else True


def _scales(r: Record) -> str:
    """How a quantized rung's scales were chosen (records before the option: round to nearest)."""
    return r.extra.get("scales") or "none"


def _row(r: Record) -> dict:
    formats = {c: r.extra.get(f"{c}_weights", "bf16") for c in COMPONENTS}
    scales, kernel, head = _scales(r), r.extra.get("int4_kernel"), r.extra.get("lm_head") == "quantized"
    prefill = f"; int4 prefill: {r.extra['int4_prefill']}" if r.extra.get("int4_prefill") else ""
    row = {
        "rung": r.extra.get("rung"),
        "preset": r.preset,
        "formats": formats,
        "scales": scales,
        "int4_kernel": kernel,
        "lm_head": head,
        "formats_text": formats_text(formats, scales, kernel, head) + prefill,
        "status": r.status,
        "ok": r.ok,
        "reason": r.error,
        "run_id": r.run_id,
    }
    if not r.ok:
        return row
    weights = {}
    for c in COMPONENTS:
        m, p = value(r, f"{c}_weights_bytes"), value(r, f"{c}_weights_bytes_predicted")
        weights[c] = {"measured": m, "predicted": p, "match": matches(m, p)}
    measured_all = [w["measured"] for w in weights.values()]
    predicted_all = [w["predicted"] for w in weights.values()]
    total = sum(measured_all) if None not in measured_all else None
    total_predicted = sum(predicted_all) if None not in predicted_all else None
    gpu = value(r, "peak_memory_allocated")
    row |= {
        "tokens": value(r, "media_tokens"),
        "ttft": value(r, "ttft"),
        "preprocess": value(r, "preprocess"),
        "vision": value(r, "vision"),
        "projector": value(r, "projector"),
        "llm_prefill": value(r, "llm_prefill"),
        "tpot": value(r, "tpot"),
        "decode_tps": value(r, "decode_tokens_per_s"),
        "decode_mbu": value(r, "decode_step_mbu"),
        "weights": weights,
        "weights_total": total,
        "weights_total_predicted": total_predicted,
        "weights_match": _all([w["match"] for w in weights.values()]),
        "peak_memory": gpu if gpu is not None else value(r, "peak_rss"),
        "peak_kind": "GPU allocated"
        if gpu is not None
        else "process peak RSS"
        if value(r, "peak_rss") is not None
        else None,
        "top1_agreement": value(r, "top1_agreement"),
        "logits_kl": value(r, "logits_kl"),
        "quality_positions": value(r, "quality_positions"),
        "engine_note": value(r, "engine_note"),
        "fell_back": bool(value(r, "engine_note")),  # any note: a compile, prefill or vision tower that ran another way
        # on the trained checkpoint (`--checkpoint`): synthetic-task accuracy, and logits against it in bf16
        "synthetic_accuracy": value(r, "synthetic_accuracy"),
        "checkpoint_top1": value(r, "checkpoint_top1_agreement"),
        "benchmark_accuracy": value(r, "benchmark_accuracy"),  # the paper's lmms-eval tasks, official weights
        "engine": r.config.get("engine"),
        "setup_seconds": value(r, "setup_seconds"),
        "quantize_seconds": value(r, "quantize_seconds"),
        **{
            k: value(r, k)
            for k in (
                "vision_mfu",
                "vision_mfu_dtype",
                "llm_prefill_mfu",
                "llm_prefill_mfu_dtype",
                "vision_peak_source",
                "llm_prefill_peak_source",
            )
        },
    }
    return row


def _rank(rung) -> int:
    return RUNGS.index(rung) if rung in RUNGS else len(RUNGS)


KERNEL_PREFERENCE = (
    "tinygemm",
    "intx",
    "opaque",
    "gemlite",
)  # the last first: "auto"'s pick on CUDA where installed, on CPU


def _preference(row: dict) -> tuple:
    """How close a row is to the paper's deployment: activation-aware scales, a bf16 LM head, gemlite's kernel."""
    kernel = row["int4_kernel"]
    return (
        row["scales"] != "none",
        not row["lm_head"],
        KERNEL_PREFERENCE.index(kernel) if kernel in KERNEL_PREFERENCE else -1,
    )


def standing(rows: list[dict]) -> dict[str, dict]:
    """Per rung, the measured row that stands for it in speed-ups, peer ratios and beside the paper, where a rung
    has several (scales, int4 kernels, LM head): the one closest to the paper's deployment (`_preference`)."""
    out: dict[str, dict] = {}
    for row in rows:
        if row["ok"] and (row["rung"] not in out or _preference(row) > _preference(out[row["rung"]])):
            out[row["rung"]] = row
    return out


def _ladder_rows(records: list[Record]) -> list[dict]:
    """One group's rows in rung order, with speed-ups and bytes ratios filled in."""
    by_rung: dict[tuple, Record] = {}
    for r in records:  # a rung measured twice in one group (same scales and int4 kernel): keep the newest
        key = (r.extra.get("rung"), _scales(r), r.extra.get("int4_kernel") or "", r.extra.get("lm_head") or "")
        if key not in by_rung or r.timestamp >= by_rung[key].timestamp:
            by_rung[key] = r
    rows = sorted(
        (_row(r) for r in by_rung.values()),
        key=lambda x: (_rank(x["rung"]), str(x["rung"]), x["scales"] != "none", x["int4_kernel"] or "", x["lm_head"]),
    )
    ok = standing(rows)
    bf16 = {row["preset"]: row for row in rows if row["ok"] and set(row["formats"].values()) == {"bf16"}}
    first = ok.get(RUNGS[0])
    for row in rows:
        if not row["ok"]:
            continue
        row["variant"] = ok[row["rung"]] is not row  # another row stands for this rung
        prev = ok.get(PREVIOUS.get(row["rung"]))
        row["previous"] = prev["rung"] if prev else None
        row["ttft_vs_first"] = _speedup(first, row, "ttft", higher_is_better=False)
        row["decode_vs_first"] = _speedup(first, row, "decode_tps", higher_is_better=True)
        row["ttft_vs_previous"] = _speedup(prev, row, "ttft", higher_is_better=False)
        row["decode_vs_previous"] = _speedup(prev, row, "decode_tps", higher_is_better=True)
        ref = bf16.get(row["preset"])
        row["bf16_rung"] = ref["rung"] if ref else None
        for c, w in row["weights"].items():
            base = ref["weights"][c]["measured"] if ref else None
            w["ratio"] = w["measured"] / base if w["measured"] is not None and base else None
        row["accuracy_points_vs_bf16"] = None  # without a bf16 row with the checkpoint's accuracy to compare with
        if row["synthetic_accuracy"] is not None and ref and ref["synthetic_accuracy"] is not None:
            row["accuracy_points_vs_bf16"] = 100 * (row["synthetic_accuracy"] - ref["synthetic_accuracy"])
        base_total = ref["weights_total"] if ref else None
        row["weights_ratio"] = (
            row["weights_total"] / base_total if row["weights_total"] is not None and base_total else None
        )
    return rows


# ---- the section -------------------------------------------------------------------------------------------
def _peer_ratios(groups: list[dict]) -> None:
    """Each row of our engines' ladders gets `vs_peers`: per transformers peer (`hf-*`) ladder of the same
    hardware, media and family, its decode and TTFT speed-up over that peer's row of the same rung (e.g. W4A16
    compiled over transformers + torchao int4 on the same weights): the peer's row with the same scales, int4
    kernel and LM head where there is one, else the one standing for the rung."""
    for group in groups:
        if group["engine"].startswith("hf-"):
            continue
        peers = [
            g
            for g in groups
            if g["engine"].startswith("hf-")
            and (g["hardware"], g["media"], g["family"], g["request"])
            == (group["hardware"], group["media"], group["family"], group["request"])
        ]

        def same(row):
            return (row["rung"], row["scales"], row["int4_kernel"], row["lm_head"])

        peer_rows = [
            (peer["engine"], standing(peer["rows"]), {same(r): r for r in peer["rows"] if r["ok"]}) for peer in peers
        ]
        for row in group["rows"]:
            row["vs_peers"] = []
            for (
                engine,
                by_rung,
                alike,
            ) in peer_rows:  # the peer's row of the same weights, else the one standing for the rung
                other = alike.get(same(row)) or by_rung.get(row["rung"])
                if row["ok"] and other:
                    row["vs_peers"].append(
                        {
                            "engine": engine,
                            "int4_kernel": other["int4_kernel"],
                            "same_run": other["run_id"] == row["run_id"],  # else two commands' figures
                            "decode": _speedup(other, row, "decode_tps", higher_is_better=True),
                            "ttft": _speedup(other, row, "ttft", higher_is_better=False),
                        }
                    )


def ladder(records: list[Record]) -> dict:
    """Per (hardware, media, NVILA preset family): the ladder's rows in rung order and the paper's figures beside."""
    mine = [r for r in records if r.suite == SUITE and r.extra.get("rung")]
    run_families = {}
    for r in mine:
        if is_nvila(r):
            run_families.setdefault((r.run_id, hardware_of(r)), family_of(r, {}))
    groups: dict[tuple, list[Record]] = {}
    for r in mine:
        key = (
            hardware_of(r),
            r.extra.get("media") or "—",
            family_of(r, run_families),
            r.config.get("engine") or "eager",
            request_text(r),
        )
        groups.setdefault(key, []).append(r)
    out = []
    for (hardware, media, family, engine, request), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1], kv[0][4], kv[0][3])
    ):
        rows = _ladder_rows(group)
        ok = standing(rows)
        model_ok = family == PAPER_MODEL
        peer = is_peer(family)  # the paper's Figure 5 and TinyChat figures are NVILA's: none beside a peer's ladder
        figures = [] if peer else figure5(media, hardware, ok, model_ok)
        rates = [] if peer else tinychat(media, family, hardware, ok)
        gpus = [gpu for gpu in PAPER_HARDWARE.values() if same_hardware(gpu, hardware)]
        note = (
            f"The paper's figures are from {', '.join(PAPER_HARDWARE.values())}; this ladder ran on {hardware}: "
            "nothing here is comparable with them."
            if not gpus
            else f"Same GPU as the paper's {', '.join(gpus)} column"
            + ("." if model_ok else f", but {family} is not {PAPER_MODEL}: not comparable.")
        )
        if peer:
            note = (
                f"{family} is a peer VLM: its own ladder, bf16 and a W4A16 LLM. NVILA beside it, rung by rung: "
                'the "NVILA vs peer VLMs" section.'
            )
        out.append(
            {
                "hardware": hardware,
                "media": media,
                "family": family,
                "engine": engine,
                "request": request,
                "rows": rows,
                "skipped": [row for row in rows if not row["ok"]],
                "figure5": figures,
                "tinychat": rates,
                "paper_gpus": list(PAPER_HARDWARE.values()),
                "comparable_gpus": gpus,
                "note": note,
                "tiny": bool(preset_config(family) and preset_config(family).is_tiny),
            }
        )
    _peer_ratios(out)
    return {
        "groups": out,
        "command": COMMAND,
        "components": list(COMPONENTS),
        "component_names": COMPONENT_NAMES,
        "tolerance": MATCH_TOLERANCE,
    }


def build(records: list[Record]) -> dict:
    """The view's data: the ladders."""
    return ladder(records)
