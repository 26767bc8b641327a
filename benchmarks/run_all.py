"""Run every benchmark suite in one go on this machine, write ``benchmarks/results/*.json`` and the plots
in ``docs/``.

    python benchmarks/run_all.py                      # everything (about 15 minutes on 2 cores)
    python benchmarks/run_all.py --suites invoke,e2e  # some suites
    python benchmarks/run_all.py --quick              # smoke run of the harness (figures not to quote)
    python benchmarks/run_all.py --plots-only         # redraw the plots from results/*.json

Same model file, same images and the same thread counts (1 and all cores) for every contender.
Take no measurement while other heavy work runs on the machine (check ``uptime`` first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import suites  # noqa: E402

SUITES = ("invoke", "models", "e2e", "backends", "batch", "cold")


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def git_state() -> str:
    """Commit and a hash of the uncommitted runtime changes: which skinedge code was measured."""
    import hashlib
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=common.ROOT).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "skinedge"], capture_output=True, cwd=common.ROOT).stdout
    except OSError:
        return "unknown"
    return f"{head}+dirty:{hashlib.sha256(diff).hexdigest()[:10]}" if diff else head


def run(selected: list[str], quick: bool, rss_n: int) -> dict:
    int8 = common.int8_model()
    flt = common.float_model()
    photos = common.photos()
    threads = common.thread_counts()
    bundled = "SKINEDGE_BENCH_MODEL" not in os.environ
    meta = {"machine": common.machine(), "model": str(int8), "model_sha256": common.sha256(int8),
            "float_model": str(flt) if flt else None, "threads": threads, "quick": quick,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_avg_1m_at_start": load_avg(),
            "git": git_state()}
    print(f"model {int8}\nfloat {flt}\nthreads {threads}\nload {meta['load_avg_1m_at_start']:.2f}", flush=True)
    results: dict = {}
    q = 4 if quick else 1

    def step(name: str, fn) -> None:
        t0 = time.perf_counter()
        print(f"== {name} ...", flush=True)
        res = fn()
        res["meta"] = {**meta, "suite": name, "seconds": round(time.perf_counter() - t0, 1),
                       "load_avg_1m_at_end": load_avg()}
        results[name] = res
        common.write_result(name, res)
        print(f"== {name} done in {res['meta']['seconds']} s", flush=True)

    if "invoke" in selected:
        def _invoke() -> dict:
            r = suites.suite_invoke(int8, photos["640x480"], threads, runs=600 // q)
            r["skinedge_bench"] = [suites.skinedge_bench_ratio(int8, t) for t in threads]
            return r
        step("invoke", _invoke)
    if "models" in selected:
        def _models() -> dict:
            files = suites.bundled_model_files()
            r = suites.suite_models(files, photos["640x480"], threads, runs=600 // q)
            r["default"] = int8.stem.removeprefix("skinedge_")  # the model the other suites measure
            return r
        step("models", _models)
    if "e2e" in selected:
        step("e2e", lambda: suites.suite_e2e(int8, flt, photos, threads, runs=21 // q if not quick else 3, rounds=3))
    if "backends" in selected:
        step("backends", lambda: suites.suite_backends(int8, flt, photos["640x480"], threads, runs=120 // q, rounds=2,
                                                         budget_s=5.0))
    if "batch" in selected:
        folder = common.batch_folder()
        step("batch", lambda: suites.suite_batch(int8, folder, threads, rounds=1 if quick else 3, use_bundled=bundled))
    if "cold" in selected:
        step("cold", lambda: suites.suite_cold(int8, photos["640x480"], runs=5 if quick else 30, use_bundled=bundled,
                                               rss_n=rss_n))
    return results


def load_results() -> dict:
    out = {}
    for name in SUITES:
        p = common.RESULTS / f"{name}.json"
        if p.exists():
            out[name] = json.loads(p.read_text())
    return out


# -- plots -------------------------------------------------------------------------------------


def plot(results: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    common.DOCS.mkdir(parents=True, exist_ok=True)
    made = []
    cpu = common.cpu_model()
    allt = str(max(common.thread_counts()))
    b = results.get("backends")
    if b:
        keys = [k for k in b["samples_ms"] if allt in b["samples_ms"][k]]
        keys.sort(key=lambda k: (k.split("|")[0] != "int8", suites.med(b["samples_ms"][k][allt])))
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(keys) + 1.6))
        data = [b["samples_ms"][k][allt] for k in keys]
        labels = [f"{k.split('|')[0]}: {b['engines'][k]['label']}" for k in keys]
        ax.boxplot(data, vert=False, showfliers=True, whis=(5, 95), flierprops={"markersize": 2})
        ax.set_yticks(range(1, len(keys) + 1), labels, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("invoke latency, ms (log scale; box = quartiles, whiskers = p5-p95)")
        ax.set_title(f"MobileNetV2 224 invoke latency per backend, {allt} threads\n{cpu}", fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
        fig.tight_layout()
        p = common.DOCS / "bench_latency_backends.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    e = results.get("e2e")
    if e:
        med = e["median_ms"]
        names = [n for n in med if allt in med[n]]
        sizes = list(e["photos"])
        fig, axes = plt.subplots(1, len(sizes), figsize=(4.6 * len(sizes), 4.2), sharey=False)
        colors = {"decode": "#4C72B0", "preprocess": "#DD8452", "invoke": "#55A868"}
        for ax, size in zip(axes, sizes, strict=True):
            bottoms = [0.0] * len(names)
            for part in ("decode", "preprocess", "invoke"):
                vals = [med[n][allt].get(size, {}).get(part, 0.0) for n in names]
                ax.bar(range(len(names)), vals, bottom=bottoms, color=colors[part], label=part)
                bottoms = [a + v for a, v in zip(bottoms, vals, strict=True)]
            for i, n in enumerate(names):
                tot = med[n][allt].get(size, {}).get("total")
                if tot:
                    ax.text(i, bottoms[i], f"{tot:.0f}", ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(names)), [n.replace(" (", "\n(").replace(" + ", "\n+ ") for n in names],
                          rotation=60, ha="right", fontsize=7)
            ax.set_title(f"{size} JPEG", fontsize=10)
            ax.set_ylabel("ms (median; number = total wall)")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"Photo to label, split into decode / preprocess / invoke, {allt} threads - {cpu}", fontsize=10)
        fig.tight_layout()
        p = common.DOCS / "bench_e2e_split.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    return made


def _did_not_run(errors: dict[str, str] | None) -> list[str]:
    """Table footer naming each contender that failed, with the last line of its error."""
    if not errors:
        return []
    return ["", "Did not run: " + "; ".join(f"{k}: {v.strip().splitlines()[-1][:200]}" for k, v in errors.items())]


def tables(results: dict) -> str:
    """Markdown tables of the medians and ratios (pasted into docs/benchmarks.md)."""
    lines: list[str] = []
    r = results.get("invoke")
    if r:
        lines += ["### 1. SDK overhead (invoke, 640x480 photo preprocessed)", "",
                  "| threads | Classifier.invoke | same interpreter invoke() | bare LiteRT set+invoke+get | "
                  "ratio vs invoke() | ratio vs set+invoke+get | skinedge bench ratio |",
                  "|---|---|---|---|---|---|---|"]
        sb = {str(x["threads"]): x["sdk_overhead_ratio"] for x in r.get("skinedge_bench", [])}
        for t, v in r["by_threads"].items():
            m = {k: s["median"] for k, s in v["stats_ms"].items()}
            lines.append(f"| {t} | {m['classifier_invoke']:.2f} ms | {m['same_interpreter_invoke']:.2f} ms | "
                         f"{m['bare_litert_set_invoke_get']:.2f} ms | {v['overhead_vs_same_interpreter']:.3f} | "
                         f"{v['overhead_vs_bare_set_invoke_get']:.3f} | {sb.get(t, '')} |")
        lines.append("")
    m = results.get("models")
    if m:
        lines += ["### 1b. Models side by side (Classifier.invoke, 640x480 photo preprocessed, one process, "
                  f"interleaved; ratio to {m['baseline']})", "",
                  "| threads | model | wall median | ratio (median of round ratios; min-max) | CPU median | "
                  "CPU ratio |",
                  "|---|---|---|---|---|---|"]
        for t, v in m["by_threads"].items():
            for k, w in v["wall_ms"].items():
                r = v.get("ratio_to_baseline", {}).get(k, {})
                nan = float("nan")
                lo, hi = r.get("wall_round_ratios_min_max", [nan, nan])
                lines.append(f"| {t} | {k} | {w['median']:.2f} ms | {r.get('wall_round_ratios_median', nan):.3f} "
                             f"({lo:.3f}-{hi:.3f}) | {v['cpu_ms'][k]['median']:.2f} ms | "
                             f"{r.get('cpu_of_medians', nan):.3f} |")
        lines += ["", f"Load average (1, 5, 15 min) at start {m['loadavg_start']}, at end {m['loadavg_end']}.", ""]
    e = results.get("e2e")
    if e:
        sizes = list(e["photos"])
        lines += ["### 2. Photo to label (median ms, total; ratio to skinedge in brackets)", ""]
        for t in sorted({t for v in e["median_ms"].values() for t in v}, key=int):
            lines += [f"{t} thread(s):", "", "| contender | " + " | ".join(sizes) + " | top-1 (each size) |",
                      "|---|" + "---|" * (len(sizes) + 1)]
            for name, by_t in e["median_ms"].items():
                if t not in by_t:
                    continue
                cells = []
                for s in sizes:
                    x = by_t[t].get(s)
                    ratio = e["ratio_to_skinedge"].get(name, {}).get(t, {}).get(s)
                    cells.append(f"{x['total']:.1f} ({ratio:.2f}x)" if x and ratio else "-")
                tops = ",".join(str(by_t[t][s]["top1"]) for s in sizes if s in by_t[t])
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {tops} |")
            lines.append("")
        lines += ["Split (median ms, decode / preprocess / invoke), all cores:", "",
                  "| contender | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
        allt = str(max(int(t) for v in e["median_ms"].values() for t in v))
        for name, by_t in e["median_ms"].items():
            if allt in by_t:
                cells = [f"{x['decode']:.1f} / {x['preprocess']:.1f} / {x['invoke']:.1f}" if (x := by_t[allt].get(s))
                         else "-" for s in sizes]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += _did_not_run(e.get("errors"))
        lines.append("")
    b = results.get("backends")
    if b:
        ts = sorted({t for v in b["engines"].values() for t in v["by_threads"]}, key=int)
        lines += ["### 3. Backends and formats (invoke median ms; ratio to int8 LiteRT XNNPACK)", "",
                  "| format | engine | version | delegated | " + " | ".join(f"{t} thr" for t in ts) + " |",
                  "|---|---|---|---|" + "---|" * len(ts)]
        for key, v in b["engines"].items():
            cells = []
            for t in ts:
                s = v["by_threads"].get(t)
                ratio = b["ratio_to_int8_litert_xnnpack"].get(t, {}).get(key)
                cells.append(f"{s['median']:.2f} ({ratio:.2f}x)" if s and ratio else "-")
            lines.append(f"| {v['format']} | {v['label']} | {v['version']} | {v['delegated']} | "
                         + " | ".join(cells) + " |")
        lines += _did_not_run(b.get("errors"))
        lines.append("")
    bt = results.get("batch")
    if bt:
        lines += [f"### 4. Batch of {bt['images']} mixed photos (images/s, median of rounds)", "",
                  "| threads | decode+resize only | invoke only | bound (slower stage) | classify_many | "
                  "% of bound | sequential classify | skinedge predict (CLI, incl. start) | % of bound |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t, v in bt["by_threads"].items():
            ips = v["images_per_s"]
            lines.append(f"| {t} | {ips['decode']:.1f} | {ips['invoke']:.1f} | {v['bound_images_per_s']:.1f} "
                         f"({v['bound_is']}) | {ips['classify_many']:.1f} | "
                         f"{100 * v['classify_many_fraction_of_bound']:.0f}% | {ips['sequential']:.1f} | "
                         f"{ips['cli']:.1f} | {100 * v['cli_fraction_of_bound']:.0f}% |")
        lines.append("")
    c = results.get("cold")
    if c:
        lines += ["### 5. Cold start and memory (fresh process, median)", "",
                  "| command | wall | peak RSS (MiB) |", "|---|---|---|"]
        for k, v in c["wall_s"].items():
            lines.append(f"| {k} | {v['median']:.3f} s (n={v['n']}) | {c['peak_rss_mb'][k]['median']:.1f} |")
        r = c.get("ratio_vs_plain_script")
        if r:
            lines += ["", f"skinedge predict / plain LiteRT script, {c['runs']} interleaved rounds (load "
                      f"{c['loadavg'][0]:.1f}): **{r['median_of_round_ratios']:.3f}** (median of per-round ratios; "
                      f"ratio of medians {r['of_medians']:.3f}, of minima {r['of_minima']:.3f})"]
        it = c["importtime"]
        lines += ["", f"`-X importtime`: {it['total_ms']:.0f} ms in {it['modules']} modules; tensorflow/cv2/keras/"
                  f"torch/jax imported: {it['forbidden_imported'] or 'none'}; by top-level package (ms): "
                  + ", ".join(f"{k} {v}" for k, v in it["top_level_ms"].items())]
        g = c.get("rss_growth")
        if g:
            lines += ["", f"RSS over {g['n']} classifications (after {g['warmup']} warm-up): "
                      f"{g['rss_start_bytes'] / 2**20:.2f} MiB -> {g['rss_end_bytes'] / 2**20:.2f} MiB, growth "
                      f"{g['growth_bytes'] / 2**20:.3f} MiB (max {g['max_growth_bytes'] / 2**20:.3f} MiB)."]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated, from {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="fewer runs: a smoke run of the harness")
    parser.add_argument("--rss-n", type=int, default=10_000, help="classifications for the RSS-growth check (0: skip)")
    parser.add_argument("--plots-only", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick or common.quick()
    if not args.plots_only:
        selected = [s for s in args.suites.split(",") if s]
        bad = set(selected) - set(SUITES)
        if bad:
            parser.error(f"unknown suites {sorted(bad)}")
        run(selected, quick, args.rss_n if not quick else min(args.rss_n, 500))
    results = load_results()
    results_summary = suites.summarize_targets(results)
    common.write_result("summary", {"targets": results_summary, "machine": common.machine()})
    for p in plot(results):
        print(f"plot {p}")
    md = common.RESULTS / "tables.md"
    md.write_text(tables(results))
    print(f"tables {md}")
    print(json.dumps(results_summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
