"""Write small valid .tflite models of many shapes and quantization schemes to tests/data/valid_models/.

The structural walk (skinedge/flatbuffer_check.py) must accept every model a converter writes; these
files, a few KB each, are what tests/test_fuzz_models.py checks it against (with the reference models
and the bundled model). Needs TensorFlow (the training tools' environment)::

    python benchmarks/reliability/make_valid_models.py [--out tests/data/valid_models]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def models():
    import tensorflow as tf

    L = tf.keras.layers

    def image_net(size: int = 16, classes: int = 5) -> tf.keras.Model:
        x = inp = L.Input((size, size, 3))
        x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU(6.0)(x)
        y = L.DepthwiseConv2D(3, padding="same")(x)
        y = L.Conv2D(8, 1)(y)
        x = L.Add()([x, y])
        z = L.Conv2D(4, 1, activation="relu")(x)
        x = L.Concatenate()([x, z])
        x = L.AveragePooling2D(2)(x)
        x = L.MaxPooling2D(2, padding="same")(x)
        x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
        x = L.GlobalAveragePooling2D()(x)
        x = L.Dropout(0.2)(x)
        x = L.Dense(classes, use_bias=False)(x)
        return tf.keras.Model(inp, x)

    def sequence_net() -> tf.keras.Model:
        inp = L.Input((6, 4), batch_size=1)
        x = L.LSTM(5, return_sequences=True)(inp)
        x = L.Flatten()(x)
        x = L.Dense(3, activation="softmax")(x)
        return tf.keras.Model(inp, x)

    def float_ops() -> tf.keras.Model:
        inp = L.Input((8, 8, 3), batch_size=1)
        x = L.Conv2D(4, 3)(inp)
        x = L.Reshape((-1, 4))(x)
        x = tf.keras.ops.mean(x, axis=1) if hasattr(tf.keras, "ops") else tf.reduce_mean(x, axis=1)
        x = L.Dense(2, activation="softmax")(x)
        return tf.keras.Model(inp, x)

    rng = tf.random.Generator.from_seed(0)

    def rep(shape):
        def gen():
            for _ in range(8):
                yield [rng.uniform((1, *shape), 0, 1)]
        return gen

    img = image_net()
    img.build((1, 16, 16, 3))
    for name, model, shape in (("image", img, (16, 16, 3)), ("float_ops", float_ops(), (8, 8, 3))):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        yield f"{name}_float32", conv.convert()
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        yield f"{name}_dynamic_range", conv.convert()
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        yield f"{name}_float16", conv.convert()
        for io in (tf.uint8, tf.int8):
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep(shape)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = io
            conv.inference_output_type = io
            yield f"{name}_int8_io_{io.name}", conv.convert()
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep(shape)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        try:
            yield f"{name}_int16x8", conv.convert()
        except Exception as exc:  # not every op has an int16x8 kernel
            print(f"skipped {name}_int16x8: {type(exc).__name__}")
    seq = sequence_net()
    conv = tf.lite.TFLiteConverter.from_keras_model(seq)
    yield "lstm_float32", conv.convert()
    conv = tf.lite.TFLiteConverter.from_keras_model(seq)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    yield "lstm_dynamic_range", conv.convert()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "tests/data/valid_models")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in models():
        (args.out / f"{name}.tflite").write_bytes(data)
        print(f"{name}.tflite: {len(data)} bytes")


if __name__ == "__main__":
    main()
