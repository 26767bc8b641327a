"""Heatmaps, measured: how faithful (deletion test) and what they cost (explain vs classify latency).

    python benchmarks/explain_bench.py faithfulness --split val --every 1
    python benchmarks/explain_bench.py faithfulness --split test --every 1
    python benchmarks/explain_bench.py latency --threads 1 --threads 2
    python benchmarks/explain_bench.py unchanged --before OLD.tflite   # scores equal to a file without maps
    python benchmarks/explain_bench.py figure      # docs/figures/explain_overlays.jpg
    python benchmarks/explain_bench.py faithfulness --model mobilenetv2   # a bundled model by name, or a path

Results go to ``benchmarks/results/explain_<what>[_<split>]_<model>.json``, ``<model>`` the file's short name
(``efficientnet_lite0_int8``), so the figures of each bundled model sit side by side.

Faithfulness: for each skin6 photo of a split, the top class's score is measured on the photo, with the
hottest 20% of it greyed out by each heatmap variant, and with random rectangles of 20% of the area (the
photo's aspect; mean of 4, seeded) greyed out. Variants: ``cam`` (the 7x7 classifier-head map alone),
``fine`` (the fitted 14x14 map alone), ``fused`` (what ``Classifier.explain`` returns). A faithful map's
hot region hurts the score more than a random one: the share of photos where it does is the figure.

Latency: ``explain`` and ``classify`` on the same photos, interleaved in rounds, one process, median of
each; the ratio is the cost of a heatmap.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from skinedge import Classifier
from skinedge.explain import deletion_drops, heatmap_for, random_deletion_drop
from skinedge.files import image_files
from skinedge.preprocess import resize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _model_name(model: str | None) -> str:
    """Short name of the model file ``model`` resolves to (None: the default bundled one)."""
    from skinedge.model_io import resolve_model

    return resolve_model(model).stem.removeprefix("skinedge_")


def _photos(shared: Path, split: str, every: int) -> list[Path]:
    return image_files(shared / "data" / "skin6" / split)[::every]


def faithfulness(clf: Classifier, photos: list[Path], trials: int = 4) -> dict:
    names = clf.metadata.map_outputs
    rows = []
    for i, path in enumerate(photos):
        decoded = clf.decode_image(path)
        scores, maps = clf.invoke_with_maps(resize(decoded, clf.spec))
        c = int(np.argmax(scores))
        variants = {
            "cam": heatmap_for([maps[names[0]]], c, decoded.size, clf.spec),
            "fine": heatmap_for([maps[names[1]]], c, decoded.size, clf.spec),
            "fused": heatmap_for([maps[n] for n in names], c, decoded.size, clf.spec),
        }
        base = float(scores[c])
        hot = deletion_drops(clf, decoded, c, base, list(variants.values()))
        rand = random_deletion_drop(clf, decoded, c, base, trials=trials, seed=i)
        rows.append({"photo": str(path.relative_to(path.parents[2])), "label": clf.labels[c], "score": base,
                     "random_drop": rand, **{f"{k}_drop": d for k, d in zip(variants, hot)}})
    summary = {"n": len(rows), "random_mean_drop": float(np.mean([r["random_drop"] for r in rows]))}
    rng = np.random.default_rng(0)
    for k in ("cam", "fine", "fused"):
        wins = np.asarray([r[f"{k}_drop"] > r["random_drop"] for r in rows], dtype=float)
        boot = [wins[rng.integers(0, len(wins), len(wins))].mean() for _ in range(2000)]
        summary[k] = {
            "hot_mean_drop": float(np.mean([r[f"{k}_drop"] for r in rows])),
            "share_hot_hurts_more": float(wins.mean()),
            "share_ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        }
    return {"summary": summary, "rows": rows}


def latency(model: str | None, photos: list[Path], threads: int, rounds: int = 10) -> dict:
    """Median ``classify`` and ``explain`` time on the same photos, interleaved call by call; which of the
    two goes first alternates, so neither gets the other's warm caches for free. The process's CPU time per
    call is kept too: on a busy shared machine it is the steadier figure."""
    with Classifier(model, num_threads=threads) as clf:
        sha256 = clf.model_sha256
        for p in photos[:5]:  # warm caches and the interpreter
            clf.classify(p)
            clf.explain(p)
        t_classify, t_explain, cpu_classify, cpu_explain = [], [], [], []
        for r in range(rounds):
            for i, p in enumerate(photos):
                calls = [(clf.classify, t_classify, cpu_classify), (clf.explain, t_explain, cpu_explain)]
                for call, times, cpu in calls if (r + i) % 2 else calls[::-1]:
                    c0, t0 = time.process_time(), time.perf_counter()
                    call(p)
                    times.append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.process_time() - c0) * 1000)
    c, e = float(np.median(t_classify)), float(np.median(t_explain))
    cc, ce = float(np.median(cpu_classify)), float(np.median(cpu_explain))
    return {"threads": threads, "n": len(t_classify), "classify_p50_ms": c, "explain_p50_ms": e,
            "explain_over_classify": e / c, "classify_cpu_p50_ms": cc, "explain_cpu_p50_ms": ce,
            "explain_over_classify_cpu": ce / cc, "model_sha256": sha256}


def unchanged(before: str, model: str | None, photos: list[Path]) -> dict:
    """Scores of ``model`` against ``before`` (the same graph without map outputs) on every photo."""
    with Classifier(before, num_threads=2) as old, Classifier(model, num_threads=2) as new:
        diffs = [np.abs(np.asarray(old.classify(p).scores) - np.asarray(new.classify(p).scores)).max() for p in photos]
        return {"n": len(diffs), "identical": int(sum(d == 0 for d in diffs)), "max_abs_diff": float(max(diffs)),
                "before_sha256": old.model_sha256, "model_sha256": new.model_sha256}


def figure(model: str | None, photos: list[Path], out: Path, width: int = 260) -> list[str]:
    """One confidently classified test photo per class, above its heatmap overlay, in a strip."""
    from PIL import Image, ImageDraw

    from skinedge.explain import overlay
    from skinedge.preprocess import decode

    tiles, names = [], []
    with Classifier(model, num_threads=2) as clf:
        for cls in clf.labels:
            for path in (p for p in photos if p.parent.name == cls):
                r = clf.explain(path)
                if r.label == cls and not r.uncertain:
                    break
            else:
                continue
            img = decode(path)
            img.thumbnail((width, width))
            tile = Image.new("RGB", (width, 2 * img.height + 26), "white")
            ImageDraw.Draw(tile).text((4, 4), f"{r.label} {r.score:.2f} (heatmap below)", fill="black")
            tile.paste(img, ((width - img.width) // 2, 20))
            tile.paste(overlay(img, r.heatmap, alpha=0.6), ((width - img.width) // 2, img.height + 24))
            tiles.append(tile)
            names.append(str(path.relative_to(path.parents[2])))
    sheet = Image.new("RGB", (len(tiles) * (width + 8), max(t.height for t in tiles)), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (i * (width + 8), 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=85)
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["faithfulness", "latency", "unchanged", "figure"])
    ap.add_argument("--before", default=None, help="unchanged: the model file before the map outputs were added")
    ap.add_argument("--model", default=None,
                    help="a .tflite with class-map outputs, or a bundled model's name (default: the default one)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--every", type=int, default=1, help="use every N-th photo of the split")
    ap.add_argument("--threads", type=int, action="append", help="latency: thread counts (default 1 and 2)")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/explain_<what>.json)")
    args = ap.parse_args()
    photos = _photos(Path(args.shared), args.split, args.every)
    if not photos:
        sys.exit(f"no photos under {args.shared}/data/skin6/{args.split}")
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "split": args.split, "every": args.every, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "model": _model_name(args.model), "load_avg_1m_at_start": os.getloadavg()[0]}
    name = meta["model"]
    if args.what == "faithfulness":
        with Classifier(args.model, num_threads=2) as clf:
            result = {**meta, "model_sha256": clf.model_sha256, **faithfulness(clf, photos)}
        s = result["summary"]
        print(f"{args.split}: n={s['n']}, random 20% mean drop {s['random_mean_drop']:.3f}")
        for k in ("cam", "fine", "fused"):
            v = s[k]
            print(f"  {k:<6} hot 20% mean drop {v['hot_mean_drop']:.3f}; hot hurts more on "
                  f"{v['share_hot_hurts_more']:.3f} [{v['share_ci95'][0]:.3f}, {v['share_ci95'][1]:.3f}]")
        out = Path(args.out or RESULTS / f"explain_faithfulness_{args.split}_{name}.json")
    elif args.what == "figure":
        out = Path(args.out or ROOT / "docs" / "figures" / "explain_overlays.jpg")
        print("\n".join(figure(args.model, photos, out)))
        print(f"wrote {out}")
        return
    elif args.what == "unchanged":
        result = {**meta, **unchanged(args.before, args.model, photos)}
        print(f"{args.split}: {result['identical']}/{result['n']} photos with identical scores; "
              f"max abs difference {result['max_abs_diff']:g}")
        out = Path(args.out or RESULTS / f"explain_scores_unchanged_{name}.json")
    else:
        runs = [latency(args.model, photos[:40], t) for t in (args.threads or [1, 2])]
        result = {**meta, "runs": runs, "load_avg_1m_at_end": os.getloadavg()[0]}
        for r in runs:
            print(f"threads {r['threads']}: classify p50 {r['classify_p50_ms']:.2f} ms, explain p50 "
                  f"{r['explain_p50_ms']:.2f} ms, ratio {r['explain_over_classify']:.3f} (n={r['n']}); CPU time "
                  f"ratio {r['explain_over_classify_cpu']:.3f}")
        out = Path(args.out or RESULTS / f"explain_latency_{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
