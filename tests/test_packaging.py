"""`pip install .` gives the package and the `tf-simclr` command, which is `run.py`."""

import importlib
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_console_script_is_run_pys_command_line():
    target = pyproject()["project"]["scripts"]["tf-simclr"]
    module_name, _, function = target.partition(":")
    entry = getattr(importlib.import_module(module_name), function)
    assert callable(entry)
    # run.py (kept for `python run.py ...`) and `python -m tf_simclr` start the same function.
    sys.path.insert(0, str(ROOT))
    try:
        import run
    finally:
        sys.path.remove(str(ROOT))
    assert run.run is entry
    main = (ROOT / "tf_simclr" / "__main__.py").read_text()
    assert f"from {module_name} import {function}" in main


def test_the_wheel_holds_every_module_and_needs_no_data_files():
    """setuptools packages the folders with an `__init__.py` (packages.find), and only .py
    files: a subpackage without one, or a data file the code reads, would be missing
    from an installed copy."""
    assert pyproject()["tool"]["setuptools"]["packages"]["find"]["include"] == ["tf_simclr*"]
    package = ROOT / "tf_simclr"
    for folder in [package, *(p for p in package.rglob("*") if p.is_dir())]:
        if folder.name == "__pycache__":
            continue
        files = [f for f in folder.iterdir() if f.is_file()]
        assert all(f.suffix in (".py", ".pyc") for f in files), folder
        if any(f.suffix == ".py" for f in files):
            assert (folder / "__init__.py").exists(), f"{folder} is no package"


def test_python_m_tf_simclr_rejects_a_bad_flag_with_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "tf_simclr", "--no_such_flag=1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # outside the repository
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no_such_flag" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]


# The console script pip writes for `tf-simclr` (pyproject.toml [project.scripts]), minus
# its shebang: run by this interpreter under the name the installed command has.
CONSOLE_SCRIPT = """import sys
from tf_simclr.cli import run
if __name__ == "__main__":
    sys.exit(run())
"""


@pytest.mark.parametrize("program", ["run.py", "python -m tf_simclr", "tf-simclr"])
def test_messages_and_help_name_the_command_the_user_typed(tmp_path, program):
    if program == "run.py":
        command = [sys.executable, str(ROOT / "run.py")]
    elif program == "tf-simclr":
        script = tmp_path / "tf-simclr"
        script.write_text(CONSOLE_SCRIPT)
        command = [sys.executable, str(script)]
    else:
        command = [sys.executable, "-m", "tf_simclr"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(*args):
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
        )

    bad = run("--bogus_flag")
    assert (bad.returncode, bad.stderr) == (
        2,
        f"{program}: error: Unknown command line flag 'bogus_flag'\n",
    )
    helped = run("--help")
    assert helped.returncode == 0, helped.stderr[-2000:]
    first_command = helped.stdout.split("\n\n")[2]
    spelled = "python run.py" if program == "run.py" else program
    assert first_command.strip().startswith(f"{spelled} --flagfile="), first_command
