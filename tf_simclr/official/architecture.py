"""What the variables of a reference model say about its architecture, and our model of it.

The paths and shapes of the variables (`tf_simclr.official.variables`) determine the
architecture: depth (blocks per group and block type), width (stem channels), selective
kernels (ResNet-D stem and shortcuts, the SK gate's width gives the ratio),
squeeze-excitation, CIFAR or ImageNet stem, the projection head (its layers and output
width; none for SimCLRv1) and the supervised head (`head_supervised`, its classes).
`infer_architecture` reads them; `build_simclr` builds our `SimCLR` of an `Architecture`.

Which layer of the projection head the supervised head reads (the reference's
`ft_proj_selector`, 0 = the encoder output) is not stored. The shapes often leave several
possibilities (a 1x model's hidden layers are as wide as the encoder output): they are
`selector_candidates`, resolved by running a SavedModel (`official.compare`).
"""

from __future__ import annotations

import dataclasses
import re

import tensorflow as tf

from tf_simclr.choices import BLOCKS_PER_GROUP
from tf_simclr.errors import ArgumentError
from tf_simclr.models import ProjectionHead, ResNet, SimCLR
from tf_simclr.models.resnet import scaled_channels
from tf_simclr.official.variables import ReferenceVariables

# SimCLRv2's selective-kernel ratio; any ratio <= it gives the same 1x..3x networks.
SK_RATIO = 0.0625
# The reference model's parts, as attribute paths below its `Model`.
_RESNET = "resnet_model"
_HEAD = "_projection_head/linear_layers"
_SUPERVISED = "supervised_head/linear_layer/dense"
_GROUP_FILTERS = (64, 128, 256, 512)


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


def _fail(path: str, message: str):
    raise ArgumentError("path", f"variable {path}: {message}")


def infer_architecture(
    source: ReferenceVariables, ft_proj_selector: int | None = None
) -> Architecture:
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


def build_simclr(architecture: Architecture, image_size: int | None = None) -> SimCLR:
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
