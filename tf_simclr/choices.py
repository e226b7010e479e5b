"""The allowed values of the run's settings, in plain Python: a leaf of the package.

`tf_simclr.config` reads its choice flags and the bounds of its numbers from here,
and so do the modules that use them (`data`, `models`, `modes`, `optim`,
`distribute`, `eval`): the command line checks what the library accepts, with the
same bounds, without importing TensorFlow (parsing a flag never loads it), and the
library's constructors keep checking their own arguments. This module imports
nothing of tf_simclr, TensorFlow, Keras or TFDS (`tests/test_layering.py` checks it).
"""

from __future__ import annotations

import dataclasses

# --- What to do (`tf_simclr.modes`) ---------------------------------------------------
MODES = ("train", "eval", "train_then_eval", "export", "import", "preview", "embed")
# The modes that train (then export; the second also evaluates).
TRAINING_MODES = ("train", "train_then_eval")
TRAIN_MODES = ("pretrain", "finetune", "distill")

# --- Data (`tf_simclr.data`) ----------------------------------------------------------
# Where training views are made: `data.pipeline` (per_image, batched) or the train step.
AUGMENT_IMPLS = ("per_image", "batched", "device")
# The reference's two colour-jitter implementations (`data_util.random_brightness`):
# they differ only in the brightness op (`data.augment_params.sample_brightness`).
COLOR_JITTER_IMPLS = ("simclrv2", "simclrv1")
COLOR_JITTER_IMPL = "simclrv2"  # the default everywhere: the reference's
# `data.tfds_source(download=...)`: "auto" downloads a dataset that is not prepared
# only when TFDS's storage answers.
DOWNLOAD_CHOICES = ("auto", "true", "false")

# --- Export (`tf_simclr.export_formats`) and embeddings (`tf_simclr.eval.embed`) ----------
EXPORT_FORMATS = ("saved_model", "litert", "onnx")
EMBED_KEYS = ("embedding", "projection")  # the encoder's output or the projection head's
EMBED_FORMATS = ("npy", "parquet")

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
NUM_BLOCK_GROUPS = 4  # the stages of every depth above
# Keras dtype policies the encoder can compute in (`ResNet(dtype=...)`); weights stay float32.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# --precision: auto picks one of PRECISIONS for the hardware (`tf_simclr.precision`).
PRECISION_CHOICES = ("auto", *PRECISIONS)
PROJECTION_HEAD_MODES = ("none", "linear", "nonlinear")
# Whether fine-tuning starts its classifier from the checkpoint's online probe.
INIT_FROM_PROBE = ("auto", "true", "false")

# --- Optimisation (`tf_simclr.optim`) -------------------------------------------------
OPTIMIZERS = ("lars", "momentum", "adam", "adamw")
LR_SCALINGS = ("linear", "sqrt")  # see `optim.scaled_learning_rate`

# --- Distribution (`tf_simclr.distribute`) --------------------------------------------
STRATEGY_NAMES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
STRATEGIES = ("auto", *STRATEGY_NAMES)  # --strategy: auto picks one of the names


# --- Bounds of numbers ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers from `low` to `high` (None: unbounded); `value in range` checks one.

    NaN is in no range. `str()` is what follows "must be" in an error message.
    `note` (for the command line) says what a special value means, e.g. "0: all labels".
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def __contains__(self, value: float) -> bool:
        if value != value:  # NaN
            return False
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        if self.high is not None:
            return value < self.high if self.high_open else value <= self.high
        return True

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low}, {self.high}{right}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)  # counts: batch sizes, dimensions, neighbours
# BatchNorm's moving-average momentum: 1 would never update the moving statistics.
BATCH_NORM_DECAY = Range(0, 1, high_open=True)
# -1 trains everything, 0 all but the stem, NUM_BLOCK_GROUPS only the classifier.
FINE_TUNE_AFTER_BLOCK = Range(-1, NUM_BLOCK_GROUPS)

# The bound of each numeric `Config` field that has one, by field name: the one place
# that says which values a flag accepts. `Config.validate` checks every entry; the
# library checks its arguments against the entry of the field that feeds them
# (`ResNet(batch_norm_decay=...)` against BOUNDS["batch_norm_decay"]).
BOUNDS: dict[str, Range] = {
    # Data
    "shuffle_buffer": Range(0, note="0: max(10 * batch, 1000), capped at the split"),
    "image_size": Range(
        8,
        note="the CIFAR stem (image_size <= 32) and the four ResNet stages downsample 8x",
    ),
    "color_jitter_strength": NON_NEGATIVE,
    # Model
    "width_multiplier": POSITIVE,
    "sk_ratio": NON_NEGATIVE,
    "se_ratio": NON_NEGATIVE,
    "batch_norm_decay": BATCH_NORM_DECAY,
    "proj_out_dim": AT_LEAST_ONE,
    "num_proj_layers": AT_LEAST_ONE,
    "fine_tune_after_block": FINE_TUNE_AFTER_BLOCK,
    # Loss
    "temperature": POSITIVE,
    "distill_temperature": POSITIVE,
    "distill_label_weight": NON_NEGATIVE,
    # Optimisation
    "momentum": Range(0, 1),
    "weight_decay": NON_NEGATIVE,
    "learning_rate": NON_NEGATIVE,
    "warmup_epochs": NON_NEGATIVE,
    "train_batch_size": AT_LEAST_ONE,
    "train_epochs": NON_NEGATIVE,
    "train_steps": NON_NEGATIVE,
    "label_fraction": Range(0, 1, note="0: all labels"),
    "labels_per_class": Range(0, note="0: all labels"),
    # Evaluation
    "eval_batch_size": AT_LEAST_ONE,
    "knn_k": AT_LEAST_ONE,
    "knn_train_examples": Range(0, note="0: the whole split"),
    "knn_temperature": POSITIVE,
    "eval_steps": NON_NEGATIVE,
    "eval_poll_secs": POSITIVE,
    "eval_timeout_secs": NON_NEGATIVE,
    # Checkpoints and logs
    "checkpoint_epochs": NON_NEGATIVE,
    "checkpoint_steps": NON_NEGATIVE,
    "keep_checkpoint_max": AT_LEAST_ONE,
    "keep_hub_module_max": NON_NEGATIVE,
    "train_summary_steps": NON_NEGATIVE,
    "summary_images": NON_NEGATIVE,
    "preview_images": AT_LEAST_ONE,
    "label_free_monitor_steps": NON_NEGATIVE,
    # RankMe, uniformity and the std need two rows at least.
    "label_free_monitor_images": Range(2),
    # Embeddings
    "embed_neighbours": NON_NEGATIVE,
    # Distribution
    "num_cpu_devices": NON_NEGATIVE,
}
