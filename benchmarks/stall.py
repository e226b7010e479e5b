"""The end-of-fit stall (issue 28): time from a run's last train step to the end of its
`fit`, to the end of the process, and between epochs, over repeated runs.

Two cases, each run `--runs` times (default 10), one fresh process per run:

- `stop`: pretraining stopped by `--train_steps` inside its first epoch of a large
  image folder (default all 50,000 CIFAR-10 training JPEGs, batch 256): the run ends
  `fit` with the input pipeline in full flight (shuffle buffer, parallel decode and
  augmentation, prefetch), as every run that stops, is interrupted or resumes mid-epoch does;
- `epochs`: the same on a small folder (`--epoch_images`, default 2,560: 10 steps per
  epoch) for `--epochs` epochs, so that epoch boundaries (one `model.fit` per epoch, see
  `tf_simclr.training.fit`) are crossed.

Commands (from the repository root):

    PYTHONPATH=. python benchmarks/stall.py                     # 2 x 10 runs
    PYTHONPATH=. python benchmarks/stall.py --runs=3 --cases=stop --steps=12

Each run is `python benchmarks/stall.py --child=...`: `modes.pretrain.run` of a
`Config` (ResNet-`--depth` at `--width`, 32 px, CIFAR recipe without blur, default
shuffle buffer and checkpointing), with a Keras callback appended to every `model.fit`
that records the wall clock and the process's CPU time at each step's start and end,
at each epoch's end and at `on_train_end`, and the time `model.fit` returns. The parent
records when the child process has exited. Per run it reports (seconds):

- `last_step_to_fit_return`: the last step's end to its `model.fit` returning (the
  issue's "last step's summary to Finished epoch");
- `last_step_to_train_end`: to Keras' `on_train_end` (what of the above is inside fit's
  epoch loop; the rest is fit's own teardown, e.g. its data iterator);
- `last_step_to_run_return`: to `pretrain.run` returning (adds the final checkpoint);
- `last_step_to_exit`: to the process having exited (adds interpreter shutdown);
- `between_epochs`: for each epoch boundary, one epoch's last step end to the next
  epoch's first step start, and `epoch_fit_return` the part of it until that epoch's
  `model.fit` returned;
- `cpu_*`: the process CPU time spent in the same intervals (an idle wait uses none).

Writes `--output` (default `benchmarks/results/stall.json`) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- The child: one training run, instrumented -------------------------------------------


def _child(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from tf_simclr import logs, resolver
    from tf_simclr.config import Config
    from tf_simclr.modes import pretrain

    events: list[tuple[str, float, float]] = []

    def mark(name: str) -> None:
        events.append((name, time.time(), time.process_time()))

    class Timestamps(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            mark("step_begin")

        def on_train_batch_end(self, batch, logs=None):
            mark("step_end")

        def on_epoch_end(self, epoch, logs=None):
            mark("epoch_end")

        def on_train_end(self, logs=None):
            mark("train_end")

    fit = keras.Model.fit

    def timed_fit(self, *fit_args, callbacks=None, **kwargs):
        mark("fit_call")
        try:
            # Last, so its epoch end comes after the run's own callbacks (checkpoints).
            return fit(self, *fit_args, callbacks=[*(callbacks or []), Timestamps()], **kwargs)
        finally:
            mark("fit_return")

    keras.Model.fit = timed_fit
    logs.quiet_library_logs()
    config = Config(
        mode="train",
        train_mode="pretrain",
        dataset="image_folder",
        data_dir=args.data_dir,
        model_dir=args.model_dir,
        train_batch_size=args.batch_size,
        train_steps=args.steps,
        resnet_depth=args.depth,
        width_multiplier=args.width,
        image_size=32,
        use_blur=False,
        color_jitter_strength=0.5,
        verbose=0,
    )
    resolved = resolver.resolve(config, frozenset())
    mark("start")
    pretrain.run(resolved, tf.distribute.get_strategy())
    mark("run_return")
    with open(args.child, "w") as f:
        json.dump(events, f)


# --- The parent: runs, measures, reports -------------------------------------------------


def analyse(events: list, exited: float) -> dict:
    """Per-run intervals (module docstring) from a child's `(name, wall, cpu)` events and
    the wall time its process had exited."""
    fits: list[list] = []  # the events of each model.fit call
    for name, wall, cpu in events:
        if name == "fit_call":
            fits.append([])
        if fits:
            fits[-1].append((name, wall, cpu))
    last_end = [e for e in fits[-1] if e[0] == "step_end"][-1]
    run_return = next(e for e in events if e[0] == "run_return")

    def since(event, name):
        found = [e for e in event if e[0] == name][-1]
        return found[1] - last_end[1], found[2] - last_end[2]

    final = fits[-1]
    result = {
        "steps": sum(1 for e in events if e[0] == "step_end"),
        "fits": len(fits),
        "last_step_to_train_end": since(final, "train_end")[0],
        "last_step_to_fit_return": since(final, "fit_return")[0],
        "cpu_last_step_to_fit_return": since(final, "fit_return")[1],
        "last_step_to_run_return": run_return[1] - last_end[1],
        "last_step_to_exit": exited - last_end[1],
    }
    steps = [e[1] for e in events if e[0] in ("step_begin", "step_end")]
    durations = [b - a for a, b in zip(steps[0::2], steps[1::2], strict=True)]
    result["median_step_s"] = statistics.median(durations[1:] or durations)
    between, fit_return, cpu_between = [], [], []
    for before, after in zip(fits, fits[1:], strict=False):
        end = [e for e in before if e[0] == "step_end"][-1]
        begin = next(e for e in after if e[0] == "step_begin")
        returned = [e for e in before if e[0] == "fit_return"][-1]
        between.append(begin[1] - end[1])
        cpu_between.append(begin[2] - end[2])
        fit_return.append(returned[1] - end[1])
    result.update(
        between_epochs=between, epoch_fit_return=fit_return, cpu_between_epochs=cpu_between
    )
    return result


def one_run(data_dir: str, steps: int, args: argparse.Namespace, workdir: str) -> dict:
    model_dir = tempfile.mkdtemp(prefix="run.", dir=workdir)
    events_file = os.path.join(model_dir, "events.json")
    command = [
        sys.executable,
        os.path.abspath(__file__),
        f"--child={events_file}",
        f"--data_dir={data_dir}",
        f"--model_dir={model_dir}",
        f"--steps={steps}",
        f"--batch_size={args.batch_size}",
        f"--depth={args.depth}",
        f"--width={args.width}",
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    began = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    exited = time.time()
    if done.returncode:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(events_file) as f:
        events = json.load(f)
    shutil.rmtree(model_dir, ignore_errors=True)
    return {"process_s": exited - began, **analyse(events, exited)}


def summary(runs: list[dict]) -> dict:
    def stats(values):
        values = sorted(values)
        if not values:
            return None
        return {"median": statistics.median(values), "max": values[-1], "min": values[0]}

    keys = (
        "last_step_to_train_end",
        "last_step_to_fit_return",
        "cpu_last_step_to_fit_return",
        "last_step_to_run_return",
        "last_step_to_exit",
        "median_step_s",
    )
    result = {key: stats([r[key] for r in runs]) for key in keys}
    for key in ("between_epochs", "epoch_fit_return", "cpu_between_epochs"):
        result[key] = stats([v for r in runs for v in r[key]])
    return result


def subset(cifar_root: str, workdir: str, count: int) -> str:
    """`count` training images of `cifar_root` (equal per class), symlinked."""
    classes = sorted(os.listdir(os.path.join(cifar_root, "train")))
    for name in classes:
        src = os.path.join(cifar_root, "train", name)
        dst = os.path.join(workdir, "train", name)
        os.makedirs(dst, exist_ok=True)
        for file in sorted(os.listdir(src))[: max(1, count // len(classes))]:
            os.symlink(os.path.join(src, file), os.path.join(dst, file))
    return workdir


def count_images(data_dir: str) -> int:
    return sum(len(files) for _, _, files in os.walk(os.path.join(data_dir, "train")))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cases", default="stop,epochs", help="comma list: stop, epochs")
    parser.add_argument("--data_dir", default="", help="train/<class>/*.jpg; default CIFAR-10")
    parser.add_argument("--steps", type=int, default=12, help="stop: --train_steps")
    parser.add_argument("--epoch_images", type=int, default=2560, help="epochs: folder size")
    parser.add_argument("--epochs", type=int, default=3, help="epochs: epochs run")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks/results/stall.json"))
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--model_dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return {}

    data_dir = args.data_dir
    if not data_dir:
        sys.path.insert(0, ROOT)
        from benchmarks.run_benchmarks import find_cifar10

        data_dir = find_cifar10()
        if data_dir is None:
            raise SystemExit("no CIFAR-10 folder: give --data_dir")
    workdir = tempfile.mkdtemp(prefix="tf_simclr_stall.")
    cases = {}
    try:
        for case in args.cases.split(","):
            if case == "stop":
                folder, steps = data_dir, args.steps
            elif case == "epochs":
                folder = data_dir
                if count_images(data_dir) > args.epoch_images:
                    folder = subset(data_dir, os.path.join(workdir, "subset"), args.epoch_images)
                steps = count_images(folder) // args.batch_size * args.epochs
            else:
                raise SystemExit(f"unknown case {case!r}: stop or epochs")
            runs = []
            for i in range(args.runs):
                runs.append(one_run(folder, steps, args, workdir))
                print(f"{case} run {i + 1}/{args.runs}: " + _line(runs[-1]), flush=True)
            cases[case] = {
                "images": count_images(folder),
                "train_steps": steps,
                "runs": runs,
                "summary": summary(runs),
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "command": " ".join(["python", "benchmarks/stall.py", *(argv or sys.argv[1:])]),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("child", "model_dir", "output")
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cases": cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    for case, data in cases.items():
        s = data["summary"]
        print(f"\n{case}: {data['images']} images, {data['train_steps']} steps, {args.runs} runs")
        for key, value in s.items():
            if value is not None:
                print(f"  {key:30s} median {value['median']:7.2f}  max {value['max']:7.2f}")
    return result


def _line(run: dict) -> str:
    between = ", ".join(f"{v:.2f}" for v in run["between_epochs"])
    return (
        f"step {run['median_step_s']:.2f} s; last step -> train_end "
        f"{run['last_step_to_train_end']:.2f}, fit return {run['last_step_to_fit_return']:.2f} "
        f"(cpu {run['cpu_last_step_to_fit_return']:.2f}), run return "
        f"{run['last_step_to_run_return']:.2f}, exit {run['last_step_to_exit']:.2f}"
        + (f"; between epochs {between}" if between else "")
    )


if __name__ == "__main__":
    main()
