"""Edits to a converted ``.tflite`` graph: a calibrated float softmax tail and standard TFLite metadata.

Why a tail instead of converting a Softmax layer: full-integer conversion would make the softmax int8,
whose 1/256 output steps tie the top two classes on some images. Dequantizing the int8 logits and
running a float ``SOFTMAX`` with ``beta = 1 / temperature`` keeps the logits exact, applies the
calibration inside the file, and gives the float32 scores that MediaPipe Tasks and the TFLite Task
Library require (both refuse int8 outputs). The int8 body is untouched, so it stays fully delegated.

``TFLITE_METADATA`` is the standard metadata flatbuffer (schema ``metadata_schema.fbs``, identifier
``M001``) those libraries read; its label file is the ``labels.txt`` that ``skinedge.metadata.pack``
already appends in the standard zip layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

STANDARD_METADATA_NAME = "TFLITE_METADATA"


def append_calibrated_softmax(flat: bytes, temperature: float) -> bytes:
    """``flat`` with its single output replaced by ``softmax(dequantize(output) / temperature)`` (float32)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    (graph,) = model.subgraphs
    (out_index,) = graph.outputs
    logits = graph.tensors[out_index]
    if logits.type not in (schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.FLOAT32):
        raise ValueError(f"output tensor type {logits.type} is not int8, uint8 or float32")
    src = out_index
    if logits.type != schema.TensorType.FLOAT32:
        src = _add_tensor(model, graph, "logits_dequantized", logits.shape)
        _add_op(model, graph, schema.BuiltinOperator.DEQUANTIZE, [out_index], [src], version=2)  # v2: int8 in
    probs = _add_tensor(model, graph, "probabilities", logits.shape)
    options = schema.SoftmaxOptionsT()
    options.beta = float(np.float32(1.0 / temperature))
    _add_op(model, graph, schema.BuiltinOperator.SOFTMAX, [src], [probs], schema.BuiltinOptions.SoftmaxOptions, options)
    graph.outputs = [probs]
    if model.signatureDefs:
        for sig in model.signatureDefs:
            for tensor_map in sig.outputs or []:
                if tensor_map.tensorIndex == out_index:
                    tensor_map.tensorIndex = probs
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def add_standard_metadata(flat: bytes, metadata: bytes) -> bytes:
    """``flat`` with ``metadata`` (a ModelMetadata flatbuffer) stored as its ``TFLITE_METADATA`` entry."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    data = np.frombuffer(metadata, dtype=np.uint8)
    existing = [m for m in (model.metadata or []) if _name(m) == STANDARD_METADATA_NAME]
    if existing:  # replace in place: an appended copy would leave the old buffer behind, unused
        model.buffers[existing[0].buffer].data = data
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    buffer = schema.BufferT()
    buffer.data = data
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = STANDARD_METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def standard_metadata(
    *,
    name: str,
    description: str,
    version: str,
    author: str,
    license_text: str,
    input_size: tuple[int, int],
    float_input: bool,
    labels_file: str,
    extra_outputs: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A ModelMetadata flatbuffer for an RGB image classifier with probability outputs.

    ``extra_outputs``: (name, description) of outputs after the probabilities (the class-activation
    maps), described as unlabelled features: readers that need one entry per output (MediaPipe) get it.

    Float inputs get ``NormalizationOptions(mean 0, std 1)``: our models rescale pixels inside the
    graph, so readers must pass raw 0-255 values (MediaPipe insists on the options for float inputs).
    """
    b = flatbuffers.Builder(1024)
    s = {k: b.CreateString(v) for k, v in {
        "name": name, "description": description, "version": version, "author": author,
        "license": license_text, "labels": labels_file, "image": "image", "probability": "probability",
        "image_desc": "RGB photo, raw 0-255 pixels (rescaling is inside the model).",
        "prob_desc": "Calibrated class scores (softmax with the fitted temperature). Not a diagnosis.",
        "labels_desc": "Class names, one per line, in output order.",
        "parser": "1.0.0",
    }.items()}  # fmt: skip

    # Input: image properties (RGB, default size), normalization for float inputs, 0-255 stats.
    b.StartObject(2)  # ImageSize
    b.PrependUint32Slot(0, input_size[1], 0)  # width
    b.PrependUint32Slot(1, input_size[0], 0)  # height
    size = b.EndObject()
    b.StartObject(2)  # ImageProperties
    b.PrependInt8Slot(0, 1, 0)  # color_space = RGB
    b.PrependUOffsetTRelativeSlot(1, size, 0)
    image_props = b.EndObject()
    image_content = _content(b, 2, image_props)  # ContentProperties.ImageProperties
    in_units = []
    if float_input:
        mean, std = _float_vector(b, [0.0]), _float_vector(b, [1.0])
        b.StartObject(2)  # NormalizationOptions
        b.PrependUOffsetTRelativeSlot(0, mean, 0)
        b.PrependUOffsetTRelativeSlot(1, std, 0)
        norm = b.EndObject()
        b.StartObject(2)  # ProcessUnit
        b.PrependUint8Slot(0, 1, 0)  # ProcessUnitOptions.NormalizationOptions
        b.PrependUOffsetTRelativeSlot(1, norm, 0)
        in_units.append(b.EndObject())
    in_stats = _stats(b, [255.0], [0.0])
    in_units_vec = _offset_vector(b, in_units) if in_units else None
    b.StartObject(7)  # TensorMetadata
    b.PrependUOffsetTRelativeSlot(0, s["image"], 0)
    b.PrependUOffsetTRelativeSlot(1, s["image_desc"], 0)
    b.PrependUOffsetTRelativeSlot(3, image_content, 0)
    if in_units_vec is not None:
        b.PrependUOffsetTRelativeSlot(4, in_units_vec, 0)
    b.PrependUOffsetTRelativeSlot(5, in_stats, 0)
    input_meta = b.EndObject()

    # Output: feature content, 0-1 stats, the label file.
    b.StartObject(0)  # FeatureProperties (empty)
    feature = b.EndObject()
    out_content = _content(b, 1, feature)  # ContentProperties.FeatureProperties
    out_stats = _stats(b, [1.0], [0.0])
    b.StartObject(5)  # AssociatedFile
    b.PrependUOffsetTRelativeSlot(0, s["labels"], 0)
    b.PrependUOffsetTRelativeSlot(1, s["labels_desc"], 0)
    b.PrependInt8Slot(2, 2, 0)  # TENSOR_AXIS_LABELS
    label_file = b.EndObject()
    files = _offset_vector(b, [label_file])
    b.StartObject(7)  # TensorMetadata
    b.PrependUOffsetTRelativeSlot(0, s["probability"], 0)
    b.PrependUOffsetTRelativeSlot(1, s["prob_desc"], 0)
    b.PrependUOffsetTRelativeSlot(3, out_content, 0)
    b.PrependUOffsetTRelativeSlot(5, out_stats, 0)
    b.PrependUOffsetTRelativeSlot(6, files, 0)
    output_meta = b.EndObject()
    extra_metas = []
    for extra_name, extra_desc in extra_outputs:
        name_s, desc_s = b.CreateString(extra_name), b.CreateString(extra_desc)
        b.StartObject(0)  # FeatureProperties (empty)
        extra_content = _content(b, 1, b.EndObject())
        b.StartObject(7)  # TensorMetadata
        b.PrependUOffsetTRelativeSlot(0, name_s, 0)
        b.PrependUOffsetTRelativeSlot(1, desc_s, 0)
        b.PrependUOffsetTRelativeSlot(3, extra_content, 0)
        extra_metas.append(b.EndObject())

    inputs, outputs = _offset_vector(b, [input_meta]), _offset_vector(b, [output_meta, *extra_metas])
    b.StartObject(10)  # SubGraphMetadata
    b.PrependUOffsetTRelativeSlot(0, s["name"], 0)
    b.PrependUOffsetTRelativeSlot(2, inputs, 0)
    b.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraph = b.EndObject()
    subgraphs = _offset_vector(b, [subgraph])
    b.StartObject(8)  # ModelMetadata
    b.PrependUOffsetTRelativeSlot(0, s["name"], 0)
    b.PrependUOffsetTRelativeSlot(1, s["description"], 0)
    b.PrependUOffsetTRelativeSlot(2, s["version"], 0)
    b.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(4, s["author"], 0)
    b.PrependUOffsetTRelativeSlot(5, s["license"], 0)
    b.PrependUOffsetTRelativeSlot(7, s["parser"], 0)
    root = b.EndObject()
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def _content(b: flatbuffers.Builder, properties_type: int, properties: int) -> int:
    b.StartObject(3)  # Content: union type (slot 0), union value (slot 1), range (slot 2)
    b.PrependUint8Slot(0, properties_type, 0)
    b.PrependUOffsetTRelativeSlot(1, properties, 0)
    return b.EndObject()


def _stats(b: flatbuffers.Builder, maxima: list[float], minima: list[float]) -> int:
    hi, lo = _float_vector(b, maxima), _float_vector(b, minima)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, hi, 0)
    b.PrependUOffsetTRelativeSlot(1, lo, 0)
    return b.EndObject()


def _float_vector(b: flatbuffers.Builder, values: list[float]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(v)
    return b.EndVector()


def _offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _add_tensor(model, graph, name: str, shape) -> int:
    buffer = schema.BufferT()
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = np.asarray(shape, dtype=np.int32)
    tensor.type = schema.TensorType.FLOAT32
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _add_op(model, graph, builtin, inputs, outputs, options_type=0, options=None, version: int = 1) -> None:
    codes = model.operatorCodes
    matches = (i for i, c in enumerate(codes) if _builtin(c) == builtin and c.version == version)
    index = next(matches, None)
    if index is None:
        code = schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
        code.version = version
        codes.append(code)
        index = len(codes) - 1
    op = schema.OperatorT()
    op.opcodeIndex = index
    op.inputs = np.asarray(inputs, dtype=np.int32)
    op.outputs = np.asarray(outputs, dtype=np.int32)
    if options is not None:
        op.builtinOptionsType = options_type
        op.builtinOptions = options
    graph.operators.append(op)


def _builtin(code) -> int:
    # Codes above 127 live in builtinCode; older files only fill the deprecated byte field.
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _name(entry) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name)


# -- class-activation maps: the head applied at every position, from the same invoke --------------------

#: Output names the runtime looks for (``skinedge.metadata.ModelMetadata.explain`` records them too).
CLASS_MAPS = "class_maps"
CLASS_MAPS_FINE = "class_maps_fine"


@dataclass(frozen=True)
class ClassifierHead:
    """Where a converted ``features -> MEAN -> FULLY_CONNECTED`` classifier keeps its head.

    ``weights`` (classes x channels) and ``bias`` are dequantized from the file, so maps made from them
    are the head the int8 (or float) graph really runs. ``fine_features`` is the input of the stride-2
    op that produces the last resolution: twice as fine, the layer a finer map is read from.
    """

    features: int
    fine_features: int
    logits: int
    weights: np.ndarray
    bias: np.ndarray


def find_classifier_head(flat: bytes) -> ClassifierHead:
    """Locate the global-average-pooling classifier head of a single-subgraph ``.tflite`` model."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    (graph,) = model.subgraphs
    producer = {int(t): op for op in graph.operators for t in op.outputs}
    for op in graph.operators:
        if _builtin(model.operatorCodes[op.opcodeIndex]) != schema.BuiltinOperator.FULLY_CONNECTED:
            continue
        pool = producer.get(int(op.inputs[0]))
        if pool is None or _builtin(model.operatorCodes[pool.opcodeIndex]) != schema.BuiltinOperator.MEAN:
            continue
        features = int(pool.inputs[0])
        shape = [int(v) for v in graph.tensors[features].shape]
        if len(shape) != 4:
            continue
        weights = _dequantized_constant(model, graph, int(op.inputs[1]), axis=0)
        has_bias = len(op.inputs) > 2 and int(op.inputs[2]) >= 0  # the converter drops an all-zero bias
        bias = _dequantized_constant(model, graph, int(op.inputs[2]), axis=0) if has_bias else np.zeros(len(weights))
        return ClassifierHead(features, _fine_features(model, graph, producer, features), int(op.outputs[0]),
                              weights, bias)
    raise ValueError("no FULLY_CONNECTED over a global MEAN of a 4-D feature map: not a pooled-CNN classifier")


def _fine_features(model, graph, producer: dict, features: int) -> int:
    """The input of the first op that downsamples into the feature map's resolution (through any PAD)."""
    h, w = (int(v) for v in graph.tensors[features].shape[1:3])
    for op in graph.operators:
        out, src = graph.tensors[int(op.outputs[0])], int(op.inputs[0])
        if len(out.shape) == 4 and tuple(int(v) for v in out.shape[1:3]) == (h, w) and src >= 0:
            src_shape = [int(v) for v in graph.tensors[src].shape]
            if len(src_shape) == 4 and src_shape[1] > h:
                pad = producer.get(src)
                if pad is not None and _builtin(model.operatorCodes[pad.opcodeIndex]) in (
                    schema.BuiltinOperator.PAD, schema.BuiltinOperator.PADV2
                ):
                    src = int(pad.inputs[0])
                return src
    raise ValueError(f"no op downsamples into the {h}x{w} feature map")


def _dequantized_constant(model, graph, index: int, axis: int) -> np.ndarray:
    tensor = graph.tensors[index]
    raw = model.buffers[tensor.buffer].data
    dtype = {schema.TensorType.FLOAT32: "<f4", schema.TensorType.INT8: "i1", schema.TensorType.INT32: "<i4"}[
        tensor.type
    ]
    values = np.frombuffer(bytes(np.asarray(raw, dtype=np.uint8)), dtype=dtype).astype(np.float64)
    values = values.reshape([int(v) for v in tensor.shape])
    q = tensor.quantization
    if tensor.type != schema.TensorType.FLOAT32 and q is not None and q.scale is not None and len(q.scale):
        shape = [1] * values.ndim
        shape[axis] = -1
        scale = np.asarray(q.scale, dtype=np.float64).reshape(shape if len(q.scale) > 1 else [1] * values.ndim)
        zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], dtype=np.float64)
        values = (values - zero.reshape(scale.shape)) * scale
    return values


def expose_tensors(flat: bytes, indices: list[int]) -> bytes:
    """``flat`` with extra graph outputs (for reading intermediate tensors while fitting; not shipped)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    (graph,) = model.subgraphs
    current = [int(i) for i in graph.outputs]
    graph.outputs = np.asarray(current + [int(i) for i in indices if int(i) not in current], dtype=np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def add_class_activation_maps(flat: bytes, fine_weights: np.ndarray, fine_bias: np.ndarray) -> bytes:
    """``flat`` with two more float32 outputs computed in the same invoke (Zhou et al., CVPR 2016):

    * ``class_maps`` ``[1, h, w, K]``: the classifier's own head applied as a 1x1 convolution at every
      position of the last feature map; its spatial mean is the logits (up to int8 rounding).
    * ``class_maps_fine`` ``[1, 2h, 2w, K]``: a linear head fitted to the logits (``fine_weights``
      ``K x C'``, ``fine_bias``) applied to the finer layer :func:`find_classifier_head` names.

    Each is ``DEQUANTIZE`` (int8 graphs) + float ``CONV_2D`` 1x1: a few hundred thousand MACs beside the
    network's ~300 million. The existing outputs and every existing op are left as they are.
    """
    head = find_classifier_head(flat)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    (graph,) = model.subgraphs
    for name, src, w, b in (
        (CLASS_MAPS, head.features, head.weights, head.bias),
        (CLASS_MAPS_FINE, head.fine_features, np.asarray(fine_weights), np.asarray(fine_bias)),
    ):
        shape = [int(v) for v in graph.tensors[src].shape]
        if w.shape != (len(head.bias), shape[3]) or b.shape != (len(head.bias),):
            raise ValueError(f"{name}: head {w.shape} / {b.shape} does not fit features {shape}")
        if graph.tensors[src].type != schema.TensorType.FLOAT32:
            dq = _add_tensor(model, graph, f"{name}_features", shape)
            _add_op(model, graph, schema.BuiltinOperator.DEQUANTIZE, [src], [dq], version=2)
            src = dq
        kernel = _add_constant(model, graph, f"{name}_kernel", w.reshape(w.shape[0], 1, 1, w.shape[1]))
        bias = _add_constant(model, graph, f"{name}_bias", b)
        out = _add_tensor(model, graph, name, [1, shape[1], shape[2], w.shape[0]])
        options = schema.Conv2DOptionsT()
        options.padding = schema.Padding.VALID
        options.strideW = options.strideH = 1
        options.dilationWFactor = options.dilationHFactor = 1
        options.fusedActivationFunction = schema.ActivationFunctionType.NONE
        _add_op(model, graph, schema.BuiltinOperator.CONV_2D, [src, kernel, bias], [out],
                schema.BuiltinOptions.Conv2DOptions, options)
        graph.outputs = np.asarray(list(graph.outputs) + [out], dtype=np.int32)
        for sig in model.signatureDefs or []:
            entry = schema.TensorMapT()
            entry.name, entry.tensorIndex = name, out
            sig.outputs = list(sig.outputs or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _add_constant(model, graph, name: str, values: np.ndarray) -> int:
    index = _add_tensor(model, graph, name, values.shape)
    model.buffers[graph.tensors[index].buffer].data = np.frombuffer(
        np.ascontiguousarray(values, dtype="<f4").tobytes(), dtype=np.uint8
    )
    return index
