"""The published SimCLR v1/v2 models by name (keras-hub style presets).

- `registry`: every published model as data (`registry.json`): architecture, parameter
  count, published ImageNet top-1, location below the bucket root. `list_presets()`,
  `presets()`, `table()`.
- `download`: the files, fetched into the cache from `$TF_SIMCLR_MODEL_ROOT` (a folder, an
  http(s) URL, gs://) or the public bucket, resumed, retried, size-checked, atomic.

Importing this package does not load TensorFlow.
"""

from tf_simclr.presets.download import DownloadError, cache_dir, download_preset, model_root
from tf_simclr.presets.registry import Preset, find, get, list_presets, presets, table

__all__ = [
    "DownloadError",
    "Preset",
    "cache_dir",
    "download_preset",
    "find",
    "get",
    "list_presets",
    "model_root",
    "presets",
    "table",
]
