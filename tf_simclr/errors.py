"""Errors of the library and of the command line, in plain Python (no TensorFlow).

Library functions (data sources, pipelines, strategies, checkpoints) raise
`ArgumentError` naming *their own* argument: `eval_dataset(source, 32,
batch_size=0)` fails with "batch_size=0: must be a positive integer", which is
what a notebook user needs to read. Only the command line knows which flag
supplied that argument; `tf_simclr.config.flags_for` turns the error into a
`ConfigError` naming the flag (`--eval_batch_size=0: must be a positive
integer`) on its way to `run.py`; `ConfigError` lives here so the config stays a
leaf. The exceptions that end a training run
(`TrainingInterrupted`, `TrainingDiverged`, `WorkerLost`) live here too, so the
command line handles them without importing the training code.
"""

from __future__ import annotations

import signal

UNSET = object()  # `value` of an error about an argument that was not given


class ArgumentError(ValueError):
    """A bad argument value: one line naming the argument, its value and what is expected.

    Attributes:
      argument: the parameter name, e.g. ``"batch_size"``, ``"data_dir"``.
      value: the offending value, or `UNSET` when it was not given.
      message: one line saying what is wrong and what is expected.
    """

    def __init__(self, argument: str, message: str, value: object = UNSET):
        self.argument = argument
        self.value = value
        self.message = " ".join(str(message).split())  # always one line
        shown = argument if value is UNSET else f"{argument}={value!r}"
        super().__init__(f"{shown}: {self.message}")


class ConfigError(ValueError):
    """A bad flag value: one line naming the flag and what is allowed.

    `run.py` prints it and exits with code 2, before anything is written.
    """

    def __init__(self, flag: str, message: str, value: object = None):
        self.flag = flag
        self.value = value
        self.message = " ".join(str(message).split())  # always one line
        prefix = f"--{flag}" if value is None else f"--{flag}={value}"
        super().__init__(f"{prefix}: {self.message}")


# The ends of a training run that are not bad input; `tf_simclr.cli` gives each its exit
# code (128 + the signal, 3, 4) and `tf_simclr.callbacks` / `training` raise them.


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, step: int):
        self.signum, self.step = signum, step
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} at step {step} after saving its checkpoint; "
            "run the same command again to resume"
        )


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN/Inf; the last good checkpoint is untouched."""

    def __init__(self, step: int, what: str):
        self.step = step
        super().__init__(
            f"{what} is NaN or Inf at step {step}; stopped without saving, the last good "
            "checkpoint is untouched. Likely causes: a learning rate too high for this batch "
            "size and optimizer (try a lower --learning_rate or --optimizer=lars), float16 "
            "overflow (use bfloat16 or float32), or corrupt input."
        )


class WorkerLost(RuntimeError):
    """A peer of a multi-worker job stopped answering; its collectives were aborted."""

    def __init__(self, step: int, cause: BaseException):
        self.step = step
        # TensorFlow prefixes the cause with "Graph execution error" and the Python stack
        # of the op; keep what the runtime said (which task stopped sending heartbeats).
        lines = str(getattr(cause, "message", cause)).splitlines()
        said = [
            line.strip()
            for line in lines
            if line.strip()
            and not line.strip().startswith(("Graph execution error", "Detected at node", "File "))
            and not line.startswith("  ")
        ]
        detail = " ".join(" ".join(said).split())[:300]
        super().__init__(
            f"lost a worker of the multi-worker job at step {step} ({type(cause).__name__}: "
            f"{detail}); restart all workers with the same command to resume from the last "
            "checkpoint"
        )
