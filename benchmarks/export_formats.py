"""Export formats side by side: file size, inference speed and test top-1 of one classifier.

    PYTHONPATH=. python benchmarks/export_formats.py --model_dir=RUN [--data_dir=CIFAR10_JPG]
        [--images=0] [--speed_images=1000] [--output=benchmarks/results/export_formats.json]

RUN is a model_dir with a classifier (a fine-tuned or linear-evaluation run, or a
pretraining run with the online probe). The model is exported in every format
(`tf_simclr.export`, `tf_simclr.export_formats`; LiteRT also quantised), then each export
classifies the test split (`--images`: the first N in a seeded shuffle, 0: all) from the
same preprocessed float32 images, in its own runtime: the Keras model, the SavedModel
through `tf.saved_model.load` (`serving_float`), LiteRT's interpreter, onnxruntime.
Speed is images/s at batch 100 over `--speed_images` images, the best of 3 passes, all
formats in this one process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from run_benchmarks import find_cifar10  # noqa: E402

BATCH = 100


def load_images(split_dir: str, image_size: int, limit: int):
    """(float32 [N, S, S, 3] eval views in [0, 1], int labels), classes in sorted order."""
    import tensorflow as tf

    from tf_simclr.data import augment

    classes = sorted(os.listdir(split_dir))
    files = [
        (os.path.join(split_dir, c, name), label)
        for label, c in enumerate(classes)
        for name in sorted(os.listdir(os.path.join(split_dir, c)))
    ]
    order = np.random.default_rng(0).permutation(len(files))
    files = [files[i] for i in order[: limit or None]]

    def view(path):
        image = tf.image.decode_image(tf.io.read_file(path), 3, expand_animations=False)
        return augment.eval_view(tf.image.convert_image_dtype(image, tf.float32), image_size)

    views = [view(path).numpy() for path, _ in files]
    return np.stack(views), np.array([label for _, label in files])


def batched(predict, images):
    return np.concatenate([predict(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])


def speed(predict, images) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        batched(predict, images)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def predictors(model, exports: dict):
    """{name: images -> logits}, one per runtime."""
    import tensorflow as tf

    from tf_simclr import export_formats

    result = {"keras": lambda x: model(x, training=False)["logits"].numpy()}
    serve = tf.saved_model.load(exports["saved_model"]).signatures["serving_float"]
    result["saved_model"] = lambda x: serve(images=tf.constant(x))["logits"].numpy()

    def litert(path):
        interpreter = export_formats.litert_interpreter(path)
        runner = interpreter.get_signature_runner()
        return lambda x: runner(images=x)["logits"]

    result["litert"] = litert(exports["litert"])
    result["litert_quantized"] = litert(exports["litert_quantized"])
    import onnxruntime

    session = onnxruntime.InferenceSession(exports["onnx"], providers=["CPUExecutionProvider"])
    result["onnx"] = lambda x: session.run(["logits"], {"images": x})[0]
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--images", type=int, default=0)
    parser.add_argument("--speed_images", type=int, default=1000)
    parser.add_argument("--output", default="benchmarks/results/export_formats.json")
    args = parser.parse_args(argv)

    from tf_simclr import export, export_formats, run_dir

    model, step, config = run_dir.load_model(args.model_dir)
    if not getattr(model, "num_classes", 0):
        raise SystemExit(f"--model_dir={args.model_dir}: the model has no classifier")
    data = find_cifar10(args.data_dir)
    if data is None:
        raise SystemExit("no CIFAR-10: pass --data_dir")
    out = tempfile.mkdtemp(prefix="export_formats.")
    exports = {"saved_model": export.export_saved_model(model, out, step, config.image_size)}
    reports = {}
    for name, kwargs in (("litert", {}), ("litert_quantized", {"quantize": True})):
        reports[name] = export_formats.export_litert(
            model, os.path.join(out, f"{name}.tflite"), config.image_size, **kwargs
        )
    reports["onnx"] = export_formats.export_onnx(
        model, os.path.join(out, "model.onnx"), config.image_size
    )
    exports.update({name: report["path"] for name, report in reports.items()})

    images, labels = load_images(os.path.join(data, "test"), config.image_size, args.images)
    sizes = {
        "saved_model": sum(
            p.stat().st_size for p in pathlib.Path(exports["saved_model"]).rglob("*") if p.is_file()
        ),
        **{name: report["bytes"] for name, report in reports.items()},
    }
    results = {}
    keras_logits = None
    for name, predict in predictors(model, exports).items():
        logits = batched(predict, images)
        keras_logits = logits if keras_logits is None else keras_logits
        scale = np.abs(keras_logits).max()
        results[name] = {
            "bytes": sizes.get(name),
            "top1": float((logits.argmax(-1) == labels).mean()),
            "max_relative_logit_difference": float(np.abs(logits - keras_logits).max() / scale),
            "images_per_s": speed(predict, images[: args.speed_images]),
        }
    record = {
        "model_dir": args.model_dir,
        "step": step,
        "image_size": config.image_size,
        "test_images": int(len(labels)),
        "batch": BATCH,
        "formats": results,
    }
    print(
        f"{'format':18} {'bytes':>10} {'top1':>7} {'rel.diff':>9} {'img/s':>8}"
        f" {'vs SavedModel':>13}"
    )
    base = results["saved_model"]["images_per_s"]
    for name, r in results.items():
        size = "" if r["bytes"] is None else r["bytes"]
        print(
            f"{name:18} {size:>10} {r['top1']:7.4f} {r['max_relative_logit_difference']:9.1e} "
            f"{r['images_per_s']:8.0f} {r['images_per_s'] / base:12.2f}x"
        )
    if args.output:
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        pathlib.Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
