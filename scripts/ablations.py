"""The CIFAR-10 ablation study (issue 6): resumable runs of its arms.

    python scripts/ablations.py list
    python scripts/ablations.py run --data_dir=/tmp/data/cifar10_jpg --work_dir=/tmp/ablations
    python scripts/ablations.py run ... --arms=base,no_color     # only these
    python scripts/ablations.py report    # = scripts/ablations_report.py: figures + tables

Every arm is a flag file, `experiments/ablations/<arm>.flags`: `base.flags` (itself
the `base` arm) plus a few overrides, with its group, label, paper direction and
kind in `# key: value` header lines (see `scripts/ablation_arms.py`). The study
lists that folder; `run` takes the arms in the files' `# priority:` order (a
partial study holds the most telling arms). It trains each missing arm with
`run.py` in a subprocess (a killed or interrupted arm resumes from its last
checkpoint when `run` is started again), then evaluates it the same way as every
other arm:

- weighted kNN top-1 on the test split (k=200, cosine, T=0.1), at the end and
  at every epoch's checkpoint (the kNN curve);
- linear classifier on standardised frozen encoder features (30 epochs);
- the online linear probe trained during pretraining (top-1/top-5).

It writes one JSON per arm to `<results_dir>/<arm>.json` (config, steps, wall
clock, metrics, loss curves) as soon as the arm is done; arms with a JSON are
skipped, so the study can run across several sittings. `--results_dir` defaults
to `<work_dir>/results`, a fresh directory beside the arms' model_dirs: the
committed results (`docs/results/ablations/`) are neither taken for done arms
nor written unless `--results_dir` names them, and an arm's JSON is only ever
replaced with `--force`.
`scripts/ablations_report.py` turns the JSON files into tables and figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ablation_arms import ARMS, ARMS_BY_NAME, ROOT, Arm, arm_config, arm_flags  # noqa: E402
from ablations_report import RESULTS_DIR  # noqa: E402


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
    from feature_eval import linear_on_standardised

    from tf_simclr import builders, checkpoints
    from tf_simclr.data import eval_dataset
    from tf_simclr.eval import evaluate_classifier, frozen_features, knn_top1

    def features_and_knn() -> tuple[dict, float]:
        features = frozen_features(
            model, builders.knn_sources(config), config.image_size, config.eval_batch_size
        )
        top1 = knn_top1(features, num_classes, k=config.knn_k, temperature=config.knn_temperature)
        return features, top1

    num_classes = builders.train_source(config, subset=False).num_classes
    keras.utils.set_random_seed(config.seed)
    model = builders.build_model(config, num_classes)
    metrics: dict = {}
    knn_curve = []
    saved = [] if arm.kind == "random_init" else _checkpoint_steps(config.model_dir)
    for step, path in saved:
        checkpoints.restore_model(model, path)
        if step % steps_per_epoch == 0 and step != saved[-1][0]:
            knn_curve.append((step, features_and_knn()[1]))
            _log(f"{arm.name}: kNN at step {step}: {knn_curve[-1][1]:.4f}")
    # The model now holds the last checkpoint (or its initialisation).
    features, metrics["knn_top1"] = features_and_knn()
    train_x = features["train"][0]
    knn_curve.append((saved[-1][0] if saved else 0, metrics["knn_top1"]))
    linear = linear_on_standardised(features, num_classes, epochs=30, seed=config.seed)
    metrics["linear_top1"] = linear["test_top1"]
    metrics["linear_top5"] = linear["test_top5"]
    metrics["feature_mean_norm"] = float(np.linalg.norm(train_x, axis=1).mean())
    test = eval_dataset(builders.eval_source(config), config.image_size, config.eval_batch_size)
    if arm.kind == "supervised":
        classifier = evaluate_classifier(model, test)
        metrics["supervised_top1"] = classifier["top1"]
        metrics["supervised_top5"] = classifier["top5"]
    elif getattr(model, "probe", None) is not None and saved:
        probe = evaluate_classifier(model, test)
        metrics["probe_top1"] = probe["top1"]
        metrics["probe_top5"] = probe["top5"]
    return {"metrics": metrics, "knn_curve": knn_curve}


def _scalars(model_dir: str) -> dict:
    from tf_simclr.summaries import read_scalars

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
    from tf_simclr.training import StepPlan

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
    results_dir = results_dir_of(args)
    _log(f"results: {results_dir}")
    for arm in select_arms(args.arms):
        if os.path.exists(os.path.join(results_dir, f"{arm.name}.json")) and not args.force:
            _log(f"{arm.name}: done already")
            continue
        run_arm(arm, os.path.abspath(args.data_dir), args.work_dir, results_dir, extra)
    _log(f"tables and figures: python scripts/ablations.py report --results_dir={results_dir}")


def results_dir_of(args) -> str:
    """`--results_dir`, else `<work_dir>/results`: never the committed results by default."""
    return os.path.abspath(args.results_dir or os.path.join(args.work_dir, "results"))


def command_list(args) -> None:
    """One line per arm, in priority order: done or missing, name, group, overrides."""
    results_dir = results_dir_of(args)
    print(f"results: {results_dir} (committed: --results_dir={os.path.relpath(RESULTS_DIR)})")
    for arm in ARMS:
        done = os.path.exists(os.path.join(results_dir, f"{arm.name}.json"))
        flags = " ".join(
            f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in arm.flags.items()
        )
        print(f"{'done   ' if done else 'missing'}  {arm.name:16s} {arm.group:16s} {flags}")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:  # an alias of scripts/ablations_report.py
        import ablations_report

        ablations_report.main(argv[1:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("list", "run", "report"))
    parser.add_argument("--data_dir", default="/tmp/data/cifar10_jpg")
    parser.add_argument("--work_dir", default="/tmp/ablations", help="model_dirs of the arms")
    parser.add_argument(
        "--results_dir",
        default="",
        help="where the arms' JSON files go (default: <work_dir>/results); the committed "
        f"results are {os.path.relpath(RESULTS_DIR, ROOT)}: name them to add to them "
        "(--force replaces an arm's JSON)",
    )
    parser.add_argument("--arms", default="", help="comma-separated arm names (default: all)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-run arms that have results (their JSON is replaced)",
    )
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
    if args.command == "run":
        import warnings

        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        warnings.filterwarnings("ignore", category=UserWarning)
    {"list": command_list, "run": command_run}[args.command](args)


if __name__ == "__main__":
    main()
