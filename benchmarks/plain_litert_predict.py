"""The plain LiteRT script that suite 5 compares ``skinedge predict one.jpg`` with, in a fresh process each.

What a user would write with LiteRT, numpy and Pillow alone, doing the same work as ``skinedge predict``
with the same number of threads: load the model, decode one photo and resize it to the input size with
Pillow (the plain way: full-size decode, Pillow's default resize filter), quantize it with the input
tensor's scale and zero point, invoke, and print the top label. No checks, no metadata, no CLI; the labels
come on the command line (a script would hard-code them).

    python plain_litert_predict.py MODEL PHOTO LABEL [LABEL ...]
"""

import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

model, photo, labels = sys.argv[1], sys.argv[2], sys.argv[3:]
interpreter = Interpreter(model_path=model, num_threads=len(os.sched_getaffinity(0)))
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
_, height, width, _ = inp["shape"]
pixels = np.asarray(Image.open(photo).convert("RGB").resize((width, height)), dtype=np.float32)
scale, zero_point = inp["quantization"]
info = np.iinfo(inp["dtype"])
quantized = np.clip(np.round(pixels / scale + zero_point), info.min, info.max).astype(inp["dtype"])
interpreter.set_tensor(inp["index"], quantized[None])
interpreter.invoke()
print(labels[int(np.argmax(interpreter.get_tensor(out["index"])[0]))])
