"""Tile-grid geometry as pure functions (reference docs/reference.md#image-preprocessing-and-token-counts): no
pixels, no model.

A grid is (cols, rows) = (i, j): the image is resized to (tile*i, tile*j) and cut into i*j tiles,
row-major. Both NVILA tilings pick the grid with the closest-aspect rule of InternVL
(`llava/mm_utils.py: find_closest_aspect_ratio`); only the allowed tile counts differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

Grid = tuple[int, int]


def candidate_grids(lo: int, hi: int) -> list[Grid]:
    """All (i, j) with lo <= i*j <= hi, sorted by area.

    Built exactly as upstream (a set, then a stable sort by area) so equal-area grids keep CPython's set
    order; it decides exact aspect ties, e.g. 1920x1080 on NVILA-Lite.
    """
    grids = set(
        (i, j) for n in range(lo, hi + 1) for i in range(1, n + 1) for j in range(1, n + 1) if lo <= i * j <= hi
    )
    return sorted(grids, key=lambda g: g[0] * g[1])


def closest_grid(width: int, height: int, lo: int, hi: int, tile: int) -> Grid:
    """The grid whose aspect is closest to width/height; on a tie the larger grid wins if the image has
    more than half its pixel area (upstream's rule). Compared exactly, in fractions: upstream's floats make
    every grid tie for a huge aspect (a 10^22:1 image got a tall grid)."""
    aspect = Fraction(width, height)
    best, best_diff = (1, 1), None
    for i, j in candidate_grids(lo, hi):
        diff = abs(aspect - Fraction(i, j))
        if best_diff is None or diff < best_diff:
            best, best_diff = (i, j), diff
        elif diff == best_diff and 2 * width * height > tile * tile * i * j:
            best = (i, j)
    return best


@dataclass(frozen=True)
class TileLayout:
    """Where the ViT tiles of one image come from.

    `scale_grids` lists the grid of every scale in ViT batch order: Dynamic-S2 gives
    [(1, 1), (2, 2), (i, j)]; dynamic tiling gives [(i, j)]; a plain resize gives [(1, 1)].
    """

    mode: str  # dynamic_s2 | dynamic | resize
    scale_grids: tuple[Grid, ...]
    thumbnail: bool = False

    @property
    def grid(self) -> Grid:
        """The grid at the largest scale (Dynamic-S2) or the tiling grid (dynamic); (1, 1) for a resize."""
        return self.scale_grids[-1]

    @property
    def vit_tiles(self) -> int:
        return sum(i * j for i, j in self.scale_grids) + int(self.thumbnail)

    @property
    def llm_tiles(self) -> int:
        """Blocks of STC tokens the LLM sees: the last-scale grid for S2 (scales are merged on channels),
        every tile plus the thumbnail for dynamic tiling."""
        i, j = self.grid
        return i * j + int(self.thumbnail)


def dynamic_s2_layout(width: int, height: int, scales: tuple[int, ...], max_tiles: int) -> TileLayout:
    """Dynamic-S2 (docs/reference.md#dynamic-s2): square grids for all but the last scale, the closest-aspect grid
    with at least
    (last/first)^2 tiles for the last one."""
    base = scales[0]
    square = tuple((s // base, s // base) for s in scales[:-1])
    lo = (scales[-1] // base) ** 2
    last = closest_grid(width, height, lo, max(lo, max_tiles), base)
    return TileLayout("dynamic_s2", square + (last,))


def dynamic_layout(width: int, height: int, tile: int, min_tiles: int, max_tiles: int) -> TileLayout:
    """InternVL dynamic tiling (docs/reference.md#nvila-lite-dynamic-tiling): closest-aspect grid, plus a whole-image
    thumbnail when tiled."""
    grid = closest_grid(width, height, min_tiles, max_tiles, tile)
    return TileLayout("dynamic", (grid,), thumbnail=grid != (1, 1))


def resize_layout() -> TileLayout:
    return TileLayout("resize", ((1, 1),))
