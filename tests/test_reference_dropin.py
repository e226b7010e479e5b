"""Issue 15, flags, fine-tuning and evaluation: the reference's commands do what they do there.

Fine-tuning starts from the checkpoint's probe; the reference's flags are accepted and act;
`--eval_continuous` follows a trainer's checkpoints; pretraining refuses frozen blocks;
`total_loss` is logged. One tiny pretraining run (mock CIFAR-10) serves the module.
"""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import _harness
from tf_simclr import builders, checkpoints, export, initialise, modes, resolver
from tf_simclr.config import Config, ConfigError
from tf_simclr.models import ProjectionHead, ResNet, SimCLR
from tf_simclr.modes import evaluate
from tf_simclr.optim import build_optimizer
from tf_simclr.optim.lars import DEFAULT_EXCLUDE, matches_any, variable_path


def kernel_of(model_dir, name="probe"):
    """The kernel of the saved model's linear classifier `name` (`probe`, `supervised_head`)."""
    prefix = tf.train.latest_checkpoint(str(model_dir))
    key = checkpoints.variable_key(prefix, ["model", name, "dense", "_kernel"])
    return tf.train.load_checkpoint(prefix).get_tensor(key)


def tiny_config(model_dir, **changes):
    """The harness's tiny run with the reference README's --train_summary_steps=0 (no
    summaries), a checkpoint every step, no kNN, evaluation on the test split."""
    base = dict(checkpoint_steps=1, train_summary_steps=0, eval_knn=False, eval_split="test")
    return _harness.tiny_config(model_dir, **{**base, **changes})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 3-step pretraining run with a 10-class probe: ckpt-1..3 and saved_model/3."""
    model_dir = tmp_path_factory.mktemp("dropin") / "pre"
    with tfds.testing.mock_data(num_examples=32):
        result = modes.run(tiny_config(model_dir))
    return model_dir, result


def test_pretraining_logs_total_loss_and_no_summaries_with_zero_steps(pretrained):
    model_dir, result = pretrained
    logs = result["train"]
    assert logs["total_loss"] == pytest.approx(
        logs["loss"] + logs["probe_loss"] + logs["weight_decay"], rel=1e-5
    )
    assert logs["weight_decay"] > 0  # lars: the probe's L2 term, as the reference
    assert not (model_dir / "train").exists()  # --train_summary_steps=0: no summary writer


def _tiny_simclr(num_classes=3):
    encoder = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True)
    model = SimCLR(encoder, ProjectionHead(out_dim=8, num_layers=2), num_classes=num_classes)
    model(tf.zeros([1, 16, 16, 3]))
    return model


@pytest.mark.parametrize("optimizer", ["lars", "momentum", "adamw"])
def test_total_loss_is_contrastive_plus_probe_plus_the_reference_weight_decay(optimizer):
    keras.utils.set_random_seed(0)
    model = _tiny_simclr()
    wd = 1e-2
    model.compile(optimizer=build_optimizer(optimizer, 0.0, weight_decay=wd))
    # The reference's loss term: with LARS only the supervised head's (the rest is decayed
    # inside LARS); with momentum every decayed variable's; adamw's decay is decoupled.
    if optimizer == "adamw":
        counted = []
    else:
        counted = [
            v
            for v in model.trainable_variables
            if not matches_any(variable_path(v), DEFAULT_EXCLUDE)
            and (optimizer != "lars" or "head_supervised" in v.path)
        ]
    expected_wd = wd * sum(float(np.sum(np.square(v.numpy()))) for v in counted) / 2
    rng = np.random.default_rng(0)
    data = {
        "view1": tf.constant(rng.uniform(size=(4, 16, 16, 3)), tf.float32),
        "view2": tf.constant(rng.uniform(size=(4, 16, 16, 3)), tf.float32),
        "label": tf.constant([0, 1, 2, 0]),
    }
    logs = {k: float(v) for k, v in model.train_step(data).items()}  # eager: fast here
    assert logs["weight_decay"] == pytest.approx(expected_wd, rel=1e-4, abs=1e-9)
    if optimizer != "adamw":
        assert logs["weight_decay"] > 1e-6
    assert logs["total_loss"] == pytest.approx(
        logs["loss"] + logs["probe_loss"] + logs["weight_decay"], rel=1e-5
    )


def _classifier_weights(pre_dir, tmp_path, num_classes=10, **changes):
    """The classifier of a fine-tune run of `changes` right after initialisation (step 0)."""
    config = tiny_config(tmp_path / "ft", train_mode="finetune", checkpoint=str(pre_dir), **changes)
    resolved = resolver.resolve(config, frozenset(changes) | {"checkpoint", "train_mode"})
    config = resolved.config
    model = builders.build_classifier(config, num_classes)
    optimizer = keras.optimizers.SGD()
    optimizer.build(model.trainable_variables)
    manager = checkpoints.manager_for(model, optimizer, str(tmp_path / "ft"), 1)
    kind = initialise.restore(
        resolved, manager, builders.init_parts(model), classifier=model.supervised_head
    )
    assert kind == "initialized"
    return [w.numpy() for w in model.supervised_head.weights]


def test_finetune_classifier_starts_from_the_probe_when_it_fits(pretrained, tmp_path):
    pre_dir, _ = pretrained
    probe = kernel_of(pre_dir)
    assert np.abs(probe).max() > 0
    kernel, _ = _classifier_weights(pre_dir, tmp_path)  # auto, the default
    np.testing.assert_array_equal(kernel, probe)
    # From the exported SavedModel too.
    saved = str(pre_dir / "saved_model" / "3")
    kernel, _ = _classifier_weights(saved, tmp_path)
    np.testing.assert_array_equal(kernel, probe)
    kernel, _ = _classifier_weights(pre_dir, tmp_path, init_classifier_from_probe="false")
    assert not np.allclose(kernel, probe)
    kernel, _ = _classifier_weights(pre_dir, tmp_path, zero_init_logits_layer=True)
    assert not np.any(kernel)


def test_a_probe_that_does_not_fit_leaves_a_fresh_classifier_or_is_an_error(pretrained, tmp_path):
    pre_dir, _ = pretrained
    probe = kernel_of(pre_dir)  # [64, 10]
    kernel, _ = _classifier_weights(pre_dir, tmp_path, num_classes=5)  # other classes
    assert kernel.shape == (probe.shape[0], 5)
    # --ft_proj_selector=-1: the last head layer (width proj_out_dim=8), not the probe's 64.
    kernel, _ = _classifier_weights(pre_dir, tmp_path, ft_proj_selector=-1)
    assert kernel.shape == (8, 10)
    with pytest.raises(ConfigError, match="--init_classifier_from_probe.*shapes"):
        _classifier_weights(pre_dir, tmp_path, num_classes=5, init_classifier_from_probe="true")
    with pytest.raises(ConfigError, match="--init_classifier_from_probe"):
        tiny_config(
            tmp_path, init_classifier_from_probe="true", zero_init_logits_layer=True
        ).validate()


@pytest.mark.slow  # about 25 s here; the restore itself is tested above, fast
@pytest.mark.parametrize("init", ["auto", "false"])
def test_finetune_run_trains_from_the_probe(pretrained, tmp_path, init):
    pre_dir, _ = pretrained
    probe = kernel_of(pre_dir)
    config = tiny_config(
        tmp_path / "ft",
        train_mode="finetune",
        checkpoint=str(pre_dir),
        train_steps=1,
        learning_rate=0.0,  # the step changes nothing: the checkpoint holds the initial weights
        warmup_epochs=0,
        optimizer="momentum",
        init_classifier_from_probe=init,
    )
    with tfds.testing.mock_data(num_examples=32):
        modes.run(config)
    kernel = kernel_of(tmp_path / "ft", "supervised_head")
    assert np.array_equal(kernel, probe) == (init == "auto")


def test_ft_proj_selector_minus_one_is_the_last_head_layer(tmp_path):
    assert Config(model_dir="m", ft_proj_selector=-1, num_proj_layers=3).proj_selector == 3
    assert Config(model_dir="m", ft_proj_selector=-1, proj_head_mode="linear").proj_selector == 1
    assert Config(model_dir="m", ft_proj_selector=1).proj_selector == 1
    with pytest.raises(ConfigError, match="--ft_proj_selector"):
        Config(model_dir="m", ft_proj_selector=-2).validate()
    config = tiny_config(tmp_path, ft_proj_selector=-1)
    resolved = resolver.resolve(config, frozenset({"ft_proj_selector"})).config
    assert resolved.ft_proj_selector == 2  # what model.json records
    assert builders.build_pretrain_model(config, 3).ft_proj_selector == 2  # unresolved: too


def test_eval_steps_and_eval_name(pretrained, tmp_path):
    pre_dir, _ = pretrained
    model_dir = tmp_path / "pre"
    shutil.copytree(pre_dir, model_dir)
    with tfds.testing.mock_data(num_examples=32):
        some = modes.run(
            tiny_config(model_dir, mode="eval", eval_steps=2, eval_batch_size=4, eval_name="v2")
        )["eval"]
        whole = modes.run(tiny_config(model_dir, mode="eval", eval_batch_size=4))["eval"]
    assert some["probe_num_examples"] == 8  # 2 batches of 4
    assert whole["probe_num_examples"] == 32  # 0: the whole split
    assert (model_dir / "eval_v2_3.json").exists() and list((model_dir / "eval_v2").iterdir())
    assert json.loads((model_dir / "eval_v2_3.json").read_text())["eval_name"] == "v2"
    assert (model_dir / "eval_test_3.json").exists()


def test_keep_hub_module_max_prunes_older_exports(tmp_path):
    for step in (1, 2, 3, 5):
        (tmp_path / str(step)).mkdir()
    (tmp_path / ".tmp-4-x").mkdir()
    assert export.prune_exports(str(tmp_path), 0) == []
    # The version just written stays even when it is older than the others.
    assert export.prune_exports(str(tmp_path), 2, newest=1) == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-4-x", "1", "3", "5"]
    assert export.prune_exports(str(tmp_path), 1, newest=5) == [1, 3]


def test_export_keeps_keep_hub_module_max_versions(pretrained, tmp_path):
    pre_dir, _ = pretrained
    model_dir = tmp_path / "pre"
    shutil.copytree(pre_dir, model_dir)
    for step in (1, 2):  # older versions
        (model_dir / "saved_model" / str(step)).mkdir()
    modes.run(Config(mode="export", model_dir=str(model_dir), keep_hub_module_max=2))
    assert sorted(p.name for p in (model_dir / "saved_model").iterdir()) == ["2", "3"]
    assert Config.keep_hub_module_max == 1  # the reference's default: the newest only


def test_eval_continuous_follows_checkpoints_skips_deleted_ones_and_times_out(
    pretrained, tmp_path, monkeypatch
):
    pre_dir, _ = pretrained
    model_dir = tmp_path / "pre"
    shutil.copytree(pre_dir, model_dir)
    listed = tf.train.latest_checkpoint

    def latest_then_deleted(directory):
        # The trainer's max_to_keep deletes ckpt-2 right after the evaluator listed it.
        latest = listed(directory)
        if latest and latest.endswith("ckpt-2"):
            for name in os.listdir(model_dir):
                if name.startswith("ckpt-2."):
                    os.remove(model_dir / name)
        return latest

    monkeypatch.setattr(tf.train, "latest_checkpoint", latest_then_deleted)

    def record(latest):  # what tf.train.CheckpointManager writes after a save
        (model_dir / "checkpoint").write_text(f'model_checkpoint_path: "{latest}"\n')

    record("ckpt-1")
    trainer = iter(["ckpt-2", None, "ckpt-3"])
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
        latest = next(trainer, None)
        if latest:
            record(latest)

    config = tiny_config(model_dir, mode="eval", eval_continuous=True, eval_steps=1)
    with tfds.testing.mock_data(num_examples=32):
        result = evaluate.run_continuous(config, None, sleep=sleep, clock=lambda: now[0])
        assert result["evaluated_steps"] == [1, 3] and result["skipped_steps"] == [2]
        assert result["global_step"] == 3
        assert now[0] == 3 * config.eval_poll_secs
        # A trainer that stops before --train_steps: the timeout ends the wait.
        config = config.replace(train_steps=10, eval_timeout_secs=40)
        result = evaluate.run_continuous(config, None, sleep=sleep, clock=lambda: now[0])
    assert result["evaluated_steps"] == [3]
    assert (model_dir / "eval_test_1.json").exists() and (model_dir / "eval_test_3.json").exists()


def test_reference_flags_parse_and_pretraining_refuses_frozen_blocks(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--fine_tune_after_block=4"):
        tiny_config(tmp_path, fine_tune_after_block=4).validate()
    tiny_config(tmp_path, mode="eval", fine_tune_after_block=4).validate()  # eval: adopted
    with pytest.raises(ConfigError, match="--eval_continuous"):
        tiny_config(tmp_path, eval_continuous=True).validate()
    reference_flags = [
        "--train_summary_steps=0",
        "--ft_proj_selector=-1",
        "--eval_steps=3",
        "--eval_name=v1",
        "--keep_hub_module_max=2",
        "--sk_ratio=0.0625",
        "--se_ratio=0.25",
        "--eval_continuous=false",
    ]
    # run.py's own flag parsing and main, in this process (test_run.py runs the real one).
    argv = [f"--model_dir={tmp_path / 'run'}", *reference_flags, "--fine_tune_after_block=0"]
    code, stderr = _harness.run_in_process(argv, capsys)
    assert code == 2, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("run.py: error")]
    assert len(errors) == 1 and "--fine_tune_after_block=0" in errors[0], stderr[-2000:]
    assert not (tmp_path / "run").exists()
