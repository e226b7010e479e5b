"""`python -m tf_simclr`: the command line of run.py (`tf_simclr/cli.py`)."""

from tf_simclr.cli import run

run()
