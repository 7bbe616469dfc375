"""Foundation figures: VOC reading versus plain lxml, and the Florence-2 codec versus the processor's own."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from benchmarks.harness import Figure, best_rate


def _voc_folder(count: int) -> Path:
    from fabricdata.core.annotation import ImageAnnotation, LabeledBox
    from fabricdata.core.boxes import Box, ImageSize
    from fabricdata.formats.voc import write_voc

    folder = Path(tempfile.mkdtemp(prefix="bench-voc-"))
    rng = random.Random(0)
    for i in range(count):
        objects = []
        for _ in range(rng.randint(1, 3)):
            x, y = rng.randint(0, 400), rng.randint(0, 400)
            objects.append(LabeledBox(rng.choice(["wrinkle", "drop", "broken"]), Box(x, y, x + 50, y + 60)))
        write_voc(ImageAnnotation(f"img_{i}.jpg", ImageSize(512, 512), tuple(objects)), folder / f"img_{i}.xml")
    return folder


def bench_voc(count: int = 1000) -> list[Figure]:
    from lxml import etree

    from fabricdata.formats.voc import read_voc

    folder = _voc_folder(count)
    files = sorted(folder.glob("*.xml"))

    def ours() -> int:
        for path in files:
            read_voc(path)
        return len(files)

    def plain_lxml() -> int:
        for path in files:
            root = etree.parse(str(path)).getroot()
            for obj in root.findall("object"):
                box = obj.find("bndbox")
                [float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        return len(files)

    return [
        Figure(
            "Annotation formats",
            f"read_voc, {count} LabelImg XMLs (hardened, validated, typed)",
            best_rate(ours),
            "plain lxml parse + findall (no checks)",
            best_rate(plain_lxml),
            unit="files/s",
            note="the floor: ratio near 1 means validation costs little",
        )
    ]


def bench_codec(count: int = 3000) -> list[Figure]:
    import torch

    from fabricdata.core import florence
    from fabricdata.core.boxes import Box, ImageSize, box_to_florence
    from finetune.tiny import build_tiny_florence

    rng = random.Random(0)
    size = ImageSize(2448, 2048)
    boxes = []
    for _ in range(count):
        x, y = rng.uniform(0, 2000), rng.uniform(0, 1600)
        boxes.append(Box(x, y, x + rng.uniform(5, 400), y + rng.uniform(5, 400)))

    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(build_tiny_florence(tempfile.mkdtemp()), local_files_only=True)
    quantize = processor.post_processor.quantize

    def ours_encode() -> int:
        for box in boxes:
            box_to_florence(box, size)
        return count

    def processor_encode() -> int:
        for box in boxes:
            quantize(torch.tensor([box.as_tuple()], dtype=torch.float32), (size.width, size.height))
        return count

    texts = [florence.encode_objects([("broken-weft", b), ("drop", b)], size) for b in boxes[:1000]]

    def ours_parse() -> int:
        for text in texts:
            florence.parse(text, size)
        return len(texts)

    def processor_parse() -> int:
        for text in texts:
            processor.post_process_generation(text, task="<OD>", image_size=(size.width, size.height))
        return len(texts)

    return [
        Figure(
            "Florence-2 codec",
            "box_to_florence (float32, per box)",
            best_rate(ours_encode),
            "Florence2PostProcessor.quantize (per box)",
            best_rate(processor_encode),
            unit="boxes/s",
        ),
        Figure(
            "Florence-2 codec",
            "florence.parse (2 boxes/text)",
            best_rate(ours_parse),
            "processor.post_process_generation",
            best_rate(processor_parse),
            unit="texts/s",
        ),
    ]


def run() -> list[Figure]:
    return bench_voc() + bench_codec()
