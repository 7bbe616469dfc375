"""The App plugin's operators, run through FiftyOne's own operator execution API (``execute_operator``, delegated
operations queued and run by ``DelegatedOperationService`` as ``fiftyone delegated launch`` does) on real datasets,
with the plugin found the way the App finds it (:func:`fabricdata.app.plugins.enable`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from fabricdata.app.plugins import PLUGIN_NAME, RUNS_ENV, enable, merged_plugins_dir, plugin_folder, uri
from fabricdata.core.boxes import Box, box_to_fiftyone
from fabricdata.formats.voc import read_voc
from fabricdata.review.threshold import ALL, figures_at, read_evaluation
from tests.app_data import BEST_F1, BEST_THRESHOLD, SIZE, imported_grey, write_predictions
from tests.helpers import run

OPERATORS = ("writeback", "verify_drafts", "prelabel", "review_run", "open_run_view")


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The runs folder the plugin reads, and the plugin enabled (FiftyOne's plugins dir pointed at ours)."""
    import fiftyone as fo

    root = tmp_path / "runs"
    root.mkdir()
    before = fo.config.plugins_dir
    monkeypatch.setenv("FIFTYONE_PLUGINS_DIR", before or "")
    enable(root)
    monkeypatch.setenv(RUNS_ENV, str(root))
    yield root
    fo.config.plugins_dir = before


def execute(operator: str, dataset: str, **ctx: object) -> object:
    from fiftyone.operators import execute_operator

    return execute_operator(uri(operator), {"dataset": dataset, **ctx})


def test_the_plugin_is_found_beside_the_users_plugins_which_stay_untouched(tmp_path: Path) -> None:
    import fiftyone as fo
    import fiftyone.plugins as fop

    user = tmp_path / "mine"
    (user / "hello").mkdir(parents=True)
    (user / "hello" / "fiftyone.yml").write_text('name: "@me/hello"\n')
    before = sorted(p.name for p in user.rglob("*"))
    base = tmp_path / "merged"
    folder = merged_plugins_dir(str(user), base)
    assert merged_plugins_dir(str(user), base) == folder  # made once, reused
    assert merged_plugins_dir(str(folder), base) == folder  # our own folder resolves to the user's again
    old = fo.config.plugins_dir
    try:
        fo.config.plugins_dir = str(folder)
        names = {plugin.name for plugin in fop.list_plugins(enabled="all")}
    finally:
        fo.config.plugins_dir = old
    assert {PLUGIN_NAME, "@me/hello"} <= names
    assert sorted(p.name for p in user.rglob("*")) == before
    # a user folder that is itself one plugin is linked whole; no user folder: ours alone
    single = merged_plugins_dir(str(user / "hello"), base)
    assert (single / "user-plugins" / "fiftyone.yml").is_file()
    assert sorted(p.name for p in merged_plugins_dir(None, base).iterdir() if not p.name.startswith(".")) == [
        "fabricdata"
    ]
    assert (plugin_folder() / "fiftyone.yml").is_file()


def test_every_operator_and_the_panel_are_registered(runs: Path) -> None:
    from fiftyone.operators.registry import OperatorRegistry

    registry = OperatorRegistry()
    found = {op.uri for op in registry.list_operators(type="operator")} | {
        op.uri for op in registry.list_operators(type="panel")
    }
    assert {uri(name) for name in (*OPERATORS, "fabricdata_runs")} <= found
    assert registry.list_errors() == []


def _move_first_box(dataset: object, sample_id: str, box: Box) -> None:
    sample = dataset[sample_id]  # type: ignore[index]
    sample.ground_truth.detections[0].bounding_box = box_to_fiftyone(box, SIZE)
    sample.save()


def test_writeback_of_the_current_view_changes_exactly_the_edited_file(
    runs: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = imported_grey(tmp_path, name, capsys)
    dataset = fo.load_dataset(name)
    ids = dataset.sort_by("filepath").values("id")
    before = {xml.name: xml.read_bytes() for xml in folder.glob("*.xml")}
    _move_first_box(dataset, ids[0], Box(30, 30, 140, 190))  # in the view
    _move_first_box(dataset, ids[5], Box(31, 31, 141, 191))  # edited too, but outside the view
    result = execute("writeback", name, view=dataset.select(ids[:3]))
    assert result.result["written"] == [str(folder / "g0.xml")]  # type: ignore[attr-defined]
    assert result.result["conflicts"] == []  # type: ignore[attr-defined]
    assert result.result["message"].startswith("Wrote 1 label file")  # type: ignore[attr-defined]
    changed = {xml.name for xml in folder.glob("*.xml") if xml.read_bytes() != before[xml.name]}
    assert changed == {"g0.xml"}
    assert read_voc(folder / "g0.xml").objects[0].box.as_tuple() == (30, 30, 140, 190)
    # the selected samples: the other edit; then nothing is left to do
    result = execute("writeback", name, selected=[ids[5]], params={"view_target": "SELECTED_SAMPLES"})
    assert result.result["written"] == [str(folder / "g5.xml")]  # type: ignore[attr-defined]
    result = execute("writeback", name)
    assert result.result["message"] == "Nothing to write; 8 unchanged"  # type: ignore[attr-defined]


def test_a_writeback_conflict_is_reported_and_the_file_left_untouched(
    runs: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = imported_grey(tmp_path, name, capsys)
    dataset = fo.load_dataset(name)
    first = dataset.sort_by("filepath").first()
    _move_first_box(dataset, first.id, Box(30, 30, 140, 190))
    theirs = folder / "g0.xml"
    theirs.write_bytes(theirs.read_bytes().replace(b"<xmin>20</xmin>", b"<xmin>21</xmin>"))  # saved in LabelImg
    saved = theirs.read_bytes()
    result = execute("writeback", name).result  # type: ignore[attr-defined]
    assert result["written"] == []
    assert len(result["conflicts"]) == 1 and result["conflicts"][0].startswith(str(theirs))
    assert "changed on disk since it was imported" in result["conflicts"][0]
    assert "1 file not written (conflicts, left as they are)" in result["message"]
    assert theirs.read_bytes() == saved


def _draft(dataset: object, image: Path) -> str:
    """A draft as ``prelabel`` adds it (tag, proposals with confidences), without running a model."""
    import fiftyone as fo

    from fabricdata.store.dataset import detections_to_objects, labels_digest

    boxes = fo.Detections(
        detections=[
            fo.Detection(label="drop", bounding_box=box_to_fiftyone(Box(170, 40, 300, 220), SIZE), confidence=0.8,
                         proposal=True),
            fo.Detection(label="wrinkle", bounding_box=box_to_fiftyone(Box(5, 5, 60, 60), SIZE), confidence=0.3,
                         proposal=True),
        ]
    )  # fmt: skip
    sample = fo.Sample(
        filepath=str(image),
        tags=["prelabeled"],
        metadata=fo.ImageMetadata(width=SIZE.width, height=SIZE.height, num_channels=3),
        ground_truth=boxes,
        labels_hash=labels_digest(detections_to_objects(boxes, SIZE)),
        prelabel_run="r1",
        prelabel_confidence=0.8,
    )
    return str(dataset.add_sample(sample))  # type: ignore[attr-defined]


def test_verify_rejects_a_drafted_box_then_accepts_the_draft_and_writes_its_label_file(
    runs: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = imported_grey(tmp_path, name, capsys)
    new = tmp_path / "incoming" / "new.jpg"
    new.parent.mkdir()
    Image.new("RGB", (SIZE.width, SIZE.height), (128, 128, 128)).save(new)
    dataset = fo.load_dataset(name)
    draft = _draft(dataset, new)
    known = dataset.match_tags("prelabeled", bool=False).first()
    wrong = dataset[draft].ground_truth.detections[1].id
    human = known.ground_truth.detections[0].id
    selected_labels = [
        {"label_id": wrong, "sample_id": draft, "field": "ground_truth"},
        {"label_id": human, "sample_id": known.id, "field": "ground_truth"},  # an annotator's box: never rejected
    ]
    params = {"decision": "reject", "writeback": True}
    result = execute("verify_drafts", name, selected_labels=selected_labels, params=params).result  # type: ignore[attr-defined]
    assert result["message"].startswith("Rejected 1 drafted box; 1 selected box not a draft (kept)")
    assert [d.label for d in dataset[draft].ground_truth.detections] == ["drop"]
    assert len(dataset[known.id].ground_truth.detections) == 2
    assert not new.with_suffix(".xml").exists()  # a draft is written only once verified
    params = {"decision": "accept", "writeback": True}
    result = execute("verify_drafts", name, selected=[draft, known.id], params=params).result  # type: ignore[attr-defined]
    assert (
        "accepted 1 draft" in result["message"].lower()
        and "1 selected sample not an unverified draft" in result["message"]
    )
    assert result["written"] == [str(new.with_suffix(".xml"))]
    written = read_voc(new.with_suffix(".xml"))
    assert written.verified and [(o.label, o.box.as_tuple()) for o in written.objects] == [
        ("drop", (170, 40, 300, 220))
    ]
    assert "verified" in dataset[draft].tags
    assert sorted(p.name for p in folder.glob("*.xml")) == [f"g{i}.xml" for i in range(8)]


def test_every_operator_refuses_a_dataset_without_fabricdata_fields(runs: Path, name: str) -> None:
    import fiftyone as fo
    from fiftyone.operators.executor import ExecutionError

    dataset = fo.Dataset(name)
    dataset.add_sample(fo.Sample(filepath="/nowhere/x.jpg"))
    for operator in OPERATORS:
        with pytest.raises(ExecutionError, match="has no fabricdata fields yet"):
            execute(operator, name)


def _run_delegated(operator: str, dataset: str) -> object:
    """What ``fiftyone delegated launch`` does with the queued operation: run it, here, and return its record."""
    from fiftyone.operators.delegated import DelegatedOperationService

    service = DelegatedOperationService()
    [done] = service.execute_queued_operations(operator=uri(operator), dataset_name=dataset)
    done.raise_exceptions()
    [record] = service.list_operations(operator=uri(operator), dataset_name=dataset)
    return record


def _launched(operator: str, dataset: str, cwd: Path, timeout: float = 240) -> object:
    """The documented way: ``FIFTYONE_PLUGINS_DIR=... fiftyone delegated launch`` (the line ``fabricdata app``
    prints), started elsewhere and without ``FABRICDATA_RUNS``, runs the queued operation; its record."""
    import fiftyone as fo
    from fiftyone.operators.delegated import DelegatedOperationService

    env = {k: v for k, v in os.environ.items() if k != RUNS_ENV}
    env["FIFTYONE_PLUGINS_DIR"] = fo.config.plugins_dir
    launcher = Path(sys.executable).with_name("fiftyone")
    service = DelegatedOperationService()
    with subprocess.Popen([str(launcher), "delegated", "launch"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                [record] = service.list_operations(operator=uri(operator), dataset_name=dataset)
                if record.run_state in ("completed", "failed"):
                    return record
                time.sleep(1)
        finally:
            process.send_signal(signal.SIGINT)
            output = process.communicate(timeout=60)[0]
    pytest.fail(f"fiftyone delegated launch did not run the operation in {timeout:.0f} s:\n{output[-3000:]}")


def test_review_is_delegated_and_its_views_open_and_its_figures_match_review_json(
    runs: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = imported_grey(tmp_path, name, capsys)
    run_folder = write_predictions(runs / "r1", folder)
    queued = execute("review_run", name, params={"run": str(run_folder)})
    assert queued.delegated  # type: ignore[attr-defined]
    dataset = fo.load_dataset(name)
    assert not dataset.has_saved_view("r1-missed")  # queued, not run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    record = _launched("review_run", name, elsewhere)
    assert record.run_state == "completed", record.result.error  # type: ignore[attr-defined]
    message = record.result.result["message"]  # type: ignore[attr-defined]
    review = json.loads((run_folder / "review.json").read_text())
    assert review["best_f1_threshold"] == pytest.approx(BEST_THRESHOLD) and review["f1"] == pytest.approx(BEST_F1)
    assert message.startswith("reviewed r1 on 8 images") and f"F1 {BEST_F1:.3f}" in message
    dataset.reload()
    assert len(dataset.load_saved_view("r1-missed")) == 2
    # open one of its views
    opened = execute("open_run_view", name, params={"run": "r1", "view": "r1-missed"})
    requests = opened.executor.to_json()["requests"]  # type: ignore[attr-defined]
    assert {"operator_uri": "set_view", "params": {"name": "r1-missed"}} in requests
    # the figures at a threshold, from the stored evaluation (no new evaluation)
    evaluations = dataset.list_evaluations()
    stored = read_evaluation(dataset, review["pred_field"], review["eval_key"])
    at_best = {row.label: row for row in figures_at(stored, review["best_f1_threshold"], ["wrinkle", "drop"])}
    assert at_best[ALL].f1 == pytest.approx(review["f1"])
    assert at_best[ALL].precision == pytest.approx(review["precision"])
    assert at_best[ALL].recall == pytest.approx(review["recall"])
    assert (at_best["drop"].truths, at_best["drop"].predicted, at_best["drop"].hits) == (8, 8, 6)
    at_67 = {row.label: row for row in figures_at(stored, 0.67, ["wrinkle", "drop"])}
    # by hand from the designed boxes: 8 wrinkles + 2 false drops + the drops at 0.70 .. 0.67 are kept
    assert (at_67[ALL].predicted, at_67[ALL].hits, at_67[ALL].f1) == (14, 12, pytest.approx(0.8))
    assert dataset.list_evaluations() == evaluations


@pytest.mark.slow
def test_prelabel_is_delegated_and_adds_the_new_photos_as_drafts(
    runs: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str], tiny_model_dir: Path
) -> None:
    import fiftyone as fo

    imported_grey(tmp_path, name, capsys)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for i in range(3):
        Image.new("RGB", (96, 64), (100 + 40 * i, 90, 80)).save(incoming / f"p{i}.png")
    zero = runs / "zero"
    zero.mkdir()
    (zero / "predictions.jsonl").write_text("")  # a zero-shot run: its model is given below
    params = {"folder": str(incoming), "run": str(zero), "model": str(tiny_model_dir), "max_new_tokens": 12}
    queued = execute("prelabel", name, params=params)
    assert queued.delegated  # type: ignore[attr-defined]
    record = _run_delegated("prelabel", name)
    assert record.run_state == "completed"  # type: ignore[attr-defined]
    assert record.result.result["message"].startswith("3 images prelabeled with")  # type: ignore[attr-defined]
    dataset = fo.load_dataset(name)
    assert len(dataset.match_tags("prelabeled")) == 3 and len(dataset) == 11
    assert len(dataset.load_saved_view("zero-to-verify")) == 3
    assert record.status.progress == 1.0  # type: ignore[attr-defined]
    code, text, _ = run(["stats", "-d", name], capsys)
    assert code == 0 and "3 prelabeled images wait for verification" in text


def test_saved_views_are_grouped_by_run_and_the_runs_table_takes_predict_only_runs(tmp_path: Path) -> None:
    from fabricdata.app.context import run_views
    from fabricdata.app.panel import runs_table

    views = ["r1-missed", "r1-to-verify", "sweep-a-b-confused", "audit-swapped", "audit-worst", "no-labels",
             "validate-duplicates", "missed"]  # fmt: skip
    assert run_views(views) == {
        "audit": ["audit-swapped", "audit-worst"],
        "r1": ["r1-missed", "r1-to-verify"],
        "sweep-a-b": ["sweep-a-b-confused"],
    }
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "config.yaml").write_text("lr: 0.001\nlora:\n  r: 8\n")
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "predictions.jsonl").write_text("")
    (tmp_path / "zero" / "review.json").write_text(
        json.dumps({"map": 0.25, "ap50": 0.5, "per_class_ap": {"drop": 0.25}})
    )
    header, rows, names = runs_table(tmp_path)
    assert names == ["trained", "zero"]
    assert header[:3] == ["run", "lr", "lora.r"] and "AP drop" in header
    assert [row["c0"] for row in rows] == names and rows[1][f"c{header.index('mAP')}"] == "0.250"
    assert runs_table(tmp_path / "none") == ([], [], [])
