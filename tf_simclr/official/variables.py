"""The variables of a published reference model (google-research/simclr `tf2/`), read.

A reference SavedModel (`<model>/saved_model/`) or training checkpoint (`model_dir/ckpt-N`)
holds the variables of the reference `Model` under the attribute paths of its Keras layers
(`resnet_model/block_groups/0/layers/2/conv_relu_dropblock_layers/3/conv2d_0/kernel`; the
SavedModel also lists them positionally). `read_source` gives them as `ReferenceVariables`:
path below `Model` -> bundle key, with shapes and a reader. What kind of location a path is
was decided by `tf_simclr.locations`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from tf_simclr import locations
from tf_simclr.errors import ArgumentError

# Children of a SavedModel's objects that only alias variables reachable elsewhere.
_ALIASES = frozenset(
    {
        "variables",
        "trainable_variables",
        "non_trainable_variables",
        "trainable_variables_list",
        "keras_api",
        "regularization_losses",
        "_self_saveable_object_factories",
    }
)
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass
class ReferenceVariables:
    """The variables of a reference SavedModel or checkpoint: path below `Model` -> key."""

    location: str  # what was given
    kind: str  # "saved_model" or "checkpoint"
    prefix: str  # the variables bundle (`.../variables/variables` or `ckpt-N`)
    keys: dict[str, str]  # reference attribute path -> bundle key, in bundle order
    shapes: dict[str, tuple[int, ...]]
    reader: tf.train.CheckpointReader
    ignored: list[str]  # bundle entries outside the model (optimizer, step counters)

    def value(self, path: str) -> np.ndarray:
        return self.reader.get_tensor(self.keys[path])


def _locate(path: str) -> tuple[str, str, str]:
    """`(path, kind, variables prefix)` of a SavedModel directory (or the published model's
    directory holding `saved_model/`), a model_dir or a `ckpt-N` prefix."""
    found = locations.find(path)
    if found.kind == locations.SAVED_MODEL:
        return found.target, "saved_model", found.variables
    return found.path, "checkpoint", found.checkpoint("path")


def read_source(path: str) -> ReferenceVariables:
    """The reference variables of a SavedModel directory, a model_dir or a `ckpt-N` prefix."""
    path, kind, prefix = _locate(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
        if not reader.has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"):
            first = sorted(reader.get_variable_to_shape_map())[:1]
            raise ArgumentError(
                "path",
                f"is a name-based (TF1) checkpoint (first variable {first}); only the "
                "reference's TF2 SavedModels and checkpoints can be imported (the TF1 "
                "`model.ckpt-*` files are published as TF2 SavedModels too)",
                path,
            )
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    except ArgumentError:
        raise
    except (tf.errors.OpError, ValueError) as e:
        detail = " ".join(str(getattr(e, "message", e)).split())[:200]
        raise ArgumentError("path", f"cannot read its variables ({detail})", path) from None
    shapes = reader.get_variable_to_shape_map()
    paths = _variable_paths(graph)
    keys, ignored = {}, []
    for key in sorted(shapes):
        if key == "_CHECKPOINTABLE_OBJECT_GRAPH":
            continue
        where = paths.get(key, key[: -len(_VALUE)] if key.endswith(_VALUE) else key)
        if where.startswith("model/"):
            keys[where[len("model/") :]] = key
        else:
            ignored.append(key)
    if not keys:
        raise ArgumentError(
            "path",
            "holds no variables of a reference SimCLR model (nothing under `model/`; is it "
            "a google-research/simclr tf2 SavedModel or checkpoint?)",
            path,
        )
    return ReferenceVariables(
        location=path,
        kind=kind,
        prefix=prefix,
        keys=keys,
        shapes={p: tuple(shapes[k]) for p, k in keys.items()},
        reader=reader,
        ignored=ignored,
    )


def _variable_paths(graph) -> dict[str, str]:
    """Bundle key -> attribute path of each variable of a checkpoint's object graph.

    A SavedModel's objects also list their variables under aliases (`variables/<i>`,
    `trainable_variables_list/<i>`, ...); the structural path is the one without them.
    """
    first: dict[int, str] = {}
    for use_aliases in (False, True):
        queue, seen = [(0, "")], {0}
        while queue:
            node_id, where = queue.pop(0)
            first.setdefault(node_id, where)
            for child in graph.nodes[node_id].children:
                if child.node_id in seen or (not use_aliases and child.local_name in _ALIASES):
                    continue
                seen.add(child.node_id)
                queue.append((child.node_id, f"{where}/{child.local_name}".lstrip("/")))
    paths = {}
    for node_id, where in first.items():
        for attribute in graph.nodes[node_id].attributes:
            if attribute.name == "VARIABLE_VALUE":
                paths[attribute.checkpoint_key] = where
    return paths
