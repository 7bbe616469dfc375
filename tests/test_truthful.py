"""The tool says what is true on small, real-sized datasets: run names, splits of 4 and 22 images, near-duplicate
photos, counts that ignore augmented copies, whole commands, no library noise. Each test reproduces a symptom
seen on published datasets (built here from synthetic images)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from fabricdata.prepare.synth import SynthConfig, generate
from tests.helpers import run


def _synth(folder: Path, images: int, seed: int = 5) -> Path:
    return generate(SynthConfig(images=images, seed=seed, width=256, height=192), folder)


def _splits(name: str) -> dict[str, str]:
    import fiftyone as fo

    dataset = fo.load_dataset(name)
    return {Path(s.filepath).name: next(t for t in s.tags if t in ("train", "val", "test")) for s in dataset}


# --- runs -----------------------------------------------------------------------------------------------------


def test_run_names_resolve_to_runs_first_and_unknown_runs_list_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tilda").mkdir()  # the data folder, named like the run
    for run_name in ("tilda", "other"):
        (tmp_path / "runs" / run_name).mkdir(parents=True)
        (tmp_path / "runs" / run_name / "config.yaml").write_text(f"data: exports/{run_name}\n")
    code, _, err = run(["predict", "--run", "tilda"], capsys)
    assert code == 1 and "exports/tilda/test/annotations.jsonl: not found" in err  # runs/tilda's export
    assert "has no config.yaml" not in err
    code, _, err = run(["predict", "--run", "doesnotexist"], capsys)
    assert code == 1 and "--run doesnotexist: no such run (runs in runs/: other, tilda)" in err
    code, _, err = run(["review", "--run", "nope"], capsys)
    assert code == 1 and "--run nope: no such run" in err


# --- splits ---------------------------------------------------------------------------------------------------


def test_four_images_fill_every_split_or_say_which_is_empty(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["import", str(_synth(tmp_path / "d", 4)), "-d", name], capsys)[0] == 0
    code, out, _ = run(["split", "-d", name, "--min-per-split", "0"], capsys)
    assert code == 0 and "is empty: too few images for --ratios 0.8,0.1,0.1" in out  # what happened before
    code, out, _ = run(["split", "-d", name, "--reshuffle"], capsys)
    assert code == 0 and "is empty" not in out
    assert sorted(set(_splits(name).values())) == ["test", "train", "val"]
    assert run(["export", "florence", str(tmp_path / "export"), "-d", name, "--tasks", "od"], capsys)[0] == 0


def test_a_class_missing_from_a_split_is_named_with_what_to_do(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _synth(tmp_path / "d", 22, seed=8)
    rare = next(p for p in sorted(folder.glob("*.xml")) if "<name>drop</name>" in p.read_text())
    rare.write_text(rare.read_text().replace("<name>drop</name>", "<name>rare</name>", 1))
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    code, out, _ = run(["split", "-d", name], capsys)
    lines = [line for line in out.splitlines() if "'rare'" in line]
    assert code == 0 and len(lines) == 2  # one image: absent from the two other splits
    assert all("(1 image) is in no" in line and "--ratios 0.8,0.1,0.1" in line for line in lines)


def test_split_keeps_near_duplicate_photos_together_so_validate_finds_no_leak(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _synth(tmp_path / "d", 16, seed=9)
    for xml in sorted(folder.glob("*.xml"))[:6]:  # the same shot again, a little brighter, re-encoded
        with Image.open(xml.with_suffix(".jpg")) as image:
            ImageEnhance.Brightness(image).enhance(1.03).save(folder / f"again_{xml.stem}.jpg", quality=90)
        text = xml.read_text().replace(f"<filename>{xml.stem}.jpg", f"<filename>again_{xml.stem}.jpg")
        (folder / f"again_{xml.stem}.xml").write_text(text)
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    code, out, _ = run(["split", "-d", name, "--ratios", "0.5,0.25,0.25"], capsys)
    assert code == 0 and "6 groups of near-identical images: each kept in one split" in out
    splits = _splits(name)
    for xml in sorted(folder.glob("fabric_*.xml"))[:6]:
        assert splits[f"{xml.stem}.jpg"] == splits[f"again_{xml.stem}.jpg"]
    code, out, _ = run(["validate", "-d", name, "--json"], capsys)
    checks = {finding["check"] for finding in json.loads(out)["findings"]}
    assert "near-duplicates-across-splits" not in checks


# --- validate -------------------------------------------------------------------------------------------------


def test_validate_counts_originals_names_files_and_prints_whole_commands(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    from fabricdata.store.writeback import writeback

    folder = _synth(tmp_path / "d", 10, seed=3)
    planted = next(p for p in sorted(folder.glob("*.xml")) if "<object>" in p.read_text())
    text = planted.read_text()
    block = text[text.index("<object>") : text.index("</object>") + len("</object>")]
    planted.write_text(text.replace(block, block + "\n\t" + block, 1))  # the same box twice: a duplicate
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    assert run(["split", "-d", name], capsys)[0] == 0
    assert run(["augment", "-d", name, "--recipe", "flip", "--split", "all", "--workers", "1"], capsys)[0] == 0
    dataset = fo.load_dataset(name)
    originals = dataset.exists("source_id", False)
    boxes = originals.count_values("ground_truth.detections.label")
    findings = {f["check"]: f for f in json.loads(run(["validate", "-d", name, "--json"], capsys)[1])["findings"]}
    few = findings["few-instances"]["message"]
    for label, count in boxes.items():
        assert f"{label} ({count})" in few  # not twice that: a flipped copy is no new data
    assert "10 augmented variants" in findings["variants"]["message"]
    variant_ids = set(dataset.exists("source_id").values("id"))
    for check in ("box-size-outliers", "duplicate-boxes", "class-imbalance"):
        assert not variant_ids & set(findings.get(check, {}).get("samples", []))
    # the human-readable output names files and prints commands whole, with --dataset
    out = run(["validate", "-d", name], capsys)[1]
    assert f"  fabricdata app --dataset {name} --view validate-defect-free-images" not in out  # info: no view
    commands = [line.strip() for line in out.splitlines() if line.strip().startswith("fabricdata app")]
    assert commands and all(c.startswith(f"fabricdata app --dataset {name} --view validate-") for c in commands)
    assert f"duplicate-boxes: {planted.with_suffix('.jpg')}" in out
    # write-back's progress total counts the samples it reads: those with an annotation file (not variants)
    totals: list[int] = []
    writeback(name, on_total=totals.append)
    assert totals == [len(originals)]


# --- noise ----------------------------------------------------------------------------------------------------


def test_third_party_warnings_stay_off_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from fabricdata.cli import common as cli_common

    with warnings.catch_warnings():
        run(["version"], capsys)  # sets the environment up as every command does
        warnings.simplefilter("always")
        shown = warnings.showwarning
        assert shown is cli_common._quiet_third_party_warning
        shown(UserWarning("Glyph 8 missing from font(s) DejaVu Sans."), UserWarning, "/x/matplotlib/text.py", 1)
        shown(UserWarning("Tight layout not applied"), UserWarning, "/x/site-packages/matplotlib/figure.py", 2)
        ours = str(Path(cli_common.__file__).resolve().parent / "importer.py")
        shown(UserWarning("FiftyOne's sample layout changed"), UserWarning, ours, 3)
        shown(UserWarning("not ours"), UserWarning, "/home/someone/fabricdata/.venv/lib/x/site.py", 4)
    _, err = capsys.readouterr()
    assert "Glyph" not in err and "Tight layout" not in err and "not ours" not in err
    assert "warning: FiftyOne's sample layout changed" in err


def test_an_empty_export_split_is_named_by_predict(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["import", str(_synth(tmp_path / "d", 6)), "-d", name], capsys)[0] == 0
    assert run(["split", "-d", name, "--ratios", "1,0,0"], capsys)[0] == 0
    export = tmp_path / "export"
    args = ["export", "florence", str(export), "-d", name, "--tasks", "od", "--allow-empty-split"]
    assert run(args, capsys)[0] == 0
    code, _, err = run(["predict", "--run", str(tmp_path / "r0"), "--model", "nowhere", "--data", str(export)], capsys)
    assert code == 1 and f"{export}/test has no images: that split of the export is empty" in err
    shutil.rmtree(export)


def test_authors_splits_that_separate_near_duplicates_are_kept_and_named(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = _synth(tmp_path / "pool", 6, seed=12)
    root = tmp_path / "published"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
    for index, xml in enumerate(sorted(pool.glob("*.xml"))):
        split = "train" if index < 4 else "test"
        shutil.copyfile(xml, root / split / xml.name)
        shutil.copyfile(xml.with_suffix(".jpg"), root / split / f"{xml.stem}.jpg")
    first = sorted(pool.glob("*.xml"))[0]  # the authors put a copy of a training shot into test
    with Image.open(first.with_suffix(".jpg")) as image:
        ImageEnhance.Brightness(image).enhance(1.03).save(root / "test" / "copy.jpg", quality=90)
    (root / "test" / "copy.xml").write_text(first.read_text().replace(f"{first.stem}.jpg", "copy.jpg"))
    assert run(["import", str(root), "-d", name], capsys)[0] == 0
    code, out, _ = run(["split", "-d", name], capsys)
    assert code == 0 and "1 group of near-identical images: 0 kept in one split, 1 left across" in out
    named = [line for line in out.splitlines() if "copy.jpg (test)" in line]
    assert len(named) == 1 and f"{first.stem}.jpg (train)" in named[0]
    splits = _splits(name)
    assert splits[f"{first.stem}.jpg"] == "train" and splits["copy.jpg"] == "test"  # the authors' word stands
    code, out, _ = run(["split", "-d", name, "--reshuffle"], capsys)
    splits = _splits(name)
    assert code == 0 and splits[f"{first.stem}.jpg"] == splits["copy.jpg"]
