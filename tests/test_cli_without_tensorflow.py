"""`--help` and a bad flag answer before TensorFlow loads: run.py with TensorFlow blocked.

In the subprocess a finder first in `sys.meta_path` refuses TensorFlow, Keras and TFDS,
as if they were not installed: these runs succeed only if nothing on their path imports them.
"""

import subprocess
import sys

import pytest

from tests import _harness

ROOT = _harness.ROOT
BLOCKED = ("tensorflow", "keras", "tensorflow_datasets", "tf_keras")
BLOCK = f"""
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"{{name}} is blocked by the test", name=name)

sys.meta_path.insert(0, Blocked())
"""
# Blocks the modules, then runs run.py as `python run.py ARGS` would.
BLOCK_THEN_RUN = (
    BLOCK
    + """
import runpy
sys.argv = ["run.py", *sys.argv[1:]]
runpy.run_path("run.py", run_name="__main__")
"""
)


def run_blocked(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_THEN_RUN, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_block_works():
    """Negative control: with the block, importing the training code fails."""
    code = BLOCK + "import tf_simclr.training"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 1 and b"is blocked by the test" in result.stderr


def test_importing_the_cli_loads_no_tensorflow():
    code = (
        BLOCK + "import tf_simclr.cli\n"
        f"loaded = [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}]\n"
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_help_without_tensorflow():
    result = run_blocked("--help")
    assert result.returncode == 0, result.stderr
    assert "--train_batch_size" in result.stdout and "--momentum" in result.stdout


def test_version_without_tensorflow():
    """`--version` prints our version alone and exits 0, with or without other flags."""
    import tf_simclr

    for args in (["--version"], ["--version", "--dataset=cifar10"]):
        result = run_blocked(*args)
        assert (result.returncode, result.stdout, result.stderr) == (
            0,
            f"tf_simclr {tf_simclr.__version__}\n",
            "",
        ), args


@pytest.mark.parametrize(
    "args, line",
    [
        (["--bogus_flag"], "run.py: error: Unknown command line flag 'bogus_flag'"),
        (
            ["--momentum=abc"],
            "run.py: error: flag --momentum=abc: could not convert string to float: 'abc'",
        ),
        (
            ["--train_batch_size=-1", "--dataset=cifar10", "--model_dir=/nonexistent/run"],
            "run.py: error: --train_batch_size: must be >= 1, got -1",
        ),
        (
            ["--momentum=1.5", "--dataset=cifar10", "--model_dir=/nonexistent/run"],
            "run.py: error: --momentum: must be in [0, 1], got 1.5",
        ),
        (
            ["--shuffle_buffer=-1", "--dataset=cifar10", "--model_dir=/nonexistent/run"],
            "run.py: error: --shuffle_buffer: must be >= 0, got -1 "
            "(0: max(10 * batch, 1000), capped at the split)",
        ),
        (
            ["--batch_norm_decay=1", "--dataset=cifar10", "--model_dir=/nonexistent/run"],
            "run.py: error: --batch_norm_decay: must be in [0, 1), got 1.0",
        ),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2_without_tensorflow(args, line):
    result = run_blocked(*args)
    assert (result.returncode, result.stderr.splitlines()) == (2, [line])
