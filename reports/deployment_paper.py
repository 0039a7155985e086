"""The paper's deployment figures beside ours: Figure 5's claims and the TinyChat decode rates beside a ladder
(reports/views/deployment.py), the VILA README's decode rates beside every measured decode rate (the claims
section), and which of our hardware each paper column compares with.

The paper's figures are only comparable on the hardware they were taken on (an RTX 4090 for Figure 5; A100,
RTX 4090 and Orin for the TinyChat table) and for the same model: a verdict says "comparable" only where the
ladder's hardware name contains the paper column's GPU name and the model is the paper's.
"""

from __future__ import annotations

import re

from nvila_bench.model import get_preset

from nvila_bench.core.analysis import paper
from nvila_bench.core.measuring.results import Record

from .records import engine_of, hardware_of, measured, value

PAPER_MODEL = "nvila-8b"  # the model of Figure 5 and of the TinyChat table
PAPER_HARDWARE = {"a100": "A100", "rtx4090": "RTX 4090", "orin": "Orin"}  # paper.toml decode_rates column -> GPU
TINYCHAT_SETTING = (
    "batch 1, Dynamic-S2 off: a shorter image context than a ladder's, so a little less KV cache read per token"
)
TINYCHAT_RUNG = {"Baseline (FP16)": "bf16", "TinyChat (W4A16 LLM + W8A8 ViT)": "w8a8-vit-int8"}  # engine -> our rung
DIFFERENT_HARDWARE = "not comparable: different hardware"


def same_hardware(paper_gpu: str, hardware: str) -> bool:
    """The paper's GPU name (e.g. "RTX 4090", "A100") appears in our hardware name as a whole name, case and
    separators aside: "NVIDIA A100-SXM4-80GB" and "GeForce RTX4090" match, "RTX A1000" is not an A100."""
    if not paper_gpu or hardware.startswith("CPU "):
        return False
    name = r"[\s_-]*".join(re.escape(part) for part in paper_gpu.lower().split())
    return re.search(rf"(?<![a-z0-9]){name}(?![a-z0-9])", hardware.lower()) is not None


def paper_gpu_of(setting: str) -> str | None:
    """The GPU a paper setting names (one of `PAPER_HARDWARE`'s), or None."""
    return next((gpu for gpu in PAPER_HARDWARE.values() if re.search(re.escape(gpu), setting, re.I)), None)


def _verdict(paper_gpu: str | None, hardware: str, model_ok: bool, peer: str | None = None) -> str:
    if not paper_gpu or not same_hardware(paper_gpu, hardware):
        return DIFFERENT_HARDWARE
    if not model_ok:
        return "not comparable: different model"
    if peer:
        return f"not comparable: peer {peer} not measured"
    return "comparable"


def figure5(media: str, hardware: str, rows: dict[str, dict], model_ok: bool) -> list[dict]:
    """Figure 5's claims (paper.toml claims whose source names Figure 5), with our counterpart where the ladder has
    one."""
    out = []
    for claim in paper.claims():
        if "Figure 5" not in claim.get("source", "") or (claim["id"].startswith("video") and media != "video"):
            continue
        low, high = claim["paper_low"], claim["paper_high"]
        ours, our_setting = None, None
        if claim["id"] == "video-compression-prefill":
            scaled, nvila = rows.get("scaled-only bf16"), rows.get("bf16")
            if scaled and nvila and scaled.get("llm_prefill") and nvila.get("llm_prefill"):
                ours = scaled["llm_prefill"] / nvila["llm_prefill"]
            our_setting = "LLM prefill, scaled-only bf16 over bf16 (token compression)"
        else:
            our_setting = f"the ladder has no {claim.get('peer') or 'peer'} rung"
        gpu = paper_gpu_of(claim.get("setting", ""))
        out.append(
            {
                "claim": claim["claim"],
                "source": claim["source"],
                "setting": claim["setting"],
                "hardware": gpu,
                "paper": f"{low:g}{claim['unit']}" if low == high else f"{low:g}-{high:g}{claim['unit']}",
                "ours": ours,
                "our_setting": our_setting,
                "verdict": _verdict(gpu, hardware, model_ok, None if ours is not None else claim.get("peer")),
            }
        )
    return out


def tinychat(media: str, family: str, hardware: str, rows: dict[str, dict]) -> list[dict]:
    """The TinyChat decode rates (paper.toml decode_rates) of the ladder's models (the paper's model's when the
    ladder climbs another, e.g. a tiny stand-in), one cell per GPU, with our decode rate of the matching rung."""
    paper_family = family if any(e["preset"] == family for e in paper.decode_rates()) else PAPER_MODEL
    pcfg = get_preset(paper_family)
    nvila = (pcfg.video_model or pcfg.name) if media == "video" else pcfg.name
    out = []
    for entry in paper.decode_rates():
        if entry["preset"] not in (nvila, pcfg.baseline):
            continue
        baseline = entry["preset"] == pcfg.baseline
        rung = (
            ("baseline quantized" if "TinyChat" in entry["engine"] else "baseline bf16")
            if baseline
            else TINYCHAT_RUNG.get(entry["engine"])
        )
        ours = rows.get(rung) if rung else None
        model_ok = bool(ours) and ours["preset"] == entry["preset"]
        cells = [
            {"gpu": gpu, "value": entry.get(key), "comparable": same_hardware(gpu, hardware)}
            for key, gpu in PAPER_HARDWARE.items()
        ]
        matched = next((c for c in cells if c["comparable"]), None)
        verdict = _verdict(matched["gpu"] if matched else None, hardware, model_ok)
        if matched and not ours:
            verdict = "not measured"  # the paper's GPU, but the ladder lacks the rung
        ratio = (
            ours["decode_tps"] / matched["value"]
            if verdict == "comparable" and ours.get("decode_tps") and matched["value"]
            else None
        )
        out.append(
            {
                "preset": entry["preset"],
                "engine": entry["engine"],
                "source": entry["source"],
                "cells": cells,
                "setting": TINYCHAT_SETTING if media == "image" else "batch 1",
                "rung": rung,
                "ours": ours.get("decode_tps") if ours else None,
                "ours_preset": ours["preset"] if ours else None,
                "verdict": verdict,
                "ratio": ratio,
            }
        )
    return out


def decode_reference(records: list[Record]) -> list[dict]:
    """The README's deployment decode rates (paper provenance) beside our measured rates of the same preset in
    the same weights: a "Baseline (FP16)" row beside the decode suite's (unquantized) records and the ladder's
    bf16 rungs, a TinyChat (quantized) row beside the ladder's rung of those formats only."""
    ours: dict[tuple[str, str], list[tuple[str, float]]] = {}  # (preset, rung) -> (where and how, tokens/s)
    for r in measured(records, "decode") + measured(records, "deployment"):
        if not value(r, "decode_tokens_per_s") or r.config.get("batch_size") != 1:
            continue
        if r.suite == "deployment" and r.extra.get("media") != "image":  # the README's rates are of image requests
            continue
        rung = r.extra.get("rung") if r.suite == "deployment" else "bf16"
        rung = "bf16" if rung == "baseline bf16" else rung  # VILA1.5's bf16 rung is its model's bf16 figure
        label = f"{hardware_of(r)}, {engine_of(r)}, {r.config.get('dtype')}"
        if r.suite == "deployment":
            kernel = ", ".join(str(r.extra[k]) for k in ("int4_kernel", "scales", "lm_head") if r.extra.get(k))
            label += f", ladder rung {rung}" + (f" ({kernel})" if kernel else "")
        ours.setdefault((r.preset, rung), []).append((label, value(r, "decode_tokens_per_s")))
    rows = []
    for entry in paper.decode_rates():
        rows.append(
            {
                "preset": entry["preset"],
                "engine": entry["engine"],
                "source": entry["source"],
                "paper": {label: entry.get(key) for key, label in PAPER_HARDWARE.items()},
                "ours": ours.get((entry["preset"], TINYCHAT_RUNG.get(entry["engine"], "bf16")), []),
            }
        )
    return rows
