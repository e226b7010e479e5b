"""Export for clients other than TensorFlow: LiteRT (`.tflite`) and ONNX (`.onnx`).

Both hold one fixed-size inference graph, converted by the maintained converters
(TensorFlow's LiteRT converter, tf2onnx), not by code of ours:

- input `images`: float32 `[N, image_size, image_size, 3]` with values in [0, 1],
  already preprocessed (any batch size N);
- outputs, float32: `embedding` `[N, D]` (the encoder output) and, when the model has a
  classifier (the online probe or a fine-tuned head), `logits` `[N, C]`.

The preprocessing of the SavedModel's signatures is not inside (its shape checks and
run-time branches are what the converters cannot take); clients apply it themselves, as
`tf_simclr.data.augment.eval_view` does: decode to float32 in [0, 1], then for
`image_size > 32` a central crop keeping 87.5% of each side followed by a bicubic resize
to `image_size` (the reference's), and for `image_size <= 32` only a resize.

A mixed-precision model (float16 or bfloat16 compute, float32 weights) is exported in
float32: the converters' built-in kernels do not take float16 convolutions and
normalisations, and float32 is what CPU and mobile runtimes run fastest without them. Its
file is checked against the float32 computation of the same weights (the mixed-precision
model's own outputs differ from it by the float16 rounding, ~1e-3 relative).

Each file is written to a temporary name, checked against the Keras model on a random
batch, and renamed only when it agrees: above `tolerance` (relative to the largest
output) the export fails and leaves no file. A dynamic-range quantised LiteRT file
(`quantize=True`: int8 weights, float activations) is compared too, but only reported:
its difference is the quantisation's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import warnings

import keras
import numpy as np
import tensorflow as tf

from tf_simclr import export
from tf_simclr.choices import EXPORT_FORMATS
from tf_simclr.errors import ArgumentError
from tf_simclr.official import relative_difference

FORMATS = EXPORT_FORMATS
INFERENCE_OUTPUTS = ("embedding", "logits")
DEFAULT_TOLERANCE = 1e-4
ONNX_OPSET = 17


def inference_function(model: keras.Model, image_size: int) -> tf.types.experimental.Function:
    """The graph the LiteRT and ONNX files hold: float32 `[N, S, S, 3]` images in [0, 1]
    -> {"embedding", and "logits" when the model has them}, float32, inference mode."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=export.INPUT_NAME)
        ],
        autograph=False,
    )
    def infer(images):
        outputs = export.model_outputs(model, images, training=False)
        return {k: outputs[k] for k in INFERENCE_OUTPUTS if k in outputs}

    return infer


@contextlib.contextmanager
def _float32_compute(model: keras.Model):
    """Inside: every layer of `model` computes in float32 (its variables are float32
    already under a mixed-precision policy); restored on exit."""
    changed = []
    for layer in model._flatten_layers(include_self=True):
        if layer.dtype_policy.compute_dtype != "float32":
            changed.append((layer, layer.dtype_policy))
            layer.dtype_policy = keras.DTypePolicy("float32")
    try:
        yield
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


def _write_atomically(path: str, write) -> None:
    """Calls `write(tmp)` for a temporary file beside `path`, then renames it to `path`."""
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _relative_differences(actual: dict, expected: dict) -> dict[str, float]:
    """{output: max |actual - expected| / max |expected|} for every expected output."""
    if sorted(actual) != sorted(expected):
        raise ArgumentError(
            "export_format", f"the converted file returns {sorted(actual)}, not {sorted(expected)}"
        )
    return {key: relative_difference(actual[key], value) for key, value in expected.items()}


def _checked(
    name: str,
    path: str,
    write,
    run,
    infer,
    image_size: int,
    tolerance: float | None,
) -> dict:
    """Writes with `write(tmp)`, runs the file with `run(tmp, images)`, compares with `infer`
    on a random batch; renames into `path` when it agrees. Returns the report."""
    images = np.random.default_rng(0).uniform(0, 1, (2, image_size, image_size, 3))
    images = images.astype(np.float32)
    expected = {k: v.numpy() for k, v in infer(tf.constant(images)).items()}
    report = {}

    def write_and_check(tmp):
        write(tmp)
        differences = _relative_differences(run(tmp, images), expected)
        worst = max(differences.values())
        # `not <=`: a NaN difference (a file that computes NaN) fails too.
        if not np.isfinite(worst) or (tolerance is not None and not worst <= tolerance):
            raise ArgumentError(
                "export_format",
                f"the {name} file differs from the Keras model by {worst:.2e} (relative, "
                f"largest of {differences}), more than {tolerance}; nothing was written",
                name.lower(),
            )
        report.update(path=path, bytes=os.path.getsize(tmp), max_relative_difference=worst)

    _write_atomically(path, write_and_check)
    return report


def _converter_root(model: keras.Model, infer) -> object:
    """What the LiteRT converter freezes the variables of: the tf.Variables under the
    Keras ones (given the Keras model, it keeps them as uninitialised variables and
    the file returns NaN)."""
    root = tf.__internal__.tracking.AutoTrackable()
    root.variables = export.tf_variables(model.variables)
    root.infer = infer
    return root


def litert_interpreter(path: str):
    """A LiteRT interpreter of `path`: `ai_edge_litert`'s where installed, else TensorFlow's
    (deprecated in favour of it, same API)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorFlow's deprecation notice
        return Interpreter(model_path=path)


def export_litert(
    model: keras.Model,
    path: str,
    image_size: int,
    quantize: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict:
    """Writes `model` as a LiteRT flatbuffer to `path` (`.tflite`); returns a report:
    {"path", "bytes", "max_relative_difference"} (against the Keras model).

    Args:
      model: a built Keras model, `call(images, training)` -> dict with "embedding" and
        optionally "logits" (as `tf_simclr.export.export_saved_model` takes).
      path: the file to write; replaced atomically.
      image_size: side of the square float32 images the file takes.
      quantize: dynamic-range quantisation (weights in int8, about 4x smaller); its
        difference is reported, not checked against `tolerance`.
      tolerance: the largest relative difference accepted.
    """
    if not str(path).endswith(".tflite"):
        raise ArgumentError("path", "a LiteRT file must end with '.tflite'", path)
    infer = inference_function(model, image_size)

    def write(tmp):
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [infer.get_concrete_function()], _converter_root(model, infer)
        )
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        content = converter.convert()
        with open(tmp, "wb") as f:
            f.write(content)

    def run(tmp, images):
        runner = litert_interpreter(tmp).get_signature_runner()
        return runner(**{export.INPUT_NAME: images})

    with _float32_compute(model):
        return _checked(
            "LiteRT", str(path), write, run, infer, image_size, None if quantize else tolerance
        )


def _import_onnx():
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as e:
        raise ArgumentError(
            "export_format",
            f"ONNX export needs tf2onnx and onnxruntime ({e.name} is not installed): "
            "pip install 'tf_simclr[onnx]'",
            "onnx",
        ) from None
    return tf2onnx, onnxruntime


def export_onnx(
    model: keras.Model, path: str, image_size: int, tolerance: float = DEFAULT_TOLERANCE
) -> dict:
    """Writes `model` as an ONNX file to `path` (`.onnx`, opset `ONNX_OPSET`) with tf2onnx;
    returns the report of `export_litert`. Needs the optional `tf2onnx` and `onnxruntime`."""
    if not str(path).endswith(".onnx"):
        raise ArgumentError("path", "an ONNX file must end with '.onnx'", path)
    tf2onnx, onnxruntime = _import_onnx()
    infer = inference_function(model, image_size)

    def write(tmp):
        # tf2onnx logs each conversion stage at INFO: a dozen lines that need no action.
        converter_log = logging.getLogger("tf2onnx")
        level = converter_log.level
        converter_log.setLevel(max(level, logging.WARNING))
        try:
            tf2onnx.convert.from_function(
                infer,
                input_signature=infer.input_signature,
                opset=ONNX_OPSET,
                output_path=tmp,
            )
        finally:
            converter_log.setLevel(level)

    def run(tmp, images):
        session = onnxruntime.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, {export.INPUT_NAME: images}), strict=True))

    with _float32_compute(model):
        return _checked("ONNX", str(path), write, run, infer, image_size, tolerance)
