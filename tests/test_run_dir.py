"""A self-describing model_dir: eval, export and --checkpoint rebuild the model from model.json.

One tiny pretraining run (a module fixture, on an image folder) is shared; each
test copies what it changes.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tf_simclr import checkpoints, modes, resolver, run_dir
from tf_simclr.config import Config, ConfigError
from tf_simclr.data import eval_dataset, make_source
from tf_simclr.eval import extract_features

ARCH = _harness.TINY_MODEL


def tiny_config(model_dir, data_dir, **changes):
    """The harness's tiny 2-step run on the image folder `data_dir` (train and test)."""
    base = dict(dataset="image_folder", data_dir=str(data_dir), eval_split="test", train_steps=2)
    return _harness.tiny_config(model_dir, **{**base, "knn_k": 3, **changes})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, session_train_test_folder):
    """A 2-step pretraining run (with its export) on a copy of the image folder."""
    root = tmp_path_factory.mktemp("run_dir")
    data = root / "images"
    shutil.copytree(session_train_test_folder, data)
    result = modes.run(tiny_config(root / "pre", data))
    assert result["export"].endswith(os.path.join("saved_model", "2"))
    return root / "pre", data


def copy_run(pretrained, tmp_path, name="run"):
    model_dir, data = pretrained
    shutil.copytree(model_dir, tmp_path / name)
    shutil.copytree(data, tmp_path / "images")
    return tmp_path / name, tmp_path / "images"


def test_model_json_describes_the_model(pretrained):
    model_dir, data = pretrained
    description = json.loads((model_dir / "model.json").read_text())
    assert description["model"]["resnet_depth"] == 18
    assert description["model"]["width_multiplier"] == 0.125
    assert description["model"]["num_proj_layers"] == 2
    assert description["model"]["train_mode"] == "pretrain"
    assert description["num_classes"] == 2 and description["cifar_stem"] is True
    assert description["data"] == {
        "dataset": "image_folder",
        "data_dir": str(data),
        "train_split": "train",
    }
    # The export carries the same description.
    exported = model_dir / "saved_model" / "2" / "assets.extra" / "tf_simclr_model.json"
    assert json.loads(exported.read_text()) == description


def test_export_needs_no_other_flag_and_no_data(pretrained, tmp_path, capsys):
    """run.py's main in this process (test_run.py checks a real process's exit code and
    one-line error)."""
    model_dir, data = copy_run(pretrained, tmp_path)
    shutil.rmtree(data)
    shutil.rmtree(model_dir / "saved_model")
    code, stderr = _harness.run_in_process(["--mode=export", f"--model_dir={model_dir}"], capsys)
    assert code == 0, stderr[-3000:]
    assert (model_dir / "saved_model" / "2" / "saved_model.pb").exists()
    # A flag that contradicts the saved architecture: one line naming both values, exit 2.
    argv = ["--mode=export", f"--model_dir={model_dir}", "--resnet_depth=34"]
    code, stderr = _harness.run_in_process(argv, capsys)
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("run.py: error")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert errors[0].startswith("run.py: error: --resnet_depth=34: contradicts")
    assert "--resnet_depth=18" in errors[0]
    # A flag that agrees with it is fine.
    argv = ["--mode=export", f"--model_dir={model_dir}", "--resnet_depth=18"]
    code, stderr = _harness.run_in_process(argv, capsys)
    assert code == 0, stderr[-3000:]


def test_eval_needs_only_the_data_it_evaluates_on(pretrained, tmp_path):
    model_dir, data = copy_run(pretrained, tmp_path)
    shutil.rmtree(data / "train")
    # Only the model_dir and the eval data: the architecture comes from model.json; the
    # defaults (ResNet-50, 3-layer head) would not fit the checkpoint.
    config = Config(
        mode="eval",
        model_dir=str(model_dir),
        dataset="image_folder",
        data_dir=str(data),
        eval_split="test",
        eval_knn=False,  # kNN compares with the train split's features
        verbose=0,
    )
    result = modes.run(config, given={"mode", "model_dir", "dataset", "data_dir", "eval_split"})
    assert result["eval"]["global_step"] == 2
    assert result["eval"]["probe_num_examples"] == 8
    # Without --dataset and --data_dir the recorded ones are used.
    shutil.rmtree(data)
    shutil.copytree(pretrained[1], data)
    result = modes.run(
        Config(mode="eval", model_dir=str(model_dir), eval_split="test", knn_k=3, verbose=0),
        given={"mode", "model_dir", "eval_split", "knn_k"},
    )
    assert 0.0 <= result["eval"]["knn_top1"] <= 1.0


def test_old_model_dir_without_model_json_is_rebuilt_from_the_flags(pretrained, tmp_path):
    model_dir, data = copy_run(pretrained, tmp_path)
    (model_dir / "model.json").unlink()
    result = modes.run(tiny_config(model_dir, data, mode="eval"))
    assert result["eval"]["global_step"] == 2
    # Then a wrong flag is caught by the checkpoint itself: one line naming model_dir.
    with pytest.raises(ConfigError, match="^--model_dir=.*does not fit this model") as info:
        modes.run(tiny_config(model_dir, data, mode="eval", width_multiplier=0.25))
    assert "\n" not in str(info.value)


def test_resume_with_a_contradicting_architecture_is_an_error(pretrained, tmp_path):
    model_dir, data = copy_run(pretrained, tmp_path)
    with pytest.raises(ConfigError, match="^--proj_out_dim=16: contradicts .*--proj_out_dim=8"):
        modes.run(tiny_config(model_dir, data, train_steps=3, proj_out_dim=16))
    with pytest.raises(ConfigError, match="^--train_mode=finetune: contradicts"):
        modes.run(tiny_config(model_dir, data, train_steps=3, train_mode="finetune"))


def test_exported_saved_model_restores_into_the_keras_model_exactly(pretrained):
    model_dir, data = pretrained
    saved = str(model_dir / "saved_model" / "2")
    from_checkpoint, step, config = run_dir.load_model(str(model_dir))
    from_saved_model, saved_step, _ = run_dir.load_model(saved, flag="checkpoint")
    assert step == saved_step == 2 and config.resnet_depth == 18
    test = eval_dataset(make_source("image_folder", "test", data_dir=str(data)), 16, 4)
    want, _ = extract_features(from_checkpoint, test)
    got, _ = extract_features(from_saved_model, test)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    for a, b in zip(from_checkpoint.variables, from_saved_model.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The loaded SavedModel itself agrees too (it is what was exported).
    loaded = tf.saved_model.load(saved)
    images = next(iter(test))["image"]
    np.testing.assert_allclose(
        loaded(images)["embedding"], from_saved_model(images)["embedding"], rtol=1e-5, atol=1e-6
    )


def test_saved_model_of_another_architecture_is_a_one_line_error(pretrained):
    model_dir, _ = pretrained
    saved = str(model_dir / "saved_model" / "2")
    model, _, _ = run_dir.load_model(str(model_dir))
    from tf_simclr import builders

    wider_config = Config(model_dir="x", **{**ARCH, "width_multiplier": 0.25})
    wider = builders.build_model(wider_config, 2)
    with pytest.raises(ValueError, match="^path=.*shape .* in the SavedModel") as info:
        checkpoints.restore_model(wider, saved)
    assert "\n" not in str(info.value)


def test_finetune_from_an_exported_saved_model(pretrained, tmp_path):
    model_dir, data = pretrained
    saved = str(model_dir / "saved_model" / "2")
    linear = tiny_config(
        tmp_path / "linear",
        data,
        mode="train_then_eval",
        train_mode="finetune",
        fine_tune_after_block=4,
        checkpoint=saved,
        optimizer="momentum",
        learning_rate=0.1,
        warmup_epochs=0,
        train_batch_size=4,
        # Not given: the architecture flags (the fine-tune run's image size is its own).
        **{n: Config.__dataclass_fields__[n].default for n in ARCH if n != "image_size"},
    )
    # The architecture flags are left at their defaults (ResNet-50): the SavedModel's
    # description decides, and a frozen encoder keeps its weights exactly.
    given = {"mode", "train_mode", "checkpoint", "model_dir", "image_size"}
    result = modes.run(linear, given=given)
    assert {"top1", "top5"} <= set(result["eval"])
    pre = tf.train.load_checkpoint(str(model_dir))
    lin = tf.train.load_checkpoint(str(tmp_path / "linear"))
    keys = [k for k in pre.get_variable_to_shape_map() if k.startswith("model/encoder/")]
    assert keys
    for key in keys:
        np.testing.assert_array_equal(pre.get_tensor(key), lin.get_tensor(key))
    described = json.loads((tmp_path / "linear" / "model.json").read_text())
    assert described["model"]["train_mode"] == "finetune"
    assert described["model"]["resnet_depth"] == 18


def test_checkpoints_hold_the_projection_head_and_old_ones_still_restore(tmp_path):
    """The head's variables are saved under the model; a checkpoint from before (head
    reachable only through the optimizer's variable list) restores its trainable ones."""
    import keras

    from tf_simclr import builders

    config = Config(model_dir="x", **ARCH)

    def trained_model():
        model = builders.build_model(config, 2)
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)
        rng = np.random.default_rng(0)
        for v in model.variables:
            v.assign(rng.normal(size=v.shape).astype("float32") + 1.0)
        return model, optimizer

    model, optimizer = trained_model()
    new = tf.train.Checkpoint(model=model, optimizer=optimizer).save(str(tmp_path / "new"))
    keys = tf.train.load_checkpoint(new).get_variable_to_shape_map()
    head_keys = [k for k in keys if k.startswith("model/head/")]
    # (Keys are deduplicated: trainable variables are keyed under the optimizer's list,
    # which the checkpoint reaches first; the BatchNorm statistics only under the head.)
    assert len(head_keys) == len(model.head.non_trainable_weights) > 0
    fresh = builders.build_model(config, 2)
    checkpoints.restore_model(fresh, new)
    for a, b in zip(model.variables, fresh.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)

    # The old object graph: the model's head had no children.
    old_graph = tf.train.Checkpoint(
        model=tf.train.Checkpoint(
            encoder=model.encoder, head=tf.train.Checkpoint(), probe=model.probe
        ),
        optimizer=optimizer,
    )
    old = old_graph.save(str(tmp_path / "old"))
    assert not any(
        k.startswith("model/head/")
        for k in tf.train.load_checkpoint(old).get_variable_to_shape_map()
    )
    fresh = builders.build_model(config, 2)
    checkpoints.restore_model(fresh, old)
    for a, b in zip(model.trainable_variables, fresh.trainable_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Its head cannot be loaded on its own (fine-tuning from a head layer): a clear error.
    classifier = builders.build_model(config.replace(train_mode="finetune", ft_proj_selector=1), 2)
    with pytest.raises(ValueError, match="init_checkpoint=.*before checkpoints held"):
        checkpoints.load_parts(builders.init_parts(classifier), old)
    # Resuming from it (model and optimizer) brings the head back through the optimizer.
    resumed, resumed_optimizer = builders.build_model(config, 2), keras.optimizers.SGD(0.1)
    resumed_optimizer.build(resumed.trainable_variables)
    manager = checkpoints.manager_for(resumed, resumed_optimizer, str(tmp_path / "resume"), 2)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("old-1")
    assert checkpoints.restore_or_initialize(manager, resume_dir=str(tmp_path)) == "resumed"
    for a, b in zip(model.trainable_variables, resumed.trainable_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_selective_kernel_encoder_trains_exports_and_is_rebuilt(
    session_train_test_folder, tmp_path
):
    model_dir = tmp_path / "sk"
    config = tiny_config(model_dir, session_train_test_folder, sk_ratio=0.0625, se_ratio=0.25)
    result = modes.run(config)
    assert np.isfinite(result["train"]["loss"])
    description = json.loads((model_dir / "model.json").read_text())
    assert (description["model"]["sk_ratio"], description["model"]["se_ratio"]) == (0.0625, 0.25)
    model, _, rebuilt = run_dir.load_model(str(model_dir))
    assert rebuilt.sk_ratio == 0.0625 and model.encoder.sk_ratio == 0.0625
    names = [layer.name for layer in model.encoder.layers]
    assert any(n.endswith("shortcut_pool") for n in names)  # SK: average-pool shortcuts
    assert any(n.endswith("se_reduce") for n in names)
    with pytest.raises(ConfigError, match="^--sk_ratio=0.0: contradicts .*--sk_ratio=0.0625"):
        modes.run(Config(mode="export", model_dir=str(model_dir), sk_ratio=0.0), given={"sk_ratio"})


def _scalar_steps(log_dir):
    steps = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, set()).add(event.step)
    return steps


def test_short_runs_write_their_last_step_and_evaluation_to_tensorboard(
    session_train_test_folder, tmp_path
):
    model_dir = tmp_path / "run"
    config = tiny_config(model_dir, session_train_test_folder, train_steps=3)
    modes.run(config.replace(mode="train_then_eval", train_summary_steps=100))
    train = _scalar_steps(model_dir / "train")
    # Not on the 100-step cadence, written all the same: the last step of each epoch (2 steps).
    assert train["train/loss"] == {2, 3}
    evaluation = _scalar_steps(model_dir / "eval_test")
    assert evaluation["eval_test/knn_top1"] == {3} and "eval_test/probe_top1" in evaluation
    # --train_summary_steps=0 writes none: test_reference_dropin.py's module run.


# Issue 23: every architecture field of model.json, by name, with a value other than the
# tiny run's (and what else that value needs). Written here, not read from MODEL_FIELDS, so
# that a field dropped from model.json fails (it would be neither adopted nor checked).
SAVED_ARCHITECTURE = {
    "train_mode": "finetune",
    "resnet_depth": 34,
    "width_multiplier": 0.25,
    "sk_ratio": 0.0625,
    "se_ratio": 0.25,
    "proj_head_mode": "linear",
    "proj_out_dim": 16,
    "num_proj_layers": 3,
    "ft_proj_selector": 1,
    "lineareval_while_pretraining": False,
    "fine_tune_after_block": 2,
    "image_size": 24,
}
NEEDS = {"fine_tune_after_block": {"train_mode": "finetune"}}


def test_model_json_holds_exactly_the_architecture_fields():
    assert sorted(run_dir.MODEL_FIELDS) == sorted(SAVED_ARCHITECTURE)


@pytest.mark.parametrize("name", sorted(SAVED_ARCHITECTURE))
def test_each_architecture_field_round_trips_and_a_contradiction_is_refused(name, tmp_path):
    value, needs = SAVED_ARCHITECTURE[name], NEEDS.get(name, {})
    written = _harness.tiny_config(tmp_path, **needs, **{name: value})
    run_dir.write(str(tmp_path / run_dir.MODEL_FILE), run_dir.describe(written, num_classes=10))
    assert run_dir.read(str(tmp_path))["model"][name] == value

    today = _harness.tiny_config(tmp_path, **needs)  # the flag not given: adopted
    assert getattr(today, name) != value
    given = frozenset(needs)
    assert getattr(resolver.resolve(today, given).config, name) == value
    with pytest.raises(ConfigError, match=f"^--{name}=.*: contradicts .*--{name}={value}"):
        resolver.resolve(today, given | {name})  # given, and another value: refused
