"""The CIFAR-10 ablation study (issue 6): named arms, resumable runs, report.

    python scripts/ablations.py list
    python scripts/ablations.py run --data_dir=/tmp/data/cifar10_jpg --work_dir=/tmp/ablations
    python scripts/ablations.py run ... --arms=base,no_color     # only these
    python scripts/ablations.py report                           # figures + tables

Every arm is `experiments/ablations/base.flags` plus a few flag overrides (the
`ARMS` table below, in priority order: a partial study holds the most telling
arms). `run` trains each missing arm with `run.py` in a subprocess (a killed or
interrupted arm resumes from its last checkpoint when `run` is started again),
then evaluates it the same way as every other arm:

- weighted kNN top-1 on the test split (k=200, cosine, T=0.1), at the end and
  at every epoch's checkpoint (the kNN curve);
- linear classifier on standardised frozen encoder features (30 epochs);
- the online linear probe trained during pretraining (top-1/top-5).

It writes one JSON per arm to `docs/results/ablations/<arm>.json` (config,
steps, wall clock, metrics, loss curves) as soon as the arm is done; arms with a
JSON are skipped, so the study can run across several sittings. `report` reads
the JSON files, writes bar charts and curves to `docs/figures/` and rewrites the
tables between the `<!-- ablations:GROUP -->` markers of `docs/results.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_FLAGS = os.path.join(ROOT, "experiments", "ablations", "base.flags")
RESULTS_DIR = os.path.join(ROOT, "docs", "results", "ablations")
FIGURES_DIR = os.path.join(ROOT, "docs", "figures")
RESULTS_MD = os.path.join(ROOT, "docs", "results.md")


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    group: str
    label: str  # short text for tables and charts
    flags: dict  # overrides of base.flags
    paper: str = ""  # the direction the paper reports for this arm
    kind: str = "pretrain"  # pretrain | random_init | supervised


_NO_AUG = {"use_crop": False, "use_flip": False, "use_color_jitter": False, "use_grayscale": False}
SUPERVISED = {
    "train_mode": "finetune",
    "fine_tune_after_block": -1,
    "optimizer": "momentum",
    "learning_rate": 0.1,
    "weight_decay": 5e-4,
    "lineareval_while_pretraining": False,
}

# Priority order: `run` trains the arms in this order.
ARMS = [
    Arm("base", "augmentation", "crop+flip+colour (base)", {}, "best of the single pairs"),
    Arm(
        "no_color",
        "augmentation",
        "crop+flip only",
        {"use_color_jitter": False, "use_grayscale": False},
        "far below crop+colour (Fig. 5/6: colour is what crop needs)",
    ),
    Arm("random_init", "baselines", "random init encoder", {}, "far below SimCLR", "random_init"),
    Arm(
        "crop_only",
        "augmentation",
        "crop only",
        {**_NO_AUG, "use_crop": True},
        "weak alone (Fig. 5 diagonal)",
    ),
    Arm(
        "color_only",
        "augmentation",
        "colour only",
        {**_NO_AUG, "use_color_jitter": True, "use_grayscale": True},
        "weak alone (Fig. 5 diagonal)",
    ),
    Arm(
        "head_none",
        "projection_head",
        "no head",
        {"proj_head_mode": "none"},
        "worst (Fig. 8: ~10 points below non-linear)",
    ),
    Arm(
        "head_linear",
        "projection_head",
        "linear head",
        {"proj_head_mode": "linear", "num_proj_layers": 1},
        "between none and non-linear (Fig. 8: ~3 points below)",
    ),
    Arm(
        "temp_0.1",
        "loss",
        "l2, T=0.1",
        {"temperature": 0.1},
        "T=0.1 best at ImageNet batch 4096 (Table 5); CIFAR uses T=0.5",
    ),
    Arm("temp_1.0", "loss", "l2, T=1.0", {"temperature": 1.0}, "worse than T=0.1/0.5 (Table 5)"),
    Arm(
        "nol2_temp_0.5",
        "loss",
        "no l2, T=0.5",
        {"hidden_norm": False},
        "much worse without l2 normalisation (Table 5)",
    ),
    Arm(
        "supervised",
        "baselines",
        "supervised, same epochs",
        SUPERVISED,
        "above SimCLR at short training",
        "supervised",
    ),
    Arm(
        "blur",
        "augmentation",
        "crop+flip+colour+blur",
        {"use_blur": True},
        "blur helps ImageNet; the paper leaves it out for CIFAR",
    ),
    Arm(
        "no_grayscale",
        "augmentation",
        "crop+flip+colour, no grayscale",
        {"use_grayscale": False},
        "a little worse than with grayscale (Table 1 / B.3)",
    ),
    Arm(
        "head_3layer",
        "projection_head",
        "non-linear, 3 layers",
        {"num_proj_layers": 3},
        "about equal to 2 layers (SimCLRv2: 3 layers help fine-tuning)",
    ),
    Arm("batch_128", "batch_size", "batch 128", {"train_batch_size": 128}, "below 256 (Fig. 9)"),
    Arm("batch_512", "batch_size", "batch 512", {"train_batch_size": 512}, "above 256 (Fig. 9)"),
    Arm("batch_64", "batch_size", "batch 64", {"train_batch_size": 64}, "lowest (Fig. 9)"),
    Arm("base_seed1", "augmentation", "crop+flip+colour (base), seed 1", {"seed": 1}, "noise"),
    Arm(
        "no_color_seed1",
        "augmentation",
        "crop+flip only, seed 1",
        {"use_color_jitter": False, "use_grayscale": False, "seed": 1},
        "noise",
    ),
    Arm("nol2_temp_0.1", "loss", "no l2, T=0.1", {"hidden_norm": False, "temperature": 0.1}, ""),
    Arm("nol2_temp_1.0", "loss", "no l2, T=1.0", {"hidden_norm": False, "temperature": 1.0}, ""),
    # Every no-l2 arm diverges at the base rate: the pair below asks whether it trains
    # at a 10x lower one, and compares it with l2 at that same rate.
    Arm(
        "nol2_lr_0.1",
        "loss",
        "no l2, T=0.5, learning rate 0.1",
        {"hidden_norm": False, "learning_rate": 0.1},
        "below l2 at the same rate (Table 5)",
    ),
    Arm("lr_0.1", "loss", "l2, T=0.5, learning rate 0.1", {"learning_rate": 0.1}, ""),
]
ARMS_BY_NAME = {arm.name: arm for arm in ARMS}
# The base arm belongs to every group: the reference point of each table.
GROUP_REFERENCE = {
    "projection_head": ("base", "non-linear, 2 layers (base)", "best (Fig. 8)"),
    "loss": ("base", "l2, T=0.5 (base)", "the paper's CIFAR choice (B.9)"),
    "batch_size": ("base", "batch 256 (base)", "between 128 and 512 (Fig. 9)"),
    "baselines": ("base", "SimCLR (base)", "between random init and supervised"),
}


# --- flags ----------------------------------------------------------------------------


def read_flagfile(path: str) -> dict:
    """{name: value string} of a flag file's `--name=value` lines."""
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line[2:].partition("=")
                values[name] = value
    return values


def _flag_string(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def arm_flags(arm: Arm, data_dir: str, model_dir: str, extra: dict | None = None) -> dict:
    """All flags of an arm, as strings: base.flags + overrides + `extra` + paths."""
    values = read_flagfile(BASE_FLAGS)
    values.update({k: _flag_string(v) for k, v in arm.flags.items()})
    values.update(extra or {})
    values.update(data_dir=data_dir, model_dir=model_dir)
    return values


def arm_config(arm: Arm, data_dir: str, model_dir: str, extra: dict | None = None):
    """The `Config` of an arm (parsed like run.py would)."""
    from tf_simclr.config import Config, ConfigError, flag_specs

    kinds = {name: kind for name, kind, *_ in flag_specs()}
    values = {}
    for name, text in arm_flags(arm, data_dir, model_dir, extra).items():
        if name not in kinds:
            raise ConfigError(name, "is not a run.py flag")
        kind = kinds[name]
        values[name] = text.lower() in ("1", "true") if kind is bool else kind(text)
    return Config(**values)


# --- running --------------------------------------------------------------------------


def _log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def train_arm(arm: Arm, data_dir: str, model_dir: str, extra: dict | None = None) -> float:
    """Runs (or resumes) the arm's training with run.py; returns the wall-clock seconds
    of all its runs so far (negative when training diverged: the NaN guard's exit code 3).

    Each run's seconds are appended to `model_dir/train_seconds.txt`, so an arm resumed
    across sittings reports its whole training time (a run whose runner was killed
    with it records none)."""
    os.makedirs(model_dir, exist_ok=True)
    command = [sys.executable, os.path.join(ROOT, "run.py")]
    command += [f"--{k}={v}" for k, v in arm_flags(arm, data_dir, model_dir, extra).items()]
    began = time.time()
    with open(os.path.join(model_dir, "train_log.txt"), "a") as log:
        log.write("\n$ " + " ".join(command) + "\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    with open(os.path.join(model_dir, "train_seconds.txt"), "a") as f:
        f.write(f"{time.time() - began:.1f}\n")
    with open(os.path.join(model_dir, "train_seconds.txt")) as f:
        seconds = sum(float(line) for line in f if line.strip())
    if code == 3:
        return -seconds  # diverged (NaN guard): a result, recorded as such
    if code:
        raise SystemExit(f"{arm.name}: run.py exited with {code}; see {model_dir}/train_log.txt")
    return seconds


def diverged_step(model_dir: str) -> int | None:
    """The step at which run.py's NaN guard stopped the arm (from its train log)."""
    try:
        with open(os.path.join(model_dir, "train_log.txt")) as f:
            steps = re.findall(r"NaN or Inf at step (\d+)", f.read())
    except OSError:
        return None
    return int(steps[-1]) if steps else None


def _checkpoint_steps(model_dir: str) -> list[tuple[int, str]]:
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(model_dir)
    paths = list(state.all_model_checkpoint_paths) if state else []
    return sorted((int(p.rsplit("-", 1)[1]), p) for p in paths)


def evaluate_arm(arm: Arm, config, steps_per_epoch: int) -> dict:
    """kNN (final and per epoch), linear on standardised features, probe / classifier."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_simclr import builders, evaluate, runner
    from tf_simclr.data import eval_dataset

    num_classes = builders.train_source(config, subset=False).num_classes
    keras.utils.set_random_seed(config.seed)
    model = builders.build_model(config, num_classes)
    metrics: dict = {}
    knn_curve = []
    checkpoints = [] if arm.kind == "random_init" else _checkpoint_steps(config.model_dir)
    for step, path in checkpoints:
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
        if step % steps_per_epoch == 0 and step != checkpoints[-1][0]:
            features = runner.frozen_features(config, model)
            knn_curve.append((step, runner.knn_top1(config, features, num_classes)))
            _log(f"{arm.name}: kNN at step {step}: {knn_curve[-1][1]:.4f}")
    # The model now holds the last checkpoint (or its initialisation).
    features = runner.frozen_features(config, model)
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    metrics["knn_top1"] = runner.knn_top1(config, features, num_classes)
    knn_curve.append((checkpoints[-1][0] if checkpoints else 0, metrics["knn_top1"]))
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    linear = evaluate.linear_eval_on_features(
        (train_x - mean) / std,
        train_y,
        (test_x - mean) / std,
        test_y,
        num_classes,
        epochs=30,
        learning_rate=0.1,
        seed=config.seed,
    )
    metrics["linear_top1"] = linear["test_top1"]
    metrics["linear_top5"] = linear["test_top5"]
    metrics["feature_mean_norm"] = float(np.linalg.norm(train_x, axis=1).mean())
    test = eval_dataset(builders.eval_source(config), config.image_size, config.eval_batch_size)
    if arm.kind == "supervised":
        classifier = evaluate.evaluate_classifier(model, test)
        metrics["supervised_top1"] = classifier["top1"]
        metrics["supervised_top5"] = classifier["top5"]
    elif getattr(model, "probe", None) is not None and checkpoints:
        probe = evaluate.evaluate_classifier(model, test)
        metrics["probe_top1"] = probe["top1"]
        metrics["probe_top5"] = probe["top5"]
    return {"metrics": metrics, "knn_curve": knn_curve}


def _scalars(model_dir: str) -> dict:
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from plot_training import read_scalars

    wanted = ("train/loss", "train/contrast_acc", "train/probe_acc", "train/top1")
    series = read_scalars(model_dir) if os.path.isdir(os.path.join(model_dir, "train")) else {}
    return {tag.split("/", 1)[1]: points for tag, points in series.items() if tag in wanted}


def _git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def run_arm(
    arm: Arm, data_dir: str, work_dir: str, results_dir: str, extra: dict | None = None
) -> dict:
    from tf_simclr.train import StepPlan

    model_dir = os.path.join(work_dir, arm.name)
    config = arm_config(arm, data_dir, model_dir, extra)
    config.validate()
    _log(f"{arm.name}: {arm.label} {arm.flags or ''}")
    train_seconds = 0.0
    status = "complete"
    if arm.kind != "random_init":
        train_seconds = train_arm(arm, data_dir, model_dir, extra)
        if train_seconds < 0:
            status, train_seconds = "diverged", -train_seconds
        _log(f"{arm.name}: training {status} in {train_seconds:.0f} s")
    from tf_simclr import builders

    num_examples = builders.train_source(config, subset=False).num_examples
    plan = StepPlan.from_config(config, num_examples)
    began = time.time()
    result = {
        "arm": arm.name,
        "group": arm.group,
        "label": arm.label,
        "kind": arm.kind,
        "overrides": arm.flags,
        "extra_flags": extra or {},
        "paper_direction": arm.paper,
        "status": status,
        "steps": 0 if arm.kind == "random_init" else plan.total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "train_seconds": round(train_seconds, 1),
    }
    if status == "diverged":
        result["diverged_at_step"] = diverged_step(model_dir)
    if status == "complete" or _checkpoint_steps(model_dir):
        result.update(evaluate_arm(arm, config, plan.steps_per_epoch))
    result["eval_seconds"] = round(time.time() - began, 1)
    result["curves"] = _scalars(model_dir)
    result["config"] = dataclasses.asdict(config)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    result["git_commit"] = _git_commit()
    result["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f"{arm.name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
    _log(f"{arm.name}: {result.get('metrics')} -> {os.path.relpath(path, ROOT)}")
    return result


def select_arms(names: str) -> list[Arm]:
    if not names:
        return list(ARMS)
    unknown = [n for n in names.split(",") if n not in ARMS_BY_NAME]
    if unknown:
        raise SystemExit(f"unknown arms: {', '.join(unknown)} (see `ablations.py list`)")
    return [ARMS_BY_NAME[n] for n in names.split(",")]


def parse_set(pairs: list[str]) -> dict:
    """`--set name=value` pairs -> {name: value}."""
    extra = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE (a run.py flag)")
        extra[name.lstrip("-")] = value
    return extra


def command_run(args) -> None:
    extra = parse_set(args.set)
    if not os.path.isdir(os.path.join(args.data_dir, "train")):
        raise SystemExit(
            f"--data_dir={args.data_dir} holds no train/ folder: extract "
            "../shared/data/cifar10-jpg.tar.gz there first"
        )
    for arm in select_arms(args.arms):
        if os.path.exists(os.path.join(args.results_dir, f"{arm.name}.json")) and not args.force:
            _log(f"{arm.name}: done already")
            continue
        run_arm(arm, os.path.abspath(args.data_dir), args.work_dir, args.results_dir, extra)


def command_list(args) -> None:
    for arm in ARMS:
        done = os.path.exists(os.path.join(args.results_dir, f"{arm.name}.json"))
        flags = " ".join(f"--{k}={_flag_string(v)}" for k, v in arm.flags.items())
        print(f"{'done   ' if done else 'missing'}  {arm.name:16s} {arm.group:16s} {flags}")


# --- report ---------------------------------------------------------------------------


def load_results(results_dir: str) -> dict:
    results = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            result = json.load(f)
        results[result["arm"]] = result
    return results


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def group_members(group: str) -> list[tuple[str, str, str]]:
    """(arm name, label, paper direction) of every arm of `group`, reference first."""
    members = [GROUP_REFERENCE[group]] if group in GROUP_REFERENCE else []
    return members + [(arm.name, arm.label, arm.paper) for arm in ARMS if arm.group == group]


def group_rows(group: str, results: dict) -> list[tuple[str, dict | None, str]]:
    """(label, result or None, paper direction) for every arm of `group`, reference first."""
    return [(label, results.get(name), paper) for name, label, paper in group_members(group)]


# Arms repeated with another seed: (arm, repeat). Their spread is the noise level.
SEED_PAIRS = (("base", "base_seed1"), ("no_color", "no_color_seed1"))
NOISE_METRICS = ("knn_top1", "linear_top1")


def seed_noise(results: dict) -> dict | None:
    """Mean |difference| between an arm and its seed-1 repeat, per metric, over the
    `SEED_PAIRS` that have both results; None when no pair is complete."""
    pairs = [
        (results[a]["metrics"], results[b]["metrics"])
        for a, b in SEED_PAIRS
        if results.get(a, {}).get("metrics") and results.get(b, {}).get("metrics")
    ]
    if not pairs:
        return None
    noise = {key: sum(abs(x[key] - y[key]) for x, y in pairs) / len(pairs) for key in NOISE_METRICS}
    return {**noise, "pairs": len(pairs)}


def _delta(result: dict, base: dict | None, noise: dict | None) -> str:
    """`-8.3 / -7.2` (kNN / linear points vs the base arm), `(noise)` when both
    differences are within twice the seed spread (about two standard deviations of
    a difference of two single runs)."""
    if not base or result is base or not result.get("metrics") or not base.get("metrics"):
        return ""
    deltas = [100 * (result["metrics"][k] - base["metrics"][k]) for k in NOISE_METRICS]
    text = " / ".join(f"{d:+.1f}" for d in deltas)
    if noise and all(
        abs(d) <= 2 * 100 * noise[k] for d, k in zip(deltas, NOISE_METRICS, strict=True)
    ):
        text += " (noise)"
    return text


def markdown_table(group: str, results: dict) -> str:
    lines = [
        "| arm | kNN top-1 | linear top-1 | online probe top-1 | vs base: kNN / linear "
        "| steps | train min | paper |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    base, noise = results.get("base"), seed_noise(results)
    for label, result, paper in group_rows(group, results):
        if result is None:
            lines.append(f"| {label} | not run yet | | | | | | {paper} |")
            continue
        m = result.get("metrics", {})
        probe = m.get("probe_top1", m.get("supervised_top1"))
        note = "" if result["status"] == "complete" else f" ({result['status']})"
        if result.get("diverged_at_step"):
            note = f" (diverged: NaN loss at step {result['diverged_at_step']})"
        lines.append(
            f"| {label}{note} | {_percent(m.get('knn_top1'))} | {_percent(m.get('linear_top1'))} "
            f"| {_percent(probe)} | {_delta(result, base, noise)} | {result['steps']} "
            f"| {result['train_seconds'] / 60:.0f} | {paper} |"
        )
    if noise:
        lines.append("")
        lines.append(
            f"Seed noise (mean |seed 0 - seed 1| over {noise['pairs']} repeated "
            f"arm{'s' if noise['pairs'] > 1 else ''}): kNN {100 * noise['knn_top1']:.1f}, "
            f"linear {100 * noise['linear_top1']:.1f} points; a difference to the base "
            "within twice that on both metrics is marked (noise)."
        )
    return "\n".join(lines)


def plot_group(group: str, results: dict, path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, r) for label, r, _ in group_rows(group, results) if r and r.get("metrics")]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.6))
    width = 0.38
    series = ((-width / 2, "knn_top1", "kNN"), (width / 2, "linear_top1", "linear"))
    for offset, key, name in series:
        values = [100 * r["metrics"].get(key, 0.0) for _, r in rows]
        bars = ax.bar([i + offset for i in range(len(rows))], values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([label for label, _ in rows], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title(f"Ablation: {group.replace('_', ' ')}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def group_results(group: str, results: dict) -> dict:
    """{arm: result} of `group`'s arms that have results, the group's reference first."""
    return {name: results[name] for name, _, _ in group_members(group) if name in results}


def plot_curves(results: dict, path: str) -> bool:
    """Training loss and kNN top-1 over training of every arm in `results`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in results.values() if r.get("curves", {}).get("loss")]
    if not trained:
        return False
    fig, (loss_ax, knn_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for r in trained:
        epochs = [s / r["steps_per_epoch"] for s, _ in r["curves"]["loss"]]
        # A supervised arm's loss is its classifier's cross-entropy, not NT-Xent.
        name = r["arm"] + (" (cross-entropy)" if r.get("kind") == "supervised" else "")
        loss_ax.plot(epochs, [v for _, v in r["curves"]["loss"]], lw=1, label=name)
        if r.get("knn_curve"):
            steps, values = zip(*r["knn_curve"], strict=True)
            knn_ax.plot(
                [s / r["steps_per_epoch"] for s in steps],
                [100 * v for v in values],
                marker="o",
                lw=1,
                label=r["arm"],
            )
    loss_ax.set(title="training loss (running mean within each epoch)", xlabel="epoch")
    loss_ax.legend(fontsize=7, ncol=2)
    knn_ax.set(title="kNN top-1 (%) on the test split", xlabel="epoch")
    for ax in (loss_ax, knn_ax):
        ax.grid(alpha=0.3)
    knn_ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def command_report(args) -> None:
    results = load_results(args.results_dir)
    groups = sorted({arm.group for arm in ARMS})
    os.makedirs(args.figures_dir, exist_ok=True)
    for group in groups:
        path = os.path.join(args.figures_dir, f"ablation_{group}.png")
        if plot_group(group, results, path):
            print(f"wrote {path}")
        path = os.path.join(args.figures_dir, f"ablation_curves_{group}.png")
        if plot_curves(group_results(group, results), path):
            print(f"wrote {path}")
    with open(args.markdown) as f:
        text = f.read()
    for group in groups:
        pattern = re.compile(
            rf"(<!-- ablations:{group} -->\n).*?(<!-- /ablations:{group} -->)", re.S
        )
        text, found = pattern.subn(
            lambda m, g=group: m.group(1) + markdown_table(g, results) + "\n" + m.group(2), text
        )
        if not found:
            print(f"{args.markdown} has no <!-- ablations:{group} --> markers; table:")
            print(markdown_table(group, results))
    with open(args.markdown, "w") as f:
        f.write(text)
    print(f"updated {args.markdown} ({len(results)} of {len(ARMS)} arms have results)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("list", "run", "report"))
    parser.add_argument("--data_dir", default="/tmp/data/cifar10_jpg")
    parser.add_argument("--work_dir", default="/tmp/ablations", help="model_dirs of the arms")
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    parser.add_argument("--figures_dir", default=FIGURES_DIR, help="report: PNGs go here")
    parser.add_argument("--markdown", default=RESULTS_MD, help="report: tables go here")
    parser.add_argument("--arms", default="", help="comma-separated arm names (default: all)")
    parser.add_argument("--force", action="store_true", help="re-run arms that have results")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a run.py flag in every arm (smoke tests, other budgets); recorded "
        "in the JSON. Use another --results_dir for another budget.",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, ROOT)
    if args.command == "run":
        import warnings

        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        warnings.filterwarnings("ignore", category=UserWarning)
    {"list": command_list, "run": command_run, "report": command_report}[args.command](args)


if __name__ == "__main__":
    main()
