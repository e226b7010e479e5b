"""Training callbacks: checkpoints with a NaN guard, stop-on-signal, TensorBoard scalars.

Faults and what happens (see also `tf_simclr.checkpoints`):
- SIGTERM / SIGINT during training: the current step finishes, a checkpoint is
  saved, and `TrainingInterrupted` ends the run (`run.py` exits with 128 + the
  signal number and one line saying how to resume).
- A NaN or Inf loss, or non-finite weights about to be saved: training stops,
  nothing is saved (the last good checkpoint stays the latest), and
  `TrainingDiverged` names the step and the likely causes.
- A worker of a multi-worker job dies: the others' collectives are aborted
  (its connections close, or TensorFlow's coordination service misses its
  heartbeats) and
  `WorkerLost` ends the run on every surviving worker (`run.py` exits with 4);
  restarting all workers resumes from the last checkpoint.
- SIGKILL: nothing runs; `tf.train.CheckpointManager` only records complete
  checkpoints, so a restart resumes from the last complete one.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import logs as run_logs

# The exceptions that end a run (the command line maps each to its exit code).
from tf_simclr.errors import TrainingDiverged, TrainingInterrupted


def _all_finite(variables) -> bool:
    return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))


class CheckpointEvery(keras.callbacks.Callback):
    """Saves model + optimizer (step, slots, LR position) every `every` steps; `save()` for
    the final one (the driver calls it after the last epoch).

    Refuses to save once the loss or the weights are not finite (NaN guard).
    """

    def __init__(self, manager: tf.train.CheckpointManager, every: int, step: tf.Variable):
        super().__init__()
        self.manager, self.every, self.step = manager, every, step
        self.diverged: tuple[int, str] | None = None

    def save(self) -> None:
        if self.diverged is not None:
            return
        step = int(self.step.numpy())
        if self.manager.latest_checkpoint == self._path(step):
            return
        model = self.manager.checkpoint.model
        if not _all_finite(model.trainable_variables):
            self.diverged = (step, "a model weight")
            return
        self.manager.save(checkpoint_number=step)
        logging.info("Saved checkpoint for step %d to %s", step, self.manager.directory)

    def _path(self, step: int) -> str:
        return os.path.join(self.manager.directory, f"ckpt-{step}")

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.step.numpy())
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (step, "the training loss")
        if self.diverged is not None:
            self.model.stop_training = True
            return
        if step % self.every == 0:
            self.save()
            if self.diverged is not None:
                self.model.stop_training = True

    def raise_if_diverged(self) -> None:
        if self.diverged is not None:
            raise TrainingDiverged(*self.diverged)


class StopOnSignal(keras.callbacks.Callback):
    """On SIGTERM/SIGINT: finish the step, save a checkpoint, stop training.

    The handlers are installed by `installed()` around all of training (the
    driver calls `fit` once per epoch; a signal between two calls is not lost),
    and only from the main thread (Python delivers signals there).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, saver: CheckpointEvery):
        super().__init__()
        self.saver = saver
        self.received: int | None = None

    def _handle(self, signum, frame):
        del frame
        logging.warning("Received %s: saving a checkpoint after this step", signal.Signals(signum))
        self.received = signum

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def on_train_batch_end(self, batch, logs=None):
        if self.received is not None:
            self.saver.save()
            self.model.stop_training = True

    def raise_if_stopped(self) -> None:
        """After a `fit`: if a signal came, make sure its checkpoint exists, then raise."""
        if self.received is not None:
            self.saver.save()
            raise TrainingInterrupted(self.received, int(self.saver.step.numpy()))


class ProgressLog(keras.callbacks.Callback):
    """Training progress as plain log lines, for a log file or a CI log (where Keras's
    progress bar writes a carriage return and colour codes at every update):
    `step 120/400 (30%): loss 4.123, 312 img/s` every `every` steps or `every_seconds`,
    whichever comes first, and at the last step. When a callback listed before this one
    stops training (a signal, a NaN loss), a last line gives the step reached.

    `step` is the global step (e.g. `optimizer.iterations`), counted across the driver's
    `fit` calls and a resumed run; `batch_size` the global batch (images per step);
    `loss` Keras's running mean over the epoch so far.
    """

    def __init__(
        self,
        step: tf.Variable,
        total_steps: int,
        batch_size: int,
        every: int = 0,
        every_seconds: float = 60.0,
    ):
        super().__init__()
        self.step, self.total_steps, self.batch_size = step, total_steps, batch_size
        self.every = every if every > 0 else max(1, total_steps // 20)  # ~20 lines a run
        self.every_seconds = every_seconds
        self.logged_step: int | None = None
        self._since: tuple[float, int] | None = None  # (time, step) the rate is counted from

    def on_train_begin(self, logs=None):
        self._since = (time.monotonic(), int(self.step.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.step.numpy())
        now = time.monotonic()
        if (
            step % self.every == 0
            or step >= self.total_steps
            or self.model.stop_training
            or now - self._since[0] >= self.every_seconds
        ):
            self._log(step, now, logs or {})

    def _log(self, step: int, now: float, logs: dict) -> None:
        if step == self.logged_step:
            return
        began, from_step = self._since
        rate = (step - from_step) * self.batch_size / max(now - began, 1e-9)
        loss = logs.get("loss")
        logging.info(
            "step %d/%d (%d%%): %s%.0f img/s",
            step,
            self.total_steps,
            100 * step // max(self.total_steps, 1),
            "" if loss is None else f"loss {float(loss):.4g}, ",
            rate,
        )
        self.logged_step, self._since = step, (now, step)


def training_progress(
    verbose: int, step: tf.Variable, total_steps: int, batch_size: int, stream=None
) -> tuple[int, list[keras.callbacks.Callback]]:
    """`model.fit`'s `verbose` and the progress callbacks for `--verbose`: Keras's progress
    bar on a terminal (`stream`, default stdout); elsewhere `verbose=1` gives `ProgressLog`
    lines instead (list them after the callbacks that may stop training)."""
    if verbose == 1 and not run_logs.interactive(stream):
        return 0, [ProgressLog(step, total_steps, batch_size)]
    return verbose, []


class ScalarSummaries(keras.callbacks.Callback):
    """Writes the train_step logs to TensorBoard every `every` steps, keyed by global step,
    and always those of a `fit`'s last step (so a short run's events file is never empty).
    `every=0` writes nothing."""

    def __init__(self, log_dir: str, every: int, step: tf.Variable):
        super().__init__()
        self.writer = tf.summary.create_file_writer(log_dir) if every > 0 else None
        self.every, self.step = every, step
        self.last: tuple[int, dict] | None = None  # the latest step's logs, if not written

    def _write(self, step: int, logs: dict) -> None:
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                tf.summary.scalar(f"train/{name}", float(value))
        self.writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        if self.writer is None or not logs:
            return
        step = int(self.step.numpy())
        if step % self.every == 0:
            self._write(step, logs)
            self.last = None
        else:
            self.last = (step, {name: float(value) for name, value in logs.items()})

    def on_train_end(self, logs=None):
        if self.last is not None:
            self._write(*self.last)
            self.last = None


class ImageSummaries(keras.callbacks.Callback):
    """Writes the pictures `draw()` returns to TensorBoard as the image summary `tag`: at
    the step training starts from (a resumed run: where it resumes) and every `every` steps.

    `draw` returns float `[N, H, W, 3]` in [0, 1], e.g. `tf_simclr.summaries.view_strips`
    of a few training images (`--summary_images`).
    """

    def __init__(self, log_dir: str, every: int, step: tf.Variable, draw, tag: str):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every!r}.")
        self.writer = tf.summary.create_file_writer(log_dir)
        self.every, self.step, self.draw, self.tag = every, step, draw, tag
        self.written_at: int | None = None

    def _write(self) -> None:
        step = int(self.step.numpy())
        if step == self.written_at:
            return
        pictures = self.draw()
        with self.writer.as_default(step=step):
            tf.summary.image(self.tag, pictures, max_outputs=len(pictures))
        self.writer.flush()
        self.written_at = step

    def on_train_begin(self, logs=None):
        if self.written_at is None:  # the driver calls fit once per epoch: only the first
            self._write()

    def on_train_batch_end(self, batch, logs=None):
        if int(self.step.numpy()) % self.every == 0:
            self._write()


def write_scalars(log_dir: str, step: int, values: dict, prefix: str) -> None:
    """Writes the numeric `values` as TensorBoard scalars `<prefix>/<name>` at `step`."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=step):
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                tf.summary.scalar(f"{prefix}/{name}", float(value))
    writer.flush()
    writer.close()


class KNNMonitor(keras.callbacks.Callback):
    """Weighted kNN top-1 on frozen features after every `every` epochs: a cheap watch on
    the representation while it trains (the kNN of `tf_simclr.eval`, as `--mode=eval`).

    Adds `knn_top1` to the epoch's logs (so History and a TensorBoard callback listed
    after this one record it) and prints one line per evaluation.

    Args:
      train_data, test_data: batches `{"image", "label"}` or `(images, labels)`, e.g.
        `tf_simclr.data.eval_dataset` of the train and test splits (neighbours come
        from `train_data`).
      num_classes: classes C.
      k, temperature: of `tf_simclr.eval.knn_accuracy`.
      every: epochs between evaluations (>= 1).
    """

    def __init__(
        self,
        train_data: tf.data.Dataset,
        test_data: tf.data.Dataset,
        num_classes: int,
        k: int = 200,
        temperature: float = 0.1,
        every: int = 1,
    ):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.train_data, self.test_data = train_data, test_data
        self.num_classes, self.k, self.temperature, self.every = num_classes, k, temperature, every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        from tf_simclr.eval import extract_features, knn_accuracy

        train = extract_features(self.model, self.train_data)
        test = extract_features(self.model, self.test_data)
        top1 = knn_accuracy(*train, *test, self.num_classes, self.k, self.temperature)
        if logs is not None:
            logs["knn_top1"] = top1
        print(f"Epoch {epoch + 1}: kNN top-1 {top1:.4f}")


class LabelFreeMonitor(keras.callbacks.Callback):
    """Label-free health of pretraining on a fixed batch: RankMe, alignment, uniformity and
    the embedding's per-dimension std (`tf_simclr.eval.label_free`), at the step training
    starts from and every `every` steps after.

    The batch is two augmented views of N images, drawn once and kept (so the numbers of
    two steps differ by the model alone): RankMe and the std are of the encoder's
    embeddings of all 2N views, alignment of the N positive pairs' projections, uniformity
    of all 2N projections (of the embeddings for a model without a projection head). The
    cost is one inference pass over 2N views per measurement.

    Adds the latest values to the epoch's logs (History, a TensorBoard callback after this
    one) and, with `log_dir`, writes them as TensorBoard scalars `label_free/<name>`.

    Args:
      view1, view2: float32 `[N, S, S, 3]` in [0, 1], row i of each a view of image i
        (e.g. one batch of `tf_simclr.data.pretrain_dataset`), N >= 2.
      every: steps between measurements, >= 1.
      log_dir: where the scalars go, or None for logs only.
      step: the global step (e.g. `optimizer.iterations`); default the model's optimizer's.
      batch_size: views per inference call.
    """

    def __init__(
        self,
        view1,
        view2,
        every: int = 100,
        log_dir: str | None = None,
        step: tf.Variable | None = None,
        batch_size: int = 256,
    ):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        view1, view2 = tf.convert_to_tensor(view1), tf.convert_to_tensor(view2)
        if view1.shape != view2.shape or view1.shape.rank != 4 or view1.shape[0] < 2:
            raise ValueError(
                "view1 and view2 must be [N, S, S, 3] batches of the same shape, N >= 2; got "
                f"{view1.shape} and {view2.shape}"
            )
        self.views = tf.concat([view1, view2], 0)
        self.num_images = int(view1.shape[0])
        self.every, self.step, self.batch_size = every, step, batch_size
        self.writer = tf.summary.create_file_writer(log_dir) if log_dir else None
        self.latest: dict[str, float] = {}
        self.measured_at: int | None = None
        self._forward = None

    def _global_step(self) -> int:
        step = self.step if self.step is not None else self.model.optimizer.iterations
        return int(step.numpy())

    def measure(self) -> dict[str, float]:
        """The four measures of the fixed batch under the model as it is now."""
        from tf_simclr.eval.label_free import label_free_metrics

        if self._forward is None:
            model = self.model
            self._forward = tf.function(lambda x: model(x, training=False))
        embeddings, projections = [], []
        for i in range(0, int(self.views.shape[0]), self.batch_size):
            outputs = self._forward(self.views[i : i + self.batch_size])
            embeddings.append(tf.cast(outputs["embedding"], tf.float32))
            projections.append(tf.cast(outputs.get("projection", outputs["embedding"]), tf.float32))
        embeddings, projections = tf.concat(embeddings, 0), tf.concat(projections, 0)
        n = self.num_images
        return label_free_metrics(embeddings, projections[:n], projections[n:])

    def _measure_and_write(self) -> None:
        step = self._global_step()
        if step == self.measured_at:
            return
        self.latest = self.measure()
        self.measured_at = step
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in self.latest.items():
                    tf.summary.scalar(f"label_free/{name}", value)
            self.writer.flush()

    def on_train_begin(self, logs=None):
        self._measure_and_write()

    def on_train_batch_end(self, batch, logs=None):
        if self._global_step() % self.every == 0:
            self._measure_and_write()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update({f"label_free_{k}": v for k, v in self.latest.items()})
