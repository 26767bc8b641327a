"""Issue 21: which score tells the model when not to answer? Approaches side by side on validation.

For each trained run (the float Keras network of its stage-3 checkpoint) this computes, on skin6 val (the photos
it must answer) and on each outlier set's val split (photos it must not answer: ``not-skin``, ``skin-other``):

* baselines from the six class logits: max softmax probability (MSP), energy (logsumexp), max logit;
* density on the pooled backbone features: Mahalanobis distance to the nearest class (shared covariance, fitted on
  the skin6 training photos) and cosine kNN (k=10) to the training photos;
* outlier exposure (runs trained with ``--outliers``, HOD-style): the abstention classes' softmax probability.

For each score: AUROC of skin6 val against each outlier set, and the share of outlier photos answered when the
score alone is thresholded to answer 92% of skin6 val. ``--split test`` measures test once, after the choice.

    python tools/experiments/abstention_trials.py --run models/run-efficientnet-lite0 --run runs/lite0_oe \\
        --data ../shared/data/skin6 --outliers not_skin=../shared/data/not-skin \\
        --outliers other_condition=../shared/data/skin-other --out tools/experiments/results/abstention.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from scipy.special import logsumexp, softmax
from skinedge_tools import data as data_mod
from skinedge_tools.train import discover_splits, load_trained
from sklearn.metrics import roc_auc_score

COVERAGE = 0.92


def _features_and_logits(model, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import keras

    both = keras.Model(model.input, [model.get_layer("pool").output, model.output])
    outs = [both.predict(x.astype(np.float32), batch_size=32, verbose=0) for x in arrays]
    return [o[0] for o in outs], [o[1] for o in outs]


def _mahalanobis(train_f: np.ndarray, train_y: np.ndarray, k: int):
    means = np.stack([train_f[train_y == c].mean(0) for c in range(k)])
    centred = train_f - means[train_y]
    cov = centred.T @ centred / len(train_f) + 1e-3 * np.eye(train_f.shape[1])
    prec = np.linalg.inv(cov)

    def score(f: np.ndarray) -> np.ndarray:  # higher = more in-distribution
        d = np.stack([np.einsum("ij,jk,ik->i", f - m, prec, f - m) for m in means], 1)
        return -d.min(1)

    return score


def _knn(train_f: np.ndarray, k: int = 10):
    bank = train_f / np.linalg.norm(train_f, axis=1, keepdims=True)

    def score(f: np.ndarray) -> np.ndarray:
        q = f / np.linalg.norm(f, axis=1, keepdims=True)
        return np.sort(q @ bank.T, axis=1)[:, -k]

    return score


def answered_at_coverage(in_score: np.ndarray, out_score: np.ndarray, coverage: float = COVERAGE) -> float:
    """Share of ``out_score`` at or above the threshold that answers ``coverage`` of ``in_score``."""
    t = np.quantile(in_score, 1.0 - coverage)
    return float((out_score >= t).mean())


def evaluate_run(run: Path, outliers: dict[str, str], data_root: str | None, split: str, cache: str) -> dict:
    model, cfg = load_trained(run, "stage3")
    if data_root:
        cfg.data_root = data_root
    spec = cfg.spec()
    splits = discover_splits(cfg)
    (xtr, strn), (xin, sin) = (data_mod.load_arrays(splits[s], spec, cache) for s in ("train", split))
    k = len(cfg.classes)
    out_arrays = {}
    for j, (name, root) in enumerate(outliers.items()):
        out_arrays[name], _ = data_mod.load_arrays(data_mod.discover_outliers(root, k + j)[split], spec, cache)
    names = list(out_arrays)
    feats, logits = _features_and_logits(model, [xtr, xin, *out_arrays.values()])
    ftr, fin, fout = feats[0], feats[1], dict(zip(names, feats[2:]))
    lin, lout = logits[1], dict(zip(names, logits[2:]))
    maha, knn = _mahalanobis(ftr, strn.labels, k), _knn(ftr)
    scores = {  # every score: higher = answer
        "msp": lambda lg, f: softmax(lg[:, :k], axis=1).max(1),
        "energy": lambda lg, f: logsumexp(lg[:, :k], axis=1),
        "max_logit": lambda lg, f: lg[:, :k].max(1),
        "mahalanobis": lambda lg, f: maha(f),
        "knn_cosine": lambda lg, f: knn(f),
    }
    if lin.shape[1] > k:  # abstention classes (outlier exposure): answer when their probability mass is low
        gate_names = list(cfg.outliers)
        scores["oe_outlier_mass"] = lambda lg, f: -softmax(lg, axis=1)[:, k:].sum(1)
        for j, g in enumerate(gate_names):
            scores[f"oe_{g}"] = lambda lg, f, j=j: -softmax(lg, axis=1)[:, k + j]
        scores["oe_msp8"] = lambda lg, f: softmax(lg, axis=1)[:, :k].max(1)
    result = {"run": str(run), "split": split, "n_in": int(len(xin)),
              "n_out": {n: int(len(out_arrays[n])) for n in names},
              "in_macro_acc": float((lin[:, :k].argmax(1) == sin.labels).mean()), "scores": {}}
    for sname, fn in scores.items():
        s_in = fn(lin, fin)
        row = {}
        for n in names:
            s_out = fn(lout[n], fout[n])
            y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
            row[n] = {"auroc": round(float(roc_auc_score(y, np.r_[s_in, s_out])), 4),
                      "answered_at_92": round(answered_at_coverage(s_in, s_out), 4)}
        result["scores"][sname] = row
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--outliers", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--cache-dir", default=os.environ.get("SKINEDGE_CACHE", str(Path.home() / ".cache/skinedge-tools")))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    outliers = dict(o.split("=", 1) for o in a.outliers)
    results = [evaluate_run(Path(r), outliers, a.data, a.split, a.cache_dir) for r in a.run]
    for r in results:
        print(f"\n{r['run']} ({r['split']}: {r['n_in']} skin6, {r['n_out']}), top-1 {r['in_macro_acc']:.3f}")
        for sname, row in r["scores"].items():
            cells = "  ".join(f"{n}: AUROC {v['auroc']:.3f} answered {v['answered_at_92']:.1%}" for n, v in row.items())
            print(f"  {sname:18s} {cells}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
