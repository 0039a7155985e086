"""The `scale-then-compress` suite's report view: tokens and latency of VILA1.5, NVILA scaled only and NVILA on one
image and one video, from the suite's analytic records and the prefill / decode records it scheduled (each one's
`extra["comparison"]` is "scale-then-compress")."""

from __future__ import annotations

from nvila_bench.core.measuring.results import Record

from .. import charts
from ..records import hardware_of, value

TITLE = "Scale-then-compress"  # the page's navigation
ANCHOR = "stc"  # the section's id


def scale_then_compress(records: list[Record]) -> dict:
    """Tokens and latency of baseline / scaled-only / NVILA on the image and the video request."""
    rows, tokens, latency = [], {}, {}
    variants = ("baseline", "scaled-only", "nvila")
    for r in records:
        extra = r.extra
        if extra.get("comparison") != "scale-then-compress" or not r.ok:
            continue
        kind = "analytic" if r.suite == "scale-then-compress" else r.suite
        rows.append(
            {
                "media": extra["media"],
                "variant": extra["variant"],
                "preset": r.preset,
                "kind": kind,
                "provenance": r.provenance,
                "hardware": hardware_of(r),
                "tokens": value(r, "media_tokens"),
                "ttft": value(r, "ttft"),
                "ttft_floor": value(r, "ttft_floor"),
                "tpot": value(r, "tpot"),
                "tpot_floor": value(r, "tpot_floor"),
                "decode_tps": value(r, "decode_tokens_per_s"),
            }
        )
    order = {v: i for i, v in enumerate(variants)}
    rows.sort(key=lambda x: (x["media"], order.get(x["variant"], 9), x["kind"]))
    charts_out = {}
    if rows:
        for row in rows:
            tokens.setdefault(row["variant"], {})[row["media"]] = row["tokens"]
            if row["kind"] == "prefill" and row["ttft"] is not None:
                latency.setdefault(row["variant"], {})[row["media"]] = row["ttft"] * 1e3
        media = ["image", "video"]
        series = {v: [tokens.get(v, {}).get(m) for m in media] for v in variants if v in tokens}
        charts_out["tokens"] = charts.grouped_bars(media, series, "LLM positions for the media", log=True)
        if latency:
            lat = {v: [latency.get(v, {}).get(m) for m in media] for v in variants if v in latency}
            charts_out["latency"] = charts.grouped_bars(media, lat, "TTFT, ms (measured)", log=True)
        else:
            floors = {}
            for row in rows:
                if row["kind"] == "analytic" and row["ttft_floor"]:
                    floors.setdefault(row["variant"], {})[row["media"]] = row["ttft_floor"] * 1e3
            if floors:
                fl = {v: [floors.get(v, {}).get(m) for m in media] for v in variants if v in floors}
                charts_out["latency"] = charts.grouped_bars(media, fl, "TTFT floor, ms (analytic)", log=True)
    return {
        "rows": rows,
        "charts": charts_out,
        "command": "nvila-bench run scale-then-compress --out results/  "
        "(--tiny to measure the stand-ins on CPU, --device cuda for the real models)",
    }


def build(records: list[Record]) -> dict:
    return scale_then_compress(records)
