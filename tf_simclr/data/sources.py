"""Data sources: un-augmented examples from TFDS or from a folder of images.

A source yields examples ``{"image": uint8 [H, W, 3], "label": int64 []}`` in an
order fixed per source: the files shuffled once (the default, ``shuffle_files=True``:
a training source must not be read in class order) or, with ``shuffle_files=False``,
as stored (an image folder: sorted by class then name). No repeat.
``label`` is ``-1`` when the data has no labels. Augmentation, shuffling,
batching and repetition are the pipeline's job (``tf_simclr.data.pipeline``),
so adding a dataset means adding a source and nothing else.

Every user-facing problem (unknown dataset, missing folder, bad split) raises
``DataError``, which names the argument to fix (``data_dir``, ``split``,
``dataset``); the CLI maps it to the flag that supplied it and exits with code 2
and a one-line message.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import threading
import urllib.parse

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from tf_simclr.choices import DOWNLOAD_CHOICES
from tf_simclr.errors import ArgumentError

IMAGE_FOLDER = "image_folder"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FOLDER_LAYOUT = "<data_dir>/<split>/<label>/<image> or <data_dir>/<split>/<image>"

# Keys of the `skipped` dict returned by `scan_image_folder`, in report order.
SKIP_REASONS = ("empty", "not_image", "bad_header", "truncated", "unreadable", "outside_class")
_SKIP_WORDS = {
    "empty": "empty",
    "not_image": "not an image",
    "bad_header": "bad header",
    "truncated": "truncated",
    "unreadable": "unreadable",
    "outside_class": "outside class folders",
}
_HEADER_BYTES = 16
# The end of a complete file lies in its last bytes: JPEG's EOI marker (entropy-coded data
# cannot hold it: a 0xFF byte there is followed by 0x00 or a restart marker), PNG's IEND
# chunk, GIF's trailer. Some writers append a few padding bytes after them.
_TAIL_BYTES = 1024

# `tfds_source(download=...)`: "auto" downloads a dataset that is not prepared only when
# TFDS's storage answers; without network TFDS retries for minutes before failing.
_PROBE_HOST = "storage.googleapis.com"  # TFDS's mirror of prepared datasets
_PROBE_SECONDS = 3.0
OFFLINE_HINT = (
    "prepare it on a machine with internet (or offline from an image-folder copy, "
    "README 'Offline'), then give its directory as --data_dir"
)


class DataError(ArgumentError):
    """A data problem the caller fixes by changing one argument.

    Attributes (see `tf_simclr.errors.ArgumentError`):
      argument: the argument of `make_source` and friends, e.g. ``"data_dir"``,
        ``"split"``, ``"dataset"``, ``"batch_size"``.
      value: the offending value.
      message: one line saying what is wrong and what is expected.
    """


@dataclasses.dataclass(frozen=True)
class Source:
    """Un-augmented examples and what is known about them.

    Attributes:
      dataset: yields ``{"image": uint8 [H, W, 3], "label": int64 []}``; not
        repeated, and shuffled at file level only (when built with ``shuffle_files``).
      num_examples: examples in the split. For image folders this counts files
        that passed the header check; a file that still fails to decode is
        dropped while iterating, so the dataset can yield slightly fewer.
      num_classes: number of classes, 0 when unlabeled (then every label is -1).
      class_names: one name per class index; empty when unlabeled.
      name: the dataset name (a TFDS name or ``"image_folder"``).
      split: the split as requested, e.g. ``"train[:10%]"``.
    """

    dataset: tf.data.Dataset
    num_examples: int
    num_classes: int
    class_names: tuple[str, ...]
    name: str
    split: str


def _one_line(err: BaseException, limit: int = 300) -> str:
    """The error message on one line, shortened to ``limit`` characters."""
    line = " ".join(str(err).split()) or type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ---------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------


def _to_rgb(image: tf.Tensor, channels: int | None) -> tf.Tensor:
    """Returns uint8 [H, W, 3] from an image with 1, 3 or 4 channels."""
    if channels == 3:
        return image
    if channels == 1:
        return tf.tile(image, [1, 1, 3])
    if channels == 4:
        return image[..., :3]  # drop alpha
    # Channel count only known at run time.
    return tf.cond(
        tf.equal(tf.shape(image)[-1], 1),
        lambda: tf.tile(image, [1, 1, 3]),
        lambda: image[..., :3],
    )


def tfds_source(
    name: str,
    split: str,
    data_dir: str | None = None,
    shuffle_files: bool = True,
    seed: int | None = None,
    download: str = "auto",
) -> Source:
    """Any TFDS image dataset with an ``image`` feature (and optionally ``label``).

    Args:
      name: TFDS name, optionally with config and version (``"cifar10"``,
        ``"imagenet2012:5.1.0"``).
      split: a TFDS split, slicing allowed (``"train[:10%]"``, ``"train+test"``).
      data_dir: TFDS data directory; None uses the TFDS default (~/tensorflow_datasets).
      shuffle_files: shuffle the order of the record files (TFDS stores each
        split in shards); cheap, and needed for large datasets whose shuffle
        buffer holds only a small fraction of the split. On by default (the
        training-correct choice); False reads the shards in their stored order.
        The order is fixed by ``seed`` (not reshuffled on each iteration), so every epoch and every
        restarted run reads the files in the same order; the pipeline's seeded
        per-epoch shuffle varies the example order.
      seed: file-shuffling seed (only used with ``shuffle_files``).
      download: what to do when the dataset is not prepared under ``data_dir``:
        ``"true"`` downloads and prepares it; ``"false"`` fails at once;
        ``"auto"`` downloads only when the network answers (`network_reachable`,
        a few seconds at most), else fails at once, without TFDS's minutes of
        retries. A failure is a ``DataError`` on ``data_dir`` (``"download"``
        when it forbade the download) saying how to prepare the data, and leaves
        no directory behind that was not there before.

    Single-channel images are tiled to RGB, RGBA images lose their alpha.
    """
    if download not in DOWNLOAD_CHOICES:
        raise DataError("download", f"must be one of {', '.join(DOWNLOAD_CHOICES)}", download)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            "dataset",
            f"not a TFDS dataset name (see https://www.tensorflow.org/datasets/catalog); "
            f"for a folder of images use dataset={IMAGE_FOLDER!r}",
            name,
        ) from None
    except (ValueError, AssertionError) as err:  # bad config/version/name syntax
        raise DataError("dataset", _one_line(err), name) from None

    features = builder.info.features
    if "image" not in features or not isinstance(features["image"], tfds.features.Image):
        raise DataError(
            "dataset",
            f"has no 'image' feature (features: {', '.join(features.keys())})",
            name,
        )

    if not builder.is_prepared():
        _prepare(builder, name, data_dir, download)

    # One file order per seed, the same every epoch: the pipeline reshuffles examples
    # per epoch from (seed, epoch), so a resumed run can rebuild any epoch's order.
    read_config = (
        tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=False)
        if shuffle_files
        else None
    )
    try:
        dataset = builder.as_dataset(
            split=split, shuffle_files=shuffle_files, read_config=read_config
        )
    except ValueError as err:  # unknown split or bad slicing syntax
        raise DataError("split", _one_line(err), split) from None

    num_examples = int(dataset.cardinality())
    if num_examples < 0:  # unknown cardinality: fall back to the split metadata
        num_examples = builder.info.splits[split].num_examples
    if num_examples == 0:
        raise DataError("split", f"split of {name} has no examples", split)

    label_feature = features["label"] if "label" in features else None
    if isinstance(label_feature, tfds.features.ClassLabel):
        num_classes = label_feature.num_classes
        class_names = tuple(label_feature.names)
    else:
        label_feature, num_classes, class_names = None, 0, ()

    channels = features["image"].shape[-1]

    def to_example(ex):
        label = (
            tf.cast(ex["label"], tf.int64)
            if label_feature is not None
            else tf.constant(-1, tf.int64)
        )
        return {"image": _to_rgb(ex["image"], channels), "label": label}

    dataset = dataset.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    logging.info("TFDS %s %s: %d examples, %d classes", name, split, num_examples, num_classes)
    return Source(
        dataset=dataset,
        num_examples=num_examples,
        num_classes=num_classes,
        class_names=class_names,
        name=name,
        split=split,
    )


def network_reachable(host: str = _PROBE_HOST, timeout: float = _PROBE_SECONDS) -> bool:
    """True if a TCP connection to ``host``:443 (or to the HTTPS proxy in the environment)
    opens within about ``timeout`` seconds, name resolution included."""
    proxy = os.environ.get("https_proxy") or os.environ.get("HTTPS_PROXY")
    port = 443
    if proxy:
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 80
    result: list[bool] = []

    def probe():  # getaddrinfo has no timeout of its own: run it where we can stop waiting
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _prepare(builder, name: str, data_dir: str | None, download: str) -> None:
    """Downloads and prepares ``builder`` as ``download`` allows (see `tfds_source`)."""
    root = os.fspath(builder.data_dir_root)
    shown = data_dir if data_dir else root
    if download == "false":
        raise DataError(
            "download",
            f"TFDS dataset {name!r} is not prepared under {shown} and downloads are off; "
            f"{OFFLINE_HINT}, or allow the download",
            download,
        )
    if download == "auto" and not network_reachable():
        raise DataError(
            "data_dir",
            f"TFDS dataset {name!r} is not prepared under this directory and there is no "
            f"network to download it ({_PROBE_HOST} unreachable); {OFFLINE_HINT} "
            "(--download=true tries anyway, e.g. with manual downloads)",
            shown,
        )
    logging.info("TFDS %s is not prepared under %s; downloading and preparing it", name, root)
    # What download_and_prepare may create; removed again on failure if it is new.
    created = [
        path
        for path in (root, os.path.join(root, builder.name), os.path.join(root, "downloads"))
        if not os.path.exists(path)
    ]
    try:
        builder.download_and_prepare()
    except ImportError:
        raise  # a broken installation, not a data_dir problem
    except Exception as err:  # network, manual-download and disk errors all look different
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        raise DataError(
            "data_dir",
            f"TFDS dataset {name!r} is not prepared under this directory and could not "
            f"be downloaded ({type(err).__name__}: {_one_line(err)}); {OFFLINE_HINT}",
            shown,
        ) from None


# ---------------------------------------------------------------------------
# Image folder
# ---------------------------------------------------------------------------


def _has_image_magic(header: bytes) -> bool:
    """True if ``header`` starts like a JPEG, PNG, BMP or GIF file."""
    return (
        header.startswith(b"\xff\xd8\xff")  # JPEG
        or header.startswith(b"\x89PNG\r\n\x1a\n")  # PNG
        or header.startswith(b"BM")  # BMP
        or header.startswith((b"GIF87a", b"GIF89a"))  # GIF
    )


def _sorted_entries(path: str) -> list[os.DirEntry]:
    """Non-hidden directory entries sorted by name (hidden = name starts with '.')."""
    with os.scandir(path) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _is_complete(header: bytes, tail: bytes, size: int) -> bool:
    """False if the file, of which ``header`` and ``tail`` are the first and last bytes,
    ends before its format's end marker (a truncated download or copy)."""
    if header.startswith(b"\xff\xd8\xff"):  # JPEG: the EOI marker
        return b"\xff\xd9" in tail
    if header.startswith(b"\x89PNG"):  # PNG: the IEND chunk
        return b"IEND" in tail
    if header.startswith(b"GIF"):  # GIF: the trailer byte
        return b"\x3b" in tail[-16:]
    if header.startswith(b"BM") and len(header) >= 6:  # BMP: the size it declares
        return int.from_bytes(header[2:6], "little") <= size
    return True


def _check_file(entry: os.DirEntry) -> str | None:
    """Returns None for a usable image file, else the skip reason."""
    if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
        return "not_image"
    try:
        size = entry.stat().st_size
        if size == 0:
            return "empty"
        with open(entry.path, "rb") as f:
            header = f.read(_HEADER_BYTES)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
    except OSError:
        return "unreadable"
    if not _has_image_magic(header):
        return "bad_header"
    return None if _is_complete(header, tail, size) else "truncated"


def scan_image_folder(
    split_dir: str,
) -> tuple[list[str], list[int], tuple[str, ...], dict[str, int]]:
    """Lists the usable images of one split folder, deterministically.

    Layouts: ``split_dir/<label>/<image>`` (labels are the sorted sub-folder
    names) or ``split_dir/<image>`` (unlabeled, label -1). The layout is
    labeled as soon as ``split_dir`` holds a sub-folder; loose files next to
    class folders are then skipped as ``outside_class``. Class folders are not
    searched recursively. Hidden entries (name starting with ``.``) are ignored.

    A file is used if its extension is jpg/jpeg/png/bmp/gif (any case), it is
    not empty, its first bytes are a JPEG/PNG/BMP/GIF signature and its last
    bytes hold the format's end marker (JPEG EOI, PNG IEND, GIF trailer; BMP:
    at least the size its header declares), so a truncated copy is skipped
    here instead of failing in the decoder. The content, not the extension,
    decides how it is decoded.

    Returns:
      paths: image paths, sorted by class then file name.
      labels: class index per path, or -1 per path when unlabeled.
      class_names: sorted class folder names; empty when unlabeled.
      skipped: count per reason in ``SKIP_REASONS`` (every key present).
    """
    entries = _sorted_entries(split_dir)
    class_dirs = [e for e in entries if e.is_dir()]
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    paths: list[str] = []
    labels: list[int] = []

    def add_files(files, label):
        for entry in files:
            reason = _check_file(entry)
            if reason is None:
                paths.append(entry.path)
                labels.append(label)
            else:
                skipped[reason] += 1

    if class_dirs:
        skipped["outside_class"] = sum(1 for e in entries if e.is_file())
        for label, class_dir in enumerate(class_dirs):
            add_files((e for e in _sorted_entries(class_dir.path) if e.is_file()), label)
        class_names = tuple(e.name for e in class_dirs)
    else:
        add_files((e for e in entries if e.is_file()), -1)
        class_names = ()
    return paths, labels, class_names, skipped


def scan_image_tree(split_dir: str) -> tuple[list[str], list[str], dict[str, int]]:
    """Every usable image under ``split_dir``, recursively, in sorted path order.

    For embedding a whole folder: nothing is left out for its place in the tree. The
    label of an image is the first folder of its path below ``split_dir`` (the class
    folder of the ``split/<label>/<image>`` layout; deeper folders stay in the path),
    or ``""`` for an image directly in ``split_dir``. Files are checked as
    `scan_image_folder` checks them; hidden entries are ignored.

    Returns:
      relative_paths: paths relative to ``split_dir``, with ``/`` separators.
      labels: the label of each path, ``""`` when it has none.
      skipped: count per reason in ``SKIP_REASONS`` (``outside_class`` stays 0).
    """
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    paths: list[str] = []
    labels: list[str] = []

    def walk(directory: str, prefix: str) -> None:
        for entry in _sorted_entries(directory):
            relative = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry.path, relative + "/")
            elif entry.is_file():
                reason = _check_file(entry)
                if reason is None:
                    paths.append(relative)
                    labels.append(relative.split("/", 1)[0] if "/" in relative else "")
                else:
                    skipped[reason] += 1

    walk(split_dir, "")
    return paths, labels, skipped


def _decode(path: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return {"image": image, "label": label}


def image_folder_source(
    root: str,
    split: str,
    shuffle_files: bool = True,
    seed: int | None = None,
) -> Source:
    """Images read from ``root/split/<label>/<image>`` or ``root/split/<image>``.

    Args:
      root: the folder (``--data_dir`` on the command line).
      split: a sub-folder of ``root`` (no TFDS-style slicing).
      shuffle_files: shuffle the file list (full shuffle of the paths, the same
        order on every iteration for a given ``seed``, so a restarted run can
        rebuild it; the pipeline's per-epoch shuffle varies the example order).
        On by default: the scan order is sorted by class, which a bounded
        shuffle buffer downstream cannot undo (every early batch would hold one
        class). ``False`` keeps the scan order (`scan_image_folder`), e.g. to
        line predictions up with the files.
      seed: seed of the file-list shuffle; None: TensorFlow's global seed
        decides (`keras.utils.set_random_seed`), else a random order.

    Decoding happens inside ``tf.data`` (any of JPEG/PNG/BMP/GIF, grayscale or
    RGBA, always giving uint8 RGB). Empty, non-image, truncated and unreadable
    files are skipped when the folder is scanned and counted in the log
    ("skipped 3 (1 empty, 1 bad header, 1 truncated)"). A file that passes
    those checks but still fails to decode (corrupt inside) is dropped by
    ``ignore_errors``: tf.data logs a warning with the decoder message (not the
    path) and the epoch goes on.
    """
    if not root or not os.path.isdir(root):
        raise DataError(
            "data_dir",
            f"directory does not exist; an image folder is laid out as {FOLDER_LAYOUT}",
            root,
        )
    if not any(not name.startswith(".") for name in os.listdir(root)):
        raise DataError(
            "data_dir",
            f"directory is empty; an image folder is laid out as {FOLDER_LAYOUT}",
            root,
        )
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        hint = " (TFDS-style slicing is not supported for image folders)" if "[" in split else ""
        raise DataError(
            "split",
            f"no folder {split_dir!r}{hint}; an image folder is laid out as {FOLDER_LAYOUT}",
            split,
        )

    paths, labels, class_names, skipped = scan_image_folder(split_dir)
    total_skipped = sum(skipped.values())
    details = ", ".join(f"{n} {_SKIP_WORDS[k]}" for k, n in skipped.items() if n)
    logging.info(
        "image folder %s: %d images, %d classes, skipped %d%s",
        split_dir,
        len(paths),
        len(class_names),
        total_skipped,
        f" ({details})" if details else "",
    )
    if not paths:
        raise DataError(
            "split",
            f"no usable images in {split_dir!r} (skipped {total_skipped}"
            f"{': ' + details if details else ''}); expected {FOLDER_LAYOUT} "
            f"with {'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} files",
            split,
        )

    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(labels, tf.int64))
    )
    if shuffle_files:
        # Paths are tiny, so a full-size buffer costs little memory.
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=False)
    dataset = dataset.map(_decode, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.ignore_errors(log_warning=True)
    return Source(
        dataset=dataset,
        num_examples=len(paths),
        num_classes=len(class_names),
        class_names=class_names,
        name=IMAGE_FOLDER,
        split=split,
    )


def make_source(
    dataset: str,
    split: str,
    data_dir: str | None = None,
    shuffle_files: bool = True,
    seed: int | None = None,
    download: str = "auto",
) -> Source:
    """Builds the source named by ``dataset``: ``"image_folder"`` or a TFDS name.

    ``shuffle_files`` (default True) shuffles the file order once, by ``seed``: what a
    training source needs (an image folder is scanned in class order); pass False for
    the stored order. ``download`` applies to TFDS datasets (see `tfds_source`)."""
    if not dataset:
        raise DataError(
            "dataset",
            f"is required: a TFDS name such as cifar10, or {IMAGE_FOLDER!r} for a folder of images",
        )
    if dataset == IMAGE_FOLDER:
        if not data_dir:
            raise DataError(
                "data_dir",
                f"required for an image folder, laid out as {FOLDER_LAYOUT}",
            )
        return image_folder_source(data_dir, split, shuffle_files=shuffle_files, seed=seed)
    return tfds_source(
        dataset,
        split,
        data_dir=data_dir or None,
        shuffle_files=shuffle_files,
        seed=seed,
        download=download,
    )
