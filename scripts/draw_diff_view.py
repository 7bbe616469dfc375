"""Draw the first images of a diff view (``fabricdata diff A B``) with its two sides: the before field on the left,
the after field on the right, changed boxes in red (the README's docs/diff-view.jpg): an image with a box drawn, one
with a box deleted, one relabelled, where the view has them. The App shows the same two fields as label layers of
one image.

    python scripts/draw_diff_view.py --dataset fabric --view diff-v1-v2 --out docs/diff-view.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from fabricdata.core.boxes import ImageSize, fiftyone_to_box
from fabricdata.store.dataset import load_view


def _boxes(sample: Any, field: str) -> list[tuple[str, tuple[float, ...]]]:
    size = ImageSize(sample.metadata.width, sample.metadata.height)
    labels = sample[field]
    return [(d.label, fiftyone_to_box(d.bounding_box, size).as_tuple()) for d in (labels.detections if labels else [])]


def _panel(path: str, boxes: list[tuple[str, tuple[float, ...]]], other: set[tuple[str, tuple[float, ...]]]) -> Any:
    image = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    for label, box in boxes:
        colour = (60, 200, 90) if (label, box) in other else (255, 70, 40)
        draw.rectangle(box, outline=colour, width=3)
        draw.text((box[0] + 3, max(box[1] - 12, 0)), label, fill=colour)
    return image


def _kind(old: list[tuple[str, tuple[float, ...]]], new: list[tuple[str, tuple[float, ...]]]) -> str:
    if len(new) != len(old):
        return "drawn" if len(new) > len(old) else "deleted"
    return "relabelled" if sorted(b[0] for b in old) != sorted(b[0] for b in new) else "moved"


def _showcase(view: Any, before: str, after: str, images: int) -> list[Any]:
    """One image of each kind of change (drawn, deleted, relabelled, moved), in that order, then any others."""
    found: dict[str, Any] = {}
    for sample in view:
        found.setdefault(_kind(_boxes(sample, before), _boxes(sample, after)), sample)
    chosen = [found[k] for k in ("drawn", "deleted", "relabelled", "moved") if k in found]
    return (chosen + [s for s in view if s not in chosen])[:images]


def draw(dataset: str, view_name: str, out: Path, images: int = 3) -> None:
    _, view = load_view(dataset, view_name)
    first = view.first()
    fields = [name for name in first.field_names if name.startswith("version_")]
    before = fields[0]
    after = fields[1] if len(fields) > 1 else "ground_truth"
    rows = []
    for sample in _showcase(view, before, after, images):
        old, new = _boxes(sample, before), _boxes(sample, after)
        left, right = _panel(sample.filepath, old, set(new)), _panel(sample.filepath, new, set(old))
        row = Image.new("RGB", (left.width * 2 + 8, left.height), "white")
        row.paste(left, (0, 0))
        row.paste(right, (left.width + 8, 0))
        rows.append(row)
    sheet = Image.new("RGB", (rows[0].width, sum(r.height + 8 for r in rows) + 20), "white")
    ImageDraw.Draw(sheet).text(
        (4, 4), f"left: {before}    right: {after}    (unchanged boxes green, changed red)", fill="black"
    )
    y = 20
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 8
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.thumbnail((900, 2000))
    sheet.save(out, quality=85)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fabric")
    parser.add_argument("--view", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    draw(args.dataset, args.view, args.out, args.images)
