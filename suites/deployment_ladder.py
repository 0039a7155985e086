"""The deployment ladder's rungs (suites/deployment.py measures them): what each rung quantizes, the settings a
ladder holds fixed, and the jobs of a run, every setting checked before any rung is measured. Importing it loads
no torch."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

from nvila_bench.model import get_preset
from nvila_bench.model.presets import is_peer
from nvila_bench.model.quant_plan import COMPONENTS, INT4_KERNELS, QuantPlan, int4_kernel, unavailable

from nvila_bench.core.analysis.fits import device_memory
from nvila_bench.core.measuring import synthetic_tasks as st
from nvila_bench.core.measuring.point import BenchPoint, canonical_dtype, request_default

from .deployment_quality import QUALITY_POSITIONS
from .lmms_tasks import check_checkpoint, check_lmms_tasks, expand_tasks
from .registry import Job, SuiteError

QUANTIZED = {"llm": "w4a16", "vision": "w8a8-int8"}
RUNGS = {  # name -> (role of the preset, formats)
    "scaled-only bf16": ("scaled_only", {}),
    "bf16": ("nvila", {}),
    "w4a16-llm": ("nvila", {"llm": "w4a16"}),
    "w8a8-vit-int8": ("nvila", QUANTIZED),
    "w8a8-vit-fp8": ("nvila", {"llm": "w4a16", "vision": "w8a8-fp8"}),
    "w8a8-fp8-llm": ("nvila", {"llm": "w8a8-fp8"}),
    "baseline bf16": ("baseline", {}),
    "baseline quantized": ("baseline", QUANTIZED),
}
PEER_RUNGS = ("bf16", "w4a16-llm")  # a peer VLM's ladder: the paper compares NVILA and Qwen2-VL "both with W4A16 LLMs"


def group_size(preset: str) -> int:
    """The largest int4 group (128, 64 or 32) that divides every LLM linear layer's inputs of the preset."""
    llm = get_preset(preset).llm
    widths = (llm.hidden_size, llm.num_heads * llm.head_dim, llm.intermediate_size)
    return next(g for g in (128, 64, 32) if all(w % g == 0 for w in widths))


def plan_of(point: BenchPoint) -> QuantPlan:
    formats = {c: point.extra.get(f"{c}_weights", "bf16") for c in COMPONENTS}
    scales = point.extra.get("scales", "none") if any(f != "bf16" for f in formats.values()) else "none"
    kernel = point.extra.get("int4_kernel", "auto")  # resolved at expand: gemlite / tinygemm on CUDA, opaque on CPU
    return QuantPlan(
        **formats,
        group_size=group_size(point.preset),
        scales=scales,
        int4_kernel=kernel if kernel in INT4_KERNELS else "auto",
        lm_head=point.extra.get("lm_head") == "quantized" and formats["llm"] != "bf16",
    )


QUALITY_PROMPTS, ACCURACY_LIMIT = 4, 60  # defaults (checked >= 1 before the run)


# What a ladder holds fixed (the paper's deployment: batch 1, bf16 activations, STC and TSP as published) and
# what it takes once; a setting outside these is refused rather than silently ignored.
FIXED = {"batch_size": 1, "dtype": "bfloat16", "attn_implementation": "sdpa", "temporal_pool": True}
SINGLE = ("device", "images", "video_frames", "prompt_tokens", "new_tokens", "preprocess", "cache")


def check_settings(axes: dict[str, list], options: dict) -> None:
    for name, fixed in FIXED.items():
        values = {canonical_dtype(v) if name == "dtype" else v for v in axes.get(name) or []}
        if values - {fixed}:
            raise SuiteError(
                f"deployment runs with {name} {fixed} (the paper's deployment), got {', '.join(map(str, values))}"
            )
    for name in SINGLE:
        if len(axes.get(name) or []) > 1:
            raise SuiteError(f"deployment takes one value of {name} (a ladder is one request), got {len(axes[name])}")
    if len(one_image := (axes.get("images") or [((1920, 1080),)])[0]) != 1:
        raise SuiteError(f"deployment's image request has one image, got {len(one_image)}")
    if (axes.get("new_tokens") or [2])[0] < 2:
        raise SuiteError(
            f"deployment needs --new-tokens >= 2 (the first token comes from the prefill), got {axes['new_tokens'][0]}"
        )
    for name in ("quality_prompts", "accuracy_limit"):
        if options.get(name) is not None and options[name] < 1:
            raise SuiteError(f"--{name.replace('_', '-')} must be >= 1, got {options[name]}")
    for preset in axes["preset"]:
        check_quality_prompts(preset, options.get("quality_prompts") or QUALITY_PROMPTS)
    if options.get("tasks") and not options.get("checkpoint"):
        raise SuiteError(
            "--tasks scores each rung of a checkpoint: give --checkpoint DIR (random weights score at chance)"
        )
    if options.get("checkpoint") and options.get("media") == "video":
        raise SuiteError("--checkpoint: accuracy per rung is measured with the image request's rows, not --media video")
    if options.get("checkpoint") and options.get("rung") and all(RUNGS[r][0] != "nvila" for r in options["rung"]):
        raise SuiteError("--checkpoint: accuracy per rung is of NVILA's rungs; --rung lists none")
    if options.get("checkpoint") and importlib.util.find_spec("lmms_eval") is None:
        raise SuiteError("--checkpoint: accuracy per rung needs lmms-eval (pip install 'nvila-bench[eval]')")


def check_quality_prompts(preset: str, prompts: int) -> None:
    """The quality comparison holds a rung's and its bf16 reference's log-probabilities of every prompt's
    QUALITY_POSITIONS positions (float32, on the host) at once: refused when this machine cannot hold them."""
    need = 2 * prompts * QUALITY_POSITIONS * get_preset(preset).llm.vocab_size * 4
    have = device_memory("cpu")
    if have is not None and need > have:
        raise SuiteError(
            f"--quality-prompts {prompts:,}: their log-probabilities need {need / 2**30:,.1f} GiB "
            f"and this machine has {have / 2**30:,.1f} GiB"
        )


def checked_tasks(spec: str) -> list[str]:
    """`--tasks` of the rungs' accuracy: the synthetic multiple-choice tasks (a trained tiny checkpoint) and / or
    the paper's lmms-eval tasks (official weights); unknown names refused before any rung."""
    try:
        tasks = [
            t for t in expand_tasks(spec) if t != "synthetic_colour_gen" or t in spec.split(",")
        ]  # the group: multiple choice
    except ValueError as e:
        raise SuiteError(f"--tasks: {e}") from None
    check_lmms_tasks([t for t in tasks if t not in st.TASKS], "--tasks: ")
    return tasks


def ladders(presets: list[str], options: dict) -> list:
    """The presets whose ladders the run climbs (at most one NVILA preset, first; then the peer VLMs), checked:
    a peer takes `PEER_RUNGS` only and no --checkpoint (a trained NVILA checkpoint's accuracy)."""
    cfgs = [get_preset(p) for p in dict.fromkeys(presets)]
    nvila = [c for c in cfgs if not is_peer(c)]
    if len(nvila) > 1 or any(not c.is_nvila or not c.baseline for c in nvila) or not cfgs:
        raise SuiteError(
            "deployment takes one NVILA --preset (its scaled-only variant and VILA1.5 baseline join the "
            "ladder) and / or peer VLM presets (bf16 and w4a16-llm rungs each)"
        )
    for peer in (c for c in cfgs if is_peer(c)):
        other = [r for r in options.get("rung") or () if r not in PEER_RUNGS]
        if other:
            raise SuiteError(
                f"--rung {other[0]}: a rung of NVILA's ladder only; {peer.name} is a peer VLM (its "
                f"ladder: {', '.join(PEER_RUNGS)}): run that rung without the peer"
            )
        if options.get("checkpoint"):
            raise SuiteError(
                f"--checkpoint scores NVILA's rungs on a trained NVILA checkpoint; {peer.name} is a "
                "peer VLM: run the peer without --checkpoint"
            )
    return nvila + [c for c in cfgs if is_peer(c)]


def expand(axes: dict[str, list], options: dict) -> list[Job]:
    """One job per rung of each ladder (the NVILA preset's, then each peer's), per request (image, video) and
    engine, its settings in the point's `extra`; everything checked before any rung is measured."""
    from nvila_bench.model.gemlite_int4 import DEQUANT_MIN_TOKENS

    climbs = ladders(axes.get("preset") or [], options)
    check_settings(axes, options)

    def one(name, default):
        return axes[name][0] if axes.get(name) else default

    device = one("device", "cpu")
    cpu = not device.startswith("cuda")  # a request sized for a CPU unless given (CPU_REQUEST)
    image = one("images", request_default("images", ((1920, 1080),), cpu))[0]
    frames = one("video_frames", request_default("video_frames", 64, cpu))
    kernel_plan = QuantPlan(llm="w4a16", int4_kernel=options.get("int4_kernel") or "auto")
    if kernel_plan.int4_kernel != "auto" and unavailable(kernel_plan, device):
        raise SuiteError(f"--int4-kernel {kernel_plan.int4_kernel}: {unavailable(kernel_plan, device)}")
    kernel = int4_kernel(kernel_plan, device)  # recorded, so the ladder keeps two kernels' rows apart
    gemlite_prefill = f"dequantize + cuBLAS from {DEQUANT_MIN_TOKENS} tokens"  # recorded: how gemlite runs a prefill
    trained = {}
    if options.get("checkpoint"):  # accuracy per rung: once per rung (image rows), on the trained weights
        if not Path(options["checkpoint"]).is_dir():
            raise SuiteError(f"--checkpoint {options['checkpoint']}: no such directory")
        # its config now, before any rung: the preset's model
        check_checkpoint(options["checkpoint"], "--checkpoint: ", climbs[0].name)
        trained = {
            "checkpoint": str(options["checkpoint"]),
            "accuracy_limit": options.get("accuracy_limit") or ACCURACY_LIMIT,
            "tasks": checked_tasks(options.get("tasks") or "synthetic"),
        }
    jobs = []
    for engine in axes.get("engine") or [
        None
    ]:  # e.g. compiled and hf-static: ours and transformers' on the same weights
        for media, (root, rung) in itertools.product(
            [options["media"]] if options.get("media") else ("image", "video"),
            [(c, r) for c in climbs for r in (PEER_RUNGS if is_peer(c) else RUNGS)],
        ):
            role, formats = RUNGS[rung]
            if options.get("rung") and rung not in options["rung"]:
                continue
            preset = {"scaled_only": root.scaled_only, "nvila": root.name, "baseline": root.baseline}[role]
            if preset is None:  # e.g. NVILA-Lite-2B has no scaled-only variant: that rung is left out
                if options.get("rung"):
                    raise SuiteError(f"--rung {rung}: {root.name} has no {role.replace('_', '-')} variant")
                continue
            if media == "video" and role == "nvila":
                preset = root.video_model or preset
            point = BenchPoint(
                preset,
                device,
                "bfloat16",
                images=(image,) if media == "image" else (),
                video_frames=frames if media == "video" else None,
                prompt_tokens=one("prompt_tokens", 64),
                new_tokens=one("new_tokens", request_default("new_tokens", 32, cpu)),
                engine=engine,
                preprocess=one("preprocess", None),
                cache=one("cache", "dynamic"),  # the eager engine's; the others run their own (ENGINE_CACHE)
                extra={"rung": rung, "media": media}
                | {f"{c}_weights": f for c, f in formats.items()}
                | {"quality_prompts": options.get("quality_prompts") or QUALITY_PROMPTS}
                | ({"scales": options.get("scales") or "activation-aware"} if formats else {})
                | ({"int4_kernel": kernel} if "w4a16" in formats.values() else {})
                | ({"int4_prefill": gemlite_prefill} if "w4a16" in formats.values() and kernel == "gemlite" else {})
                | ({"lm_head": "quantized"} if options.get("lm_head") == "quantized" and "llm" in formats else {})
                | (trained if role == "nvila" and media == "image" and not is_peer(root) else {}),
            )
            jobs.append(Job("deployment", point))
    return jobs
