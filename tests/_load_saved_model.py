"""Loads exported SavedModels the way a user without tf_simclr would; used by test_export.py.

Run in a fresh process, outside the repository, so that the SavedModel must
stand on its own: `python _load_saved_model.py REQUEST.json`. It never imports
tf_simclr. For each export named in the request it runs the serving
signatures, the model call, wrong inputs, and one fine-tuning step, writes
every output tensor to the npz file named in the request and prints a JSON
report on the last line of stdout.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _session_load import session_run  # noqa: E402


def error_message(fn, **inputs):
    """The message of the error `fn(**inputs)` raises, or None if it runs."""
    try:
        fn(**inputs)
    except Exception as e:  # noqa: BLE001 - any error type is a report
        return f"{type(e).__name__}: {e}"
    return None


def check_export(spec, arrays, outputs):
    loaded = tf.saved_model.load(spec["path"])
    name = spec["name"]
    report = {"signatures": sorted(loaded.signatures)}
    serve = loaded.signatures["serving_default"]
    serve_float = loaded.signatures["serving_float"]

    # Serving: raw uint8 images of several sizes, and the same images as floats.
    for i in range(spec["num_inputs"]):
        images = arrays[f"{name}/input{i}"]
        for key, value in serve(images=tf.constant(images)).items():
            outputs[f"{name}/uint8_{i}/{key}"] = value.numpy()
        floats = tf.constant(images.astype(np.float32) / 255.0)
        for key, value in serve_float(images=floats).items():
            outputs[f"{name}/float_{i}/{key}"] = value.numpy()

    # The same signatures in a TF1 session (the TF Serving loader's restore path).
    for i in range(spec["num_inputs"]):
        images = arrays[f"{name}/input{i}"]
        feeds = {"serving_default": images, "serving_float": images.astype(np.float32) / 255}
        for signature, result in session_run(spec["path"], feeds).items():
            kind = "uint8" if signature == "serving_default" else "float"
            for key, value in result.items():
                outputs[f"{name}/session_{kind}_{i}/{key}"] = value

    # The model call on already preprocessed images; `training` defaults to False.
    views = tf.constant(arrays[f"{name}/views"])
    for key, value in loaded(views).items():
        outputs[f"{name}/call/{key}"] = value.numpy()

    images = arrays[f"{name}/input0"]
    report["errors"] = {
        "rank3": error_message(serve, images=tf.constant(images[0])),
        "channels1": error_message(serve, images=tf.constant(images[..., :1])),
        "channels4": error_message(
            serve, images=tf.constant(np.concatenate([images] * 2, -1)[..., :4])
        ),
        "float_to_uint8": error_message(serve, images=tf.constant(images.astype(np.float32))),
        "float_0_255": error_message(serve_float, images=tf.constant(images.astype(np.float32))),
    }

    # Fine-tuning: gradients reach every trainable variable; BN statistics
    # move with training=True only; one SGD step changes the served outputs.
    report["num_variables"] = len(loaded.variables)
    report["trainable_shapes"] = [list(v.shape) for v in loaded.trainable_variables]
    moving = lambda: [v.numpy().copy() for v in loaded.non_trainable_variables]
    num_changed = lambda before: sum(
        not np.array_equal(b, v.numpy())
        for b, v in zip(before, loaded.non_trainable_variables, strict=True)
    )
    before = moving()
    loaded(views, training=False)
    report["moving_changed_by_inference"] = num_changed(before)
    with tf.GradientTape() as tape:
        result = loaded(views, training=True)
        loss = tf.add_n([tf.reduce_mean(tf.square(v)) for v in result.values()])
    grads = tape.gradient(loss, loaded.trainable_variables)
    report["num_moving"] = len(before)
    report["moving_changed_by_training"] = num_changed(before)
    report["none_grads"] = sum(g is None for g in grads)
    report["nonfinite_grads"] = sum(
        g is not None and not bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads
    )
    served_before = serve(images=tf.constant(images))["embedding"]
    for variable, grad in zip(loaded.trainable_variables, grads, strict=True):
        if grad is not None:
            variable.assign_sub(0.5 * grad)
    served_after = serve(images=tf.constant(images))["embedding"]
    report["change_after_sgd_step"] = float(tf.reduce_max(tf.abs(served_after - served_before)))
    return report


def check_rest_bodies(request, outputs):
    """Runs TF Serving-shaped request bodies ("instances" and "inputs") through the signature."""
    loaded = tf.saved_model.load(request["rest_export"])
    for kind, body_file in request["rest_bodies"].items():
        with open(body_file) as f:
            body = json.load(f)
        images = body["instances"] if "instances" in body else body["inputs"]["images"]
        signature = loaded.signatures[body.get("signature_name", "serving_default")]
        for key, value in signature(images=tf.constant(images, tf.uint8)).items():
            outputs[f"rest_{kind}/{key}"] = value.numpy()


def main(request_file):
    with open(request_file) as f:
        request = json.load(f)
    arrays = dict(np.load(request["arrays"]))
    outputs = {}
    report = {"exports": {}}
    for spec in request["exports"]:
        report["exports"][spec["name"]] = check_export(spec, arrays, outputs)
    check_rest_bodies(request, outputs)
    np.savez(request["outputs"], **outputs)
    report["tf_simclr_imported"] = any(m.split(".")[0] == "tf_simclr" for m in sys.modules)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
