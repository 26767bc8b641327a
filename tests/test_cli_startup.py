"""What a fresh ``skinedge`` process loads: the package's public names on first use, numpy after the CLI's own
set-up, and only the Pillow decoder a photo needs, without changing what Pillow opens afterwards."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import skinedge


def _run(code: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                             "GOTO_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**base, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_public_names_resolve_to_their_modules() -> None:
    from skinedge.classifier import Classifier
    from skinedge.errors import ImageError
    from skinedge.preprocess import PreprocessSpec

    assert skinedge.Classifier is Classifier and skinedge.ImageError is ImageError
    assert skinedge.PreprocessSpec is PreprocessSpec
    assert sorted(skinedge._EXPORTS) == sorted(skinedge.__all__)
    for name in skinedge.__all__:
        assert getattr(skinedge, name) is getattr(sys.modules[skinedge._EXPORTS[name]], name)
    assert set(skinedge.__all__) <= set(dir(skinedge))
    with pytest.raises(AttributeError, match="no_such_name"):
        skinedge.no_such_name  # noqa: B018


def test_cli_sets_one_openblas_thread_before_numpy_unless_the_user_chose() -> None:
    code = "import os, sys, skinedge.cli; print('numpy' in sys.modules, os.environ.get('OPENBLAS_NUM_THREADS'))"
    assert _run(code) == "False 1"
    assert _run(code, {"OMP_NUM_THREADS": "3"}) == "False None"
    assert _run(code, {"OPENBLAS_NUM_THREADS": "4"}) == "False 4"


def _encoded(fmt: str) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, plugin", [("JPEG", "JpegImagePlugin"), ("PNG", "PngImagePlugin"),
                                         ("WEBP", "WebPImagePlugin"), ("BMP", "BmpImagePlugin"),
                                         ("GIF", "GifImagePlugin"), ("TIFF", "TiffImagePlugin")])
def test_decoding_imports_only_the_plugin_the_photo_needs(tmp_path, fmt: str, plugin: str) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(_encoded(fmt))
    code = (f"import json, sys; from skinedge.preprocess import decode; im = decode({str(path)!r}); "
            "print(json.dumps([im.size, im.mode, sorted(m[4:] for m in sys.modules if m.startswith('PIL.') "
            "and m.endswith('ImagePlugin'))]))")
    size, mode, plugins = json.loads(_run(code))
    assert (size, mode) == ([32, 24], "RGB")
    assert plugins == [plugin]


def test_pillow_opens_every_format_after_skinedge_decoded_a_jpeg() -> None:
    """skinedge marks Pillow's common-plugin step done; the same process must still open and save the rest."""
    payloads = {fmt: _encoded(fmt).hex() for fmt in ("PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")}
    code = f"""
import io, json
from PIL import Image
from skinedge.preprocess import decode
decode(bytes.fromhex({_encoded("JPEG").hex()!r}))
opened = {{fmt: Image.open(io.BytesIO(bytes.fromhex(h))).format for fmt, h in {payloads!r}.items()}}
out = io.BytesIO(); Image.new("RGB", (4, 4)).save(out, format="PNG")
print(json.dumps([opened, Image.open(io.BytesIO(out.getvalue())).format]))
"""
    opened, saved = json.loads(_run(code))
    assert opened == {fmt: fmt for fmt in ("PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")}
    assert saved == "PNG"


def test_unknown_bytes_refused_as_before() -> None:
    from skinedge.errors import ImageError
    from skinedge.preprocess import decode

    with pytest.raises(ImageError, match="not a readable image in a supported format"):
        decode(b"P6\n4 4\n255\n" + bytes(48))  # PPM: a Pillow format skinedge does not decode
