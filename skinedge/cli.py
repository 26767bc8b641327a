"""``skinedge`` command line: a thin layer over the library (predict, bench, info, selftest)."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from skinedge.errors import ImageError, SkinedgeError
from skinedge.exits import EXIT_FAILED_INPUTS, EXIT_INTERRUPTED, EXIT_UNUSABLE, fail_unusable
from skinedge.kiosk.serve_options import build_kiosk, check_access_options, kiosk_options, store_model

# numpy is imported later, by the commands. skinedge's arithmetic runs in LiteRT's own threads and numpy only
# handles small arrays, so OpenBLAS's worker threads (one per core, started when numpy is imported and joined
# at exit) would only cost every command its start-up (docs/benchmarks.md, suite 5). A user's setting wins.
if not any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS")):
    os.environ["OPENBLAS_NUM_THREADS"] = "1"


class _OneShotDone(SystemExit):
    """Raised by a one-shot command that has written everything it had to stdout and stderr and closed what it
    opened: :func:`run` may then end the process without the interpreter's teardown. In-process callers (click's
    test runner, ``main(standalone_mode=False)``) see a plain ``SystemExit`` with the same status."""


def _echo_disclaimer() -> None:
    from skinedge.classifier import DISCLAIMER  # the one wording (library, CLI and web page)

    click.echo(DISCLAIMER)


def _make_classifier(**kwargs: Any):
    from skinedge.classifier import Classifier

    try:
        clf = Classifier(**kwargs)
    except SkinedgeError as exc:
        fail_unusable(exc)
    if kwargs.get("labels") is None and clf.labels == tuple(str(i) for i in range(len(clf.labels))):
        click.echo(f"note: {clf.model_path} carries no labels, so classes are shown as output indexes; "
                   "pass --labels FILE (one label per line)", err=True)
    return clf


class _Commands(click.Group):
    """The command group, with one rule for every command: a reader that stops reading (``| head -1``) ends the
    command quietly with status 0, as it does for other Unix tools (click would exit 1, which here means "some
    inputs could not be classified"). The kiosk's command groups are loaded when one of them is run or listed,
    not at every start (``skinedge predict`` never builds their options)."""

    LAZY = {"cases": "skinedge.kiosk.cli", "service": "skinedge.kiosk.cli", "models": "skinedge.kiosk.cli"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            import importlib

            self.add_command(getattr(importlib.import_module(self.LAZY[name]), name))
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _drop_stdout()
            raise SystemExit(0) from None
        except OSError as exc:
            if exc.errno not in _OUTPUT_FAILURES:
                raise
            # writing the results failed (a full disk, a dead terminal): say so, with no traceback
            _drop_stdout()
            click.echo(f"error: cannot write the output: {exc.strerror or exc}", err=True)
            raise SystemExit(EXIT_FAILED_INPUTS) from None


_OUTPUT_FAILURES = {errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _drop_stdout() -> None:
    """Point stdout at /dev/null: whatever is still buffered for a closed pipe or a full disk must not raise again
    at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skinedge")
def main() -> None:
    """skinedge: on-device skin-condition classifier (int8 EfficientNet-Lite0 or MobileNetV2, LiteRT + XNNPACK).

    Outputs are model scores, not a medical diagnosis.

    Exit status: 0 success; 1 some inputs could not be classified (selftest: outputs differ);
    2 unusable model, labels or backend, or bad options; 130 interrupted.
    """


_model_option = click.option(
    "--model", type=click.Path(dir_okay=False), default=None,
    help="A .tflite model, or a bundled model's name: efficientnet-lite0 (the default) or mobilenetv2 (the paper's).",
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


def _gate_options(command: Any) -> Any:
    """The thresholds of "knows when not to answer" (each defaults to the model's own), on every command that
    classifies."""
    for option in reversed((
        click.option("--not-skin-threshold", "not_skin", type=click.FloatRange(0, 1), default=None,
                     help="No answer when the not_skin gate scores at least this (default: the model's own)."),
        click.option("--other-condition-threshold", "other_condition", type=click.FloatRange(0, 1), default=None,
                     help="No answer when the other_condition gate (a condition outside the classes) scores at "
                          "least this (default: the model's own)."),
        click.option("--quality-check/--no-quality-check", "quality_check", default=True, show_default=True,
                     help="No answer on photos too poor to judge (blurred, dark, blown out, tiny)."),
    )):
        command = option(command)
    return command


def _options(*, top_k: int = 3, threshold: float = 0.0, abstain: float | None = None, not_skin: float | None = None,
             other_condition: float | None = None, quality_check: bool = True) -> Any:
    from skinedge.options import ClassifierOptions

    return ClassifierOptions(top_k=top_k, score_threshold=threshold, abstain_threshold=abstain,
                             not_skin_threshold=not_skin, other_condition_threshold=other_condition,
                             check_quality=quality_check)


def _display_path(path: str) -> str:
    """A bundled model by its package-relative name (skinedge/bundled/...), not this machine's install path."""
    from skinedge.model_io import BUNDLED_MODELS, bundled_model_path

    for name in BUNDLED_MODELS:
        if Path(path) == bundled_model_path(name):
            return f"{name} (bundled: {Path(path).name})"
    return path


def _format_result(result: Any) -> str:
    from skinedge.reasons import describe

    top = ", ".join(f"{c.label} {c.score:.3f}" for c in result.top_k)
    if result.reason is None:
        return f"{result.source}: {result.label} {result.score:.3f}\n    top: {top}"
    # No answer: say why, and never print a label where the answer would be.
    gates = "".join(f"; {name} {score:.3f}" for name, score in result.gates.items())
    return (f"{result.source}: no answer ({result.reason}): {describe(result)}\n"
            f"    scores, not an answer: {top}{gates}")


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
@_gate_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line on stdout.")
def predict(paths, model, labels, threads, backend, top_k, threshold, abstain, not_skin, other_condition,
            quality_check, as_json) -> None:
    """Classify images: files, folders (recursively) and glob patterns.

    Bad files are reported on stderr with their reason and the rest are still classified. Exit
    status: 0 if every input was classified, 1 if any failed, 2 for an unusable model, 130 if interrupted.
    """
    clf = _make_classifier(model=store_model(model), labels=labels, num_threads=threads, backend=backend,
                           options=_options(top_k=top_k, threshold=threshold, abstain=abstain, not_skin=not_skin,
                                            other_condition=other_condition, quality_check=quality_check))
    from skinedge.files import expand_inputs

    items = list(expand_inputs(paths))
    sources = [i for i in items if not isinstance(i, SkinedgeError)]
    failed = 0
    for bad in (i for i in items if isinstance(i, SkinedgeError)):
        failed += 1
        _report_error(bad, as_json)
    ok = 0
    progress = _Progress(len(sources))
    try:
        for outcome in clf.iter_classify(sources):
            progress.clear()
            if isinstance(outcome, SkinedgeError):
                failed += 1
                _report_error(outcome, as_json)
            else:
                ok += 1
                line = json.dumps(outcome.to_dict()) if as_json else _format_result(outcome)
                click.echo(line)
            progress.advance()
    except KeyboardInterrupt:
        progress.clear()
        sys.stdout.flush()
        click.echo(f"interrupted: {ok} classified, {failed} failed, {len(sources) - ok - failed} not reached", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        progress.clear()
        clf.close()
    if not as_json:
        if ok + failed > 1:
            click.echo(f"{ok} classified, {failed} failed")
        if ok:
            _echo_disclaimer()
    raise _OneShotDone(EXIT_FAILED_INPUTS if failed else 0)


def _stdout_is_a_pipe() -> bool:
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured): not a pipe
        return False


class _Progress:
    """``classifying 12/66 [#####-----] 18%`` on stderr, redrawn in place; only when stderr is a terminal
    and there are more than ``min_total`` images.

    Callers ``clear()`` it before printing any result or error line: stdout and stderr are usually the
    same terminal, and a result must never share a line with the bar. Off when stdout is a pipe: what reads it
    (``| head``, ``| grep``) may print to this terminal at any moment, after the bar was redrawn.
    """

    WIDTH = 30

    def __init__(self, total: int, min_total: int = 20) -> None:
        self.total, self.done = total, 0
        self.enabled = total > min_total and sys.stderr.isatty() and not _stdout_is_a_pipe()
        self._drawn = 0  # characters of the bar now on screen

    def clear(self) -> None:
        if self._drawn:
            sys.stderr.write("\r" + " " * self._drawn + "\r")
            sys.stderr.flush()
            self._drawn = 0

    def advance(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = self.WIDTH * self.done // self.total
        text = (f"classifying {self.done}/{self.total} [{'#' * filled}{'-' * (self.WIDTH - filled)}] "
                f"{100 * self.done // self.total}%")
        sys.stderr.write("\r" + text)
        sys.stderr.flush()
        self._drawn = len(text)


def _report_error(error: SkinedgeError, as_json: bool) -> None:
    click.echo(f"error: {error}", err=True)
    if as_json:
        click.echo(json.dumps({"source": error.source, "error": type(error).__name__, "reason": error.reason}))


#: Overlays are written at the photo's size, downscaled (same aspect) to this long side at most (the page's
#: overlay, ``serve.payload.PAGE_OVERLAY_MAX_SIDE``, is smaller: it is only shown beside the scores).
FILE_OVERLAY_MAX_SIDE = 2048


@main.command("explain")
@click.argument("photo", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None,
              help="Overlay PNG to write (default: <photo name>_heatmap.png in the current folder).")
@click.option("--label", default=None, help="Explain this class instead of the top one (any case).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.6, show_default=True,
              help="Heatmap opacity at the hottest point.")
@_model_option
@_labels_option
@_threads_option
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print the result (with the overlay's path) as one JSON object.")
def explain_command(photo, output, label, alpha, model, labels, threads, backend, as_json) -> None:
    """Classify PHOTO and write a heatmap overlay of what drove the score.

    The heatmap comes from the same single invoke as the scores (class-activation maps built into the
    model). It is a coarse map of the regions that weighed in, not a lesion outline or a diagnosis.
    Exit status: 0 written, 1 the photo or the output could not be used, 2 unusable model or label.
    """
    from skinedge.explain import overlay
    from skinedge.preprocess import decode

    clf = _make_classifier(model=model, labels=labels, num_threads=threads, backend=backend)
    try:
        if label is not None and label not in clf.labels:  # eczema: Eczema (exact first, then ignoring case)
            folded = [name for name in clf.labels if name.casefold() == label.casefold()]
            if not folded:
                raise click.BadParameter(f"{label!r} is not one of {', '.join(clf.labels)}", param_hint="--label")
            label = folded[0]
        try:
            prepared = clf.prepare(photo)
            result = clf.explain(prepared, label=label)
            # The overlay is drawn at the photo's size: the decoded picture itself unless a JPEG draft shrank it.
            picture = decode(photo, limits=clf.limits) if prepared.drafted else prepared.image
        except SkinedgeError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_UNUSABLE if not isinstance(exc, ImageError) else EXIT_FAILED_INPUTS) from None
    finally:
        clf.close()
    picture.thumbnail((FILE_OVERLAY_MAX_SIDE, FILE_OVERLAY_MAX_SIDE))
    out = Path(output) if output else Path(f"{Path(photo).stem}_heatmap.png")
    try:
        overlay(picture, result.heatmap, alpha=alpha).save(out, format="PNG")
    except OSError as exc:
        click.echo(f"error: {out}: cannot write the overlay ({exc.strerror or exc})", err=True)
        raise SystemExit(EXIT_FAILED_INPUTS) from None
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "overlay": str(out),
                               "heatmap_size": [int(v) for v in result.heatmap.shape[::-1]]}))
        return
    click.echo(_format_result(result))
    click.echo(f"    heatmap for {result.heatmap_label}: {out}")
    _echo_disclaimer()


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
        fail_unusable(exc)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    r = report
    inv, bare, e2e = r.invoke_ms, r.bare_interpreter_invoke_ms, r.end_to_end_ms
    lines = [
        f"model        {_display_path(r.model)} ({r.model_bytes / 1e6:.2f} MB, input {r.input})",
        f"backend      {r.backend} {r.backend_version}, {r.threads} threads, delegate: {r.delegate}",
        f"cpu          {r.cpu}",
        f"load         {r.load_ms:.1f} ms; first invoke {r.first_invoke_ms:.2f} ms",
        f"invoke       min {inv.min:.2f}  p50 {inv.p50:.2f}  p90 {inv.p90:.2f}  p99 {inv.p99:.2f}  "
        f"mean {inv.mean:.2f} ms  (n={inv.n})",
        f"bare invoke  p50 {bare.p50:.2f} ms; SDK/bare = {r.sdk_overhead_ratio:.3f}",
        f"throughput   {r.throughput_per_s:.1f} images/s (invoke only)",
        f"photo->label {e2e.total:.2f} ms = decode {e2e.decode:.2f} + preprocess {e2e.preprocess:.2f} "
        f"+ invoke {e2e.invoke:.2f}  ({e2e.image})",
        f"memory       peak RSS {r.peak_rss_mb:.1f} MB; model added {r.rss_added_by_model_mb:.1f} MB",
    ]
    click.echo("\n".join(lines))


@main.command()
@_model_option
@_labels_option
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(model, labels, backend, as_json) -> None:
    """Show the model's metadata, labels, tensors, quantization and delegate status."""
    from skinedge.model_info import ModelInfo

    clf = _make_classifier(model=model, labels=labels, backend=backend, num_threads=1)
    try:
        about = ModelInfo.of(clf)
    finally:
        clf.close()
    data = about.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    md = about.metadata
    click.echo(f"model       {about.model} ({about.bytes} bytes)")
    if md:
        click.echo(f"name        {md.name}\n            {md.description}")
    else:
        click.echo("metadata    none (labels and options from the command line)")
    click.echo(f"backend     {about.backend}; delegate: {about.delegate}")
    roles = {"input": "input", "output": "scores"}  # the other tensors: class-activation maps, by name
    for key, t in about.tensors.items():
        click.echo(f"{roles.get(key, 'map'):<11} {t.describe()}  {t.name}")
    spec = about.preprocess
    fed = {"uint8": "pixel", "int8": "pixel - 128"}  # quantized inputs ignore mean/std (preprocess.to_input_tensor)
    norm = f", fed as {fed.get(about.tensors['input'].dtype, f'(pixel - {spec.mean}) / {spec.std}')}"
    click.echo(f"preprocess  {spec.height}x{spec.width}, {spec.aspect}, {spec.resize_filter} (antialiased), "
               f"jpeg draft {'on' if spec.jpeg_draft else 'off'}{norm}, spec v{spec.version}")
    in_graph = (md.metrics or {}).get("calibration_temperature") if md else None
    calibration = f"temperature {data['temperature']:.4g}"
    if in_graph and data["output_kind"] == "probabilities":
        calibration = f"calibrated inside the model (T {in_graph:.4g})"
    click.echo(f"answer      {data['output_kind']}, {calibration}, abstain below {data['abstain_threshold']:.3g}")
    gates = ", ".join(f"{g} at {t:.3g}" for g, t in data["gates"].items() if t is not None)
    click.echo("gates       " + (gates or "none (no not_skin / other_condition gate: every photo gets scores)"))
    q = data["quality"]
    limits = ", ".join(f"{k} {v:g}" for k, v in q.items() if v is not None) if q else "not checked"
    click.echo("quality     " + limits)
    if md and md.explain:
        grids = ", ".join(f"{m['output']} {m['grid'][0]}x{m['grid'][1]}" for m in md.explain["maps"])
        click.echo(f"heatmaps    {grids} (same invoke; skinedge explain)")
    else:
        click.echo("heatmaps    none: the model has no class-activation map outputs")
    shown = ", ".join(data["labels"][:12]) + (" ..." if len(data["labels"]) > 12 else "")
    click.echo(f"labels      {len(data['labels'])}: {shown}")
    if md and md.metrics:
        click.echo("metrics     " + ", ".join(f"{k} {v}" for k, v in md.metrics.items() if not isinstance(v, dict)))
    if md and md.provenance:
        flat = {k: v for k, v in md.provenance.items() if not isinstance(v, (dict, list))}
        click.echo("provenance  " + ", ".join(f"{k}={v}" for k, v in flat.items()))
    _echo_disclaimer()


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@_model_option
@_labels_option
@_threads_option
@_backend_option
@click.option("--map", "folder_map", multiple=True, metavar="FOLDER=LABEL",
              help="Sub-folder FOLDER holds photos of class LABEL (repeatable).")
@click.option("--abstain", type=click.FloatRange(0, 1), default=None,
              help="Abstain threshold for coverage (default: the model's own).")
@click.option("--resamples", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples for the 95% confidence intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Write one row per photo to this file.")
@click.option("--ood", "ood", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A folder of photos that must not be answered (not skin, conditions outside the classes): "
                   "answered rate, reasons, AUROC per gate, coverage curve (repeatable).")
@_gate_options
def evaluate(folder, model, labels, threads, backend, folder_map, abstain, resamples, seed, as_json, csv_path, ood,
             not_skin, other_condition, quality_check) -> None:
    """How does the model do on your labelled photos? FOLDER holds one sub-folder per class.

    Sub-folders named after the model's labels (any subset; or mapped with --map melanoma=SkinCancer) are
    evaluated; others are reported and skipped, and so are photos that cannot be read. Prints accuracy and
    macro-F1 with percentile-bootstrap 95% CIs (seeded), per-class precision, recall and F1, the confusion
    matrix, and coverage and accuracy at the abstain threshold. Exit status: 0 if every photo was
    classified, 1 if any could not be (or none was found), 2 for an unusable model or bad options.
    """
    from skinedge.evaluation import NothingToEvaluateError, class_folders, evaluate_folder

    mapping = {}
    for entry in folder_map:
        name, sep, label = entry.partition("=")
        if not sep or not name or not label:
            raise click.BadParameter(f"{entry!r} is not FOLDER=LABEL", param_hint="--map")
        mapping[name] = label
    clf = _make_classifier(model=model, labels=labels, num_threads=threads, backend=backend,
                           options=_options(abstain=abstain, not_skin=not_skin, other_condition=other_condition,
                                            quality_check=quality_check))
    csv_file = None
    try:
        if csv_path:  # opened before the photos are classified: a bad path fails in a second, not at the end
            try:
                csv_file = open(csv_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed below)
            except OSError as exc:
                click.echo(f"error: {csv_path}: cannot write ({exc.strerror or exc})", err=True)
                raise SystemExit(EXIT_UNUSABLE) from None
        try:  # the folders first, so that their warnings come before the photos are classified
            found = class_folders(folder, clf.labels, mapping)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--map") from None
        for path in found.unknown:
            click.echo(f"warning: {path}: not named after one of the model's labels ({', '.join(clf.labels)}); "
                       f"skipped (use --map {path.name}=LABEL)", err=True)
        for name in found.unused_map:
            click.echo(f"warning: --map {name}={mapping[name]}: {folder} has no folder {name!r}", err=True)
        progress = _Progress(0)

        def on_row(row: Any, total: int) -> None:
            nonlocal progress
            if progress.total != total:
                progress = _Progress(total)
            progress.clear()
            if isinstance(row.outcome, SkinedgeError):
                click.echo(f"error: {row.outcome}", err=True)
            progress.advance()

        try:
            report = evaluate_folder(clf, folder, folder_map=mapping, n_resamples=resamples, seed=seed, on_row=on_row,
                                     ood=ood)
        except NothingToEvaluateError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_FAILED_INPUTS) from None
        except KeyboardInterrupt:
            progress.clear()
            click.echo(f"interrupted after {progress.done} photos", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None
        finally:
            progress.clear()
        for name in report.empty_folders:
            click.echo(f"warning: {Path(folder) / name}: folder contains no images", err=True)
        if csv_file is not None:
            report.write_csv(csv_file)
    finally:
        clf.close()
        if csv_file is not None:
            csv_file.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(_format_evaluation(report))
        _echo_disclaimer()
    raise SystemExit(EXIT_FAILED_INPUTS if report.failed else 0)


def _format_evaluation(report: Any) -> str:
    rep = report.to_dict()
    acc, f1, ab = rep["accuracy_ci95"], rep["macro_f1_ci95"], rep["abstain"]
    averaged = rep["macro_f1_classes"]
    over = (f"; over the {len(averaged)} class{'es' * (len(averaged) != 1)} with photos"
            if len(averaged) < len(report.labels) else "")
    n_unknown = len(rep["unknown_folders"])
    skipped = f", {n_unknown} folder{'s' * (n_unknown != 1)} skipped" if n_unknown else ""
    answered = f"accuracy of those {ab['accuracy']:.3f}" if ab["accuracy"] is not None else "none answered"
    lines = [
        f"photos     {rep['n']} classified in {len(rep['class_folders'])} class folders of {rep['folder']} "
        f"({rep['failed']} failed{skipped})",
        f"accuracy   {rep['accuracy']:.3f}  [95% CI {acc[0]:.3f}, {acc[1]:.3f}]",
        f"macro-F1   {rep['macro_f1']:.3f}  [95% CI {f1[0]:.3f}, {f1[1]:.3f}]  (percentile bootstrap, "
        f"{rep['bootstrap']['resamples']} resamples, seed {rep['bootstrap']['seed']}{over})",
        f"answered   {ab['answered']}/{rep['n']} (coverage {ab['coverage']:.3f}), {answered}",
        "",
    ]
    names = rep["confusion"]["labels"]
    w = max(9, *(len(n) for n in names)) + 1
    lines.append(f"{'class':<{w}} precision  recall      F1  support")
    for name, s in rep["per_class"].items():
        lines.append(f"{name:<{w}} {s['precision']:9.3f} {s['recall']:7.3f} {s['f1']:7.3f} {s['support']:8d}")
    lines += ["", "confusion matrix (rows: folder class, columns: predicted class)"]
    lines.append(" " * w + "".join(f"{n:>{w}}" for n in names))
    for name, row in zip(names, rep["confusion"]["matrix"]):
        lines.append(f"{name:<{w}}" + "".join(f"{v:>{w}}" for v in row))
    reasons = ab.get("reasons") or {}
    if reasons:
        lines[3] += "; not answered: " + ", ".join(f"{k} {v}" for k, v in reasons.items())
    for o in rep.get("ood", []):
        why = ", ".join(f"{k} {v}" for k, v in o["reasons"].items()) or "none"
        aurocs = ", ".join(f"{k} {v:.3f}" for k, v in o["auroc"].items())
        lines += ["", f"must not be answered: {o['folder']}",
                  f"  {o['n']} photos ({o['failed']} failed): {o['answered']} answered ({o['answered_rate']:.1%}); "
                  f"not answered: {why}",
                  f"  AUROC against the class photos: {aurocs}"]
    return "\n".join(lines)


@main.command()
@_model_option
@_threads_option
@_backend_option
def selftest(model, threads, backend) -> None:
    """Check that this machine computes what the build machine recorded for the model.

    Runs the test vectors packed in the model's metadata (exact preprocessed inputs and the raw
    outputs recorded at build time) through the local interpreter and compares the raw outputs.
    Exit status: 0 if every vector matches (top-1 class and within one quantization step), 1 if any
    does not, 2 if nothing could be checked (the model or backend is unusable, or the model carries
    no or malformed test vectors).
    """
    from skinedge.classifier import Classifier
    from skinedge.errors import BackendError
    from skinedge.selftest import SELFTEST_TOLERANCE_STEPS, VECTORS_NAME, run_selftest

    try:
        clf = Classifier(model, num_threads=threads, backend=backend)
    except BackendError as exc:
        fail_unusable(exc)
    except SkinedgeError as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo("selftest FAIL: the model could not be loaded")
        raise SystemExit(EXIT_UNUSABLE) from None
    try:
        if VECTORS_NAME not in clf.model_files:
            click.echo(f"error: {clf.model_path}: this model carries no self-test vectors ({VECTORS_NAME} is not in "
                       "its metadata); nothing to check.", err=True)
            raise SystemExit(EXIT_UNUSABLE)
        try:
            checks = run_selftest(clf, clf.model_files)
        except SkinedgeError as exc:
            fail_unusable(exc)
        where = f"{clf.backend.name} {clf.backend.version}, {clf.num_threads} threads, {clf.delegate.describe()}"
    finally:
        clf.close()
    if not checks:
        click.echo(f"error: {clf.model_path}: its self-test vector list is empty; nothing to check", err=True)
        raise SystemExit(EXIT_UNUSABLE)
    def name(index: int) -> str:
        return clf.labels[index] if 0 <= index < len(clf.labels) else str(index)

    for c in checks:
        click.echo(f"{c.name}: top-1 expected {name(c.top1_expected)}, got {name(c.top1_got)}; max difference "
                   f"{c.max_step_diff:g} quantization steps  {'PASS' if c.passed else 'FAIL'}")
    failed = sum(not c.passed for c in checks)
    verdict = "PASS" if not failed else "FAIL"
    click.echo(f"selftest {verdict}: {len(checks) - failed}/{len(checks)} vectors match within "
               f"{SELFTEST_TOLERANCE_STEPS:g} quantization step ({clf.model_path}; {where})")
    raise SystemExit(EXIT_FAILED_INPUTS if failed else 0)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback is reachable from the network (warned).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: a free port.")
@click.option("--camera", "camera", default=None,
              help="Live view from this camera (index such as 0, device path, or video file).")
@_model_option
@_labels_option
@_threads_option
@_backend_option
@click.option("--max-body-mb", type=click.FloatRange(min=0.001), default=20.0, show_default=True,
              help="Largest upload accepted (413 beyond).")
@_gate_options
@kiosk_options
def serve(host, port, camera, model, labels, threads, backend, max_body_mb, not_skin, other_condition,
          quality_check, token_file, certfile, keyfile, case_log, keep_photos, retain_days, insecure_no_auth) -> None:
    """Serve a local web page and JSON API for classifying photos (offline, from this board).

    Endpoints: / (the page), POST /api/classify, GET /api/info, GET /healthz, and with --camera
    GET /api/live and /api/live.mjpg. Stops cleanly on Ctrl-C or SIGTERM.
    """
    from skinedge.serve import ServeOptions, configure_logging, run_server

    check_access_options(host, token_file, certfile, keyfile, case_log, keep_photos, retain_days, insecure_no_auth)
    configure_logging()
    clf = _make_classifier(model=store_model(model), labels=labels, num_threads=threads, backend=backend,
                           options=_options(not_skin=not_skin, other_condition=other_condition,
                                            quality_check=quality_check))
    live = kiosk = None
    try:
        kiosk = build_kiosk(token_file, certfile, keyfile, case_log, keep_photos, retain_days, clf.labels)
        if camera is not None:
            from skinedge.serve.live import LiveFeed

            live = LiveFeed(clf, int(camera) if camera.isdigit() else camera)
        options = ServeOptions(max_body_bytes=int(max_body_mb * 1024 * 1024))
        raise SystemExit(run_server(clf, host, port, options, live, kiosk))
    except SkinedgeError as exc:
        fail_unusable(exc)
    except OSError as exc:  # the address is taken or not ours to bind
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise SystemExit(EXIT_UNUSABLE) from None
    finally:
        if live is not None:
            live.stop()
        if kiosk is not None:
            kiosk.close()
        clf.close()




@main.command("watch")
@click.argument("source", required=False)
@_model_option
@_labels_option
@_threads_option
@_backend_option
@click.option("--abstain", type=click.FloatRange(0, 1), default=None,
              help="Flag results whose smoothed top score is below this as uncertain (default: the model's own).")
@click.option("--smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.6, show_default=True,
              help="Weight of the past in the moving average of scores (0: no smoothing).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per result on stdout (time_s, frame, label, score, uncertain, fps, latency_ms).")
@click.option("--save-frames", type=click.Path(file_okay=False), default=None,
              help="Save the frames where the label changes (PNG) in this folder.")
@click.option("--explain", is_flag=True,
              help="Overlay the model's heatmap on saved frames (a heatmap is computed for every frame).")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), default=None, help="Stop after this many results.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds.")
@click.option("--picamera", is_flag=True, help="Raspberry Pi camera module through picamera2 (SOURCE: camera number).")
@click.option("--drop-stale/--every-frame", "drop_stale", default=None,
              help="Keep only the newest frame, or classify every frame in order (default: newest for cameras and "
                   "URLs, every frame for video files).")
@click.option("--open-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for the source to open.")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Seconds to wait for a frame before giving up.")
@click.option("--capture-size", default="model", show_default=True, metavar="model|camera|WxH",
              help="Frame size to ask a camera for: 'model' the smallest 4:3 mode covering the model's input "
                   "(320x240 for 224x224), 'camera' the camera's default, or e.g. 640x480. Files and URLs: ignored.")
@_gate_options
def watch_command(source, model, labels, threads, backend, abstain, smoothing, as_json, save_frames, explain,
                  max_frames, duration_s, picamera, drop_stale, open_timeout, read_timeout, capture_size, not_skin,
                  other_condition, quality_check) -> None:
    """Classify a camera or video live: SOURCE is a camera index (0), /dev/videoN, a video file or an
    RTSP/HTTP URL (needs the camera extra: pip install "skinedge[camera]").

    Prints one status line per result (updated in place on a terminal) and a line whenever the
    smoothed label changes. Stops on Ctrl-C, at the end of a file, or after --frames / --duration.
    Exit status: 0 when stopped normally, 1 if the source cannot be opened or read, 2 for an unusable
    model, 130 on Ctrl-C.
    """
    import contextlib
    import shutil
    import time

    from skinedge.reasons import live_status
    from skinedge.video import SourceError, save_frame, watch

    if source is None and not picamera:
        raise click.UsageError("give a SOURCE (camera index, /dev/videoN, video file or URL), or --picamera")
    if explain and not save_frames:
        raise click.UsageError("--explain draws heatmaps on saved frames: add --save-frames DIR")
    size = _capture_size(capture_size)
    clf = _make_classifier(model=model, labels=labels, num_threads=threads, backend=backend,
                           options=_options(abstain=abstain, not_skin=not_skin, other_condition=other_condition,
                                            quality_check=quality_check))
    tty = sys.stdout.isatty() and not as_json
    width = max(40, shutil.get_terminal_size((100, 24)).columns - 1)
    count = saved = 0
    started = time.monotonic()

    def show(line: str, keep: bool = False) -> None:
        if tty:  # \r and erase-to-end-of-line (ESC [K) overwrite the previous status line in place
            sys.stdout.write("\r" + line[:width] + "\x1b[K" + ("\n" if keep else ""))
            sys.stdout.flush()
        else:
            click.echo(line)

    try:
        frames = watch(clf, int(source) if source and source.isdigit() else source, smoothing=smoothing,
                       explain=explain, max_frames=max_frames, duration_s=duration_s, picamera=picamera,
                       open_timeout_s=open_timeout, read_timeout_s=read_timeout, drop_stale=drop_stale,
                       capture_size=size)
        with contextlib.closing(frames):
            for fr in frames:
                count += 1
                if count == 1 and not as_json:  # once the source works: a bad one gets one error line only
                    from skinedge.classifier import DISCLAIMER

                    click.echo(DISCLAIMER, err=True)  # stderr: stdout carries the status lines
                path = save_frame(fr, save_frames) if save_frames and fr.label_changed else None
                saved += path is not None
                r = fr.result
                if as_json:
                    click.echo(json.dumps(fr.to_dict() | ({"saved": str(path)} if path else {})))
                    continue
                # no answer: the status says why ("hold still", "no skin in view"), never a label
                said = f"{r.label} {r.score:.3f}" if r.reason is None else f"-- {live_status(r)}"
                status = (f"frame {fr.index:>6}  {fr.time_s:7.2f} s  {said}  "
                          f"{fr.fps:5.1f} fps  latency {fr.latency_ms:4.0f} ms")
                if tty and fr.label_changed:
                    show(f"frame {fr.index} at {fr.time_s:.2f} s: {said}"
                         + (f"  saved {path}" if path else ""), keep=True)
                show(status + (f"  saved {path}" if path and not tty else ""))
    except SourceError as exc:
        if tty and count:
            sys.stdout.write("\n")
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_FAILED_INPUTS) from None
    except KeyboardInterrupt:
        if tty:
            sys.stdout.write("\n")
        sys.stdout.flush()
        click.echo(f"interrupted: {count} frames classified, {saved} saved", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except SkinedgeError as exc:
        fail_unusable(exc)
    finally:
        clf.close()
    if tty:
        sys.stdout.write("\n")
    elapsed = time.monotonic() - started
    why = ("--frames reached" if max_frames and count >= max_frames
           else "--duration reached" if duration_s and elapsed >= duration_s else "end of the video")
    if not as_json:
        click.echo(f"{count} frames classified, {saved} saved; stopped: {why}", err=True)


def _capture_size(text: str) -> tuple[int, int] | str:
    if text in ("model", "camera"):
        return text
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise click.BadParameter(f"expected model, camera or WIDTHxHEIGHT (e.g. 640x480), got {text!r}",
                                 param_hint="--capture-size")
    return int(w), int(h)


def run() -> None:
    """The ``skinedge`` program: :data:`main`, and, after ``predict``, an exit that skips the interpreter's
    teardown (freeing every module and object one by one: about 15 ms of a 0.2 s ``skinedge predict one.jpg``,
    docs/benchmarks.md, suite 5), as large Python services do to skip their final collection. Only output to
    stdout and stderr is pending then; it is flushed here, with Python's own status 120 if that fails (a full
    disk), and a reader that stopped reading gets the usual status 0."""
    try:
        main()
    except _OneShotDone as done:
        code = done.code if isinstance(done.code, int) else 0
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            code = 0
        except OSError:
            code = 120
        try:
            sys.stderr.flush()
        except OSError:
            pass
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
