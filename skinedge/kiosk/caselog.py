"""The case log: every classification the kiosk made, with the clinician's own label beside it.

One SQLite file (WAL journal, ``synchronous=FULL``: a case whose ``record`` returned survives a crash or a
power cut). A case holds the time, the model (name and SHA-256), the photo's SHA-256, the result as the API
returned it (with its ``reason`` when the model gave no answer), and, once set, the clinician's label.
Photos are kept only when a folder is given (:class:`CaseLog` ``photo_dir``): each is written once under its
SHA-256 (mode 0600, in a 0700 folder, through a temporary file, fsync and rename), before its case row.

``export`` writes ``cases.csv`` and one folder per clinician label, the layout ``skinedge evaluate`` reads;
``report`` scores the model against the clinician's labels with :mod:`skinedge.evaluation` (the same metrics
and bootstrap as ``skinedge evaluate``). Case ids are never reused (``AUTOINCREMENT``), so a label sent for an
old id can never land on a newer case after retention deleted the old one.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from skinedge.digest import sha256_hex
from skinedge.kiosk import KioskError
from skinedge.kiosk.durable import write_atomic

SCHEMA_VERSION = 1
#: Largest page ``list_cases`` returns.
MAX_PAGE = 500
#: A clinician label becomes a folder name in exports: letters, digits, space, ``_ . + -``; at most 64.
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}")
#: Retention runs at most this often while recording.
PURGE_EVERY_S = 3600.0
#: Photo files nobody references are removed only after this long (a case may be about to reference them).
ORPHAN_GRACE_S = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    time TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    photo_sha256 TEXT NOT NULL,
    label TEXT,
    top_label TEXT,
    score REAL,
    uncertain INTEGER NOT NULL,
    reason TEXT,
    result TEXT NOT NULL,
    photo TEXT,
    clinician_label TEXT,
    labelled_at TEXT
);
CREATE INDEX IF NOT EXISTS cases_created ON cases(created);
CREATE TABLE IF NOT EXISTS models (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = ("id", "time", "model_name", "model_sha256", "photo_sha256", "label", "top_label", "score", "uncertain",
            "reason", "result", "photo", "clinician_label", "labelled_at")
_PHOTO_SUFFIXES = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
                   (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))


class CaseLogError(KioskError):
    """The case log cannot be opened or written, or was asked something it cannot do."""


class CaseNotFoundError(CaseLogError):
    """No case has that id (never recorded, or deleted by retention)."""


class LabelError(CaseLogError):
    """A clinician label that is not allowed (not one of the model's labels, or unsafe as a folder name)."""


@dataclass(frozen=True)
class Case:
    """One recorded classification."""

    case_id: int
    time: str
    model_name: str
    model_sha256: str
    photo_sha256: str
    label: str | None
    top_label: str | None
    score: float | None
    uncertain: bool
    reason: str | None
    result: dict[str, Any]
    photo: str | None
    clinician_label: str | None
    labelled_at: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``GET /api/cases``); ``photo`` says only whether the photo was kept."""
        return {"case_id": self.case_id, "time": self.time, "model_name": self.model_name,
                "model_sha256": self.model_sha256, "photo_sha256": self.photo_sha256, "label": self.label,
                "top_label": self.top_label, "score": self.score, "uncertain": self.uncertain,
                "reason": self.reason, "result": self.result, "photo_kept": self.photo is not None,
                "clinician_label": self.clinician_label, "labelled_at": self.labelled_at}


@dataclass(frozen=True)
class CasePage:
    """A page of cases, newest first; ``next_before`` is the ``before`` of the next page (None: last page)."""

    cases: tuple[Case, ...]
    total: int
    next_before: int | None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def photo_suffix(data: bytes) -> str:
    """A file suffix for photo bytes, from their signature (``.jpg`` when unknown: evaluate sniffs content)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((s for magic, s in _PHOTO_SUFFIXES if data.startswith(magic)), ".jpg")


def write_private_file(folder: Path, name: str, data: bytes) -> Path:
    """Write ``folder/name`` atomically (temporary file, fsync, rename, fsync of the folder), mode 0600."""
    return write_atomic(folder / name, data)


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (mode 0700) or check an existing one is a folder only its owner can enter."""
    p = Path(path)
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = p.stat()
    except OSError as exc:
        raise CaseLogError(str(p), f"cannot create the photo folder ({exc.strerror or exc})") from None
    if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
        raise CaseLogError(str(p), f"the photo folder is open to other users (mode {stat.S_IMODE(st.st_mode):o}): "
                                   f"run chmod 700 {p}")
    return p


class CaseLog:
    """The case log in SQLite file ``path`` (created if missing). Safe to share between threads.

    Args:
        path: the database file.
        photo_dir: keep each photo in this folder (None: photos are not kept, only their SHA-256).
        retain_days: delete cases (and their photos) older than this many days (None: keep everything).
        labels: the labels a clinician may set (the model's labels); None allows any safe label.
    """

    def __init__(self, path: str | os.PathLike, *, photo_dir: str | os.PathLike | None = None,
                 retain_days: float | None = None, labels: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.photo_dir = private_dir(photo_dir) if photo_dir is not None else None
        if retain_days is not None and not retain_days > 0:
            raise CaseLogError(str(self.path), f"retain_days must be positive, got {retain_days}")
        self.retain_days = retain_days
        self.labels = tuple(labels) if labels is not None else None
        self._lock = threading.Lock()
        self._last_purge = 0.0
        try:
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CaseLogError(str(self.path), f"the case log has schema {version}, newer than this skinedge's "
                                                   f"{SCHEMA_VERSION}: upgrade skinedge")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if self.photo_dir is not None:  # so that an export finds the photos without being told
                self._db.execute("INSERT OR REPLACE INTO settings VALUES ('photo_dir', ?)",
                                 (str(self.photo_dir.absolute()),))
        except sqlite3.DatabaseError as exc:
            raise CaseLogError(str(self.path), f"not a usable case log ({exc})") from None
        if self.retain_days is not None:
            self.purge()

    # -- writing --------------------------------------------------------------------------------------

    def keep_photo(self, photo: bytes) -> str | None:
        """Write ``photo`` into ``photo_dir`` (once per content: the file is named by its SHA-256) and return the
        file name, on disk (fsynced); None without ``photo_dir``. The server calls this while the model runs,
        then passes the name to :meth:`record`."""
        if self.photo_dir is None:
            return None
        kept = sha256_hex(photo) + photo_suffix(photo)
        if not (self.photo_dir / kept).exists():
            write_private_file(self.photo_dir, kept, photo)
        return kept

    def discard_photo(self, kept: str) -> None:
        """Delete a photo :meth:`keep_photo` wrote for a request that recorded no case (its photo could not be
        classified), unless a case references the same photo."""
        if self.photo_dir is None or "/" in kept or kept.startswith("."):
            return
        with self._lock:
            used = self._db.execute("SELECT 1 FROM cases WHERE photo = ? LIMIT 1", (kept,)).fetchone()
        if used is None:
            (self.photo_dir / kept).unlink(missing_ok=True)

    def record(self, result: dict[str, Any], *, photo: bytes, model_name: str, model_sha256: str,
               model_labels: Sequence[str] | None = None, kept: str | None = None, now: float | None = None) -> int:
        """Record one classification; returns its case id once it is on disk (committed, fsynced).

        ``result``: the dict the API answers (``ClassificationResult.to_dict()`` and extras); ``photo``: the
        bytes classified (hashed; kept only with ``photo_dir``); ``kept``: the name :meth:`keep_photo` returned,
        when the photo was written already.
        """
        now = time.time() if now is None else now
        digest = sha256_hex(photo)
        if kept is None:
            kept = self.keep_photo(photo)
        top_k = result.get("top_k") or []
        top = result.get("label") or (top_k[0].get("label") if top_k else None)
        score = result.get("score", top_k[0].get("score") if top_k else None)
        row = (now, _iso(now), model_name, model_sha256, digest, result.get("label"), top,
               None if score is None else float(score), int(bool(result.get("uncertain"))), result.get("reason"),
               json.dumps(result, separators=(",", ":"), default=str), kept)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if model_labels is not None:
                    self._db.execute("INSERT OR IGNORE INTO models VALUES (?, ?, ?)",
                                     (model_sha256, model_name, json.dumps(list(model_labels))))
                cur = self._db.execute(
                    "INSERT INTO cases (created, time, model_name, model_sha256, photo_sha256, label, top_label, "
                    "score, uncertain, reason, result, photo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise CaseLogError(str(self.path), f"cannot record the case ({exc})") from None
            case_id = int(cur.lastrowid)
        if self.retain_days is not None and now - self._last_purge > PURGE_EVERY_S:
            self.purge(now=now)
        return case_id

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def check_label(self, label: str) -> str:
        """``label`` if a clinician may set it, else :class:`LabelError` saying why."""
        if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label) or label.endswith((".", " ")):
            raise LabelError(str(self.path), f"label {label!r} is not allowed: 1-64 letters, digits, spaces or "
                                             "_ . + - (it becomes a folder name in exports)")
        if self.labels is not None and label not in self.labels:
            raise LabelError(str(self.path), f"label {label!r} is not one of the model's labels "
                                             f"({', '.join(self.labels)})")
        return label

    def set_label(self, case_id: int, label: str | None, *, now: float | None = None) -> Case:
        """Set (or with None, clear) the clinician's label of case ``case_id``; returns the updated case.

        Raises:
            LabelError: the label is not allowed. CaseNotFoundError: no such case.
        """
        if label is not None:
            self.check_label(label)
        when = None if label is None else _iso(time.time() if now is None else now)
        with self._lock:
            try:
                cur = self._db.execute("UPDATE cases SET clinician_label = ?, labelled_at = ? WHERE id = ?",
                                       (label, when, int(case_id)))
            except sqlite3.Error as exc:
                raise CaseLogError(str(self.path), f"cannot set the label ({exc})") from None
            if cur.rowcount == 0:
                raise CaseNotFoundError(str(self.path), f"no case {case_id}")
        return self.get(case_id)

    def purge(self, *, now: float | None = None) -> int:
        """Apply ``retain_days``: delete older cases and the photos no case references any more.
        Returns how many cases were deleted (0 without ``retain_days``)."""
        now = time.time() if now is None else now
        self._last_purge = now
        deleted, released = 0, set()
        with self._lock:
            if self.retain_days is not None:
                cutoff = now - self.retain_days * 86400
                try:
                    released = {r[0] for r in self._db.execute(
                        "SELECT DISTINCT photo FROM cases WHERE created < ? AND photo IS NOT NULL", (cutoff,))}
                    deleted = self._db.execute("DELETE FROM cases WHERE created < ?", (cutoff,)).rowcount
                except sqlite3.Error as exc:
                    raise CaseLogError(str(self.path), f"cannot delete old cases ({exc})") from None
            referenced = {r[0] for r in self._db.execute("SELECT DISTINCT photo FROM cases WHERE photo IS NOT NULL")}
        if self.photo_dir is not None:
            for f in self.photo_dir.iterdir():
                if f.name in referenced:
                    continue
                try:
                    # Photos of deleted cases go now; other files nobody references (a crash between the photo
                    # and its row, a temporary file) after a grace period: a case may be about to reference them.
                    if f.name in released or now - f.stat().st_mtime > ORPHAN_GRACE_S:
                        f.unlink()
                except FileNotFoundError:
                    pass
        return deleted

    # -- reading --------------------------------------------------------------------------------------

    def get(self, case_id: int) -> Case:
        """The case with this id. Raises :class:`CaseNotFoundError`."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM cases WHERE id = ?", (int(case_id),)).fetchone()
        if row is None:
            raise CaseNotFoundError(str(self.path), f"no case {case_id}")
        return _case(row)

    def list_cases(self, *, limit: int = 50, before: int | None = None, labelled: bool | None = None) -> CasePage:
        """Cases newest first, at most ``limit`` (1..:data:`MAX_PAGE`), with ids below ``before`` when given;
        ``labelled`` True/False keeps only cases with/without a clinician label."""
        if not 1 <= limit <= MAX_PAGE:
            raise CaseLogError(str(self.path), f"limit must be 1..{MAX_PAGE}, got {limit}")
        where = [] if labelled is None else [f"clinician_label IS {'NOT ' if labelled else ''}NULL"]
        count_sql = "SELECT COUNT(*) FROM cases" + (" WHERE " + " AND ".join(where) if where else "")
        args: list[int] = []
        if before is not None:
            where.append("id < ?")
            args.append(int(before))
        page_sql = (f"SELECT {', '.join(_COLUMNS)} FROM cases" + (" WHERE " + " AND ".join(where) if where else "")
                    + " ORDER BY id DESC LIMIT ?")
        with self._lock:
            total = self._db.execute(count_sql).fetchone()[0]
            rows = self._db.execute(page_sql, [*args, limit + 1]).fetchall()
        more = len(rows) > limit
        cases = tuple(_case(r) for r in rows[:limit])
        return CasePage(cases=cases, total=int(total), next_before=cases[-1].case_id if more else None)

    def all_cases(self) -> list[Case]:
        """Every case, oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM cases ORDER BY id").fetchall()
        return [_case(r) for r in rows]

    def model_labels(self) -> dict[str, tuple[str, ...]]:
        """The labels of each model that recorded cases, by SHA-256 (as recorded)."""
        with self._lock:
            rows = self._db.execute("SELECT sha256, labels FROM models").fetchall()
        return {sha: tuple(json.loads(labels)) for sha, labels in rows}

    def recorded_photo_dir(self) -> Path | None:
        """The photo folder the server last kept photos in (None if it never kept any)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = 'photo_dir'").fetchone()
        return Path(row[0]) if row else None

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``"ok"`` when the file is sound)."""
        with self._lock:
            return ", ".join(r[0] for r in self._db.execute("PRAGMA integrity_check"))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CaseLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _case(row: tuple) -> Case:
    d = dict(zip(_COLUMNS, row))
    return Case(case_id=d["id"], time=d["time"], model_name=d["model_name"], model_sha256=d["model_sha256"],
                photo_sha256=d["photo_sha256"], label=d["label"], top_label=d["top_label"], score=d["score"],
                uncertain=bool(d["uncertain"]), reason=d["reason"], result=json.loads(d["result"]),
                photo=d["photo"], clinician_label=d["clinician_label"], labelled_at=d["labelled_at"])


def open_existing(path: str | os.PathLike) -> CaseLog:
    """Open a case log that must already exist (for export and report: a typo must not make an empty one)."""
    p = Path(path)
    if not p.is_file():
        raise CaseLogError(str(p), "no such case log")
    return CaseLog(p)


# -- export and report -------------------------------------------------------------------------------

CSV_FIELDS = ("case_id", "time", "model_name", "model_sha256", "photo_sha256", "label", "top_label", "score",
              "uncertain", "reason", "clinician_label", "labelled_at", "photo")


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export` wrote."""

    out: Path
    cases: int
    photos: dict[str, int]  # clinician label -> photos copied into OUT/<label>/


def export(log: CaseLog, out: str | os.PathLike, *, photo_dir: str | os.PathLike | None = None) -> ExportSummary:
    """Write ``out/cases.csv`` (every case) and, for labelled cases whose photo was kept, ``out/<label>/``
    (one folder per clinician label: what ``skinedge evaluate out`` and the training tools read).

    ``out`` must not exist or be empty (nothing is overwritten). ``photo_dir``: where the photos are (default:
    the log's own ``photo_dir``, else the folder the server recorded). Folders are created 0700 and files 0600:
    the photos are patients'.
    """
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CaseLogError(str(target), "the export folder exists and is not empty: choose a new folder")
    photos = Path(photo_dir) if photo_dir is not None else (log.photo_dir or log.recorded_photo_dir())
    private_dir(target)
    cases = log.all_cases()
    counts: dict[str, int] = {}
    rows = []
    for c in cases:
        rel = ""
        if c.clinician_label and c.photo and photos is not None and (photos / c.photo).is_file():
            private_dir(target / log.check_label(c.clinician_label))  # checked again: it becomes a path
            rel = f"{c.clinician_label}/case-{c.case_id:06d}{Path(c.photo).suffix}"
            shutil.copyfile(photos / c.photo, target / rel)
            os.chmod(target / rel, 0o600)
            counts[c.clinician_label] = counts.get(c.clinician_label, 0) + 1
        rows.append({"case_id": c.case_id, "time": c.time, "model_name": c.model_name,
                     "model_sha256": c.model_sha256, "photo_sha256": c.photo_sha256, "label": c.label or "",
                     "top_label": c.top_label or "", "score": "" if c.score is None else f"{c.score:.6f}",
                     "uncertain": int(c.uncertain), "reason": c.reason or "",
                     "clinician_label": c.clinician_label or "", "labelled_at": c.labelled_at or "", "photo": rel})
    fd = os.open(target / "cases.csv", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return ExportSummary(out=target, cases=len(cases), photos=counts)


def report(log: CaseLog, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Model-against-clinician agreement, per model: the figures of ``skinedge evaluate``
    (:func:`skinedge.evaluation.evaluate`: accuracy and macro-F1 with bootstrap CIs, per-class scores, confusion,
    coverage at the abstain threshold), with the clinician's label as the truth and the model's top label as the
    prediction. Cases without a clinician label are counted, not scored.
    """
    from skinedge.evaluation import evaluate

    cases = log.all_cases()
    known = log.model_labels()
    models: dict[str, Any] = {}
    for sha in dict.fromkeys(c.model_sha256 for c in cases):
        mine = [c for c in cases if c.model_sha256 == sha]
        labelled = [c for c in mine if c.clinician_label and c.top_label]
        entry: dict[str, Any] = {"model_name": mine[-1].model_name, "model_sha256": sha, "cases": len(mine),
                                 "labelled": len(labelled)}
        if labelled:
            labels = list(known.get(sha, ()))
            for c in labelled:  # labels the model file did not list (another label set): appended
                for name in (c.clinician_label, c.top_label):
                    if name not in labels:
                        labels.append(name)
            index = {name: i for i, name in enumerate(labels)}
            y_true = np.array([index[c.clinician_label] for c in labelled])
            y_pred = np.array([index[c.top_label] for c in labelled])
            accepted = np.array([not c.uncertain for c in labelled])
            entry["agreement"] = evaluate(y_true, y_pred, accepted, labels, n_resamples=n_resamples, seed=seed)
        models[sha] = entry
    return {"case_log": str(log.path), "cases": len(cases),
            "labelled": sum(m["labelled"] for m in models.values()), "models": list(models.values())}


def format_report(rep: dict[str, Any]) -> str:
    """The report as the lines ``skinedge cases report`` prints."""
    lines = [f"cases      {rep['cases']} in {rep['case_log']}, {rep['labelled']} with a clinician label"]
    for m in rep["models"]:
        lines.append(f"model      {m['model_name']} (SHA-256 {m['model_sha256'][:12]}...): "
                     f"{m['cases']} cases, {m['labelled']} labelled")
        a = m.get("agreement")
        if a is None:
            lines.append("           no clinician labels yet: nothing to score")
            continue
        lo, hi = a["accuracy_ci95"]
        flo, fhi = a["macro_f1_ci95"]
        b = a["bootstrap"]
        lines.append(f"agreement  {a['accuracy']:.3f}  [95% CI {lo:.3f}, {hi:.3f}]  (model's top label = clinician's)")
        lines.append(f"macro-F1   {a['macro_f1']:.3f}  [95% CI {flo:.3f}, {fhi:.3f}]  "
                     f"(percentile bootstrap, {b['resamples']} resamples, seed {b['seed']})")
        ab = a["abstain"]
        acc = "n/a" if ab["accuracy"] is None else f"{ab['accuracy']:.3f}"
        lines.append(f"answered   {ab['answered']}/{a['n']} (coverage {ab['coverage']:.3f}), agreement of those {acc}")
        for label, s in a["per_class"].items():
            lines.append(f"  {label:<16} precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
                         f"F1 {s['f1']:.3f}  n={s['support']}")
    lines.append("Scores from a research model compared with a clinician's labels; not a clinical validation.")
    return "\n".join(lines)
