"""A published model by name: download (once), import (once), load.

    model = load_preset("simclrv2/pretrained/r50_1x_sk1")

The cache (`download.cache_dir()`) holds, for a preset named `a/b/c`:

- `downloads/a/b/c/saved_model/...`: the published files, as fetched;
- `models/a/b/c/`: the model_dir that `--mode=import` writes for them (`config.json`,
  `model.json`, `ckpt-0`, `saved_model/0/`), usable wherever a model_dir is taken.

Both appear by a rename once complete (and checked), so a later `load_preset` of the same name
finds the model_dir, restores it, and neither reads the network nor converts anything. The
loaded encoder's parameter count must equal the registry's (`Preset.encoder_params`), and the
imported architecture must be the preset's: otherwise it is an error, and neither the model_dir
nor the downloaded files are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping

from absl import logging

from tf_simclr.errors import ArgumentError, ConfigError
from tf_simclr.presets import download
from tf_simclr.presets import registry as registry_lib
from tf_simclr.presets.registry import Preset


def _check(preset: Preset, model, description: dict, where: str) -> None:
    """The loaded model is the preset's: its architecture and encoder parameter count."""
    architecture = description.get("imported_from", {}).get("architecture")
    count = registry_lib.encoder_params(model.encoder)
    if architecture != preset.architecture or count != preset.encoder_params:
        raise ArgumentError(
            "name",
            f"{where} holds a {architecture} whose encoder has {count:,} trainable parameters; "
            f"the registry's {preset.architecture} has {preset.encoder_params:,}",
            preset.name,
        )


def load_preset(
    name: str,
    root: str | None = None,
    cache: str | None = None,
    registry: Mapping[str, Preset] | None = None,
    **http_options,
):
    """Our `SimCLR` with the weights of the published model `name`.

    Args:
      name: a preset name (`list_presets()`), e.g. `simclrv2/pretrained/r50_1x_sk1`
        or `simclrv2_pretrained_r50_1x_sk1`.
      root: where to fetch from (default `$TF_SIMCLR_MODEL_ROOT` or the public bucket): a
        folder, an http(s) URL or a gs:// location with the bucket's layout.
      cache: the cache directory (default `download.cache_dir()`).
      registry: the presets to look `name` up in (default the package's, `published.py`).
      **http_options: `retries`, `backoff`, `timeout`, `progress` of `download.fetch_url`.

    Raises:
      ArgumentError: an unknown name, a failed download (one line with the URL), or files
        that are not the preset's model (architecture or parameter count).
    """
    from tf_simclr import run_dir

    preset = registry_lib.get(name, registry)
    model_dir, model = _cached_model_dir(preset, root, cache, **http_options)
    if model is None:  # cached earlier: restore it, check it again
        model, _, _ = run_dir.load_model(model_dir)
        _check(preset, model, run_dir.read(model_dir), model_dir)
    return model


def preset_model_dir(
    name: str,
    root: str | None = None,
    cache: str | None = None,
    registry: Mapping[str, Preset] | None = None,
    **http_options,
) -> str:
    """The cached model_dir of the published model `name` (downloaded and imported, then
    checked, the first time; see `load_preset`): what `--checkpoint=NAME` and
    `--teacher=NAME` stand for."""
    preset = registry_lib.get(name, registry)
    return _cached_model_dir(preset, root, cache, **http_options)[0]


def _cached_model_dir(preset: Preset, root, cache, **http_options):
    """`(model_dir, model)`: the cached model_dir of `preset`, made now if absent (then
    `model` is the imported model, checked; else None)."""
    import tensorflow as tf

    from tf_simclr import official, run_dir
    from tf_simclr.config import Config, flags_for

    _, model_dir = download.paths(preset, cache)
    if os.path.isdir(model_dir):
        return model_dir, None

    source = download.download_preset(
        preset.name, root, cache, {preset.name: preset}, **http_options
    )
    scratch = os.path.join(cache or download.cache_dir(), "tmp")
    os.makedirs(scratch, exist_ok=True)
    work = tempfile.mkdtemp(prefix="import-", dir=scratch)
    try:
        staged = os.path.join(work, "model")
        config = Config(mode="import", checkpoint=source, model_dir=staged)
        config.validate()
        with flags_for(path="checkpoint"):
            reference = official.read_source(source)
            architecture = official.infer_architecture(reference)
        run_dir.write_imported(config, tf.distribute.get_strategy(), reference, architecture)
        model, _, _ = run_dir.load_model(staged)
        try:
            _check(preset, model, run_dir.read(staged), source)
        except ArgumentError:
            shutil.rmtree(source, ignore_errors=True)  # not this model: fetch again next time
            raise
        _record_location(staged, model_dir)
        download.move_into_cache(staged, model_dir)
        logging.info("Cached the imported %s in %s", preset.name, model_dir)
        return model_dir, model
    finally:
        shutil.rmtree(work, ignore_errors=True)


def is_name(value: str) -> bool:
    """Whether `value` names a published model rather than a location: not on disk, no
    scheme (gs://, https://), and in the registry."""
    return (
        bool(value)
        and "://" not in value
        and not os.path.exists(value)
        and (registry_lib.find(value) is not None)
    )


def load_official(path_or_name: str, **kwargs):
    """`tf_simclr.load_official`: our `SimCLR` of a published model, from its files (a
    reference SavedModel or checkpoint: `official.load_official`, `kwargs` are
    `official.import_official`'s) or by its name (`load_preset`, cached)."""
    if is_name(path_or_name):
        return load_preset(path_or_name)
    from tf_simclr import official

    return official.load_official(path_or_name, **kwargs)


# The flags that take a model location, and so a preset name too.
LOCATION_FLAGS = ("checkpoint", "teacher")


def resolve_names(config):
    """`config` with each preset name in `--checkpoint` / `--teacher` replaced by what it
    stands for: the cached model_dir (downloaded and imported the first time), or, for
    `--mode=import --checkpoint=NAME`, the downloaded published files. A value that exists
    on disk or has a scheme (gs://, http://) is a location, never a name."""
    changes = {}
    for flag in LOCATION_FLAGS:
        value = getattr(config, flag)
        if not is_name(value):
            continue
        preset = registry_lib.find(value)
        try:
            if config.mode == "import" and flag == "checkpoint":
                changes[flag] = download.download_preset(
                    preset.name, registry={preset.name: preset}
                )
            else:
                changes[flag] = preset_model_dir(preset.name, registry={preset.name: preset})
        except ArgumentError as e:
            raise ConfigError(flag, e.message, value) from None
        logging.info("--%s=%s: the published model, from %s", flag, value, changes[flag])
    return config.replace(**changes) if changes else config


def _record_location(staged: str, model_dir: str) -> None:
    """config.json names the directory the model_dir ends up in, not the staging one."""
    path = os.path.join(staged, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["model_dir"] = model_dir
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
