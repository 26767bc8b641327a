"""Raw model outputs for the ARM-vs-x86 check (``arm64_check.sh``), and their comparison.

``dump`` runs inside the emulated arm64 root as well as on the host, so it needs only skinedge and
numpy (Python 3.10+, numpy 1.24+). It prints, per image, the model's output in quantization steps
(the integers the interpreter produced) so the two machines can be compared step by step.

    python arm64_outputs.py dump --model M.tflite [--labels L.txt] IMAGE_DIR > raw.json
    python arm64_outputs.py compare --arm ARM_OUT --x86 X86_OUT --out result.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path


def dump(args: argparse.Namespace) -> int:
    import numpy as np

    from skinedge import Classifier
    from skinedge.preprocess import IMAGE_SUFFIXES

    clf = Classifier(args.model, labels=args.labels, num_threads=args.threads)
    scale, zero = clf.output_details["quantization"]
    step = float(scale) or _recorded_step(clf.model_files, str(clf.model_path))
    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    rows = []
    for path in images:
        pixels, _, _ = clf.preprocess(path)
        values = clf.raw_output(pixels)
        if scale:
            steps = np.rint(values / scale + zero).astype(np.int64)
            out = [int(v) for v in steps]
        else:  # float output: in the step its self-test vectors record (1.0, i.e. raw values, if none)
            out = [float(v) / step for v in values]
        top = int(np.argmax(values))  # over every output: a gated model's gates too (output_labels names them)
        rows.append({"image": path.name, "top1": top, "label": clf.output_labels[top],
                     "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(), "output": out})
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "backend": f"{clf.backend.package} {clf.backend.version}",
        "delegate": clf.delegate.describe(),
        "model_sha256": clf.model_sha256,
        "output_scale": step,
        "output_zero_point": int(zero),
        "images": rows,
    }
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


def _recorded_step(files: dict[str, bytes], source: str) -> float:
    """The step a model's self-test vectors record (1.0, i.e. raw values, for a model without vectors)."""
    from skinedge.selftest import VECTORS_NAME, decode_vectors

    return decode_vectors(files, source)[0] if VECTORS_NAME in files else 1.0


def _predictions(path: Path) -> dict[str, dict]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            out[Path(d["source"]).name] = d
    return out


def compare(args: argparse.Namespace) -> int:
    arm, x86 = Path(args.arm), Path(args.x86)
    models = sorted(p.name[len("raw_"):-len(".json")] for p in x86.glob("raw_*.json"))
    result: dict = {
        "suite": args.suite,
        "qemu": args.qemu,
        "arm": {k: (arm / f).read_text().strip() if (arm / f).exists() else None
                for k, f in (("uname", "uname.txt"), ("python", "python.txt"), ("debian_numpy", "debian_numpy.txt"),
                             ("skinedge", "skinedge_version.txt"))},
        "arm_packages": [line for line in ((arm / "pip_freeze.txt").read_text().splitlines()
                                           if (arm / "pip_freeze.txt").exists() else [])],
        "models": {},
    }
    ok = bool(models)
    for m in models:
        entry: dict = {"pass": False}
        result["models"][m] = entry
        raw_arm_path = arm / f"raw_{m}.json"
        if not raw_arm_path.exists() or not raw_arm_path.read_text().strip():
            err = arm / f"raw_{m}.json.err"
            entry["error"] = err.read_text()[-2000:] if err.exists() else "no output from the arm64 run"
            ok = False
            continue
        a, x = json.loads(raw_arm_path.read_text()), json.loads((x86 / f"raw_{m}.json").read_text())
        entry.update({"arm_backend": a["backend"], "arm_delegate": a["delegate"], "x86_backend": x["backend"],
                      "x86_delegate": x["delegate"], "arm_numpy": a["numpy"], "x86_numpy": x["numpy"],
                      "same_model_sha256": a["model_sha256"] == x["model_sha256"]})
        per_image = []
        for ra, rx in zip(a["images"], x["images"], strict=True):
            assert ra["image"] == rx["image"], (ra["image"], rx["image"])
            diff = max(abs(p - q) for p, q in zip(ra["output"], rx["output"], strict=True))
            per_image.append({"image": ra["image"], "arm_top1": ra["label"], "x86_top1": rx["label"],
                              "max_output_diff_steps": diff,
                              "same_input_pixels": ra.get("pixels_sha256") == rx.get("pixels_sha256")})
        pa, px = _predictions(arm / f"predict_{m}.jsonl"), _predictions(x86 / f"predict_{m}.jsonl")
        score_diffs = [abs(pa[k]["score"] - px[k]["score"]) for k in px if k in pa]
        cli_same = len(pa) == len(px) and all(pa.get(k, {}).get("label") == px[k]["label"] for k in px)
        n_same = sum(r["arm_top1"] == r["x86_top1"] for r in per_image)
        max_steps = max((r["max_output_diff_steps"] for r in per_image), default=0)
        # The check: identical top-1 everywhere, and raw outputs within one quantization step.
        entry.update({
            "images": len(per_image),
            "top1_identical": n_same,
            "max_output_diff_steps": max_steps,
            "input_pixels_identical": sum(r["same_input_pixels"] for r in per_image),
            "output_scale": x["output_scale"],
            "cli_predict_top1_identical": cli_same,
            "cli_predict_max_top1_score_diff": round(max(score_diffs, default=0.0), 6),
            "per_image": per_image,
        })
        entry["pass"] = bool(per_image) and n_same == len(per_image) and max_steps <= 1 and cli_same
        ok = ok and entry["pass"]
    result["pass"] = ok
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for m, e in result["models"].items():
        if "error" in e:
            print(f"{m}: FAILED on arm64: {e['error'][-300:]}")
            continue
        print(f"{m}: {e['images']} images, decoded pixels identical {e['input_pixels_identical']}/{e['images']}, "
              f"top-1 identical {e['top1_identical']}/{e['images']}, max output diff "
              f"{e['max_output_diff_steps']} step(s), CLI top-1 identical {e['cli_predict_top1_identical']}, "
              f"max score diff {e['cli_predict_max_top1_score_diff']} -> {'PASS' if e['pass'] else 'FAIL'}")
    print(f"arm64 ({result['arm']['python']}, numpy {result['arm']['debian_numpy']}) vs x86: "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--model", help="default: the bundled model")
    d.add_argument("--labels")
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("images")
    c = sub.add_parser("compare")
    c.add_argument("--arm", required=True)
    c.add_argument("--x86", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--suite", default="")
    c.add_argument("--qemu", default="")
    args = parser.parse_args(argv)
    return dump(args) if args.cmd == "dump" else compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
