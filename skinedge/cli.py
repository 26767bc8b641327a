"""``skinedge`` command line: a thin layer over the library (predict, bench, info, selftest)."""

from __future__ import annotations

import glob
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from skinedge.errors import ImageError, SkinedgeError

NOT_A_DIAGNOSIS = "Note: scores from a research model, not a medical diagnosis. Consult a clinician."
EXIT_FAILED_INPUTS = 1
EXIT_INTERRUPTED = 130


def _fail(error: SkinedgeError) -> None:
    click.echo(f"error: {error}", err=True)
    raise SystemExit(2)


def _make_classifier(**kwargs: Any):
    from skinedge.classifier import Classifier

    try:
        return Classifier(**kwargs)
    except SkinedgeError as exc:
        _fail(exc)


def expand_inputs(paths: tuple[str, ...]) -> Iterator[str | ImageError]:
    """Files as given; folders recursively (image suffixes only, sorted); globs expanded.

    A path that does not exist and matches nothing is yielded as an :class:`ImageError`.
    """
    from skinedge.preprocess import IMAGE_SUFFIXES

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
            )
            if not found:
                yield ImageError(raw, "folder contains no images")
            yield from found
        elif p.exists() or p.is_symlink():
            yield raw
        elif glob.has_magic(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                yield ImageError(raw, "pattern matches no files")
            for m in matches:
                if Path(m).is_dir():
                    yield from expand_inputs((m,))
                else:
                    yield m
        else:
            yield ImageError(raw, "no such file or folder")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skinedge")
def main() -> None:
    """skinedge: on-device skin-condition classifier (int8 MobileNetV2, LiteRT + XNNPACK).

    Outputs are model scores, not a medical diagnosis.
    """


_model_option = click.option(
    "--model", type=click.Path(dir_okay=False), default=None, help="A .tflite model (default: the bundled one)."
)
_labels_option = click.option(
    "--labels", type=click.Path(dir_okay=False), default=None, help="Labels file for models without metadata."
)
_threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Interpreter threads (default: usable CPUs)."
)
_backend_option = click.option(
    "--backend", type=click.Choice(["litert", "tflite_runtime", "tensorflow"]), default=None,
    help="Interpreter package (default: the first installed, in this order).",
)


def _format_result(result: Any) -> str:
    flag = "  [uncertain: below the model's abstain threshold]" if result.uncertain else ""
    top = ", ".join(f"{c.label} {c.score:.3f}" for c in result.top_k)
    return f"{result.source}: {result.label} {result.score:.3f}{flag}\n    top: {top}"


@main.command()
@click.argument("paths", nargs=-1, required=True)
@_model_option
@_labels_option
@_threads_option
@_backend_option
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Classes listed per image.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Leave out classes scoring below this.")
@click.option("--abstain", type=click.FloatRange(0, 1), default=None,
              help="Flag results whose top score is below this as uncertain (default: the model's own).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line on stdout.")
def predict(paths, model, labels, threads, backend, top_k, threshold, abstain, as_json) -> None:
    """Classify images: files, folders (recursively) and glob patterns.

    Bad files are reported on stderr with their reason and the rest are still classified. Exit
    status: 0 if every input was classified, 1 if any failed, 130 if interrupted.
    """
    clf = _make_classifier(model=model, labels=labels, num_threads=threads, backend=backend, top_k=top_k,
                           score_threshold=threshold, abstain_threshold=abstain)
    items = list(expand_inputs(paths))
    sources = [i for i in items if not isinstance(i, SkinedgeError)]
    failed = 0
    for bad in (i for i in items if isinstance(i, SkinedgeError)):
        failed += 1
        _report_error(bad, as_json)
    ok = 0
    show_bar = sys.stderr.isatty() and len(sources) > 20
    try:
        # Built only when shown: click's progress bar module is a cold-start import.
        bar_cm = click.progressbar(length=len(sources), file=sys.stderr, label="classifying") if show_bar else _NoBar()
        with bar_cm as bar:
            for outcome in clf.iter_classify(sources):
                if isinstance(outcome, SkinedgeError):
                    failed += 1
                    _report_error(outcome, as_json)
                else:
                    ok += 1
                    line = json.dumps(outcome.to_dict()) if as_json else _format_result(outcome)
                    click.echo(line)
                bar.update(1)
    except KeyboardInterrupt:
        sys.stdout.flush()
        click.echo(f"interrupted: {ok} classified, {failed} failed, {len(sources) - ok - failed} not reached", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        clf.close()
    if not as_json:
        if ok + failed > 1:
            click.echo(f"{ok} classified, {failed} failed")
        click.echo(NOT_A_DIAGNOSIS)
    raise SystemExit(EXIT_FAILED_INPUTS if failed else 0)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _report_error(error: SkinedgeError, as_json: bool) -> None:
    click.echo(f"error: {error}", err=True)
    if as_json:
        click.echo(json.dumps({"source": error.source, "error": type(error).__name__, "reason": error.reason}))


@main.command()
@_model_option
@_threads_option
@_backend_option
@click.option("--runs", type=click.IntRange(min=1), default=200, show_default=True, help="Timed invokes.")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True, help="Untimed invokes first.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Photo for the end-to-end timing (default: a synthetic 1280x960 JPEG).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench(model, threads, backend, runs, warmup, image, as_json) -> None:
    """Measure load time, invoke latency, photo-to-label time and memory."""
    from skinedge.bench import run_bench

    try:
        report = run_bench(model, threads=threads, runs=runs, warmup=warmup, image=image, backend=backend)
    except SkinedgeError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    inv, bare, e2e = report["invoke_ms"], report["bare_interpreter_invoke_ms"], report["end_to_end_ms"]
    lines = [
        f"model        {report['model']} ({report['model_bytes'] / 1e6:.2f} MB, input {report['input']})",
        f"backend      {report['backend']} {report['backend_version']}, {report['threads']} threads, "
        f"delegate: {report['delegate']}",
        f"cpu          {report['cpu']}",
        f"load         {report['load_ms']:.1f} ms; first invoke {report['first_invoke_ms']:.2f} ms",
        f"invoke       min {inv['min']:.2f}  p50 {inv['p50']:.2f}  p90 {inv['p90']:.2f}  p99 {inv['p99']:.2f}  "
        f"mean {inv['mean']:.2f} ms  (n={inv['n']})",
        f"bare invoke  p50 {bare['p50']:.2f} ms; SDK/bare = {report['sdk_overhead_ratio']:.3f}",
        f"throughput   {report['throughput_per_s']:.1f} images/s (invoke only)",
        f"photo->label {e2e['total']:.2f} ms = decode {e2e['decode']:.2f} + preprocess {e2e['preprocess']:.2f} "
        f"+ invoke {e2e['invoke']:.2f}  ({e2e['image']})",
        f"memory       peak RSS {report['peak_rss_mb']:.1f} MB; model added {report['rss_added_by_model_mb']:.1f} MB",
    ]
    click.echo("\n".join(lines))


@main.command()
@_model_option
@_labels_option
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(model, labels, backend, as_json) -> None:
    """Show the model's metadata, labels, tensors, quantization and delegate status."""
    import numpy as np

    clf = _make_classifier(model=model, labels=labels, backend=backend, num_threads=1)
    md = clf.metadata
    tensors = {}
    for key, d in (("input", clf.input_details), ("output", clf.output_details)):
        scale, zero = d["quantization"]
        tensors[key] = {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                        "scale": float(scale), "zero_point": int(zero)}
    data = {
        "model": str(clf.model_path),
        "bytes": clf.model_path.stat().st_size,
        "backend": f"{clf.backend.name} {clf.backend.version}",
        "delegate": clf.delegate.describe(),
        "labels": list(clf.labels),
        "preprocess": clf.spec.to_dict(),
        "output_kind": clf.output_kind,
        "temperature": clf.temperature,
        "abstain_threshold": clf.abstain_threshold,
        "tensors": tensors,
        "metadata": md.to_dict() if md else None,
    }
    clf.close()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"model       {data['model']} ({data['bytes']} bytes)")
    if md:
        click.echo(f"name        {md.name}\n            {md.description}")
    else:
        click.echo("metadata    none (labels and options from the command line)")
    click.echo(f"backend     {data['backend']}; delegate: {data['delegate']}")
    for key, t in tensors.items():
        click.echo(f"{key:<11} {t['shape']} {t['dtype']} (scale {t['scale']:.6g}, zero point {t['zero_point']})")
    spec = clf.spec
    click.echo(f"preprocess  {spec.height}x{spec.width}, {spec.aspect}, {spec.resize_filter} (antialiased), "
               f"jpeg draft {'on' if spec.jpeg_draft else 'off'}, spec v{spec.version}")
    in_graph = (md.metrics or {}).get("calibration_temperature") if md else None
    calibration = f"temperature {data['temperature']:.4g}"
    if in_graph and data["output_kind"] == "probabilities":
        calibration = f"calibrated inside the model (T {in_graph:.4g})"
    click.echo(f"output      {data['output_kind']}, {calibration}, abstain below {data['abstain_threshold']:.3g}")
    shown = ", ".join(data["labels"][:12]) + (" ..." if len(data["labels"]) > 12 else "")
    click.echo(f"labels      {len(data['labels'])}: {shown}")
    if md and md.metrics:
        click.echo("metrics     " + ", ".join(f"{k} {v}" for k, v in md.metrics.items() if not isinstance(v, dict)))
    if md and md.provenance:
        flat = {k: v for k, v in md.provenance.items() if not isinstance(v, (dict, list))}
        click.echo("provenance  " + ", ".join(f"{k}={v}" for k, v in flat.items()))
    click.echo(NOT_A_DIAGNOSIS)


@main.command()
@_model_option
@_threads_option
@_backend_option
def selftest(model, threads, backend) -> None:
    """Check that this machine computes what the build machine recorded for the model.

    Runs the test vectors packed in the model's metadata (exact preprocessed inputs and the raw
    outputs recorded at build time) through the local interpreter and compares the raw outputs.
    Exit status: 0 if every vector matches (top-1 class and within one quantization step), 1 if any
    does not or the model cannot be loaded, 2 if the model carries no test vectors.
    """
    from skinedge.classifier import Classifier
    from skinedge.errors import BackendError
    from skinedge.selftest import SELFTEST_TOLERANCE_STEPS, VECTORS_NAME, run_selftest

    try:
        clf = Classifier(model, num_threads=threads, backend=backend)
    except BackendError as exc:
        _fail(exc)
    except SkinedgeError as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo("selftest FAIL: the model could not be loaded")
        raise SystemExit(1) from None
    try:
        if VECTORS_NAME not in clf.model_files:
            click.echo(f"error: {clf.model_path}: this model carries no self-test vectors ({VECTORS_NAME} is not in "
                       "its metadata); nothing to check.", err=True)
            raise SystemExit(2)
        try:
            checks = run_selftest(clf, clf.model_files)
        except SkinedgeError as exc:
            _fail(exc)
        where = f"{clf.backend.name} {clf.backend.version}, {clf.num_threads} threads, {clf.delegate.describe()}"
    finally:
        clf.close()
    if not checks:
        click.echo(f"error: {clf.model_path}: its self-test vector list is empty; nothing to check", err=True)
        raise SystemExit(2)
    for c in checks:
        click.echo(f"{c.name}: top-1 expected {c.top1_expected}, got {c.top1_got}; max difference "
                   f"{c.max_step_diff:g} quantization steps  {'PASS' if c.passed else 'FAIL'}")
    failed = sum(not c.passed for c in checks)
    verdict = "PASS" if not failed else "FAIL"
    click.echo(f"selftest {verdict}: {len(checks) - failed}/{len(checks)} vectors match within "
               f"{SELFTEST_TOLERANCE_STEPS:g} quantization step ({clf.model_path}; {where})")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
