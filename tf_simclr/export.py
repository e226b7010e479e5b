"""Export a trained model: a TF Serving SavedModel and a `.keras` file.

`export_saved_model(model, export_root, step, image_size)` writes a SavedModel
to `export_root/<step>/`, the integer version layout TF Serving loads (point
`--model_base_path` at `export_root`, usually `model_dir/saved_model`). It
works for any Keras model whose `call(images, training)` maps float images
`[N, S, S, 3]` in [0, 1] to a dict with `"embedding"` and optionally
`"projection"` and `"logits"`: `SimCLR` (with or without a probe) and a
fine-tuned classifier.

Signatures (inspect them with `saved_model_cli show --all --dir export_root/<step>`):

- `serving_default`: input `images`, uint8 `[N, H, W, 3]` with values 0-255,
  any H and W (all images of one request share them);
- `serving_float`: input `images`, float32 `[N, H, W, 3]` with values in [0, 1].

Both run the evaluation preprocessing inside the graph (`eval_preprocess`, the
batched `tf_simclr.data.augment.eval_view`: central 87.5% crop and bicubic
resize to `image_size` when `image_size > 32`, only a resize when
`image_size <= 32`) and return float32:

- `embedding` `[N, D]`: the encoder output, the representation the paper
  evaluates (SimCLR Section 4);
- `projection` `[N, P]`: the projection head output, if the model has one;
- `logits` and `probabilities` (softmax) `[N, C]`, if the model has a
  classifier (the online probe of a pretrained model, or the fine-tuned head).

The input signatures declare `images` as `[-1, -1, -1, 3]` (`saved_model_cli show`
prints `shape: (-1, -1, -1, 3)` and the dtype). TensorFlow does not check shapes
at a signature's boundary, so the graph checks them itself: a wrong rank or
channel count fails with "Shape of tensor images [2,32,32] is not compatible
with expected shape [?,?,?,3]" (inside TensorFlow's "Graph execution error";
where the optimiser keeps the assertion before it, with "images must be
[batch, height, width, 3] uint8 with values 0-255; got shape [2 32 32]";
`tests/test_export.py` sends wrong ranks and channel counts). The dtype is
fixed by the signature: a float tensor sent to `serving_default` fails with
TensorFlow's "... was expected to be a uint8 tensor but is a float tensor"
(use `serving_float` for float images).

TF Serving REST request to `POST http://HOST:8501/v1/models/MODEL:predict`
("row" format, one instance per image, pixels as `[r, g, b]` integers 0-255;
here two 2 x 2 images)::

    {
      "signature_name": "serving_default",
      "instances": [
        [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [128, 128, 128]]],
        [[[12, 34, 56], [78, 90, 12]], [[34, 56, 78], [90, 12, 34]]]
      ]
    }

The answer is `{"predictions": [{"embedding": [...], "projection": [...], ...},
...]}`, one object per image. The "columnar" format
`{"signature_name": "serving_default", "inputs": {"images": [...]}}` answers
`{"outputs": {"embedding": [[...], ...], ...}}`.

Fine-tuning the SavedModel without tf_simclr::

    loaded = tf.saved_model.load("model_dir/saved_model/1000")
    with tf.GradientTape() as tape:
        outputs = loaded(images, training=True)  # float32 [N, S, S, 3] in [0, 1]
        loss = ...  # e.g. from outputs["embedding"] and a new head
    grads = tape.gradient(loss, loaded.trainable_variables)

`loaded(images, training)` is the model itself, without preprocessing: it takes
float32 `[N, image_size, image_size, 3]` in [0, 1] (e.g. augmented views; any size
for our ResNet) and returns the same dict as the signatures. For a model with a
`tf_simclr` ResNet encoder it also keeps the calling convention of the reference's
(google-research/simclr `tf2/`) SavedModels, so code written for the published
models runs unchanged: `loaded(images, trainable)` (`trainable` is another name for
`training`, a Python bool, positional or keyword) adds the reference's keys,
float32: `initial_conv`, `initial_max_pool`, `block_group1..4` (feature maps),
`final_avg_pool` (= `embedding`), with a head `proj_head_input` and
`proj_head_output` (= `projection`), with a classifier `logits_sup` (= `logits`);
see `tf_simclr.models.endpoints`. `loaded.trainable_variables_list` is the
reference module's name for `trainable_variables`. `training=True` uses batch statistics
in BatchNormalization and updates its moving averages, which are in
`loaded.variables`; `training=False` (the default) uses and leaves them. The
attributes `variables`, `trainable_variables` and `regularization_losses`
(empty) follow TF Hub's "reusable SavedModel" convention.

Keras users can instead keep the whole Keras model: `save_keras(model,
"model.keras")`, then `load_keras("model.keras")` (or
`keras.saving.load_model("model.keras")` after `import tf_simclr.models`, which
registers the classes).
"""

from __future__ import annotations

import json
import numbers
import os
import uuid

import keras
import tensorflow as tf

from tf_simclr import __version__
from tf_simclr.choices import BOUNDS
from tf_simclr.data import augment
from tf_simclr.models import endpoints

SERVING_DEFAULT = "serving_default"
SERVING_FLOAT = "serving_float"
INPUT_NAME = "images"
OUTPUT_KEYS = ("embedding", "projection", "logits", "probabilities")
# The model description (`tf_simclr.run_dir`) inside an exported SavedModel.
DESCRIPTION_FILE = os.path.join("assets.extra", "tf_simclr_model.json")


def eval_preprocess(
    images: tf.Tensor, image_size: int, crop_proportion: float | None = None
) -> tf.Tensor:
    """Batched `augment.eval_view`: the deterministic evaluation view of a batch.

    Args:
      images: float32 `[N, H, W, 3]` in [0, 1]; H and W are shared by the batch
        and may be known only at run time.
      image_size: side of the square output.
      crop_proportion: central crop kept before resizing, as in `eval_view`:
        None means `augment.EVAL_CROP_PROPORTION` (0.875) when
        `image_size > 32` and no crop otherwise.

    Returns:
      float32 `[N, image_size, image_size, 3]` in [0, 1], equal to `eval_view`
      applied to each image.
    """
    images = augment.eval_crop_and_resize(images, image_size, crop_proportion)
    return tf.ensure_shape(images, [None, image_size, image_size, 3])


def _check_images(images: tf.Tensor, expected: str) -> tf.Tensor:
    """`images` after a run-time check that it is `[N, H, W, 3]`; else fails saying `expected`."""
    shape = tf.shape(images, out_type=tf.int64)
    # shape[-1:] is empty for a scalar; the rank test already fails then.
    ok = tf.logical_and(tf.equal(tf.size(shape), 4), tf.reduce_all(tf.equal(shape[-1:], 3)))
    message = f"images must be [batch, height, width, 3] {expected}; got shape"
    check = tf.debugging.Assert(ok, [message, shape], summarize=8)
    with tf.control_dependencies([check]):
        return tf.ensure_shape(tf.identity(images), [None, None, None, 3])


def model_outputs(
    model: keras.Model, images: tf.Tensor, training: bool, reference: bool = False
) -> dict[str, tf.Tensor]:
    """The exported outputs of `model` on float32 `[N, S, S, 3]` images in [0, 1]; with
    `reference`, the reference SavedModel's outputs too (`endpoints.REFERENCE_OUTPUTS`)."""
    if reference:
        outputs = endpoints.reference_outputs(model, images, training=training)
    else:
        outputs = model(images, training=training)
    if not isinstance(outputs, dict) or "embedding" not in outputs:
        raise TypeError(
            "export needs a model whose call(images, training) returns a dict with 'embedding' "
            f"(and optionally 'projection', 'logits'); got {type(outputs).__name__}"
            + (f" with keys {sorted(outputs)}" if isinstance(outputs, dict) else "")
        )
    # float32 even under a mixed-precision policy, for clients and for softmax.
    keys = [k for k in ("embedding", "projection", "logits") if k in outputs]
    if reference:
        keys += [k for k in endpoints.REFERENCE_OUTPUTS if k in outputs]
    result = {k: tf.cast(outputs[k], tf.float32) for k in keys}
    if "logits" in result:
        result["probabilities"] = tf.nn.softmax(result["logits"], axis=-1)
    return result


def tf_variables(variables: list) -> list[tf.Variable]:
    """The TensorFlow variables that hold `variables` (Keras or TF variables).

    Under a distribution strategy these are the distributed variables, which
    `tf.saved_model.save` writes once.
    """
    return [v.value if isinstance(v, keras.Variable) else v for v in variables]


def _build_module(
    model: keras.Model, image_size: int, crop_proportion: float | None
) -> tuple[object, dict]:
    """The object to save and its serving signatures."""
    root = tf.__internal__.tracking.AutoTrackable()
    # Listing the variables here saves them and makes them reachable after loading
    # (fine-tuning needs `trainable_variables`). The tf.Variables under the Keras ones,
    # not the Keras variables: a Keras 3 variable exports itself as a second tf.Variable,
    # initialised from the first, and the SavedModel's restore op (the saver that TF1
    # sessions and TF Serving run) fills that second one, while the traced functions
    # read the first, which then stays uninitialised ("Could not find variable ...").
    # TF2's loader hid it by restoring from the object graph.
    root.variables = tf_variables(model.variables)
    root.trainable_variables = tf_variables(model.trainable_variables)
    root.non_trainable_variables = tf_variables(model.non_trainable_variables)
    root.regularization_losses = []

    # The reference module's name for its list of trainable variables.
    root.trainable_variables_list = tf_variables(model.trainable_variables)

    reference = endpoints.has_reference_outputs(model)
    # One trace of the model per value of `training`; the loaded function dispatches on it.
    # A tf_simclr ResNet takes any image size, as the reference module does.
    side = None if reference else image_size
    model_spec = tf.TensorSpec([None, side, side, 3], tf.float32, name=INPUT_NAME)
    forward = tf.function(
        lambda images, training: model_outputs(model, images, training, reference), autograph=False
    )

    def call(images, training=False, trainable=None):
        # `trainable` is the reference's name for `training`: `m(images, trainable=False)`.
        return forward(images, training if trainable is None else trainable)

    # Thin traces for each way of passing the flag (positionally, `training=`,
    # `trainable=`); each calls one of the two traces of `forward`, stored once.
    root.__call__ = tf.function(call, autograph=False)
    for flag in (False, True):
        root.__call__.get_concrete_function(model_spec, flag)
        root.__call__.get_concrete_function(model_spec, trainable=flag)

    # Any batch and image size, 3 channels; the graph checks the shape too (module docstring).
    served = [None, None, None, 3]

    @tf.function(
        input_signature=[tf.TensorSpec(served, tf.uint8, name=INPUT_NAME)], autograph=False
    )
    def serve_uint8(images):
        images = _check_images(images, "uint8 with values 0-255")
        images = tf.image.convert_image_dtype(images, tf.float32)  # / 255, as to_float_image
        return model_outputs(model, eval_preprocess(images, image_size, crop_proportion), False)

    @tf.function(
        input_signature=[tf.TensorSpec(served, tf.float32, name=INPUT_NAME)], autograph=False
    )
    def serve_float(images):
        images = _check_images(images, "float32 with values in [0, 1]")
        # Catches the common mistake of sending 0-255 floats; the slack admits
        # the small overshoot of a client-side bicubic resize.
        in_range = tf.logical_and(tf.reduce_all(images >= -0.01), tf.reduce_all(images <= 1.01))
        check = tf.debugging.Assert(
            in_range,
            [
                "images of serving_float must have values in [0, 1] "
                "(send 0-255 pixels as uint8 to serving_default); got min and max",
                tf.reduce_min(images),
                tf.reduce_max(images),
            ],
        )
        with tf.control_dependencies([check]):
            images = tf.identity(images)
        return model_outputs(model, eval_preprocess(images, image_size, crop_proportion), False)

    signatures = {
        SERVING_DEFAULT: serve_uint8.get_concrete_function(),
        SERVING_FLOAT: serve_float.get_concrete_function(),
    }
    return root, signatures


def absolute_path(path: str) -> str:
    """`path` made absolute against the current directory, unless it is a URL (`gs://...`):
    a path the library returns must still name the same file in a subprocess or after a
    `chdir` (a serving check runs elsewhere)."""
    path = os.fspath(path)
    return path if "://" in path else os.path.abspath(path)


def export_saved_model(
    model: keras.Model,
    export_root: str,
    step: int,
    image_size: int,
    crop_proportion: float | None = None,
    description: dict | None = None,
) -> str:
    """Writes `model` as a SavedModel to `export_root/<step>/`; returns that path, absolute
    (`absolute_path`).

    The SavedModel is written to a hidden temporary directory in `export_root`
    and then renamed, so TF Serving, which loads only integer-named
    directories, never sees a half-written version; a failed export leaves
    nothing behind. An existing `export_root/<step>` is replaced (moved aside,
    then deleted once the new version is in place). The rename is atomic on
    local (POSIX) file systems; object stores such as GCS copy instead.

    Args:
      model: a built Keras model, `call(images, training)` -> dict with
        `"embedding"` and optionally `"projection"` and `"logits"` (see the
        module docstring); may have been built under a distribution strategy.
      export_root: the TF Serving model base path, e.g. `model_dir/saved_model`.
      step: the version number, an integer >= 0 (the training step).
      image_size: side of the square images the model takes, >= 1.
      crop_proportion: evaluation centre crop, as in `augment.eval_view`
        (None: 0.875 above 32 px, none at 32 px or less).
      description: the model description of `tf_simclr.run_dir` (JSON-able),
        written to `assets.extra/tf_simclr_model.json` so that the SavedModel
        can be rebuilt as a Keras model (`--checkpoint=<this directory>`), with
        `tf_simclr_version` set to the release that exports it.
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be an integer >= 0 (the version number), got {step!r}")
    step = int(step)
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size!r}")
    if not model.built:
        raise ValueError("the model must be built (called once) before export")
    root, signatures = _build_module(model, image_size, crop_proportion)

    export_root = absolute_path(export_root)
    tf.io.gfile.makedirs(export_root)
    path = os.path.join(export_root, str(step))
    token = uuid.uuid4().hex[:8]
    # Leading dot and a non-integer name: TF Serving ignores these directories.
    tmp = os.path.join(export_root, f".tmp-{step}-{token}")
    try:
        tf.saved_model.save(root, tmp, signatures=signatures)
        if description is not None:
            description = {**description, "tf_simclr_version": __version__}
            extra = os.path.join(tmp, DESCRIPTION_FILE)
            tf.io.gfile.makedirs(os.path.dirname(extra))
            with tf.io.gfile.GFile(extra, "w") as f:
                f.write(json.dumps(description, indent=2, sort_keys=True) + "\n")
        if tf.io.gfile.exists(path):
            old = os.path.join(export_root, f".old-{step}-{token}")
            tf.io.gfile.rename(path, old)
            tf.io.gfile.rename(tmp, path)
            tf.io.gfile.rmtree(old)
        else:
            tf.io.gfile.rename(tmp, path)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.rmtree(tmp)
    return path


def prune_exports(export_root: str, keep: int, newest: int | None = None) -> list[int]:
    """Deletes the versions `export_root/<step>` beyond the `keep` highest steps.

    The reference's `--keep_hub_module_max`. `keep=0` keeps all. The version
    `newest` (the one just written) is never deleted, even when it is not among
    the highest steps (an older checkpoint exported again). Non-integer entries
    (temporary directories, other files) are left alone. Returns the deleted steps.
    """
    bound = BOUNDS["keep_hub_module_max"]  # the flag that feeds `keep`
    if keep not in bound:
        raise ValueError(f"keep must be {bound} (0: keep all), got {keep!r}")
    if keep == 0 or not tf.io.gfile.isdir(export_root):
        return []
    steps = sorted(
        int(name.rstrip("/"))
        for name in tf.io.gfile.listdir(export_root)
        if name.rstrip("/").isdigit()
    )
    deleted = [step for step in steps[:-keep] if step != newest]
    for step in deleted:
        tf.io.gfile.rmtree(os.path.join(export_root, str(step)))
    return deleted


def save_keras(model: keras.Model, path: str) -> str:
    """Saves `model` (architecture, weights, compile state) as a `.keras` file; returns `path`,
    absolute (`absolute_path`).

    Written to a temporary file next to `path` and renamed, so `path` is
    either the old file or the complete new one. Load with `load_keras`.
    """
    path = absolute_path(path)
    if not path.endswith(".keras"):
        raise ValueError(f"path must end with '.keras', got {path!r}")
    directory, name = os.path.split(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:8]}.keras")
    try:
        model.save(tmp)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
    return path


def load_keras(path: str, compile: bool = True) -> keras.Model:
    """Loads a `.keras` file written by `save_keras` (or `model.save`).

    Same as `keras.saving.load_model(path)`: importing `tf_simclr` registered every
    class such a file can hold (models, layers, LARS and its schedule, the on-device
    augmentation). The model comes back built and, with `compile=True`, with its
    optimizer's slots and step, so `fit` continues where it stopped.
    """
    return keras.saving.load_model(os.fspath(path), compile=compile)
