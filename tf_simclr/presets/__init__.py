"""The published SimCLR v1/v2 models by name (keras-hub style presets).

    import tf_simclr
    model = tf_simclr.from_preset("simclrv2/pretrained/r50_1x_sk1")
    outputs = model(images)  # {"embedding", "projection", "logits"}, images in [0, 1]

- `registry`: every published model (the data: `published.py`): architecture, parameter
  count, published ImageNet top-1, location below the bucket root. `list_presets()`,
  `presets()`, `table()`.
- `download`: the files, fetched into the cache from `$TF_SIMCLR_MODEL_ROOT` (a folder, an
  http(s) URL, gs://) or the public bucket, resumed, retried, size-checked, atomic.
- `load`: `load_preset(name)`: downloads once, imports once (`--mode=import`), caches the
  model_dir, checks the parameter count against the registry.

Importing this package does not load TensorFlow (only `load_preset` does).
"""

from tf_simclr.presets.download import DownloadError, cache_dir, download_preset, model_root
from tf_simclr.presets.load import (
    is_name,
    load_official,
    load_preset,
    preset_model_dir,
    resolve_names,
)
from tf_simclr.presets.registry import Preset, find, get, list_presets, presets, table

# `tf_simclr.from_preset(name)`, keras-hub's name. Not a `SimCLR` class method: the import
# runs `--mode=import` (a driver), and `models` imports no driver (docs/architecture.md).
from_preset = load_preset

__all__ = [
    "DownloadError",
    "Preset",
    "cache_dir",
    "download_preset",
    "find",
    "from_preset",
    "get",
    "is_name",
    "load_official",
    "list_presets",
    "load_preset",
    "model_root",
    "preset_model_dir",
    "presets",
    "resolve_names",
    "table",
]
