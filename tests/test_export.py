"""Tests of the SavedModel / .keras export.

The main checks load the SavedModels in a fresh process that never imports
tf_simclr (`_load_saved_model.py`), as TF Serving or a user would: the module
fixture exports three models once and runs that process once.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr import export
from tf_simclr.data import augment
from tf_simclr.models import Classifier, ProjectionHead, ResNet, SimCLR, endpoints

STEP = 7
LOADER = pathlib.Path(__file__).with_name("_load_saved_model.py")
SIGNATURE_MESSAGE = "images must be [batch, height, width, 3] uint8 with values 0-255; got shape"


class TinyClassifier(keras.Model):
    """A non-SimCLR model of the exported kind: embedding and logits, no projection."""

    def __init__(self, num_classes=4, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same")
        self.bn = keras.layers.BatchNormalization()
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.classifier = keras.layers.Dense(num_classes)

    def call(self, images, training=False):
        features = self.pool(keras.ops.relu(self.bn(self.conv(images), training=training)))
        return {"embedding": features, "logits": self.classifier(features)}


def tiny_simclr(num_classes, synchronized_bn=False, dtype=None):
    encoder = ResNet(
        18, width_multiplier=0.125, cifar_stem=True, synchronized_bn=synchronized_bn, dtype=dtype
    )
    head = ProjectionHead("nonlinear", out_dim=8, num_layers=2, synchronized_bn=synchronized_bn)
    return SimCLR(encoder, head, num_classes=num_classes)


def built(model, size, seed=0):
    """`model` after one training-mode call, so BN moving statistics are not their defaults."""
    images = tf.random.stateless_uniform([4, size, size, 3], seed=[seed, 1])
    model(images, training=True)
    return model


def keras_outputs(model, views):
    """What the export must return for float32 views `[N, S, S, 3]`, from the Keras model."""
    outputs = {k: np.asarray(v) for k, v in model(views, training=False).items()}
    if "logits" in outputs:
        outputs["probabilities"] = np.asarray(tf.nn.softmax(outputs["logits"]))
    return outputs


def eval_views(images, size):
    return tf.stack([augment.eval_view(image, size) for image in images])


def assert_outputs_close(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, atol=1e-4, rtol=1e-4, err_msg=key)


def outputs_under(outputs, prefix):
    return {k[len(prefix) :]: v for k, v in outputs.items() if k.startswith(prefix)}


def docstring_request_body():
    """The REST request body of the module docstring (the README copies it)."""
    doc = export.__doc__
    start = doc.index('{\n      "signature_name"')
    return json.loads(doc[start : doc.index("\n    }", start) + len("\n    }")])


# name: (model, image_size, [(height, width) of the test inputs]). 16 px: resize
# only (none for 16 x 16); 40 px: central crop with odd margins, then resize.
def export_cases():
    return {
        "probe16": (built(tiny_simclr(3), 16), 16, [(16, 16), (20, 27)]),
        "noprobe40": (built(tiny_simclr(0), 40), 40, [(45, 50), (40, 40)]),
        "classifier16": (built(TinyClassifier(), 16), 16, [(18, 18)]),
        # A mixed-precision encoder: the signatures still take uint8 / float32 images.
        "bf16probe16": (built(tiny_simclr(3, dtype="mixed_bfloat16"), 16), 16, [(20, 20)]),
        # A selective-kernel encoder fine-tuned from the head's middle under float16.
        "sk_finetuned16": (built(tiny_classifier(), 16), 16, [(16, 16)]),
    }


def tiny_classifier():
    encoder = ResNet(18, 0.125, cifar_stem=True, sk_ratio=0.0625, dtype="mixed_float16")
    head = ProjectionHead("nonlinear", out_dim=8, num_layers=3)
    return Classifier(encoder, 3, head=head, ft_proj_selector=1, fine_tune_after_block=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    arrays, expected, specs, roots, models = {}, {}, [], {}, {}
    for name, (model, size, shapes) in export_cases().items():
        roots[name] = tmp / name / "saved_model"
        path = export.export_saved_model(model, str(roots[name]), STEP, size)
        assert path == os.path.join(roots[name], str(STEP))
        for i, (height, width) in enumerate(shapes):
            images = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
            arrays[f"{name}/input{i}"] = images
            expected[name, i] = keras_outputs(model, eval_views(images, size))
        arrays[f"{name}/views"] = eval_views(arrays[f"{name}/input0"], size).numpy()
        specs.append({"name": name, "path": path, "num_inputs": len(shapes)})
        models[name] = model

    # Request bodies as TF Serving receives them, for the probe16 export.
    bodies = {
        "rows": docstring_request_body(),
        "columns": {"inputs": {"images": arrays["probe16/input1"].tolist()}},
    }
    expected["rest_rows"] = keras_outputs(
        models["probe16"], eval_views(np.array(bodies["rows"]["instances"], np.uint8), 16)
    )
    expected["rest_columns"] = expected["probe16", 1]
    body_files = {}
    for kind, body in bodies.items():
        body_files[kind] = str(tmp / f"body_{kind}.json")
        pathlib.Path(body_files[kind]).write_text(json.dumps(body))

    np.savez(tmp / "arrays.npz", **arrays)
    request = {
        "exports": specs,
        "arrays": str(tmp / "arrays.npz"),
        "outputs": str(tmp / "outputs.npz"),
        "rest_export": specs[0]["path"],
        "rest_bodies": body_files,
    }
    (tmp / "request.json").write_text(json.dumps(request))
    # A fresh process outside the repository, without PYTHONPATH: tf_simclr is
    # not importable there, so the SavedModel must stand on its own.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(LOADER), str(tmp / "request.json")],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "models": models,
        "specs": {spec["name"]: spec for spec in specs},
        "roots": roots,
        "expected": expected,
        "outputs": dict(np.load(request["outputs"])),
        "arrays": arrays,
        "report": report,
    }


@pytest.mark.parametrize(
    "height, width, size, crop",
    [
        (16, 16, 16, None),  # no-op
        (20, 27, 16, None),  # resize only at <= 32 px
        (45, 50, 40, None),  # 0.875 crop (odd margin), then resize
        (40, 40, 40, None),  # crop 35 px, resize back to 40
        (64, 48, 32, 0.5),  # explicit crop at a small size
    ],
)
def test_eval_preprocess_equals_eval_view_per_image(height, width, size, crop):
    images = tf.random.stateless_uniform([3, height, width, 3], seed=[height, width])
    expected = tf.stack([augment.eval_view(image, size, crop) for image in images])
    np.testing.assert_allclose(export.eval_preprocess(images, size, crop), expected, atol=1e-6)
    # Inside a graph where H and W are known only at run time.
    graph_fn = tf.function(
        lambda x: export.eval_preprocess(x, size, crop),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
    )
    np.testing.assert_allclose(graph_fn(images), expected, atol=1e-6)


def test_fresh_process_loads_signatures_without_tf_simclr(exported):
    report = exported["report"]
    assert report["tf_simclr_imported"] is False
    for name, result in report["exports"].items():
        assert result["signatures"] == ["serving_default", "serving_float"], name


@pytest.mark.parametrize(
    "name", ["probe16", "noprobe40", "classifier16", "bf16probe16", "sk_finetuned16"]
)
def test_signatures_equal_keras_model_on_eval_views(exported, name):
    outputs, expected = exported["outputs"], exported["expected"]
    for i in range(exported["specs"][name]["num_inputs"]):
        for kind in ("uint8", "float", "session_uint8", "session_float"):
            assert_outputs_close(outputs_under(outputs, f"{name}/{kind}_{i}/"), expected[name, i])
    # The model call, for fine-tuning, takes already preprocessed views (and returns the
    # reference's outputs too, see test_output_keys_follow_the_model).
    call = outputs_under(outputs, f"{name}/call/")
    ours = {k: v for k, v in call.items() if k in export.OUTPUT_KEYS}
    assert_outputs_close(ours, expected[name, 0])


def test_output_keys_follow_the_model(exported):
    outputs = exported["outputs"]
    keys = lambda name: sorted(outputs_under(outputs, f"{name}/uint8_0/"))
    assert keys("probe16") == ["embedding", "logits", "probabilities", "projection"]
    assert keys("noprobe40") == ["embedding", "projection"]
    assert keys("classifier16") == ["embedding", "logits", "probabilities"]
    assert keys("bf16probe16") == keys("probe16")
    # The model call adds the reference SavedModel's outputs when the encoder is our ResNet.
    extra = lambda name: set(outputs_under(outputs, f"{name}/call/")) - set(export.OUTPUT_KEYS)
    assert extra("probe16") == extra("bf16probe16") == set(endpoints.REFERENCE_OUTPUTS)
    assert extra("noprobe40") == set(endpoints.REFERENCE_OUTPUTS) - {"logits_sup"}
    assert extra("classifier16") == set()
    assert outputs["bf16probe16/call/block_group2"].dtype == np.float32
    probabilities = outputs["probe16/uint8_0/probabilities"]
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert outputs["probe16/uint8_0/embedding"].dtype == np.float32


def test_mixed_precision_export_returns_float32_close_to_float32_math(exported):
    outputs = outputs_under(exported["outputs"], "bf16probe16/")
    assert outputs and {v.dtype for v in outputs.values()} == {np.dtype(np.float32)}
    # The same weights in a float32 encoder: bfloat16 convolutions change the
    # features by a few percent at most, so the export runs the bfloat16 graph.
    model = exported["models"]["bf16probe16"]
    twin = tiny_simclr(3)
    twin(tf.zeros([1, 16, 16, 3]))
    twin.set_weights(model.get_weights())
    views = eval_views(exported["arrays"]["bf16probe16/input0"], 16)
    full = twin(views)["embedding"].numpy()
    served = outputs["uint8_0/embedding"]
    assert not np.array_equal(served, full)
    np.testing.assert_allclose(served, full, rtol=0.1, atol=0.05 * np.abs(full).max())


@pytest.mark.parametrize("kind", ["rows", "columns"])
def test_rest_request_body_runs_through_the_signature(exported, kind):
    actual = outputs_under(exported["outputs"], f"rest_{kind}/")
    assert_outputs_close(actual, exported["expected"][f"rest_{kind}"])


ENSURE_SHAPE_MESSAGE = "Shape of tensor images ["
DECLARED = "] is not compatible with expected shape [?,?,?,3]"


def reported_shape(message):
    """The shape an input-check error reports, "2 16 16 1": our check's "...; got shape]
    [2 16 16 1]", or, where the graph optimiser folded it away because the signature
    declares [-1, -1, -1, 3], the shape check's "Shape of tensor images [2,16,16,1] is
    not compatible with expected shape [?,?,?,3]"."""
    assert message is not None, "the wrong input ran without an error"
    if ENSURE_SHAPE_MESSAGE in message:
        assert DECLARED in message, message
        shape = message.split(ENSURE_SHAPE_MESSAGE, 1)[1].split("]", 1)[0]
        return shape.replace(",", " ")
    assert SIGNATURE_MESSAGE in message, message
    return message.split(SIGNATURE_MESSAGE + "] [", 1)[1].split("]", 1)[0]


def test_wrong_inputs_fail_saying_what_is_expected(exported):
    for result in exported["report"]["exports"].values():
        errors = result["errors"]
        assert reported_shape(errors["rank3"]).count(" ") == 2, errors["rank3"]
        assert reported_shape(errors["channels1"]).endswith(" 1"), errors["channels1"]
        assert reported_shape(errors["channels4"]).endswith(" 4"), errors["channels4"]
        assert "uint8" in errors["float_to_uint8"] and "float" in errors["float_to_uint8"]
        assert "values in [0, 1]" in errors["float_0_255"], errors["float_0_255"]
        assert "as uint8 to serving_default" in errors["float_0_255"]
    errors = exported["report"]["exports"]["probe16"]["errors"]
    assert reported_shape(errors["rank3"]) == "16 16 3"
    assert reported_shape(errors["channels1"]) == "2 16 16 1"
    assert reported_shape(errors["channels4"]) == "2 16 16 4"


@pytest.mark.parametrize("name", ["probe16", "noprobe40", "classifier16", "bf16probe16"])
def test_reloaded_model_fine_tunes(exported, name):
    result, model = exported["report"]["exports"][name], exported["models"][name]
    assert result["trainable_shapes"] == [list(v.shape) for v in model.trainable_variables]
    assert result["num_variables"] == len(model.variables)
    assert result["none_grads"] == 0 and result["nonfinite_grads"] == 0
    assert result["change_after_sgd_step"] > 1e-4
    # BatchNorm: training=True updates every moving statistic, inference none.
    assert result["num_moving"] == len(model.non_trainable_variables) > 0
    assert result["moving_changed_by_training"] == result["num_moving"]
    assert result["moving_changed_by_inference"] == 0


def test_export_root_holds_only_the_version_directory(exported):
    for name, root in exported["roots"].items():
        assert sorted(os.listdir(root)) == [str(STEP)], name
        assert os.path.exists(os.path.join(root, str(STEP), "saved_model.pb"))


def saved_model_cli(*args):
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    cli = cli or shutil.which("saved_model_cli")
    if cli is None:
        pytest.skip("saved_model_cli is not on PATH")
    proc = subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_saved_model_cli_runs_the_serving_signature(exported, tmp_path):
    # `saved_model_cli run` loads with the TF1 session loader, TF Serving's restore path.
    np.save(tmp_path / "images.npy", exported["arrays"]["probe16/input1"])
    saved_model_cli(
        "run",
        *("--dir", exported["specs"]["probe16"]["path"], "--tag_set", "serve"),
        *("--signature_def", "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}"),
        *("--outdir", str(tmp_path / "out")),
    )
    actual = {p.stem: np.load(p) for p in (tmp_path / "out").glob("*.npy")}
    assert_outputs_close(actual, exported["expected"]["probe16", 1])


def test_saved_model_cli_lists_the_signatures(exported):
    proc = saved_model_cli("show", "--all", "--dir", exported["specs"]["probe16"]["path"])
    for text in ("serving_default", "serving_float", "images", "DT_UINT8", "probabilities"):
        assert text in proc.stdout, text
    # Both inputs declare their shape: any batch and size, 3 channels.
    inputs = proc.stdout.split("inputs['images'] tensor_info:")[1:]
    assert len(inputs) == 2, proc.stdout
    for text in inputs:
        assert text.split("name:")[0].split("shape:")[1].strip() == "(-1, -1, -1, 3)", text


def test_failed_export_leaves_no_version_directory(tmp_path, monkeypatch):
    model = built(TinyClassifier(), 16)
    root = tmp_path / "saved_model"
    export.export_saved_model(model, str(root), np.int64(1), 16)  # e.g. optimizer.iterations

    def crash_mid_write(obj, path, **kwargs):
        os.makedirs(path)
        pathlib.Path(path, "saved_model.pb").write_text("half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crash_mid_write)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(model, str(root), 2, 16)
    assert sorted(os.listdir(root)) == ["1"]


def test_export_replaces_an_existing_version(tmp_path):
    model = built(TinyClassifier(), 16)
    root = str(tmp_path / "saved_model")
    export.export_saved_model(model, root, 3, 16)
    for variable in model.trainable_variables:
        variable.assign(variable + 0.1)
    path = export.export_saved_model(model, root, 3, 16)
    assert sorted(os.listdir(root)) == ["3"]
    images = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))
    assert_outputs_close(
        {k: v.numpy() for k, v in served.items()}, keras_outputs(model, eval_views(images, 16))
    )


@pytest.mark.parametrize("step", [-1, 1.5, "3", True])
def test_export_rejects_bad_steps(tmp_path, step):
    with pytest.raises(ValueError, match="step must be an integer"):
        export.export_saved_model(TinyClassifier(), str(tmp_path), step, 16)


def test_export_rejects_models_without_an_embedding(tmp_path):
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(TypeError, match="'embedding'"):
        export.export_saved_model(model, str(tmp_path), 1, 16)
    assert not os.path.exists(tmp_path / "1")


def test_export_of_a_model_built_under_a_strategy(tmp_path, mirrored_strategy):
    # As runner.run_export does: built in the strategy scope with global BN, exported outside.
    with mirrored_strategy.scope():
        model = built(tiny_simclr(3, synchronized_bn=True), 16)
    path = export.export_saved_model(model, str(tmp_path), 5, 16)
    loaded = tf.saved_model.load(path)
    images = np.random.default_rng(2).integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    assert_outputs_close(
        {k: v.numpy() for k, v in served.items()}, keras_outputs(model, eval_views(images, 16))
    )
    assert len(loaded.trainable_variables) == len(model.trainable_variables)


def test_keras_file_round_trip(tmp_path):
    model = built(tiny_simclr(3), 16)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    path = export.save_keras(model, str(tmp_path / "sub" / "model.keras"))
    assert sorted(os.listdir(tmp_path / "sub")) == ["model.keras"]
    views = tf.random.stateless_uniform([2, 16, 16, 3], seed=[3, 4])
    for reloaded in (export.load_keras(path), keras.saving.load_model(path)):
        assert isinstance(reloaded, SimCLR)
        assert_outputs_close(keras_outputs(reloaded, views), keras_outputs(model, views))
    with pytest.raises(ValueError, match=r"\.keras"):
        export.save_keras(model, str(tmp_path / "model.h5"))


def test_returned_paths_are_absolute_from_a_relative_directory(tmp_path, monkeypatch):
    # Issue 23: the notebook's default WORK_DIR is relative and its serving check runs in a
    # subprocess elsewhere (cwd="/"): the paths the library returns must still hold there.
    monkeypatch.chdir(tmp_path)
    model = built(TinyClassifier(), 16)
    saved = export.export_saved_model(model, os.path.join("runs", "saved_model"), 1, 16)
    assert saved == str(tmp_path / "runs" / "saved_model" / "1")
    keras_file = export.save_keras(model, os.path.join("runs", "model.keras"))
    assert keras_file == str(tmp_path / "runs" / "model.keras")
    monkeypatch.chdir("/")
    assert "serving_default" in tf.saved_model.load(saved).signatures
    assert os.path.exists(keras_file)
