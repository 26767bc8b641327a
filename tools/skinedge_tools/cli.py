"""``skinedge-tools``: train / rebuild / evaluate / report."""

from __future__ import annotations

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
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Dataset root: skin6 layout (train/ val/ test/) or Kaggle layout (Train/ Test/).")
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet' (Keras download) or a local no-top MobileNetV2 .h5 file.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--classes", default=None, help="Comma-separated class folders, in output order.")
@click.option("--alpha", default=1.0, show_default=True, type=float)
@click.option("--size", default=224, show_default=True, type=int)
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--epochs", default=None, help="Epochs per stage, e.g. 12,10,8.")
@click.option("--lrs", default=None, help="Learning rate per stage, e.g. 1e-3,3e-5,1e-5.")
@click.option("--unfreeze-from", default=None, help="First backbone layer trained in stages 2-3 (default block_13).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--limit-per-class", default=None, type=int, help="Use at most N images per class and split (smoke runs).")
@click.option("--stages", "only", default=None, help="Run only these stages (comma-separated), resuming from the previous one.")
@click.option("--strategy", type=click.Choice(["default", "mirrored"]), default="default", show_default=True,
              help="tf.distribute strategy: 'mirrored' trains on every local GPU.")
@click.option("--cache-dir", default=str(DEFAULT_CACHE), show_default=True, help="Preprocessed-array cache.")
def train(data_root, weights, out_dir, classes, alpha, size, batch_size, epochs, lrs, unfreeze_from, seed,
          limit_per_class, only, strategy, cache_dir) -> None:
    """Run the three training stages."""
    import tensorflow as tf

    from skinedge_tools.train import TrainConfig, run

    cfg = TrainConfig(data_root=data_root, weights=weights, alpha=alpha, size=size, batch_size=batch_size,
                      seed=seed, limit_per_class=limit_per_class)
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


if __name__ == "__main__":
    main()
