"""The "NVILA vs peer VLMs" section as plain data: NVILA beside the peer VLMs the paper measures it against
(family "peer": Qwen2-VL-7B, Qwen2.5-VL-7B, LLaVA-OneVision-7B), each measured in the same setting.

A comparison never mixes settings: one group per hardware, request, dtype, engine and weight format, and a tiny
stand-in sits only beside tiny stand-ins. The weight format is a deployment rung's (bf16, a W4A16 LLM, ...:
suites/deployment.py) or, for the prefill and decode suites, the weights as built in the run's dtype. Each NVILA
row states its ratio over each peer of its group: TTFT peer over NVILA, decode tokens/s NVILA over peer (above
1x, NVILA is faster). A figure of an engine that fell back (its record's `engine_note`) is marked, never plain.
Where a model ran a request with several engines, one more group holds each model's fastest engine that did not
fall back, named beside each figure: the paper measures each model with its best engine.

`same_run_pairs` and `train_pairs` give the paper-claims table its NVILA-and-peer pairs.
"""

from __future__ import annotations

from nvila_bench.model.stages import PREFILL_STAGES

from nvila_bench.core.analysis import paper
from nvila_bench.core.measuring.results import Record

from .records import (
    COMPONENTS,
    ENGINES,
    engine_of,
    formats_text,
    hardware_of,
    is_nvila,
    is_peer,
    is_scaled_only,
    is_tiny,
    measured,
    media_label,
    preprocess_of,
    request_key,
    stands_for,
    value,
)

SUITES = {"prefill": ("prefill",), "decode": ("decode",), "deployment": ("prefill", "decode")}  # suite -> parts
AS_BUILT = "as built"  # the prefill and decode suites' weights: the model in the run's dtype, unquantized
FASTEST = "fastest"  # the engine column of the group of each model's fastest engine
COMMAND = (
    "nvila-bench run prefill --device cuda --preset nvila-8b --preset qwen2-vl-7b --image 1920x1080 --out results/"
)
DECODE_COMMAND = COMMAND.replace("run prefill", "run decode")
# NVILA's and Qwen2-VL's bf16 and W4A16 LLM rungs, in one run (the deployment suite climbs a peer's ladder too)
W4A16_COMMAND = (
    "nvila-bench run deployment --device cuda --preset nvila-8b --preset qwen2-vl-7b --rung bf16 "
    "--rung w4a16-llm --out results/"
)


def weights_of(r: Record) -> str:
    """The weight format of a record's figures: a deployment rung's formats, scales, int4 kernel and LM head
    (e.g. "LLM w4a16 (gemlite), AWQ / SmoothQuant scales", or "bf16"), else `AS_BUILT`."""
    if r.suite != "deployment":
        return AS_BUILT
    formats = {c: r.extra.get(f"{c}_weights", "bf16") for c in COMPONENTS}
    head = r.extra.get("lm_head") == "quantized"
    return formats_text(formats, r.extra.get("scales") or "none", r.extra.get("int4_kernel"), head)


def is_nvila_model(r: Record | str) -> bool:
    """NVILA as published (family nvila, nvila-lite or nvila-video): not a peer, a VILA1.5 baseline or a
    scaled-only ablation."""
    return is_nvila(r) and not is_peer(r) and not is_scaled_only(r.preset if isinstance(r, Record) else r)


def _member(r: Record) -> bool:
    return (
        r.suite in SUITES
        and r.ok
        and r.provenance == "measured"
        and not r.extra.get("comparison")
        and (is_peer(r) or is_nvila_model(r))
    )


def _setting(r: Record) -> tuple:
    """Hardware, tiny or real, request (media, prompt, batch, dtype, preprocessing) and weight format: a group
    is one setting and one engine; the fastest-engine group is one setting."""
    request = request_key(r, without=("new_tokens", "cache", "image_file", "engine", "hardware"))
    return hardware_of(r), is_tiny(r.preset), request, weights_of(r)


def _slots(records: list[Record]) -> dict[tuple, dict[str, dict[str, Record]]]:
    """(setting, engine) -> preset -> {"prefill": record, "decode": record}, the newest of each (a deployment
    record holds both parts)."""
    out: dict[tuple, dict[str, dict[str, Record]]] = {}
    for r in filter(_member, records):
        slot = out.setdefault((_setting(r), engine_of(r)), {}).setdefault(r.preset, {})
        for part in SUITES[r.suite]:
            if part not in slot or r.timestamp >= slot[part].timestamp:
                slot[part] = r
    return out


def _peak(*records: Record | None) -> tuple[float | None, str | None]:
    """The highest GPU allocator peak of the records, else the process's peak RSS (a whole run's: it only grows)."""
    for name, kind in (("peak_memory_allocated", "GPU allocated"), ("peak_rss", "process peak RSS")):
        peaks = [value(r, name) for r in records if value(r, name) is not None]
        if peaks:
            return max(peaks), kind
    return None, None


def _row(preset: str, prefill: Record | None, decode: Record | None) -> dict:
    peak, kind = _peak(prefill, decode)
    tokens = [value(r, m) for r in (prefill, decode) for m in ("visual_tokens", "media_tokens")]
    tokens = [t for t in tokens if t is not None]
    some = prefill or decode
    return {
        "preset": preset,
        "peer": is_peer(some),
        "stands_in_for": stands_for(preset) if is_tiny(preset) else None,
        "ttft": value(prefill, "ttft"),
        **{s: value(prefill, s) for s in PREFILL_STAGES},
        "decode_tps": value(decode, "decode_tokens_per_s"),
        "tpot": value(decode, "tpot"),
        "new_tokens": decode.config.get("new_tokens") if decode else None,
        "peak": peak,
        "peak_kind": kind,
        "visual_tokens": tokens[0] if tokens else None,
        # a figure of an engine that fell back (any engine_note) is marked with the note, never plain
        "ttft_fell_back": value(prefill, "engine_note"),
        "decode_fell_back": value(decode, "engine_note"),
        "ttft_engine": engine_of(prefill) if prefill else None,
        "decode_engine": engine_of(decode) if decode else None,
        "prefill_run": prefill.run_id if prefill else None,
        "decode_run": decode.run_id if decode else None,
        "vs_peers": [],
    }


def _vs(nvila: dict, peer: dict) -> dict:
    """NVILA's ratio over one peer: TTFT peer over NVILA, decode tokens/s NVILA over peer (never across two
    new-token counts), whether each pair comes from one run, and whether a figure behind it fell back."""
    ttft = peer["ttft"] / nvila["ttft"] if nvila["ttft"] and peer["ttft"] else None
    both = bool(nvila["decode_tps"] and peer["decode_tps"])
    same_tokens = nvila["new_tokens"] == peer["new_tokens"]
    decode = nvila["decode_tps"] / peer["decode_tps"] if both and same_tokens else None
    return {
        "peer": peer["preset"],
        "ttft": ttft,
        "decode": decode,
        "tokens_differ": both and not same_tokens,
        "ttft_same_run": nvila["prefill_run"] == peer["prefill_run"],
        "decode_same_run": nvila["decode_run"] == peer["decode_run"],
        "ttft_fell_back": bool(nvila["ttft_fell_back"] or peer["ttft_fell_back"]),
        "decode_fell_back": bool(nvila["decode_fell_back"] or peer["decode_fell_back"]),
    }


def _fastest(slots: list[dict[str, Record]]) -> tuple[Record | None, Record | None]:
    """Of one model's slots across engines, the prefill with the lowest TTFT and the decode with the highest
    tokens/s, engines that fell back left out."""

    def clean(part: str, metric: str) -> list[Record]:
        return [s[part] for s in slots if part in s and value(s[part], metric) and not value(s[part], "engine_note")]

    prefill, decode = clean("prefill", "ttft"), clean("decode", "decode_tokens_per_s")
    return (
        min(prefill, key=lambda r: value(r, "ttft")) if prefill else None,
        max(decode, key=lambda r: value(r, "decode_tokens_per_s")) if decode else None,
    )


def _flags(r: Record) -> str:
    c = r.config
    media = " ".join(f"--image {i}" for i in c.get("images") or [])
    frames = f" --video-frames {c['video_frames']}" if c.get("video_frames") else ""
    device = "cpu" if hardware_of(r).startswith("CPU ") else "cuda"
    return f"--device {device} --dtype {c.get('dtype')} {media}{frames}".replace("  ", " ")


def _deployment_command(group: dict, sample: Record, presets: list[str]) -> str:
    """The ladder run that measures the group's rung for NVILA and its peers again, in one run (so they pair), in
    the rung's weight format (scales, int4 kernel, LM head) and the group's engine."""
    x = sample.extra
    rung = [f"--engine {group['engine']}", f"--media {x.get('media')}", f"--rung {x.get('rung')}"]
    rung += [f"--{k.replace('_', '-')} {x[k]}" for k in ("scales", "int4_kernel", "lm_head") if x.get(k)]
    flags = " ".join(f"--preset {p}" for p in presets)
    return f"nvila-bench run deployment {_flags(sample)} {flags} {' '.join(rung)} --out results/"


def commands(group: dict, sample: Record) -> list[str]:
    """The commands that would fill the group's missing figures: the suite each missing part needs, with the
    group's setting and presets (NVILA-8B, or its stand-in, where no NVILA row ran)."""
    if group["engine"] == FASTEST:  # its engines' own groups give the commands
        return []
    presets = [row["preset"] for row in group["rows"]]
    if not group["nvila_measured"]:
        presets.insert(0, "nvila-tiny" if group["tiny"] else "nvila-8b")
    if group["weights"] != AS_BUILT:  # a ladder rung: the deployment suite measures both parts at once
        return [] if group["nvila_measured"] else [_deployment_command(group, sample, presets)]
    engine, out = f" --engine {group['engine']}", []
    for suite, metric in (("prefill", "ttft"), ("decode", "decode_tps")):
        lacking = [p for p in presets if not any(row["preset"] == p and row[metric] for row in group["rows"])]
        if lacking:
            flags = " ".join(f"--preset {p}" for p in lacking)
            out.append(f"nvila-bench run {suite} {_flags(sample)}{engine} {flags} --out results/")
    return out


def _group(setting: tuple, engine: str, slots: dict[str, tuple[Record | None, Record | None]]) -> dict | None:
    """One comparison's rows, NVILA first, with NVILA's ratios over each peer; None without a peer."""
    hardware, tiny, _, weights = setting
    rows = [_row(p, *parts) for p, parts in slots.items()]
    peers = [row for row in rows if row["peer"]]
    if not peers:
        return None
    rows.sort(key=lambda row: (row["peer"], row["preset"]))
    for row in rows:
        if not row["peer"]:
            row["vs_peers"] = [_vs(row, peer) for peer in peers]
    sample = next(r for parts in slots.values() for r in parts if r is not None)
    c = sample.config
    group = {
        "hardware": hardware,
        "tiny": tiny,
        "weights": weights,
        "engine": engine,
        "dtype": c.get("dtype"),
        "request": f"{media_label(c)}, {c.get('prompt_tokens')} prompt tokens, batch {c.get('batch_size')}",
        "preprocess": preprocess_of(sample),
        "rows": rows,
        "nvila_measured": len(peers) < len(rows),
    }
    group["commands"] = commands(group, sample)
    return group


def _order(group: dict) -> tuple:
    engine = group["engine"]
    rank = ENGINES.index(engine) if engine in ENGINES else len(ENGINES)
    return (
        group["hardware"],
        group["tiny"],
        group["request"],
        str(group["dtype"]),
        group["weights"] != AS_BUILT,
        group["weights"] != "bf16",
        group["weights"],
        engine == FASTEST,
        rank,
        engine,
    )


def comparison(records: list[Record]) -> dict:
    """The section: one group per (setting, engine) with a peer in it, and per setting where a model ran several
    engines, the group of each model's fastest engine."""
    slots = _slots(records)
    groups, by_setting = [], {}
    for (setting, engine), presets in slots.items():
        group = _group(setting, engine, {p: (s.get("prefill"), s.get("decode")) for p, s in presets.items()})
        if group:
            groups.append(group)
        for preset, slot in presets.items():
            by_setting.setdefault(setting, {}).setdefault(preset, []).append(slot)
    for setting, presets in by_setting.items():
        # only where a model had a choice: a set of one engine per model is no best-engine comparison
        if max(len(s) for s in presets.values()) > 1:
            group = _group(setting, FASTEST, {p: _fastest(s) for p, s in presets.items()})
            groups += [group] if group else []
    groups.sort(key=_order)
    claim = next((c for c in paper.claims() if c["id"] == "prefill-speedup"), {})
    return {
        "groups": groups,
        "paper_setting": claim.get("setting"),
        "stages": PREFILL_STAGES,
        "commands": [COMMAND, DECODE_COMMAND, W4A16_COMMAND],
    }


# ---- pairs for the paper-claims table ----------------------------------------------------------------------
def _is(name, real: str) -> bool:
    return stands_for(name) == real


def same_run_pairs(records: list[Record], metric: str, peer: str) -> list[tuple[Record, Record]]:
    """(NVILA record, peer record) of one run and one setting (suite, hardware, request, dtype, engine, weight
    format) that both hold `metric`; the peer is the preset `peer` or, beside a tiny NVILA, its tiny stand-in.
    Of a pair several engines measured, the preferred engine's (compiled first)."""

    def key(r: Record) -> tuple:
        return r.run_id, r.suite, request_key(r, without=("image_file",)), weights_of(r), is_tiny(r.preset)

    def rank(pair: tuple) -> int:
        return ENGINES.index(engine_of(pair[0])) if engine_of(pair[0]) in ENGINES else len(ENGINES)

    def point(pair: tuple) -> tuple:  # the pair but its engine
        nvila, other = pair
        request = request_key(nvila, without=("engine", "cache"))
        return nvila.suite, nvila.preset, other.preset, request, weights_of(nvila)

    rows = [r for r in records if _member(r) and value(r, metric)]
    peers = {key(r): r for r in rows if is_peer(r) and _is(r.preset, peer)}
    pairs = [(r, peers[key(r)]) for r in rows if is_nvila_model(r) and key(r) in peers]
    best: dict[tuple, int] = {}
    for pair in pairs:
        best[point(pair)] = min(best.get(point(pair), rank(pair)), rank(pair))
    return [pair for pair in pairs if rank(pair) == best[point(pair)]]


def per_sample_seconds(r: Record) -> float | None:
    """A train record's step time per sample: 1 / samples_per_s, else the step time over the batch."""
    sps, step = value(r, "samples_per_s"), value(r, "step_time")
    return 1 / sps if sps else step / r.config["batch_size"] if step and r.config.get("batch_size") else None


def train_pairs(records: list[Record], nvila: str, peer: str) -> list[tuple[Record, Record]]:
    """(NVILA record, peer record) of the train suite with the same stage, hardware, dtype, media and FP8
    setting, where both have a per-sample step time: `nvila` and `peer` or their tiny stand-ins, never one of
    each; the real models' pairs first."""
    found: dict[tuple, Record] = {}
    for r in measured(records, "train"):
        role = "nvila" if _is(r.preset, nvila) else "peer" if _is(r.preset, peer) else None
        if role is None or per_sample_seconds(r) is None:
            continue
        c = r.config
        media = tuple(c.get("images") or ()), c.get("video_frames")
        fp8 = bool(r.extra.get("fp8"))
        key = (role, is_tiny(r.preset), r.extra.get("stage"), hardware_of(r), c.get("dtype"), media, fp8)
        if key not in found or r.timestamp >= found[key].timestamp:
            found[key] = r
    pairs = [(r, found[("peer", *k[1:])]) for k, r in found.items() if k[0] == "nvila" and ("peer", *k[1:]) in found]
    return sorted(pairs, key=lambda pair: is_tiny(pair[0].preset))
