"""LiteRT and ONNX export: each file runs in its own runtime and equals the Keras model."""

import importlib.util
import os

import numpy as np
import pytest

from tests import _harness
from tests.test_export import built, tiny_classifier, tiny_simclr
from tf_simclr import export_formats
from tf_simclr.errors import ArgumentError

SIZE = 16
# The ONNX tests need the optional tf2onnx and onnxruntime (requirements-dev.txt has them).
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def models():
    return {
        "probe": built(tiny_simclr(3), SIZE),
        # float16 selective-kernel encoder, fine-tuned from the head's middle
        "sk_finetuned": built(tiny_classifier(), SIZE),
    }


def keras_inference(model, images):
    """The Keras model's outputs; a mixed-precision model's computed in float32 (the
    exports are float32 graphs of the same weights)."""
    with export_formats._float32_compute(model):
        outputs = model(images, training=False)
    return {k: np.asarray(outputs[k], np.float32) for k in ("embedding", "logits")}


def assert_close_to_keras(actual, model, images):
    expected = keras_inference(model, images)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=1e-4, atol=1e-4 * np.abs(value).max())


def test_a_mixed_precision_model_exports_in_float32_and_is_left_as_it_was(models):
    model, batch = models["sk_finetuned"], images(2)
    before = np.asarray(model(batch, training=False)["embedding"])
    with export_formats._float32_compute(model):
        float32 = np.asarray(model(batch, training=False)["embedding"])
    assert model.encoder.compute_dtype == "float16"
    np.testing.assert_array_equal(np.asarray(model(batch, training=False)["embedding"]), before)
    # float16 rounding: close, not equal
    assert 0 < np.abs(float32 - before).max() < 0.05 * np.abs(float32).max()


def images(n, seed=5):
    return np.random.default_rng(seed).uniform(0, 1, (n, SIZE, SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize("name", ["probe", "sk_finetuned"])
def test_litert_file_equals_the_keras_model(models, name, tmp_path):
    path = str(tmp_path / "m.tflite")
    report = export_formats.export_litert(models[name], path, SIZE)
    assert report["path"] == path and report["bytes"] == os.path.getsize(path)
    assert report["max_relative_difference"] < 1e-4
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]
    # Another batch size than the export's check, in a fresh interpreter.
    runner = export_formats.litert_interpreter(path).get_signature_runner()
    batch = images(3)
    assert_close_to_keras(runner(images=batch), models[name], batch)


@pytest.mark.parametrize("name", ["probe", "sk_finetuned"])
def test_onnx_file_equals_the_keras_model(models, name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    path = str(tmp_path / "m.onnx")
    report = export_formats.export_onnx(models[name], path, SIZE)
    assert report["max_relative_difference"] < 1e-4
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    batch = images(3)
    actual = dict(zip(names, session.run(names, {"images": batch}), strict=True))
    assert_close_to_keras(actual, models[name], batch)


def test_quantised_litert_is_smaller_and_close(models, tmp_path):
    full = export_formats.export_litert(models["probe"], str(tmp_path / "f.tflite"), SIZE)
    quantised = export_formats.export_litert(
        models["probe"], str(tmp_path / "q.tflite"), SIZE, quantize=True
    )
    assert quantised["bytes"] < 0.5 * full["bytes"]
    assert 0 < quantised["max_relative_difference"] < 0.2


def test_a_file_that_disagrees_fails_and_leaves_nothing(models, tmp_path):
    exporters = [export_formats.export_litert]
    if HAS_ONNX:
        exporters.append(export_formats.export_onnx)
    for export in exporters:
        suffix = ".tflite" if export is export_formats.export_litert else ".onnx"
        with pytest.raises(ArgumentError, match="differs from the Keras model by .*nothing"):
            export(models["probe"], str(tmp_path / f"m{suffix}"), SIZE, tolerance=1e-15)
    assert os.listdir(tmp_path) == []


def test_wrong_suffix_is_an_argument_error(models, tmp_path):
    with pytest.raises(ArgumentError, match="^path=.*'.tflite'"):
        export_formats.export_litert(models["probe"], str(tmp_path / "m.onnx"), SIZE)


def test_export_mode_writes_each_format(session_train_test_folder, tmp_path, capsys):
    model_dir = str(tmp_path / "run")
    data = [f"--data_dir={session_train_test_folder}", "--dataset=image_folder"]
    steps = ["--train_steps=1", "--checkpoint_steps=1", f"--model_dir={model_dir}"]
    code, stderr = _harness.run_in_process([*_harness.TINY_FLAGS, *data, *steps], capsys)
    assert code == 0, stderr
    formats = "--export_format=litert,onnx,saved_model" if HAS_ONNX else "--export_format=litert"
    code, stderr = _harness.run_in_process(
        ["--mode=export", f"--model_dir={model_dir}", formats], capsys
    )
    assert code == 0, stderr
    written = ["litert/1.tflite", "onnx/1.onnx", "saved_model/1/saved_model.pb"]
    for path in written if HAS_ONNX else written[:1]:
        assert os.path.exists(os.path.join(model_dir, path)), path
    code, stderr = _harness.run_in_process(
        ["--mode=export", f"--model_dir={model_dir}", "--export_format=litert,tflite"], capsys
    )
    assert code == 2 and stderr.strip().splitlines()[-1].startswith(
        "run.py: error: "
        "--export_format=litert,tflite: a comma list of distinct values from: saved_model"
    ), stderr
