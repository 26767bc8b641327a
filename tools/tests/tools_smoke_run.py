"""The training tools' smoke run that tests/test_tools_smoke.py checks, as the command line runs it.

``python tests/tools_smoke_run.py OUT SKIN6 WEIGHTS``: trains every stage (alpha 0.35, 96x96 input, 8 photos per
class and split, one epoch per stage), rebuilds both artifacts twice (GPTQ, and nearest rounding, side by side)
and writes the report, each step in its own fresh process as a user runs them (and as the committed files were
built: Keras numbers its layers per process, and the names end up in the files). tests/conftest.py starts it in the
background at collection; its tests wait for it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WEIGHTS_035 = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
REPRESENTATIVE = 24


def steps(out: Path, skin6: Path, weights: Path) -> dict[str, list[str]]:
    """The ``skinedge-tools`` commands of the smoke run, by name."""
    common = ["--cache-dir", str(out / "cache")]
    rebuild = ["rebuild", "--run", str(out / "run"), "--representative", str(REPRESENTATIVE), *common]
    return {
        "train": ["train", "--data", str(skin6), "--weights", str(weights / WEIGHTS_035), "--alpha", "0.35",
                  "--size", "96", "--epochs", "1,1,1", "--limit-per-class", "8", "--out", str(out / "run"), *common],
        "rebuild": [*rebuild, "--out", str(out / "models")],
        "nearest": [*rebuild, "--out", str(out / "nearest"), "--weight-rounding", "nearest"],
        "report": ["report", "--run", str(out / "run"), "--models", str(out / "models"), "--docs", str(out / "docs"),
                   "--latency-runs", "10"],
    }


def _command(step: list[str]) -> list[str]:
    print("$ skinedge-tools", " ".join(step), flush=True)
    return [sys.executable, "-m", "skinedge_tools.cli", *step]


def main(argv: list[str]) -> int:
    """Train; then the nearest-rounding rebuild beside the GPTQ rebuild and the report (much of each is one core:
    side by side they keep both busy once the rest of the suite is done)."""
    out, skin6, weights = (Path(a) for a in argv)
    cmds = steps(out, skin6, weights)
    if code := subprocess.call(_command(cmds["train"])):
        return code
    with open(out / "nearest.log", "w") as log:
        nearest = subprocess.Popen(_command(cmds["nearest"]), stdout=log, stderr=subprocess.STDOUT)
        code = subprocess.call(_command(cmds["rebuild"])) or subprocess.call(_command(cmds["report"]))
        code_nearest = nearest.wait()
    print((out / "nearest.log").read_text(errors="replace"), flush=True)
    return code or code_nearest


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
