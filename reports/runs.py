"""The report's runs: the failed points, and one entry per distinct environment (what measured, at which revision)."""

from __future__ import annotations

import json

from nvila_bench.core.measuring.results import Record

from .records import hardware_of, point_label


def failures(records: list[Record]) -> list[dict]:
    return [
        {"label": point_label(r), "status": r.status, "error": r.error, "hardware": hardware_of(r)}
        for r in records
        if not r.ok
    ]


def _dirty_text(env: dict) -> str:
    """How a run's tree differed from its revision: nothing, or " (dirty)" with the diff's digest where recorded."""
    if not env.get("git_dirty"):
        return ""
    digest = env.get("git_diff_sha256")
    return f" (dirty, diff sha256 {digest[:12]})" if digest else " (dirty)"


def environments(records: list[Record]) -> list[dict]:
    """One entry per distinct environment (run), with the key fields up front and the full JSON behind."""
    seen, out = {}, []
    for r in records:
        env = r.environment
        if not env:
            continue
        blob = json.dumps(env, sort_keys=True, indent=1)
        if blob in seen:
            seen[blob]["runs"].add(r.run_id)
            continue
        gpus = env.get("gpu") or []
        entry = {
            "hardware": hardware_of(r),
            "runs": {r.run_id},
            "torch": env.get("torch"),
            "cuda": env.get("cuda"),
            "transformers": env.get("transformers"),
            "python": env.get("python"),
            "platform": env.get("platform"),
            "revision": (env.get("git_revision") or "unknown")[:12] + _dirty_text(env),
            "gpu": ", ".join(
                f"{g.get('name')} (driver {g.get('driver_version')}, {g.get('sm_clock_mhz')} MHz SM, "
                f"{g.get('power_limit_w')} W limit)"
                for g in gpus
            )
            or env.get("gpu_error"),
            "json": blob,
        }
        seen[blob] = entry
        out.append(entry)
    for entry in out:
        entry["runs"] = sorted(entry["runs"])
    return out
