"""The test harness shared by the test files: tiny configs and flags, run.py in a process or
in this one, checkpoint and TensorBoard readers.

Import it as `from tests import _harness` (the repository root is on `pythonpath`; pytest's
importlib mode cannot import conftest.py, whose fixtures stay there).
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from tf_simclr.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The tiny model every end-to-end test trains: a 1/8-width ResNet-18 on 16 px images with a
# 2-layer, 8-dimensional projection head.
TINY_MODEL = dict(
    resnet_depth=18, width_multiplier=0.125, image_size=16, proj_out_dim=8, num_proj_layers=2
)
# The same model as run.py flags, with batch 4 and no blur (the CPU-costly augmentation).
TINY_FLAGS = [
    "--resnet_depth=18",
    "--width_multiplier=0.125",
    "--image_size=16",
    "--train_batch_size=4",
    "--proj_out_dim=8",
    "--num_proj_layers=2",
    "--use_blur=false",
]
# With TINY_FLAGS (blur off), every augmentation off: both views are the image itself, so
# the batches are fixed by the (seeded) data order alone.
NO_AUGMENTATION_FLAGS = [
    "--use_crop=false",
    "--use_flip=false",
    "--use_color_jitter=false",
    "--use_grayscale=false",
]


def tiny_config(model_dir="/tmp/unused", **changes):
    """A 3-step pretraining Config of the tiny model on CIFAR-10 (mock it with
    `tfds.testing.mock_data`), batch 8, a checkpoint every 2 steps; `changes` override."""
    base = dict(
        mode="train",
        dataset="cifar10",
        model_dir=str(model_dir),
        train_batch_size=8,
        train_steps=3,
        checkpoint_steps=2,
        warmup_epochs=0.5,
        use_blur=False,
        verbose=0,
        train_summary_steps=1,
        **TINY_MODEL,
    )
    base.update(changes)
    return Config(**base)


def _run_py_env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def run_cli(args, timeout=300):
    """`python run.py *args` in a fresh process: the CompletedProcess (text stdout/stderr)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_run_py_env(),
        cwd=ROOT,
    )


def start_cli(args, stderr, script=ROOT / "run.py"):
    """`python run.py *args` (or another script) in the background, stdout discarded."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        env=_run_py_env(),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


def run_in_process(argv, capsys):
    """run.py's own parse_flags + main in this process (no TensorFlow import to pay):
    (exit code, stderr). absl logs to stderr too once main has set it up."""
    sys.path.insert(0, str(ROOT))
    import run

    capsys.readouterr()
    try:
        remaining = run.parse_flags(["run.py", *argv])
        run.main(remaining)
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        run.FLAGS.unparse_flags()
    return code, capsys.readouterr().err


def assert_loads_in_a_tf1_session(saved_model_dir):
    """Runs `tests/_session_load.py` on a SavedModel in a fresh process: every serving
    signature gives the same outputs in a TF1 session (TF Serving's restore path) as with
    `tf.saved_model.load`."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_session_load.py"), str(saved_model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in _run_py_env().items() if k != "PYTHONPATH"},
        cwd=pathlib.Path(saved_model_dir).parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["signatures"] == ["serving_default", "serving_float"], report
    assert not report["tf_simclr_imported"]
    assert max(report["max_abs_diff"].values()) < 1e-5, report


def latest_step(model_dir):
    """Step of the latest checkpoint recorded in model_dir/checkpoint."""
    text = (pathlib.Path(model_dir) / "checkpoint").read_text()
    return int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', text).group(1))


def float_variables(prefix):
    """Every float variable of a checkpoint: weights, BatchNorm statistics, optimizer slots."""
    reader = tf.train.load_checkpoint(str(prefix))
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    return {k: v for k, v in values.items() if np.issubdtype(np.asarray(v).dtype, np.floating)}


def scalars(log_dir, tag):
    """{step: value} of the TensorBoard scalar `tag` in the event files of `log_dir`."""
    values = {}
    for path in pathlib.Path(log_dir).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = tf.make_ndarray(value.tensor).item()
    return values


def logged_losses(model_dir):
    """{step: loss} from the TensorBoard scalars of model_dir/train (the running mean over
    the epoch so far, finite exactly as long as every loss of the epoch so far is)."""
    return scalars(pathlib.Path(model_dir) / "train", "train/loss")


def _as_saved(value):
    """`value` as a get_config would hold it: tuples as lists, dataclasses as dicts, Keras
    objects serialised."""
    import dataclasses

    import keras

    if isinstance(value, (tuple, list)):
        return [_as_saved(v) for v in value]
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "get_config"):
        return keras.saving.serialize_keras_object(value)
    return value


def _holds(saved, given) -> bool:
    """Whether the config entry `saved` holds the constructor argument `given`."""
    want = _as_saved(given)
    if isinstance(saved, tuple):  # as JSON will hold it
        saved = list(saved)
    if isinstance(want, dict) and isinstance(saved, dict) and "config" in want:
        return saved.get("config") == want["config"]  # a nested object: its own config
    if isinstance(want, str) and isinstance(saved, dict):  # e.g. a dtype policy's name
        return want in json.dumps(saved)
    if isinstance(want, float) and isinstance(saved, (int, float)):  # e.g. stored float32
        return abs(saved - want) <= 1e-6 * abs(want)
    return saved == want


def assert_config_round_trip(cls, not_covered=(), **arguments):
    """`cls(**arguments)` survives get_config -> from_config, with every argument kept.

    Every parameter of `cls.__init__` (bar `**kwargs` and `not_covered`, the inherited
    arguments of a Keras base class) must be given, and with a default must be given another
    value: a default value would round-trip even when get_config drops the argument, and a
    new constructor argument must join the caller's test. Each given value must be in the
    config under its argument's name, and the restored object must have the same config.
    Returns the restored object.
    """
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    expected = {
        name
        for name, p in parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    } - set(not_covered)
    missing = expected - set(arguments)
    assert not missing, f"{cls.__name__}: give non-default values of {sorted(missing)}"
    for name, value in arguments.items():
        if name in parameters and parameters[name].default is not inspect.Parameter.empty:
            assert not _holds(_as_saved(parameters[name].default), value), (
                f"{cls.__name__}({name}=...): give a value other than the default"
            )
    original = cls(**arguments)
    config = original.get_config()
    for name, value in arguments.items():
        # A class of one `config` argument (a dataclass) may return it as its whole config.
        saved = config if name == "config" and name not in config else config.get(name)
        assert name in config or saved is config, f"{cls.__name__}.get_config() drops {name!r}"
        assert _holds(saved, value), f"{cls.__name__} {name}: {saved!r} != {value!r}"
    # Through JSON, as a .keras file stores it (tuples come back as lists).
    stored = json.loads(json.dumps(config))
    restored = cls.from_config(stored)
    assert json.loads(json.dumps(restored.get_config())) == stored, cls.__name__
    return restored
