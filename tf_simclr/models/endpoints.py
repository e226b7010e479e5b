"""The outputs of the reference's SavedModels, computed by our models.

The SavedModels of google-research/simclr (`tf2/run.py`, the published SimCLR v1/v2
models) are called as `m(images, trainable)` and return a dict of float32 tensors:
`initial_conv`, `initial_max_pool`, `block_group1..4` (feature maps `[B, h, w, C]`),
`final_avg_pool` (the encoder output `[B, D]`), with a projection head `proj_head_input`
(= `final_avg_pool`) and `proj_head_output` (`[B, P]`), with a supervised head
`logits_sup` (`[B, C]`). `reference_outputs` gives the same dict for a `SimCLR` or
`Classifier` with a `ResNet` encoder, together with our own outputs, from one forward pass;
our exported SavedModels return it from their `__call__` (`tf_simclr.export`), and
`tf_simclr.official` compares it with an imported model's source.
"""

from __future__ import annotations

import keras

from tf_simclr.models.resnet import ResNet

# The reference SavedModel's outputs, in network order.
REFERENCE_OUTPUTS = (
    "initial_conv",
    "initial_max_pool",
    "block_group1",
    "block_group2",
    "block_group3",
    "block_group4",
    "final_avg_pool",
    "proj_head_input",
    "proj_head_output",
    "logits_sup",
)


def has_reference_outputs(model: keras.Model) -> bool:
    """Whether `reference_outputs` works for `model`: a `ResNet` encoder and
    `outputs_from_features` (`SimCLR`, `Classifier`)."""
    return isinstance(getattr(model, "encoder", None), ResNet) and hasattr(
        model, "outputs_from_features"
    )


def reference_outputs(model: keras.Model, images, training: bool = False) -> dict:
    """`model(images, training)`'s dict plus the reference's outputs (see the module
    docstring), from one forward pass: BatchNorm statistics update once with `training`.

    `proj_head_*` are given when the model has a head with layers (not for SimCLRv1's
    models, nor a classifier fine-tuned from the encoder output), `logits_sup` when it
    has a classifier.
    """
    endpoints = model.encoder.call_with_endpoints(images, training=training)
    features = endpoints["final_avg_pool"]
    outputs = dict(model.outputs_from_features(features, training=training))
    outputs.update(endpoints)
    head = getattr(model, "head", None)
    if head is not None and head.num_linear_layers and "projection" in outputs:
        outputs["proj_head_input"] = features
        outputs["proj_head_output"] = outputs["projection"]
    if "logits" in outputs:
        outputs["logits_sup"] = outputs["logits"]
    return outputs
