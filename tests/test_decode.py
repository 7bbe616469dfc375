"""One picture of each image: every consumer (training records, predict, prelabel, serve, augment, the App's proxies)
gets the same 8-bit pixels of an image, whatever its mode (16-bit, 32-bit, float, palette, LA, CMYK, 1-bit,
multi-page, EXIF-rotated), and a 16-bit frame is a picture, not a constant white."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fabricdata.core.images import load_pixels, load_rgb, write_proxy

W, H = 96, 64


def _gradient16() -> np.ndarray:  # type: ignore[type-arg]
    """A 16-bit ramp that does not fill the range (1000..58940): a stretch and a bit-depth scaling differ."""
    y, x = np.mgrid[0:H, 0:W]
    return (1000 + x * 600 + y * 20).astype(np.uint16)


def _with_sbit(png: bytes, bits: int) -> bytes:
    """A PNG with an ``sBIT`` chunk (significant bits) right after its header chunk (PIL writes none)."""
    chunk = b"sBIT" + bytes([bits])
    sbit = struct.pack(">I", 1) + chunk + struct.pack(">I", zlib.crc32(chunk))
    end_of_ihdr = 8 + 8 + 13 + 4
    return png[:end_of_ihdr] + sbit + png[end_of_ihdr:]


def make_corpus(folder: Path) -> dict[str, Path]:
    """Images as industrial cameras and other tools write them, built here from one 16-bit ramp."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = _gradient16()
    high = (ramp >> 8).astype(np.uint8)
    rgb = np.stack([high, np.full_like(high, 40), 255 - high], axis=-1)
    made: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **options: Any) -> None:
        made[name] = folder / name
        image.save(made[name], **options)

    save("grey16.png", Image.fromarray(ramp))
    save("grey16.tif", Image.fromarray(ramp))
    buffer = io.BytesIO()
    Image.fromarray(ramp >> 4).save(buffer, "PNG")  # a 12-bit camera's samples in a 16-bit PNG that says so
    made["grey12.png"] = folder / "grey12.png"
    made["grey12.png"].write_bytes(_with_sbit(buffer.getvalue(), 12))
    save("int32.tif", Image.fromarray(ramp.astype(np.int32) * 3000 - 5_000_000))
    save("float.tif", Image.fromarray((ramp.astype(np.float32) - 30000) / 7.5))
    save("unit-float.tif", Image.fromarray(ramp.astype(np.float32) / 65535))
    save("palette.png", Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16))
    save("la.png", Image.fromarray(np.stack([high, np.full_like(high, 128)], axis=-1), "LA"))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=95)
    save("bilevel.png", Image.fromarray(high).convert("1"))
    made["pages.tif"] = folder / "pages.tif"
    Image.fromarray(ramp).save(made["pages.tif"], save_all=True, append_images=[Image.fromarray(ramp * 0)])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display": stored pixels are what LabelImg boxes
    save("rotated.jpg", Image.fromarray(rgb), exif=exif, quality=95)
    save("plain.jpg", Image.fromarray(rgb), quality=95)
    return made


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def _array(image: Any) -> np.ndarray:  # type: ignore[type-arg]
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


def test_the_decode_rule_of_each_mode(corpus: dict[str, Path]) -> None:
    ramp = _gradient16()
    high = (ramp >> 8).astype(np.uint8)
    grey = np.repeat(high[..., None], 3, axis=2)
    for name in ("grey16.png", "grey16.tif", "grey12.png", "pages.tif", "la.png"):
        assert np.array_equal(_array(load_rgb(corpus[name])), grey), name  # bit-depth scaling, first page
        assert load_pixels(corpus[name]).mode == "L", name  # one channel, as stored
    stretched = _array(load_rgb(corpus["int32.tif"]))[..., 0]
    assert (stretched.min(), stretched.max()) == (0, 255)  # no natural full scale: own minimum to maximum
    assert np.array_equal(stretched, _array(load_rgb(corpus["float.tif"]))[..., 0])
    unit = _array(load_rgb(corpus["unit-float.tif"]))[..., 0]
    assert np.array_equal(unit, np.rint(ramp.astype(np.float32) / 65535 * 255).astype(np.uint8))
    assert set(np.unique(_array(load_rgb(corpus["bilevel.png"])))) == {0, 255}
    rotated = _array(load_rgb(corpus["rotated.jpg"]))
    assert rotated.shape == (H, W, 3)  # stored pixels: EXIF orientation ignored
    assert np.abs(rotated.astype(int) - _array(load_rgb(corpus["plain.jpg"]))).max() == 0
    for name, path in corpus.items():  # not a constant frame, whatever the mode
        assert np.ptp(_array(load_rgb(path))) > 100, name


def test_a_pixel_limit_is_checked_before_decoding(corpus: dict[str, Path]) -> None:
    with pytest.raises(Image.DecompressionBombError, match=f"{W}x{H}: more than 5000 pixels"):
        load_rgb(corpus["grey16.png"], max_pixels=5000)
    with pytest.raises(Image.DecompressionBombError, match="more than 1000 pixels"):
        load_rgb(corpus["grey16.png"], max_pixels=1000)


# --- every consumer -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decoded(corpus: dict[str, Path]) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    return {name: _array(load_rgb(path)) for name, path in corpus.items()}


def _same(got: dict[str, Any], decoded: dict[str, np.ndarray]) -> None:  # type: ignore[type-arg]
    assert sorted(got) == sorted(decoded)
    for name, image in got.items():
        array = image if isinstance(image, np.ndarray) else _array(image)
        assert array.dtype == np.uint8 and np.array_equal(array, decoded[name]), name


def test_training_records_decode_the_same(corpus: dict[str, Path], decoded: dict[str, Any], tmp_path: Path) -> None:
    from finetune.data import RecordDataset, read_records

    split = tmp_path / "export" / "train"
    split.mkdir(parents=True)
    lines = []
    for name, path in corpus.items():
        shutil.copy(path, split / name)
        lines.append(json.dumps({"image": name, "prefix": "<OD>", "suffix": "drop<loc_1><loc_2><loc_3><loc_4>"}))
    (split / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    dataset = RecordDataset(read_records(split))
    _same({record.image.name: dataset[i][0] for i, record in enumerate(dataset.records)}, decoded)


class _SpyProcessor:
    """The tiny model's processor, recording the images it is given."""

    def __init__(self, processor: Any) -> None:
        self.processor, self.tokenizer, self.seen = processor, processor.tokenizer, []  # type: ignore[var-annotated]

    def __call__(self, *, images: list[Any], **kwargs: Any) -> Any:
        self.seen += images
        return self.processor(images=images, **kwargs)


def test_predict_decodes_the_same(
    corpus: dict[str, Path], decoded: dict[str, Any], tiny_model_dir: Path, tmp_path: Path
) -> None:
    from finetune.model import load_for_inference
    from finetune.predict import PredictOptions, folder_images, predict

    model, processor = load_for_inference(tiny_model_dir)
    spy = _SpyProcessor(processor)
    refs = folder_images(next(iter(corpus.values())).parent)
    done = predict(model, spy, refs, tmp_path / "p.jsonl", PredictOptions(max_new_tokens=3, num_beams=1))
    assert done.records == len(corpus) and done.unreadable == []
    _same({ref.image: image for ref, image in zip(refs, spy.seen, strict=True)}, decoded)


def test_prelabel_decodes_the_same(corpus: dict[str, Path], decoded: dict[str, Any], tmp_path: Path, name: str) -> None:
    import fiftyone as fo

    from fabricdata.assist.prelabel import prelabel

    seen: dict[str, Any] = {}

    def spy(paths: list[Path], images: list[Any]) -> list[list[dict[str, Any]]]:
        seen.update({path.name: image for path, image in zip(paths, images, strict=True)})
        return [[] for _ in paths]

    fo.Dataset(name, persistent=True)
    report = prelabel(next(iter(corpus.values())).parent, name, tmp_path / "runs" / "spy", predictor=spy)
    assert report.added == len(corpus) and report.unreadable == []
    _same(seen, decoded)


def test_serve_decodes_the_same(corpus: dict[str, Path], decoded: dict[str, Any]) -> None:
    from fabricdata.assist.serve import _handlers
    from finetune.predict import PredictOptions

    class Spy:
        phrases: tuple[tuple[str, str], ...] = ()
        device = "cpu"
        options = PredictOptions(batch_size=5)

        def __init__(self) -> None:
            self.seen: dict[str, Any] = {}

        def detect(self, images: list[tuple[str, Any]], task: str, phrase: str = "") -> tuple[list[Any], float]:
            self.seen.update(images)
            return [], 0.0

    detector = Spy()
    detect, _ = _handlers(detector, {})  # type: ignore[arg-type]
    detect([str(path) for path in corpus.values()], [], "od", "", 0.25)
    _same(detector.seen, decoded)


@pytest.fixture
def identity_recipe(tmp_path: Path) -> Iterator[Path]:
    import albumentations as A

    path = tmp_path / "identity.yaml"
    A.save(A.Compose([A.NoOp(p=1.0)]), str(path), data_format="yaml")
    yield path


def test_augment_decodes_the_same_and_flips_that_picture(
    corpus: dict[str, Path], decoded: dict[str, Any], identity_recipe: Path, tmp_path: Path
) -> None:
    from fabricdata.prepare.augment import Job, _init_worker, resolve_recipe, run_job

    made = {}
    for recipe in ("flip", identity_recipe):
        _init_worker(resolve_recipe(recipe))
        for name, path in corpus.items():
            target = tmp_path / Path(str(recipe)).stem / f"{name}.png"  # lossless, as variants of TIFFs are
            result = run_job(Job(str(path), str(target), (), seed=0))
            assert (result.width, result.height) == (W, H)
            made[Path(str(recipe)).stem, name] = _array(Image.open(target))
    _same({name: made["identity", name] for name in corpus}, decoded)
    _same({name: made["flip", name][:, ::-1] for name in corpus}, decoded)  # the flip of the same picture


def test_proxies_decode_the_same(corpus: dict[str, Path], decoded: dict[str, Any], tmp_path: Path) -> None:
    proxies = {}
    for name, path in corpus.items():
        write_proxy(path, tmp_path / f"{name}.png")  # full size: the App shows the model's picture
        proxies[name] = Image.open(tmp_path / f"{name}.png")
    _same(proxies, decoded)
