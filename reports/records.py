"""Picking figures out of result records: the small vocabulary the report sections and claims share.

Records arrive from one or more results files; a point measured twice (a re-run, or two files) keeps its
newest record, so a report shows one figure per point and hardware.

A preset's role in a comparison (its VILA1.5 baseline, whether it is a tiny stand-in, whether it is NVILA at
all) comes from the preset registry (`NVILAConfig.baseline`, `.is_tiny`, `.is_nvila`). A record may name a
preset the registry does not know (a checkpoint directory's name): such a preset has no role (no baseline, not
tiny) and counts as NVILA unless the record states a VILA1.5 family.
"""

from __future__ import annotations

from nvila_bench.core.gate import match_key, point_label
from nvila_bench.core.results import Record, hardware_of
from nvila_bench.model import NVILAConfig, get_preset
from nvila_bench.model.presets import UnknownPresetError


def preset_config(name) -> NVILAConfig | None:
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
    """NVILA (any variant) as opposed to a VILA1.5 baseline: the registered preset's family, else the family
    the record states (config or extra "family"), else NVILA."""
    record = record_or_name if isinstance(record_or_name, Record) else None
    name = record.preset if record else record_or_name
    cfg = preset_config(name)
    if cfg is not None:
        return cfg.is_nvila
    family = (record.config.get("family") or record.extra.get("family")) if record else None
    return family != "vila1.5"


def latest(records: list[Record]) -> list[Record]:
    """The newest record of each (point, hardware), in first-seen order."""
    chosen: dict[tuple[str, str], Record] = {}
    for r in records:
        key = (match_key(r), hardware_of(r))
        if key not in chosen or r.timestamp >= chosen[key].timestamp:
            chosen[key] = r
    return list(chosen.values())


def value(record: Record | None, name: str):
    """A metric's value, or None when the record is missing, failed, or lacks the metric."""
    return None if record is None else record.value(name)


def request_key(record: Record) -> tuple:
    """What makes two records the same request on the same machine, whatever the model: media, prompt,
    batch, dtype and hardware (the preset is left out so NVILA and its baseline can be paired)."""
    c = record.config
    decode = record.suite == "decode"
    return (
        tuple(c.get("images") or ()), c.get("video_frames"), c.get("temporal_pool"), c.get("prompt_tokens"),
        c.get("batch_size"), c.get("dtype"), c.get("new_tokens") if decode else None,
        c.get("cache") if decode else None, hardware_of(record),
    )  # fmt: skip


def media_label(config: dict) -> str:
    media = list(config.get("images") or []) + ([f"{config['video_frames']} frames"] if config.get("video_frames") else [])
    return " + ".join(media) or "—"


def point_name(record: Record) -> str:
    """Preset, request and (for comparison records) the variant: the row label of the report's tables."""
    variant = record.extra.get("variant")
    return f"{record.preset} {media_label(record.config)}" + (f" [{variant}]" if variant else "")


def measured(records: list[Record], suite: str) -> list[Record]:
    return [r for r in records if r.suite == suite and r.provenance == "measured" and r.ok]


def baseline_pairs(records: list[Record], suite: str) -> list[tuple[Record, Record]]:
    """(NVILA record, its VILA1.5 baseline record) measured on the same request and hardware."""
    rows = measured(records, suite)
    by_key = {(r.preset, request_key(r)): r for r in rows}
    pairs = []
    for r in rows:
        base = baseline_of(r.preset)
        if base and (base, request_key(r)) in by_key:
            pairs.append((r, by_key[(base, request_key(r))]))
    return pairs


__all__ = ["preset_config", "baseline_of", "is_tiny", "is_nvila", "latest", "value", "request_key", "media_label",
           "measured", "baseline_pairs", "hardware_of", "point_label", "point_name"]
