"""Checkpoints: saving, resuming, restoring a model, and initialising from another run.

Precedence, in one place (`restore_or_initialize`):
1. `model_dir` holds a checkpoint: resume from its latest (model, optimizer
   slots, step, hence the learning-rate position);
2. else `init_checkpoint` is given: load the encoder (and projection head, and
   the classifier from its online probe when it fits, see
   `initialise.probe_part`) from it, e.g. a pretraining run into a fine-tuning run;
3. else start from the fresh initialisation.

Checkpoints are `tf.train.Checkpoint(model=..., optimizer=...)` files named
`ckpt-<step>`; `tf.train.CheckpointManager` records a checkpoint in
`model_dir/checkpoint` only after all its files are written, so a crash never
leaves a half-written checkpoint that a restart would pick up.

`restore_model` restores a whole built model from a model_dir, a `ckpt-N`
prefix or a SavedModel exported by `tf_simclr.export` (whose variables are the
model's, in order). Errors are `ArgumentError`s naming the argument (`path`,
`resume_dir`, `init_checkpoint`), one line each, never a TensorFlow traceback.
A truncated or garbage checkpoint file is a `CorruptCheckpoint` naming the file; resuming
then falls back to the newest older checkpoint that reads (with a warning saying so).
"""

from __future__ import annotations

import contextlib
import os

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import locations
from tf_simclr.errors import ArgumentError

CHECKPOINT_NAME = "ckpt"


def manager_for(model, optimizer, model_dir: str, max_to_keep: int) -> tf.train.CheckpointManager:
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    return tf.train.CheckpointManager(
        checkpoint, model_dir, max_to_keep, checkpoint_name=CHECKPOINT_NAME
    )


def step_of(path: str) -> int:
    """The training step of a `ckpt-N` prefix or a SavedModel `<root>/<step>` directory."""
    tail = os.path.basename(os.path.normpath(path)).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class CorruptCheckpoint(ArgumentError):
    """A checkpoint whose files cannot be read (truncated data, garbage index)."""


# What TensorFlow says of a checkpoint file that is cut short or not a checkpoint.
_CORRUPT_SIGNS = ("not an sstable", "read less bytes", "data loss", "corrupt", "truncated")


def _corrupt(prefix: str, error: BaseException, argument: str, path: str) -> CorruptCheckpoint:
    """The one-line error naming the unreadable file of checkpoint `prefix`."""
    detail = " ".join(str(getattr(error, "message", error)).split())[:200]
    data = sorted(tf.io.gfile.glob(prefix + ".data-*"))
    index_broken = "sstable" in detail.lower() or not data
    name = prefix + ".index" if index_broken else ", ".join(data)
    return CorruptCheckpoint(
        argument, f"checkpoint file {name} is unreadable (truncated or corrupt: {detail})", path
    )


def _is_corrupt(error: BaseException) -> bool:
    if isinstance(error, (IndexError, tf.errors.DataLossError)):
        return True
    text = str(getattr(error, "message", error)).lower()
    return isinstance(error, tf.errors.OpError) and any(s in text for s in _CORRUPT_SIGNS)


def _restore(checkpoint: tf.train.Checkpoint, prefix: str, what: str, argument: str, path: str):
    """Restores `checkpoint` from `prefix`; every variable of it must be found and fit."""
    status = None
    try:
        status = checkpoint.restore(prefix)
        status.assert_existing_objects_matched()
    except (IndexError, tf.errors.OpError) as e:
        if _is_corrupt(e):
            raise _corrupt(prefix, e, argument, path) from None
        if status is not None:
            status.expect_partial()
        detail = " ".join(str(getattr(e, "message", e)).split())[:300]
        raise ArgumentError(argument, f"does not fit {what}: {detail}", path) from None
    except (AssertionError, ValueError) as e:
        if status is not None:
            status.expect_partial()  # no second wall of "could not be found" warnings
        detail = " ".join(str(getattr(e, "message", e)).split())[:300]
        raise ArgumentError(argument, f"does not fit {what}: {detail}", path) from None
    status.expect_partial()
    return status


def restore_model(model: keras.Model, path: str, argument: str = "path") -> int:
    """Restores every variable of the built `model` from `path`; returns the step.

    Args:
      model: built (called once), of the architecture that was saved.
      path: a model_dir (its latest checkpoint), a `ckpt-N` prefix, or a
        SavedModel directory exported by `tf_simclr.export.export_saved_model`.
      argument: the name blamed in errors.

    Raises:
      ArgumentError: nothing restorable at `path`, or a variable of `model`
        that `path` lacks or holds with another shape.
    """
    found = locations.find(path)
    if found.kind == locations.SAVED_MODEL:
        _restore_saved_model_variables(model, found.target, argument)
        return step_of(found.target)
    prefix = found.checkpoint(argument)
    legacy = _lacks_head(model, prefix)
    with _legacy_head_layout(model, legacy):
        _restore(
            tf.train.Checkpoint(model=model),
            prefix,
            "this model (another architecture? see the run's model.json and config.json)",
            argument,
            path,
        )
    if legacy:
        _restore_head_through_optimizer(model, prefix)
    logging.info("Restored %s", prefix)
    return step_of(prefix)


def _lacks_head(model: keras.Model, prefix: str) -> bool:
    """Whether `prefix` predates checkpoints that hold the projection head under the model.

    Until the head tracked its layers as attributes, `tf.train.Checkpoint(model=...)`
    reached none of its variables: its trainable ones were saved only through the
    optimizer's variable list, its BatchNorm statistics not at all.
    """
    head = getattr(model, "head", None)
    if head is None or not head.weights:
        return False
    try:
        keys = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (IndexError, tf.errors.OpError) as e:
        if _is_corrupt(e):
            raise _corrupt(prefix, e, "path", prefix) from None
        raise
    return not _saves_head(keys)


def _saves_head(keys) -> bool:
    """Whether checkpoint keys hold the projection head under the model (see `_lacks_head`)."""
    return any(key.startswith("model/head/") for key in keys)


@contextlib.contextmanager
def _legacy_head_layout(model: keras.Model, legacy: bool):
    """While restoring an old checkpoint: the head's object graph as it was then (no
    children), so that its variables, absent from the checkpoint, are not demanded."""
    layers = [*model.head.denses, *model.head.bns] if legacy else []
    for layer in layers:
        model.head._delete_tracking(layer.name)
    try:
        yield
    finally:
        for layer in layers:
            model.head._track_trackable(layer, name=layer.name, overwrite=True)


def _restore_head_through_optimizer(model: keras.Model, prefix: str) -> None:
    """Restores the trainable variables of an old checkpoint through its optimizer's list.

    The training optimizer was built on `model.trainable_variables`, in this order, so a
    stand-in optimizer built the same way maps them back (`_trainable_variables/<i>`).
    """
    stand_in = keras.optimizers.SGD()
    stand_in.build(model.trainable_variables)
    tf.train.Checkpoint(optimizer=stand_in).restore(prefix).expect_partial()
    logging.warning(
        "%s was written before checkpoints held the projection head: its trainable "
        "variables were restored through the optimizer's list; its BatchNorm moving "
        "statistics were never saved and keep their initial values",
        prefix,
    )


def _restore_saved_model_variables(model: keras.Model, path: str, argument: str) -> None:
    """Assigns the variables of an exported SavedModel to `model`, by position.

    `tf_simclr.export` lists the model's variables, in `model.variables` order, as
    the module's `variables` attribute: their keys are `variables/<i>/...`. The
    counts and every shape must agree, so another architecture fails here.
    """
    prefix = os.path.join(path, "variables", "variables")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ArgumentError(
            argument, f"cannot read the SavedModel's variables ({e})", path
        ) from None
    shapes = reader.get_variable_to_shape_map()
    key = "variables/{}/.ATTRIBUTES/VARIABLE_VALUE".format
    saved = sum(1 for name in shapes if name.startswith("variables/"))
    if saved != len(model.variables):
        raise ArgumentError(
            argument,
            f"holds {saved} model variables, this model has {len(model.variables)} (another "
            "architecture, or not a SavedModel exported by tf_simclr)",
            path,
        )
    for i, variable in enumerate(model.variables):
        shape = shapes.get(key(i))
        if shape is None or list(shape) != list(variable.shape):
            raise ArgumentError(
                argument,
                f"variable {i} ({variable.path}) has shape {list(variable.shape)} here and "
                f"{shape} in the SavedModel (another architecture?)",
                path,
            )
    for i, variable in enumerate(model.variables):
        variable.assign(reader.get_tensor(key(i)))
    logging.info("Restored %d variables from the SavedModel %s", saved, path)


def load_parts(parts: dict[str, keras.Model | keras.layers.Layer], path: str) -> None:
    """Loads the named sub-models (`encoder`, `head`) of a saved `model` from `path`.

    The checkpoint's `model` must have attributes of the same names (as
    `SimCLR` and `Classifier` do). Variables the parts do not have (optimizer
    slots, the online probe, a classifier) are ignored with a log line; parts
    missing from the checkpoint, or variables whose shapes differ, are an
    ArgumentError (`init_checkpoint`) naming the variable.
    """
    prefix = locations.find(path).checkpoint("init_checkpoint")
    keys = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    if "head" in parts and not _saves_head(keys):
        raise ArgumentError(
            "init_checkpoint",
            "was written before checkpoints held the projection head, so its head cannot "
            "be loaded on its own; fine-tune from the encoder output (ft_proj_selector=0), "
            "or export the run again with this version and start from that SavedModel",
            path,
        )
    checkpoint = tf.train.Checkpoint(model=tf.train.Checkpoint(**parts))
    what = f"the {' and '.join(parts)} of this model"
    _restore(checkpoint, prefix, what, "init_checkpoint", path)
    used = sum(len(p.weights) for p in parts.values())
    total = len(keys)
    logging.info(
        "Loaded %s from %s (%d variables); ignored %d other checkpoint entries "
        "(optimizer, online probe, counters)",
        " and ".join(parts),
        prefix,
        used,
        max(total - used, 0),
    )


# Where a saved model keeps its linear classifier: `SimCLR.probe` (the online probe of a
# pretraining run) or `Classifier.supervised_head` (a fine-tuned run).
CLASSIFIER_NAMES = ("probe", "supervised_head")


def saved_classifier(path: str, model: keras.Model | None = None) -> tuple[str, list] | None:
    """The linear classifier saved in `path`: `(attribute, [kernel shape, bias shape])`.

    `path` is a checkpoint prefix or a model_dir; when `model` is given (the
    saved model already rebuilt, e.g. from a SavedModel) it is read from there.
    None when the saved model has no classifier (pretrained without a probe).
    """
    if model is not None:
        for name in CLASSIFIER_NAMES:
            layer = getattr(model, name, None)
            if layer is not None:
                return name, [list(w.shape) for w in layer.weights]
        return None
    prefix = locations.find(path).checkpoint("init_checkpoint")
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    for name in CLASSIFIER_NAMES:
        # Keras 3's Dense tracks its kernel as `_kernel`.
        kernel = variable_key(prefix, ["model", name, "dense", "_kernel"]) or variable_key(
            prefix, ["model", name, "dense", "kernel"]
        )
        bias = variable_key(prefix, ["model", name, "dense", "bias"])
        if kernel is not None and bias is not None:
            return name, [list(shapes[kernel]), list(shapes[bias])]
    return None


def variable_key(prefix: str, path: list[str]) -> str | None:
    """The key under which checkpoint `prefix` stores the variable at object path `path`
    (e.g. `["model", "probe", "dense", "_kernel"]`), or None if there is none.

    A checkpoint stores each variable once, under the shortest of its object paths:
    a trainable variable usually under the optimizer's list
    (`optimizer/_trainable_variables/<i>`), not under the model, so the key is looked
    up in the checkpoint's object graph.
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    node = 0
    for name in path:
        children = {child.local_name: child.node_id for child in graph.nodes[node].children}
        if name not in children:
            return None
        node = children[name]
    attributes = graph.nodes[node].attributes
    return attributes[0].checkpoint_key if attributes else None


def copy_parts(parts: dict[str, keras.layers.Layer], source: keras.Model) -> None:
    """Copies the weights of `source.<name>` into each part (same architecture)."""
    for name, part in parts.items():
        origin = getattr(source, name, None)
        if origin is None:
            raise ArgumentError("init_checkpoint", f"the saved model has no {name}")
        if [w.shape for w in origin.weights] != [w.shape for w in part.weights]:
            raise ArgumentError("init_checkpoint", f"the saved {name} has another architecture")
        for target, value in zip(part.weights, origin.weights, strict=True):
            target.assign(value)
    logging.info("Loaded %s from a saved model", " and ".join(parts))


def _resume(manager: tf.train.CheckpointManager, prefix: str, resume_dir: str) -> bool:
    """Restores the manager's checkpoint from `prefix`; returns whether it is a legacy one."""
    model = manager.checkpoint.model
    try:
        legacy = _lacks_head(model, prefix)
    except CorruptCheckpoint as e:
        raise CorruptCheckpoint("resume_dir", e.message, resume_dir) from None
    # An old checkpoint: the head's trainable variables come back through the
    # optimizer's variable list, which is part of this checkpoint.
    with _legacy_head_layout(model, legacy):
        _restore(
            manager.checkpoint,
            prefix,
            "this model (was it written with other flags? see its model.json)",
            "resume_dir",
            resume_dir,
        )
    return legacy


def _resume_newest_readable(manager, latest: str, resume_dir: str) -> tuple[str, bool]:
    """Resumes from `latest`, else (unreadable) from the newest older checkpoint that reads,
    saying so; `(prefix, legacy)`. Every checkpoint unreadable: the latest's error."""
    state = tf.train.get_checkpoint_state(resume_dir)
    older = [p for p in (state.all_model_checkpoint_paths if state else []) if p != latest]
    older = [p if os.path.isabs(p) else os.path.join(resume_dir, p) for p in older]
    try:
        return latest, _resume(manager, latest, resume_dir)
    except CorruptCheckpoint as first:
        for prefix in sorted(older, key=step_of, reverse=True):
            try:
                legacy = _resume(manager, prefix, resume_dir)
            except CorruptCheckpoint:
                continue
            logging.warning(
                "%s; resumed from the previous complete checkpoint %s instead",
                first.message,
                prefix,
            )
            return prefix, legacy
        raise


def restore_or_initialize(
    manager: tf.train.CheckpointManager,
    init_checkpoint: str = "",
    init_parts: dict | None = None,
    resume_dir: str | None = None,
    init_model: keras.Model | None = None,
) -> str:
    """Applies the precedence above; returns what happened ("resumed", "initialized", "fresh").

    `resume_dir` is the model_dir to resume from when it is not the manager's
    directory (a non-chief worker saves to a temporary directory but resumes
    from the chief's checkpoints). `init_model`, when given, is the already
    restored model of `init_checkpoint` (e.g. rebuilt from a SavedModel) whose
    parts are copied instead of reading a checkpoint.
    """
    resume_dir = resume_dir or manager.directory
    latest = locations.latest_checkpoint(resume_dir)
    if latest:
        latest, legacy = _resume_newest_readable(manager, latest, resume_dir)
        if legacy:
            logging.warning(
                "%s was written before checkpoints held the projection head: its BatchNorm "
                "moving statistics start again from their initial values",
                latest,
            )
        logging.info("Resumed from %s", latest)
        return "resumed"
    if init_model is not None:
        copy_parts(init_parts or {}, init_model)
        return "initialized"
    if init_checkpoint:
        load_parts(init_parts or {}, init_checkpoint)
        return "initialized"
    return "fresh"
