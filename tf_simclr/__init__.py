"""tf_simclr: SimCLR (v1/v2) self-supervised learning for TensorFlow 2 / Keras 3.

Notebook use::

    from tf_simclr import ResNet, ProjectionHead, SimCLR, LARS, WarmupCosineDecay
    from tf_simclr.data import AugmentConfig, make_source, pretrain_dataset
    from tf_simclr import load_official  # the published SimCLR v1/v2 models

Names are imported lazily so that `run.py` can validate flags before
TensorFlow loads.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "tf_simclr.config",
    "ConfigError": "tf_simclr.config",
    "ResNet": "tf_simclr.models",
    "ProjectionHead": "tf_simclr.models",
    "LinearClassifier": "tf_simclr.models",
    "SimCLR": "tf_simclr.models",
    "nt_xent": "tf_simclr.losses",
    "LARS": "tf_simclr.optim",
    "WarmupCosineDecay": "tf_simclr.optim",
    "build_optimizer": "tf_simclr.optim",
    "scaled_learning_rate": "tf_simclr.optim",
    "AugmentConfig": "tf_simclr.data",
    "make_source": "tf_simclr.data",
    "pretrain_dataset": "tf_simclr.data",
    "eval_dataset": "tf_simclr.data",
    "load_official": "tf_simclr.official",
    "import_official": "tf_simclr.official",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf_simclr' has no attribute {name!r}")
