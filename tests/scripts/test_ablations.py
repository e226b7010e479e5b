"""scripts/ablations.py (+ ablation_arms.py, ablations_report.py): the arms' flag files,
flag parsing, resumable runs, the report."""

import dataclasses
import importlib
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARMS_DIR = ROOT / "experiments" / "ablations"

# The study as the `ARMS` table of scripts/ablations.py defined it before the arms
# became flag files (printed from that table, in its priority order): name, group,
# label, paper direction, kind, overrides of base.flags.
OLD_ARMS = [
    ("base", "augmentation", "crop+flip+colour (base)", "best of the single pairs", "pretrain", {}),
    (
        "no_color",
        "augmentation",
        "crop+flip only",
        "far below crop+colour (Fig. 5/6: colour is what crop needs)",
        "pretrain",
        {"use_color_jitter": False, "use_grayscale": False},
    ),
    ("random_init", "baselines", "random init encoder", "far below SimCLR", "random_init", {}),
    (
        "crop_only",
        "augmentation",
        "crop only",
        "weak alone (Fig. 5 diagonal)",
        "pretrain",
        {"use_crop": True, "use_flip": False, "use_color_jitter": False, "use_grayscale": False},
    ),
    (
        "color_only",
        "augmentation",
        "colour only",
        "weak alone (Fig. 5 diagonal)",
        "pretrain",
        {"use_crop": False, "use_flip": False, "use_color_jitter": True, "use_grayscale": True},
    ),
    (
        "head_none",
        "projection_head",
        "no head",
        "worst (Fig. 8: ~10 points below non-linear)",
        "pretrain",
        {"proj_head_mode": "none"},
    ),
    (
        "head_linear",
        "projection_head",
        "linear head",
        "between none and non-linear (Fig. 8: ~3 points below)",
        "pretrain",
        {"proj_head_mode": "linear", "num_proj_layers": 1},
    ),
    (
        "temp_0.1",
        "loss",
        "l2, T=0.1",
        "T=0.1 best at ImageNet batch 4096 (Table 5); CIFAR uses T=0.5",
        "pretrain",
        {"temperature": 0.1},
    ),
    (
        "temp_1.0",
        "loss",
        "l2, T=1.0",
        "worse than T=0.1/0.5 (Table 5)",
        "pretrain",
        {"temperature": 1.0},
    ),
    (
        "nol2_temp_0.5",
        "loss",
        "no l2, T=0.5",
        "much worse without l2 normalisation (Table 5)",
        "pretrain",
        {"hidden_norm": False},
    ),
    (
        "supervised",
        "baselines",
        "supervised, same epochs",
        "above SimCLR at short training",
        "supervised",
        {
            "train_mode": "finetune",
            "fine_tune_after_block": -1,
            "optimizer": "momentum",
            "learning_rate": 0.1,
            "weight_decay": 0.0005,
            "lineareval_while_pretraining": False,
        },
    ),
    (
        "blur",
        "augmentation",
        "crop+flip+colour+blur",
        "blur helps ImageNet; the paper leaves it out for CIFAR",
        "pretrain",
        {"use_blur": True},
    ),
    (
        "no_grayscale",
        "augmentation",
        "crop+flip+colour, no grayscale",
        "a little worse than with grayscale (Table 1 / B.3)",
        "pretrain",
        {"use_grayscale": False},
    ),
    (
        "head_3layer",
        "projection_head",
        "non-linear, 3 layers",
        "about equal to 2 layers (SimCLRv2: 3 layers help fine-tuning)",
        "pretrain",
        {"num_proj_layers": 3},
    ),
    (
        "batch_128",
        "batch_size",
        "batch 128",
        "below 256 (Fig. 9)",
        "pretrain",
        {"train_batch_size": 128},
    ),
    (
        "batch_512",
        "batch_size",
        "batch 512",
        "above 256 (Fig. 9)",
        "pretrain",
        {"train_batch_size": 512},
    ),
    ("batch_64", "batch_size", "batch 64", "lowest (Fig. 9)", "pretrain", {"train_batch_size": 64}),
    (
        "base_seed1",
        "augmentation",
        "crop+flip+colour (base), seed 1",
        "noise",
        "pretrain",
        {"seed": 1},
    ),
    (
        "no_color_seed1",
        "augmentation",
        "crop+flip only, seed 1",
        "noise",
        "pretrain",
        {"use_color_jitter": False, "use_grayscale": False, "seed": 1},
    ),
    (
        "nol2_temp_0.1",
        "loss",
        "no l2, T=0.1",
        "",
        "pretrain",
        {"hidden_norm": False, "temperature": 0.1},
    ),
    (
        "nol2_temp_1.0",
        "loss",
        "no l2, T=1.0",
        "",
        "pretrain",
        {"hidden_norm": False, "temperature": 1.0},
    ),
    (
        "nol2_lr_0.1",
        "loss",
        "no l2, T=0.5, learning rate 0.1",
        "below l2 at the same rate (Table 5)",
        "pretrain",
        {"hidden_norm": False, "learning_rate": 0.1},
    ),
    ("lr_0.1", "loss", "l2, T=0.5, learning rate 0.1", "", "pretrain", {"learning_rate": 0.1}),
]
# The Config fields base.flags set, with the values the old table's parser gave them.
OLD_BASE = {
    "mode": "train",
    "train_mode": "pretrain",
    "dataset": "image_folder",
    "train_split": "train",
    "eval_split": "test",
    "cache_dataset": True,
    "image_size": 32,
    "resnet_depth": 18,
    "width_multiplier": 0.25,
    "proj_head_mode": "nonlinear",
    "num_proj_layers": 2,
    "proj_out_dim": 128,
    "train_batch_size": 256,
    "train_epochs": 3,
    "warmup_epochs": 0.5,
    "optimizer": "lars",
    "learning_rate": 1.0,
    "learning_rate_scaling": "linear",
    "weight_decay": 0.0001,
    "temperature": 0.5,
    "hidden_norm": True,
    "color_jitter_strength": 0.5,
    "use_crop": True,
    "use_flip": True,
    "use_color_jitter": True,
    "use_grayscale": True,
    "use_blur": False,
    "lineareval_while_pretraining": True,
    "checkpoint_epochs": 1,
    "keep_checkpoint_max": 20,
    "train_summary_steps": 10,
    "verbose": 2,
    "seed": 0,
}


def _script(name):
    sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def arms():
    return _script("ablation_arms")


@pytest.fixture(scope="module")
def ablations():
    return _script("ablations")


@pytest.fixture(scope="module")
def report():
    return _script("ablations_report")


def test_arm_files_are_the_old_table(arms):
    """Every arm's flag file gives the metadata, order and Config of the old `ARMS` table."""
    from tf_simclr.config import Config

    assert [arm.name for arm in arms.ARMS] == [row[0] for row in OLD_ARMS]
    for arm, (name, group, label, paper, kind, overrides) in zip(arms.ARMS, OLD_ARMS, strict=True):
        assert (arm.group, arm.label, arm.paper, arm.kind) == (group, label, paper, kind), name
        assert arm.flags == overrides and [type(v) for v in arm.flags.values()] == [
            type(v) for v in overrides.values()
        ], name
        config = arms.arm_config(arm, "/data", f"/runs/{name}")
        expected = Config(
            **{**OLD_BASE, **overrides, "data_dir": "/data", "model_dir": f"/runs/{name}"}
        )
        assert config == expected, name
        config.validate()
    assert len(arms.ARMS_BY_NAME) == len(arms.ARMS)


def test_arms_cover_the_issue(arms):
    groups = {}
    for arm in arms.ARMS:
        groups.setdefault(arm.group, set()).add(arm.name)
    assert {"base", "no_color", "crop_only", "color_only", "blur", "no_grayscale"} <= groups[
        "augmentation"
    ]
    assert {"head_none", "head_linear", "head_3layer"} <= groups["projection_head"]
    assert {"temp_0.1", "temp_1.0", "nol2_temp_0.5"} <= groups["loss"]
    assert {"batch_64", "batch_128", "batch_512"} <= groups["batch_size"]
    assert {"random_init", "supervised"} <= groups["baselines"]
    assert {"base_seed1", "no_color_seed1"} <= groups["augmentation"]


def test_arm_files_are_ordered_by_priority_and_checked(arms, tmp_path):
    (tmp_path / "base.flags").write_text(
        "# priority: 20\n# group: g\n# label: base\n# kind: pretrain\n--seed=0\n"
    )
    (tmp_path / "first.flags").write_text(
        "# priority: 5\n# group: g\n# label: l: with a colon\n# paper:\n# kind: pretrain\n"
        "# free text\n--flagfile=base.flags\n--nouse_blur\n--seed=3\n"
    )
    found = arms.load_arms(str(tmp_path))
    assert [arm.name for arm in found] == ["first", "base"]
    assert found[0].label == "l: with a colon" and found[0].paper == ""
    assert found[0].flags == {"use_blur": False, "seed": 3} and found[1].flags == {}
    (tmp_path / "same.flags").write_text(
        "# priority: 5\n# group: g\n# label: x\n# kind: pretrain\n"
    )
    with pytest.raises(SystemExit, match="same priority 5"):
        arms.load_arms(str(tmp_path))
    (tmp_path / "same.flags").write_text("# group: g\n# label: x\n# kind: pretrain\n")
    with pytest.raises(SystemExit, match="no `# priority: ...` line"):
        arms.load_arms(str(tmp_path))
    (tmp_path / "same.flags").write_text("# priority: 1\n# group: g\n# label: x\n# kind: other\n")
    with pytest.raises(SystemExit, match="kind 'other'"):
        arms.load_arms(str(tmp_path))


def _run_py_config(args, cwd=ROOT):
    code = (
        f"import sys, json, dataclasses; sys.path.insert(0, {str(ROOT)!r}); import run;"
        "run.parse_flags(['run.py'] + sys.argv[1:]);"
        "print(json.dumps(dataclasses.asdict(run.config_from_flags())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=cwd
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_flagfile_parsing_matches_run_py(arms):
    """`tf_simclr.flagfiles` gives the Config run.py builds from the same flags."""
    from tf_simclr import flagfiles

    # The flags the study passes to run.py (booleans, a negative integer, floats).
    arm = arms.ARMS_BY_NAME["supervised"]
    flags = arms.arm_flags(arm, "/data", "/runs/x")
    assert _run_py_config([f"--{k}={v}" for k, v in flags.items()]) == dataclasses.asdict(
        flagfiles.config_from_flags(flags)
    )
    # The arm's flag file itself, from the repository root (absl reads the nested
    # experiments/ablations/base.flags relative to the working directory); flagfiles
    # finds it from anywhere.
    path = arms.ARMS_BY_NAME["no_color"].path
    want = _run_py_config([f"--flagfile={path}", "--use_blur"], cwd=ROOT)
    assert want == dataclasses.asdict(flagfiles.load(path, {"use_blur": "true"}))
    assert want["use_color_jitter"] is False and want["resnet_depth"] == 18


def test_unknown_flag_and_bad_set_are_clear_errors(ablations, arms):
    from tf_simclr.config import ConfigError

    with pytest.raises(ConfigError, match="no_such_flag.*is not a run.py flag"):
        arms.arm_config(arms.ARMS[0], "/d", "/m", {"no_such_flag": "1"})
    with pytest.raises(ConfigError, match="--seed=x: expects int"):
        arms.arm_config(arms.ARMS[0], "/d", "/m", {"seed": "x"})
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


def test_report_writes_tables_between_markers_and_figures(ablations, arms, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for arm, knn in (("base", 0.5), ("no_color", 0.3), ("head_none", 0.4), ("base_seed1", 0.48)):
        arm = arms.ARMS_BY_NAME[arm]
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


@pytest.mark.slow  # 43 s, the slowest default test; the flag-file and report tests stay
def test_run_trains_evaluates_records_and_skips_done_arms(
    ablations, train_test_folder, tmp_path, capsys
):
    """A tiny end-to-end study of two arms: JSON written; a second `run` trains nothing.

    The runner's `main` runs in this process (each arm still trains in its own run.py)."""
    command = [
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
    ablations.main(command)
    base = json.loads((tmp_path / "results" / "base.json").read_text())
    # 16 * 2 // 8 + 1 = 5 steps (the reference's count), epochs of 2: checkpoints 2, 4, 5.
    assert base["status"] == "complete" and base["steps"] == 5 and base["steps_per_epoch"] == 2
    assert base["config"]["train_epochs"] == 2 and base["extra_flags"]["train_epochs"] == "2"
    assert [step for step, _ in base["knn_curve"]] == [2, 4, 5]
    assert set(base["metrics"]) >= {"knn_top1", "linear_top1", "probe_top1"}
    assert all(0.0 <= base["metrics"][k] <= 1.0 for k in ("knn_top1", "linear_top1"))
    assert [step for step, _ in base["curves"]["loss"]][-1] == 5
    random_init = json.loads((tmp_path / "results" / "random_init.json").read_text())
    assert random_init["steps"] == 0 and "probe_top1" not in random_init["metrics"]
    assert not (tmp_path / "work" / "random_init" / "checkpoint").exists()

    before = (tmp_path / "results" / "base.json").stat().st_mtime_ns
    capsys.readouterr()
    ablations.main(command)
    second = capsys.readouterr().out
    assert "base: done already" in second and "random_init: done already" in second
    assert (tmp_path / "results" / "base.json").stat().st_mtime_ns == before

    # Training again (--force; run.py resumes at the final step) adds to the arm's
    # training time instead of replacing it.
    ablations.main([*command, "--force", "--arms=base"])
    runs = (tmp_path / "work" / "base" / "train_seconds.txt").read_text().split()
    again = json.loads((tmp_path / "results" / "base.json").read_text())
    assert len(runs) == 2 and float(runs[0]) == pytest.approx(base["train_seconds"], abs=0.1)
    assert again["train_seconds"] == pytest.approx(sum(map(float, runs)), abs=0.1)


def test_run_writes_new_results_apart_from_the_committed_ones(
    ablations, train_test_folder, tmp_path, monkeypatch, capsys
):
    """Issue 23: in a fresh clone `run` took the committed JSON files for done arms and
    trained nothing. By default it now writes to <work_dir>/results; the committed files
    count (and are replaced) only when --results_dir names them (and with --force)."""
    committed = pathlib.Path(ablations.RESULTS_DIR)
    assert (committed / "base.json").exists() and (committed / "no_color.json").exists()
    trained = []
    monkeypatch.setattr(
        ablations,
        "run_arm",
        lambda arm, data, work, results, extra: trained.append((arm.name, results)),
    )
    work = tmp_path / "work"
    command = ["run", f"--data_dir={train_test_folder}", f"--work_dir={work}"]
    ablations.main([*command, "--arms=base,no_color"])
    fresh = str(work / "results")
    assert trained == [("base", fresh), ("no_color", fresh)]
    assert "done already" not in capsys.readouterr().out

    trained.clear()
    ablations.main([*command, "--arms=base", f"--results_dir={committed}"])
    assert trained == [] and "base: done already" in capsys.readouterr().out
    ablations.main([*command, "--arms=base", f"--results_dir={committed}", "--force"])
    assert trained == [("base", str(committed))]


def test_run_without_data_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablations.py"), "run", f"--data_dir={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "holds no train/ folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_diverged_arm_records_and_reports_the_nan_step(ablations, arms, report, tmp_path):
    model_dir = tmp_path / "arm"
    model_dir.mkdir()
    assert ablations.diverged_step(str(model_dir)) is None  # no log yet
    (model_dir / "train_log.txt").write_text(
        "195/195 - loss: nan\nrun.py: error: the training loss is NaN or Inf at step 74; "
        "stopped without saving\n"
    )
    assert ablations.diverged_step(str(model_dir)) == 74
    arm = arms.ARMS_BY_NAME["nol2_temp_0.5"]
    result = {**_fake_result(arm, 0.0), "status": "diverged", "diverged_at_step": 74}
    del result["metrics"]
    table = report.markdown_table("loss", {arm.name: result})
    assert "| no l2, T=0.5 (diverged: NaN loss at step 74) | – | – | – |" in table


def _curve_result(arm, losses, status="complete", knn=None):
    result = {
        "arm": arm,
        "status": status,
        "steps_per_epoch": 10,
        "curves": {"loss": [[10 * (i + 1), v] for i, v in enumerate(losses)]},
    }
    if knn is not None:
        result["knn_curve"] = [[10, knn], [20, knn + 0.01]]
    if status == "diverged":
        result["diverged_at_step"] = 10 * len(losses)
    return result


def test_loss_limits_come_from_the_arms_that_did_not_diverge(report):
    """The committed loss group: a diverged arm reached 2.8e33 and set the y-axis, every
    other curve a flat line at the bottom."""
    base = _curve_result("base", [12.0, 11.0, 10.0])
    diverged = _curve_result("nol2_temp_1.0", [90.0, 8e16, 2.8e33], status="diverged")
    bottom, top, log = report.loss_limits({"base": base, "nol2_temp_1.0": diverged})
    assert (log, bottom < 10.0, 12.0 < top < 13.0) == (False, True, True), (bottom, top)
    # A complete arm starting near 300 (no l2 normalisation) next to ones near 10: log scale.
    no_l2 = _curve_result("nol2_lr_0.1", [271.0, 9.7])
    bottom, top, log = report.loss_limits({"base": base, "nol2_lr_0.1": no_l2, "d": diverged})
    assert log and 271.0 < top < 400.0 and 5.0 < bottom < 9.7
    assert report.loss_limits({"nol2_temp_1.0": diverged}) is None  # nothing to scale by
    assert report.clip_to([90.0, 8e16, float("nan")], 13.0) == [13.0, 13.0, 13.0]
    assert report.clip_to([9.0, 12.5], 13.0) == [9.0, 12.5]


def test_each_arm_has_one_colour_in_both_panels_and_stays_in_the_loss_panel(
    report, tmp_path, monkeypatch
):
    """An arm without kNN points (here the diverged one) shifted the colours of the arms
    after it in the kNN panel: nol2_lr_0.1 was C2 in one panel and C1 in the other."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    results = {
        "base": _curve_result("base", [12.0, 11.0], knn=0.4),
        "nol2_temp_1.0": _curve_result("nol2_temp_1.0", [90.0, 2.8e33], status="diverged"),
        "nol2_lr_0.1": _curve_result("nol2_lr_0.1", [271.0, 9.7], knn=0.42),
    }
    assert report.plot_curves(results, str(tmp_path / "curves.png"))
    (figure,) = figures
    loss_ax, knn_ax = figure.axes
    colours = [{}, {}]
    for colour, ax in zip(colours, (loss_ax, knn_ax), strict=True):
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):  # the diverged arm's x is unlabelled
                colour[line.get_label().split(" ")[0]] = to_hex(line.get_color())
    assert colours[1] == {k: v for k, v in colours[0].items() if k != "nol2_temp_1.0"}
    assert len(set(colours[0].values())) == 3
    top = loss_ax.get_ylim()[1]
    assert max(max(line.get_ydata()) for line in loss_ax.get_lines()) <= top < 400.0
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert "nol2_temp_1.0 (diverged at step 20)" in labels
