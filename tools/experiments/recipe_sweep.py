"""Research harness: many variants of the three-stage recipe at once, on a GPU, to rank them.

Not the product's training path (that is ``skinedge-tools train``, TensorFlow). This script runs the
same network (``skinedge_tools.model``) and the same three stages under Keras 3's PyTorch backend, so
it runs where TensorFlow is not installed, several variants in parallel worker processes. The data
come as a pack of the runtime-preprocessed arrays re-encoded as JPEG (``--quality``, default 90: mean
absolute pixel error 1.7/255; the 2026-11-26 run used 85, 2/255, to fit a 64 MiB transfer): figures from
here rank variants; the shipped figures come from the TensorFlow pipeline on the original files. Class
weights and metrics come from scikit-learn here because ``skinedge_tools.data`` imports the runtime,
which the GPU machine did not have.

    python tools/experiments/recipe_sweep.py pack --cache-dir CACHE --out pack.npz   # needs tools/ (TF)
    KERAS_BACKEND=torch python tools/experiments/recipe_sweep.py sweep --pack pack.npz \\
        --weights W.h5 --out results/ --workers 8 --budget 480 [--only NAME ...]

Each finished run writes ``<out>/<name>.json``: per-stage validation/test accuracy and macro-F1,
per-epoch validation macro-F1, seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BASE = {
    "alpha": 1.0,
    "size": 224,
    "batch": 32,
    "dropout": 0.2,
    "label_smoothing": 0.1,
    "rotation": 0.1,
    "zoom": 0.2,
    "translate": 0.1,
    "contrast": 0.2,
    "lr1": 1e-3,
    "epochs1": 12,
    "unfreeze": "block_8",
    "lr2": 1e-4,
    "schedule2": "cosine",
    "epochs2": 10,
    "lr3": 1e-5,
    "schedule3": "constant",
    "epochs3": 8,
    "weight_decay": 0.0,
    "limit": 0,
}

# name -> overrides of BASE. Order is priority: the queue runs seed 0 of every variant first.
VARIANTS = {
    "base": {},
    "unfreeze_all": {"unfreeze": "Conv1"},
    "unfreeze_all_lr5e-5": {"unfreeze": "Conv1", "lr2": 5e-5},
    "lr2_3e-4": {"lr2": 3e-4},
    "strong_aug": {"rotation": 0.5, "zoom": 0.3, "translate": 0.15, "contrast": 0.3},
    "strong_aug_dropout0.5": {"rotation": 0.5, "zoom": 0.3, "translate": 0.15, "contrast": 0.3, "dropout": 0.5},
    "dropout0.5": {"dropout": 0.5},
    "no_smoothing": {"label_smoothing": 0.0},
    "stage3_lr3e-5_cos": {"lr3": 3e-5, "schedule3": "cosine"},
    "batch16": {"batch": 16},
    "unfreeze_all_strong_aug": {"unfreeze": "Conv1", "rotation": 0.5, "zoom": 0.3, "translate": 0.15, "contrast": 0.3},
    "block_13_lr1e-4": {"unfreeze": "block_13"},
}


# ---------------------------------------------------------------- pack (runs beside TensorFlow)
def pack(cache_dir: str, data_root: str, out: str, quality: int) -> None:
    import numpy as np
    from PIL import Image
    from skinedge_tools import data as data_mod
    from skinedge_tools.train import TrainConfig, discover_splits

    cfg = TrainConfig(data_root=data_root)
    res = {}
    for name, split in discover_splits(cfg).items():
        x, kept = data_mod.load_arrays(split, cfg.spec(), cache_dir)
        blobs = []
        for im in x:
            b = io.BytesIO()
            Image.fromarray(im).save(b, "JPEG", quality=quality)
            blobs.append(b.getvalue())
        res[f"{name}_bytes"] = np.frombuffer(b"".join(blobs), np.uint8)
        res[f"{name}_offs"] = np.cumsum([0] + [len(b) for b in blobs])
        res[f"{name}_labels"] = kept.labels
    np.savez(out, **res)


def _unpack(path: str, limit: int):
    import numpy as np
    from PIL import Image

    z = np.load(path)
    out = {}
    for name in ("train", "val", "test"):
        raw, offs, labels = z[f"{name}_bytes"].tobytes(), z[f"{name}_offs"], z[f"{name}_labels"]
        idx = np.arange(len(labels))
        if limit:
            idx = np.concatenate([np.flatnonzero(labels == c)[:limit] for c in range(6)])
        x = np.stack([np.asarray(Image.open(io.BytesIO(raw[offs[i] : offs[i + 1]]))) for i in idx])
        out[name] = (x, labels[idx])
    return out


# ---------------------------------------------------------------- one run (a worker process)
def one_run(cfg: dict, pack_path: str, weights: str, out_path: str) -> None:
    import keras
    import numpy as np
    from skinedge_tools.model import augmenter, build_model, set_trainable_from
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.utils.class_weight import compute_class_weight

    t_start = time.time()
    keras.utils.set_random_seed(cfg["seed"])
    data = _unpack(pack_path, cfg["limit"])
    if cfg["size"] != data["train"][0].shape[1]:
        import torch
        import torch.nn.functional as F  # noqa: N812

        def rs(x):
            t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
            return F.interpolate(t, size=(cfg["size"],) * 2, mode="bilinear").permute(0, 2, 3, 1).numpy()

        data = {k: (rs(x), y) for k, (x, y) in data.items()}
    xs, ys = data["train"][0].astype("float32"), data["train"][1]
    xv, yv = data["val"][0].astype("float32"), data["val"][1]
    xt, yt = data["test"][0].astype("float32"), data["test"][1]
    k = 6
    oh = lambda y: keras.utils.to_categorical(y, k).astype("float32")  # noqa: E731
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg["label_smoothing"])
    model = build_model(k, alpha=cfg["alpha"], size=cfg["size"], weights=weights, dropout=cfg["dropout"])
    result = {"config": cfg, "stages": {}}

    def scores(x, y):
        p = model.predict(x, batch_size=128, verbose=0).argmax(1)
        return float(accuracy_score(y, p)), float(f1_score(y, p, average="macro"))

    def opt(lr, epochs, schedule, steps):
        if schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps))
        if cfg["weight_decay"]:
            return keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg["weight_decay"])
        return keras.optimizers.Adam(learning_rate=lr)

    class Track(keras.callbacks.Callback):
        """Per-epoch validation macro-F1; keeps the best weights (stage 2) or early-stops on val loss."""

        def __init__(self, keep_best: bool, patience: int | None):
            super().__init__()
            self.keep_best, self.patience = keep_best, patience
            self.f1s, self.best, self.best_w, self.best_loss, self.wait = [], -1.0, None, np.inf, 0

        def on_epoch_end(self, epoch, logs=None):
            f1 = scores(xv, yv)[1]
            self.f1s.append(f1)
            val_loss = (logs or {}).get("val_loss", 0.0)
            print(
                f"epoch {epoch + 1} val_f1 {f1:.4f} val_loss {val_loss:.4f} t={time.time() - t_start:.0f}s", flush=True
            )
            if self.keep_best and f1 > self.best:
                self.best, self.best_w = f1, model.get_weights()
            if self.patience:
                vl = (logs or {}).get("val_loss")
                if vl < self.best_loss:
                    self.best_loss, self.best_w, self.wait = vl, model.get_weights(), 0
                else:
                    self.wait += 1
                    if self.wait >= self.patience:  # as keras EarlyStopping: restores only when it stops
                        self.model.stop_training = True
                        model.set_weights(self.best_w)

        def on_train_end(self, logs=None):
            if self.keep_best and self.best_w is not None:
                model.set_weights(self.best_w)

    steps = int(np.ceil(len(xs) / cfg["batch"]))
    # stage 1: head on fixed pooled features (same math as a frozen backbone, as in train.py)
    t0 = time.time()
    set_trainable_from(model, None)
    trunk = keras.Model(model.input, model.get_layer("pool").output)
    ftr = trunk.predict(xs, batch_size=128, verbose=0)
    inp = keras.Input(ftr.shape[1:])
    head = keras.Model(inp, model.get_layer("logits")(keras.layers.Dropout(cfg["dropout"])(inp)))
    head.compile(optimizer=opt(cfg["lr1"], cfg["epochs1"], "constant", steps), loss=loss)
    head.fit(ftr, oh(ys), batch_size=cfg["batch"], epochs=cfg["epochs1"], shuffle=True, verbose=0)
    result["stages"]["stage1"] = _stage_scores(scores, xv, yv, xt, yt, t0, [])

    aug = augmenter(
        cfg["rotation"], cfg["zoom"], seed=cfg["seed"], translate=cfg["translate"], contrast=cfg["contrast"]
    )
    inp = keras.Input((cfg["size"], cfg["size"], 3))
    trainer = keras.Model(inp, model(aug(inp)))
    cw = compute_class_weight("balanced", classes=np.arange(k), y=ys)
    for stage, lr, sched, epochs, keep_best, patience, weighted in (
        ("stage2", cfg["lr2"], cfg["schedule2"], cfg["epochs2"], True, None, False),
        ("stage3", cfg["lr3"], cfg["schedule3"], cfg["epochs3"], False, 3, True),
    ):
        t0 = time.time()
        set_trainable_from(model, cfg["unfreeze"])
        trainer.compile(optimizer=opt(lr, epochs, sched, steps), loss=loss)
        track = Track(keep_best, patience)
        trainer.fit(
            xs,
            oh(ys),
            batch_size=cfg["batch"],
            epochs=epochs,
            shuffle=True,
            validation_data=(xv, oh(yv)),
            class_weight={i: float(w) for i, w in enumerate(cw)} if weighted else None,
            callbacks=[track],
            verbose=0,
        )
        result["stages"][stage] = _stage_scores(scores, xv, yv, xt, yt, t0, track.f1s)
    result["seconds"] = round(time.time() - t_start, 1)
    Path(out_path).write_text(json.dumps(result, indent=1))


def _stage_scores(scores, xv, yv, xt, yt, t0, f1s) -> dict:
    va, vf = scores(xv, yv)
    ta, tf = scores(xt, yt)
    return {"val_acc": va, "val_f1": vf, "test_acc": ta, "test_f1": tf, "val_f1_epochs": f1s, "s": time.time() - t0}


# ---------------------------------------------------------------- the sweep (scheduler)
def sweep(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(VARIANTS)
    queue = [(n, s) for s in args.seeds for n in names]
    running: dict = {}
    deadline = time.time() + args.budget
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    while (queue or running) and time.time() < deadline:
        while queue and len(running) < args.workers:
            name, seed = queue.pop(0)
            cfg = {**BASE, **VARIANTS[name], "name": name, "seed": seed}
            if args.limit:
                cfg["limit"], cfg["alpha"], cfg["size"] = args.limit, args.alpha, args.size
            cfg["epochs1"], cfg["epochs2"], cfg["epochs3"] = (
                (args.epochs,) * 3 if args.epochs else (cfg["epochs1"], cfg["epochs2"], cfg["epochs3"])
            )
            dst = out / f"{name}_s{seed}.json"
            log = open(out / f"{name}_s{seed}.log", "w")
            cmd = [sys.executable, __file__, "one", json.dumps(cfg), args.pack, args.weights, str(dst)]
            running[(name, seed)] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time())
            print(f"[{time.strftime('%X')}] start {name} s{seed}", flush=True)
        time.sleep(2)
        for key, (proc, t) in list(running.items()):
            if proc.poll() is not None:
                del running[key]
                print(f"[{time.strftime('%X')}] done {key} rc={proc.returncode} {time.time() - t:.0f}s", flush=True)
                _print_table(out)
    for key, (proc, _) in running.items():
        proc.kill()
        print(f"killed unfinished {key}", flush=True)
    _print_table(out)


def _print_table(out: Path) -> None:
    rows = []
    for f in sorted(out.glob("*.json")):
        r = json.loads(f.read_text())
        s = r["stages"]
        rows.append(
            f"{f.stem:32s} s1 {s['stage1']['val_f1']:.3f}/{s['stage1']['test_f1']:.3f}"
            f"  s2 {s['stage2']['val_f1']:.3f}/{s['stage2']['test_f1']:.3f}"
            f"  s3 {s['stage3']['val_f1']:.3f}/{s['stage3']['test_f1']:.3f}  {r['seconds']:.0f}s"
        )
    print("variant, seed          val/test macro-F1 per stage\n" + "\n".join(rows), flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        one_run(json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
        return
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack")
    pk.add_argument("--cache-dir", required=True)
    pk.add_argument("--data", default="../shared/data/skin6")
    pk.add_argument("--out", required=True)
    pk.add_argument("--quality", type=int, default=90)
    sw = sub.add_parser("sweep")
    sw.add_argument("--pack", required=True)
    sw.add_argument("--weights", required=True)
    sw.add_argument("--out", required=True)
    sw.add_argument("--workers", type=int, default=8)
    sw.add_argument("--budget", type=float, default=480)
    sw.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    sw.add_argument("--only", nargs="+")
    sw.add_argument("--limit", type=int, default=0, help="images per class (smoke runs)")
    sw.add_argument("--alpha", type=float, default=0.35)
    sw.add_argument("--size", type=int, default=96)
    sw.add_argument("--epochs", type=int, default=0, help="override every stage's epochs (smoke runs)")
    a = p.parse_args()
    if a.cmd == "pack":
        pack(a.cache_dir, a.data, a.out, a.quality)
    else:
        sweep(a)


if __name__ == "__main__":
    main()
