"""``skinedge-tools``: train / rebuild / evaluate / report / keygen / sign."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

DEFAULT_CACHE = Path(os.environ.get("SKINEDGE_CACHE", Path.home() / ".cache" / "skinedge-tools"))


def _shared(*parts: str) -> str | None:
    root = os.environ.get("SKINEDGE_SHARED")
    return str(Path(root, *parts)) if root else None


@click.group()
@click.option("-v", "--verbose", is_flag=True)
def main(verbose: bool) -> None:
    """Train, quantize, evaluate and report the skinedge MobileNetV2 classifier."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("skinedge_tools").setLevel(logging.INFO)


@main.command()
@click.option(
    "--data",
    "data_root",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Dataset root: skin6 layout (train/ val/ test/) or Kaggle layout (Train/ Test/).",
)
@click.option(
    "--backbone",
    type=click.Choice(["mobilenetv2", "efficientnet-lite0", "efficientnet-lite1"]),  # model.BACKBONES (no TF import)
    default="mobilenetv2",
    show_default=True,
    help="Pretrained network under the head (the paper's is mobilenetv2).",
)
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    help="mobilenetv2: 'imagenet' (Keras download) or a local no-top .h5 file; efficientnet-lite*: the "
    "ImageNet state-dict .npz (../shared/weights/efficientnet-lite0_imagenet_torch_state_dict.npz).",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--classes", default=None, help="Comma-separated class folders, in output order.")
@click.option("--alpha", default=1.0, show_default=True, type=float)
@click.option("--size", default=None, type=int, help="Input size (default: the backbone's, 224; lite1 240).")
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--epochs", default=None, help="Epochs per stage, e.g. 12,10,8.")
@click.option("--lrs", default=None, help="Learning rate per stage, e.g. 1e-3,1e-4,1e-5.")
@click.option(
    "--unfreeze-from",
    default=None,
    help="First backbone layer trained in stages 2-3 (default: block_8; lite0 block_7; lite1 block_9).",
)
@click.option("--zoom", default=0.2, show_default=True, type=float, help="RandomZoom factor (stages 2-3).")
@click.option(
    "--translate", default=0.1, show_default=True, type=float, help="RandomTranslation fraction (0 disables)."
)
@click.option("--contrast", default=0.2, show_default=True, type=float, help="RandomContrast factor (0 disables).")
@click.option(
    "--source-augment/--no-source-augment",
    default=False,
    show_default=True,
    help="Stages 2-3 also redraw photo-source cues: JPEG quality, thumbnail blur, frames, corner marks, colour.",
)
@click.option(
    "--average-weights/--no-average-weights",
    default=False,
    show_default=True,
    help="Stage 3 keeps the mean of its epochs' weights (SWA) when that scores better on validation.",
)
@click.option(
    "--mixup",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Stages 2-3 blend photo pairs and labels with Beta(a, a) weights (0 disables; 0.2-0.4 is usual).",
)
@click.option(
    "--teacher",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Distillation: an .npz of a teacher's probabilities on the training photos (paths, probs).",
)
@click.option(
    "--distill",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Weight of the teacher's probabilities in the training targets (the rest: the labels).",
)
@click.option(
    "--refit-on-val/--no-refit-on-val",
    default=False,
    show_default=True,
    help="Train on train + val with fixed epochs (--epochs; no checkpoint picking on val): a final refit.",
)
@click.option(
    "--train-fraction",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Train on this seeded, class-stratified share of the training photos (for learning curves).",
)
@click.option(
    "--outliers",
    "outliers",
    multiple=True,
    metavar="NAME=DIR",
    help="An abstention class trained on photos the model must not answer (outlier exposure), e.g. "
    "not_skin=../shared/data/not-skin other_condition=../shared/data/skin-other; DIR holds train/ val/ test/.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--limit-per-class", default=None, type=int, help="Use at most N images per class and split (smoke runs)."
)
@click.option(
    "--stages", "only", default=None, help="Run only these stages (comma-separated), resuming from the previous one."
)
@click.option(
    "--strategy",
    type=click.Choice(["default", "mirrored"]),
    default="default",
    show_default=True,
    help="tf.distribute strategy: 'mirrored' trains on every local GPU.",
)
@click.option("--cache-dir", default=str(DEFAULT_CACHE), show_default=True, help="Preprocessed-array cache.")
def train(
    data_root,
    backbone,
    weights,
    out_dir,
    classes,
    alpha,
    size,
    batch_size,
    epochs,
    lrs,
    unfreeze_from,
    zoom,
    translate,
    contrast,
    source_augment,
    average_weights,
    mixup,
    teacher,
    distill,
    refit_on_val,
    train_fraction,
    outliers,
    seed,
    limit_per_class,
    only,
    strategy,
    cache_dir,
) -> None:
    """Run the three training stages."""
    import tensorflow as tf

    from skinedge_tools.train import TrainConfig, paper_stages, run

    if backbone != "mobilenetv2" and weights == "imagenet":
        raise click.BadParameter(
            f"{backbone} has no Keras download: pass the ImageNet arrays, "
            f"e.g. ../shared/weights/{backbone}_imagenet_torch_state_dict.npz",
            param_hint="--weights",
        )
    stages = paper_stages(backbone)
    stages[-1].average_weights = average_weights
    if refit_on_val:  # fixed epochs: nothing may be picked on validation photos the refit trains on
        for st in stages:
            st.keep_best, st.early_stop_patience = None, None
    cfg = TrainConfig(
        data_root=data_root,
        backbone=backbone,
        stages=stages,
        refit_on_val=refit_on_val,
        weights=weights,
        alpha=alpha,
        size=size,
        batch_size=batch_size,
        seed=seed,
        limit_per_class=limit_per_class,
        zoom=zoom,
        translate=translate,
        contrast=contrast,
        source_augment=source_augment,
        train_fraction=train_fraction,
        mixup=mixup,
        teacher=teacher,
        distill=distill,
        outliers=_outliers(outliers),
    )
    if classes:
        cfg.classes = tuple(c.strip() for c in classes.split(","))
    for attr, text, conv in (("epochs", epochs, int), ("lr", lrs, float)):
        if text:
            values = [conv(v) for v in text.split(",")]
            if len(values) != len(cfg.stages):
                raise click.BadParameter(f"give {len(cfg.stages)} comma-separated values")
            for st, v in zip(cfg.stages, values):
                setattr(st, attr, v)
    if unfreeze_from:
        for st in cfg.stages[1:]:
            st.unfreeze_from = unfreeze_from
    strat = tf.distribute.MirroredStrategy() if strategy == "mirrored" else None
    run(cfg, out_dir, cache_dir, strategy=strat, only=only.split(",") if only else None)
    click.echo(f"trained: {out_dir}")


def _outliers(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            raise click.BadParameter(f"{item!r}: expected NAME=DIR with an existing DIR", param_hint="--outliers")
        out[name] = folder
    return out


@main.command()
@click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Training run directory (config.json + <stage>/model.weights.h5).",
)
@click.option("--stage", default="stage3", show_default=True, help="Which stage's checkpoint to export.")
@click.option("--out", "out_dir", default="models", show_default=True, type=click.Path(file_okay=False))
@click.option("--data", "data_root", default=None, help="Dataset root (default: the one in the run's config).")
@click.option("--representative", default=500, show_default=True, type=int, help="Calibration images for int8.")
@click.option(
    "--bias-correction/--no-bias-correction",
    default=True,
    show_default=True,
    help="Remove the expected int8 weight-rounding error from each layer's bias before converting.",
)
@click.option(
    "--activation-ranges",
    type=click.Choice(["mse", "minmax"]),
    default="mse",
    show_default=True,
    help="int8 activation ranges: least quantization error (mse) or the observed min/max.",
)
@click.option(
    "--weight-rounding",
    type=click.Choice(["gptq", "nearest"]),
    default="gptq",
    show_default=True,
    help="int8 weight rounding: least layer-output error on the calibration images (gptq), or nearest.",
)
@click.option(
    "--calibration-seed",
    default=None,
    type=int,
    help="Seed that draws the calibration images (default: the run's training seed).",
)
@click.option(
    "--quality",
    "quality_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="JSON of photo-quality thresholds for the metadata (skinedge.quality.QualityThresholds fields), as "
    "tools/experiments/quality_thresholds.py chooses them (default: the run's quality_thresholds.json, if any).",
)
@click.option("--cache-dir", default=str(DEFAULT_CACHE), show_default=True)
def rebuild(
    run_dir, stage, out_dir, data_root, representative, bias_correction, activation_ranges, weight_rounding,
    calibration_seed, quality_file, cache_dir,
) -> None:
    """Checkpoint -> int8 and float32 .tflite with metadata, calibrated and checked in the runtime."""
    from skinedge_tools.quantize import rebuild as do_rebuild

    report = do_rebuild(
        Path(run_dir),
        Path(out_dir),
        Path(cache_dir),
        stage,
        representative,
        data_root,
        bias_correction,
        activation_ranges,
        weight_rounding,
        calibration_seed,
        json.loads(Path(quality_file).read_text()) if quality_file else None,
    )
    i8, f32 = report.int8, report.float32
    click.echo(
        f"int8    {i8.file}: {i8.bytes:,} bytes, test acc {i8.test['accuracy']:.4f}, "
        f"macro-F1 {i8.test['macro_f1']:.4f}, T={i8.temperature:.3f}, abstain<{i8.abstain_threshold:.2f}"
    )
    click.echo(
        f"float32 {f32.file}: {f32.bytes:,} bytes, test acc {f32.test['accuracy']:.4f}, "
        f"macro-F1 {f32.test['macro_f1']:.4f}"
    )
    click.echo(
        f"agreement int8/float32 on test: {report.agreement_int8_float32_test:.4f}; "
        f"size ratio {report.size_ratio_int8_float32:.3f}"
    )
    if i8.gates:
        g = i8.gates["chosen_on_val"]
        click.echo(f"gates (chosen on val): {g['gate_thresholds']}, abstain<{g['abstain_threshold']:.2f}")
        for split in ("val", "test"):
            m = i8.gates[split]
            answered = ", ".join(f"{n} {v:.1%}" for n, v in m["answered"].items())
            click.echo(f"  {split}: coverage {m['coverage']:.1%}; outliers answered: {answered}")


@main.command("add-maps")
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The training run the models were rebuilt from (its representative images fit the fine map).")
@click.option("--data", "data_root", default=None, help="Dataset root (default: the one in the run's config).")
@click.option("--cache-dir", default=str(DEFAULT_CACHE), show_default=True)
def add_maps(models, run_dir, data_root, cache_dir) -> None:
    """Add class-activation map outputs to existing artifacts in place (graph and scores unchanged).

    ``rebuild`` builds them in already; this upgrades files made before it did.
    """
    from skinedge_tools.quantize import add_maps_to_artifact

    for model in models:
        info = add_maps_to_artifact(Path(model), Path(run_dir), Path(cache_dir), data_root)
        grids = ", ".join(f"{m['output']} {m['grid'][0]}x{m['grid'][1]}" for m in info["maps"])
        fine = info["maps"][1]
        click.echo(f"{model}: {grids}; fine head R^2 {fine['fit_r2']:.3f} on {fine['fit_images']} images")


@main.command()
@click.option("--model", required=True, type=click.Path(exists=True, dir_okay=False), help="A .tflite with metadata.")
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--json", "as_json", is_flag=True)
def evaluate(model, data_root, split, as_json) -> None:
    """Evaluate a .tflite on a dataset split through the skinedge runtime (decoding every photo)."""
    import json

    from skinedge_tools.evaluate import evaluate_model

    m, errors = evaluate_model(model, data_root, split)
    for exc in errors:
        click.echo(f"error: {exc}", err=True)
    if as_json:
        click.echo(json.dumps(m, indent=1))
        return
    click.echo(
        f"{split}: n={m['n']} accuracy {m['accuracy']:.4f} macro-P {m['macro_precision']:.4f} "
        f"macro-R {m['macro_recall']:.4f} macro-F1 {m['macro_f1']:.4f} ECE {m['ece']:.4f} failed {m['failed']}"
    )


@main.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--models", "models_dir", default="models", show_default=True, type=click.Path(exists=True))
@click.option("--docs", "docs_dir", default="docs", show_default=True, type=click.Path(file_okay=False))
@click.option("--data", "data_root", default=None, help="Dataset root, for per-source metrics (manifest.csv).")
@click.option(
    "--latency-runs",
    default=200,
    show_default=True,
    type=int,
    help="Interleaved invokes per model for the float-vs-int8 latency row (0: skip).",
)
@click.option("--compare", "compare", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Another bundled model's run (its rebuild in --models too), for the Backbones section; repeatable.")
@click.option("--trials", "trials_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="A folder of training-trial records (run folders without checkpoints) for a trials section.")
def report(run_dir, models_dir, docs_dir, data_root, latency_runs, compare, trials_dir) -> None:
    """Write docs/report.md and its figures from a run and its rebuild."""
    import json

    from skinedge_tools.artifacts import artifact_names, run_backbone
    from skinedge_tools.report import build

    def backbone(run: str) -> str:
        return run_backbone(json.loads((Path(run) / "config.json").read_text()))

    names = artifact_names(backbone(run_dir))
    latency = backbone_latency = None
    if latency_runs:
        latency = _latency(Path(models_dir) / names["float32"], Path(models_dir) / names["int8"], latency_runs)
        if compare:
            int8 = {backbone(r): Path(models_dir) / artifact_names(backbone(r))["int8"] for r in (run_dir, *compare)}
            backbone_latency = _invoke_p50(int8, latency_runs)
    out = build(Path(run_dir), Path(models_dir), Path(docs_dir), Path(data_root) if data_root else None, latency,
                [Path(r) for r in compare], backbone_latency, Path(trials_dir) if trials_dir else None)
    click.echo(f"wrote {out}")


@main.command()
@click.argument("private_key", type=click.Path(dir_okay=False))
@click.option("--public", "public_key", default=None, type=click.Path(dir_okay=False),
              help="Where to write the public key (default: PRIVATE_KEY.pub).")
def keygen(private_key, public_key) -> None:
    """Make an Ed25519 signing key pair for models (the private key stays on the build machine, mode 0600).

    Boards trust the public key: skinedge models trust PUBLIC_KEY (docs/kiosk.md)."""
    from skinedge_tools.sign import keygen as make_keys

    if Path(private_key).exists():
        raise click.ClickException(f"{private_key}: exists; a key is never overwritten")
    private, public, kid = make_keys(private_key, public_key)
    click.echo(f"private key {private} (keep it off the boards and out of the repository)")
    click.echo(f"public key  {public} (key id {kid}): copy it to each board")


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "private_key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The Ed25519 private key (PEM) from skinedge-tools keygen.")
def sign(models, private_key) -> None:
    """Sign model files: writes MODEL.sig beside each (Ed25519 over the file's SHA-256), which
    skinedge models install checks on the board."""
    from skinedge_tools.sign import sign_file

    for model in models:
        click.echo(f"signed {model} -> {sign_file(model, private_key)}")


def _latency(float_path: Path, int8_path: Path, runs: int) -> dict:
    """float32 and int8 invoke p50 of one run's two files (the report's float-vs-int8 row)."""
    got = _invoke_p50({"float32": float_path, "int8": int8_path}, runs)
    p50 = got.pop("p50_ms")
    return {**got, "float32_p50_ms": p50["float32"], "int8_p50_ms": p50["int8"]}


def _invoke_p50(models: dict[str, Path], runs: int) -> dict:
    """Invoke p50 of each model, interleaved call by call in one process (ratios between them are fair)."""
    import numpy as np

    from skinedge import Classifier
    from skinedge.backend import usable_cpus
    from skinedge.profiling import LatencyStats, cpu_description, interleaved

    threads = usable_cpus()
    clfs = {name: Classifier(path, num_threads=threads) for name, path in models.items()}
    try:
        calls = {}
        for name, clf in clfs.items():
            x = np.full((clf.spec.height, clf.spec.width, 3), 128, np.uint8)
            calls[name] = lambda clf=clf, x=x: clf.invoke(x)
        samples = interleaved(calls, runs, warmup=20)
    finally:
        for clf in clfs.values():
            clf.close()
    return {"threads": threads, "runs": runs, "cpu": cpu_description(),
            "p50_ms": {name: LatencyStats.of(samples[name]).p50 for name in models}}


if __name__ == "__main__":
    main()
