"""Selective-kernel encoders through the modes (issue 12: "everything else works with SK
encoders as it does today").

The SK ResNet itself (parameter counts, the reference's variables and outputs, gradients,
`get_config`, bfloat16, 2 replicas with global BN stepping like one device: slow) is tested
in tests/models/test_resnet_sk.py, and one float32 pretraining run in tests/test_run_dir.py.
Here one chain covers the rest: pretraining in mixed_float16 -> fine-tuning from block
group 2 (the stem and groups 1-2 frozen) -> the export, reloaded and compared with the
Keras model.

The smallest network with SK convs: they sit in bottleneck blocks, so a ResNet-50 (the
shallowest bottleneck layout), at width 1/16.
"""

import numpy as np
import pytest
import tensorflow as tf

from tf_simclr import modes, resolver, run_dir
from tf_simclr.config import Config
from tf_simclr.modes import pretrain

SK = dict(resnet_depth=50, width_multiplier=0.0625, sk_ratio=0.0625, se_ratio=0.25)
# Above 32 px: the ImageNet stem, which SK makes the ResNet-D stem (three 3x3 convs); and
# cheaper than the CIFAR stem at 32 px (block group 1 sees 10x10, not 32x32).
IMAGE_SIZE = 40


def tiny_config(model_dir, data_dir, **changes) -> Config:
    fields = dict(
        mode="train",
        dataset="image_folder",
        data_dir=str(data_dir),
        model_dir=str(model_dir),
        train_batch_size=8,
        train_steps=2,
        warmup_epochs=0,
        proj_out_dim=8,
        num_proj_layers=2,
        use_blur=False,
        verbose=0,
        image_size=IMAGE_SIZE,
        **SK,
    )
    return Config(**{**fields, **changes})


def frozen_by_block_2(path: str) -> bool:
    return path.startswith(("stem_", "block_group1_", "block_group2_"))


@pytest.mark.slow  # 60-90 s here: two runs and an export of a 16-block network
def test_mixed_float16_pretrain_then_fine_tune_after_block_2_then_export(
    session_train_test_folder, tmp_path
):
    pre_dir, ft_dir = tmp_path / "pre", tmp_path / "ft"
    # The pretraining mode alone (modes.run would also export: 25 s more here).
    config = tiny_config(pre_dir, session_train_test_folder, precision="mixed_float16")
    pre = pretrain.run(
        resolver.resolve(config, run_dir.given_fields(config)), tf.distribute.get_strategy()
    )
    # Dynamic loss scaling starts at 2**15, where this network's float16 gradients
    # overflow: both steps are skipped and not counted (as with any encoder; measured: the
    # first step applies at a scale of 512). The gradients were computed in float16.
    assert np.isfinite(pre["loss"]) and pre["global_step"] == 0
    pretrained, _, described = run_dir.load_model(str(pre_dir))
    assert described.sk_ratio == 0.0625 and described.se_ratio == 0.25
    # A trained encoder's residual branches end in non-zero BN gammas; the zero-initialised
    # ones of this untrained net would keep every branch's gradient at zero for a step,
    # and then tiny: nothing to see in two steps. The start of fine-tuning: ckpt-1.
    rng = np.random.default_rng(0)
    for variable in pretrained.encoder.weights:
        if variable.path.endswith("bn3/gamma"):
            variable.assign(rng.uniform(0.05, 0.15, variable.shape).astype("float32"))
    start = tf.train.Checkpoint(model=pretrained).save(str(pre_dir / "ckpt"))  # ckpt-1

    ft = modes.run(
        tiny_config(
            ft_dir,
            session_train_test_folder,
            train_mode="finetune",
            checkpoint=start,
            fine_tune_after_block=2,
            precision="mixed_float16",
            optimizer="momentum",
            learning_rate=0.1,
            train_batch_size=4,
            **{name: Config.__dataclass_fields__[name].default for name in SK},
        ),
        # The architecture comes from the pretrained run's model.json.
        given={"mode", "train_mode", "checkpoint", "model_dir", "image_size"},
    )
    assert ft["train"]["global_step"] == 2 and np.isfinite(ft["train"]["loss"])
    classifier, step, described = run_dir.load_model(str(ft_dir))
    assert step == 2 and described.sk_ratio == 0.0625 and described.se_ratio == 0.25
    assert described.fine_tune_after_block == 2

    # Frozen: the stem and groups 1-2, moving statistics included; everything after moved,
    # the SK gates and SE layers of groups 3-4 among them.
    before = {v.path: v.numpy() for v in pretrained.encoder.weights}
    moved = set()
    for variable in classifier.encoder.weights:
        if np.any(variable.numpy() != before[variable.path]):
            moved.add(variable.path)
        if frozen_by_block_2(variable.path):
            assert variable.path not in moved, variable.path
            assert variable.path not in {v.path for v in classifier.trainable_weights}
    trainable = {v.path for v in classifier.encoder.trainable_weights}
    assert trainable and all(not frozen_by_block_2(path) for path in trainable)
    assert trainable <= moved, sorted(trainable - moved)[:5]
    assert any("block_group3_block0_sk_gate" in path for path in trainable)
    assert any("block_group4_block0_se_expand" in path for path in trainable)

    # The export: the reloaded SavedModel computes what the Keras model does (float16
    # inside, float32 out).
    assert ft["export"].endswith("saved_model/2")
    loaded = tf.saved_model.load(ft["export"])
    images = tf.random.stateless_uniform([4, IMAGE_SIZE, IMAGE_SIZE, 3], seed=[1, 2])
    want = classifier(images, training=False)
    got = loaded(images)
    assert got["logits"].dtype == tf.float32
    for key in ("embedding", "logits"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-3, atol=1e-3, err_msg=key)
