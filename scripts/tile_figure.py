"""Draw docs/tile-grid.png: the tile grid of `export florence --tile 256 --overlap 0.2` over a 4096x256 line-scan
strip, and what Florence-2's 768x768 input makes of a 20-px defect with and without tiles.

    python scripts/tile_figure.py docs/tile-grid.png
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from fabricdata.core.boxes import Box, ImageSize, box_to_tile, tile_grid
from fabricdata.prepare.synth import SynthConfig, render
from fabricdata.prepare.tiling import MODEL_INPUT

STRIP = ImageSize(4096, 256)
TILE, OVERLAP = 256, 0.2
#: a 20-px broken thread, painted on the strip (a dark line, as the synthetic "broken" style paints it)
DEFECT = Box(1236.0, 118.0, 1256.0, 124.0)


def _strip() -> np.ndarray:
    pixels, _ = render(SynthConfig(images=1, seed=7, width=STRIP.width, height=STRIP.height, clean_share=1.0), 0)
    x0, y0, x1, y1 = (int(v) for v in DEFECT.as_tuple())
    pixels[y0:y1, x0:x1] = (pixels[y0:y1, x0:x1] * 0.25).astype(np.uint8)
    return pixels


def _resized(pixels: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((MODEL_INPUT, MODEL_INPUT), Image.Resampling.BICUBIC))


def _bars(axis: Any, tiles: list[Box], left: float, right: float) -> None:
    """The tiles as bars under the strip, alternate ones on a second row, so their overlaps show."""
    for index, tile in enumerate(tiles):
        if tile.xmax <= left or tile.xmin >= right:
            continue
        colour = ("#1f77b4", "#ff7f0e")[index % 2]
        axis.barh(index % 2, tile.width, left=tile.xmin, height=0.8, color=colour, alpha=0.55, edgecolor="black")
        centre = (max(tile.xmin, left) + min(tile.xmax, right)) / 2
        axis.text(centre, index % 2, f"{int(tile.xmin)}-{int(tile.xmax)}", ha="center", va="center", fontsize=7)
    axis.axvspan(DEFECT.xmin, DEFECT.xmax, color="red")
    axis.set_xlim(left, right)
    axis.set_ylim(1.6, -0.6)
    axis.set_yticks([])


def main(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    pixels = _strip()
    tiles = tile_grid(STRIP, ImageSize(TILE, TILE), OVERLAP)
    figure = plt.figure(figsize=(14, 10), dpi=110)
    grid = figure.add_gridspec(5, 2, height_ratios=[0.55, 0.45, 1.0, 0.45, 3.2], hspace=0.7, wspace=0.15)
    whole = figure.add_subplot(grid[0, :])
    whole.imshow(pixels, aspect="auto", extent=(0, STRIP.width, STRIP.height, 0))
    whole.add_patch(Rectangle((DEFECT.xmin - 24, DEFECT.ymin - 40), 68, 86, fill=False, edgecolor="red", linewidth=1.5))
    whole.set_title(
        f"a 4096x256 strip cut by --tile {TILE} --overlap {OVERLAP:g}: {len(tiles)} tiles, neighbours overlapping by "
        f"{int(OVERLAP * TILE)} px, the last one aligned to the edge (no padding)"
    )
    whole.set_xticks([])
    whole.set_yticks([])
    _bars(figure.add_subplot(grid[1, :]), tiles, 0, STRIP.width)
    left, right = 900, 1620
    zoom = figure.add_subplot(grid[2, :])
    zoom.imshow(pixels[:, left:right], extent=(left, right, STRIP.height, 0), aspect="auto")
    zoom.add_patch(Rectangle((DEFECT.xmin, DEFECT.ymin), DEFECT.width, DEFECT.height, fill=False, edgecolor="red"))
    zoom.set_title(
        "zoomed: a 20-px broken thread (red) lies in the overlap of two tiles, whole in both; "
        "predict merges the two copies into one box"
    )
    zoom.set_xticks([])
    zoom.set_yticks([])
    _bars(figure.add_subplot(grid[3, :]), tiles, left, right)
    squeezed = figure.add_subplot(grid[4, 0])
    squeezed.imshow(_resized(pixels))
    scale_x, scale_y = MODEL_INPUT / STRIP.width, MODEL_INPUT / STRIP.height
    squeezed.add_patch(Rectangle((DEFECT.xmin * scale_x, DEFECT.ymin * scale_y), DEFECT.width * scale_x,
                                 DEFECT.height * scale_y, fill=False, edgecolor="red", linewidth=1.5))  # fmt: skip
    squeezed.set_title(
        f"the whole strip as Florence-2 sees it ({MODEL_INPUT}x{MODEL_INPUT}): the defect is "
        f"{DEFECT.width * scale_x:.1f} x {DEFECT.height * scale_y:.0f} px",
        fontsize=10,
    )
    holder = next(t for t in tiles if box_to_tile(DEFECT, t).area == DEFECT.area)
    tile_pixels = pixels[int(holder.ymin) : int(holder.ymax), int(holder.xmin) : int(holder.xmax)]
    one = figure.add_subplot(grid[4, 1])
    one.imshow(_resized(tile_pixels))
    piece, scale = box_to_tile(DEFECT, holder), MODEL_INPUT / TILE
    one.add_patch(Rectangle((piece.xmin * scale, piece.ymin * scale), piece.width * scale, piece.height * scale,
                            fill=False, edgecolor="red", linewidth=1.5))  # fmt: skip
    one.set_title(
        f"tile {int(holder.xmin)}-{int(holder.xmax)} as Florence-2 sees it: the defect is "
        f"{DEFECT.width * scale:.0f} x {DEFECT.height * scale:.0f} px",
        fontsize=10,
    )
    for axis in (squeezed, one):
        axis.set_xticks([])
        axis.set_yticks([])
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, bbox_inches="tight")
    plt.close(figure)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/tile-grid.png"))
