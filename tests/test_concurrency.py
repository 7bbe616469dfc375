"""Commands that overlap never lose an edit nor duplicate a sample (README "Guarantees").

Real `fabricdata` processes: the first is stopped at a named point while it holds the dataset's lease
(fabricdata.core.faults: FABRICDATA_PAUSE_AT, FABRICDATA_RESUME_FILE), the second is started and must say that it
waits and for whom, then the first is let go (or SIGKILLed) and both must end as if they had run one after the
other. Two spellings of one database URI (127.0.0.1 and localhost) stand for two machines sharing a server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabricdata.formats.voc import read_voc
from fabricdata.review.predictions import STAGED
from fabricdata.store.dataset import F_SOURCE_ID, SPLITS, load_dataset
from fabricdata.store.importer import import_folder
from fabricdata.store.locks import LEASES, dataset_lock, lease_holder
from tests.test_guarantees import edit_every_sample, fabricdata_cli, make_tree

WAITING = "is in use by"


@dataclass
class Command:
    """A real ``fabricdata`` process; its stderr goes to a file, so a test can read it while it runs."""

    proc: subprocess.Popen[str]
    err: Path
    resume: Path | None = None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, within: float = 120) -> None:
        deadline = time.monotonic() + within
        while text not in self.stderr():
            if self.proc.poll() is not None:
                pytest.fail(f"ended (rc {self.proc.returncode}) before saying {text!r}:\n{self.stderr()[-3000:]}")
            assert time.monotonic() < deadline, f"never said {text!r}:\n{self.stderr()[-3000:]}"
            time.sleep(0.1)

    def go_on(self) -> None:
        assert self.resume is not None
        self.resume.touch()

    def finish(self, timeout: float = 600) -> tuple[int, str, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, self.stderr()


def start(args: list[str], folder: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Command:
    tag = uuid.uuid4().hex[:8]
    err = folder / f"stderr-{tag}.txt"
    with err.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fabricdata", *args],
            env={**os.environ, "COLUMNS": "200", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
            cwd=cwd,
        )
    return Command(proc, err)


def start_paused(point: str, args: list[str], folder: Path, env: dict[str, str] | None = None, **kw: Path) -> Command:
    """``fabricdata ARGS`` stopped at ``point`` (``NAME:N``), holding whatever it holds there, until ``go_on``."""
    tag = uuid.uuid4().hex[:8]
    marker, resume = folder / f"paused-{tag}", folder / f"resume-{tag}"
    pause = {"FABRICDATA_PAUSE_AT": point, "FABRICDATA_PAUSE_FILE": str(marker), "FABRICDATA_RESUME_FILE": str(resume)}
    command = start(args, folder, {**(env or {}), **pause}, **kw)
    command.resume = resume
    deadline = time.monotonic() + 300
    while not marker.exists():
        if command.proc.poll() is not None:
            pytest.fail(f"{args} ended (rc {command.proc.returncode}) before {point}:\n{command.stderr()[-3000:]}")
        assert time.monotonic() < deadline, f"{point} never reached"
        time.sleep(0.05)
    return command


def other_spelling(uri: str) -> str:
    """The same server through another name (``localhost`` for ``127.0.0.1``): as a second machine sees it."""
    assert "127.0.0.1" in uri
    return uri.replace("127.0.0.1", "localhost")


# --- import ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_imports_through_two_uri_spellings_make_each_sample_once(
    tmp_path: Path,
    name: str,
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 60)
    dataset = name
    uri = os.environ["FIFTYONE_DATABASE_URI"]
    first = start_paused(
        "import.added:1", ["import", str(folder), "-d", dataset], tmp_path, {"FIFTYONE_DATABASE_URI": uri}
    )
    second = start(["import", str(folder), "-d", dataset], tmp_path, {"FIFTYONE_DATABASE_URI": other_spelling(uri)})
    second.wait_for(WAITING)  # the lease is in the database: the other spelling sees it
    assert f"pid {first.proc.pid} on host" in second.stderr() and "fabricdata import" in second.stderr()
    first.go_on()
    (code_a, out_a, err_a), (code_b, out_b, err_b) = first.finish(), second.finish()
    assert (code_a, code_b) == (0, 0), err_a + err_b
    paths = load_dataset(dataset).values("filepath")
    assert len(paths) == len(set(paths)) == 60
    assert "60 added" in out_a and "60 unchanged" in out_b, out_a + out_b
    assert lease_holder(dataset) is None


def test_an_import_during_a_writeback_sees_the_written_files_and_reverts_no_edit(
    tmp_path: Path,
    name: str,
) -> None:
    """The import takes the lease before it scans: started while write-back holds it, it reads the files write-back
    wrote (an import that scanned first applied the stale scan and put the boxes back)."""
    folder = make_tree(tmp_path / "voc", "voc", 30)
    dataset = name
    import_folder(folder, dataset)
    edit_every_sample(dataset)  # the first box of every image moves 3 pixels right
    writing = start_paused("lease.acquired:1", ["writeback", "-d", dataset], tmp_path)
    importing = start(["import", str(folder), "-d", dataset], tmp_path)
    importing.wait_for(WAITING)
    writing.go_on()
    (code_w, out_w, err_w), (code_i, out_i, err_i) = writing.finish(), importing.finish()
    assert (code_w, code_i) == (0, 0), err_w + err_i
    assert "30 file(s) written" in out_w and "30 unchanged" in out_i, out_w + out_i
    for index in range(30):  # the edits are in the files and still in the dataset
        boxes = sorted(o.box.xmin for o in read_voc(folder / f"fabric {index:03d}.xml").objects)
        assert boxes[0] == 7 + index % 7, index
    xmins = [
        round(min(b[0] for b in boxes) * 96)
        for boxes in load_dataset(dataset).values("ground_truth.detections.bounding_box")
    ]
    assert sorted(xmins) == sorted(7 + index % 7 for index in range(30))


# --- augment, split, export ---------------------------------------------------------------------------------


def _variant_splits(dataset_name: str) -> list[tuple[str | None, str | None]]:
    """(variant's split, its source's split) for every variant."""
    dataset = load_dataset(dataset_name)
    ids, tags, sources = dataset.values(["id", "tags", F_SOURCE_ID])
    split_of = {
        sid: next((t for t in sample_tags if t in SPLITS), None) for sid, sample_tags in zip(ids, tags, strict=True)
    }
    return [(split_of[sid], split_of[source]) for sid, source in zip(ids, sources, strict=True) if source]


@pytest.mark.slow
def test_split_reshuffle_during_augment_waits_and_leaves_every_variant_with_its_source(
    tmp_path: Path,
    name: str,
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 16)
    dataset = name
    import_folder(folder, dataset)
    assert fabricdata_cli("split", "-d", dataset, "--ratios", "0.5,0.25,0.25", "--seed", "1").returncode == 0
    before = dict(zip(*load_dataset(dataset).values(["filepath", "tags"]), strict=True))
    # augment has read its sources (and their splits) and made its first variant when split comes
    augmenting = start_paused(
        "augment.written:1",
        ["augment", "-d", dataset, "--recipe", "flip", "--split", "all", "--workers", "1"],
        tmp_path,
    )
    splitting = start(["split", "-d", dataset, "--reshuffle", "--seed", "7", "--ratios", "0.5,0.25,0.25"], tmp_path)
    splitting.wait_for(WAITING)
    assert "fabricdata augment" in splitting.stderr()
    augmenting.go_on()
    (code_a, _, err_a), (code_s, _, err_s) = augmenting.finish(), splitting.finish()
    assert (code_a, code_s) == (0, 0), err_a + err_s
    after = dict(zip(*load_dataset(dataset).exists(F_SOURCE_ID, False).values(["filepath", "tags"]), strict=True))
    assert sum(before[path] != tags for path, tags in after.items()) >= 4  # the reshuffle moved sources
    pairs = _variant_splits(dataset)
    assert len(pairs) == 16 and all(variant == source and variant for variant, source in pairs), pairs
    done = fabricdata_cli("export", "florence", str(tmp_path / "export"), "-d", dataset)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_export_refuses_a_variant_in_another_split_than_its_source(
    tmp_path: Path,
    name: str,
) -> None:
    """A leak made outside fabricdata's lease (an App edit, an older version) is refused, naming both samples."""
    folder = make_tree(tmp_path / "voc", "voc", 8)
    dataset = name
    import_folder(folder, dataset)
    assert fabricdata_cli("split", "-d", dataset, "--ratios", "0.5,0.25,0.25").returncode == 0
    assert (
        fabricdata_cli("augment", "-d", dataset, "--recipe", "flip", "--split", "all", "--workers", "1").returncode == 0
    )
    samples = load_dataset(dataset)
    variant = samples.exists(F_SOURCE_ID).first()
    source = samples[variant[F_SOURCE_ID]]
    moved = next(split for split in SPLITS if split not in source.tags)
    variant.tags = [moved]
    variant.save()
    out = tmp_path / "export"
    done = fabricdata_cli("export", "florence", str(out), "-d", dataset)
    assert done.returncode == 1, done.stdout + done.stderr
    line = done.stderr.replace("\n", "")
    assert variant.filepath in line and source.filepath in line and f"is in {moved}" in line
    assert "fabricdata split" in line and not out.exists()
    assert fabricdata_cli("split", "-d", dataset).returncode == 0  # the fix the line names
    assert fabricdata_cli("export", "florence", str(out), "-d", dataset).returncode == 0


# --- review, prelabel ------------------------------------------------------------------------------------------


def _review_run(tmp_path: Path, dataset_name: str, images: int = 12) -> Path:
    """A dataset of ``images`` and the predictions.jsonl of a model that finds most boxes and makes some mistakes
    of each kind (a missed box, a false positive, a box far off its defect)."""
    folder = make_tree(tmp_path / "voc", "voc", images)
    import_folder(folder, dataset_name)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    lines = []
    for index in range(images):
        annotation = read_voc(folder / f"fabric {index:03d}.xml")
        boxes = [[o.label, o.box.xmin + 2, o.box.ymin, o.box.xmax, o.box.ymax] for o in annotation.objects]
        if index % 3 == 0:
            boxes = boxes[:1]  # missed
        elif index % 3 == 1:
            boxes.append(["drop", 60, 2, 90, 12])  # a false positive
        if index % 4 == 2:
            boxes[0][1:] = [boxes[0][1] + 15, boxes[0][2], boxes[0][3] + 15, boxes[0][4]]  # far off
        detections = [{"label": b[0], "bbox": b[1:], "confidence": 0.5 + index / 40} for b in boxes]
        image = folder / annotation.filename
        record = {"image": image.name, "filepath": str(image), "task": "<OD>", "text": "", "detections": detections}
        lines.append(json.dumps(record))
    (run / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return run


def review_state(dataset_name: str) -> dict[str, object]:
    """What the review of run r shows: its saved views (each must load) with their sizes, its evaluation, its
    fields (a review's staged ``__next`` field and evaluation are not part of it)."""
    dataset = load_dataset(dataset_name)
    dataset.reload()  # another process reviewed it
    views = {name: len(dataset.load_saved_view(name)) for name in dataset.list_saved_views() if name.startswith("r-")}
    schema = dataset.get_field_schema(flat=True)
    return {
        "views": views,
        "evaluations": [key for key in dataset.list_evaluations() if STAGED not in key],
        "fields": sorted(path for path in schema if ("pred_r" in path or "eval_r" in path) and STAGED not in path),
        "config": dataset.get_evaluation_info("eval_r").config.pred_field if dataset.has_evaluation("eval_r") else None,
        "map": round(dataset.load_evaluation_results("eval_r").mAP(), 6) if dataset.has_evaluation("eval_r") else None,
    }


@pytest.mark.slow
def test_two_reviews_of_one_run_take_turns_and_leave_loadable_views(
    tmp_path: Path,
    name: str,
) -> None:
    dataset = name
    run = _review_run(tmp_path, dataset)
    assert fabricdata_cli("review", "--run", str(run), "-d", dataset).returncode == 0
    before = review_state(dataset)
    views: dict[str, int] = before["views"]  # type: ignore[assignment]
    assert before["config"] == "pred_r" and sum(count > 0 for count in views.values()) >= 3, before
    # the first is stopped with its new review built beside the old one, which is still whole meanwhile
    first = start_paused("review.stored:1", ["review", "--run", str(run), "-d", dataset], tmp_path)
    assert review_state(dataset) == before
    second = start(["review", "--run", str(run), "-d", dataset], tmp_path)
    second.wait_for(WAITING)
    first.go_on()
    (code_a, _, err_a), (code_b, _, err_b) = first.finish(), second.finish()
    assert (code_a, code_b) == (0, 0), err_a + err_b
    after = review_state(dataset)
    assert after == before  # the same predictions: the same review, under the same names, nothing staged left
    assert not any(STAGED in path for path in load_dataset(dataset).get_field_schema(flat=True))


@pytest.mark.slow
def test_a_review_killed_before_its_swap_leaves_the_earlier_review_and_the_rerun_replaces_it(
    tmp_path: Path,
    name: str,
) -> None:
    dataset = name
    run = _review_run(tmp_path, dataset)
    assert fabricdata_cli("review", "--run", str(run), "-d", dataset).returncode == 0
    before = review_state(dataset)
    killed = start_paused("review.stored:1", ["review", "--run", str(run), "-d", dataset], tmp_path)
    killed.proc.send_signal(signal.SIGKILL)
    killed.proc.wait(timeout=30)
    assert review_state(dataset) == before  # the views still load: the earlier review is whole
    done = fabricdata_cli("review", "--run", str(run), "-d", dataset)
    assert done.returncode == 0, done.stderr
    assert WAITING not in done.stderr  # the killed holder's lease was taken over at once (its pid is gone)
    assert review_state(dataset) == before
    assert not any(STAGED in path for path in load_dataset(dataset).get_field_schema(flat=True))


@pytest.mark.slow
def test_two_prelabels_at_once_add_every_photo_once(tmp_path: Path, name: str, tiny_model_dir: Path) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(6):
        Image.new("RGB", (64, 48), (20 * index, 90, 60)).save(photos / f"new {index}.png")
    dataset = name
    args = ["prelabel", str(photos), "--run", "zero-shot", "--model", str(tiny_model_dir), "-d", dataset,
            "--max-new-tokens", "8"]  # fmt: skip
    first = start_paused("lease.acquired:1", args, tmp_path, cwd=tmp_path)
    second = start(args, tmp_path, cwd=tmp_path)
    second.wait_for(WAITING)
    first.go_on()
    (code_a, out_a, err_a), (code_b, out_b, err_b) = first.finish(), second.finish()
    assert (code_a, code_b) == (0, 0), err_a + err_b
    paths = load_dataset(dataset).values("filepath")
    assert len(paths) == len(set(paths)) == 6
    assert "6 images prelabeled" in out_a and "6 already in" in out_b, out_a + out_b


# --- the lease itself ---------------------------------------------------------------------------------------


def test_the_lease_of_a_killed_holder_is_taken_over_at_once_on_its_host(
    tmp_path: Path,
    name: str,
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 6)
    dataset = name
    import_folder(folder, dataset)
    killed = start_paused("lease.acquired:1", ["split", "-d", dataset], tmp_path)
    holder = lease_holder(dataset)
    assert holder is not None and holder["pid"] == killed.proc.pid and holder["command"] == "split"
    killed.proc.send_signal(signal.SIGKILL)
    killed.proc.wait(timeout=30)
    done = fabricdata_cli("split", "-d", dataset)
    assert done.returncode == 0, done.stderr
    assert WAITING not in done.stderr, done.stderr  # it did not wait for the lease to lapse (30 s)
    assert lease_holder(dataset) is None


def test_a_holder_that_runs_longer_than_the_lease_lives_keeps_it(tmp_path: Path, name: str) -> None:
    """The heartbeat renews the lease: with a 2 s lease, a holder stopped for 6 s still holds the dataset."""
    folder = make_tree(tmp_path / "voc", "voc", 4)
    import_folder(folder, name)
    short = {"FABRICDATA_LEASE_TTL": "2"}
    holding = start_paused("lease.acquired:1", ["split", "-d", name], tmp_path, short)
    first = lease_holder(name)
    time.sleep(6)
    renewed = lease_holder(name)
    assert first is not None and renewed is not None and renewed["owner"] == first["owner"]
    assert renewed["expires"] > first["expires"]
    waiting = start(["split", "-d", name, "--reshuffle"], tmp_path, short)
    waiting.wait_for(WAITING)
    holding.go_on()
    assert [holding.finish()[0], waiting.finish()[0]] == [0, 0]


def _foreign_lease(dataset_name: str, seconds: float) -> None:
    """A lease held by a command on another machine, expiring in ``seconds`` (as if that machine died)."""
    from fiftyone.core.odm.database import get_db_conn

    now = datetime.now(UTC).replace(tzinfo=None)
    get_db_conn()[LEASES].insert_one(
        {
            "_id": dataset_name,
            "owner": "elsewhere",
            "command": "import",
            "argv": "fabricdata import /mnt/share/fabric",
            "host": "another-machine",
            "pid": 4242,
            "started": 0.0,
            "since": now,
            "expires": now + timedelta(seconds=seconds),
        }
    )


@pytest.mark.slow
def test_a_lease_from_another_machine_is_waited_for_until_it_lapses(tmp_path: Path, name: str) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 4)
    dataset = name
    import_folder(folder, dataset)
    began = time.monotonic()
    _foreign_lease(dataset, 40)  # longer than the command takes to start
    done = fabricdata_cli("split", "-d", dataset)
    assert done.returncode == 0, done.stderr
    assert "'fabricdata import /mnt/share/fabric' (pid 4242 on host another-machine" in done.stderr
    assert time.monotonic() - began >= 40  # it waited for the lapse (a pid of another host is never taken for dead)


def test_a_command_that_waits_too_long_says_who_holds_the_dataset(
    tmp_path: Path,
    name: str,
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 4)
    dataset = name
    import_folder(folder, dataset)
    _foreign_lease(dataset, 600)
    done = fabricdata_cli("augment", "-d", dataset, "--recipe", "flip", env={"FABRICDATA_LOCK_WAIT": "2"})
    assert done.returncode == 1, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "pid 4242 on host another-machine" in line and "FABRICDATA_LOCK_WAIT" in line
    assert len(load_dataset(dataset)) == 4


@pytest.mark.slow
def test_the_database_refuses_a_second_sample_of_one_image(
    tmp_path: Path,
    name: str,
) -> None:
    """The unique filepath index: a program that takes no lease cannot duplicate an image; an import it races
    with stops with one line naming the image, and its rerun completes."""
    import fiftyone as fo

    folder = make_tree(tmp_path / "voc", "voc", 1200)  # two insert batches after the first sample
    dataset = name
    importing = start_paused("import.added:1", ["import", str(folder), "-d", dataset], tmp_path)
    intruder = folder / "fabric 1100.png"  # in the second batch
    load_dataset(dataset).add_sample(fo.Sample(filepath=str(intruder)))
    with pytest.raises(ValueError, match="duplicate key"):
        load_dataset(dataset).add_sample(fo.Sample(filepath=str(intruder)))
    importing.go_on()
    code, _, err = importing.finish()
    assert code == 1 and f"{intruder}: already in dataset" in err, err
    load_dataset(dataset).delete_samples(load_dataset(dataset).match(fo.ViewField("filepath") == str(intruder)))
    done = fabricdata_cli("import", str(folder), "-d", dataset)
    assert done.returncode == 0, done.stderr
    paths = load_dataset(dataset).values("filepath")
    assert len(paths) == len(set(paths)) == 1200


def test_the_lease_is_reentrant_in_a_thread_and_other_threads_wait(name: str) -> None:
    """A command that holds a dataset may call another that takes it; another thread (the App's server runs
    operators in threads) waits for it like another process."""
    import threading

    order: list[str] = []

    def other() -> None:
        with dataset_lock(name, "other thread"):
            order.append("other")

    with dataset_lock(name, "outer"):
        with dataset_lock(name, "inner"):  # no deadlock
            order.append("inner")
        thread = threading.Thread(target=other)
        with pytest.warns(UserWarning, match="'outer'"):
            thread.start()
            time.sleep(2)
        order.append("outer done")
    thread.join(timeout=30)
    assert order == ["inner", "outer done", "other"] and lease_holder(name) is None


def test_a_dataset_that_already_holds_duplicates_is_named_and_keeps_working(name: str) -> None:
    """Duplicates left by an older fabricdata: the unique index cannot be built (FiftyOne would drop its plain
    one trying), so the dataset keeps the plain one and every command says which images are there twice."""
    import fiftyone as fo

    fo.Dataset(name, persistent=True).add_samples([fo.Sample(filepath="/data/a.png") for _ in range(2)])
    with pytest.warns(UserWarning, match=r"holds images more than once \(/data/a.png \(2 samples\)\)"):
        dataset = load_dataset(name)
    assert dataset.get_index_information()["filepath"].get("unique") is not True and len(dataset) == 2
    dataset.delete_samples(dataset.limit(1))
    load_dataset(name)  # the fix the warning names: now the index is built
    assert dataset.get_index_information()["filepath"]["unique"] is True


@pytest.fixture(autouse=True)
def _no_lease_left() -> Iterator[None]:
    yield
    from fiftyone.core.odm.database import get_db_conn

    get_db_conn()[LEASES].delete_many({"owner": "elsewhere"})
