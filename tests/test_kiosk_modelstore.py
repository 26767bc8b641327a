"""skinedge.kiosk.modelstore and signing: real Ed25519 keys, the real bundled models, real SIGKILLs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import kiosk_soak
import pytest

pytest.importorskip("cryptography", reason="the kiosk extra (cryptography) is not installed")

sign = pytest.importorskip("skinedge_tools.sign", reason="signing is the build machine's: pip install -e ./tools")
keygen, sign_file = sign.keygen, sign.sign_file

from skinedge.classifier import Classifier  # noqa: E402
from skinedge.errors import MetadataError, ModelError  # noqa: E402
from skinedge.kiosk.modelstore import ModelStore, ModelStoreError, SelfTestError, active_model  # noqa: E402
from skinedge.kiosk.signing import SignatureError, parse_signature  # noqa: E402
from skinedge.metadata import pack, unpack  # noqa: E402
from skinedge.model_io import bundled_model_path  # noqa: E402
from skinedge.selftest import VECTORS_NAME  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    good, good_pub, _ = keygen(d / "build.key")
    other, other_pub, _ = keygen(d / "other.key")
    return {"key": good, "pub": good_pub, "other": other, "other_pub": other_pub}


def signed_copy(src: Path, dst: Path, key: Path) -> Path:
    shutil.copyfile(src, dst)
    sign_file(dst, key)
    return dst


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"old": signed_copy(bundled_model_path("efficientnet-lite0"), d / "lite0.tflite", keys["key"]),
            "new": signed_copy(bundled_model_path("mobilenetv2"), d / "mnv2.tflite", keys["key"])}


@pytest.fixture()
def store(tmp_path: Path, keys: dict[str, Path], models: dict[str, Path]) -> ModelStore:
    s = ModelStore(tmp_path / "store")
    s.trust(keys["pub"])
    s.install(models["old"], num_threads=1)
    return s


def files_in(store: ModelStore) -> set[str]:
    return {p.name for p in store.models_dir.iterdir()}


def test_install_switch_and_rollback(store: ModelStore, models: dict[str, Path]) -> None:
    old_sha = store.list()[0].sha256
    assert store.active_path().read_bytes() == models["old"].read_bytes()
    assert active_model(store.root) == store.active_path()
    new = store.install(models["new"], num_threads=1)
    assert new.active and new.name and new.key_id and new.source == "mnv2.tflite"
    listing = store.list()
    assert [m.active for m in listing] == [True, False] and listing[1].sha256 == old_sha and listing[1].previous
    assert files_in(store) == {f"{m.sha256}.tflite" for m in listing} | {f"{m.sha256}.tflite.sha256" for m in listing}
    with Classifier(active_model(store.root), num_threads=1) as clf:
        assert clf.model_sha256 == new.sha256
    assert store.rollback().sha256 == old_sha
    assert store.rollback().sha256 == new.sha256  # a second rollback undoes the first
    assert store.install(models["new"]).sha256 == new.sha256  # already active: nothing changes
    assert store.list()[1].sha256 == old_sha


def test_no_previous_no_rollback(tmp_path: Path, keys: dict[str, Path], models: dict[str, Path]) -> None:
    s = ModelStore(tmp_path / "s")
    assert active_model(s.root) is None and s.list() == []
    with pytest.raises(ModelStoreError, match="no trusted public key"):
        s.install(models["old"])
    s.trust(keys["pub"])
    s.install(models["old"], num_threads=1)
    with pytest.raises(ModelStoreError, match="no previous model"):
        s.rollback()


def _tampered(models, tmp, keys):
    p = signed_copy(models["new"], tmp / "t.tflite", keys["key"])
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit of a weight
    p.write_bytes(bytes(data))
    return p


def _wrong_key(models, tmp, keys):
    return signed_copy(models["new"], tmp / "w.tflite", keys["other"])


def _other_files_signature(models, tmp, keys):
    p = tmp / "x.tflite"
    shutil.copyfile(models["new"], p)
    shutil.copyfile(str(models["old"]) + ".sig", str(p) + ".sig")
    return p


def _no_signature(models, tmp, keys):
    p = tmp / "n.tflite"
    shutil.copyfile(models["new"], p)
    return p


def _garbled_signature(models, tmp, keys):
    p = signed_copy(models["new"], tmp / "g.tflite", keys["key"])
    Path(str(p) + ".sig").write_text("skinedge-signature-v1\nkey abc\nsignature !!!\n")
    return p


def _signed_truncated(models, tmp, keys):
    p = tmp / "cut.tflite"
    p.write_bytes(models["new"].read_bytes()[:200_000])
    sign_file(p, keys["key"])
    return p


def _signed_drifted_selftest(models, tmp, keys):
    """A valid, correctly signed model whose recorded outputs this board does not reproduce."""
    packed = unpack(models["new"].read_bytes(), "new")
    spec = json.loads(packed.files[VECTORS_NAME])
    for v in spec["vectors"]:
        v["raw_output"][0] += 5 * spec["output_scale"]
    extra = {k: v for k, v in packed.files.items() if k.startswith("selftest/")}
    extra[VECTORS_NAME] = json.dumps(spec).encode()
    p = tmp / "drift.tflite"
    p.write_bytes(pack(packed.flatbuffer, packed.metadata, extra))
    sign_file(p, keys["key"])
    return p


def _signed_without_vectors(models, tmp, keys):
    packed = unpack(models["new"].read_bytes(), "new")
    p = tmp / "novec.tflite"
    p.write_bytes(pack(packed.flatbuffer, packed.metadata, {}))
    sign_file(p, keys["key"])
    return p


@pytest.mark.parametrize("make, error, words", [
    (_tampered, SignatureError, "does not match the file"),
    (_wrong_key, SignatureError, "trusts key"),
    (_other_files_signature, SignatureError, "does not match the file"),
    (_no_signature, SignatureError, "no signature file"),
    (_garbled_signature, SignatureError, "malformed signature"),
    (_signed_truncated, (ModelError, MetadataError), "damaged"),
    (_signed_drifted_selftest, SelfTestError, "self-test failed on this board"),
    (_signed_without_vectors, SelfTestError, "no self-test vectors"),
])
def test_bad_models_are_refused_and_the_old_one_stays(store: ModelStore, models, keys, tmp_path: Path,
                                                       make, error, words) -> None:
    before_state = (store.root / "state.json").read_bytes()
    before_files = files_in(store)
    bad = make(models, tmp_path, keys)
    with pytest.raises(error, match=words) as err:
        store.install(bad, num_threads=1)
    assert str(bad) in str(err.value) or err.value.source.startswith(str(bad))  # names the file
    assert (store.root / "state.json").read_bytes() == before_state
    assert files_in(store) == before_files  # no leftover
    with Classifier(active_model(store.root), num_threads=1) as clf:
        assert clf.model_path.read_bytes() == models["old"].read_bytes()


def test_active_model_damaged_in_the_store_is_refused_at_load(store: ModelStore) -> None:
    path = store.active_path()
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged or was replaced"):
        Classifier(active_model(store.root))


def test_signature_file_format(models: dict[str, Path]) -> None:
    sig = parse_signature(Path(str(models["new"]) + ".sig").read_bytes(), "s")
    assert sig.sha256 == hashlib.sha256(models["new"].read_bytes()).hexdigest() and len(sig.signature) == 64
    for bad in (b"", b"hello\n", b"\xff\xfe", b"skinedge-signature-v1\nkey a\nsha256 b\nsignature AAAA\n"):
        with pytest.raises(SignatureError):
            parse_signature(bad, "s")


KILLS = int(os.environ.get("SKINEDGE_KILL_TESTS", "8"))


def test_sigkill_during_install_leaves_old_or_new(store: ModelStore, models: dict[str, Path], tmp_path: Path) -> None:
    """``install`` in a child process, SIGKILLed at delays spread over (and past) its run: the store always has
    the old model or the new one active, complete and loadable; a later install still works."""
    got = kiosk_soak.install_kills(store.root, models["new"], tmp_path, kills=KILLS)
    print(f"install run {got['install_ms']:.0f} ms; kills: {got['outcomes']}")
    assert got["violations"] == [], got
    assert sum(o.startswith("killed") for o in got["outcomes"]) >= 3, got
    # After a kill, the next install completes and clears the leftovers.
    s = ModelStore(tmp_path / "k0")
    s.install(models["new"], num_threads=1)
    assert len(files_in(s)) == 4
