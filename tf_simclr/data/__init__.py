"""Input data: sources yield ``{"image", "label"}``, augment makes views, pipeline batches.

The individual augmentation ops (crop, jitter, blur, ...) stay in
``tf_simclr.data.augment``; only its entry points are re-exported here.
"""

from tf_simclr.data.augment import (
    AugmentConfig,
    eval_view,
    finetune_augment,
    simclr_view,
    two_views,
)
from tf_simclr.data.augment_batch import DeviceViews
from tf_simclr.data.pipeline import (
    eval_dataset,
    pretrain_dataset,
    steps_per_epoch,
    supervised_dataset,
)
from tf_simclr.data.sources import (
    FOLDER_LAYOUT,
    IMAGE_EXTENSIONS,
    IMAGE_FOLDER,
    SKIP_REASONS,
    DataError,
    Source,
    image_folder_source,
    make_source,
    scan_image_folder,
    scan_image_tree,
    tfds_source,
)
from tf_simclr.data.subsets import (
    balanced_prefix,
    balanced_subset_indices,
    subset_source,
    unlabel_outside_subset,
)

__all__ = [
    "FOLDER_LAYOUT",
    "IMAGE_EXTENSIONS",
    "IMAGE_FOLDER",
    "SKIP_REASONS",
    "AugmentConfig",
    "DataError",
    "DeviceViews",
    "Source",
    "balanced_prefix",
    "balanced_subset_indices",
    "eval_dataset",
    "eval_view",
    "finetune_augment",
    "image_folder_source",
    "make_source",
    "pretrain_dataset",
    "scan_image_folder",
    "scan_image_tree",
    "simclr_view",
    "steps_per_epoch",
    "subset_source",
    "supervised_dataset",
    "tfds_source",
    "two_views",
    "unlabel_outside_subset",
]
