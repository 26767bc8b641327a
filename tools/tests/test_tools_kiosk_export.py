"""A kiosk's case-log export is a class-folder set the training tools read: ``skinedge cases export`` into
``D/Train`` and ``D/Test`` (Kaggle layout), then ``skinedge_tools.data.discover`` finds every labelled photo under
its clinician's label."""

from __future__ import annotations

from pathlib import Path

from skinedge_tools.data import DEFAULT_CLASSES, discover

from skinedge.kiosk.caselog import CaseLog, export


def _log(path: Path, photos: list[Path], kept: Path) -> CaseLog:
    log = CaseLog(path, photo_dir=kept, labels=DEFAULT_CLASSES)
    for p in photos:
        result = {"label": "Acne", "score": 0.9, "uncertain": False, "top_k": [{"label": "Acne", "score": 0.9}]}
        case = log.record(result, photo=p.read_bytes(), model_name="m", model_sha256="0" * 64)
        log.set_label(case, p.parent.name)  # the clinician's label: the photo's true class here
    return log


def test_an_export_is_a_training_set(tmp_path: Path, skin6_dir: Path) -> None:
    by_class = {c: sorted((skin6_dir / "test" / c).glob("*.jpg")) for c in DEFAULT_CLASSES}
    train = [p for c in DEFAULT_CLASSES for p in by_class[c][:4]]
    test = [p for c in DEFAULT_CLASSES for p in by_class[c][4:6]]
    root = tmp_path / "clinic"
    for split, photos in (("Train", train), ("Test", test)):
        with _log(tmp_path / f"{split}.sqlite", photos, tmp_path / f"kept-{split}") as log:
            summary = export(log, root / split)
        assert sum(summary.photos.values()) == len(photos)
    splits = discover(root, val_fraction=0.25)
    assert len(splits["train"]) + len(splits["val"]) == len(train) and len(splits["test"]) == len(test)
    for split in splits.values():
        for rel, label in zip(split.paths, split.labels):
            assert Path(rel).parent.name == DEFAULT_CLASSES[label]  # each photo under its clinician's label
