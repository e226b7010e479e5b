"""scripts/ablations.py: arm definitions, flag parsing, resumable runs, the report."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ablations():
    spec = importlib.util.spec_from_file_location("ablations", ROOT / "scripts" / "ablations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablations"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_every_arm_is_a_valid_config(ablations):
    for arm in ablations.ARMS:
        config = ablations.arm_config(arm, "/data", f"/runs/{arm.name}")
        config.validate()
        for name, value in arm.flags.items():
            assert getattr(config, name) == value, (arm.name, name)


def test_arms_cover_the_issue(ablations):
    groups = {}
    for arm in ablations.ARMS:
        groups.setdefault(arm.group, set()).add(arm.name)
    assert {"base", "no_color", "crop_only", "color_only", "blur", "no_grayscale"} <= groups[
        "augmentation"
    ]
    assert {"head_none", "head_linear", "head_3layer"} <= groups["projection_head"]
    assert {"temp_0.1", "temp_1.0", "nol2_temp_0.5"} <= groups["loss"]
    assert {"batch_64", "batch_128", "batch_512"} <= groups["batch_size"]
    assert {"random_init", "supervised"} <= groups["baselines"]
    assert {"base_seed1", "no_color_seed1"} <= groups["augmentation"]
    assert len(ablations.ARMS_BY_NAME) == len(ablations.ARMS)


def test_flagfile_parsing_matches_run_py(ablations):
    """The study's own flag parsing gives the Config run.py builds from the same flags."""
    arm = ablations.ARMS_BY_NAME["no_color"]
    flags = ablations.arm_flags(arm, "/data", "/runs/x")
    code = (
        f"import sys, json, dataclasses; sys.path.insert(0, {str(ROOT)!r}); import run;"
        "run.parse_flags(['run.py'] + sys.argv[1:]);"
        "print(json.dumps(dataclasses.asdict(run.config_from_flags())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code] + [f"--{k}={v}" for k, v in flags.items()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import dataclasses

    assert json.loads(out.strip().splitlines()[-1]) == dataclasses.asdict(
        ablations.arm_config(arm, "/data", "/runs/x")
    )


def test_unknown_flag_and_bad_set_are_clear_errors(ablations):
    from tf_simclr.config import ConfigError

    with pytest.raises(ConfigError, match="no_such_flag"):
        ablations.arm_config(ablations.ARMS[0], "/d", "/m", {"no_such_flag": "1"})
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        ablations.parse_set(["train_epochs"])
    assert ablations.parse_set(["--train_epochs=2", "seed=3"]) == {"train_epochs": "2", "seed": "3"}


def _fake_result(arm, knn):
    return {
        "arm": arm.name,
        "group": arm.group,
        "status": "complete",
        "steps": 10,
        "steps_per_epoch": 5,
        "train_seconds": 120.0,
        "metrics": {"knn_top1": knn, "linear_top1": knn + 0.01, "probe_top1": knn - 0.01},
        "knn_curve": [[5, knn - 0.05], [10, knn]],
        "curves": {"loss": [[1, 9.0], [10, 8.0]]},
    }


def test_report_writes_tables_between_markers_and_figures(ablations, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for arm, knn in (("base", 0.5), ("no_color", 0.3), ("head_none", 0.4), ("base_seed1", 0.48)):
        arm = ablations.ARMS_BY_NAME[arm]
        (results / f"{arm.name}.json").write_text(json.dumps(_fake_result(arm, knn)))
    markdown = tmp_path / "results.md"
    markdown.write_text(
        "intro\n<!-- ablations:augmentation -->\nold\n<!-- /ablations:augmentation -->\n"
        "<!-- ablations:projection_head -->\n<!-- /ablations:projection_head -->\nend\n"
    )
    figures = tmp_path / "figures"
    ablations.main(
        ["report", f"--results_dir={results}", f"--figures_dir={figures}", f"--markdown={markdown}"]
    )
    text = markdown.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "| crop+flip+colour (base) | 50.0 | 51.0 | 49.0 |  | 10 | 2 |" in text
    # Differences to the base: -20 points is far outside the seed noise (|0.5 - 0.48|
    # = 2 points); the repeat itself, -2 / -2, is within twice it.
    assert "| crop+flip only | 30.0 | 31.0 | 29.0 | -20.0 / -20.0 | 10 |" in text
    assert "| crop+flip+colour (base), seed 1 | 48.0 | 49.0 | 47.0 | -2.0 / -2.0 (noise) |" in text
    assert "Seed noise (mean |seed 0 - seed 1| over 1 repeated arm): kNN 2.0, linear 2.0" in text
    assert "| crop only | not run yet |" in text
    assert "| no head | 40.0 | 41.0 | 39.0 | -10.0 / -10.0 |" in text  # base as reference
    assert "| non-linear, 2 layers (base) | 50.0 |" in text
    for group in ("augmentation", "projection_head", "curves_augmentation"):
        assert (figures / f"ablation_{group}.png").stat().st_size > 1000


def test_run_trains_evaluates_records_and_skips_done_arms(train_test_folder, tmp_path):
    """A tiny end-to-end study of two arms: JSON written; a second `run` trains nothing."""
    command = [
        sys.executable,
        str(ROOT / "scripts" / "ablations.py"),
        "run",
        f"--data_dir={train_test_folder}",
        f"--work_dir={tmp_path / 'work'}",
        f"--results_dir={tmp_path / 'results'}",
        "--arms=base,random_init",
        "--set=train_epochs=2",
        "--set=train_batch_size=8",
        "--set=image_size=16",
        "--set=knn_k=5",
        "--set=eval_batch_size=16",
        "--set=train_summary_steps=1",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    base = json.loads((tmp_path / "results" / "base.json").read_text())
    assert base["status"] == "complete" and base["steps"] == 4 and base["steps_per_epoch"] == 2
    assert base["config"]["train_epochs"] == 2 and base["extra_flags"]["train_epochs"] == "2"
    assert [step for step, _ in base["knn_curve"]] == [2, 4]
    assert set(base["metrics"]) >= {"knn_top1", "linear_top1", "probe_top1"}
    assert all(0.0 <= base["metrics"][k] <= 1.0 for k in ("knn_top1", "linear_top1"))
    assert [step for step, _ in base["curves"]["loss"]][-1] == 4
    random_init = json.loads((tmp_path / "results" / "random_init.json").read_text())
    assert random_init["steps"] == 0 and "probe_top1" not in random_init["metrics"]
    assert not (tmp_path / "work" / "random_init" / "checkpoint").exists()

    before = (tmp_path / "results" / "base.json").stat().st_mtime_ns
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0
    assert "base: done already" in second.stdout and "random_init: done already" in second.stdout
    assert (tmp_path / "results" / "base.json").stat().st_mtime_ns == before

    # Training again (--force; run.py resumes at the final step) adds to the arm's
    # training time instead of replacing it.
    third = subprocess.run(
        [*command, "--force", "--arms=base"], capture_output=True, text=True, timeout=300
    )
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-2000:]
    runs = (tmp_path / "work" / "base" / "train_seconds.txt").read_text().split()
    again = json.loads((tmp_path / "results" / "base.json").read_text())
    assert len(runs) == 2 and float(runs[0]) == pytest.approx(base["train_seconds"], abs=0.1)
    assert again["train_seconds"] == pytest.approx(sum(map(float, runs)), abs=0.1)


def test_run_without_data_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablations.py"), "run", f"--data_dir={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "holds no train/ folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_diverged_arm_records_and_reports_the_nan_step(ablations, tmp_path):
    model_dir = tmp_path / "arm"
    model_dir.mkdir()
    assert ablations.diverged_step(str(model_dir)) is None  # no log yet
    (model_dir / "train_log.txt").write_text(
        "195/195 - loss: nan\nrun.py: error: the training loss is NaN or Inf at step 74; "
        "stopped without saving\n"
    )
    assert ablations.diverged_step(str(model_dir)) == 74
    arm = ablations.ARMS_BY_NAME["nol2_temp_0.5"]
    result = {**_fake_result(arm, 0.0), "status": "diverged", "diverged_at_step": 74}
    del result["metrics"]
    table = ablations.markdown_table("loss", {arm.name: result})
    assert "| no l2, T=0.5 (diverged: NaN loss at step 74) | – | – | – |" in table
