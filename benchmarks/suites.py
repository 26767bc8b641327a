"""The benchmark suites (1, 1b and 2-5) as functions returning JSON-ready dicts (used by ``run_all.py`` and the
pytest-benchmark files). Medians everywhere; contenders alternate in rounds so drift hits all alike.

In-process contenders (skinedge and the plain LiteRT script) run in this process; the others run in
``worker.py`` subprocesses in their own venvs, one process per round.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import contenders  # noqa: E402


def med(values: list[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else float("nan")


def stats(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples, dtype=np.float64)
    p10, p50, p90, p99 = np.percentile(a, [10, 50, 90, 99])
    return {"n": int(a.size), "min": round(float(a.min()), 4), "p10": round(float(p10), 4),
            "median": round(float(p50), 4),
            "p90": round(float(p90), 4), "p99": round(float(p99), 4), "mean": round(float(a.mean()), 4)}


def float_norm(float_model: Path | None) -> tuple[float, float]:
    """mean/std of the float model's preprocessing spec, as skinedge feeds it (127.5/127.5 without a model)."""
    if float_model is None:
        return (127.5, 127.5)
    from skinedge import Classifier

    with Classifier(float_model, num_threads=1, verify=False) as clf:
        return (clf.spec.mean, clf.spec.std)  # one value each for the float model (worker --norm takes scalars)


def skinedge_bin() -> str:
    cand = Path(sys.executable).parent / "skinedge"
    return str(cand) if cand.exists() else "skinedge"


# -- 1. SDK overhead ---------------------------------------------------------------------------


def suite_invoke(model: Path, photo: Path, threads_list: list[int], runs: int = 600, warmup: int = 30) -> dict:
    """Classifier.invoke vs the bare interpreter, interleaved (same method as ``skinedge bench``).

    Three timings per round: ``Classifier.invoke(pixels)`` (quantize, set_tensor, invoke, get_tensor,
    dequantize, softmax); ``invoke()`` of the very interpreter the Classifier drives (what
    ``skinedge bench`` calls bare); and a separate LiteRT interpreter doing set_tensor + invoke +
    get_tensor, the minimum a user script must do.
    """
    from ai_edge_litert.interpreter import Interpreter

    from skinedge import Classifier
    from skinedge.profiling import interleaved

    out: dict[str, Any] = {"model": str(model), "runs": runs, "warmup": warmup, "by_threads": {}}
    for t in threads_list:
        clf = Classifier(model, num_threads=t)
        pixels, _, _ = clf.preprocess(photo)
        bare = Interpreter(model_path=str(model), num_threads=t)
        bare.allocate_tensors()
        i_in, i_out = bare.get_input_details()[0], bare.get_output_details()[0]
        x = contenders.to_input(pixels, i_in["dtype"])
        same = clf.interpreter  # the interpreter the Classifier drives, as skinedge bench times it

        def bare_full(bare=bare, x=x, i_in=i_in, i_out=i_out) -> None:
            bare.set_tensor(i_in["index"], x)
            bare.invoke()
            bare.get_tensor(i_out["index"])

        bare.set_tensor(i_in["index"], x)
        samples = interleaved({"classifier_invoke": lambda clf=clf, p=pixels: clf.invoke(p),
                               "same_interpreter_invoke": same.invoke,
                               "bare_litert_set_invoke_get": bare_full}, runs, warmup)
        s = {k: stats(v) for k, v in samples.items()}
        m = {k: v["median"] for k, v in s.items()}
        out["by_threads"][str(t)] = {
            "stats_ms": s,
            "overhead_vs_same_interpreter": round(m["classifier_invoke"] / m["same_interpreter_invoke"], 4),
            "overhead_vs_bare_set_invoke_get": round(m["classifier_invoke"] / m["bare_litert_set_invoke_get"], 4),
            "samples_ms": {k: [round(v, 4) for v in vs] for k, vs in samples.items()},
            "delegate": clf.delegate.describe(),
        }
        clf.close()
    return out


def skinedge_bench_ratio(model: Path, threads: int) -> dict:
    """What ``skinedge bench`` reports on the same model (its ratio must agree with suite 1)."""
    from skinedge.bench import run_bench

    r = run_bench(model, threads=threads, runs=300, warmup=30).to_dict()
    return {"threads": threads, "sdk_overhead_ratio": r["sdk_overhead_ratio"], "invoke_p50_ms": r["invoke_ms"]["p50"],
            "bare_p50_ms": r["bare_interpreter_invoke_ms"]["p50"]}


# -- 1b. models side by side ------------------------------------------------------------------


def bundled_model_files(models_dir: Path | None = None) -> dict[str, Path]:
    """The model files in ``models/`` by short name (``mobilenetv2_int8``, ``efficientnet_lite0_float32``, ...):
    every bundled int8 file and the float32 twin beside it."""
    d = models_dir or common.ROOT / "models"
    files = sorted(d.glob("skinedge_*_int8.tflite")) + sorted(d.glob("skinedge_*_float32.tflite"))
    return {f.stem.removeprefix("skinedge_"): f for f in files}


def suite_models(models: dict[str, Path], photo: Path, threads_list: list[int], runs: int = 600, warmup: int = 30,
                 rounds: int = 10, baseline: str = "mobilenetv2_int8") -> dict:
    """``Classifier.invoke`` of several model files, interleaved in one process (suite 1's method), so that the
    ratio to ``baseline`` is fair on a busy machine: issue 13's check that the default model's int8 invoke is
    <= 1.5x MobileNetV2 int8's. Per call: wall time, and the process's CPU time (all interpreter threads), which
    other jobs on a shared machine distort less than wall time. Ratios: of medians, and the median (min, max)
    of the per-round ratios of medians.
    """
    import time

    from skinedge import Classifier
    from skinedge.profiling import interleaved

    out: dict[str, Any] = {"models": {k: str(v) for k, v in models.items()},
                           "sha256": {k: common.sha256(v) for k, v in models.items()}, "baseline": baseline,
                           "photo": str(photo), "runs": runs, "warmup": warmup, "rounds": rounds,
                           "loadavg_start": [round(x, 2) for x in os.getloadavg()], "by_threads": {}}

    def timed(clf: Any, pixels: np.ndarray, cpu_ms: list[float]) -> None:
        c0 = time.process_time()
        clf.invoke(pixels)
        cpu_ms.append((time.process_time() - c0) * 1000)

    per_round = max(1, runs // rounds)
    for t in threads_list:
        clfs = {k: Classifier(p, num_threads=t) for k, p in models.items()}
        try:
            cpu: dict[str, list[float]] = {k: [] for k in clfs}
            fns = {}
            for k, clf in clfs.items():
                pixels, _, _ = clf.preprocess(photo)
                fns[k] = lambda clf=clf, px=pixels, sink=cpu[k]: timed(clf, px, sink)
            wall = interleaved(fns, runs, warmup, rounds)
            cpu = {k: v[warmup:] for k, v in cpu.items()}  # interleaved() ran the warm-up calls through fns too
            delegates = {k: clf.delegate.describe() for k, clf in clfs.items()}
        finally:
            for clf in clfs.values():
                clf.close()
        row: dict[str, Any] = {"wall_ms": {k: stats(v) for k, v in wall.items()},
                               "cpu_ms": {k: stats(v) for k, v in cpu.items()}, "delegate": delegates,
                               "samples_ms": {k: [round(x, 4) for x in v] for k, v in wall.items()}}
        if baseline in wall:
            base = wall[baseline]
            row["ratio_to_baseline"] = {}
            for k, v in wall.items():
                by_round = [med(v[i:i + per_round]) / med(base[i:i + per_round]) for i in range(0, len(v), per_round)]
                row["ratio_to_baseline"][k] = {
                    "wall_of_medians": round(med(v) / med(base), 3),
                    "wall_round_ratios_median": round(med(by_round), 3),
                    "wall_round_ratios_min_max": [round(min(by_round), 3), round(max(by_round), 3)],
                    "cpu_of_medians": round(med(cpu[k]) / med(cpu[baseline]), 3)}
        out["by_threads"][str(t)] = row
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


# -- 2. photo to label -------------------------------------------------------------------------


def e2e_contenders(int8: Path, float_model: Path | None) -> list[dict]:
    """Who runs the photo-to-label race, with which python and model file."""
    here = common.PY
    norm = float_norm(float_model)
    out = [
        {"name": "skinedge", "pipeline": "skinedge", "model": int8, "python": None},
        {"name": "naive PIL + LiteRT", "pipeline": "naive-litert", "model": int8, "python": None},
        {"name": "tensorflow (tf.io + tf.lite)", "pipeline": "tensorflow", "model": int8, "python": here},
    ]
    onnx_py = common.venv_python("onnx")
    if onnx_py:
        q = common.onnx_model(int8)
        if q:
            out.append({"name": "onnxruntime int8 QDQ", "pipeline": "onnxruntime", "model": q, "python": onnx_py})
        if float_model is not None:
            f = common.onnx_model(float_model)
            if f:
                out.append({"name": "onnxruntime float32", "pipeline": "onnxruntime", "model": f, "python": onnx_py,
                            "norm": norm})
    mp_py = common.venv_python("mp")
    if mp_py:
        out.append({"name": "mediapipe ImageClassifier", "pipeline": "mediapipe", "model": int8, "python": mp_py})
    return out


def suite_e2e(int8: Path, float_model: Path | None, photos: dict[str, Path], threads_list: list[int],
              runs: int = 21, rounds: int = 3) -> dict:
    """Photo file to top-1 label: total and split per contender, image size and thread count."""
    cands = e2e_contenders(int8, float_model)
    names = {str(p): k for k, p in photos.items()}
    per_round = max(1, runs // rounds)
    raw: dict[str, dict[str, dict[str, list[dict]]]] = {}
    errors: dict[str, str] = {}
    versions: dict[str, str] = {}
    for t in threads_list:
        local = {}
        for c in cands:
            if c["python"] is None:
                try:
                    local[c["name"]] = contenders.make_pipeline(c["pipeline"], c["model"], t)
                    versions[c["name"]] = local[c["name"]].version
                except Exception as exc:  # noqa: BLE001 - reported, not fatal
                    errors[c["name"]] = repr(exc)
        for r in range(rounds):
            for c in cands:
                if c["name"] in errors:
                    continue
                dest = raw.setdefault(c["name"], {}).setdefault(str(t), {})
                if c["python"] is None:
                    pipe = local[c["name"]]
                    for path in photos.values():
                        for _ in range(2 if r == 0 else 1):
                            pipe.label(path)
                        for _ in range(per_round):
                            t0 = time.perf_counter()
                            top1, split = pipe.label(path)
                            dest.setdefault(names[str(path)], []).append(
                                {"total": (time.perf_counter() - t0) * 1000, **split, "top1": top1})
                else:
                    args = ["e2e", "--pipeline", c["pipeline"], "--model", str(c["model"]), "--threads", str(t),
                            "--runs", str(per_round), "--warmup", "2", "--images", ",".join(map(str, photos.values()))]
                    if c.get("norm"):
                        args += ["--norm", ",".join(map(str, c["norm"]))]
                    try:
                        res = common.run_worker(c["python"], args)
                    except Exception as exc:  # noqa: BLE001
                        errors[c["name"]] = str(exc)[-1500:]
                        continue
                    versions[c["name"]] = res["version"]
                    for path, rows in res["per_image"].items():
                        dest.setdefault(names[path], []).extend(rows)
    summary: dict[str, Any] = {}
    for name, by_t in raw.items():
        for t, by_img in by_t.items():
            for img, rows in by_img.items():
                summary.setdefault(name, {}).setdefault(t, {})[img] = {
                    "n": len(rows),
                    **{k: round(med([row[k] for row in rows]), 3) for k in ("total", "decode", "preprocess", "invoke")},
                    "top1": Counter(row["top1"] for row in rows).most_common(1)[0][0],
                }
    ratios: dict[str, Any] = {}
    base = summary.get("skinedge", {})
    for name, by_t in summary.items():
        for t, by_img in by_t.items():
            for img, s in by_img.items():
                if t in base and img in base[t]:
                    ratios.setdefault(name, {}).setdefault(t, {})[img] = round(s["total"] / base[t][img]["total"], 3)
    return {"contenders": [{k: str(v) if isinstance(v, Path) else v for k, v in c.items() if k != "python"}
                           | {"python": str(c["python"] or sys.executable)} for c in cands],
            "versions": versions, "photos": {k: str(v) for k, v in photos.items()}, "runs": per_round * rounds,
            "rounds": rounds, "median_ms": summary, "ratio_to_skinedge": ratios, "errors": errors,
            "samples_total_ms": {n: {t: {i: [round(r["total"], 3) for r in rows] for i, rows in bi.items()}
                                     for t, bi in bt.items()} for n, bt in raw.items()}}


# -- 3. backends and formats -------------------------------------------------------------------


def backend_matrix(int8: Path, float_model: Path | None) -> list[dict]:
    here, tflrt, onnx = common.PY, common.venv_python("tflrt"), common.venv_python("onnx")
    norm = float_norm(float_model)
    rows = []
    models = [("int8", int8, None)] + ([("float32", float_model, norm)] if float_model else [])
    for fmt, model, nrm in models:
        rows.append({"format": fmt, "engine": "skinedge", "label": "skinedge Classifier.invoke (LiteRT, XNNPACK)",
                     "python": here, "model": model, "norm": nrm})
        rows.append({"format": fmt, "engine": "litert", "label": "LiteRT 2.x, XNNPACK on", "python": here,
                     "model": model, "norm": nrm})
        rows.append({"format": fmt, "engine": "litert-noxnn", "label": "LiteRT 2.x, XNNPACK off", "python": here,
                     "model": model, "norm": nrm})
        rows.append({"format": fmt, "engine": "tensorflow", "label": "tf.lite (TensorFlow)", "python": here,
                     "model": model, "norm": nrm})
        if tflrt:
            rows.append({"format": fmt, "engine": "tflite_runtime", "label": "tflite-runtime 2.14 (default delegate)",
                         "python": tflrt, "model": model, "norm": nrm})
            rows.append({"format": fmt, "engine": "tflite_runtime-noxnn", "label": "tflite-runtime 2.14, XNNPACK off",
                         "python": tflrt, "model": model, "norm": nrm})
        if onnx:
            om = common.onnx_model(model)
            if om:
                rows.append({"format": fmt, "engine": "onnxruntime",
                             "label": "ONNX Runtime (tf2onnx, " + ("QDQ)" if fmt == "int8" else "float)"),
                             "python": onnx, "model": om, "norm": nrm})
    return rows


def suite_backends(int8: Path, float_model: Path | None, photo: Path, threads_list: list[int],
                   runs: int = 150, rounds: int = 3, budget_s: float = 8.0) -> dict:
    """Invoke latency per engine and format, each in a fresh worker process per round."""
    matrix = backend_matrix(int8, float_model)
    per_round = max(5, runs // rounds)
    samples: dict[str, dict[str, list[float]]] = {}
    info: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for r in range(rounds):
        for t in threads_list:
            for row in matrix:
                key = f"{row['format']}|{row['engine']}"
                if key in errors:
                    continue
                prev = samples.get(key, {}).get(str(t))
                n = per_round
                if prev:  # slow engines (reference kernels): cap each round at budget_s
                    n = max(5, min(per_round, int(budget_s * 1000 / max(med(prev), 1e-3))))
                args = ["invoke", "--engine", row["engine"], "--model", str(row["model"]), "--threads", str(t),
                        "--runs", str(n), "--warmup", "5" if r else "10", "--image", str(photo)]
                if row["norm"]:
                    args += ["--norm", ",".join(map(str, row["norm"]))]
                try:
                    res = common.run_worker(row["python"], args)
                except Exception as exc:  # noqa: BLE001
                    errors[key] = str(exc)[-1500:]
                    continue
                samples.setdefault(key, {}).setdefault(str(t), []).extend(res["samples_ms"])
                info[key] = {"format": row["format"], "engine": row["engine"], "label": row["label"],
                             "version": res["version"], "delegated": res["delegated"], "numpy": res["numpy"],
                             "model": str(row["model"]), "top1": res["top1"]}
    table = {}
    for key, by_t in samples.items():
        table[key] = {**info[key], "by_threads": {t: stats(v) for t, v in by_t.items()}}
    ratios = {}
    for t in map(str, threads_list):
        ref = table.get("int8|litert", {}).get("by_threads", {}).get(t, {}).get("median")
        if ref:
            ratios[t] = {k: round(v["by_threads"][t]["median"] / ref, 3)
                         for k, v in table.items() if t in v["by_threads"]}
    return {"engines": table, "ratio_to_int8_litert_xnnpack": ratios, "errors": errors,
            "samples_ms": {k: {t: [round(x, 4) for x in v] for t, v in bt.items()} for k, bt in samples.items()}}


# -- 4. batch ----------------------------------------------------------------------------------


def suite_batch(model: Path, folder: Path, threads_list: list[int], rounds: int = 3, use_bundled: bool = False) -> dict:
    """500 mixed photos: classify_many, a sequential classify loop and ``skinedge predict`` vs the bound."""
    from skinedge import Classifier

    paths = common.batch_paths(folder)
    n = len(paths)
    out: dict[str, Any] = {"folder": str(folder), "images": n, "by_threads": {}}
    for t in threads_list:
        clf = Classifier(model, num_threads=t)
        # The two stages alone, sequentially: decode+resize of every image, and n invokes.
        for p in paths[:10]:
            clf.preprocess(p)
        res: dict[str, list[float]] = {"decode_s": [], "invoke_s": [], "classify_many_s": [], "sequential_s": [],
                                       "cli_s": []}
        errors = 0
        for _ in range(rounds):
            decode_s, invoke_s = common.decode_then_invoke_seconds(clf, paths)
            res["decode_s"].append(decode_s)
            res["invoke_s"].append(invoke_s)
            t0 = time.perf_counter()
            outcomes = clf.classify_many(paths)
            res["classify_many_s"].append(time.perf_counter() - t0)
            errors = sum(1 for o in outcomes if isinstance(o, Exception))
            t0 = time.perf_counter()
            for p in paths:
                clf.classify(p)
            res["sequential_s"].append(time.perf_counter() - t0)
            cmd = [skinedge_bin(), "predict", "--json", "--threads", str(t), str(folder)]
            if not use_bundled:
                cmd[2:2] = ["--model", str(model)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            res["cli_s"].append(time.perf_counter() - t0)
            cli_lines = sum(1 for line in proc.stdout.splitlines() if line.startswith("{"))
        clf.close()
        m = {k: med(v) for k, v in res.items()}
        bound_s = max(m["decode_s"], m["invoke_s"])
        ips = {k.replace("_s", ""): round(n / v, 2) for k, v in m.items()}
        out["by_threads"][str(t)] = {
            "median_seconds": {k: round(v, 3) for k, v in m.items()},
            "images_per_s": ips,
            "decode_ms_per_image": round(m["decode_s"] / n * 1000, 3),
            "invoke_ms_per_image": round(m["invoke_s"] / n * 1000, 3),
            "bound_images_per_s": round(n / bound_s, 2),
            "bound_is": "decode" if m["decode_s"] >= m["invoke_s"] else "invoke",
            "serial_images_per_s": round(n / (m["decode_s"] + m["invoke_s"]), 2),
            "classify_many_fraction_of_bound": round(bound_s / m["classify_many_s"], 3),
            "cli_fraction_of_bound": round(bound_s / m["cli_s"], 3),
            "classify_many_speedup_vs_sequential": round(m["sequential_s"] / m["classify_many_s"], 3),
            "errors": errors, "cli_json_lines": cli_lines, "cli_exit": proc.returncode,
            "raw_seconds": {k: [round(x, 3) for x in v] for k, v in res.items()},
        }
    return out


# -- 5. cold start and memory ------------------------------------------------------------------


_TIME = "/usr/bin/time"


def _child(cmd: list[str], env: dict | None = None) -> tuple[float, int, int, str]:
    """Wall seconds, peak RSS bytes of the child, exit status, stderr.

    The peak comes from GNU time (``%M``, the child's getrusage) when installed: a child forked straight
    from this large Python process would report this process's RSS, because ru_maxrss survives
    fork and exec. Without GNU time, getrusage of a direct child is used (an upper bound).
    """
    use_time = Path(_TIME).exists()
    fd, path = (None, None)
    if use_time:
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".time")
        os.close(fd)
        cmd = [_TIME, "-f", "%M %x", "-o", path, *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss * 1024
    if path:
        text = Path(path).read_text().split()
        os.unlink(path)
        peak, code = int(text[-2]) * 1024, int(text[-1])
    return wall, peak, code, err


#: What ``skinedge predict one.jpg`` is compared with: the same work in a plain LiteRT script (its docstring).
PLAIN_SCRIPT = Path(__file__).resolve().parent / "plain_litert_predict.py"


def _wall(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds of a fresh child process (stdout discarded, no wrapper such as GNU time), its status, stderr."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0, proc.returncode, proc.stderr.decode(errors="replace")


def cold_start_commands(model: Path, photo: Path, use_bundled: bool = False) -> dict[str, list[str]]:
    """The commands suite 5 times: ``skinedge predict`` on one photo, the plain LiteRT script, ``python -c pass``.

    skinedge's bytecode is compiled first, as a pip install leaves it: an editable checkout under
    PYTHONDONTWRITEBYTECODE=1 (as on the development machine) would recompile every module on every start.
    """
    import skinedge
    from skinedge import Classifier

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(skinedge.__file__).parent)], check=False)
    with Classifier(model, num_threads=1) as clf:
        labels = list(clf.labels)
    sk = skinedge_bin()
    cmd = [sk, "predict", str(photo)] if use_bundled else [sk, "predict", "--model", str(model), str(photo)]
    py = sys.executable
    return {"skinedge predict": cmd, "plain LiteRT script": [py, str(PLAIN_SCRIPT), str(model), str(photo), *labels],
            "python -c pass": [py, "-c", "pass"]}


def cold_start_ratio(commands: dict[str, list[str]], rounds: int = 30) -> dict:
    """Fresh-process wall times of ``commands``, interleaved: each round runs every command once, the order
    reversed every other round, so drift and other jobs on the machine hit all of them alike.

    ``ratio``: ``skinedge predict`` over the plain LiteRT script, as the median of the per-round ratios (the
    figure quoted), the ratio of the medians and the ratio of the minima.
    """
    for c in commands.values():  # page cache warm: a warm start of a fresh process is what is measured
        _wall(c)
    walls: dict[str, list[float]] = {k: [] for k in commands}
    failures: list[str] = []
    for i in range(rounds):
        for k in list(commands) if i % 2 == 0 else list(commands)[::-1]:
            w, code, err = _wall(commands[k])
            walls[k].append(w)
            if code != 0:
                failures.append(f"{k}: exit {code}: {err.strip()[-300:]}")
    sk, plain = walls["skinedge predict"], walls["plain LiteRT script"]
    return {
        "rounds": rounds,
        "commands": {k: " ".join(c) for k, c in commands.items()},
        "wall_s": {k: {"median": round(med(v), 4), "min": round(min(v), 4), "n": len(v)} for k, v in walls.items()},
        "ratio": {"median_of_round_ratios": round(med([a / b for a, b in zip(sk, plain)]), 3),
                  "of_medians": round(med(sk) / med(plain), 3), "of_minima": round(min(sk) / min(plain), 3)},
        "failures": failures,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def suite_cold(model: Path, photo: Path, runs: int = 30, use_bundled: bool = False, rss_n: int = 10_000,
               threads: int | None = None) -> dict:
    """Fresh-process ``skinedge predict one.jpg`` against the plain LiteRT script, interleaved (wall, ratio);
    peak RSS; import breakdown; RSS over many classifications."""
    py = sys.executable
    commands = cold_start_commands(model, photo, use_bundled)
    cmd = commands["skinedge predict"]
    timed = cold_start_ratio(commands, rounds=runs)
    rc = 1 if any(f.startswith("skinedge predict:") for f in timed["failures"]) else 0
    # Peak RSS from GNU time, in runs of their own (the wrapper is kept out of the timed rounds), and
    # TensorFlow's start for scale (a few runs: it takes seconds).
    tf = "python -c 'import tensorflow'"
    rss: dict[str, list[int]] = {}
    tf_walls: list[float] = []
    for k, c in [*commands.items(), (tf, [py, "-c", "import tensorflow"])]:
        for _ in range(3):
            w, m, _code, _err = _child(c)
            rss.setdefault(k, []).append(m)
            if k == tf:
                tf_walls.append(w)
    walls = {**timed["wall_s"], tf: {"median": round(med(tf_walls), 4), "min": round(min(tf_walls), 4), "n": 3}}
    time_v = None
    if Path("/usr/bin/time").exists():
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
        mm = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        ww = re.search(r"Elapsed \(wall clock\) time.*: (.+)", proc.stderr)
        time_v = {"max_rss_kb": int(mm.group(1)) if mm else None, "wall": ww.group(1).strip() if ww else None}
    # import breakdown of the same command
    proc = subprocess.run([py, "-X", "importtime", *cmd], capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        mt = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if mt:
            rows.append((int(mt.group(1)), int(mt.group(2)), len(mt.group(3)) // 2, mt.group(4)))
    modules = {r[3] for r in rows}
    top_level: dict[str, int] = {}  # self time summed per top-level package: who really costs what
    for self_us, _cum_us, _depth, name in rows:
        root = name.split(".")[0]
        top_level[root] = top_level.get(root, 0) + self_us
    import_total_ms = sum(cum for _, cum, depth, _ in rows if depth == 0) / 1000
    forbidden = sorted(m for m in modules if m.split(".")[0] in ("tensorflow", "cv2", "keras", "torch", "jax"))
    # RSS growth over many classifications (a fresh process)
    rss_res = None
    if rss_n:
        rss_res = common.run_worker(py, ["rss", "--model", str(model), "--image", str(photo), "--n", str(rss_n),
                                         "--warmup", "100", "--threads", str(threads or common.usable_cpus())],
                                    timeout=3600)
    return {
        "command": " ".join(cmd),
        "commands": timed["commands"],
        "runs": runs,
        "exit_status": rc,
        "failures": timed["failures"],
        "wall_s": walls,
        "ratio_vs_plain_script": timed["ratio"],
        "loadavg": timed["loadavg"],
        "peak_rss_mb": {k: {"median": round(med(v) / 2**20, 2), "max": round(max(v) / 2**20, 2)}
                        for k, v in rss.items()},
        "usr_bin_time_v": time_v,
        "importtime": {"total_ms": round(import_total_ms, 1), "modules": len(modules),
                       "top_level_ms": dict(sorted(((k, round(v / 1000, 1)) for k, v in top_level.items()),
                                                   key=lambda kv: -kv[1])[:15]),
                       "forbidden_imported": forbidden},
        "rss_growth": rss_res,
    }


def summarize_targets(res: dict) -> dict:
    """The issue's targets, met or not, from the suite results present in ``res``."""
    out: dict[str, Any] = {}
    allt = str(common.usable_cpus())
    if "invoke" in res:
        for t, v in res["invoke"]["by_threads"].items():
            out[f"sdk_overhead_t{t}"] = {"value": v["overhead_vs_same_interpreter"], "target": "<= 1.05",
                                         "met": v["overhead_vs_same_interpreter"] <= 1.05}
    if "e2e" in res:
        r = res["e2e"]["ratio_to_skinedge"].get("naive PIL + LiteRT", {})
        for t, by_img in r.items():
            if "4000x3000" in by_img:
                out[f"12mp_speedup_vs_naive_t{t}"] = {"value": by_img["4000x3000"], "target": ">= 3",
                                                     "met": by_img["4000x3000"] >= 3}
    if "models" in res:
        default = res["models"].get("default")
        for t, v in res["models"]["by_threads"].items():
            r = v.get("ratio_to_baseline", {}).get(default)
            if r:
                out[f"default_int8_vs_mobilenetv2_int8_t{t}"] = {"value": r["wall_round_ratios_median"],
                                                                 "target": "<= 1.5",
                                                                 "met": r["wall_round_ratios_median"] <= 1.5}
    if "batch" in res:
        for t, v in res["batch"]["by_threads"].items():
            out[f"batch_classify_many_t{t}"] = {"value": v["classify_many_fraction_of_bound"], "target": ">= 0.8",
                                                "met": v["classify_many_fraction_of_bound"] >= 0.8}
            out[f"batch_cli_t{t}"] = {"value": v["cli_fraction_of_bound"], "target": ">= 0.8",
                                      "met": v["cli_fraction_of_bound"] >= 0.8}
    if "cold" in res:
        c = res["cold"]
        w = c["wall_s"]["skinedge predict"]["median"]
        m = c["peak_rss_mb"]["skinedge predict"]["median"]  # MiB (2**20 bytes), as the table prints it
        out["cold_start_wall_s"] = {"value": w, "target": "<= 0.30", "met": w <= 0.30}
        if "ratio_vs_plain_script" in c:
            r = c["ratio_vs_plain_script"]["median_of_round_ratios"]
            out["cold_start_vs_plain_script"] = {"value": r, "target": "<= 1.10", "met": r <= 1.10}
        mb = round(m * 2**20 / 1e6, 2)  # the target is in MB (10**6 bytes)
        out["cold_start_peak_rss_mb"] = {"value": mb, "mib": m, "target": "<= 64 MB", "met": mb <= 64}
        out["no_tensorflow_or_cv2_import"] = {"value": c["importtime"]["forbidden_imported"], "target": "[]",
                                              "met": not c["importtime"]["forbidden_imported"]}
        if c.get("rss_growth"):
            g = c["rss_growth"]["growth_bytes"] / 2**20
            out["rss_growth_mb_10k"] = {"value": round(g, 3), "target": "< 2", "met": g < 2}
    out["_all_cores"] = allt
    return out


__all__ = ["suite_invoke", "suite_models", "bundled_model_files", "suite_e2e", "suite_backends", "suite_batch",
           "suite_cold", "cold_start_commands", "cold_start_ratio", "summarize_targets", "skinedge_bench_ratio"]
