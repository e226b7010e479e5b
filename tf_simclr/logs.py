"""A log a user can read: library lines that say nothing actionable are dropped, progress
as plain lines where no terminal shows a progress bar, and a short summary at the end.

A short run on two replicas logged ~140 `cross_device_ops` lines, each split load five
TFDS lines (one of them "fields info.[module_name] differ on disk and in the code"), and
every export a warning that captured variables were renamed in the signature. None of
them tells the user anything to do. `quiet_library_logs()` filters them out of the
`absl` and `tensorflow` loggers, unless absl's verbosity is above INFO
(`run.py --verbosity=1`, or `-v 1`), which brings every line back.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys

from absl import logging

# INFO (and DEBUG) lines dropped: all of TFDS (it logs five lines per split loaded; our own
# line names the split and its size), and, by the file name of the logging call, those
# starting with the prefix (or one of the prefixes; "": all).
_INFO_NOISE = {
    "cross_device_ops.py": "",  # one line per collective op built under a MirroredStrategy
    "functional_saver.py": "Sharding callback duration",
    "fingerprinting_utils.py": "Writing fingerprint",
    "builder_impl.py": "Assets written to",
    # tf.saved_model renames the captured variables among a signature's inputs; harmless.
    "signature_serialization.py": "Function `",
    # Loading a SavedModel written without a fingerprint (the reference's): nothing to do.
    "load.py": ("Fingerprint not found", "path_and_singleprint metric could not be logged"),
}

# WARNING lines dropped, the same way. Loading a reference SavedModel (--mode=import, a
# reference --checkpoint or --teacher) warns once per function with a custom gradient,
# ~200 lines for a ResNet-18: we only run that module forward, to compare or to teach; the
# model that trains is ours, whose gradients are its own.
_WARNING_NOISE = {
    "function_deserialization.py": "Importing a function (",
}


# TFDS warns this when it looks for a dataset that is not prepared; our error says what to do.
_TFDS_WARNINGS = ("Variant folder",)


class _LibraryNoise(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        if logging.get_verbosity() > logging.INFO:
            return True  # --verbosity=1 or more: everything
        path = record.pathname or ""
        tfds = f"{os.sep}tensorflow_datasets{os.sep}" in path
        if record.levelno > std_logging.WARNING:
            return True
        if record.levelno == std_logging.WARNING:
            if tfds:
                return not record.getMessage().startswith(_TFDS_WARNINGS)
            prefix = _WARNING_NOISE.get(os.path.basename(path))
            return prefix is None or not record.getMessage().startswith(prefix)
        if tfds:
            return False
        prefix = _INFO_NOISE.get(os.path.basename(path))
        return prefix is None or not record.getMessage().startswith(prefix)


_FILTER = _LibraryNoise()


def quiet_library_logs() -> None:
    """Drops the library lines above from the `absl` and `tensorflow` loggers (idempotent)."""
    for name in ("absl", "tensorflow"):
        logger = std_logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def interactive(stream=None) -> bool:
    """Whether `stream` (default stdout) is a terminal. Keras's progress bar assumes one on
    any POSIX system: in a log file or a CI log it writes carriage returns and colour codes
    at every update, so progress there is plain lines instead (`callbacks.ProgressLog`)."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _numbers(values: dict, skip) -> str:
    return ", ".join(
        f"{name} {_number(value)}"
        for name, value in values.items()
        if name not in skip
        and not name.endswith("num_examples")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    )


# Bookkeeping in the results, not metrics of the model.
_TRAIN_SKIP = {"global_step", "start_step", "seconds", "learning_rate", "weight_decay"}
_EVAL_SKIP = {"global_step", "eval_seconds", "evaluated_steps", "skipped_steps"}


def summary(result: dict, model_dir: str) -> str:
    """A few lines on what a run (`tf_simclr.modes.run`'s `result`) did and where its
    results are: the final training and evaluation metrics (4 significant digits), the
    files written in `model_dir`, the SavedModel, and the TensorBoard command."""
    lines = []
    train = result.get("train")
    if train:
        lines.append(
            f"Trained to step {train.get('global_step')} (from {train.get('start_step')}) in "
            f"{train.get('seconds', 0):.0f} s: {_numbers(train, _TRAIN_SKIP)}"
        )
    evaluation = result.get("eval")
    if evaluation:
        counted = [k for k in evaluation if k.endswith("num_examples") and k[:5] != "split"]
        of = ""
        if counted and "split_num_examples" in evaluation:
            of = f", {evaluation[counted[0]]} of {evaluation['split_num_examples']} examples"
        lines.append(
            f"Evaluated step {evaluation.get('global_step')} on {evaluation.get('eval_split')}"
            f"{of}{' (partial)' if evaluation.get('partial_eval') else ''}: "
            f"{_numbers(evaluation, _EVAL_SKIP)}"
        )
    imported = result.get("import")
    if imported:
        difference = imported.get("max_relative_difference")
        lines.append(
            f"Imported {imported.get('architecture')}"
            + ("" if difference is None else f" (largest relative difference {difference:.2g})")
        )
    for mode, value in result.items():
        if mode in ("train", "eval", "import", "export"):
            continue
        if isinstance(value, dict):
            value = ", ".join(
                f"{k} {_number(v)}" for k, v in value.items() if isinstance(v, (str, int, float))
            )
        lines.append(f"{mode}: {value}")
    files = [
        name
        for name in ("train_result.json", "eval_results.json")
        if os.path.exists(os.path.join(model_dir, name))
    ]
    if files or train or evaluation or imported:
        lines.append(f"Results in {model_dir}: {', '.join(files) or 'checkpoints'}")
    saved_model = result.get("export") or (imported or {}).get("saved_model")
    if saved_model:
        lines.append(f"SavedModel: {saved_model}")
    if train or evaluation:
        lines.append(f"TensorBoard: tensorboard --logdir={model_dir}")
    return "\n".join(lines)
