"""The board's model store: signed models, self-tested on this board, switched atomically, with rollback.

Layout of the store folder (``SKINEDGE_MODEL_STORE``, else ``$XDG_DATA_HOME/skinedge/models``, else
``~/.local/share/skinedge/models``)::

    trusted.pub                  the Ed25519 public key models must be signed with (``skinedge models trust``)
    state.json                   {"active": sha256, "previous": sha256, "models": {sha256: {...}}}
    models/<sha256>.tflite       installed models (immutable), each with <sha256>.tflite.sha256 beside it

``install`` reads the file once and checks those very bytes: the signature (``FILE.sig``) against the trusted
key, the structure, metadata and checksums (:func:`skinedge.model_io.read_model`), then the model's recorded
self-test vectors through this board's interpreter (:mod:`skinedge.selftest`). Only then is the file given its
final name (temporary name, fsync, rename, fsync of the folder) and ``state.json`` replaced in one
``os.replace`` (also fsynced): a crash or power cut at any point leaves the old state or the new one, and
both name files that are completely on disk. The previous model stays for ``rollback``; older ones are
deleted. Loaders use :func:`active_model`, whose file is checked against its SHA-256 at every load.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skinedge.digest import sha256_hex
from skinedge.errors import SkinedgeError
from skinedge.kiosk import KioskError
from skinedge.kiosk.durable import fsync_dir, write_atomic
from skinedge.kiosk.signing import SignatureError, key_id, load_public_key, verify
from skinedge.kiosk.storedir import STATE, TRUSTED_KEY, default_store_dir, store_is_set_up


class ModelStoreError(KioskError):
    """The store cannot be used, or a model was refused (the reason says which check failed)."""


class SelfTestError(ModelStoreError):
    """A model computes something else on this board than on the build machine (or carries no test vectors)."""


def active_model(store: str | os.PathLike | None = None) -> Path | None:
    """The active model's file, or None when no store is set up or nothing is installed.

    This is what ``skinedge serve`` and ``predict`` load when no ``--model`` is given.
    """
    if not store_is_set_up(store):
        return None
    return ModelStore(Path(store) if store is not None else default_store_dir()).active_path()


@dataclass(frozen=True)
class StoredModel:
    """A model in the store."""

    sha256: str
    path: Path
    name: str
    installed: str
    source: str
    key_id: str
    active: bool
    previous: bool

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "path": str(self.path), "name": self.name, "installed": self.installed,
                "source": self.source, "key_id": self.key_id, "active": self.active, "previous": self.previous}




class ModelStore:
    """A model store folder (created on first use). See the module's docstring for its layout and guarantees."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()
        self.models_dir = self.root / "models"

    # -- set-up ---------------------------------------------------------------------------------------

    def trust(self, public_key_file: str | os.PathLike) -> str:
        """Make ``public_key_file`` (an Ed25519 PEM public key) the key models must be signed with.
        Returns its key id."""
        key = load_public_key(public_key_file)
        self._ensure()
        write_atomic(self.root / TRUSTED_KEY, Path(public_key_file).read_bytes(), 0o644)
        return key_id(key)

    def trusted_key(self) -> Any:
        path = self.root / TRUSTED_KEY
        if not path.is_file():
            raise ModelStoreError(str(self.root), "no trusted public key: run skinedge models trust PUBLIC_KEY first")
        return load_public_key(path)

    def _ensure(self) -> None:
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelStoreError(str(self.root), f"cannot create the model store ({exc.strerror or exc})") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (an advisory lock on the store; released by the kernel if the process dies)."""
        self._ensure()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no concurrent installs expected
            yield
            return
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- state ----------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The store's state (empty when nothing was installed)."""
        path = self.root / STATE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"active": None, "previous": None, "models": {}}
        except (OSError, ValueError) as exc:
            raise ModelStoreError(str(path), f"the store's state is unreadable ({exc})") from None
        if not isinstance(state, dict) or not isinstance(state.get("models"), dict):
            raise ModelStoreError(str(path), "the store's state is malformed")
        return state

    def _path(self, sha: str) -> Path:
        return self.models_dir / f"{sha}.tflite"

    def active_path(self) -> Path | None:
        """The active model's file (None when nothing is installed)."""
        sha = self.state().get("active")
        if not sha:
            return None
        path = self._path(sha)
        if not path.is_file():
            raise ModelStoreError(str(path), "the active model's file is missing from the store")
        return path

    def list(self) -> list[StoredModel]:
        """The installed models: the active one first, then the previous one."""
        state = self.state()
        out = []
        for sha in filter(None, (state.get("active"), state.get("previous"))):
            info = state["models"].get(sha, {})
            out.append(StoredModel(sha256=sha, path=self._path(sha), name=info.get("name", ""),
                                   installed=info.get("installed", ""), source=info.get("source", ""),
                                   key_id=info.get("key_id", ""), active=sha == state.get("active"),
                                   previous=sha == state.get("previous")))
        return out

    def _switch(self, active: str, previous: str | None, models: dict[str, Any]) -> None:
        keep = {k: v for k, v in models.items() if k in (active, previous)}
        state = {"active": active, "previous": previous, "models": keep}
        write_atomic(self.root / STATE, json.dumps(state, indent=1, sort_keys=True).encode(), 0o644)

    def _collect_garbage(self) -> None:
        """Delete files the state does not name (older models, leftovers of an interrupted install)."""
        state = self.state()
        keep = {p.name for sha in (state.get("active"), state.get("previous")) if sha
                for p in (self._path(sha), self._path(sha).with_name(self._path(sha).name + ".sha256"))}
        for f in self.models_dir.iterdir():
            if f.name not in keep:
                try:
                    f.unlink()
                except OSError:
                    pass
        fsync_dir(self.models_dir)

    # -- install and rollback -------------------------------------------------------------------------

    def install(self, file: str | os.PathLike, *, signature: str | os.PathLike | None = None,
                num_threads: int | None = None, backend: str | None = None) -> StoredModel:
        """Check ``file`` and make it the active model; the active one becomes the previous one.

        Checks, in order, on the bytes read once: the signature (``signature``, default ``FILE.sig``) against
        the trusted key; structure, metadata and checksums; the self-test vectors on this board.

        Raises:
            SignatureError: no, malformed or wrong signature. ModelError/MetadataError: a damaged model.
            SelfTestError: the board computes other outputs than recorded. ModelStoreError: the store itself.
        """
        src = Path(file)
        sig_path = Path(signature) if signature is not None else src.with_name(src.name + ".sig")
        try:
            data = src.read_bytes()
        except FileNotFoundError:
            raise ModelStoreError(str(src), "no such model file") from None
        except OSError as exc:
            raise ModelStoreError(str(src), f"cannot read the model ({exc.strerror or exc})") from None
        try:
            sig_text = sig_path.read_bytes()
        except FileNotFoundError:
            raise SignatureError(str(src), f"no signature file {sig_path.name} beside it: sign it on the build "
                                           "machine (skinedge-tools sign)") from None
        with self._locked():
            sig = verify(data, sig_text, self.trusted_key(), source=str(src))  # before parsing anything else
            sha = sha256_hex(data)
            state = self.state()
            if state.get("active") == sha:
                return self.list()[0]
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".tflite", dir=self.models_dir)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                name = self._check(tmp, str(src), num_threads=num_threads, backend=backend)
                final = self._path(sha)
                write_atomic(final.with_name(final.name + ".sha256"), f"{sha}  {final.name}\n".encode(), 0o644)
                os.replace(tmp, final)
                fsync_dir(self.models_dir)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            models = dict(state["models"])
            models[sha] = {"name": name, "source": src.name, "key_id": sig.key_id,
                           "installed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            previous = state.get("active")
            self._switch(sha, previous if previous != sha else state.get("previous"), models)
            self._collect_garbage()
        return self.list()[0]

    def _check(self, path: Path, source: str, *, num_threads: int | None, backend: str | None) -> str:
        """Structure, metadata and self-test of the file at ``path``; returns the model's name."""
        from skinedge.classifier import Classifier
        from skinedge.model_io import read_model
        from skinedge.selftest import VECTORS_NAME, run_selftest

        try:
            packed = read_model(path)
        except SkinedgeError as exc:  # name the file the user gave, not the store's temporary copy
            raise type(exc)(source, exc.reason) from None
        if packed.metadata is None:
            raise ModelStoreError(source, "the model has no skinedge metadata (labels, preprocessing, self-test)")
        if VECTORS_NAME not in packed.files:
            raise SelfTestError(source, "the model carries no self-test vectors: it cannot be checked on this board")
        try:
            with Classifier(path, num_threads=num_threads, backend=backend) as clf:
                checks = run_selftest(clf, clf.model_files)
        except SkinedgeError as exc:
            raise SelfTestError(source, f"the self-test could not run: {exc.reason}") from None
        failed = [c for c in checks if not c.passed]
        if not checks or failed:
            worst = max(failed, key=lambda c: c.max_step_diff) if failed else None
            detail = (f"{len(failed)}/{len(checks)} test vectors differ (worst: {worst.name}, "
                      f"{worst.max_step_diff:g} quantization steps, top-1 {worst.top1_expected} -> {worst.top1_got})"
                      if worst else "its test vector list is empty")
            raise SelfTestError(source, f"self-test failed on this board: {detail}")
        return packed.metadata.name or source

    def rollback(self) -> StoredModel:
        """Make the previous model active again (checked against its SHA-256 first); the active one becomes
        the previous one, so a second rollback undoes the first."""
        from skinedge.model_io import read_model

        with self._locked():
            state = self.state()
            prev = state.get("previous")
            if not prev:
                raise ModelStoreError(str(self.root), "no previous model to roll back to")
            read_model(self._path(prev))  # damaged since? refuse before switching
            self._switch(prev, state.get("active"), state["models"])
        return self.list()[0]
