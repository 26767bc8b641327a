"""Page faults and CPU per photo, with skinedge's heap pad (``skinedge.heap``) and with glibc's default.

    python benchmarks/page_faults.py            # results/page_faults.json (about a minute on 2 cores)

Each measurement is a fresh process that classifies one photo 5 times to warm up, then ``--photos`` more times on
a 1-thread classifier, and reports the minor page faults, system CPU and total CPU per photo (``getrusage``).
"default" runs with ``MALLOC_TOP_PAD_=131072``, glibc's own default pad, which skinedge leaves as the user's choice
(so the classifier runs as it did before the pad); "pad" runs as skinedge ships. The two alternate, ``--rounds``
times, so that the machine's drift hits both alike. The photos: the suite-2 JPEGs (640x480, 1024x768, 12 MP) and
one 640x480 frame of the video suite's clip as the JPEG ``watch`` decodes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

_CHILD = """
import json, resource, sys, time
from skinedge import Classifier
from skinedge.heap import keep_heap_pad
photo, n = open(sys.argv[1], "rb").read(), int(sys.argv[2])
with Classifier(sys.argv[3], num_threads=1) as clf:
    for _ in range(5):
        clf.classify(photo)
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    for _ in range(n):
        clf.classify(photo)
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
print(json.dumps({"faults": (r1.ru_minflt - r0.ru_minflt) / n, "sys_ms": (r1.ru_stime - r0.ru_stime) * 1000 / n,
                  "cpu_ms": (c1 - c0) * 1000 / n, "pad_applied": keep_heap_pad()}))
"""


def _frame_jpeg() -> Path:
    """One frame of the video suite's clip, as the JPEG that watch reads and decodes."""
    import video_bench

    out = common.CACHE / "photos" / "clip_frame_0.jpg"
    if not out.exists():
        out.write_bytes(video_bench.clip_jpegs(video_bench.clip())[0])
    return out


def measure(photo: Path, photos: int, *, default_pad: bool) -> dict:
    env = {**os.environ, **({"MALLOC_TOP_PAD_": "131072"} if default_pad else {})}
    if not default_pad:
        env.pop("MALLOC_TOP_PAD_", None)
    cmd = [sys.executable, "-c", _CHILD, str(photo), str(photos), str(common.int8_model())]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=common.ROOT)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--photos", type=int, default=40)
    args = ap.parse_args()
    images = {**common.photos(), "640x480 video frame": _frame_jpeg()}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    raw: dict[str, dict[str, list[dict]]] = {name: {"default": [], "pad": []} for name in images}
    for r in range(args.rounds):
        for name, path in images.items():
            for mode in (("default", "pad") if r % 2 == 0 else ("pad", "default")):
                raw[name][mode].append(measure(path, args.photos, default_pad=mode == "default"))
    summary = {}
    for name, modes in raw.items():
        med = {mode: {k: float(np.median([x[k] for x in runs])) for k in ("faults", "sys_ms", "cpu_ms")}
               for mode, runs in modes.items()}
        ratios = [d["cpu_ms"] / p["cpu_ms"] for d, p in zip(modes["default"], modes["pad"])]
        summary[name] = {"default": {k: round(v, 3) for k, v in med["default"].items()},
                         "pad": {k: round(v, 3) for k, v in med["pad"].items()},
                         "cpu_default_over_pad_median_of_rounds": round(float(np.median(ratios)), 3),
                         "pad_applied": all(x["pad_applied"] for x in modes["pad"])}
    res = {"photos_per_process": args.photos, "rounds": args.rounds, "summary": summary, "raw": raw,
           "meta": {"machine": common.machine(), "model": str(common.int8_model()), "started_utc": started,
                    "load_avg_1m_at_end": os.getloadavg()[0]}}
    print(common.write_result("page_faults", res))
    for name, s in summary.items():
        print(f"{name}: page faults per photo {s['default']['faults']:.0f} -> {s['pad']['faults']:.0f}, system CPU "
              f"{s['default']['sys_ms']:.2f} -> {s['pad']['sys_ms']:.2f} ms, CPU {s['default']['cpu_ms']:.2f} -> "
              f"{s['pad']['cpu_ms']:.2f} ms ({s['cpu_default_over_pad_median_of_rounds']:.3f}x)")


if __name__ == "__main__":
    main()
