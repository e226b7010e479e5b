"""Serialization of models that own sub-models (SimCLR, Classifier)."""

from __future__ import annotations

import keras


def serialize_parts(**parts) -> dict:
    """{name: serialized sub-model or None} for a `get_config`."""
    return {
        name: None if part is None else keras.saving.serialize_keras_object(part)
        for name, part in parts.items()
    }


def deserialize_parts(config: dict, *names: str) -> dict:
    """A copy of `config` with the named entries turned back into objects (None stays)."""
    config = dict(config)
    for name in names:
        if config.get(name) is not None:
            config[name] = keras.saving.deserialize_keras_object(config[name])
    return config
