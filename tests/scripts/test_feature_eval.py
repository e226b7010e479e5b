"""scripts/feature_eval.py: its own flags plus run.py's, a trained and a random encoder."""

import importlib
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "feature_eval.py"


@pytest.fixture(scope="module")
def feature_eval():
    sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("feature_eval")


def test_own_flags_and_run_py_flags(feature_eval, tmp_path):
    (tmp_path / "a.flags").write_text("--seed=1\n--knn_k=7\n")
    options, values = feature_eval.parse_args(
        [f"--flagfile={tmp_path / 'a.flags'}", "--random_init", "--seed=2", "--output=o.json"]
    )
    assert options.random_init is True and options.output == "o.json"
    assert options.probe_epochs == 30
    assert values == {"seed": "2", "knn_k": "7"}
    options, _ = feature_eval.parse_args(["--random_init=false", "--probe_epochs=3"])
    assert options.random_init is False and options.probe_epochs == 3


def _feature_eval(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def _feature_eval_in_process(feature_eval, capsys, *args):
    """feature_eval's main in this process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        feature_eval.main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.slow  # 30 s: trains, then evaluates two encoders end to end
def test_trained_and_random_encoder(feature_eval, train_test_folder, tmp_path, capsys):
    """The trained encoder and the bad input in process, the random one as a script."""
    common = [
        "--dataset=image_folder",
        f"--data_dir={train_test_folder}",
        "--eval_split=test",
        "--image_size=16",
        "--resnet_depth=18",
        "--width_multiplier=0.125",
        "--train_batch_size=8",
        "--eval_batch_size=16",
        "--knn_k=5",
        "--verbose=0",
    ]
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("\n".join(common) + "\n")
    model_dir = tmp_path / "model"
    trained = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), f"--flagfile={flagfile}", "--train_epochs=1"]
        + [f"--model_dir={model_dir}", "--train_summary_steps=1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]

    output = tmp_path / "out" / "trained.json"
    code, stderr = _feature_eval_in_process(
        feature_eval,
        capsys,
        f"--flagfile={flagfile}",
        f"--model_dir={model_dir}",
        "--probe_epochs=1",
        f"--output={output}",
    )
    assert code == 0, stderr[-2000:]
    result = json.loads(output.read_text())
    assert result["encoder"] == f"{model_dir} step 3" and result["knn_k"] == 5
    assert 0.0 <= result["knn_top1"] <= 1.0 and result["feature_dim"] == 64

    output = tmp_path / "out" / "random.json"
    done = _feature_eval(
        f"--flagfile={flagfile}",
        f"--model_dir={tmp_path / 'none'}",
        "--random_init",
        "--probe_epochs=1",
        f"--output={output}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(output.read_text())["encoder"] == "random_init"

    # Bad input: one line naming the flag, exit 2.
    code, stderr = _feature_eval_in_process(
        feature_eval, capsys, f"--flagfile={flagfile}", f"--model_dir={tmp_path / 'none'}"
    )
    assert code == 2 and "feature_eval.py: error: --model_dir" in stderr
    code, stderr = _feature_eval_in_process(
        feature_eval, capsys, "--no_such_flag=1", f"--model_dir={model_dir}"
    )
    assert code == 2 and "--no_such_flag: is not a run.py flag" in stderr
