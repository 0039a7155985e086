"""The report's sections as plain data: pure functions of the result records, no HTML, no measuring.

Each function returns what one template section shows (rows, an SVG chart, and the commands that would
fill what is missing). A figure that no record holds is None, and the template prints "not measured".
These are the sections that span suites (the headline, stages, roofline, distributions, energy; claims, peers
and engines have modules of their own); each suite's own section is its view or its generic table
(suite_sections.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from nvila_bench.model.stages import DECODE_STEP, LLM_PREFILL, PREFILL_STAGES, PROJECTOR, VISION

from nvila_bench.core.measuring.results import Record
from nvila_bench.core.measuring.specs import SuiteOutputs

from . import charts, peers
from .claims import claims_table, not_measured
from .deployment_paper import decode_reference
from .engines import peer_key, peer_ratios, side_by_side
from .records import (
    ENGINES,
    baseline_of,
    by_setting,
    engine_of,
    hardware_of,
    is_nvila,
    is_peer,
    latest,
    measured,
    media_label,
    point_label,
    point_name,
    preprocess_of,
    request_key,
    value,
)
from .runs import environments, failures
from .suite_sections import suite_sections


def _decode_key(r: Record) -> tuple:
    """A record's request without its decode settings, to pair a prefill with the decode of the same request
    (and engine). Not the image file either: the decode suite serves random images, and one of the file's size
    gives the same context."""
    return request_key(r, without=("new_tokens", "cache", "image_file"))


def _decodes(records: list[Record]) -> dict:
    """The measured decode record of each (preset, variant, request) a prefill row is paired with: the same
    request, engine and comparison variant; of several (other new-token counts or caches), the newest."""
    chosen: dict[tuple, Record] = {}
    for r in measured(records, "decode"):
        key = _decode_lookup(r)
        if key not in chosen or r.timestamp >= chosen[key].timestamp:
            chosen[key] = r
    return chosen


def _decode_lookup(r: Record) -> tuple:
    return r.preset, r.extra.get("variant"), _decode_key(r)


def _engine_rank(engine: str) -> int:
    return ENGINES.index(engine) if engine in ENGINES else len(ENGINES)


def _preferring(settings: dict | None, preferred: str) -> Record | None:
    """Of a `by_setting` slot, the record of the preferred setting, else the newest."""
    if not settings:
        return None
    return settings.get(preferred) or max(settings.values(), key=lambda r: r.timestamp)


def _preset_row(preset: str, hardware: str, train: dict, ftmem: dict, acc: dict) -> dict:
    """A preset's figures that no request changes: training throughput and fine-tuning memory on this hardware
    (NVILA's full stage and recipe where measured, as the paper states them), and accuracy (weights decide it)."""
    t, f = _preferring(train.get((hardware, preset)), "full"), _preferring(ftmem.get((hardware, preset)), "nvila")
    return {
        "preset": preset,
        "train_sps": value(t, "samples_per_s"),
        "train_stage": t.extra.get("stage") if t else None,
        "train_batch": t.config.get("batch_size") if t else None,
        "ft_memory": value(f, "peak_memory_allocated") or value(f, "memory_counted"),
        "ft_recipe": f.extra.get("recipe") if f else None,
        "accuracy": _mean([s for s in acc.get(preset, {}).values() if s is not None]),
        "accuracy_tasks": len(acc.get(preset, {})),
    }


def headline(records: list[Record]) -> dict:
    """NVILA vs its VILA1.5 baseline per hardware: one row per (preset, request, engine, preprocessing) measured by
    prefill, the baseline and the decode rate of the same engine; then one row per preset of those for what no
    request changes (training, fine-tuning memory, accuracy)."""
    # Comparison records (scale-then-compress variants) and the peer VLMs have their own sections.
    prefill = [r for r in measured(records, "prefill") if not r.extra.get("comparison") and not is_peer(r)]
    decode = _decodes(records)
    by_req = {(r.preset, request_key(r)): r for r in prefill}
    train = by_setting(measured(records, "train"), "stage")
    ftmem = by_setting([r for r in records if r.suite == "finetune-memory" and r.ok], "recipe")
    acc: dict[str, dict] = {}  # the latest score of each (preset, task)
    for r in measured(records, "accuracy"):
        acc.setdefault(r.preset, {})[r.config.get("task")] = value(r, "score")
    peers = peer_ratios(records)
    groups: dict[str, list[dict]] = {}
    for r in prefill:
        key = request_key(r)
        base = baseline_of(r.preset)
        base_rec = by_req.get((base, key)) if base else None
        dec = decode.get(_decode_lookup(r))
        ttft, base_ttft = value(r, "ttft"), value(base_rec, "ttft")
        groups.setdefault(hardware_of(r), []).append(
            {
                "preset": r.preset,
                "media": media_label(r.config),
                "dtype": r.config.get("dtype"),
                "engine": engine_of(r),
                "preprocess": preprocess_of(r),
                "batch": r.config.get("batch_size"),
                "tokens": value(r, "media_tokens"),
                "ttft": ttft,
                "baseline": base if base_rec else None,
                "is_baseline": not is_nvila(r),
                "ttft_speedup": base_ttft / ttft if ttft and base_ttft else None,
                "decode_tps": value(dec, "decode_tokens_per_s"),
                "decode_new_tokens": dec.config.get("new_tokens") if dec else None,
                "ttft_vs_peers": peers.get(peer_key(r), []),
                "decode_vs_peers": peers.get(peer_key(dec), []) if dec else [],
                # a figure of an engine that fell back (any engine_note) is marked, never shown as a plain figure
                "ttft_fell_back": value(r, "engine_note"),
                "decode_fell_back": value(dec, "engine_note"),
            }
        )
    for rows in groups.values():
        rows.sort(key=lambda row: (row["media"], str(row["preset"]), _engine_rank(row["engine"]), row["preprocess"]))
    presets = {
        hw: [_preset_row(p, hw, train, ftmem, acc) for p in dict.fromkeys(row["preset"] for row in rows)]
        for hw, rows in groups.items()
    }
    missing = []
    if not decode:
        missing.append(
            not_measured(
                "decode",
                "nvila-bench run decode --preset nvila-8b --preset vila1.5-8b --device cuda --image 1920x1080 --out "
                "results/",
            )
        )
    if not train:
        missing.append(
            not_measured("train", "nvila-bench run train --preset nvila-lite-2b --device cuda --out results/")
        )
    if not ftmem:
        missing.append(
            not_measured(
                "finetune-memory", "nvila-bench run finetune-memory --preset nvila-8b --device cuda --out results/"
            )
        )
    if not acc:
        missing.append(
            not_measured("accuracy", "nvila-bench run accuracy --preset nvila-8b --tasks ai2d,mmmu_val --out results/")
        )
    return {
        "groups": groups,
        "presets": presets,
        "missing": missing,
        "command": "nvila-bench run prefill --preset nvila-8b --preset vila1.5-8b --device cuda --image 1920x1080 "
        "--out results/",
    }


def stage_breakdown(records: list[Record]) -> dict:
    """Per point: median time of each prefill stage (`model.stages.PREFILL_STAGES`: preprocess, vision,
    projector, LLM prefill), plus decode (TPOT x steps) when the decode suite measured the same request; a
    stacked bar chart of them."""
    decode = _decodes(records)
    rows = []
    for r in measured(records, "prefill"):
        dec = decode.get(_decode_lookup(r))
        steps = dec.config["new_tokens"] - 1 if dec and dec.config.get("new_tokens") else None
        row = {"label": f"{point_name(r)} ({hardware_of(r)})"}
        row |= {s: value(r, s) for s in PREFILL_STAGES}
        row["decode"] = value(dec, "tpot") * steps if steps is not None and value(dec, "tpot") else None
        row["decode_tokens"] = steps
        row["ttft"] = value(r, "ttft")
        rows.append(row)
    rows.sort(key=lambda row: row["label"])
    stages = tuple(PREFILL_STAGES) + (("decode",) if any(r["decode"] for r in rows) else ())
    chart = charts.stacked_stages(rows, stages) if rows else None
    return {"rows": rows, "stages": stages, "chart": chart}


TIMED = {  # suite -> cost-model stage -> the measured metric holding its time
    "prefill": {VISION: VISION, PROJECTOR: PROJECTOR, LLM_PREFILL: LLM_PREFILL},
    "decode": {LLM_PREFILL: "prefill", DECODE_STEP: "tpot"},
}


# FLOP conventions (core/analysis/costmodel.py FLOPS_CONVENTION / MODEL_FLOPS_CONVENTION)
EXECUTED, MODEL = "executed", "model"


def roofline(records: list[Record]) -> dict:
    """Achieved FLOP/s of each measured stage against its cost-model arithmetic intensity, under the roof of
    the peaks the run used (`peak_flops` / `peak_bandwidth`); time floor, MFU and MBU per point and stage.

    FLOPs are executed FLOPs (`{stage}_executed_flops`: causal attention counted once per kept key), as the
    record's floor and MFU are. Records written before that metric existed have only model FLOPs (full N x N
    attention) behind all three figures; they differ from executed FLOPs only in the LLM prefill (the vision
    tower is bidirectional, a decode token has no masked key), whose rows then say `convention` "model"."""
    points, table, roofs = [], [], {}
    peers = peer_ratios(records)
    for r in measured(records, "prefill") + measured(records, "decode"):
        label = point_name(r)
        for stage, timed in TIMED[r.suite].items():
            executed = value(r, f"{stage}_executed_flops")
            flops = executed if executed is not None else value(r, f"{stage}_flops")
            nbytes, seconds = value(r, f"{stage}_bytes"), value(r, timed)
            if not (flops and nbytes and seconds):
                continue
            points.append(
                {
                    "label": label,
                    "stage": "decode" if stage == DECODE_STEP else stage,
                    "intensity": flops / nbytes,
                    "achieved": flops / seconds,
                }
            )
            table.append(
                {
                    "point": label,
                    "suite": r.suite,
                    "hardware": hardware_of(r),
                    "dtype": r.config.get("dtype"),
                    "engine": (value(r, "prefill_engine") or engine_of(r))
                    if r.suite == "decode" and stage == LLM_PREFILL
                    else engine_of(r),
                    # the point's headline figure (TTFT, TPOT) over the peers', on the row of its last stage
                    "vs_peers": peers.get(peer_key(r), [])
                    if stage == {"prefill": LLM_PREFILL, "decode": DECODE_STEP}[r.suite]
                    else [],
                    "stage": stage,
                    "measured": seconds,
                    "floor": value(r, f"{stage}_floor"),
                    "mfu": value(r, f"{stage}_mfu"),
                    "mbu": value(r, f"{stage}_mbu"),
                    "peaks": value(r, "peaks_source"),
                    "convention": EXECUTED if executed is not None or stage != LLM_PREFILL else MODEL,
                }
            )
        if value(r, "peak_flops") and value(r, "peak_bandwidth"):
            source = str(value(r, "peaks_source"))
            roofs[source] = {"label": source, "flops": value(r, "peak_flops"), "bandwidth": value(r, "peak_bandwidth")}
    chart = charts.roofline(points, list(roofs.values())) if points else None
    return {
        "rows": table,
        "chart": chart,
        "has_floor": any(t["floor"] for t in table),
        "model_flops_rows": any(t["convention"] == MODEL for t in table),
        "command": "nvila-bench ceilings --device cpu --dtype float32 --out out/  "
        "(the suites then read out/ceilings.json)",
    }


def distributions(records: list[Record]) -> dict:
    """p50 / p90 / p99 of TTFT and TPOT per point, from the stored summaries, and box plots of raw samples."""
    rows, plots = [], {}
    for metric, suite in (("ttft", "prefill"), ("tpot", "decode")):
        for r in measured(records, suite):
            m = r.metrics.get(metric)
            if m is None or m.summary is None:
                continue
            label = point_name(r)
            rows.append(
                {
                    "metric": metric,
                    "point": label,
                    "hardware": hardware_of(r),
                    "summary": m.stats,
                    "processes": r.config.get("processes", 1),
                }
            )
            if m.samples:
                plots.setdefault(metric, []).append({"label": label, "samples": m.samples})
    chart = {k: charts.distributions(v) for k, v in plots.items()}
    return {"rows": rows, "charts": chart}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def energy(records: list[Record]) -> dict:
    """The energy of every record that has it (GPU runs with NVML; CPU records have no energy fields)."""
    rows = [
        {
            "label": point_label(r),
            "hardware": hardware_of(r),
            "joules_per_token": value(r, "joules_per_token"),
            "avg_power_w": value(r, "avg_power_w"),
            "energy_j": value(r, "energy_j"),
        }
        for r in records
        if r.ok and "energy_j" in r.metrics
    ]
    return {
        "rows": rows,
        "command": "nvila-bench run prefill --preset nvila-8b --device cuda --image 1920x1080 --out results/",
    }


def build(records: list[Record], sources: list[str], outputs: Mapping[str, SuiteOutputs]) -> dict:
    """Everything the report template shows; `outputs` are the suites' declarations (suite -> SuiteOutputs)."""
    current = latest(records)
    provenance = {p: sum(r.provenance == p for r in current) for p in ("measured", "analytic", "paper")}
    return {
        "sources": sources,
        "n_records": len(records),
        "n_points": len(current),
        "provenance_counts": provenance,
        "hardware": sorted({hardware_of(r) for r in current}),
        "headline": headline(current),
        "peers": peers.comparison(current),
        "engines": side_by_side(current),
        "claims": claims_table(current),
        "decode_reference": decode_reference(current),
        "stages": stage_breakdown(current),
        "roofline": roofline(current),
        "distributions": distributions(current),
        "energy": energy(current),
        "suites": suite_sections(current, outputs),
        "failures": failures(current),
        "environments": environments(current),
    }
