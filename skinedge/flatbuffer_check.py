"""Structural checks of a ``.tflite`` flatbuffer, run before any interpreter sees the bytes.

:func:`check_flatbuffer` is the cheap one every model file gets (identifier, root offset);
:func:`check_tflite_structure` is a light walk of the graph, described below.

LiteRT runs the FlatBuffers verifier, which catches offsets and vectors that point outside the
file, but not a model that is well-formed as a flatbuffer and wrong as a graph: a tensor index past
the end of the tensor list, an operator code index that does not exist, a constant buffer that holds
fewer bytes than its tensor's shape needs. Some of those make the interpreter read out of bounds and
kill the process (see docs/reliability.md for the mutations that did). This walk refuses them with a
:class:`~skinedge.errors.ModelError` instead. It reads the schema fields by their vtable slots, so it
needs no generated schema code and no interpreter package; it costs a few milliseconds per model.

Models with skinedge metadata are protected more strongly by the SHA-256 recorded in the metadata;
this walk is what stands between a third-party model and the interpreter.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from skinedge.errors import ModelError

#: The TFLite flatbuffer file identifier, at bytes 4..8 of every model.
TFLITE_IDENTIFIER = b"TFL3"
# Bits per element of each TensorType (tflite schema.fbs); None: no fixed size (string, resource...).
_TYPE_BITS: dict[int, int | None] = {
    0: 32,  # FLOAT32
    1: 16,  # FLOAT16
    2: 32,  # INT32
    3: 8,  # UINT8
    4: 64,  # INT64
    5: None,  # STRING
    6: 8,  # BOOL
    7: 16,  # INT16
    8: 64,  # COMPLEX64
    9: 8,  # INT8
    10: 64,  # FLOAT64
    11: 128,  # COMPLEX128
    12: 64,  # UINT64
    13: None,  # RESOURCE
    14: None,  # VARIANT
    15: 32,  # UINT32
    16: 16,  # UINT16
    17: 4,  # INT4
    18: 16,  # BFLOAT16
    19: 2,  # INT2
    20: 4,  # UINT4
    21: 8,  # FLOAT8_E4M3FN
    22: 8,  # FLOAT8_E5M2
}
# Which inputs an operator may leave out (tensor index -1), by builtin operator code: convolutions and
# fully connected layers may omit their bias, recurrent cells many inputs, other operators none.
# Kernels dereference the other inputs unchecked: a CONV_2D's weights or a STRIDED_SLICE's strides
# set to -1 is a segfault (found by benchmarks/reliability/fuzz_models.py).
_OPTIONAL_INPUTS: dict[int, frozenset[int]] = {
    3: frozenset({2}),  # CONV_2D: bias
    4: frozenset({2}),  # DEPTHWISE_CONV_2D: bias
    9: frozenset({2}),  # FULLY_CONNECTED: bias
    67: frozenset({3}),  # TRANSPOSE_CONV: bias
    132: frozenset({2}),  # CONV_3D: bias
    141: frozenset({3}),  # CONV_3D_TRANSPOSE: bias
}
# Operators whose optional inputs are many or unknown here (recurrent cells, custom and control flow):
# any input may be -1.
_ANY_INPUT_OPTIONAL = frozenset({16, 24, 27, 32, 35, 44, 46, 52, 118, 119, 129})
_FIRST_UNLISTED_CODE = 150  # StableHLO and newer operators: not judged
# For the operators image classifiers are made of: (builtin options type, fewest inputs, most inputs).
# An operator code index flipped to another operator gives a node whose kernel (or XNNPACK, which reads
# node inputs before any kernel checks them) reads inputs that are not there: a segfault in the
# campaign. The options type must match the operator (0, no options, is always accepted).
_SIGNATURES: dict[int, tuple[int, int, int]] = {
    0: (11, 2, 2),  # ADD
    1: (5, 1, 1),  # AVERAGE_POOL_2D
    2: (10, 1, 10_000),  # CONCATENATION
    3: (1, 2, 3),  # CONV_2D
    4: (2, 2, 3),  # DEPTHWISE_CONV_2D
    6: (38, 1, 1),  # DEQUANTIZE
    9: (8, 2, 3),  # FULLY_CONNECTED
    14: (0, 1, 1),  # LOGISTIC
    17: (5, 1, 1),  # MAX_POOL_2D
    18: (21, 2, 2),  # MUL
    19: (0, 1, 1),  # RELU
    21: (0, 1, 1),  # RELU6
    22: (17, 1, 2),  # RESHAPE
    23: (15, 2, 2),  # RESIZE_BILINEAR
    25: (9, 1, 1),  # SOFTMAX
    28: (0, 1, 1),  # TANH
    34: (22, 2, 2),  # PAD
    39: (26, 2, 2),  # TRANSPOSE
    40: (27, 2, 2),  # MEAN
    41: (28, 2, 2),  # SUB
    42: (29, 2, 2),  # DIV
    43: (30, 1, 1),  # SQUEEZE
    45: (32, 4, 4),  # STRIDED_SLICE
    55: (39, 2, 2),  # MAXIMUM
    57: (39, 2, 2),  # MINIMUM
    65: (48, 3, 3),  # SLICE
    67: (49, 3, 4),  # TRANSPOSE_CONV
    70: (52, 2, 2),  # EXPAND_DIMS
    74: (27, 2, 2),  # SUM
    77: (55, 1, 1),  # SHAPE
    82: (27, 2, 2),  # REDUCE_MAX
    83: (59, 1, 10_000),  # PACK
    98: (75, 1, 1),  # LEAKY_RELU
    114: (89, 1, 1),  # QUANTIZE
    117: (91, 1, 1),  # HARD_SWISH
}
_DEQUANTIZE = 6
_SMALLEST_NORMAL_FLOAT32 = 1.1754943508222875e-38
# Zero points a quantized tensor of each type can hold; one outside makes kernels index out of bounds.
_ZERO_POINT_RANGE = {3: (0, 255), 9: (-128, 127), 7: (-32768, 32767), 16: (0, 65535), 17: (-8, 7), 20: (0, 15)}
# Tensor types the Python interpreter API can hand over as numpy arrays (graph inputs and outputs).
_NUMPY_TYPES = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16})
#: Walk limits: far above any image classifier, low enough that a corrupt count cannot stall the walk.
MAX_TENSOR_ELEMENTS = 1 << 31
MAX_RANK = 8


class _Damaged(Exception):
    pass


class _Reader:
    """Bounds-checked access to flatbuffer tables and vectors in ``data``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)

    def _need(self, pos: int, size: int, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            raise _Damaged(f"{what} at byte {pos} (+{size}) lies outside the {self.n}-byte file")

    def u8(self, pos: int, what: str) -> int:
        self._need(pos, 1, what)
        return self.data[pos]

    def i8(self, pos: int, what: str) -> int:
        self._need(pos, 1, what)
        return struct.unpack_from("<b", self.data, pos)[0]

    def u16(self, pos: int, what: str) -> int:
        self._need(pos, 2, what)
        return struct.unpack_from("<H", self.data, pos)[0]

    def i32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return struct.unpack_from("<i", self.data, pos)[0]

    def u32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return struct.unpack_from("<I", self.data, pos)[0]

    def u64(self, pos: int, what: str) -> int:
        self._need(pos, 8, what)
        return struct.unpack_from("<Q", self.data, pos)[0]

    def table(self, pos: int, what: str) -> _Table:
        self._need(pos, 4, what)
        vtable = pos - self.i32(pos, what)
        vsize = self.u16(vtable, f"{what} vtable")
        tsize = self.u16(vtable + 2, f"{what} vtable")
        if vsize < 4 or vsize % 2:
            raise _Damaged(f"{what} has a malformed vtable (size {vsize})")
        self._need(vtable, vsize, f"{what} vtable")
        self._need(pos, tsize, what)
        return _Table(self, pos, vtable, vsize, tsize, what)

    def deref(self, pos: int, what: str) -> int:
        return pos + self.u32(pos, what)

    def vector(self, pos: int, elem_size: int, what: str) -> tuple[int, int]:
        """(start of the elements, count) of the vector at ``pos``."""
        count = self.u32(pos, what)
        self._need(pos + 4, count * elem_size, what)
        return pos + 4, count


class _Table:
    def __init__(self, r: _Reader, pos: int, vtable: int, vsize: int, tsize: int, what: str) -> None:
        self.r, self.pos, self.vtable, self.vsize, self.tsize, self.what = r, pos, vtable, vsize, tsize, what

    def field(self, slot: int, size: int) -> int | None:
        """Absolute position of field ``slot`` (``size`` bytes), or None when it is absent."""
        vo = 4 + 2 * slot
        if vo + 2 > self.vsize:
            return None
        off = self.r.u16(self.vtable + vo, self.what)
        if off == 0:
            return None
        if off + size > self.tsize:
            raise _Damaged(f"{self.what} field {slot} lies outside its table")
        return self.pos + off

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        pos = self.field(slot, struct.calcsize(fmt))
        return default if pos is None else struct.unpack_from("<" + fmt, self.r.data, pos)[0]

    def ref(self, slot: int) -> int | None:
        pos = self.field(slot, 4)
        return None if pos is None else self.r.deref(pos, f"{self.what} field {slot}")

    def vector(self, slot: int, elem_size: int, name: str) -> tuple[int, int]:
        pos = self.ref(slot)
        if pos is None:
            return 0, 0
        return self.r.vector(pos, elem_size, f"{self.what}.{name}")

    def ints(self, slot: int, name: str, fmt: str = "i") -> list[int]:
        start, count = self.vector(slot, struct.calcsize(fmt), name)
        return list(struct.unpack_from(f"<{count}{fmt}", self.r.data, start)) if count else []

    def tables(self, slot: int, name: str) -> list[_Table]:
        start, count = self.vector(slot, 4, name)
        return [self.r.table(self.r.deref(start + 4 * i, name), f"{name}[{i}]") for i in range(count)]

    def string(self, slot: int, name: str) -> None:
        """Check a string field: inside the file, terminated, UTF-8 (interpreter APIs decode names)."""
        start, count = self.vector(slot, 1, name)
        if start:
            self.r._need(start + count, 1, f"{self.what}.{name} terminator")
            try:
                self.r.data[start : start + count].decode("utf-8")
            except UnicodeDecodeError:
                raise _Damaged(f"{self.what}.{name} is not valid UTF-8") from None


def check_flatbuffer(data: bytes, source: str) -> None:
    """The cheap checks, run on every model file: big enough, the ``TFL3`` identifier, a root offset inside it.

    Raises:
        ModelError: the bytes are not a TFLite flatbuffer.
    """
    if len(data) < 16:
        raise ModelError(source, f"file is {len(data)} bytes: too small to be a .tflite model")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(source, "not a TFLite model (missing the 'TFL3' flatbuffer identifier)")
    root = int.from_bytes(data[0:4], "little")
    if root < 8 or root + 4 > len(data):
        raise ModelError(source, "damaged TFLite model: flatbuffer root offset points outside the file")


def check_tflite_structure(data: bytes, source: str = "model") -> None:
    """Refuse a flatbuffer whose graph would make an interpreter read outside its own data.

    Checks that the tables and vectors it reads lie inside the file, that every operator's code index,
    every tensor index (operators, subgraph inputs/outputs, signatures) and every buffer index points
    at something that exists, that tensor types are known and shapes plausible, that a constant
    tensor's buffer holds exactly the bytes its shape and type need, and that per-channel
    quantization parameters match the quantized dimension.

    Raises:
        ModelError: with the first inconsistency found.
    """
    try:
        _walk(_Reader(data))
    except _Damaged as exc:
        raise ModelError(source, f"damaged TFLite model: {exc}") from None
    except (struct.error, IndexError, OverflowError, ValueError) as exc:
        raise ModelError(source, f"damaged TFLite model ({type(exc).__name__}: {exc})") from None


def _walk(r: _Reader) -> None:
    model = r.table(r.u32(0, "root offset"), "model")
    builtin_codes = []
    for i, code in enumerate(model.tables(1, "operator_codes")):
        code.string(1, f"operator_codes[{i}].custom_code")
        builtin_codes.append(max(code.scalar(0, "b"), code.scalar(3, "i")))
    buffers = model.tables(4, "buffers")
    buffer_sizes = []
    for i, buf in enumerate(buffers):
        _, length = buf.vector(0, 1, "data")
        offset, size = buf.scalar(1, "Q"), buf.scalar(2, "Q")
        if offset > 1:  # external data of a >2 GB model: offset and size are in this file
            if offset + size > r.n:
                raise _Damaged(f"buffers[{i}] points at bytes {offset}..{offset + size}, past the end of the file")
            length = size
        buffer_sizes.append(length)
    subgraphs = model.tables(2, "subgraphs")
    if not subgraphs:
        raise _Damaged("model has no subgraph")
    n_tensors = []
    for s, sg in enumerate(subgraphs):
        n_tensors.append(_walk_subgraph(sg, s, builtin_codes, buffer_sizes))
    for i in model.ints(5, "metadata_buffer"):
        if not 0 <= i < len(buffers):
            raise _Damaged(f"metadata_buffer names buffer {i}; there are {len(buffers)}")
    for i, md in enumerate(model.tables(6, "metadata")):
        md.string(0, f"metadata[{i}].name")
        b = md.scalar(1, "I")
        if b >= len(buffers):
            raise _Damaged(f"metadata[{i}] names buffer {b}; there are {len(buffers)}")
    for i, sig in enumerate(model.tables(7, "signature_defs")):
        sub = sig.scalar(4, "I")
        if sub >= len(subgraphs):
            raise _Damaged(f"signature_defs[{i}] names subgraph {sub}; there are {len(subgraphs)}")
        sig.string(2, f"signature_defs[{i}].signature_key")
        for slot, kind in ((0, "inputs"), (1, "outputs")):
            for j, tm in enumerate(sig.tables(slot, f"signature_defs[{i}].{kind}")):
                tm.string(0, f"signature_defs[{i}].{kind}[{j}].name")
                t = tm.scalar(1, "I")
                if t >= n_tensors[sub]:
                    raise _Damaged(
                        f"signature_defs[{i}].{kind}[{j}] names tensor {t}; subgraph {sub} has {n_tensors[sub]}"
                    )


def _walk_subgraph(sg: _Table, s: int, builtin_codes: list[int], buffer_sizes: list[int]) -> int:
    where = f"subgraphs[{s}]"
    tensors = sg.tables(0, f"{where}.tensors")
    n = len(tensors)
    # A tensor holds data when the model gives it constant bytes, it is a variable (state), it is a
    # subgraph input, or an earlier operator wrote it; anything else read by an operator "lacks data".
    constant = set()
    ready = set()
    types = []
    shapes = [tensor.ints(0, "shape") for tensor in tensors]
    for t, tensor in enumerate(tensors):
        has_data, variable = _walk_tensor(tensor, f"{where}.tensors[{t}]", buffer_sizes)
        types.append(tensor.scalar(1, "b"))
        if has_data:
            constant.add(t)
        if has_data or variable:
            ready.add(t)
    inputs, outputs = sg.ints(1, "inputs"), sg.ints(2, "outputs")
    for kind, indices in (("inputs", inputs), ("outputs", outputs)):
        for i in indices:
            if not 0 <= i < n:
                raise _Damaged(f"{where}.{kind} names tensor {i}; there are {n}")
            if types[i] not in _NUMPY_TYPES:
                raise _Damaged(f"{where}.{kind}: tensor {i} has type {types[i]}, which no numpy array can hold")
    ready.update(inputs)
    written = set(inputs)
    sg.string(4, f"{where}.name")
    for o, op in enumerate(sg.tables(3, f"{where}.operators")):
        what = f"{where}.operators[{o}]"
        code = op.scalar(0, "I")
        if code >= len(builtin_codes):
            raise _Damaged(f"{what} uses operator code {code}; there are {len(builtin_codes)}")
        builtin = builtin_codes[code]
        op_inputs, op_outputs = op.ints(1, "inputs"), op.ints(2, "outputs")
        if builtin in _SIGNATURES:
            options, fewest, most = _SIGNATURES[builtin]
            if not fewest <= len(op_inputs) <= most:
                raise _Damaged(f"{what} (builtin operator {builtin}) has {len(op_inputs)} inputs; it takes "
                               f"{fewest}" + (f" to {most}" if most > fewest else ""))
            given = op.scalar(3, "B")
            if given not in (0, options):
                raise _Damaged(f"{what} (builtin operator {builtin}) carries options of type {given}, not {options}")
        if not op_outputs:
            raise _Damaged(f"{what} has no outputs")
        for i in op_inputs + op.ints(8, "intermediates"):
            if not -1 <= i < n:  # -1: an optional input left out
                raise _Damaged(f"{what} reads tensor {i}; there are {n}")
        for position, i in enumerate(op_inputs):
            if i == -1 and not _may_omit(builtin, position):
                raise _Damaged(f"{what} (builtin operator {builtin}) leaves out its required input {position}")
        for i in op_inputs:
            if i >= 0 and i not in ready:
                raise _Damaged(f"{what} reads tensor {i}, which has no data (not constant, not an input, "
                               "not written by an earlier operator)")
        if builtin == _DEQUANTIZE and op_inputs and op_outputs and op_inputs[0] in constant:
            # Delegates unpack fp16/int8 constant weights through this op using the declared output
            # shape: one that disagrees with the data reads past it.
            src, dst = shapes[op_inputs[0]], shapes[op_outputs[0]] if 0 <= op_outputs[0] < n else None
            if dst is not None and src != dst:
                raise _Damaged(f"{what} dequantizes a {src} constant into a {dst} tensor")
        for i in op_outputs:
            if not 0 <= i < n:
                raise _Damaged(f"{what} writes tensor {i}; there are {n}")
            if i in constant:
                raise _Damaged(f"{what} writes tensor {i}, a constant")
            if i in written:
                raise _Damaged(f"{what} writes tensor {i}, already written by a subgraph input or another operator")
            written.add(i)
            ready.add(i)
        for slot in (4, 12):  # builtin_options, builtin_options_2: tables whose header must be sane
            pos = op.ref(slot)
            if pos is not None:
                op.r.table(pos, f"{what} options")
        op.vector(5, 1, "custom_options")
    for i in outputs:
        if i not in ready:
            raise _Damaged(f"{where}.outputs names tensor {i}, which nothing writes")
    return n


def _walk_tensor(tensor: _Table, what: str, buffer_sizes: list[int]) -> tuple[bool, bool]:
    """Check one tensor; return (has constant data, is a variable)."""
    shape = tensor.ints(0, "shape")
    if len(shape) > MAX_RANK:
        raise _Damaged(f"{what} has rank {len(shape)}")
    if any(d < -1 for d in shape):
        raise _Damaged(f"{what} has shape {shape}")
    signature = tensor.ints(7, "shape_signature")
    if signature and len(signature) != len(shape):
        raise _Damaged(f"{what} shape {shape} and shape signature {signature} differ in rank")
    ttype = tensor.scalar(1, "b")
    if ttype not in _TYPE_BITS:
        raise _Damaged(f"{what} has unknown type {ttype}")
    elements = math.prod(max(d, 0) for d in shape)
    if elements > MAX_TENSOR_ELEMENTS:
        raise _Damaged(f"{what} has shape {shape}: {elements} elements")
    b = tensor.scalar(2, "I")
    if b >= len(buffer_sizes):
        raise _Damaged(f"{what} names buffer {b}; there are {len(buffer_sizes)}")
    tensor.string(3, "name")
    sparse = tensor.ref(6) is not None
    if sparse:
        tensor.r.table(tensor.ref(6), f"{what}.sparsity")
    bits = _TYPE_BITS[ttype]
    size = buffer_sizes[b]
    if size and bits is not None and not sparse and -1 not in shape:
        packed = (elements * bits + 7) // 8
        unpacked = elements * max(1, bits // 8)
        if size not in (packed, unpacked):
            raise _Damaged(f"{what} of shape {shape} needs {packed} bytes, its buffer {b} holds {size}")
    qpos = tensor.ref(4)
    if qpos is not None:
        _walk_quantization(tensor.r.table(qpos, f"{what}.quantization"), what, shape, ttype)
    return size > 0, bool(tensor.scalar(5, "B"))


def _may_omit(builtin: int, position: int) -> bool:
    if builtin in _OPTIONAL_INPUTS:
        return position in _OPTIONAL_INPUTS[builtin]
    return builtin in _ANY_INPUT_OPTIONAL or builtin >= _FIRST_UNLISTED_CODE


def _walk_quantization(q: _Table, what: str, shape: list[int], ttype: int) -> None:
    scale_start, scales = q.vector(2, 4, "scale")
    zero_start, zeros = q.vector(3, 8, "zero_point")
    q.vector(0, 4, "min")
    q.vector(1, 4, "max")
    details = q.ref(5)
    if details is not None:
        q.r.table(details, f"{what}.quantization.details")
    if not scales and not zeros:
        return  # min/max only, or nothing: not quantized
    if scales != zeros:
        raise _Damaged(f"{what} has {scales} quantization scales and {zeros} zero points")
    # numpy, not a Python loop: per-channel models carry tens of thousands of scales (cold start).
    values = np.frombuffer(q.r.data, dtype="<f4", count=scales, offset=scale_start)
    if not (np.isfinite(values).all() and (values >= _SMALLEST_NORMAL_FLOAT32).all()):
        # Zero, negative, -0.0, denormal (1e-40: multipliers overflow), infinite or NaN: all crashed LiteRT.
        raise _Damaged(f"{what} has a quantization scale that is not a positive normal float")
    if ttype in _ZERO_POINT_RANGE:
        lo, hi = _ZERO_POINT_RANGE[ttype]
        points = np.frombuffer(q.r.data, dtype="<i8", count=zeros, offset=zero_start)
        if not ((points >= lo).all() and (points <= hi).all()):
            raise _Damaged(f"{what} has a zero point outside {lo}..{hi}")
    if scales > 1:
        dim = q.scalar(6, "i")
        if not 0 <= dim < len(shape):
            raise _Damaged(f"{what} is quantized along dimension {dim} of a rank-{len(shape)} tensor")
        if scales != shape[dim]:
            raise _Damaged(f"{what} has {scales} quantization scales for {shape[dim]} channels")
