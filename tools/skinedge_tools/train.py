"""The paper's three training stages, with their histories, checkpoints and per-image logits.

Stage 1: backbone frozen, head only. Stage 2: + augmentation, upper backbone unfrozen.
Stage 3: + class weights, low learning rate, early stopping with the best weights restored.
Every stage writes ``<out>/<stage>/``: ``model.weights.h5`` (the TensorFlow/Keras checkpoint),
``history.csv`` (train and validation loss, accuracy, macro precision/recall/F1 per epoch) and
``logits_val.npy`` / ``logits_test.npy`` for the evaluation and the statistics.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from skinedge.preprocess import PreprocessSpec
from skinedge_tools import data as data_mod
from skinedge_tools.model import (
    DEFAULT_BACKBONE,
    UNFREEZE_FROM,
    augmenter,
    backbone_of,
    build_model,
    native_size,
    set_trainable_from,
)
from skinedge_tools.source_augment import source_augment

log = logging.getLogger(__name__)


@dataclass
class StageConfig:
    """One training stage."""

    name: str
    epochs: int
    lr: float
    unfreeze_from: str | None = None  # first backbone layer to train; None keeps it frozen
    augment: bool = False
    class_weights: bool = False
    schedule: str = "constant"  # or "cosine" (decays to 0 over the stage)
    early_stop_patience: int | None = None  # on val loss, best weights restored
    keep_best: str | None = None  # restore the epoch with the best value of this val metric
    average_weights: bool = False  # SWA: the mean of the epochs' weights, kept if it scores better on val


def paper_stages(backbone: str = DEFAULT_BACKBONE) -> list[StageConfig]:
    """The three stages with this project's tuned values (see docs/method.md for the why); stages 2-3
    unfreeze the backbone's equivalent of MobileNetV2's ``block_8`` (``model.UNFREEZE_FROM``)."""
    top = UNFREEZE_FROM[backbone]
    return [
        StageConfig("stage1", epochs=12, lr=1e-3),
        StageConfig(
            "stage2",
            epochs=10,
            lr=1e-4,
            unfreeze_from=top,
            augment=True,
            schedule="cosine",
            keep_best="val_macro_f1",
        ),
        StageConfig(
            "stage3",
            epochs=8,
            lr=1e-5,
            unfreeze_from=top,
            augment=True,
            class_weights=True,
            early_stop_patience=3,
        ),
    ]


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` beside its outputs."""

    data_root: str
    backbone: str = DEFAULT_BACKBONE  # model.BACKBONES
    weights: str = "imagenet"
    classes: tuple[str, ...] = data_mod.DEFAULT_CLASSES
    alpha: float = 1.0
    size: int | None = None  # None: the backbone's native size (model.native_size)
    batch_size: int = 32
    dropout: float = 0.2
    label_smoothing: float = 0.1
    rotation: float = 0.1
    zoom: float = 0.2
    translate: float = 0.1  # fraction of height/width (0 disables)
    contrast: float = 0.2  # RandomContrast factor (0 disables)
    source_augment: bool = False  # augmented stages also redraw source cues (source_augment.SourceAugment)
    mixup: float = 0.0  # augmented stages blend photo pairs and their labels, Beta(a, a) weights (0 disables)
    teacher: str | None = None  # .npz of a teacher's training-photo probabilities (paths, probs): distillation
    distill: float = 0.0  # targets = distill * teacher probs + (1 - distill) * labels
    refit_on_val: bool = False  # train on train + val (a final refit: fixed epochs, val no longer held out)
    seed: int = 0
    limit_per_class: int | None = None  # small subsets for smoke runs
    train_fraction: float = 1.0  # train on this share of each class's training photos (learning curves)
    source_commit: str | None = None  # git commit of the code that trained (filled in by run())
    stages: list[StageConfig] | None = None  # None: paper_stages(backbone)
    # Outlier exposure (issue 21, HOD-style): abstention classes after the known ones, each trained on a folder of
    # photos it must not answer (name -> root with train/ val/ test/), e.g. not_skin, other_condition.
    outliers: dict[str, str] = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        """Logits of the network: the known classes, then one per abstention class."""
        return len(self.classes) + len(self.outliers)

    def __post_init__(self) -> None:
        size = native_size(self.backbone)  # also refuses an unknown backbone
        if self.size is None:
            self.size = size
        if self.stages is None:
            self.stages = paper_stages(self.backbone)
        if self.refit_on_val and any(s.keep_best or s.early_stop_patience for s in self.stages):
            # a checkpoint picked on photos it trained on would be picked on nothing
            raise ValueError("a refit on train + val needs fixed epochs: no keep_best or early stopping")

    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(height=self.size, width=self.size)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        d = json.loads(text)
        d["classes"] = tuple(d["classes"])
        # runs recorded before these options existed had neither augmentation
        d.setdefault("translate", 0.0)
        d.setdefault("contrast", 0.0)
        d.setdefault("source_augment", False)
        d.setdefault("refit_on_val", False)
        d.setdefault("train_fraction", 1.0)
        d.setdefault("mixup", 0.0)
        d.setdefault("teacher", None)
        d.setdefault("distill", 0.0)
        d.setdefault("backbone", "mobilenetv2")  # runs recorded before the choice existed
        d.setdefault("outliers", {})
        d["stages"] = [StageConfig(**s) for s in d["stages"]]
        return cls(**d)


class _MacroPrecision(keras.metrics.F1Score):
    def result(self):
        p = self.true_positives / (self.true_positives + self.false_positives + keras.backend.epsilon())
        return keras.ops.mean(p)


class _MacroRecall(keras.metrics.F1Score):
    def result(self):
        r = self.true_positives / (self.true_positives + self.false_negatives + keras.backend.epsilon())
        return keras.ops.mean(r)


def _metrics() -> list:
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        _MacroPrecision(average="macro", name="macro_precision"),
        _MacroRecall(average="macro", name="macro_recall"),
        keras.metrics.F1Score(average="macro", name="macro_f1"),
    ]


class _KeepBest(keras.callbacks.Callback):
    """Restore the weights of the epoch with the highest ``monitor`` at the end of training."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor, self.best, self.best_epoch, self.weights = monitor, -np.inf, -1, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best, self.best_epoch, self.weights = value, epoch, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)
            log.info("restored epoch %d (%s=%.4f)", self.best_epoch + 1, self.monitor, self.best)


class _AverageWeights(keras.callbacks.Callback):
    """Stochastic weight averaging over a stage: the running mean of every epoch's weights (batch-norm
    statistics included, which at a low, constant learning rate barely move). At the end the mean replaces
    the weights the stage would keep only if its validation macro-F1 is higher; both scores are recorded."""

    def __init__(self, val: tf.data.Dataset) -> None:
        super().__init__()
        self.val, self.mean, self.n, self.summary = val, None, 0, {}

    def on_epoch_end(self, epoch, logs=None):
        w = self.model.get_weights()
        self.n += 1
        if self.mean is None:
            self.mean = [a.astype(np.float64) for a in w]
        else:
            for m, a in zip(self.mean, w, strict=True):
                m += (a - m) / self.n

    def _val_f1(self) -> float:
        return float(self.model.evaluate(self.val, verbose=0, return_dict=True)["macro_f1"])

    def on_train_end(self, logs=None):
        if self.mean is None:
            return
        kept = self.model.get_weights()
        f1_kept = self._val_f1()
        self.model.set_weights([m.astype(a.dtype) for m, a in zip(self.mean, kept, strict=True)])
        f1_mean = self._val_f1()
        use_mean = f1_mean > f1_kept
        if not use_mean:
            self.model.set_weights(kept)
        self.summary = {"swa_epochs": self.n, "swa_val_macro_f1": f1_mean, "kept_val_macro_f1": f1_kept,
                        "swa_used": use_mean}
        log.info("weight average of %d epochs: val macro-F1 %.4f vs %.4f kept -> %s",
                 self.n, f1_mean, f1_kept, "average" if use_mean else "kept")


def _teacher_probs(path: str, paths: list[str], k: int) -> np.ndarray:
    """A teacher's probabilities for these training photos, matched by path (every photo must have one)."""
    with np.load(path, allow_pickle=False) as z:
        row = {p: i for i, p in enumerate(z["paths"])}
        probs = z["probs"].astype(np.float32)
    missing = [p for p in paths if p not in row]
    if missing or probs.shape[1] != k:
        raise ValueError(f"teacher {path}: {len(missing)} training photos missing, {probs.shape[1]} classes for {k}")
    return probs[[row[p] for p in paths]]


def _one_hot(y: np.ndarray, k: int) -> np.ndarray:
    return keras.utils.to_categorical(y, k).astype("float32")


def _mixup(x, y, seed, alpha: float):
    """Blend each photo with the batch's reversed order: ``lam * a + (1 - lam) * b`` for pixels and labels,
    ``lam`` drawn from Beta(alpha, alpha) and folded to [0.5, 1] so each photo stays the larger part."""
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    n = tf.shape(x)[0]
    g1 = tf.random.stateless_gamma([n], s[0], alpha)
    g2 = tf.random.stateless_gamma([n], s[1], alpha)
    lam = g1 / (g1 + g2)
    lam = tf.maximum(lam, 1.0 - lam)
    lx, ly = lam[:, None, None, None], lam[:, None]
    return lx * x + (1.0 - lx) * x[::-1], ly * y + (1.0 - ly) * y[::-1]


def _with_seeds(ds: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """``ds``'s elements paired with a stateless seed ``[2]`` each, drawn anew every epoch."""
    return tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)))


def _dataset(x, y, batch, shuffle, seed, aug=None, source_aug=False, mixup=0.0) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if source_aug:
        # one stateless seed per photo and epoch: per-photo changes (JPEG re-encoding) cannot run on a batch
        ds = _with_seeds(ds, seed).map(
            lambda ab, s: (source_augment(ab[0], s), ab[1]), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = ds.batch(batch)
    if aug is not None:
        ds = ds.map(lambda a, b: (aug(tf.cast(a, tf.float32), training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
    if mixup:
        ds = _with_seeds(ds, seed + 1).map(lambda ab, s: _mixup(ab[0], tf.cast(ab[1], tf.float32), s, mixup))
    return ds.prefetch(tf.data.AUTOTUNE)


def _optimizer(stage: StageConfig, steps_per_epoch: int):
    lr = stage.lr
    if stage.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(stage.lr, decay_steps=max(1, stage.epochs * steps_per_epoch))
    return keras.optimizers.Adam(learning_rate=lr)


def _write_history(path: Path, history: dict[str, list[float]]) -> None:
    keys = list(history)
    n = len(history[keys[0]]) if keys else 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for i in range(n):
            w.writerow([i + 1, *(f"{history[k][i]:.6f}" for k in keys)])


def _predict_each(model: keras.Model, arrays: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """``model``'s outputs on each array, in one ``predict`` call: the arrays are batched one by one and the
    batches chained, so every batch (the last, partial one of each array included) is the one a separate
    call would run, and one traced function serves them all (each call traces the model again, twice:
    full batches, then the partial one)."""
    ds = None
    for x in arrays:
        one = _dataset(x, np.zeros(len(x)), batch, False, 0).map(lambda a, b: a)
        ds = one if ds is None else ds.concatenate(one)
    out = model.predict(ds, verbose=0)
    return np.split(out, np.cumsum([len(x) for x in arrays])[:-1])


def _features(model: keras.Model, arrays: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Pooled backbone features (frozen backbone) for the head-only stage, for each array."""
    trunk = keras.Model(model.input, model.get_layer("pool").output)
    return _predict_each(trunk, arrays, batch)


def _train_head_on_features(model, cfg, stage, xs, ys_oh, xv, yv_oh) -> dict:
    """Stage 1 with a frozen backbone is exactly a head trained on fixed pooled features:
    compute them once instead of running the backbone 12 times (same math, ~8x less time)."""
    ftr, fva = _features(model, [xs, xv], cfg.batch_size)
    dense = model.get_layer("logits")
    inp = keras.Input(ftr.shape[1:])
    head = keras.Model(inp, dense(keras.layers.Dropout(cfg.dropout)(inp)))
    head.compile(
        optimizer=_optimizer(stage, int(np.ceil(len(ftr) / cfg.batch_size))),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
        metrics=_metrics(),
    )
    hist = head.fit(
        ftr,
        ys_oh,
        batch_size=cfg.batch_size,
        epochs=stage.epochs,
        validation_data=(fva, yv_oh),
        shuffle=True,
        verbose=2,
    )
    return hist.history


def run(
    cfg: TrainConfig,
    out_dir: str | Path,
    cache_dir: str | Path | None,
    strategy: tf.distribute.Strategy | None = None,
    only: list[str] | None = None,
) -> Path:
    """Train every stage of ``cfg`` (or those in ``only``, resuming from the previous checkpoint)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.source_commit is None:
        cfg.source_commit = _git_commit(Path(__file__).resolve().parents[2])
    (out / "config.json").write_text(cfg.to_json())
    keras.utils.set_random_seed(cfg.seed)
    strategy = strategy or tf.distribute.get_strategy()
    splits = discover_splits(cfg)
    spec = cfg.spec()
    arrays = {}
    for name, split in splits.items():
        t = time.time()
        x, kept = data_mod.load_arrays(split, spec, cache_dir)
        arrays[name] = (x, kept)
        log.info("%s: %d images (%.1fs)", name, len(x), time.time() - t)
        (out / f"{name}_files.txt").write_text("\n".join(kept.paths) + "\n")
    k = cfg.num_outputs
    (xs, strn), (xv, sval), (xt, _) = arrays["train"], arrays["val"], arrays["test"]
    ood = _load_outliers(cfg, spec, cache_dir, out)
    n_val_known = len(xv)
    if ood:  # training and validation (checkpoint choice, early stopping) see the abstention classes too
        xs, strn = _concat(xs, strn, *ood["train"])
        xv, sval = _concat(xv, sval, *ood["val"])
    if cfg.refit_on_val:
        xs = np.concatenate([xs, xv])
        strn = data_mod.Split(strn.root, strn.paths + sval.paths, np.concatenate([strn.labels, sval.labels]))
        (out / "train_files.txt").write_text("\n".join(strn.paths) + "\n")
    ys, yv = _one_hot(strn.labels, k), _one_hot(sval.labels, k)
    if cfg.teacher and cfg.distill:
        ys = cfg.distill * _teacher_probs(cfg.teacher, strn.paths, k) + (1.0 - cfg.distill) * ys
    with strategy.scope():
        model = _network(cfg, cfg.weights)
        # The same layers, never compiled: it keeps one traced predict function for every stage (compile
        # resets the model's own), and saves the weights alone (no optimizer state) with no second network.
        infer = keras.Model(model.input, model.output, name=model.name)
    prev = None
    for stage in cfg.stages:
        sdir = out / stage.name
        if only and stage.name not in only:
            prev = sdir
            continue
        if prev is not None and (prev / "model.weights.h5").exists():
            model.load_weights(prev / "model.weights.h5")
        sdir.mkdir(exist_ok=True)
        t0 = time.time()
        log.info("== %s: %s", stage.name, stage)
        if stage.unfreeze_from is None and not stage.augment:
            set_trainable_from(model, None)
            history, extra = _train_head_on_features(model, cfg, stage, xs, ys, xv, yv), {}
        else:
            history, extra = _fit_stage(model, cfg, stage, strategy, xs, strn.labels, ys, xv, yv)
        infer.save_weights(sdir / "model.weights.h5")
        _write_history(sdir / "history.csv", history)
        _save_logits(infer, cfg, sdir, xv[:n_val_known], xt, ood)
        record = {**asdict(stage), **extra, "seconds": round(time.time() - t0, 1)}
        (sdir / "stage.json").write_text(json.dumps(record, indent=2))
        log.info("== %s done in %.0fs", stage.name, time.time() - t0)
        prev = sdir
    return out


def _load_outliers(cfg: TrainConfig, spec, cache_dir, out: Path) -> dict[str, tuple[np.ndarray, data_mod.Split]]:
    """Each split's outlier photos of every abstention class, concatenated (labels after the known classes);
    ``<split>_outlier_files.txt`` lists them as ``path<TAB>class``."""
    if not cfg.outliers:
        return {}
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for j, (name, root) in enumerate(cfg.outliers.items()):
        for split_name, split in data_mod.discover_outliers(root, len(cfg.classes) + j).items():
            if cfg.limit_per_class:
                n = cfg.limit_per_class
                split = data_mod.Split(split.root, split.paths[:n], split.labels[:n])
            x, kept = data_mod.load_arrays(split, spec, cache_dir)
            parts[split_name].append((x, kept, name))
            log.info("outliers %s/%s: %d images", name, split_name, len(x))
    result = {}
    for split_name, items in parts.items():
        x = np.concatenate([i[0] for i in items])
        paths = [str(Path(i[1].root, p)) for i in items for p in i[1].paths]
        labels = np.concatenate([i[1].labels for i in items])
        names = [i[2] for i in items for _ in i[1].paths]
        (out / f"{split_name}_outlier_files.txt").write_text("".join(f"{p}\t{n}\n" for p, n in zip(paths, names)))
        result[split_name] = (x, data_mod.Split(Path("/"), paths, labels))
    return result


def _concat(x: np.ndarray, split: data_mod.Split, x2: np.ndarray, split2: data_mod.Split):
    # the outliers' paths are absolute (another root): only their labels and order matter to training
    return np.concatenate([x, x2]), data_mod.Split(
        split.root, split.paths + split2.paths, np.concatenate([split.labels, split2.labels])
    )


def _save_logits(infer: keras.Model, cfg: TrainConfig, sdir: Path, xv, xt, ood) -> None:
    """Per-image logits of the known classes' val/test photos, and of the outlier photos when trained with them."""
    arrays = [xv, xt] + ([ood["val"][0], ood["test"][0]] if ood else [])
    names = ["val", "test"] + (["val_outliers", "test_outliers"] if ood else [])
    for name, logits in zip(names, _predict_each(infer, arrays, cfg.batch_size), strict=True):
        np.save(sdir / f"logits_{name}.npy", logits.astype(np.float32))


def _fit_stage(model, cfg, stage, strategy, xs, ys_int, ys, xv, yv) -> dict:
    trainable = set_trainable_from(model, stage.unfreeze_from)
    log.info("%s: %d backbone layers trainable", stage.name, trainable)
    steps = int(np.ceil(len(xs) / cfg.batch_size))
    with strategy.scope():
        model.compile(
            optimizer=_optimizer(stage, steps),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
            metrics=_metrics(),
        )
    aug = (
        augmenter(cfg.rotation, cfg.zoom, seed=cfg.seed, translate=cfg.translate, contrast=cfg.contrast)
        if stage.augment
        else None
    )
    callbacks = []
    if stage.early_stop_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=stage.early_stop_patience, restore_best_weights=True
            )
        )
    if stage.keep_best:
        callbacks.append(_KeepBest(stage.keep_best))
    val = _dataset(xv, yv, cfg.batch_size, False, 0)
    if stage.average_weights:
        callbacks.append(_AverageWeights(val))  # after EarlyStopping: it compares against the restored epoch
    cw = data_mod.class_weights(ys_int, ys.shape[1]) if stage.class_weights else None
    hist = model.fit(
        _dataset(
            xs,
            ys,
            cfg.batch_size,
            True,
            cfg.seed,
            aug,
            source_aug=cfg.source_augment and stage.augment,
            mixup=cfg.mixup if stage.augment else 0.0,
        ),
        validation_data=val,
        epochs=stage.epochs,
        class_weight=cw,
        callbacks=callbacks,
        verbose=2,
    )
    extra = {k: v for cb in callbacks if isinstance(cb, _AverageWeights) for k, v in cb.summary.items()}
    return hist.history, extra


def _git_commit(repo: Path) -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def discover_splits(cfg: TrainConfig) -> dict[str, data_mod.Split]:
    """The run's splits (subsampled per class when ``limit_per_class`` is set)."""
    splits = data_mod.discover(cfg.data_root, cfg.classes, seed=cfg.seed)
    if cfg.limit_per_class:
        splits = {k: _limit(v, cfg.limit_per_class, len(cfg.classes)) for k, v in splits.items()}
    if cfg.train_fraction < 1.0:
        splits["train"] = _fraction(splits["train"], cfg.train_fraction, len(cfg.classes), cfg.seed)
    return splits


def _fraction(split: data_mod.Split, share: float, k: int, seed: int) -> data_mod.Split:
    """A seeded, class-stratified share of ``split`` (at least one photo per class)."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(k):
        idx = np.flatnonzero(split.labels == c)
        keep.append(rng.permutation(idx)[: max(1, round(share * len(idx)))])
    keep = np.sort(np.concatenate(keep))
    return data_mod.Split(split.root, [split.paths[i] for i in keep], split.labels[keep])


def _limit(split: data_mod.Split, n: int, k: int) -> data_mod.Split:
    keep = np.concatenate([np.flatnonzero(split.labels == c)[:n] for c in range(k)])
    keep.sort()
    return data_mod.Split(split.root, [split.paths[i] for i in keep], split.labels[keep])


def _network(cfg: TrainConfig, weights: str | None) -> keras.Model:
    """The run's network, with the pretrained ``weights`` (None: randomly initialised, to load a checkpoint)."""
    return build_model(
        cfg.num_outputs, backbone=cfg.backbone, alpha=cfg.alpha, size=cfg.size, weights=weights, dropout=cfg.dropout
    )


def save_checkpoint(model: keras.Model, cfg: TrainConfig, path: Path) -> None:
    """Save the network's weights without optimizer state (a compiled model's ``save_weights`` would
    add the Adam moments: 23 MB instead of 9 MB, and nothing a later stage or the export needs)."""
    bare = _network(cfg, None)
    bare.set_weights(model.get_weights())
    bare.save_weights(path)


def load_trained(run_dir: str | Path, stage: str = "stage3") -> tuple[keras.Model, TrainConfig]:
    """Rebuild the network from a run's ``config.json`` and load a stage's checkpoint."""
    run_dir = Path(run_dir)
    cfg = TrainConfig.from_json((run_dir / "config.json").read_text())
    model = _network(cfg, None)
    model.load_weights(run_dir / stage / "model.weights.h5")
    return model, cfg


__all__ = ["StageConfig", "TrainConfig", "paper_stages", "run", "load_trained", "backbone_of"]
