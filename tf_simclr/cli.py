r"""SimCLR (v1/v2) on TensorFlow 2 / Keras 3: pretrain, evaluate, fine-tune, export.

First command to try (52 s on a 2-core CPU; --data_dir holds TFDS's cifar10,
see README "Offline" without internet):

    python run.py --flagfile=experiments/quickstart.flags --data_dir=/tmp/tfds \
        --model_dir=runs/quickstart

Pretrain on CIFAR-10, then linear evaluation on frozen features:

    python run.py --mode=train_then_eval --dataset=cifar10 --eval_split=test \
        --image_size=32 --resnet_depth=18 --train_batch_size=512 --train_epochs=1000 \
        --learning_rate=1.0 --weight_decay=1e-4 --temperature=0.5 --use_blur=False \
        --color_jitter_strength=0.5 --model_dir=runs/cifar10_r18
    python run.py --mode=train_then_eval --train_mode=finetune --fine_tune_after_block=4 \
        --checkpoint=runs/cifar10_r18 --optimizer=momentum --learning_rate=0.1 \
        --weight_decay=0 --warmup_epochs=0 --zero_init_logits_layer --global_bn=false \
        --dataset=cifar10 --eval_split=test --image_size=32 --resnet_depth=18 \
        --train_epochs=90 --model_dir=runs/cifar10_r18_linear

Evaluate or export a trained model_dir (no other flag needed):
    python run.py --mode=eval --model_dir=runs/cifar10_r18 --eval_split=test
    python run.py --mode=export --model_dir=runs/cifar10_r18

Running the same training command again resumes. Bad input prints one line naming the
flag and exits 2; SIGTERM/SIGINT save a checkpoint and exit 128 + the signal; a NaN loss
exits 3; a lost worker of a multi-worker job exits 4. --verbosity=1 shows the library
log lines hidden by default. All flags: --helpfull; docs/flags.md; README.md. --version
prints tf_simclr's version.
"""

# Intentionally thin: define the flags (one per field of `tf_simclr.config.Config`), build
# the config, call `tf_simclr.modes.run` with the names of the flags given on the command
# line (those may not contradict a saved model's architecture). A TPU that cannot be
# reached is bad input (exit 2, naming --tpu_name).

import contextlib
import os
import sys
import tempfile

# TensorFlow's C++ log level, set before TensorFlow loads; a user's own setting wins.
_USER_SET_TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from tf_simclr import __version__  # noqa: E402
from tf_simclr.config import Config, flag_specs  # noqa: E402
from tf_simclr.errors import (  # noqa: E402
    ArgumentError,
    ConfigError,
    TrainingDiverged,
    TrainingInterrupted,
    WorkerLost,
)

_DEFINE = {
    str: flags.DEFINE_string,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_bool,
}
for _name, _kind, _default, _help, _choices in flag_specs():
    if _choices is not None:
        _help = f"{_help} One of: {', '.join(str(c) for c in _choices)}."
    _DEFINE[_kind](_name, _default, _help)
# Not a Config field: answered before anything else, without loading TensorFlow.
flags.DEFINE_bool("version", False, "Print tf_simclr's version and exit.")

FLAGS = flags.FLAGS


def program_name(argv0: str) -> str:
    """The command as the user typed it, for messages: `run.py`, `tf-simclr` (the installed
    script), or `python -m tf_simclr` (whose argv[0] is the path of `__main__.py`)."""
    name = os.path.basename(argv0)
    if name == "__main__.py":
        return f"python -m {os.path.basename(os.path.dirname(os.path.abspath(argv0)))}"
    return name or "run.py"


# Set from argv[0] by `parse_flags`; a library caller of `main` gets run.py's name.
PROGRAM = "run.py"


def usage_error(message: str) -> None:
    """One line on stderr and exit code 2: the contract for every bad input."""
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    sys.exit(2)


HELP_FLAGS = ("help", "h", "?", "helpshort", "helpfull", "helpxml")


def parse_flags(argv):
    global PROGRAM
    PROGRAM = program_name(argv[0])
    try:
        return FLAGS(argv)
    except flags.Error as e:
        usage_error(str(e).splitlines()[0])
    except SystemExit as e:
        # absl exits 1 after printing the help; asking for help is not an error.
        asked = any(a.lstrip("-").split("=")[0] in HELP_FLAGS for a in argv[1:])
        if e.code == 1 and asked:
            sys.exit(0)
        raise


def config_from_flags() -> Config:
    return Config(**{name: FLAGS[name].value for name, *_ in flag_specs()})


def given_flags() -> frozenset[str]:
    """The flags set on the command line or in a --flagfile (not left at their default)."""
    return frozenset(name for name, *_ in flag_specs() if FLAGS[name].present)


# Lines TensorFlow's native libraries print while loading, whatever TF_CPP_MIN_LOG_LEVEL
# says (they log before absl's logging is set up, once per library): on a machine without
# a GPU they say so, and none asks for any action.
NATIVE_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",
    "cuda_platform.cc",
    "failed call to cuInit",
    "cuda_executor.cc",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "Unable to register cu",
    "computation_placer.cc",
    "TF-TRT Warning",
)


@contextlib.contextmanager
def _native_noise_hidden(quiet: bool):
    """Inside, the process's stderr (file descriptor 2, where native code writes) goes to
    a temporary file; on exit every line but `NATIVE_NOISE` is written to stderr. Off
    when not `quiet` or when stderr is not a file descriptor (e.g. captured by a test)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if not quiet or fd is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(noise in line for noise in NATIVE_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def main(argv):
    if FLAGS.version:
        print(f"tf_simclr {__version__}")
        return
    if len(argv) > 1:
        usage_error(f"unexpected positional arguments: {' '.join(argv[1:])}")
    config = config_from_flags()
    try:
        config.validate()
    except ConfigError as e:
        usage_error(str(e))
    # TensorFlow loads here, once the flags are known to be good; its native start-up lines
    # are hidden unless the user set TF_CPP_MIN_LOG_LEVEL or asked for --verbosity >= 1.
    with _native_noise_hidden(quiet=not _USER_SET_TF_LOG_LEVEL and FLAGS.verbosity < 1):
        import tensorflow  # noqa: F401

        from tf_simclr import distribute, logs, modes

    try:
        distribute.configure_cpu_devices(config.num_cpu_devices)
        result = modes.run(config, given=given_flags())
    except ConfigError as e:
        usage_error(str(e))
    except ArgumentError as e:  # an argument no flag maps to: still one line
        usage_error(str(e))
    except TrainingInterrupted as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except TrainingDiverged as e:
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        sys.exit(3)
    except WorkerLost as e:
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        sys.exit(4)
    logging.vlog(1, "Done: %s", result)
    summary = logs.summary(result, config.model_dir)
    if summary:  # e.g. not on a worker that is not the chief
        print(summary)


def run() -> None:
    """The command line (`python run.py`, the `tf-simclr` script, `python -m tf_simclr`)."""
    # absl prints the __main__ module's docstring at the top of --help: make it this
    # module's whichever file was started, its commands spelled as the user started it.
    prog = program_name(sys.argv[0])
    sys.modules["__main__"].__doc__ = __doc__.replace(
        "python run.py", "python run.py" if prog == "run.py" else prog
    )
    # --help lists the key flags of the started module (sys.argv[0]): ours, defined here.
    for name in [*(name for name, *_ in flag_specs()), "version"]:
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
    app.run(main, flags_parser=parse_flags)
