"""tf_simclr: SimCLR (v1/v2) self-supervised learning for TensorFlow 2 / Keras 3.

Notebook use::

    from tf_simclr import ResNet, ProjectionHead, SimCLR, LARS, WarmupCosineDecay
    from tf_simclr.data import AugmentConfig, make_source, pretrain_dataset
    from tf_simclr import load_official  # a published SimCLR v1/v2 model's files
    from tf_simclr import from_preset  # one by name, downloaded and imported once
    model = from_preset("simclrv2/pretrained/r50_1x_sk1")
    from tf_simclr import SimCLRAugment  # the augmentations as Keras layers (tf_simclr.layers)

Names are imported lazily so that `run.py` can validate flags before
TensorFlow loads. Importing `tf_simclr` still registers every Keras object a
saved model of ours can hold (models, layers, LARS, AdamL2, schedules, the
device augmentation, the augmentation layers of `tf_simclr.layers`), so
`keras.saving.load_model("m.keras")` restores it: at once when Keras is
already imported, else as soon as Keras is.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "tf_simclr.config",
    "ConfigError": "tf_simclr.errors",
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
    "RandomApply": "tf_simclr.layers",
    "RandomColorJitter": "tf_simclr.layers",
    "RandomGaussianBlur": "tf_simclr.layers",
    "RandomGrayscale": "tf_simclr.layers",
    "RandomResizedCrop": "tf_simclr.layers",
    "SimCLRAugment": "tf_simclr.layers",
    "load_official": "tf_simclr.presets",  # a path, or a published name
    "import_official": "tf_simclr.official",
    "embed": "tf_simclr.eval.embed",
    "Embeddings": "tf_simclr.eval.embed",
    "from_preset": "tf_simclr.presets",
    "load_preset": "tf_simclr.presets",
    "list_presets": "tf_simclr.presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf_simclr' has no attribute {name!r}")


# The modules whose classes are `keras.saving.register_keras_serializable`.
_SERIALIZABLE_MODULES = (
    "tf_simclr.models",
    "tf_simclr.optim",
    "tf_simclr.data.augment_batch",
    "tf_simclr.layers",
)


def _register_keras_objects() -> None:
    for module in _SERIALIZABLE_MODULES:
        importlib.import_module(module)


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Imports the registering modules right after the module `keras` has executed."""

    _finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._finding:
            return None
        self._finding = True  # the other finders find keras; this one wraps its loader
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _register_keras_objects()

        spec.loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:
    _register_keras_objects()
elif not any(isinstance(f, _RegisterWhenKerasLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
