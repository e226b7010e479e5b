"""Runs SavedModel signatures in a TF1 session, the restore path of TF Serving's server.

`tf.compat.v1.saved_model.loader.load` restores the variables with the SavedModel's
own saver (its `saver_def` restore op), as TF Serving's C++ loader and
`saved_model_cli run` do, not from the object graph as `tf.saved_model.load` does.
An export whose functions read other variables than the ones that saver restores
passes every TF2 loader and fails here ("Could not find variable ...").

Imported by `_load_saved_model.py` (no tf_simclr in that process), and run as a
script by other tests: `python _session_load.py PATH`, which feeds random uint8
images `[2, 24, 24, 3]` (and the same as float32 in [0, 1] to `serving_float`) through
every signature both ways, in a session and with `tf.saved_model.load`, and prints
a JSON report on stdout's last line: {"signatures": [...], "max_abs_diff": {"sig/key": d}}.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def session_run(path: str, feeds: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{signature: {output: array}} of a TF1 session run of each signature in `feeds`
    ({signature name: the `images` array}), after loading `path` with the TF1 loader."""
    results = {}
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        for name, images in feeds.items():
            signature = meta_graph.signature_def[name]
            fetches = {key: info.name for key, info in signature.outputs.items()}
            feed = {signature.inputs["images"].name: images}
            results[name] = sess.run(fetches, feed)
    return results


def compare(path: str) -> dict:
    """The report of the script: session vs TF2 loader on every serving signature."""
    images = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    feeds = {"serving_default": images, "serving_float": images.astype(np.float32) / 255}
    loaded = tf.saved_model.load(path)
    feeds = {name: value for name, value in feeds.items() if name in loaded.signatures}
    session = session_run(path, feeds)
    diffs = {}
    for name, value in feeds.items():
        expected = loaded.signatures[name](images=tf.constant(value))
        assert sorted(expected) == sorted(session[name]), (name, sorted(session[name]))
        for key, tensor in expected.items():
            diffs[f"{name}/{key}"] = float(np.abs(session[name][key] - tensor.numpy()).max())
    return {"signatures": sorted(feeds), "max_abs_diff": diffs}


if __name__ == "__main__":
    report = compare(sys.argv[1])
    report["tf_simclr_imported"] = any(m.split(".")[0] == "tf_simclr" for m in sys.modules)
    print(json.dumps(report))
