"""``skinedge evaluate DIR``: its figures on real skin6 test photos, checked against scikit-learn and scipy
(computed here from this test's own classifications), and its handling of mapped, unknown and bad inputs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bundled import DEFAULT
from click.testing import CliRunner

from skinedge import Classifier
from skinedge.cli import main

ROOT = Path(__file__).resolve().parents[1]

# (source class in skin6/test, folder name in the evaluation folder, photos): a mapped folder, a folder
# whose name differs from its label only in case, and one that matches no label.
LAYOUT = (("Acne", "Acne", 9), ("Eczema", "Eczema", 7), ("SkinCancer", "melanoma", 8), ("Vitiligo", "vitiligo", 5),
          ("Psoriasis", "Rosacea", 3))


@pytest.fixture(scope="module")
def clf():
    with Classifier(num_threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, skin6_dir: Path) -> Path:
    """Symlinks to real test photos, one folder per class, plus a text file posing as a JPEG."""
    root = tmp_path_factory.mktemp("my_photos")
    for source, folder, n in LAYOUT:
        (root / folder).mkdir()
        for photo in sorted((skin6_dir / "test" / source).iterdir())[:n]:
            (root / folder / photo.name).symlink_to(photo)
    (root / "Acne" / "zz_not_a_photo.jpg").write_text("this is not a JPEG")
    return root


def _truth(photo: str, labels: tuple[str, ...]) -> int:
    folder = Path(photo).parent.name
    return labels.index({"melanoma": "SkinCancer", "vitiligo": "Vitiligo"}.get(folder, folder))


def test_figures_match_scikit_learn_on_real_photos(photo_dir: Path, clf: Classifier, tmp_path: Path) -> None:
    sk = pytest.importorskip("sklearn.metrics", reason="the check against scikit-learn needs scikit-learn")
    scipy_stats = pytest.importorskip("scipy.stats", reason="the bootstrap check needs scipy")
    table = tmp_path / "rows.csv"
    args = ["evaluate", str(photo_dir), "--map", "melanoma=SkinCancer", "--json", "--csv", str(table),
            "--seed", "7", "--resamples", "400", "--threads", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output  # one photo could not be read: reported, skipped, exit 1
    report = json.loads(result.stdout)
    errors = result.stderr.splitlines()
    assert [e for e in errors if e.startswith("error: ")] == [
        f"error: {photo_dir / 'Acne' / 'zz_not_a_photo.jpg'}: not a readable image in a supported format "
        "(JPEG, PNG, WEBP, BMP, GIF, TIFF)"]
    assert any(e.startswith(f"warning: {photo_dir / 'Rosacea'}: not named after one of the model's labels")
               for e in errors), errors
    assert report["unknown_folders"] == ["Rosacea"] and report["failed"] == 1 and report["photos"] == 30
    assert report["class_folders"] == {"Acne": "Acne", "Eczema": "Eczema", "melanoma": "SkinCancer",
                                       "vitiligo": "Vitiligo"}

    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30 and {r["file"] for r in rows} == {str(p) for p in photo_dir.rglob("*")
                                                             if p.is_file() and "Rosacea" not in p.parts}
    ok_rows = [r for r in rows if not r["error"]]
    # The reference: this test's own classification of each photo, scored by scikit-learn.
    labels = clf.labels
    results = [clf.classify(r["file"]) for r in ok_rows]
    y = np.asarray([_truth(r["file"], labels) for r in ok_rows])
    p = np.asarray([r.index for r in results])
    for row, res in zip(ok_rows, results):
        assert (row["predicted"], row["folder_class"]) == (res.label, labels[_truth(row["file"], labels)])
        assert float(row["score"]) == pytest.approx(res.score, abs=1e-6)
        assert row["uncertain"] == str(int(res.uncertain)) and row["correct"] == str(int(res.index == _truth(
            row["file"], labels)))

    assert report["n"] == len(y) == 29
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(y, p), abs=1e-12)
    # Macro-F1 over the classes with photos (the four folders), not the classes only predicted.
    with_photos = sorted(set(y))
    assert report["macro_f1_classes"] == [labels[c] for c in with_photos] and len(with_photos) == 4
    assert len(set(p) - set(y)) > 0  # some photos were given a class without a folder: the case this is about
    assert report["macro_f1"] == pytest.approx(
        sk.f1_score(y, p, labels=with_photos, average="macro", zero_division=0), abs=1e-12)
    assert report["macro_f1"] > sk.f1_score(y, p, average="macro", zero_division=0)
    present = sorted(set(y) | set(p))
    prec, rec, f1, support = sk.precision_recall_fscore_support(y, p, labels=present, zero_division=0)
    assert list(report["per_class"]) == [labels[c] for c in present]
    for i, c in enumerate(present):
        got = report["per_class"][labels[c]]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((prec[i], rec[i], f1[i]), abs=1e-12)
        assert got["support"] == support[i]
    assert report["confusion"]["labels"] == [labels[c] for c in present]
    assert report["confusion"]["matrix"] == sk.confusion_matrix(y, p, labels=present).tolist()

    # Bootstrap: scipy's percentile bootstrap with scikit-learn's metric, one resample at a time.
    for key, metric in (("macro_f1_ci95", lambda a, b: sk.f1_score(a, b, labels=with_photos, average="macro",
                                                                   zero_division=0)),
                        ("accuracy_ci95", sk.accuracy_score)):
        ref = scipy_stats.bootstrap((y, p), metric, paired=True, vectorized=False, n_resamples=400,
                                    method="percentile", random_state=7).confidence_interval
        assert report[key] == pytest.approx([ref.low, ref.high], abs=1e-12), key

    accepted = np.asarray([r.reason is None for r in results])  # what the classifier answered, as in-process
    assert report["abstain"]["answered"] == accepted.sum()
    assert report["abstain"]["coverage"] == pytest.approx(accepted.mean(), abs=1e-12)
    assert report["abstain"]["accuracy"] == pytest.approx((p == y)[accepted].mean(), abs=1e-12)


def test_whole_test_split_reproduces_the_recorded_figures(skin6_dir: Path, clf: Classifier) -> None:
    """The 449 test photos: the build's recorded metrics, per-photo predictions and answered count."""
    scipy_stats = pytest.importorskip("scipy.stats", reason="the bootstrap check needs scipy")
    rebuild = json.loads(DEFAULT.report.read_text())
    result = CliRunner().invoke(main, ["evaluate", str(skin6_dir / "test"), "--json", "--threads", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    recorded = clf.metadata.metrics
    assert report["n"] == recorded["test_n"] == 449 and report["failed"] == 0 and report["unknown_folders"] == []
    assert round(report["accuracy"], 4) == recorded["test_accuracy"]
    assert round(report["macro_f1"], 4) == recorded["test_macro_f1"]
    assert report["abstain"]["answered"] == rebuild["answered_int8_test"]
    # Photos are taken in the build's order (label order), so the seeded interval is the report's.
    y, p = np.asarray(rebuild["test_labels"]), np.asarray(rebuild["int8"]["test_pred"])
    cm = np.zeros((6, 6), int)
    np.add.at(cm, (y, p), 1)
    assert report["confusion"]["matrix"] == cm.tolist()
    ref = scipy_stats.bootstrap((y, p), lambda a, b, axis=-1: (a == b).mean(axis), paired=True, vectorized=True,
                                n_resamples=2000, method="percentile", random_state=0).confidence_interval
    assert report["accuracy_ci95"] == pytest.approx([ref.low, ref.high], abs=1e-12)


def test_text_report_and_csv_without_json(photo_dir: Path, tmp_path: Path, clf: Classifier) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(photo_dir), "--map", "melanoma=SkinCancer", "--threads", "2"])
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    assert out[0].startswith(f"photos     29 classified in 4 class folders of {photo_dir} (1 failed, 1 folder skipped)")
    assert out[1].startswith("accuracy   0.") and "[95% CI " in out[1]
    assert out[2].startswith("macro-F1   0.") and "2000 resamples, seed 0; over the 4 classes with photos)" in out[2]
    assert out[3].startswith("answered   ") and "(coverage 0." in out[3]
    assert "confusion matrix (rows: folder class, columns: predicted class)" in out
    assert out[-1].startswith("Scores from a research model, not a medical diagnosis")


def test_bad_options_and_folders_without_classes(photo_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad_label = runner.invoke(main, ["evaluate", str(photo_dir), "--map", "melanoma=Melanoma"])
    assert bad_label.exit_code == 2 and "'Melanoma' is not one of the model's labels" in bad_label.stderr
    no_equals = runner.invoke(main, ["evaluate", str(photo_dir), "--map", "melanoma"])
    assert no_equals.exit_code == 2 and "is not FOLDER=LABEL" in no_equals.stderr
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "a.txt").write_text("x")
    nothing = runner.invoke(main, ["evaluate", str(tmp_path)])
    assert nothing.exit_code == 1 and nothing.stdout == ""
    assert "no photos to evaluate" in nothing.stderr and "warning: " in nothing.stderr
    unwritable = runner.invoke(main, ["evaluate", str(photo_dir), "--csv", str(tmp_path / "missing" / "x.csv")])
    assert unwritable.exit_code == 2 and "cannot write" in unwritable.stderr


def test_evaluate_imports_no_scikit_learn_scipy_or_tensorflow(photo_dir: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    (small / "Acne").mkdir(parents=True)
    for photo in sorted((photo_dir / "Acne").glob("*.jpg"))[:2]:
        (small / "Acne" / photo.name).symlink_to(photo.resolve())
    code = ("import sys\nfrom skinedge.cli import main\n"
            f"try:\n    main(['evaluate', {str(small)!r}, '--json'])\nexcept SystemExit as e:\n    code = e.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy', 'tensorflow'))\n"
            "print('HEAVY', heavy, 'EXIT', code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY [] EXIT 0", proc.stdout + proc.stderr


# -- skinedge.evaluation against scikit-learn and scipy, on random labels -------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_metric_functions_equal_scikit_learn_and_scipy(seed: int) -> None:
    sk = pytest.importorskip("sklearn.metrics", reason="the check against scikit-learn needs scikit-learn")
    scipy_stats = pytest.importorskip("scipy.stats", reason="the bootstrap check needs scipy")
    from skinedge import evaluation as ev

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 120))
    y = rng.integers(0, 6, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, 6, n))
    if seed % 3 == 0:
        p[p == 2] = 4  # a class never predicted
    cm = ev.confusion_matrix(y, p, 6)
    assert cm.tolist() == sk.confusion_matrix(y, p, labels=range(6)).tolist()
    per = ev.ClassScores.of(cm)
    ref = sk.precision_recall_fscore_support(y, p, labels=range(6), zero_division=0)
    for got, want in zip((per.precision, per.recall, per.f1, per.support), ref):
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert ev.macro_f1_batch(y, p) == pytest.approx(sk.f1_score(y, p, average="macro", zero_division=0), abs=1e-12)
    truth_classes = sorted(set(y.tolist()))
    assert ev.macro_f1_batch(y, p, classes=truth_classes) == pytest.approx(
        sk.f1_score(y, p, labels=truth_classes, average="macro", zero_division=0), abs=1e-12)
    for name, fn in ev.METRICS.items():
        want = scipy_stats.bootstrap((y, p), fn, paired=True, vectorized=True, n_resamples=300, method="percentile",
                                     random_state=seed).confidence_interval
        got = ev.bootstrap_interval(fn, (y, p), n_resamples=300, seed=seed)
        assert got == pytest.approx((want.low, want.high), abs=1e-12), name
    accepted = rng.random(n) < 0.5
    coverage, accuracy = ev.coverage_and_accuracy(accepted, y == p)
    assert coverage == pytest.approx(accepted.mean())
    if accepted.any():
        assert accuracy == pytest.approx((y == p)[accepted].mean())
    else:
        assert np.isnan(accuracy)
