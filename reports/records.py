"""Picking figures out of result records: the small vocabulary the report sections and claims share.

Records arrive from one or more results files; a point measured twice (a re-run, or two files) keeps its
newest record, so a report shows one figure per point and hardware.

A preset's role in a comparison (its VILA1.5 baseline, whether it is a tiny stand-in, whether it is NVILA at
all) comes from the preset registry (`NVILAConfig.baseline`, `.is_tiny`, `.is_nvila`; a peer VLM is never NVILA).
A record may name a preset the registry does not know (a checkpoint directory's name): such a preset has no role
(no baseline, not tiny) and counts as NVILA unless the record states a VILA1.5 or peer family.
"""

from __future__ import annotations

import functools
from pathlib import PurePath

from nvila_bench.model import get_preset
from nvila_bench.model.presets import Preset, UnknownPresetError, preset_names

from nvila_bench.core.comparison.gate import match_key
from nvila_bench.core.measuring.results import Record, hardware_of


def preset_config(name) -> Preset | None:
    """The registered preset of that name, or None (an unregistered name, e.g. a checkpoint's, has no role)."""
    if not isinstance(name, str):
        return None
    try:
        return get_preset(name)
    except UnknownPresetError:
        return None


def baseline_of(name) -> str | None:
    """The VILA1.5 preset an NVILA preset is compared with (same LLM size class), or None."""
    cfg = preset_config(name)
    return cfg.baseline if cfg else None


def is_tiny(name) -> bool:
    """A CPU-sized random-weight stand-in (not the real model)."""
    cfg = preset_config(name)
    return bool(cfg and cfg.is_tiny)


def is_nvila(record_or_name: Record | str | None) -> bool:
    """NVILA (any variant) as opposed to a VILA1.5 baseline or a peer VLM: the registered preset's family, else
    the family the record states (config or extra "family"), else NVILA."""
    record = record_or_name if isinstance(record_or_name, Record) else None
    name = record.preset if record else record_or_name
    cfg = preset_config(name)
    if cfg is not None:
        return cfg.is_nvila
    family = (record.config.get("family") or record.extra.get("family")) if record else None
    return family not in ("vila1.5", "peer")


def is_peer(record_or_name: Record | str | None) -> bool:
    """A peer VLM (Qwen2-VL, LLaVA-OneVision; family "peer"): the registered preset's family, else the family
    the record states."""
    record = record_or_name if isinstance(record_or_name, Record) else None
    cfg = preset_config(record.preset if record else record_or_name)
    if cfg is not None:
        return cfg.family == "peer"
    return bool(record) and (record.config.get("family") or record.extra.get("family")) == "peer"


def stands_for(name) -> str | None:
    """The real preset a registered preset is, or stands in for (a tiny stand-in's `stands_in_for`); None for a
    name the registry does not know."""
    cfg = preset_config(name)
    return None if cfg is None else cfg.stands_in_for or cfg.name


@functools.cache
def is_scaled_only(name) -> bool:
    """NVILA without token compression (a preset's `scaled_only` variant): an ablation, not NVILA as published."""
    return any(getattr(get_preset(n), "scaled_only", None) == name for n in preset_names())


def point_label(record: Record) -> str:
    """A point in words, as the report, the dashboard and `nvila-bench gate` name it: suite, preset, media, batch
    and dtype, then the settings that tell its suite's points apart (a decode's tokens and cache, a ladder's rung
    and kernel, the engine where one ran the LLM, where a prefill preprocessed)."""
    c = record.config
    extra = record.extra
    media = list(c.get("images") or []) + ([f"{c['video_frames']}f"] if c.get("video_frames") else [])
    if extra.get("image_file"):  # a real file, not a random image of its size
        media.append(PurePath(extra["image_file"]).name)
    parts = [record.suite, str(record.preset), "+".join(media), f"b{c.get('batch_size', 1)}", str(c.get("dtype"))]
    if record.suite == "decode":
        parts.append(f"{c.get('new_tokens')}tok {c.get('cache')}")
    for key in ("variant", "stage", "recipe", "rung", "int4_kernel", "scales", "lm_head"):
        if extra.get(key):
            parts.append(str(extra[key]))
    if extra.get("fp8"):
        parts.append("fp8")
    if c.get("engine") and record.suite in ("prefill", "decode", "deployment"):  # how the LLM ran, when recorded
        parts.append(str(c["engine"]))
    if record.suite == "prefill" and c.get("preprocess"):  # where the images were preprocessed, when recorded
        parts.append(f"{c['preprocess']}-preprocess")
    if (extra.get("world_size") or 1) > 1:
        parts.append(f"x{extra['world_size']} ranks")
    return " ".join(p for p in parts if p and p != "None")


def latest(records: list[Record]) -> list[Record]:
    """The newest record of each (point, hardware), in first-seen order."""
    chosen: dict[tuple[str, str], Record] = {}
    for r in records:
        key = (match_key(r), hardware_of(r))
        if key not in chosen or r.timestamp >= chosen[key].timestamp:
            chosen[key] = r
    return list(chosen.values())


def by_setting(records: list[Record], key: str) -> dict[tuple[str, str], dict]:
    """(hardware, preset) -> {setting: its newest record}, the setting being the record's extra[key] (a training
    stage, a fine-tuning recipe): the figures of one preset on one hardware, never mixed across them."""
    out: dict[tuple[str, str], dict] = {}
    for r in records:
        settings = out.setdefault((hardware_of(r), r.preset), {})
        setting = r.extra.get(key)
        if setting not in settings or r.timestamp >= settings[setting].timestamp:
            settings[setting] = r
    return out


def value(record: Record | None, name: str):
    """A metric's value, or None when the record is missing, failed, or lacks the metric."""
    return None if record is None else record.value(name)


ENGINES = ("compiled", "eager", "hf-static", "hf-generate")  # how the LLM ran; the preferred figure first
REFERENCE_ENGINE = ENGINES[0]


def engine_of(record: Record) -> str:
    """The engine that ran the LLM; records written before engines existed ran it eagerly."""
    return record.config.get("engine") or "eager"


def preprocess_of(record: Record) -> str:
    """Where the images were preprocessed; records written before `--preprocess` existed did it on the CPU."""
    return record.config.get("preprocess") or "cpu"


def request_key(record: Record, without: tuple[str, ...] = ()) -> tuple:
    """What makes two records the same request on the same machine, whatever the model: media (a real image
    file is another request than a random image of its size), prompt, batch, dtype, (decode) tokens and cache,
    engine, preprocessing, hardware, and the comparison a record belongs to (a scale-then-compress record is
    paired within its comparison, never with a plain point's). The preset is left out so NVILA and its
    baseline can be paired. `without` names fields to leave out as well."""
    c = record.config
    decode = record.suite == "decode"
    fields = {
        "images": tuple(c.get("images") or ()),
        "image_file": record.extra.get("image_file"),
        "comparison": record.extra.get("comparison"),
        "video_frames": c.get("video_frames"),
        "temporal_pool": c.get("temporal_pool"),
        "prompt_tokens": c.get("prompt_tokens"),
        "batch_size": c.get("batch_size"),
        "dtype": c.get("dtype"),
        "new_tokens": c.get("new_tokens") if decode else None,
        "cache": c.get("cache") if decode else None,
        "engine": engine_of(record),
        "preprocess": preprocess_of(record),
        "hardware": hardware_of(record),
    }
    return tuple(v for k, v in fields.items() if k not in without)


def prefer_engine(items: list, record=lambda x: x) -> list:
    """Of the items that are the same point except the engine (`record(item)` is the item's record), only the
    preferred engine's (compiled, else eager, hf-static, hf-generate), in first-seen order."""

    def rank(x) -> int:
        engine = engine_of(record(x))
        return ENGINES.index(engine) if engine in ENGINES else len(ENGINES)

    def point(x) -> tuple:  # the engine decides the decode cache, so it is left out too
        r = record(x)
        return r.suite, r.preset, request_key(r, without=("engine", "cache"))

    best: dict[tuple, int] = {}
    for x in items:
        best[point(x)] = min(best.get(point(x), rank(x)), rank(x))
    return [x for x in items if rank(x) == best[point(x)]]


def media_label(config: dict) -> str:
    """The request's media, e.g. "1920x1080", "8 frames", "640x480 photo.jpg" (a real image file, by name)."""
    media = list(config.get("images") or []) + (
        [f"{config['video_frames']} frames"] if config.get("video_frames") else []
    )
    image_file = (config.get("extra") or {}).get("image_file")
    if image_file:
        media.append(PurePath(image_file).name)
    return " ".join(media) if image_file else " + ".join(media) or "—"


def point_name(record: Record) -> str:
    """Preset, request and, in brackets, the variant (comparison records), the engine and (prefill) where the
    images were preprocessed, when the record says: the row label of the report's tables."""
    c = record.config
    tags = [record.extra.get("variant"), c.get("engine") if record.suite in ("prefill", "decode") else None]
    if record.suite == "prefill" and c.get("preprocess"):
        tags.append(f"{c['preprocess']} preprocess")
    tags = [str(t) for t in tags if t]
    return f"{record.preset} {media_label(c)}" + (f" [{', '.join(tags)}]" if tags else "")


def measured(records: list[Record], suite: str) -> list[Record]:
    return [r for r in records if r.suite == suite and r.provenance == "measured" and r.ok]


def baseline_pairs(records: list[Record], suite: str) -> list[tuple[Record, Record]]:
    """(NVILA record, its VILA1.5 baseline record) measured on the same request, engine and hardware; of a point
    several engines measured, the preferred engine's pair (compiled first)."""
    rows = measured(records, suite)
    by_key = {(r.preset, request_key(r)): r for r in rows}
    pairs = []
    for r in rows:
        base = baseline_of(r.preset)
        if base and (base, request_key(r)) in by_key:
            pairs.append((r, by_key[(base, request_key(r))]))
    return prefer_engine(pairs, record=lambda pair: pair[0])


# model/quantize.py COMPONENTS, in its order (tests/test_report_ladder.py checks), and their names in the report:
# not imported from there, which imports torch, so the report renders without it.
COMPONENT_NAMES = {"vision": "ViT", "projector": "projector", "llm": "LLM"}
COMPONENTS = tuple(COMPONENT_NAMES)


def formats_text(
    formats: dict[str, str], scales: str = "none", int4_kernel: str | None = None, lm_head: bool = False
) -> str:
    kernel = f" ({int4_kernel})" if int4_kernel else ""
    quantized = [
        f"{COMPONENT_NAMES[c]} {f}{kernel if f == 'w4a16' else ''}{' + LM head' if c == 'llm' and lm_head else ''}"
        for c, f in formats.items()
        if f != "bf16"
    ]
    if quantized and scales == "activation-aware":
        quantized.append("AWQ / SmoothQuant scales")
    elif quantized:
        quantized.append("round to nearest")
    return ", ".join(quantized) or "bf16"


__all__ = [
    "preset_config",
    "baseline_of",
    "is_tiny",
    "is_nvila",
    "latest",
    "value",
    "request_key",
    "media_label",
    "measured",
    "baseline_pairs",
    "hardware_of",
    "point_label",
    "point_name",
    "ENGINES",
    "REFERENCE_ENGINE",
    "engine_of",
    "preprocess_of",
    "prefer_engine",
    "by_setting",
    "is_peer",
    "stands_for",
    "is_scaled_only",
    "formats_text",
    "COMPONENTS",
    "COMPONENT_NAMES",
]
