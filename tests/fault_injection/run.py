"""Fault-injection runner: every fault in ``faults.py`` must make the fast correctness tests fail.

    python tests/fault_injection/run.py            # baseline (no fault: must pass), then every fault
    python tests/fault_injection/run.py --only int8_zero_point_127 --only alpha_dropped
    python tests/fault_injection/run.py --list

The repository is copied to a throwaway folder (``--copy``, default /work/scratch/fi-copy; never the working tree);
source faults are applied to the copy one at a time and undone after each run. Library faults are applied inside
pytest by ``fi_plugin``. Each run is ``pytest -x`` in two stages, the known-answer/semantics files first (most faults
stop there, in seconds), then the rest of the fast suite. Exit status: 0 when the baseline passes and every fault is
caught; 1 when one SURVIVED or is NOT-APPLICABLE (its anchor snippet is gone from the code: update the variants).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from faults import ALL, Source  # noqa: E402

FIRST = ["tests/test_known_answers.py", "tests/test_semantics.py"]
# Not correctness tests, or too slow to run ~50 times: training tools, the rebuild, soak, browser, TensorFlow backend.
EXCLUDED = re.compile(r"test_tools_|test_soak|test_serve_browser|test_backend_tensorflow|test_training_parity")


def rest_of_suite(root: Path) -> list[str]:
    files = sorted(p.relative_to(root).as_posix() for p in (root / "tests").glob("test_*.py"))
    return [f for f in files if f not in FIRST and not EXCLUDED.search(f)]


def copy_repo(dest: Path) -> None:
    """A fresh snapshot of the working tree (what rsync -a --delete would give, without needing rsync)."""
    if dest.exists():
        shutil.rmtree(dest)
    skip = shutil.ignore_patterns(".venv", "runs", ".git", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, dest, ignore=skip, symlinks=True)


def environment(copy: Path, fault: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SKINEDGE_FAULT"}
    env["PYTHONPATH"] = os.pathsep.join([str(copy), str(copy / "tests" / "fault_injection")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutated module must never leave a .pyc behind
    env.setdefault("SKINEDGE_SHARED", str(REPO.parent / "shared"))
    if fault:
        env["SKINEDGE_FAULT"] = fault
    return env


def check_import(copy: Path, python: str) -> None:
    out = subprocess.run([python, "-c", "import skinedge; print(skinedge.__file__)"], cwd=copy,
                         env=environment(copy, None), capture_output=True, text=True, check=True).stdout.strip()
    if not out.startswith(str(copy)):
        sys.exit(f"skinedge resolves to {out}, not to the copy {copy}: refusing to run")


def pytest_stage(copy: Path, python: str, files: list[str], fault: str | None, timeout: float) -> tuple[int, str]:
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "fi_plugin", "-m", "not slow",
           "-rf", "--no-header", *files]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=environment(copy, fault), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timeout"
    return proc.returncode, proc.stdout + proc.stderr


def first_failure(output: str) -> str:
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    if m:
        return m.group(1)
    m = re.search(r"^E\s+(.*)$", output, re.M)
    return f"(collection) {m.group(1)[:100]}" if m else "(no test named)"


def _mutate(copy: Path, fault) -> tuple[Path, str] | None:
    """Apply source fault ``fault`` to the copy; return (file, original text), or None if no anchor matches."""
    target = copy / fault.file
    original = target.read_text()
    variant = next(((old, new) for old, new in fault.variants if old in original), None)
    if variant is None:
        return None
    target.write_text(original.replace(*variant))
    return target, original


def run_one(copy: Path, python: str, name: str | None, timeout: float,
            stages: tuple[str, ...] = ("new", "rest")) -> tuple[str, str, float]:
    """(outcome, detail, seconds) for fault ``name`` (None: baseline).

    A failure counts only once confirmed: the failing test, run again alone, fails again with the fault and passes
    without it. A test that does not (a timing-sensitive test on a loaded machine) is deselected and the stage run
    again."""
    t0 = time.monotonic()
    fault = ALL[name] if name else None
    patch = name if fault is not None and not isinstance(fault, Source) else None
    flaky: list[str] = []
    for files in [FIRST] * ("new" in stages) + [rest_of_suite(copy)] * ("rest" in stages):
        for _ in range(4):
            mutated = _mutate(copy, fault) if isinstance(fault, Source) else None
            if isinstance(fault, Source) and mutated is None:
                return "NOT-APPLICABLE", f"no anchor of {len(fault.variants)} variant(s) in {fault.file}", 0.0
            try:
                code, out = pytest_stage(copy, python, files + [f"--deselect={t}" for t in flaky], patch, timeout)
            finally:
                if mutated is not None:
                    mutated[0].write_text(mutated[1])
            if code == 0:
                break
            failed = first_failure(out)
            if "::" not in failed:  # a collection error (a fault that broke an import, or a broken tree)
                if name is None:
                    return "BASELINE-FAILED", failed + "\n" + out[-3000:], time.monotonic() - t0
                return f"caught (exit {code})", failed, time.monotonic() - t0
            recheck, _ = pytest_stage(copy, python, [failed], None, timeout)
            if name is None:  # baseline: a test that passes when run again alone was flaky; one that fails is not
                if recheck != 0:
                    return "BASELINE-FAILED", failed + "\n" + out[-3000:], time.monotonic() - t0
            elif recheck == 0:  # and it fails again, alone, with the fault: the fault is what it saw
                mutated = _mutate(copy, fault) if isinstance(fault, Source) else None
                try:
                    again, _ = pytest_stage(copy, python, [failed], patch, timeout)
                finally:
                    if mutated is not None:
                        mutated[0].write_text(mutated[1])
                if again != 0:
                    note = f" (deselected as flaky: {', '.join(flaky)})" if flaky else ""
                    return "caught", failed + note, time.monotonic() - t0
            flaky.append(failed)
        else:
            return "UNCONFIRMED", f"tests failing with and without the fault: {', '.join(flaky)}", time.monotonic() - t0
    note = f"deselected as flaky: {', '.join(flaky)}" if flaky else ""
    return ("pass" if name is None else "SURVIVED"), note, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="run only this fault (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the faults and exit")
    ap.add_argument("--copy", type=Path, default=Path("/work/scratch/fi-copy"), help="throwaway copy of the repo")
    ap.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    ap.add_argument("--no-baseline", action="store_true", help="skip the no-fault run")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per pytest stage")
    ap.add_argument("--markdown", type=Path, help="also write the results as a markdown table to this file")
    ap.add_argument("--new-tests-only", action="store_true", help=f"run only {' and '.join(FIRST)}")
    ap.add_argument("--without-new-tests", action="store_true",
                    help=f"leave out {' and '.join(FIRST)}: what the rest of the suite catches on its own")
    args = ap.parse_args()
    if args.list:
        for f in ALL.values():
            kind = f"source {f.file}" if isinstance(f, Source) else "library patch"
            print(f"{f.name:42s} {f.area:20s} {kind:28s} {f.breaks}")
        return 0
    names = args.only or list(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        sys.exit(f"unknown fault(s): {', '.join(unknown)} (see --list)")
    copy = args.copy.resolve()
    if copy == REPO or REPO in copy.parents:
        sys.exit("the copy must be outside the repository")
    t0 = time.monotonic()
    copy_repo(copy)
    check_import(copy, args.python)
    bad = 0
    stages = ("rest",) if args.without_new_tests else ("new",) if args.new_tests_only else ("new", "rest")
    if not args.no_baseline:
        outcome, detail, secs = run_one(copy, args.python, None, args.timeout, stages)
        print(f"{'(baseline: no fault)':42s} {outcome:15s} {secs:6.1f}s  {detail}", flush=True)
        if outcome != "pass":
            print(detail)
            return 1
    rows = []
    for name in names:
        outcome, detail, secs = run_one(copy, args.python, name, args.timeout, stages)
        bad += not outcome.startswith("caught")
        print(f"{name:42s} {outcome:15s} {secs:6.1f}s  {detail}", flush=True)
        f = ALL[name]
        how = f"`{f.file}` mutation" if isinstance(f, Source) else "library patch"
        rows.append(f"| `{name}` | {f.area} | {f.breaks} ({how}) | {outcome} | `{detail.removeprefix('tests/')}` |")
    if args.markdown:
        head = "| fault | area | what it breaks (how) | result | first failing test |\n|---|---|---|---|---|\n"
        args.markdown.write_text(head + "\n".join(rows) + "\n")
    print(f"{len(names) - bad}/{len(names)} faults caught; {bad} survived or not applicable; "
          f"{time.monotonic() - t0:.0f} s in all")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
