"""What training writes to TensorBoard beside its scalars, and reads back; no matplotlib.

- `view_strips(images, augment)`: each image beside two fresh training views, one
  picture per image, for the `--summary_images` image summary (`take_images` picks
  the images);
- `write_projector(log_dir, features, labels, images)`: the files of TensorBoard's
  embedding projector (vectors, metadata, a sprite of thumbnails);
  `write_dataset_projector` writes them for every example of a dataset
  (`--eval_projector`);
- `read_scalars(model_dir)`: the scalars of a run's event files, by tag and step
  (`tf_simclr.viz.plot_training` draws them).

The pictures drawn with matplotlib are in `tf_simclr.viz`, which shares this module's
image intake (`images_labels_and_names`, `check_images`, `class_name`).
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from tf_simclr.data import AugmentConfig, Source, simclr_view
from tf_simclr.errors import ArgumentError

PROJECTOR_CONFIG = "projector_config.pbtxt"
# TensorBoard's projector accepts sprite images up to 8192 x 8192 pixels.
_MAX_SPRITE_SIDE = 8192

# ---------------------------------------------------------------------------
# Images in
# ---------------------------------------------------------------------------


def images_labels_and_names(
    images, n: int | None
) -> tuple[list[np.ndarray], np.ndarray | None, tuple]:
    """(up to n images as arrays [H, W, 3], their labels or None, class names) from a
    `Source`, a `tf.data.Dataset` (of `{"image", "label"}` or `(image, label)`, batched
    or not), or an array/list of images."""
    class_names: tuple = ()
    if isinstance(images, Source):
        class_names = images.class_names
        images = images.dataset
    if isinstance(images, tf.data.Dataset):
        spec = images.element_spec
        image_spec = spec["image"] if isinstance(spec, Mapping) else spec
        if isinstance(image_spec, tuple):
            image_spec = image_spec[0]
        if image_spec.shape.rank == 4:
            images = images.unbatch()
        taken, labels = [], []
        for element in images.take(-1 if n is None else n):
            if isinstance(element, Mapping):
                image, label = element["image"], element.get("label")
            elif isinstance(element, tuple):
                image, label = element[0], element[1] if len(element) > 1 else None
            else:
                image, label = element, None
            taken.append(np.asarray(image))
            labels.append(-1 if label is None else int(label))
        if not taken:
            raise ArgumentError("images", "the dataset is empty")
        has_labels = any(label >= 0 for label in labels)
        return taken, np.asarray(labels) if has_labels else None, class_names
    array = [np.asarray(image) for image in images[: n if n is not None else len(images)]]
    if not array:
        raise ArgumentError("images", "no images given")
    return array, None, class_names


def check_images(images: list[np.ndarray], argument: str) -> None:
    for image in images:
        if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
            raise ArgumentError(
                argument, f"images must be [H, W, 3] (or 1 or 4 channels); got {image.shape}"
            )


def class_name(label, class_names: Sequence[str]) -> str:
    if label is None or label < 0:
        return ""
    return class_names[label] if label < len(class_names) else str(label)


def take_images(dataset_or_source, n: int) -> list[np.ndarray]:
    """The first `n` images of a `Source`, dataset or array, as numpy arrays."""
    images, _, _ = images_labels_and_names(dataset_or_source, n)
    check_images(images, "images")
    return images


# ---------------------------------------------------------------------------
# Views for TensorBoard
# ---------------------------------------------------------------------------


def view_strips(images: Sequence[np.ndarray], augment: AugmentConfig) -> np.ndarray:
    """Each image resized beside two fresh training views of it, as one picture per image.

    For a TensorBoard image summary (`--summary_images`): float32
    `[N, S, 3 * S + 2 * gap, 3]` in [0, 1], S = `augment.image_size`, white gaps.
    """
    size = augment.image_size
    gap = max(1, size // 16)
    white = np.ones([size, gap, 3], np.float32)
    strips = []
    for image in images:
        image = tf.constant(image)
        float_image = tf.image.convert_image_dtype(image[..., :3], tf.float32)
        if image.shape[-1] == 1:
            float_image = tf.image.grayscale_to_rgb(float_image)
        resized = tf.image.resize(float_image, [size, size], antialias=True)
        panels = [np.clip(resized.numpy(), 0, 1), simclr_view(image, augment).numpy()]
        panels.append(simclr_view(image, augment).numpy())
        strips.append(np.concatenate([panels[0], white, panels[1], white, panels[2]], axis=1))
    return np.stack(strips).astype(np.float32)


# ---------------------------------------------------------------------------
# Scalars back out of the event files
# ---------------------------------------------------------------------------


def read_scalars(model_dir: str, subdir: str = "train") -> dict[str, list[tuple[int, float]]]:
    """`{tag: [(step, value), ...]}` from every event file under `model_dir/subdir`, by step.

    A step written twice (a resumed run) keeps the later value.
    """
    series: dict[str, dict[int, float]] = {}
    pattern = os.path.join(model_dir, subdir, "events.out.tfevents.*")
    for path in sorted(glob.glob(pattern)):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    tensor = tf.make_ndarray(value.tensor)
                    if tensor.ndim != 0 or tensor.dtype.kind not in "fiu":
                        continue  # an image or text summary, not a scalar
                    number = float(tensor)
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                series.setdefault(value.tag, {})[event.step] = number
    return {tag: sorted(points.items()) for tag, points in series.items()}


# ---------------------------------------------------------------------------
# TensorBoard embedding projector
# ---------------------------------------------------------------------------


def sprite_side(num_images: int, image_size: int) -> int:
    """Thumbnail side so that `num_images` thumbnails fit TensorBoard's 8192 px sprite."""
    per_row = math.ceil(math.sqrt(max(num_images, 1)))
    return max(1, min(image_size, _MAX_SPRITE_SIDE // per_row))


def thumbnails(images, side: int) -> np.ndarray:
    """uint8 `[N, side, side, 3]` from images `[N, H, W, 3]` (uint8, or float in [0, 1])."""
    images = tf.convert_to_tensor(images)
    floats = tf.image.convert_image_dtype(images, tf.float32)
    small = tf.image.resize(floats, [side, side], antialias=True)
    return tf.image.convert_image_dtype(tf.clip_by_value(small, 0.0, 1.0), tf.uint8).numpy()


def write_projector(
    log_dir: str,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    images: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    name: str = "embedding",
) -> dict[str, str]:
    """The files of TensorBoard's embedding projector for `features`, in `log_dir`.

    Writes `vectors.tsv` (one row of `features` per line), `metadata.tsv` (the
    label, and the class name when `class_names` are given, one line per row), a
    sprite image `sprite.png` of `images` (thumbnails in row-major order, the
    sprite at most 8192 px a side) and `projector_config.pbtxt` pointing at them.
    `tensorboard --logdir <a parent of log_dir>` shows it under "Projector".

    Args:
      log_dir: the directory (created).
      features: float `[N, D]`.
      labels: int `[N]` or None.
      images: `[N, H, W, 3]` (uint8, or float in [0, 1]) or None; resized to the
        thumbnail side (`sprite_side`) unless already that size.
      class_names: names of the label indices.
      name: the tensor name the projector shows.

    Returns:
      `{"config", "vectors", "metadata", "sprite"}` paths (metadata and sprite only
      when given).
    """
    from tensorboard.plugins import projector

    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ArgumentError("features", f"must be [N, D] with N >= 1; got {features.shape}")
    count = features.shape[0]
    tf.io.gfile.makedirs(log_dir)
    written = {"vectors": os.path.join(log_dir, "vectors.tsv")}
    with tf.io.gfile.GFile(written["vectors"], "w") as f:
        f.write("\n".join("\t".join(f"{v:.6g}" for v in row) for row in features) + "\n")
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = name
    embedding.tensor_shape.extend(features.shape)
    embedding.tensor_path = "vectors.tsv"
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != count:
            raise ArgumentError("labels", f"{labels.shape[0]} labels for {count} feature rows")
        written["metadata"] = os.path.join(log_dir, "metadata.tsv")
        with tf.io.gfile.GFile(written["metadata"], "w") as f:
            if class_names:  # several columns: the projector wants a header row
                f.write("label\tclass\n")
                rows = [f"{int(y)}\t{class_name(int(y), class_names)}" for y in labels]
            else:
                rows = [f"{int(y)}" for y in labels]
            f.write("\n".join(rows) + "\n")
        embedding.metadata_path = "metadata.tsv"
    if images is not None:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[0] != count:
            raise ArgumentError(
                "images", f"need [{count}, H, W, 3] (one per feature row); got {images.shape}"
            )
        side = sprite_side(count, max(images.shape[1], images.shape[2]))
        if images.shape[1:3] != (side, side) or images.dtype != np.uint8:
            images = thumbnails(images, side)
        per_row = math.ceil(math.sqrt(count))
        sprite = np.full([per_row * side, per_row * side, 3], 255, np.uint8)
        for i, image in enumerate(images):
            r, c = divmod(i, per_row)
            sprite[r * side : (r + 1) * side, c * side : (c + 1) * side] = image[..., :3]
        written["sprite"] = os.path.join(log_dir, "sprite.png")
        tf.io.write_file(written["sprite"], tf.io.encode_png(sprite))
        embedding.sprite.image_path = "sprite.png"
        embedding.sprite.single_image_dim.extend([side, side])
    projector.visualize_embeddings(log_dir, config)
    written["config"] = os.path.join(log_dir, PROJECTOR_CONFIG)
    return written


def write_dataset_projector(
    log_dir: str,
    model,
    dataset: tf.data.Dataset,
    num_examples: int,
    class_names: Sequence[str] = (),
) -> dict[str, str]:
    """`write_projector` for every example of `dataset`: encoder features, labels, sprite.

    Args:
      log_dir: where the files go.
      model: as for `tf_simclr.eval.extract_features`.
      dataset: `{"image": float [B, S, S, 3] in [0, 1], "label": [B]}` batches
        (`tf_simclr.data.eval_dataset`).
      num_examples: about how many examples `dataset` holds (sizes the
        thumbnails, which are made batch by batch to bound memory).
      class_names: names of the label indices.
    """
    from tf_simclr.eval.features import images_and_labels, inference_fn

    forward = inference_fn(model, "embedding")
    side: int | None = None
    features, labels, small = [], [], []
    for batch in dataset:
        images, batch_labels = images_and_labels(batch)
        if side is None:
            side = sprite_side(num_examples, int(images.shape[1]))
        features.append(np.asarray(forward(images), np.float32))
        labels.append(np.asarray(batch_labels, np.int64))
        small.append(thumbnails(images, side))
    if not features:
        raise ArgumentError("dataset", "is empty")
    features_array = np.concatenate(features)
    # The sprite side must fit the count actually read.
    side = sprite_side(features_array.shape[0], side)
    images_array = np.concatenate(small)
    if images_array.shape[1] != side:
        images_array = thumbnails(images_array, side)
    return write_projector(
        log_dir, features_array, np.concatenate(labels), images_array, class_names
    )
