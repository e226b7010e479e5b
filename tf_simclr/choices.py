"""The allowed values of the run's settings, in plain Python: a leaf of the package.

`tf_simclr.config` reads its choice flags from here, and so do the modules that
use them (`data`, `models`, `modes`, `optim`, `distribute`), so the command line
lists and checks what the library accepts without importing TensorFlow: parsing
a flag never loads it. This module imports nothing of tf_simclr, TensorFlow,
Keras or TFDS (`tests/test_layering.py` checks it).
"""

from __future__ import annotations

# --- What to do (`tf_simclr.modes`) ---------------------------------------------------
MODES = ("train", "eval", "train_then_eval", "export", "import", "preview")
TRAIN_MODES = ("pretrain", "finetune", "distill")

# --- Data (`tf_simclr.data`) ----------------------------------------------------------
# Where training views are made: `data.pipeline` (per_image, batched) or the train step.
AUGMENT_IMPLS = ("per_image", "batched", "device")
# The reference's two colour-jitter implementations (`data_util.random_brightness`):
# they differ only in the brightness op (`data.augment_params.sample_brightness`).
COLOR_JITTER_IMPLS = ("simclrv2", "simclrv1")
# `data.tfds_source(download=...)`: "auto" downloads a dataset that is not prepared
# only when TFDS's storage answers.
DOWNLOAD_CHOICES = ("auto", "true", "false")

# --- Model (`tf_simclr.models`) -------------------------------------------------------
# Blocks per stage for each supported depth (He et al. 2016, Table 1; the
# 200-layer layout follows the SimCLR reference).
BLOCKS_PER_GROUP: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
RESNET_DEPTHS = tuple(sorted(BLOCKS_PER_GROUP))
# Keras dtype policies the encoder can compute in (`ResNet(dtype=...)`); weights stay float32.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
PROJECTION_HEAD_MODES = ("none", "linear", "nonlinear")
# Whether fine-tuning starts its classifier from the checkpoint's online probe.
INIT_FROM_PROBE = ("auto", "true", "false")

# --- Optimisation (`tf_simclr.optim`) -------------------------------------------------
OPTIMIZERS = ("lars", "momentum", "adam", "adamw")
LR_SCALINGS = ("linear", "sqrt")  # see `optim.scaled_learning_rate`

# --- Distribution (`tf_simclr.distribute`) --------------------------------------------
STRATEGY_NAMES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
STRATEGIES = ("auto", *STRATEGY_NAMES)  # --strategy: auto picks one of the names
