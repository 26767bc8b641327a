"""A distillation teacher's probabilities on the training photos: the mean of fine-tuned networks' softmax.

    python tools/experiments/distill_teacher.py models/run-efficientnet-lite0 runs/lite1_s0 \
        --out runs/teacher_l0l1.npz [--temperature 2] [--cache-dir runs/cache]

Each run's stage-3 network scores the training photos at its own input size (from the same cached arrays
training used), ``softmax(logits / T)``; the members are averaged. Writes ``paths`` and ``probs`` for
``skinedge-tools train --teacher FILE --distill W``.
"""

from __future__ import annotations

import argparse

import numpy as np
from skinedge_tools import data as data_mod
from skinedge_tools.train import discover_splits, load_trained

from skinedge.classifier import softmax


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--cache-dir", default="runs/cache")
    args = ap.parse_args()
    paths, members = None, []
    for run in args.runs:
        model, cfg = load_trained(run)
        x, split = data_mod.load_arrays(discover_splits(cfg)["train"], cfg.spec(), args.cache_dir)
        if paths is not None and list(split.paths) != paths:
            raise SystemExit(f"{run}: other training photos than the first member")
        paths = list(split.paths)
        z = model.predict(x.astype(np.float32), batch_size=32, verbose=0)
        members.append(np.stack([softmax(row, args.temperature) for row in z]))  # the runtime's softmax
        print(f"{run}: train accuracy {(members[-1].argmax(1) == split.labels).mean():.3f}")
    probs = np.mean(members, 0)
    np.savez(args.out, paths=np.asarray(paths), probs=probs.astype(np.float32))
    print(f"wrote {args.out}: {len(paths)} photos, mean top probability {probs.max(1).mean():.3f}")


if __name__ == "__main__":
    main()
