"""skinedge.kiosk.caselog: a real SQLite file, real photos, the bundled model; export read back by evaluate."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinedge.evaluation import evaluate
from skinedge.kiosk.caselog import (
    ORPHAN_GRACE_S,
    CaseLog,
    CaseLogError,
    CaseNotFoundError,
    LabelError,
    export,
    format_report,
    open_existing,
    photo_suffix,
    report,
)

LABELS = ("Acne", "Eczema", "Psoriasis", "SkinCancer", "Vitiligo", "Unknown_Normal")
SHA = "ab" * 32


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def result(label: str | None, score: float = 0.9, uncertain: bool = False, top: str | None = None) -> dict:
    top = top or label
    return {"source": "<bytes>", "label": label, "score": score, "uncertain": uncertain,
            "reason": "below the abstain threshold" if label is None else None,
            "top_k": [{"label": top, "score": score}], "timings_ms": {"invoke": 5.0}}


def test_record_get_and_durable_settings(tmp_path: Path) -> None:
    db = tmp_path / "cases.sqlite"
    with CaseLog(db, labels=LABELS) as log:
        photo = jpeg(0)
        cid = log.record(result("Acne"), photo=photo, model_name="m", model_sha256=SHA, model_labels=LABELS)
        case = log.get(cid)
        assert case.label == "Acne" and case.top_label == "Acne" and case.score == 0.9 and not case.uncertain
        assert case.photo is None and case.clinician_label is None and case.time.endswith("Z")
        import hashlib
        assert case.photo_sha256 == hashlib.sha256(photo).hexdigest()
        assert case.result == json.loads(json.dumps(result("Acne")))
        cid2 = log.record(result(None, 0.3, True, top="Eczema"), photo=jpeg(1), model_name="m", model_sha256=SHA)
        c2 = log.get(cid2)
        assert c2.label is None and c2.top_label == "Eczema" and c2.uncertain and c2.reason
        assert cid2 > cid
    # Another connection sees the committed rows, and the file is in WAL mode.
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT COUNT(*) FROM cases").fetchone()[0] == 2
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    log = CaseLog(db)
    assert log._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    log.close()


def test_labels_set_clear_and_refused(tmp_path: Path) -> None:
    log = CaseLog(tmp_path / "c.sqlite", labels=LABELS)
    cid = log.record(result("Acne"), photo=jpeg(0), model_name="m", model_sha256=SHA)
    case = log.set_label(cid, "Eczema")
    assert case.clinician_label == "Eczema" and case.labelled_at
    for bad in ("../etc", "Acne/..", "", ".", "x" * 65, "Melanoma", "Acne\n", 5, "Acne "):
        with pytest.raises(LabelError):
            log.set_label(cid, bad)  # type: ignore[arg-type]
    assert log.get(cid).clinician_label == "Eczema"  # nothing written
    with pytest.raises(CaseNotFoundError, match="no case 999"):
        log.set_label(999, "Acne")
    assert log.set_label(cid, None).clinician_label is None
    free = CaseLog(tmp_path / "d.sqlite")  # no model labels given: any safe label
    cid = free.record(result("Acne"), photo=jpeg(0), model_name="m", model_sha256=SHA)
    assert free.set_label(cid, "Melanoma").clinician_label == "Melanoma"
    with pytest.raises(LabelError):
        free.set_label(cid, "../../x")


def test_pagination_newest_first(tmp_path: Path) -> None:
    log = CaseLog(tmp_path / "c.sqlite")
    ids = [log.record(result("Acne"), photo=jpeg(i), model_name="m", model_sha256=SHA) for i in range(7)]
    log.set_label(ids[2], "Acne")
    seen, before = [], None
    while True:
        page = log.list_cases(limit=3, before=before)
        assert page.total == 7
        seen += [c.case_id for c in page.cases]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == ids[::-1]
    assert [c.case_id for c in log.list_cases(labelled=True).cases] == [ids[2]]
    assert log.list_cases(labelled=False).total == 6
    with pytest.raises(CaseLogError):
        log.list_cases(limit=0)


def test_photos_kept_private_and_once(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    log = CaseLog(tmp_path / "c.sqlite", photo_dir=photos)
    data = jpeg(3)
    a = log.record(result("Acne"), photo=data, model_name="m", model_sha256=SHA)
    b = log.record(result("Acne"), photo=data, model_name="m", model_sha256=SHA)
    files = list(photos.iterdir())
    assert len(files) == 1 and files[0].read_bytes() == data and files[0].suffix == ".jpg"
    assert log.get(a).photo == log.get(b).photo == files[0].name
    if os.name == "posix":
        assert photos.stat().st_mode & 0o777 == 0o700
        assert files[0].stat().st_mode & 0o777 == 0o600
        open_dir = tmp_path / "open"
        open_dir.mkdir(mode=0o755)
        open_dir.chmod(0o755)
        with pytest.raises(CaseLogError, match="chmod 700"):
            CaseLog(tmp_path / "d.sqlite", photo_dir=open_dir)


def test_photo_suffix_from_content() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    assert photo_suffix(buf.getvalue()) == ".png"
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "WEBP")
    assert photo_suffix(buf.getvalue()) == ".webp"
    assert photo_suffix(jpeg(0)) == ".jpg"


def test_retention_deletes_old_cases_and_their_photos(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    now = time.time()
    log = CaseLog(tmp_path / "c.sqlite", photo_dir=photos)
    old = log.record(result("Acne"), photo=jpeg(1), model_name="m", model_sha256=SHA, now=now - 10 * 86400)
    shared_photo = jpeg(2)
    old_shared = log.record(result("Acne"), photo=shared_photo, model_name="m", model_sha256=SHA, now=now - 9 * 86400)
    new = log.record(result("Acne"), photo=shared_photo, model_name="m", model_sha256=SHA, now=now - 86400)
    (photos / "orphan.jpg").write_bytes(b"x")  # a crash between photo and row leaves this
    log.close()
    log = CaseLog(tmp_path / "c.sqlite", photo_dir=photos, retain_days=7)  # opening applies retention
    assert log.purge(now=now) == 0
    assert [c.case_id for c in log.all_cases()] == [new]
    for gone in (old, old_shared):
        with pytest.raises(CaseNotFoundError):
            log.get(gone)
    names = sorted(p.name for p in photos.iterdir())
    assert names == sorted([log.get(new).photo, "orphan.jpg"])  # orphan is recent: kept for now
    os.utime(photos / "orphan.jpg", (now - ORPHAN_GRACE_S - 1,) * 2)
    log.purge(now=now)
    assert [p.name for p in photos.iterdir()] == [log.get(new).photo]
    # Ids are never reused after a deletion.
    assert log.record(result("Acne"), photo=jpeg(9), model_name="m", model_sha256=SHA, now=now) > new
    with pytest.raises(CaseLogError, match="positive"):
        CaseLog(tmp_path / "c.sqlite", retain_days=0)


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CaseLogError, match="not a usable case log"):
        CaseLog(bad)
    with pytest.raises(CaseLogError, match="no such case log"):
        open_existing(tmp_path / "missing.sqlite")


def test_report_reuses_the_evaluation_metrics(tmp_path: Path) -> None:
    log = CaseLog(tmp_path / "c.sqlite", labels=LABELS)
    rng = np.random.default_rng(0)
    truth, pred, acc = [], [], []
    for i in range(40):
        p, t = int(rng.integers(0, 6)), int(rng.integers(0, 6)) if i % 3 == 0 else None
        t = p if t is None else t
        unc = bool(i % 7 == 0)
        cid = log.record(result(None if unc else LABELS[p], 0.8, unc, top=LABELS[p]), photo=jpeg(i),
                         model_name="m", model_sha256=SHA, model_labels=LABELS)
        if i % 10 != 9:  # some cases never get a label
            log.set_label(cid, LABELS[t])
            truth.append(t)
            pred.append(p)
            acc.append(not unc)
    rep = report(log, n_resamples=500)
    assert rep["cases"] == 40 and rep["labelled"] == 36
    got = rep["models"][0]["agreement"]
    want = evaluate(np.array(truth), np.array(pred), np.array(acc), LABELS, n_resamples=500)
    assert got == want
    assert got["accuracy"] == pytest.approx(np.mean(np.array(truth) == np.array(pred)))
    text = format_report(rep)
    assert "agreement" in text and "not a clinical validation" in text
    empty = report(CaseLog(tmp_path / "e.sqlite"))
    assert empty["cases"] == 0 and "0 in" in format_report(empty)


def test_export_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    log = CaseLog(tmp_path / "c.sqlite")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep me")
    with pytest.raises(CaseLogError, match="not empty"):
        export(log, tmp_path / "out")
    assert (tmp_path / "out" / "x").read_text() == "keep me"


def test_export_is_read_by_skinedge_evaluate(tmp_path: Path, skin6_dir: Path) -> None:
    """Real photos through the bundled model into the log; labels set; the export's folders read by
    ``skinedge evaluate``: its accuracy equals the report's agreement (same model, same photos)."""
    from click.testing import CliRunner

    from skinedge.classifier import Classifier
    from skinedge.cli import main

    photos = [p for label in ("Acne", "Vitiligo", "Eczema") for p in sorted((skin6_dir / "test" / label).iterdir())[:3]]
    log = CaseLog(tmp_path / "c.sqlite", photo_dir=tmp_path / "photos")
    with Classifier(num_threads=1) as clf:
        log.labels = clf.labels
        for i, p in enumerate(photos):
            data = p.read_bytes()
            r = clf.classify(data).to_dict()
            cid = log.record(r, photo=data, model_name=clf.metadata.name or "bundled", model_sha256=clf.model_sha256,
                             model_labels=clf.labels)
            if i != 0:  # one case left unlabelled: in the CSV, not in the folders
                log.set_label(cid, p.parent.name)
    summary = export(log, tmp_path / "out")
    assert summary.cases == 9 and summary.photos == {"Acne": 2, "Vitiligo": 3, "Eczema": 3}
    rows = list(csv.DictReader((tmp_path / "out" / "cases.csv").open()))
    assert [int(r["case_id"]) for r in rows] == list(range(1, 10)) and rows[0]["photo"] == ""
    for r in rows[1:]:
        assert (tmp_path / "out" / r["photo"]).read_bytes() == (tmp_path / "photos" / (
            r["photo_sha256"] + Path(r["photo"]).suffix)).read_bytes()
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "out"), "--json", "--threads", "1",
                                    "--resamples", "200"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout if hasattr(res, "stdout") else res.output)
    rep = report(log, n_resamples=200)["models"][0]["agreement"]
    assert ev["n"] == rep["n"] == 8
    assert ev["accuracy"] == pytest.approx(rep["accuracy"])
