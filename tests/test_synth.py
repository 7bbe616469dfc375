"""Synthetic fabric: deterministic, exact boxes, visible defects, imbalanced classes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from fabricdata.formats import read_folder
from fabricdata.prepare.synth import SynthConfig, generate, render


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_folders_whatever_the_workers(tmp_path: Path) -> None:
    config = SynthConfig(images=6, seed=5, width=160, height=120)
    one = generate(config, tmp_path / "a", workers=1)
    two = generate(config, tmp_path / "b", workers=2)
    assert _digest(one) == _digest(two)
    other = generate(SynthConfig(images=6, seed=6, width=160, height=120), tmp_path / "c")
    assert _digest(one) != _digest(other)


def test_output_is_a_valid_labelimg_folder_with_real_sizes(tmp_path: Path) -> None:
    config = SynthConfig(images=10, seed=1, width=200, height=150, classes=("wrinkle", "broken-weft", "drop"))
    folder = generate(config, tmp_path / "synth")
    scan = read_folder(folder, classes=config.classes)  # checks every size against the real image
    assert scan.errors == [] and len(scan.items) == 10
    assert (folder / "classes.txt").read_text() == "wrinkle\nbroken-weft\ndrop\n"


def test_boxes_are_exact_and_defects_visible() -> None:
    """Every defect box holds pixels that differ from the fabric just outside it."""
    config = SynthConfig(images=30, seed=2, width=256, height=192, clean_share=0.0)
    contrasts = []
    for index in range(config.images):
        pixels, objects = render(config, index)
        grey = pixels.astype(np.float32).mean(axis=2)
        for _, box in objects:
            x0, y0, x1, y1 = (int(v) for v in box.as_tuple())
            assert (x0, y0, x1, y1) == box.as_tuple()  # integer pixel edges: exact in VOC
            assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 192
            inside = grey[y0:y1, x0:x1]
            ring = grey[max(y0 - 6, 0) : y1 + 6, max(x0 - 6, 0) : x1 + 6]
            contrasts.append(abs(float(np.percentile(inside, 5)) - float(np.median(ring))))
    assert len(contrasts) > 30
    assert np.median(contrasts) > 25  # grey levels: visible to a person


def test_default_mix_is_imbalanced_with_clean_images_and_repeats(tmp_path: Path) -> None:
    config = SynthConfig(images=120, seed=0, width=128, height=96)
    counts = {name: 0 for name in config.classes}
    clean = repeats = 0
    for index in range(config.images):
        _, objects = render(config, index)
        labels = [label for label, _ in objects]
        clean += not labels
        repeats += len(labels) > len(set(labels))
        for label in labels:
            counts[label] += 1
    assert counts["wrinkle"] > 2 * counts["broken"] > 0
    assert clean >= 5 and repeats >= 5


def test_images_are_rgb_jpegs(tmp_path: Path) -> None:
    folder = generate(SynthConfig(images=2, seed=0, width=96, height=64), tmp_path / "s")
    with Image.open(folder / "fabric_00000.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (96, 64)
