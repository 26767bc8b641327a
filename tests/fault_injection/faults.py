"""The fault catalogue: each entry breaks one thing the runtime must get right, and the fast tests must notice.

Two kinds:

* ``Source``: a mutation of a runtime file, applied to a throwaway copy of the repository (never to the working
  tree). ``variants`` lists (old snippet, new snippet) pairs; the first whose old snippet is in the file is used
  (the code moves under refactors: a variant per known shape of it). None found: NOT-APPLICABLE.
* ``Patch``: a monkeypatch of a library the runtime calls (Pillow, numpy), applied inside the pytest process by
  ``fi_plugin`` when ``SKINEDGE_FAULT`` names it. The tests' own expectations never go through these calls
  (numpy-built pixels, a numpy re-implementation of Pillow's resampling, Python's sorted), or the fault would
  cancel out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Source:
    name: str
    area: str
    breaks: str
    file: str
    variants: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Patch:
    name: str
    area: str
    breaks: str
    apply: Callable[[], None] = field(repr=False)


# -- library patches (run in the pytest process) --------------------------------------------------------------------


def _swap_channels(im):
    from PIL import Image

    r, g, b = im.split()
    return Image.merge("RGB", (b, g, r))


def _decoder_bgr() -> None:
    from PIL import ImageFile

    original = ImageFile.ImageFile.load

    def load(self):
        out = original(self)
        if self.mode == "RGB" and not getattr(self, "_fi_swapped", False):
            self._fi_swapped = True
            self.im = _swap_channels(self).im
            out = self.im.pixel_access(self.readonly) if hasattr(self.im, "pixel_access") else out
        return out

    ImageFile.ImageFile.load = load


def _convert_bgr() -> None:
    from PIL import Image

    original = Image.Image.convert

    def convert(self, mode=None, *args, **kwargs):
        out = original(self, mode, *args, **kwargs)
        return _swap_channels(out) if mode == "RGB" and self.mode != "RGB" else out

    Image.Image.convert = convert


def _exif_skipped() -> None:
    from PIL import ImageOps

    ImageOps.exif_transpose = lambda image, *, in_place=False: None if in_place else image.copy()


def _exif_rotation_swapped() -> None:
    from PIL import Image

    original = Image.Image.transpose
    r90, r270 = Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270
    swap = {r90: r270, r270: r90}
    Image.Image.transpose = lambda self, method: original(self, swap.get(method, method))


def _resize_with(fn) -> None:
    from PIL import Image

    original = Image.Image.resize

    def resize(self, size, resample=None, box=None, reducing_gap=None):
        return fn(original, self, tuple(size), resample, box)

    Image.Image.resize = resize


def _resize_bicubic() -> None:
    from PIL import Image

    _resize_with(lambda orig, im, size, resample, box: orig(im, size, Image.Resampling.BICUBIC, box))


def _resize_no_antialias() -> None:
    from PIL import Image

    def fn(orig, im, size, resample, box):
        box = box or (0, 0) + im.size
        return im.transform(size, Image.Transform.EXTENT, box, Image.Resampling.BILINEAR)  # point sampling

    _resize_with(fn)


def _resize_off_by_one() -> None:
    def fn(orig, im, size, resample, box):
        return orig(im, (size[0] + 1, size[1] + 1), resample, box).crop((0, 0) + size)

    _resize_with(fn)


def _alpha_over_black() -> None:
    from PIL import Image

    def alpha_composite(self, im, dest=(0, 0), source=(0, 0)):
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        self.paste(Image.alpha_composite(black, im), dest)

    Image.Image.alpha_composite = alpha_composite


def _alpha_dropped() -> None:
    from PIL import Image

    Image.Image.alpha_composite = lambda self, im, dest=(0, 0), source=(0, 0): self.paste(im, dest)


def _draft_halved() -> None:
    from PIL import JpegImagePlugin

    original = JpegImagePlugin.JpegImageFile.draft

    def draft(self, mode, size):
        return original(self, mode, (max(1, size[0] // 2), max(1, size[1] // 2)) if size else size)

    JpegImagePlugin.JpegImageFile.draft = draft


def _argsort_reversed() -> None:
    import numpy as np

    original = np.argsort
    np.argsort = lambda a, *args, **kwargs: original(a, *args, **kwargs)[::-1]


def _exp_base2() -> None:  # softmax computed with the wrong exponential: a miscalibrated score
    import numpy as np

    np.exp = np.exp2


PATCHES = [
    Patch("pil_decoder_returns_bgr", "decoding", "Pillow's decoders hand back B,G,R", _decoder_bgr),
    Patch("pil_convert_rgb_swaps_channels", "decoding", "convert('RGB') (palette, gray, CMYK, RGBA) swaps R and B",
          _convert_bgr),
    Patch("exif_transpose_skipped", "orientation", "ImageOps.exif_transpose returns the stored picture",
          _exif_skipped),
    Patch("exif_rotation_swapped", "orientation", "ROTATE_90 and ROTATE_270 swapped", _exif_rotation_swapped),
    Patch("resize_filter_bicubic", "resizing", "Image.resize always bicubic, whatever filter is asked for",
          _resize_bicubic),
    Patch("resize_antialias_off", "resizing", "resize by point-sampled bilinear (no antialiasing)",
          _resize_no_antialias),
    Patch("resize_off_by_one", "resizing", "resized one pixel too large, then cropped", _resize_off_by_one),
    Patch("alpha_composite_over_black", "transparency", "alpha_composite ignores the canvas: over black",
          _alpha_over_black),
    Patch("alpha_dropped", "transparency", "alpha_composite pastes the colour, alpha ignored", _alpha_dropped),
    Patch("jpeg_draft_scale_halved", "decoding", "JPEG draft asks for half the size (one DCT scale too small)",
          _draft_halved),
    Patch("numpy_argsort_reversed", "ranking", "numpy.argsort returns the order reversed", _argsort_reversed),
    Patch("numpy_exp_is_exp2", "calibration", "numpy.exp computes 2**x (softmax miscalibrated)", _exp_base2),
]


# -- source mutations (applied to a copy of the repository) ---------------------------------------------------------

P, C, M, B = "skinedge/preprocess.py", "skinedge/classifier.py", "skinedge/metadata.py", "skinedge/backend.py"
PP = "skinedge/postprocess.py"

SOURCES = [
    # input quantization / normalisation
    Source("int8_zero_point_127", "input quantization", "int8 input = pixel - 127 (the issue's example)", P,
           (("(pixels.astype(np.int16) - 128)", "(pixels.astype(np.int16) - 127)"),)),
    Source("int8_bytes_reinterpreted", "input quantization", "int8 input = the uint8 bytes viewed as int8 (wraps)", P,
           (("(pixels.astype(np.int16) - 128).astype(np.int8)", "pixels.view(np.int8)"),)),
    Source("uint8_input_off_by_one", "input quantization", "uint8 input = pixel + 1 (clipped)", P,
           (("    if dtype == np.uint8:\n        x = pixels\n",
             "    if dtype == np.uint8:\n"
             "        x = np.clip(pixels.astype(np.int16) + 1, 0, 255).astype(np.uint8)\n"),)),
    Source("uint8_input_fed_as_int8_codes", "input quantization", "uint8 input = pixel - 128 (wrapped to uint8)", P,
           (("    if dtype == np.uint8:\n        x = pixels\n",
             "    if dtype == np.uint8:\n        x = (pixels.astype(np.int16) - 128).astype(np.uint8)\n"),)),
    Source("float_input_scale_inverted", "input quantization", "float input = (pixel - mean) * std", P,
           (("x = (pixels.astype(np.float32) - mean) / std", "x = (pixels.astype(np.float32) - mean) * std"),)),
    Source("float_input_mean_added", "input quantization", "float input = (pixel + mean) / std", P,
           (("x = (pixels.astype(np.float32) - mean) / std", "x = (pixels.astype(np.float32) + mean) / std"),)),
    Source("float_input_zero_to_one", "input quantization", "float input = pixel / 255, spec ignored", P,
           (("x = (pixels.astype(np.float32) - mean) / std", "x = pixels.astype(np.float32) / 255.0"),)),
    Source("metadata_mean_std_ignored", "metadata", "the model's input mean/std (metadata) ignored: defaults used",
           M, (('v1_norm=(inp.get("mean", 0.0), inp.get("std", 1.0))', "v1_norm=(0.0, 1.0)"),)),
    Source("spec_mean_std_ignored", "input quantization", "the spec's mean/std ignored: 127.5 / 127.5 fed", P,
           (("mean, std = spec.mean, spec.std", "mean, std = 127.5, 127.5"),)),
    Source("output_zero_point_added", "input quantization", "output dequantized as (q + zero_point) * scale", B,
           (("return (values - zero) * scale if scale else values",
             "return (values + zero) * scale if scale else values"),)),
    Source("output_scale_inverted", "input quantization", "output dequantized as (q - zero_point) / scale", B,
           (("return (values - zero) * scale if scale else values",
             "return (values - zero) / scale if scale else values"),)),
    # calibration and abstention
    Source("temperature_multiplied", "calibration", "softmax(logits * T) instead of logits / T", PP,
           (("z = np.asarray(logits).astype(np.float64) / temperature",
             "z = np.asarray(logits).astype(np.float64) * temperature"),)),
    Source("temperature_ignored", "calibration", "the metadata's temperature never read (1.0)", C,
           (("self.temperature = self.metadata.temperature if self.metadata else 1.0", "self.temperature = 1.0"),)),
    Source("abstain_comparison_flipped", "abstention", "uncertain when the top score is ABOVE the threshold", PP,
           (("float(np.max(scores)) < threshold", "float(np.max(scores)) > threshold"),)),
    Source("abstain_inclusive", "abstention", "uncertain when the top score equals the threshold", PP,
           (("float(np.max(scores)) < threshold", "float(np.max(scores)) <= threshold"),)),
    Source("abstain_on_uncalibrated_scores", "abstention", "the threshold compared with the uncalibrated softmax", C,
           (("reason = decide(scores, gates, quality, opts)",
             "reason = decide(softmax(np.log(np.maximum(scores, 1e-300)) * self.temperature),"
             " gates, quality, opts)"),)),
    Source("abstain_threshold_from_metadata_ignored", "abstention", "the metadata's abstain threshold never read (0)",
           C, (("(self.metadata.abstain_threshold if self.metadata else 0.0)", "(0.0)"),
               ("= self.metadata.abstain_threshold if self.metadata else 0.0", "= 0.0"))),
    # ranking and labels
    Source("ranking_ascending", "ranking", "classes ranked worst first", PP,
           (('order = np.argsort(-scores, kind="stable")', 'order = np.argsort(scores, kind="stable")'),)),
    Source("top_k_one_short", "ranking", "top_k lists k - 1 classes", C,
           (("ranked(scores, opts.top_k, opts.score_threshold)",
             "ranked(scores, opts.top_k - 1, opts.score_threshold)"),)),
    Source("score_threshold_exclusive", "ranking", "a class scoring exactly the threshold is left out", PP,
           (("order[scores[order] >= score_threshold]", "order[scores[order] > score_threshold]"),)),
    Source("top_label_shifted", "ranking", "the top class named by the next label", C,
           (("label=self.labels[best],", "label=self.labels[(best + 1) % len(self.labels)],"),)),
    Source("top_k_labels_shifted", "ranking", "top_k entries named by the previous label", C,
           (("Category(int(i), self.labels[i], float(scores[i]))",
             "Category(int(i), self.labels[i - 1], float(scores[i]))"),)),
    Source("labels_file_sorted", "ranking", "labels read in sorted order, not file order", M,
           (("return tuple(line.strip() for line in text.splitlines() if line.strip())",
             "return tuple(sorted(line.strip() for line in text.splitlines() if line.strip()))"),)),
    # timings
    Source("timings_decode_preprocess_swapped", "timings", "decode_ms and preprocess_ms swapped", C,
           (("Timings(prepared.decode_ms, prepared.resize_ms, invoke_ms)",
             "Timings(prepared.resize_ms, prepared.decode_ms, invoke_ms)"),)),
    Source("timings_preprocess_invoke_swapped", "timings", "preprocess_ms and invoke_ms swapped (the issue's)", C,
           (("Timings(prepared.decode_ms, prepared.resize_ms, invoke_ms)",
             "Timings(prepared.decode_ms, invoke_ms, prepared.resize_ms)"),)),
    Source("timings_preprocess_in_seconds", "timings", "decode/preprocess in seconds, not ms", P,
           (("tensor, (t1 - t0) * 1000, (t2 - t1) * 1000, full", "tensor, (t1 - t0), (t2 - t1), full"),)),
    Source("timings_invoke_in_seconds", "timings", "invoke_ms in seconds", C,
           (("invoke_ms = (time.perf_counter() - t) * 1000", "invoke_ms = (time.perf_counter() - t)"),)),
    Source("timings_total_without_heatmap", "timings", "total_ms leaves out heatmap_ms", C,
           (("return self.decode_ms + self.preprocess_ms + self.invoke_ms + self.heatmap_ms",
             "return self.decode_ms + self.preprocess_ms + self.invoke_ms"),)),
    Source("timings_json_preprocess_is_invoke", "timings", "JSON 'preprocess' reports invoke_ms", C,
           (('"preprocess": round(self.timings.preprocess_ms, 3)', '"preprocess": round(self.timings.invoke_ms, 3)'),)),
    Source("explain_heatmap_ms_in_seconds", "timings", "explain: heatmap_ms in seconds, not ms", C,
           (("heatmap_ms=(time.perf_counter() - t) * 1000", "heatmap_ms=(time.perf_counter() - t)"),)),
    # resizing and cropping
    Source("resize_filter_table_wrong", "resizing", "'bilinear' maps to Pillow's bicubic", P,
           (('"bilinear": Image.Resampling.BILINEAR,', '"bilinear": Image.Resampling.BICUBIC,'),)),
    Source("resize_box_off_by_one", "resizing", "squash resizes from (0, 0, w - 1, h - 1)", P,
           (("box: tuple[float, float, float, float] = (0, 0, w, h)",
             "box: tuple[float, float, float, float] = (0, 0, w - 1, h - 1)"),)),
    Source("resize_width_height_swapped", "resizing", "resize to (height, width)", P,
           (("image.resize((spec.width, spec.height)", "image.resize((spec.height, spec.width)"),)),
    Source("center_crop_shifted", "cropping", "the horizontal crop box one pixel right", P,
           (("box = ((w - cw) / 2, 0, (w + cw) / 2, h)", "box = ((w - cw) / 2 + 1, 0, (w + cw) / 2 + 1, h)"),)),
    Source("center_crop_from_top", "cropping", "the vertical crop taken from the top, not the centre", P,
           (("box = (0, (h - ch) / 2, w, (h + ch) / 2)", "box = (0, 0, w, ch)"),)),
    Source("metadata_spec_ignored", "metadata", "the metadata's preprocessing spec ignored (squash, bilinear)", C,
           (("            return self.metadata.preprocess\n",
             "            return PreprocessSpec(height=int(self._input['shape'][1]),"
             " width=int(self._input['shape'][2]))\n"),)),
    # decoding, orientation, transparency
    Source("exif_orientation_skipped", "orientation", "EXIF orientation never applied", P,
           (("if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:", "if False:"),
            ("if orientation != 1:", "if False:"))),
    Source("jpeg_draft_one_scale_too_small", "decoding", "JPEG draft target halved: decoded below the input size", P,
           (("side = max(draft_size)", "side = max(draft_size) // 2"),)),
    Source("jpeg_draft_never", "decoding", "JPEGs never drafted (full decode, other pixels)", P,
           (("draft = (spec.width, spec.height) if spec.jpeg_draft else None", "draft = None"),)),
    Source("gray16_rounded_not_shifted", "decoding", "16-bit gray rounded to 8 bits instead of its top 8 bits", P,
           (("arr.astype(np.int64) >> 8", "(arr.astype(np.int64) + 128) >> 8"),)),
    Source("float_gray_not_clipped", "decoding", "float grayscale cast to uint8 without clipping (wraps)", P,
           (("gray = np.clip(arr, 0, 255).astype(np.uint8)", "gray = arr.astype(np.int64).astype(np.uint8)"),)),
    Source("alpha_over_black", "transparency", "transparent pixels composited over black, not the spec colour", P,
           (("canvas = Image.new(\"RGBA\", rgba.size, (*background, 255))",
             "canvas = Image.new(\"RGBA\", rgba.size, (0, 0, 0, 255))"),)),
    Source("alpha_rgba_dropped", "transparency", "RGBA not treated as transparent: alpha dropped", P,
           (('has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La")',
             'has_alpha = mode in ("LA", "PA", "RGBa", "La")'),)),
    Source("spec_background_not_passed", "transparency", "photos composited over white whatever the spec says",
           P, (("background=spec.alpha_background", "background=(255, 255, 255)"),)),
]

ALL = {f.name: f for f in [*SOURCES, *PATCHES]}
assert len(ALL) == len(SOURCES) + len(PATCHES), "fault names must be unique"
