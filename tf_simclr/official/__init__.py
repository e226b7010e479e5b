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

The package, by job: `variables` (reading a source), `architecture` (inferring it, our
model of it: `build_simclr`), `mapping` (reference path -> our variable), `compare`
(outputs against the reference's); here, the import itself.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf
from absl import logging

from tf_simclr.errors import ArgumentError
from tf_simclr.models import SimCLR
from tf_simclr.official.architecture import SK_RATIO, Architecture, build_simclr, infer_architecture
from tf_simclr.official.compare import (
    DEFAULT_TOLERANCE,
    RESNET_OUTPUTS,
    compare_with_saved_model,
    reference_outputs,
    relative_difference,
)
from tf_simclr.official.mapping import check_fits, encoder_variable_map, variable_map
from tf_simclr.official.variables import ReferenceVariables, read_source

__all__ = [
    "DEFAULT_TOLERANCE",
    "RESNET_OUTPUTS",
    "SK_RATIO",
    "Architecture",
    "ImportResult",
    "ReferenceVariables",
    "build_simclr",
    "check_fits",
    "compare_with_saved_model",
    "encoder_variable_map",
    "import_official",
    "infer_architecture",
    "load_official",
    "read_source",
    "reference_outputs",
    "relative_difference",
    "variable_map",
]


@dataclasses.dataclass
class ImportResult:
    model: SimCLR
    architecture: Architecture
    source: ReferenceVariables
    # Largest relative difference per compared output (SavedModel sources only).
    differences: dict[str, float]
    seconds: float

    @property
    def max_relative_difference(self) -> float | None:
        return max(self.differences.values()) if self.differences else None


def import_official(
    path: str,
    model: SimCLR | None = None,
    verify: bool = True,
    ft_proj_selector: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    source: ReferenceVariables | None = None,
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
        model = build_simclr(architecture)
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
