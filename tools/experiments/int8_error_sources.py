"""Where an int8 file disagrees with its float32 twin: the body's features or the head, and which layers.

    python tools/experiments/int8_error_sources.py models/run-efficientnet-lite0 \\
        models/skinedge_efficientnet_lite0_int8.tflite models/skinedge_efficientnet_lite0_float32.tflite

Runs both files on the run's test photos with intermediate tensors exposed (``tflite_edit.expose_tensors``) and
prints: top-1 agreement; agreement when the float32 head is applied to the int8 pooled features (what the body
alone costs); the pooled-feature and logit errors against the float32 logits' top-2 gaps; then, for every int8
activation the two files share by name, its relative L2 error on every sixth test photo.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skinedge_tools import data as data_mod
from skinedge_tools.tflite_edit import expose_tensors, find_classifier_head
from skinedge_tools.train import TrainConfig, discover_splits

from skinedge.backend import create_interpreter, run_on_images
from skinedge.metadata import unpack


def _exposed(flat: bytes, indices: list[int], x: np.ndarray) -> dict[int, np.ndarray]:
    interp, _ = create_interpreter(expose_tensors(flat, indices), num_threads=2)
    index_of = {d["name"]: int(d["index"]) for d in interp.get_output_details()}
    return {index_of[name]: v for name, v in run_on_images(interp, x).items()}


def main(run: Path, int8: Path, float32: Path, data_root: str = "../shared/data/skin6") -> None:
    cfg = TrainConfig.from_json((run / "config.json").read_text())
    cfg.data_root = data_root
    x, _ = data_mod.load_arrays(discover_splits(cfg)["test"], cfg.spec(), Path("runs/cache"))
    flats = {k: unpack(p.read_bytes(), str(p)).flatbuffer for k, p in (("int8", int8), ("float32", float32))}
    heads = {k: find_classifier_head(f) for k, f in flats.items()}
    out = {}
    for k, flat in flats.items():
        h = heads[k]
        v = _exposed(flat, [h.features, h.logits], x)
        out[k] = (v[h.features].mean((1, 2)), v[h.logits].reshape(len(x), -1))
    (p8, l8), (p32, l32) = out["int8"], out["float32"]
    top32 = l32.argmax(1)
    body_only = (p8 @ heads["float32"].weights.T + heads["float32"].bias).argmax(1)
    gaps = np.diff(np.sort(l32, 1)[:, -2:], axis=1).ravel()
    print(f"top-1 agreement {np.mean(l8.argmax(1) == top32):.4f}; float32 head on int8 features "
          f"{np.mean(body_only == top32):.4f}")
    print(f"pooled features relative error {np.linalg.norm(p8 - p32) / np.linalg.norm(p32):.4f}; logit RMS error "
          f"{np.sqrt(((l8 - l32) ** 2).mean()):.4f} (logit std {l32.std():.3f}); float32 top-2 gap quantiles "
          f"1/2/5%: {np.round(np.quantile(gaps, [0.01, 0.02, 0.05]), 4).tolist()}")
    details = {}
    for k, flat in flats.items():
        interp, _ = create_interpreter(flat, num_threads=1)
        details[k] = {d["name"]: d for d in interp.get_tensor_details()}
    # Activations: 4-D int8 with one (per-tensor) scale; the weights are per-channel.
    shared = [n for n, d in details["int8"].items() if d["dtype"] == np.int8 and len(d["shape"]) == 4
              and len(d["quantization_parameters"]["scales"]) == 1 and n in details["float32"]]
    acts = {k: _exposed(flats[k], [int(details[k][n]["index"]) for n in shared], x[::6]) for k in flats}
    for n in shared:
        a, b = (acts[k][int(details[k][n]["index"])] for k in ("int8", "float32"))
        scale = details["int8"][n]["quantization"][0]
        print(f"{np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-12):.4f}  step {scale:.4f}  "
              f"range [{b.min():.1f}, {b.max():.1f}]  {n.split(';')[0][-70:]}")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:4]), *sys.argv[4:])
