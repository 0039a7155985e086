"""Configuration dataclasses for the NVILA / VILA1.5 reference model.

One `NVILAConfig` = vision tower (SigLIP) + projector + LLM + media rules. Every field mirrors a key of the
official checkpoint layout (docs/reference.md#model-family, docs/reference.md#vision-encoder,
docs/reference.md#checkpoint-layout) so a config can be read from, and
written back to, a checkpoint directory without loss.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Literal

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def check_attn_implementation(name: str) -> None:
    if name not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {name!r}; known: {', '.join(ATTN_IMPLEMENTATIONS)}")
    if name == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ValueError("flash_attention_2 needs the flash-attn package (pip install 'nvila-bench[gpu]', CUDA only)")


ImageMode = Literal["dynamic_s2", "dynamic", "resize"]
ProjectorType = Literal["mlp2x_gelu", "mlp_downsample", "mlp_downsample_2x2_fix", "mlp_downsample_3x3_fix"]
TokenOrder = Literal["row", "column"]

# STC window per projector type (docs/reference.md#projectors-and-spatial-token-concatenation-stc); mlp2x_gelu is the
# uncompressed 1x1 baseline.
PROJECTOR_WINDOW = {
    "mlp2x_gelu": 1,
    "mlp_downsample": 2,
    "mlp_downsample_2x2_fix": 2,
    "mlp_downsample_3x3_fix": 3,
}

# NVILA token ids (docs/reference.md#prompt-and-token-assembly). Media ids lie beyond the LLM vocabulary and are never
# embedded.
IMAGE_TOKEN_ID = 151649
VIDEO_TOKEN_ID = 151650
QWEN2_NEWLINE_ID = 198

# Sane maxima, checked before anything is built (a config.json is untrusted input): 8x the largest published
# model in each dimension or more, small enough that counting or building never runs for minutes.
MAX_LAYERS, MAX_WIDTH, MAX_VOCAB, MAX_TILES, MAX_PIXELS = 1024, 65536, 10**7, 128, 16384


@dataclass(frozen=True)
class VisionConfig:
    """SigLIP vision tower (docs/reference.md#vision-encoder). Defaults: so400m/14 at 448 px as in NVILA."""

    image_size: int = 448  # tile side in pixels
    patch_size: int = 14
    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 27
    num_heads: int = 16
    layer_norm_eps: float = 1e-6
    select_layer: int = -2  # mm_vision_select_layer: index into hidden_states (embeddings + every layer)
    use_head: bool = False  # attention-pooling head; NVILA stores none

    def __post_init__(self):
        _check_ints(
            "vision",
            self,
            image_size=MAX_PIXELS,
            patch_size=MAX_PIXELS,
            hidden_size=MAX_WIDTH,
            intermediate_size=4 * MAX_WIDTH,
            num_layers=MAX_LAYERS,
            num_heads=MAX_WIDTH,
        )
        _check_ints("vision", self, select_layer=(-MAX_LAYERS - 1, MAX_LAYERS))
        _check_positive("vision", self, "layer_norm_eps")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision hidden_size {self.hidden_size} not divisible by {self.num_heads} heads")
        if not 1 <= self.layers_used <= self.num_layers:
            raise ValueError(f"select_layer {self.select_layer} outside a {self.num_layers}-layer tower")

    @property
    def grid(self) -> int:
        """Patches per tile side: 32 at 448 px, 27 at 384 px (the stride-14 conv drops the last 6 px)."""
        return self.image_size // self.patch_size

    @property
    def layers_used(self) -> int:
        """Encoder layers whose output is used: hidden_states[-2] of 27 layers is layer 26's output."""
        return self.select_layer % (self.num_layers + 1)


@dataclass(frozen=True)
class ProjectorConfig:
    """Multimodal projector (docs/reference.md#projectors-and-spatial-token-concatenation-stc): STC reshape, then an
    MLP to the LLM width."""

    type: ProjectorType = "mlp_downsample"
    mm_hidden_size: int = 3456  # C: vision width x number of S2 scales
    hidden_size: int = 3584  # H: LLM width
    # "column" reproduces VILA1.5-era DownSampleBlock (docs/reference.md#projectors-and-spatial-token-concatenation-stc)
    token_order: TokenOrder = "row"

    def __post_init__(self):
        if not isinstance(self.type, str) or self.type not in PROJECTOR_WINDOW:
            raise ValueError(f"unknown projector type {self.type!r}; known: {', '.join(PROJECTOR_WINDOW)}")
        if self.token_order not in ("row", "column"):
            raise ValueError(f"token_order must be 'row' or 'column', not {self.token_order!r}")
        _check_ints("projector", self, mm_hidden_size=MAX_WIDTH * MAX_TILES, hidden_size=MAX_WIDTH)

    @property
    def window(self) -> int:
        return PROJECTOR_WINDOW[self.type]


@dataclass(frozen=True)
class LLMConfig:
    """Decoder-only LLM built with transformers (Qwen2ForCausalLM or LlamaForCausalLM)."""

    arch: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = 3584
    num_layers: int = 28
    num_heads: int = 28
    num_kv_heads: int = 4
    intermediate_size: int = 18944
    vocab_size: int = 151648
    rope_theta: float = 1e6
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768
    bos_token_id: int | None = 151643
    eos_token_id: int = 151645
    newline_token_id: int = (
        QWEN2_NEWLINE_ID  # tokenizer("\n"): the media separator (docs/reference.md#prompt-and-token-assembly)
    )

    def __post_init__(self):
        if self.arch not in ("qwen2", "llama"):
            raise ValueError(f"unknown LLM arch {self.arch!r}; known: qwen2, llama")
        _check_ints(
            "LLM",
            self,
            hidden_size=MAX_WIDTH,
            num_layers=MAX_LAYERS,
            num_heads=MAX_WIDTH,
            num_kv_heads=MAX_WIDTH,
            intermediate_size=4 * MAX_WIDTH,
            vocab_size=MAX_VOCAB,
            max_position_embeddings=10**8,
        )
        _check_ints(
            "LLM",
            self,
            newline_token_id=(0, 10**8),
            **{k: (0, 10**8) for k in ("bos_token_id", "eos_token_id") if getattr(self, k) is not None},
        )
        _check_positive("LLM", self, "rope_theta", "rms_norm_eps")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("LLM hidden_size / num_heads / num_kv_heads do not divide evenly")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class MediaConfig:
    """How images and videos become tiles and LLM positions (docs/reference.md#image-preprocessing-and-token-counts,
    docs/reference.md#video-and-temporal-pooling-tsp)."""

    image_mode: ImageMode = "dynamic_s2"
    s2_scales: tuple[int, ...] = (448, 896, 1344)
    min_tiles: int = 1
    max_tiles: int = 12
    separator: bool = True  # append the "\n" embedding after each image / frame / tile
    # NVILA-Lite: each tile's "<image>\n" adds a literal "\n" token (docs/reference.md#nvila-lite-dynamic-tiling)
    tile_newline_text: bool = False
    temporal_pool: tuple[int, int, int] | None = (
        None  # TSP pool size (frames, rows, cols) (docs/reference.md#video-and-temporal-pooling-tsp)
    )
    num_video_frames: int = 8
    image_token_id: int = IMAGE_TOKEN_ID
    video_token_id: int = VIDEO_TOKEN_ID

    def __post_init__(self):
        if self.image_mode not in ("dynamic_s2", "dynamic", "resize"):
            raise ValueError(f"unknown image_mode {self.image_mode!r}; known: dynamic_s2, dynamic, resize")
        _check_ints("media", self, min_tiles=MAX_TILES, max_tiles=MAX_TILES, num_video_frames=MAX_PIXELS)
        if not self.s2_scales or not all(type(s) is int and 1 <= s <= MAX_PIXELS for s in self.s2_scales):
            raise ValueError(f"s2_scales must be integers in 1..{MAX_PIXELS}, got {self.s2_scales!r:.60}")
        pool = self.temporal_pool
        if pool is not None and (len(pool) != 3 or not all(type(p) is int and 1 <= p <= MAX_PIXELS for p in pool)):
            raise ValueError(f"temporal_pool must be three positive integers (frames, rows, cols), got {pool!r:.60}")
        if self.image_mode == "dynamic_s2":
            base = self.s2_scales[0]
            if any(s % base for s in self.s2_scales) or list(self.s2_scales) != sorted(self.s2_scales):
                raise ValueError(f"s2_scales {self.s2_scales} must ascend in multiples of the first")
            if (self.s2_scales[-1] // base) ** 2 > MAX_TILES:
                raise ValueError(f"s2_scales {self.s2_scales}: the last scale has over {MAX_TILES} tiles")
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {self.min_tiles}, {self.max_tiles}")


@dataclass(frozen=True)
class NVILAConfig:
    """A whole model: what `build_model` builds and what a preset names."""

    name: str
    family: str  # nvila | nvila-lite | nvila-video | vila1.5
    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    description: str = ""
    # Roles, for reports and comparisons (preset names; None where the role does not apply):
    baseline: str | None = None  # the VILA1.5 model this one is compared with (same LLM size class)
    scaled_only: str | None = None  # this model with token compression removed (the paper's "scale" step)
    video_model: str | None = None  # the family's video model (TSP), for the video half of a comparison
    stands_in_for: str | None = None  # a tiny CPU-sized stand-in: the real preset whose geometry it keeps

    def __post_init__(self):
        scales = len(self.media.s2_scales) if self.media.image_mode == "dynamic_s2" else 1
        if self.projector.mm_hidden_size != self.vision.hidden_size * scales:
            raise ValueError(
                f"{self.name}: projector mm_hidden_size {self.projector.mm_hidden_size} != vision width "
                f"{self.vision.hidden_size} x {scales} scale(s)"
            )
        if self.projector.hidden_size != self.llm.hidden_size:
            raise ValueError(f"{self.name}: projector output {self.projector.hidden_size} != LLM width")
        if self.media.image_mode == "dynamic_s2" and self.media.s2_scales[0] != self.vision.image_size:
            raise ValueError(f"{self.name}: first S2 scale must equal the tile size {self.vision.image_size}")

    @property
    def is_tiny(self) -> bool:
        return self.stands_in_for is not None

    @property
    def is_nvila(self) -> bool:
        """NVILA (any variant), as opposed to its VILA1.5 baselines."""
        return self.family != "vila1.5"

    @property
    def tile_size(self) -> int:
        return self.vision.image_size

    @property
    def tokens_per_tile(self) -> int:
        """Visual tokens one tile (or one frame) yields after STC: 256 (2x2), 121 (3x3), 196 (VILA1.5)."""
        side = -(-self.vision.grid // self.projector.window)
        return side * side


def _check_ints(label: str, obj, **limits: int | tuple[int, int]) -> None:
    """Each named field must be a true int (not bool, float or str) within its limit: (lo, hi) or 1..hi."""
    for name, limit in limits.items():
        lo, hi = limit if isinstance(limit, tuple) else (1, limit)
        value = getattr(obj, name)
        if type(value) is not int or not lo <= value <= hi:
            raise ValueError(f"{label} {name} must be an integer in {lo}..{hi}, got {value!r:.60}")


def _check_positive(label: str, obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if type(value) not in (int, float) or not 0 < value < float("inf"):
            raise ValueError(f"{label} {name} must be a positive number, got {value!r:.60}")
