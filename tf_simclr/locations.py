"""What is at a path: the one place that tells the kinds of saved model apart.

A location given to tf_simclr (`--model_dir`, `--checkpoint`, `--teacher`, the path of
`load_official`, `checkpoints.restore_model`, ...) is one of

- `MISSING`: nothing there (a new `--model_dir`);
- `DIRECTORY`: a directory without checkpoints or SavedModel (an empty `--model_dir`);
- `RUN`: a model_dir with checkpoints (ours, or a reference training run's);
- `CHECKPOINT`: a `ckpt-N` prefix (its `.index` exists);
- `SAVED_MODEL`: a SavedModel directory (holds `saved_model.pb`), or a published model's
  directory holding one in `saved_model/`.

`find` decides which, once; everything else reads the answer (`Found`): the SavedModel or
checkpoint prefix to read, the variables bundle, and whether those variables are a
published reference model's (`reference`: the reference's variable names) rather than
ours. Whether a location is *ours* is a matter of its description (`tf_simclr.run_dir`),
and what a command-line flag's location means for a run is `run_dir.locate`, built on this.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import tensorflow as tf

from tf_simclr.errors import ArgumentError

MISSING = "missing"
DIRECTORY = "directory"
RUN = "run"
CHECKPOINT = "checkpoint"
SAVED_MODEL = "saved_model"

# A published model's directory keeps its SavedModel here.
_PUBLISHED_SUBDIR = "saved_model"
# Variables under this path are the reference model's ResNet (ours are saved under others).
_REFERENCE_RESNET = "model/resnet_model/"


def _is_saved_model(path: str) -> bool:
    return tf.io.gfile.exists(os.path.join(path, "saved_model.pb"))


@dataclasses.dataclass(frozen=True)
class Found:
    """What `find` found at `path` (see the module docstring for the kinds)."""

    path: str  # as given
    kind: str
    # SAVED_MODEL: the SavedModel directory; RUN: its latest checkpoint prefix;
    # CHECKPOINT: the prefix; else "".
    target: str

    @property
    def is_checkpoint(self) -> bool:
        """A checkpoint to read: a `ckpt-N` prefix, or a run's latest."""
        return self.kind in (RUN, CHECKPOINT)

    @property
    def variables(self) -> str:
        """The prefix of the variables bundle (`.../variables/variables`, or `ckpt-N`);
        "" when there is none."""
        if self.kind == SAVED_MODEL:
            return os.path.join(self.target, "variables", "variables")
        return self.target

    @functools.cached_property
    def reference(self) -> bool:
        """Whether the variables are a published reference model's (google-research/simclr
        `tf2/`): the bundle's index lists its ResNet. Reads only the index; False when
        there are no variables or they cannot be read."""
        if not self.variables:
            return False
        try:
            keys = tf.train.load_checkpoint(self.variables).get_variable_to_shape_map()
        except (tf.errors.OpError, ValueError):
            return False
        return any(key.startswith(_REFERENCE_RESNET) for key in keys)

    def checkpoint(self, argument: str = "path") -> str:
        """The checkpoint prefix to read (a prefix as given, a run's latest); an
        ArgumentError naming `argument` for anything else."""
        if self.is_checkpoint:
            return self.target
        if self.kind == DIRECTORY:
            raise ArgumentError(argument, "directory holds no checkpoint (train first)", self.path)
        if self.kind == SAVED_MODEL:
            raise ArgumentError(argument, "is a SavedModel, not a checkpoint", self.path)
        raise ArgumentError(
            argument,
            "no such checkpoint (give a ckpt-N prefix, a model_dir or an exported SavedModel)",
            self.path,
        )


def find(path: str) -> Found:
    """What is at `path` (a string or path-like); reads only directory listings and the
    `checkpoint` state file, never variables."""
    path = os.fspath(path) if path else ""
    if not path:
        return Found(path, MISSING, "")
    if _is_saved_model(path):
        return Found(path, SAVED_MODEL, path)
    if tf.io.gfile.isdir(path):
        published = os.path.join(path, _PUBLISHED_SUBDIR)
        if _is_saved_model(published):
            return Found(path, SAVED_MODEL, published)
        latest = tf.train.latest_checkpoint(path)
        return Found(path, RUN, latest) if latest else Found(path, DIRECTORY, "")
    if tf.io.gfile.exists(path + ".index"):
        return Found(path, CHECKPOINT, path)
    return Found(path, MISSING, "")


def latest_checkpoint(directory: str) -> str:
    """The newest checkpoint prefix of a model_dir as it is now ("" when it has none):
    what an evaluator polling a trainer's directory reads."""
    found = find(directory)
    return found.target if found.kind == RUN else ""


def complete(prefix: str) -> bool:
    """Whether all files of checkpoint `prefix` are there (its index and data shards)."""
    return tf.io.gfile.exists(prefix + ".index") and bool(tf.io.gfile.glob(prefix + ".data-*"))
