"""Distillation (`--train_mode=distill`): the loss, the frozen untracked teacher, the mode."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tf_simclr import modes
from tf_simclr.config import Config, ConfigError
from tf_simclr.data import make_source, unlabel_outside_subset
from tf_simclr.models import Classifier, Distiller, ResNet, distillation_loss


def numpy_distillation_loss(teacher, student, temperature):
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p = softmax(teacher / temperature)
    log_q = np.log(softmax(student / temperature))
    return float(-(p * log_q).sum(-1).mean())


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_distillation_loss_is_the_cross_entropy_of_softened_predictions(temperature):
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(2, 6, 5)).astype("float32") * 3
    got = float(distillation_loss(teacher, student, temperature))
    assert got == pytest.approx(numpy_distillation_loss(teacher, student, temperature), rel=1e-5)
    # Minimal (the teacher's entropy) when the student predicts what the teacher does.
    same = float(distillation_loss(teacher, teacher, temperature))
    assert same < got


def tiny_classifier(width=0.125, classes=3, synchronized_bn=False):
    encoder = ResNet(18, width_multiplier=width, cifar_stem=True, synchronized_bn=synchronized_bn)
    model = Classifier(encoder, classes)
    model(tf.zeros([1, 16, 16, 3]))
    return model


def batches(n=2, batch=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "image": rng.uniform(size=(batch, 16, 16, 3)).astype("float32"),
            "label": rng.integers(-1, classes, batch).astype("int64"),
        }
        for _ in range(n)
    ]


def test_teacher_is_frozen_untracked_and_in_inference_mode():
    teacher, student = tiny_classifier(), tiny_classifier(width=0.0625)
    before = [v.numpy().copy() for v in teacher.variables]  # BN statistics included
    distiller = Distiller(student, teacher, temperature=2.0, label_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    history = distiller.fit(tf.data.Dataset.from_tensor_slices(batches()[0]).batch(4), verbose=0)
    assert {"loss", "distill_loss", "label_loss", "agreement"} <= set(history.history)
    for want, got in zip(before, teacher.variables, strict=True):
        np.testing.assert_array_equal(want, got.numpy(), err_msg=got.path)
    # Only the student trains, and only the student is saved with the distiller.
    assert {id(v) for v in distiller.trainable_variables} == {
        id(v) for v in student.trainable_variables
    }
    teacher_ids = {id(v) for v in teacher.variables}
    assert not teacher_ids & {id(v) for v in distiller.variables}


def test_label_term_uses_only_labelled_images():
    teacher, student = tiny_classifier(), tiny_classifier()
    data = batches(1)[0]
    data["label"][:] = -1  # nothing labelled: the label term is 0
    distiller = Distiller(student, teacher, label_weight=1.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = distiller.train_on_batch(data, return_dict=True)
    assert logs["label_loss"] == pytest.approx(0.0, abs=1e-7)
    assert logs["loss"] == pytest.approx(logs["distill_loss"], rel=1e-6)


def test_label_term_is_the_mean_over_the_labelled_images_of_a_mixed_batch():
    # Issue 23: 2 labelled images of 8. Averaged over the whole batch the term would be 4x
    # too small (100x with 1% labels); the all-unlabelled batch above cannot tell.
    teacher, student = tiny_classifier(), tiny_classifier()
    data = batches(1)[0]
    data["label"][:] = [-1, 2, -1, -1, 0, -1, -1, -1]
    distiller = Distiller(student, teacher, temperature=2.0, label_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = distiller.test_on_batch(data, return_dict=True)  # inference mode: no BN batch stats
    logits = student(data["image"], training=False)["logits"].numpy().astype("float64")
    log_q = logits - logits.max(-1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(-1, keepdims=True))
    labelled = data["label"] >= 0
    want = -log_q[labelled, data["label"][labelled]].mean()
    assert logs["label_loss"] == pytest.approx(want, rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["distill_loss"] + 0.5 * want, rel=1e-5)


def test_two_replicas_step_like_one(mirrored_strategy, worst_relative_step):
    """Teacher and student replicated, the loss scaled once per replica: the same step."""
    data = batches(1, batch=8)[0]
    data["label"] = np.abs(data["label"])
    models = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            teacher = tiny_classifier(synchronized_bn=True)
            student = tiny_classifier(width=0.0625, synchronized_bn=True)
            distiller = Distiller(student, teacher, temperature=2.0, label_weight=0.5)
            distiller.compile(optimizer=keras.optimizers.SGD(1.0))
        models.append((teacher, student, distiller))
    (t1, s1, d1), (t2, s2, d2) = models
    for a, b in ((t1, t2), (s1, s2)):
        for x, y in zip(a.variables, b.variables, strict=True):
            y.assign(x.numpy())
    init = [v.numpy().copy() for v in s1.trainable_variables]
    d1.fit(tf.data.Dataset.from_tensors(data), verbose=0)
    d2.fit(tf.data.Dataset.from_tensors(data), verbose=0)
    after1 = [v.numpy() for v in s1.trainable_variables]
    after2 = [v.numpy() for v in s2.trainable_variables]
    assert worst_relative_step(init, after1, init, after2) < 1e-3


def test_unlabel_outside_subset_keeps_every_image(session_train_test_folder):
    source = make_source("image_folder", "train", data_dir=str(session_train_test_folder))
    marked = unlabel_outside_subset(source, per_class=3, seed=0)
    labels = np.array([int(ex["label"]) for ex in marked.dataset.as_numpy_iterator()])
    assert marked.num_examples == source.num_examples == len(labels) == 16
    assert (labels >= 0).sum() == 6 and set(labels[labels >= 0]) == {0, 1}


# --- The mode, end to end ------------------------------------------------------------


def base_config(model_dir, data_dir, **changes):
    values = dict(
        dataset="image_folder",
        data_dir=str(data_dir),
        eval_split="test",
        train_steps=2,
        warmup_epochs=0,
        optimizer="momentum",
        learning_rate=0.1,
        checkpoint_steps=0,  # the defaults, where the tiny config saves and logs more often
        train_summary_steps=100,
    )
    return _harness.tiny_config(model_dir, **{**values, **changes})


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, session_train_test_folder):
    model_dir = tmp_path_factory.mktemp("distill") / "teacher"
    modes.run(base_config(model_dir, session_train_test_folder, train_mode="finetune"))
    return model_dir


def test_distill_into_a_half_width_student_then_eval_and_export(
    teacher_dir, session_train_test_folder, tmp_path
):
    student_dir = tmp_path / "student"
    config = base_config(
        student_dir,
        session_train_test_folder,
        mode="train_then_eval",
        train_mode="distill",
        teacher=str(teacher_dir),
        width_multiplier=0.0625,
        distill_temperature=2.0,
    )
    result = modes.run(config)
    assert result["train"]["global_step"] == 2
    assert 0.0 < result["train"]["teacher_share"] <= 1.0
    assert {"top1", "top5"} <= set(result["eval"])
    assert (student_dir / "saved_model" / "2" / "saved_model.pb").exists()
    _harness.assert_loads_in_a_tf1_session(student_dir / "saved_model" / "2")
    description = json.loads((student_dir / "model.json").read_text())
    assert description["model"]["train_mode"] == "distill"
    assert description["model"]["width_multiplier"] == 0.0625
    # The student's checkpoint holds the student alone: as many model variables as a
    # classifier of its width, none of the teacher's.
    reader = tf.train.load_checkpoint(str(student_dir))
    model_keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("model/")]
    student = tiny_classifier(width=0.0625, classes=2)
    assert len(model_keys) <= len(student.variables)
    widths = {tuple(s) for s in reader.get_variable_to_shape_map().values()}
    assert (3, 3, 3, 8) not in widths  # the teacher's first conv (width 0.125: 8 filters)
    # --mode=eval of the student's model_dir is a classifier evaluation.
    again = modes.run(
        Config(mode="eval", model_dir=str(student_dir), eval_split="test", verbose=0),
        given={"mode", "model_dir", "eval_split"},
    )
    assert again["eval"]["top1"] == pytest.approx(result["eval"]["top1"])


def test_teacher_mismatches_are_one_line_errors(teacher_dir, session_train_test_folder, tmp_path):
    def distill(data_dir=session_train_test_folder, teacher=teacher_dir, **changes):
        config = base_config(
            tmp_path / "s", data_dir, train_mode="distill", teacher=str(teacher), **changes
        )
        return modes.run(config)

    with pytest.raises(ConfigError, match="^--image_size=24: the teacher was trained at"):
        distill(image_size=24)
    three = tmp_path / "three"
    shutil.copytree(session_train_test_folder, three)
    shutil.copytree(three / "train" / "cat", three / "train" / "cow")
    with pytest.raises(ConfigError, match="^--teacher=.*predicts 2 classes, .* has 3"):
        distill(data_dir=str(three))
    with pytest.raises(ConfigError, match="^--teacher: is required"):
        base_config(tmp_path / "s", three, train_mode="distill").validate()
    with pytest.raises(ConfigError, match="^--teacher=.*no tf_simclr model description"):
        distill(teacher=str(tmp_path))
    assert not (tmp_path / "s").exists()


def test_teacher_as_exported_saved_model_and_resume(
    teacher_dir, session_train_test_folder, tmp_path
):
    saved = teacher_dir / "saved_model" / "2"
    assert (saved / "saved_model.pb").exists()
    student_dir = tmp_path / "student"
    config = base_config(
        student_dir, session_train_test_folder, train_mode="distill", teacher=str(saved)
    )
    first = modes.run(config)["train"]
    assert first["global_step"] == 2
    # The same command with more steps resumes the student where it stopped.
    resumed = modes.run(config.replace(train_steps=3))["train"]
    assert resumed["global_step"] == 3 and resumed["start_step"] == 2
