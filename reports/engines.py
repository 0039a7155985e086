"""The "Engines side by side" section: the same point measured by several LLM engines, as plain data.

An engine (`config["engine"]`, `model/engines.py`) is how the LLM ran: `eager` (a Python-driven forward per
token), `compiled` (static KV cache, CUDA-graph decode, compiled media stages), and transformers' own
`generate()` as peers, `hf-generate` and `hf-static`. Records that are the same point except the engine (same
suite, preset, request, dtype, preprocessing and hardware; the decode cache is left out, the engine decides
it) form a group; each engine other than the reference (`compiled`, else the first of `records.ENGINES`
measured) gets one row with its figures beside the reference's and the speed-up of the reference over it.
"""

from __future__ import annotations

import math

from nvila_bench.core.measuring.results import Record

from .records import ENGINES, engine_of, hardware_of, measured, media_label, preprocess_of, request_key, value

SUITES = ("prefill", "decode")
METRICS = {"prefill": ("ttft", "llm_prefill"), "decode": ("tpot", "prefill")}  # suite -> (headline, second figure)
AGREE_TOKENS = 16  # the first output ids compared between an engine and the reference
# Relative difference of the last step's sampled logits (suites/decode.py) under which two engines count as computing
# the same: bf16 rounding over a step's kernels lands between 1e-3 and 1e-2; a wrong weight, position or cache read
# moves the logits by far more. Their ids alone cannot say it where a random-weight model repeats one id.
LOGITS_CLOSE = 0.05
COMMAND = (
    "nvila-bench run decode --preset nvila-8b --device cuda --image 1920x1080 "
    "--engine compiled --engine hf-static --engine eager --out results/"
)


def _rank(record: Record) -> int:
    engine = engine_of(record)
    return ENGINES.index(engine) if engine in ENGINES else len(ENGINES)


def _group_key(r: Record) -> tuple:
    return r.suite, r.preset, r.extra.get("variant"), request_key(r, without=("engine", "cache"))


def ratio(reference: float | None, peer: float | None) -> float | None:
    """How many times faster the reference is than the peer (time over time), or None without both."""
    return peer / reference if reference and peer else None


def ratio_text(reference_engine: str, peer_engine: str, r: float | None) -> str | None:
    if r is None:
        return None
    if r >= 1:
        return f"{reference_engine} is {r:.2f}x faster than {peer_engine}"
    return f"{reference_engine} is {1 / r:.2f}x slower than {peer_engine}"


def relative_difference(ours: list, reference: list) -> float | None:
    """||ours - reference|| / ||reference|| over the entries both hold (None: masked by a logits processor), or None
    where the two cannot be compared (lengths, nothing left, a zero reference)."""
    if len(ours) != len(reference):
        return None
    pairs = [(o, r) for o, r in zip(ours, reference) if o is not None and r is not None]
    norm = math.sqrt(sum(r * r for _, r in pairs))
    return math.sqrt(sum((o - r) ** 2 for o, r in pairs)) / norm if norm else None


def agreement(reference: Record, peer: Record) -> dict | None:
    """Whether the first `AGREE_TOKENS` output ids of two decode records agree, how many distinct ids they hold (one:
    the ids cannot tell engines apart), whether the whole sequences were the same (None: not recorded), and where
    they were, the relative difference of the last steps' logits and whether it is under LOGITS_CLOSE (never, where
    either engine's logits held NaN: `logits_nan` counts them); None when either record lacks ids."""
    a, b = value(reference, "output_ids"), value(peer, "output_ids")
    if not isinstance(a, list) or not isinstance(b, list) or not a or not b:
        return None
    a, b = a[:AGREE_TOKENS], b[:AGREE_TOKENS]
    n = min(len(a), len(b))
    first = next((i for i in range(n) if a[i] != b[i]), None)
    digests = value(reference, "output_ids_digest"), value(peer, "output_ids_digest")
    nan = [value(r, "last_step_logits_nan") or 0 for r in (reference, peer)]
    out = {
        "agree": first is None and len(a) == len(b),
        "compared": n,
        "first_difference": first,
        "distinct": len(set(a[:n])),
        "same_sequence": None if None in digests else digests[0] == digests[1],
        "logits_nan": sum(nan),
        "logits_difference": None,
        "logits_close": None,
    }
    ours, theirs = value(peer, "last_step_logits"), value(reference, "last_step_logits")
    if out["logits_nan"]:  # an engine whose logits hold NaN (or +inf) computes nothing that could agree
        out["logits_close"] = False
    elif out["same_sequence"] and isinstance(ours, list) and isinstance(theirs, list):
        out["logits_difference"] = difference = relative_difference(ours, theirs)
        out["logits_close"] = None if difference is None else difference <= LOGITS_CLOSE
    return out


PEERS = ("hf-static", "hf-generate")  # transformers' own generate(): the peers every other engine is stated against


def peer_key(r: Record) -> tuple:
    """A record's point and engine: what `peer_ratios` is looked up by."""
    return (*_group_key(r), engine_of(r))


def peer_ratios(records: list[Record]) -> dict[tuple, list[dict]]:
    """`peer_key` of each record of a non-peer engine -> per transformers peer measured on the same point, how
    many times faster the record's headline figure (TTFT, TPOT) is, and whether both come from one run."""
    groups: dict[tuple, dict[str, Record]] = {}
    for suite in SUITES:
        for r in measured(records, suite):
            groups.setdefault(_group_key(r), {})[engine_of(r)] = r
    out = {}
    for by_engine in groups.values():
        peers = [(e, p) for e, p in by_engine.items() if e in PEERS]
        for engine, r in by_engine.items():
            if engine in PEERS:
                continue
            main = METRICS[r.suite][0]
            out[peer_key(r)] = [
                {"engine": e, "ratio": ratio(value(r, main), value(p, main)), "same_run": p.run_id == r.run_id}
                for e, p in peers
                if ratio(value(r, main), value(p, main)) is not None
            ]
    return out


def side_by_side(records: list[Record]) -> dict:
    """One row per non-reference engine of each group of records that differ only in the engine."""
    groups: dict[tuple, list[Record]] = {}
    for suite in SUITES:
        for r in measured(records, suite):
            groups.setdefault(_group_key(r), []).append(r)
    rows = []
    for group in groups.values():
        by_engine: dict[str, Record] = {}
        for r in group:  # records arrive newest-per-point (`records.latest`); keep the last of an engine
            by_engine[engine_of(r)] = r
        if len(by_engine) < 2:
            continue
        ordered = sorted(by_engine.values(), key=_rank)
        ref, peers = ordered[0], ordered[1:]
        suite = ref.suite
        main, second = METRICS[suite]
        for peer in peers:
            main_ratio = ratio(value(ref, main), value(peer, main))
            second_ratio = ratio(value(ref, second), value(peer, second))
            rows.append(
                {
                    "suite": suite,
                    "preset": ref.preset,
                    "media": media_label(ref.config),
                    "dtype": ref.config.get("dtype"),
                    "batch": ref.config.get("batch_size"),
                    "preprocess": preprocess_of(ref),
                    "hardware": hardware_of(ref),
                    "new_tokens": ref.config.get("new_tokens") if suite == "decode" else None,
                    "variant": ref.extra.get("variant"),
                    "reference": engine_of(ref),
                    "engine": engine_of(peer),
                    "metric": main,
                    "second_metric": second,
                    "reference_value": value(ref, main),
                    "value": value(peer, main),
                    "reference_second": value(ref, second),
                    "second": value(peer, second),
                    "ratio": main_ratio,
                    "text": ratio_text(engine_of(ref), engine_of(peer), main_ratio),
                    "second_ratio": second_ratio,
                    "reference_setup": value(ref, "setup_seconds"),
                    "setup": value(peer, "setup_seconds"),
                    "reference_capture": value(ref, "graph_capture_seconds"),  # the CUDA graph captures of that setup
                    "tokens": agreement(ref, peer) if suite == "decode" else None,
                    # an engine that fell back (any engine_note): its figure and the ratio are marked with the note
                    "reference_fell_back": value(ref, "engine_note"),
                    "fell_back": value(peer, "engine_note"),
                    "notes": [
                        f"{engine_of(r)}'s prefill here: {value(r, 'prefill_engine')}"
                        for r in (ref, peer)
                        if value(r, "prefill_engine")
                    ]
                    + (
                        [f"vision attention: {value(ref, 'vision_attention')}"]
                        if value(ref, "vision_attention")
                        else []
                    )
                    + (
                        [f"LLM prefill attention: {value(ref, 'llm_prefill_attention')}"]
                        if value(ref, "llm_prefill_attention")
                        else []
                    ),
                    "same_run": ref.run_id == peer.run_id,
                }
            )
    rows.sort(
        key=lambda x: (
            SUITES.index(x["suite"]),
            str(x["preset"]),
            x["media"],
            x["hardware"],
            x["preprocess"],
            ENGINES.index(x["engine"]) if x["engine"] in ENGINES else 9,
        )
    )
    return {"rows": rows, "command": COMMAND, "agree_tokens": AGREE_TOKENS, "logits_close": LOGITS_CLOSE}
