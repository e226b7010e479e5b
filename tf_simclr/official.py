"""Import the published SimCLR v1/v2 models (google-research/simclr `tf2/`) as our Keras model.

    from tf_simclr import load_official
    model = load_official("r50_1x_sk1/saved_model")  # or a reference model_dir / ckpt-N prefix
    outputs = model(images)  # {"embedding", "projection", "logits"}, images in [0, 1]

The reference's TF2 code writes two kinds of files, and the published models are the first:

- a SavedModel (`<model>/saved_model/`): `m(images, trainable=False)` returns a dict of
  `final_avg_pool`, `proj_head_output`, `logits_sup`, the ResNet's intermediate
  tensors, ...;
- a training checkpoint (`model_dir/ckpt-N`, `tf.train.Checkpoint(model=..., ...)`).

Both hold the variables of the reference `Model` under the attribute paths of its Keras
layers (`resnet_model/block_groups/0/layers/2/conv_relu_dropblock_layers/3/conv2d_0/kernel`;
the SavedModel also lists them positionally). Those paths, and their shapes, determine the
architecture: depth (blocks per group and block type), width (stem channels), selective
kernels (ResNet-D stem and shortcuts, the SK gate's width gives the ratio), squeeze-excitation,
CIFAR or ImageNet stem, the projection head (its layers and output width; none for SimCLRv1)
and the supervised head (`head_supervised`, its classes). `import_official` builds our
`SimCLR` of that architecture and copies every variable in; `variable_map` is the one-to-one
correspondence (reference path -> our variable), and nothing is assigned until every
variable of the source is mapped with its shape, so a source that does not fit is an
`ArgumentError` naming the first variable that failed, never a partial load.

Our outputs correspond to the reference's: `embedding` = `final_avg_pool`, `projection` =
`proj_head_output`, `logits` = `logits_sup`; `reference_outputs` gives all of them under the
reference's names, the intermediate ones (`initial_conv`, `initial_max_pool`,
`block_group1..4`) included. A SavedModel import runs both models on a random batch and fails
when an output differs by more than `tolerance` (relative to the reference output's largest
magnitude).

Which layer of the projection head the supervised head reads (the reference's
`ft_proj_selector`, 0 = the encoder output) is not stored. The shapes often leave several
possibilities (a 1x model's hidden layers are as wide as the encoder output); a SavedModel
import then takes the one whose logits match the reference's, a checkpoint import takes 0
(the reference's default) unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import trackable_object_graph_pb2

from tf_simclr import locations
from tf_simclr.choices import BLOCKS_PER_GROUP
from tf_simclr.errors import ArgumentError
from tf_simclr.models import ProjectionHead, ResNet, SimCLR, endpoints
from tf_simclr.models.resnet import scaled_channels

# SimCLRv2's selective-kernel ratio; any ratio <= it gives the same 1x..3x networks.
SK_RATIO = 0.0625
DEFAULT_TOLERANCE = 1e-4
# The reference model's parts, as attribute paths below its `Model`.
_RESNET = "resnet_model"
_HEAD = "_projection_head/linear_layers"
_SUPERVISED = "supervised_head/linear_layer/dense"
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
_GROUP_FILTERS = (64, 128, 256, 512)
# Outputs of the reference SavedModel that the ResNet computes, in network order.
RESNET_OUTPUTS = endpoints.REFERENCE_OUTPUTS[
    : endpoints.REFERENCE_OUTPUTS.index("final_avg_pool") + 1
]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What the variables of a reference model say about it (see the module docstring)."""

    depth: int
    width_multiplier: float
    sk_ratio: float
    se_ratio: float
    cifar_stem: bool
    proj_head_mode: str  # "none" (SimCLRv1, or a model without head) or "nonlinear"
    num_proj_layers: int  # 0 without head
    proj_out_dim: int  # 0 without head
    num_classes: int  # 0 without supervised head
    ft_proj_selector: int
    # Other values of ft_proj_selector that the shapes allow (resolved by running a SavedModel).
    selector_candidates: tuple[int, ...] = ()

    @property
    def feature_dim(self) -> int:
        expansion = 4 if self.depth >= 50 else 1
        return expansion * scaled_channels(512, self.width_multiplier)

    def name(self) -> str:
        """E.g. `r50_1x_sk1` (the published models' names), `r18_cifar_1x`."""
        width = f"{self.width_multiplier:g}x"
        if self.cifar_stem:
            return f"r{self.depth}_cifar_{width}" + ("_sk1" if self.sk_ratio else "")
        return f"r{self.depth}_{width}_sk{int(self.sk_ratio > 0)}"


@dataclasses.dataclass
class Source:
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


@dataclasses.dataclass
class ImportResult:
    model: SimCLR
    architecture: Architecture
    source: Source
    # Largest relative difference per compared output (SavedModel sources only).
    differences: dict[str, float]
    seconds: float

    @property
    def max_relative_difference(self) -> float | None:
        return max(self.differences.values()) if self.differences else None


# --- Reading a source ----------------------------------------------------------------


def _locate(path: str) -> tuple[str, str, str]:
    """`(path, kind, variables prefix)` of a SavedModel directory (or the published model's
    directory holding `saved_model/`), a model_dir or a `ckpt-N` prefix."""
    found = locations.find(path)
    if found.kind == locations.SAVED_MODEL:
        return found.target, "saved_model", found.variables
    return found.path, "checkpoint", found.checkpoint("path")


def read_source(path: str) -> Source:
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
    return Source(
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


# --- Architecture ----------------------------------------------------------------------


def _fail(path: str, message: str):
    raise ArgumentError("path", f"variable {path}: {message}")


def infer_architecture(source: Source, ft_proj_selector: int | None = None) -> Architecture:
    """The architecture of the reference model whose variables `source` holds."""
    shapes = source.shapes
    first = next(iter(shapes))
    stem = f"{_RESNET}/initial_conv_relu_max_pool"
    convs = sorted(
        int(m.group(1)) for p in shapes if (m := re.fullmatch(rf"{stem}/(\d+)/conv2d/kernel", p))
    )
    if not convs:
        _fail(first, "no reference ResNet stem (resnet_model/initial_conv_relu_max_pool)")
    stem_kernel = f"{stem}/{convs[0]}/conv2d/kernel"
    size = shapes[stem_kernel][0]
    if convs == [0] and size == 3:
        cifar_stem, sk_stem, stem_out = True, False, shapes[stem_kernel][-1]
    elif convs == [0] and size == 7:
        cifar_stem, sk_stem, stem_out = False, False, shapes[stem_kernel][-1]
    elif convs == [0, 2, 4] and size == 3:
        cifar_stem, sk_stem, stem_out = False, True, shapes[f"{stem}/4/conv2d/kernel"][-1]
    else:
        _fail(stem_kernel, f"shape {list(shapes[stem_kernel])} fits no reference stem")
    width = stem_out / 64

    # Blocks per group and their kind.
    blocks: list[int] = []
    kinds = set()
    for group in range(4):
        found = set()
        for p in shapes:
            m = re.match(rf"{_RESNET}/block_groups/{group}/layers/(\d+)/(\w+?)/", p)
            if m:
                found.add(int(m.group(1)))
                if m.group(2) in ("conv_relu_dropblock_layers", "conv2d_bn_layers"):
                    kinds.add(m.group(2))
        blocks.append(len(found))
        if found != set(range(len(found))):
            _fail(f"{_RESNET}/block_groups/{group}", f"blocks {sorted(found)} are not 0..n-1")
    bottleneck = kinds == {"conv_relu_dropblock_layers"}
    depths = [
        d
        for d, layout in BLOCKS_PER_GROUP.items()
        if layout == tuple(blocks) and (d >= 50) == bottleneck
    ]
    if len(kinds) != 1 or not depths:
        _fail(f"{_RESNET}/block_groups", f"blocks per group {blocks} fit no reference ResNet")
    depth = depths[0]

    # Selective kernels: the ResNet-D stem, or (CIFAR stem) average-pool shortcuts, or a gate.
    shortcut = "projection_layers" if bottleneck else "shortcut_layers"
    pooled = f"{_RESNET}/block_groups/1/layers/0/{shortcut}/0/conv2d/kernel" not in shapes
    sk_ratio = 0.0
    if sk_stem or pooled:
        sk_ratio = SK_RATIO
        if bottleneck:
            sk_ratio = _ratio(shapes, width, "conv2d_0/kernel", lambda f, r: max(int(f * r), 32))
    se_ratio = 0.0
    if any(p.endswith("se_reduce/kernel") for p in shapes):
        se_ratio = _ratio(shapes, width, "se_reduce/kernel", lambda f, r: max(1, int(f * r)))

    # Projection head: layers `linear_layers/<j>`; the last one's width is the output.
    layers = sorted(
        int(m.group(1)) for p in shapes if (m := re.fullmatch(rf"{_HEAD}/(\d+)/dense/kernel", p))
    )
    if layers != list(range(len(layers))):
        _fail(f"{_HEAD}", f"head layers {layers} are not 0..n-1")
    out_dim = shapes[f"{_HEAD}/{layers[-1]}/dense/kernel"][-1] if layers else 0
    classes = shapes.get(f"{_SUPERVISED}/kernel")
    num_classes = classes[-1] if classes else 0
    architecture = Architecture(
        depth=depth,
        width_multiplier=float(width) if width != int(width) else int(width),
        sk_ratio=sk_ratio,
        se_ratio=se_ratio,
        cifar_stem=cifar_stem,
        proj_head_mode="nonlinear" if layers else "none",
        num_proj_layers=len(layers),
        proj_out_dim=out_dim,
        num_classes=num_classes,
        ft_proj_selector=0,
    )
    # What the supervised head reads: hiddens[k], k = 0 (encoder) .. number of head layers.
    widths = [architecture.feature_dim] * len(layers) + ([out_dim] if layers else [])
    widths = widths or [architecture.feature_dim]
    candidates = tuple(k for k, w in enumerate(widths) if classes and w == classes[0])
    if ft_proj_selector is not None:
        if classes and ft_proj_selector not in candidates:
            _fail(
                f"{_SUPERVISED}/kernel",
                f"shape {list(classes)} cannot read head layer {ft_proj_selector} "
                f"(ft_proj_selector); possible: {list(candidates)}",
            )
        chosen = ft_proj_selector
    elif classes and not candidates:
        _fail(f"{_SUPERVISED}/kernel", f"shape {list(classes)} fits no layer's output width")
    else:
        chosen = candidates[0] if candidates else 0
    return dataclasses.replace(
        architecture,
        ft_proj_selector=chosen,
        selector_candidates=candidates if ft_proj_selector is None else (chosen,),
    )


def _ratio(shapes, width, suffix: str, units) -> float:
    """The smallest ratio r (SimCLRv2's SK ratio first) with `units(filters, r)` equal to the
    output width of every `suffix` variable; `filters` is its block's base width."""
    found = []
    for p, shape in shapes.items():
        m = re.match(rf"{_RESNET}/block_groups/(\d)/layers/\d+/.*{re.escape(suffix)}$", p)
        if m:
            found.append((p, scaled_channels(_GROUP_FILTERS[int(m.group(1))], width), shape[-1]))
    candidates = [SK_RATIO] + sorted(
        {u / f for _, f, u in found} | {(u + 0.5) / f for _, f, u in found}
    )
    for r in candidates:
        if all(units(f, r) == u for _, f, u in found):
            return r
    p, f, u = found[0]
    _fail(p, f"{u} output channels fit no ratio for a block of {f} filters")


# --- Our model and the variable correspondence ---------------------------------------


def build_model(architecture: Architecture, image_size: int | None = None) -> SimCLR:
    """Our `SimCLR` of `architecture` (named as `tf_simclr.builders` names it), built."""
    encoder = ResNet(
        depth=architecture.depth,
        width_multiplier=architecture.width_multiplier,
        cifar_stem=architecture.cifar_stem,
        sk_ratio=architecture.sk_ratio,
        se_ratio=architecture.se_ratio,
        name="encoder",
    )
    head = ProjectionHead(
        mode=architecture.proj_head_mode,
        out_dim=architecture.proj_out_dim or 128,
        num_layers=max(architecture.num_proj_layers, 1),
        dtype="float32",
        name="projection_head",
    )
    model = SimCLR(
        encoder,
        head,
        num_classes=architecture.num_classes,
        ft_proj_selector=architecture.ft_proj_selector,
        name="simclr",
    )
    size = image_size or (32 if architecture.cifar_stem else 64)
    model(tf.zeros([1, size, size, 3]))
    return model


def _stem_prefixes(encoder: ResNet) -> dict[str, str]:
    stem = f"{_RESNET}/initial_conv_relu_max_pool"
    if encoder.cifar_stem or not encoder.sk_ratio:
        return {"stem_conv": f"{stem}/0/conv2d", "stem_bn": f"{stem}/2/bn"}
    return {
        "stem_conv1": f"{stem}/0/conv2d",
        "stem_bn1": f"{stem}/1/bn",
        "stem_conv2": f"{stem}/2/conv2d",
        "stem_bn2": f"{stem}/3/bn",
        "stem_conv3": f"{stem}/4/conv2d",
        "stem_bn3": f"{stem}/6/bn",
    }


def _block_prefixes(encoder: ResNet, group: int, block: int) -> dict[str, str]:
    """Our layer role (`conv1`, `sk_gate_bn`, ...) -> the reference layer's path, one block."""
    base = f"{_RESNET}/block_groups/{group - 1}/layers/{block}"
    bottleneck = encoder.depth >= 50
    sk = encoder.sk_ratio > 0
    roles = {}
    if block == 0:
        shortcut = f"{base}/{'projection_layers' if bottleneck else 'shortcut_layers'}"
        # ResNet-D: [fixed padding (strided)], average pool, conv, BN; else conv, BN.
        conv = (2 if group > 1 else 1) if sk else 0
        roles["shortcut_conv"] = f"{shortcut}/{conv}/conv2d"
        roles["shortcut_bn"] = f"{shortcut}/{conv + 1}/bn"
    if not bottleneck:
        layers = f"{base}/conv2d_bn_layers"
        roles.update(
            conv1=f"{layers}/0/conv2d",
            bn1=f"{layers}/1/bn",
            conv2=f"{layers}/2/conv2d",
            bn2=f"{layers}/3/bn",
            se_reduce=f"{base}/se_layer/se_reduce",
            se_expand=f"{base}/se_layer/se_expand",
        )
        return roles
    # conv, BN, DropBlock, (SK conv | conv, BN), DropBlock, conv, BN, DropBlock, [SE].
    layers = f"{base}/conv_relu_dropblock_layers"
    roles.update(conv1=f"{layers}/0/conv2d", bn1=f"{layers}/1/bn")
    if sk:
        roles.update(
            sk_conv=f"{layers}/3/conv2d_fixed_padding/conv2d",
            sk_bn=f"{layers}/3/batch_norm_relu/bn",
            sk_gate_conv1=f"{layers}/3/conv2d_0",
            sk_gate_bn=f"{layers}/3/batch_norm_relu_1/bn",
            sk_gate_conv2=f"{layers}/3/conv2d_1",
        )
        last = 5
    else:
        roles.update(conv2=f"{layers}/3/conv2d", bn2=f"{layers}/4/bn")
        last = 6
    roles.update(
        conv3=f"{layers}/{last}/conv2d",
        bn3=f"{layers}/{last + 1}/bn",
        se_reduce=f"{layers}/{last + 3}/se_reduce",
        se_expand=f"{layers}/{last + 3}/se_expand",
    )
    return roles


def encoder_variable_map(encoder: ResNet) -> dict[str, keras.Variable]:
    """Reference attribute path -> our variable, for every variable of a `ResNet`."""
    layers = _stem_prefixes(encoder)
    for group, blocks in enumerate(BLOCKS_PER_GROUP[encoder.depth], start=1):
        for block in range(blocks):
            prefix = f"block_group{group}_block{block}_"
            roles = _block_prefixes(encoder, group, block)
            layers.update({prefix + role: path for role, path in roles.items()})
    mapping = {}
    for layer in encoder.layers:
        if not layer.weights:
            continue
        if layer.name not in layers:
            raise ValueError(f"no reference counterpart for layer {layer.name}")
        for variable in layer.weights:
            mapping[f"{layers[layer.name]}/{variable.name}"] = variable
    return mapping


def variable_map(model: SimCLR) -> dict[str, keras.Variable]:
    """Reference attribute path -> our variable, for every variable of `model` (built)."""
    mapping = encoder_variable_map(model.encoder)
    for j, (dense, bn) in enumerate(zip(model.head.denses, model.head.bns, strict=True)):
        mapping[f"{_HEAD}/{j}/dense/kernel"] = dense.kernel
        for variable in bn.weights:
            mapping[f"{_HEAD}/{j}/bn_relu/bn/{variable.name}"] = variable
    if model.probe is not None:
        mapping[f"{_SUPERVISED}/kernel"] = model.probe.dense.kernel
        mapping[f"{_SUPERVISED}/bias"] = model.probe.dense.bias
    if len(mapping) != len(model.weights):
        raise ValueError(f"{len(model.weights) - len(mapping)} variables of the model unmapped")
    return mapping


def check_fits(source: Source, mapping: dict[str, keras.Variable]) -> None:
    """Every source variable has one of ours of the same shape, and vice versa; else an
    ArgumentError naming the first that does not (in the source's order)."""
    for path, shape in source.shapes.items():
        variable = mapping.get(path)
        if variable is None:
            _fail(path, f"shape {list(shape)} has no counterpart in the inferred architecture")
        if tuple(variable.shape) != shape:
            _fail(
                path,
                f"shape {list(shape)} does not fit the inferred architecture, whose "
                f"{variable.path} has shape {list(variable.shape)}",
            )
    missing = [path for path in mapping if path not in source.shapes]
    if missing:
        _fail(missing[0], "is missing from the source (the inferred architecture has it)")


# --- Outputs under the reference's names ---------------------------------------------


def reference_outputs(model: SimCLR, images, training: bool = False) -> dict[str, tf.Tensor]:
    """What the reference SavedModel returns for `images`, computed by our `model`.

    `initial_conv`, `initial_max_pool`, `block_group1..4`, `final_avg_pool`; with a head
    `proj_head_input` and `proj_head_output`; with a supervised head `logits_sup`
    (`tf_simclr.models.endpoints.reference_outputs`, without our own keys).
    """
    outputs = endpoints.reference_outputs(model, images, training=training)
    return {name: outputs[name] for name in endpoints.REFERENCE_OUTPUTS if name in outputs}


def relative_difference(ours, reference) -> float:
    """max |ours - reference| / max |reference| (0 when both are 0)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    if ours.shape != reference.shape:
        return math.inf
    scale = np.abs(reference).max()
    worst = np.abs(ours - reference).max()
    return float(worst / scale) if scale > 0 else float(worst)


def compare_with_saved_model(
    model: SimCLR,
    loaded,
    images,
    tolerance: float = DEFAULT_TOLERANCE,
    selector_candidates: tuple[int, ...] = (),
) -> dict[str, float]:
    """Runs `model` and the reference module `loaded` (`m(images, trainable=False)`) on
    `images`; returns the relative difference of every output both have. Above
    `tolerance` (or no common output) it is an ArgumentError naming the output.

    With several `selector_candidates` (head layers the supervised head may read), the
    one whose logits match the reference's becomes `model.ft_proj_selector`.
    """
    reference = loaded(tf.constant(images, tf.float32), trainable=False)
    ours = reference_outputs(model, images)
    if model.probe is not None and "logits_sup" in reference and len(selector_candidates) > 1:
        # The supervised head's input is not stored: take the layer that reproduces it.
        hiddens = model.head.call_with_hiddens(ours["final_avg_pool"], training=False)
        best = min(
            selector_candidates,
            key=lambda k: relative_difference(model.probe(hiddens[k]), reference["logits_sup"]),
        )
        if best != model.ft_proj_selector:
            logging.info("The supervised head reads head layer %d (ft_proj_selector)", best)
            model.ft_proj_selector = best
            ours["logits_sup"] = model.probe(hiddens[best])
    differences = {
        name: relative_difference(ours[name], reference[name]) for name in ours if name in reference
    }
    if not differences:
        raise ArgumentError("path", "the SavedModel returns none of the reference's outputs")
    for name, difference in differences.items():
        if not difference <= tolerance:
            raise ArgumentError(
                "path",
                f"the imported model's {name} differs from the SavedModel's by {difference:.3g} "
                f"(relative; tolerance {tolerance:g})",
            )
    return differences


# --- The import ------------------------------------------------------------------------


def import_official(
    path: str,
    model: SimCLR | None = None,
    verify: bool = True,
    ft_proj_selector: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    source: Source | None = None,
    architecture: Architecture | None = None,
) -> ImportResult:
    """Imports a reference TF2 SavedModel or checkpoint; see the module docstring.

    Args:
      path: a reference SavedModel directory (`.../r50_1x_sk1/saved_model`, or the
        directory holding `saved_model/`), a reference model_dir (its latest checkpoint)
        or a `ckpt-N` prefix.
      model: our built `SimCLR` of the source's architecture to load into (e.g. built by
        `tf_simclr.builders` for the command line); None builds it.
      verify: for a SavedModel, run both models on a random batch and compare.
      ft_proj_selector: the head layer the supervised head reads, if known; None infers
        it (see the module docstring).
      tolerance: the largest relative difference `verify` accepts.
      seed: of the random batch.
      source: `read_source(path)` when already read; `architecture`, its
        `infer_architecture(source, ft_proj_selector)` when already inferred.

    Raises:
      ArgumentError: unreadable source, a variable that fits no architecture or that the
        architecture lacks (named), or outputs that differ.
    """
    began = time.time()
    source = source or read_source(path)
    architecture = architecture or infer_architecture(source, ft_proj_selector)
    logging.info(
        "%s (%s): %s", source.location, source.kind, architecture.name() + f" {architecture}"
    )
    if model is None:
        model = build_model(architecture)
    else:
        model.ft_proj_selector = architecture.ft_proj_selector
    try:
        mapping = variable_map(model)
    except ValueError as e:
        raise ArgumentError("model", f"is not a tf_simclr ResNet SimCLR ({e})") from None
    check_fits(source, mapping)
    # Every variable fits: only now is anything assigned.
    for ref_path, variable in mapping.items():
        variable.assign(source.value(ref_path).astype(variable.dtype))
    if source.ignored:
        logging.info(
            "Ignored %d entries outside the model (optimizer, counters)", len(source.ignored)
        )
    differences = {}
    if verify and source.kind == "saved_model":
        loaded = tf.saved_model.load(source.location)
        size = 32 if architecture.cifar_stem else 64
        images = np.random.default_rng(seed).uniform(0, 1, (2, size, size, 3)).astype("float32")
        differences = compare_with_saved_model(
            model, loaded, images, tolerance, architecture.selector_candidates
        )
        del loaded
        architecture = dataclasses.replace(architecture, ft_proj_selector=model.ft_proj_selector)
        logging.info(
            "Imported model vs the SavedModel: largest relative difference %.3g (%s)",
            max(differences.values()),
            ", ".join(f"{k} {v:.2g}" for k, v in differences.items()),
        )
    elif len(architecture.selector_candidates) > 1:
        logging.warning(
            "The supervised head could read any of head layers %s (ft_proj_selector); "
            "taking %d. Give ft_proj_selector if the model was fine-tuned from another.",
            list(architecture.selector_candidates),
            architecture.ft_proj_selector,
        )
    return ImportResult(model, architecture, source, differences, time.time() - began)


def load_official(path: str, **kwargs) -> SimCLR:
    """Our `SimCLR` with the variables of a reference SavedModel or checkpoint (see
    `import_official` for the arguments)."""
    return import_official(path, **kwargs).model
