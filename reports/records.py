"""Picking figures out of result records: the small vocabulary the report sections and claims share.

Records arrive from one or more results files; a point measured twice (a re-run, or two files) keeps its
newest record, so a report shows one figure per point and hardware.
"""

from __future__ import annotations

from nvila_bench.core.gate import match_key, point_label
from nvila_bench.core.results import hardware_of

# Which VILA1.5 model each NVILA preset is compared with (same LLM size class); tiny stand-ins likewise.
BASELINES = {
    "nvila-8b": "vila1.5-8b",
    "nvila-8b-scaled-only": "vila1.5-8b",
    "nvila-lite-8b": "vila1.5-8b",
    "nvila-8b-video": "vila1.5-8b",
    "nvila-lite-2b": "vila1.5-3b",
    "nvila-tiny": "vila-tiny",
    "nvila-tiny-scaled-only": "vila-tiny",
    "nvila-lite-tiny": "vila-tiny",
    "nvila-video-tiny": "vila-tiny",
}
TINY_PRESETS = {"nvila-tiny", "nvila-tiny-scaled-only", "nvila-lite-tiny", "nvila-video-tiny", "vila-tiny"}


def latest(records: list[dict]) -> list[dict]:
    """The newest record of each (point, hardware), in first-seen order."""
    chosen: dict[tuple[str, str], dict] = {}
    for r in records:
        key = (match_key(r), hardware_of(r))
        if key not in chosen or r["timestamp"] >= chosen[key]["timestamp"]:
            chosen[key] = r
    return list(chosen.values())


def value(record: dict | None, name: str):
    """A metric's value, or None when the record or the metric is missing."""
    if record is None or record["status"] != "ok":
        return None
    m = record["metrics"].get(name)
    return None if m is None else m["value"]


def request_key(record: dict) -> tuple:
    """What makes two records the same request on the same machine, whatever the model: media, prompt,
    batch, dtype and hardware (the preset is left out so NVILA and its baseline can be paired)."""
    c = record["config"]
    return (
        tuple(c.get("images") or ()), c.get("video_frames"), c.get("temporal_pool"), c.get("prompt_tokens"),
        c.get("batch_size"), c.get("dtype"), c.get("new_tokens") if record["suite"] == "decode" else None,
        c.get("cache") if record["suite"] == "decode" else None, hardware_of(record),
    )  # fmt: skip


def media_label(config: dict) -> str:
    media = list(config.get("images") or []) + ([f"{config['video_frames']} frames"] if config.get("video_frames") else [])
    return " + ".join(media) or "—"


def point_name(record: dict) -> str:
    """Preset, request and (for comparison records) the variant: the row label of the report's tables."""
    variant = (record["config"].get("extra") or {}).get("variant")
    return f"{record['preset']} {media_label(record['config'])}" + (f" [{variant}]" if variant else "")


def measured(records: list[dict], suite: str) -> list[dict]:
    return [r for r in records if r["suite"] == suite and r["provenance"] == "measured" and r["status"] == "ok"]


def baseline_pairs(records: list[dict], suite: str) -> list[tuple[dict, dict]]:
    """(NVILA record, its VILA1.5 baseline record) measured on the same request and hardware."""
    rows = measured(records, suite)
    by_key = {(r["preset"], request_key(r)): r for r in rows}
    pairs = []
    for r in rows:
        base = BASELINES.get(r["preset"])
        if base and (base, request_key(r)) in by_key:
            pairs.append((r, by_key[(base, request_key(r))]))
    return pairs


__all__ = ["BASELINES", "TINY_PRESETS", "latest", "value", "request_key", "media_label", "measured", "baseline_pairs",
           "hardware_of", "point_label", "point_name"]
