"""Errors of the library, in Python terms (no flags, no TensorFlow).

Library functions (data sources, pipelines, strategies, checkpoints) raise
`ArgumentError` naming *their own* argument: `eval_dataset(source, 32,
batch_size=0)` fails with "batch_size=0: must be a positive integer", which is
what a notebook user needs to read. Only the command line knows which flag
supplied that argument; `tf_simclr.config.flags_for` turns the error into a
`ConfigError` naming the flag (`--eval_batch_size=0: must be a positive
integer`) on its way to `run.py`.
"""

from __future__ import annotations

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
