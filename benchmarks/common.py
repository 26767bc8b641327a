"""Paths, models, thread counts and the benchmark images, shared by the suites and ``run_all.py``.

Nothing here imports skinedge, TensorFlow or any backend at import time, so the worker processes
that run in other virtual environments (tflite-runtime, ONNX Runtime, MediaPipe) can use it too.

Environment variables:
    SKINEDGE_SHARED             the shared folder (default ``../shared`` beside the repository)
    SKINEDGE_BENCH_MODEL        int8 ``.tflite`` (default: the default bundled model, ``DEFAULT_INT8``)
    SKINEDGE_BENCH_FLOAT_MODEL  float32 ``.tflite`` (default: that model's float32 file beside it in ``models/``)
    SKINEDGE_BENCH_CACHE        generated photos and converted models (default ``~/.cache/skinedge-bench``)
    SKINEDGE_BENCH_VENV_TFLRT   venv with tflite-runtime 2.14 and numpy<2 (default ``/work/venv-tflrt``)
    SKINEDGE_BENCH_VENV_ONNX    venv with onnxruntime (default ``/work/venv-onnx``)
    SKINEDGE_BENCH_VENV_MP      venv with mediapipe (default ``/work/venv-mp``)
    SKINEDGE_BENCH_VENV_TF2ONNX venv with tf2onnx and TensorFlow (default ``/work/venv-tf2onnx``)
    SKINEDGE_BENCH_RESULTS      where the JSON results go (default ``benchmarks/results``)
    SKINEDGE_BENCH_DOCS         where the plots go (default ``docs``)
    SKINEDGE_BENCH_QUICK        1: fewer runs (a smoke run of the harness, not figures to quote)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
RESULTS = Path(os.environ.get("SKINEDGE_BENCH_RESULTS", BENCH_DIR / "results"))
DOCS = Path(os.environ.get("SKINEDGE_BENCH_DOCS", ROOT / "docs"))
SHARED = Path(os.environ.get("SKINEDGE_SHARED", ROOT.parent / "shared")).resolve()
CACHE = Path(os.environ.get("SKINEDGE_BENCH_CACHE", Path.home() / ".cache" / "skinedge-bench"))

#: The end-to-end photo sizes (width, height): VGA, XGA and a 12 MP phone photo.
PHOTO_SIZES = ((640, 480), (1024, 768), (4000, 3000))
BATCH_SIZE = 500


def quick() -> bool:
    return os.environ.get("SKINEDGE_BENCH_QUICK", "") not in ("", "0")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_counts() -> list[int]:
    """1 and all usable cores (one entry on a single-core machine)."""
    return sorted({1, usable_cpus()})


#: The default bundled model's file (``skinedge.model_io.BUNDLED_MODEL``; not imported: this module stays free of
#: skinedge for the MediaPipe venv; tests/test_benchmarks_common.py checks the two agree).
DEFAULT_INT8 = "skinedge_efficientnet_lite0_int8.tflite"


def int8_model() -> Path:
    env = os.environ.get("SKINEDGE_BENCH_MODEL")
    path = Path(env) if env else ROOT / "models" / DEFAULT_INT8
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no int8 model; set SKINEDGE_BENCH_MODEL "
            f"(e.g. {SHARED / 'reference-models' / 'tf2_mobilenet_v2_1.0_224_ptq.tflite'})"
        )
    return path


def float_model() -> Path | None:
    env = os.environ.get("SKINEDGE_BENCH_FLOAT_MODEL")
    path = Path(env) if env else ROOT / "models" / DEFAULT_INT8.replace("_int8.tflite", "_float32.tflite")
    return path if path.is_file() else None


def venv_dir(kind: str) -> Path:
    """Where the contender venv ``kind`` is (``SKINEDGE_BENCH_VENV_<KIND>``, else the default below)."""
    defaults = {"tflrt": "/work/venv-tflrt", "onnx": "/work/venv-onnx", "mp": "/work/venv-mp",
                "tf2onnx": "/work/venv-tf2onnx"}
    return Path(os.environ.get(f"SKINEDGE_BENCH_VENV_{kind.upper()}", defaults[kind]))


def venv_python(kind: str) -> Path | None:
    py = venv_dir(kind) / "bin" / "python"
    return py if py.is_file() else None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- images ------------------------------------------------------------------------------------


def source_photo() -> Path:
    """The real photo the benchmark JPEGs are made from: the first skin6 test JPEG of at least 640x480."""
    from PIL import Image

    for p in sorted((SHARED / "data" / "skin6" / "test").rglob("*.jpg")):
        with Image.open(p) as im:
            if im.size[0] >= 640 and im.size[1] >= 480:
                return p
    raise FileNotFoundError(f"no JPEG of at least 640x480 under {SHARED / 'data' / 'skin6' / 'test'}")


def _upscaled(src: Path, size: tuple[int, int], out: Path) -> Path:
    from PIL import Image

    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            img = im.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        tmp = out.with_suffix(".tmp")
        img.save(tmp, "JPEG", quality=90)
        tmp.replace(out)
    return out


def photos() -> dict[str, Path]:
    """640x480, 1024x768 and 4000x3000 JPEGs (quality 90) made from one real photo, cached."""
    src = source_photo()
    tag = hashlib.sha256(src.read_bytes()).hexdigest()[:10]
    return {f"{w}x{h}": _upscaled(src, (w, h), CACHE / "photos" / f"photo_{tag}_{w}x{h}.jpg") for w, h in PHOTO_SIZES}


def batch_folder(n: int = BATCH_SIZE) -> Path:
    """A folder of ``n`` mixed real photos: most skin6 photos as they are (JPEG/PNG/WebP, 2 kpx to 0.4 MP),
    8% upscaled to 1024x768 and 4% to 4000x3000 JPEGs (phone-camera sizes). Symlinks and cached files."""
    from PIL import Image

    all_photos = sorted(
        p for p in (SHARED / "data" / "skin6").rglob("*")
        if p.is_file() and p.suffix.lower() in {".jpg", ".jpeg", ".jfif", ".png", ".webp"}
    )
    step = max(1, len(all_photos) // n)
    chosen = all_photos[::step][:n]
    folder = CACHE / f"batch{n}_{hashlib.sha256(''.join(p.name for p in chosen).encode()).hexdigest()[:10]}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(chosen):
        if i % 25 == 0:
            size = (4000, 3000)
        elif i % 25 in (5, 10):
            size = (1024, 768)
        else:
            link = folder / f"{i:04d}_{p.name}"
            if not link.exists():
                link.symlink_to(p)
            continue
        out = folder / f"{i:04d}_{p.stem}_{size[0]}x{size[1]}.jpg"
        if not out.exists():
            with Image.open(p) as im:
                im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=90)
    marker.write_text("ok\n")
    return folder


def batch_paths(folder: Path | None = None) -> list[str]:
    """The photos of ``folder`` (default: :func:`batch_folder`), sorted, without its marker file."""
    folder = batch_folder() if folder is None else folder
    return sorted(str(p) for p in folder.iterdir() if not p.name.startswith("."))


# -- converted models --------------------------------------------------------------------------


def onnx_model(tflite: Path) -> Path | None:
    """``tflite`` converted to ONNX with tf2onnx (``--tflite``), cached by content; None if it fails.

    An int8 .tflite becomes a QDQ ONNX model with the same scales and zero points; a float one a
    float ONNX model."""
    py = venv_python("tf2onnx")
    if py is None:
        return None
    out = CACHE / "onnx" / f"{tflite.stem}_{sha256(tflite)[:10]}.onnx"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log")
    with open(log, "w") as f:
        rc = subprocess.call([str(py), "-m", "tf2onnx.convert", "--tflite", str(tflite), "--output", str(out),
                              "--opset", "17"], stdout=f, stderr=subprocess.STDOUT)
    return out if rc == 0 and out.exists() else None


# -- results -----------------------------------------------------------------------------------


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


def machine() -> dict:
    return {"cpu": cpu_model(), "machine": platform.machine(), "usable_cpus": usable_cpus(),
            "python": platform.python_version(), "platform": platform.platform()}


def worker_env() -> dict[str, str]:
    """Environment for worker processes in other venvs: skinedge from this checkout on the path."""
    env = dict(os.environ)
    extra = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH_DIR), *extra])
    return env


def run_worker(python: Path | str, args: list[str], timeout: float = 900) -> dict:
    """Run ``worker.py`` with ``python`` and return its JSON (raises with its stderr on failure)."""
    proc = subprocess.run([str(python), str(BENCH_DIR / "worker.py"), *args], capture_output=True, text=True,
                          env=worker_env(), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {python} {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


PY = sys.executable


def decode_then_invoke_seconds(clf, paths: list) -> tuple[float, float]:
    """One round of the sequential bound: every photo preprocessed, then every tensor invoked (seconds each)."""
    import time

    t0 = time.perf_counter()
    pixels = [clf.preprocess(p)[0] for p in paths]
    t1 = time.perf_counter()
    for x in pixels:
        clf.invoke(x)
    return t1 - t0, time.perf_counter() - t1


def cpu_ms_per_item(fn, items: list, *, whole_process: bool = False) -> float:
    """CPU milliseconds per item of ``fn(item)`` over ``items``, run alone: this thread's CPU time
    (``time.thread_time``), or with ``whole_process`` the process's (``time.process_time``: an interpreter's
    worker threads included). CPU time, unlike wall time, is what a stage takes from the cores whoever else runs."""
    import time

    clock = time.process_time if whole_process else time.thread_time
    t0 = clock()
    for item in items:
        fn(item)
    return (clock() - t0) * 1000 / max(1, len(items))


def work_bound_per_s(stage_cpu_ms: dict[str, float], cores: int | None = None) -> float:
    """Items per second if every stage's CPU time (``stage_cpu_ms``, per item, each measured alone) were spread
    perfectly over ``cores`` (default: the CPUs this process may use): the work bound. Unlike the bound of the
    slowest stage alone, it counts that decoding takes CPU from the same cores as the interpreter."""
    return (cores or usable_cpus()) * 1000.0 / sum(stage_cpu_ms.values())
