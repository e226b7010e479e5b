"""Our imported model against the reference's: its outputs, under its names, compared.

Our outputs correspond to the reference's: `embedding` = `final_avg_pool`, `projection` =
`proj_head_output`, `logits` = `logits_sup`; `reference_outputs` gives all of them under the
reference's names, the intermediate ones (`initial_conv`, `initial_max_pool`,
`block_group1..4`) included. `compare_with_saved_model` runs both on a batch and fails when
an output differs by more than a tolerance (relative to the reference output's largest
magnitude), picking the head layer the supervised head reads among the candidates.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from absl import logging

from tf_simclr.errors import ArgumentError
from tf_simclr.models import SimCLR, endpoints

DEFAULT_TOLERANCE = 1e-4
# Outputs of the reference SavedModel that the ResNet computes, in network order.
RESNET_OUTPUTS = endpoints.REFERENCE_OUTPUTS[
    : endpoints.REFERENCE_OUTPUTS.index("final_avg_pool") + 1
]


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
