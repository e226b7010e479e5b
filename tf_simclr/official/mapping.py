"""The one-to-one correspondence between a reference model's variables and ours.

`variable_map` gives reference path -> our variable for a built `SimCLR`; `check_fits`
checks every variable of a source is mapped with its shape before anything is assigned,
so a source that does not fit is an `ArgumentError` naming the first variable that
failed, never a partial load.
"""

from __future__ import annotations

import keras

from tf_simclr.choices import BLOCKS_PER_GROUP
from tf_simclr.models import ResNet, SimCLR
from tf_simclr.official.architecture import _HEAD, _RESNET, _SUPERVISED, _fail
from tf_simclr.official.variables import ReferenceVariables


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


def check_fits(source: ReferenceVariables, mapping: dict[str, keras.Variable]) -> None:
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
