"""Tests of `--precision`: dtype policies, float32 islands, loss scaling, checkpoints."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import _harness
from tf_simclr import builders, losses, modes, precision, resolver, run_dir
from tf_simclr.models import ResNet
from tf_simclr.optim import LARS, AdamL2, build_optimizer

MIXED = ("mixed_bfloat16", "mixed_float16")


tiny_config = _harness.tiny_config


def two_view_batch(batch=8, size=16, seed=0):
    return {
        "view1": tf.random.stateless_uniform([batch, size, size, 3], seed=[seed, 1]),
        "view2": tf.random.stateless_uniform([batch, size, size, 3], seed=[seed, 2]),
        "label": tf.random.stateless_uniform([batch], [seed, 3], maxval=3, dtype=tf.int64),
    }


def compiled_model(config, num_classes=3, total_steps=10):
    keras.utils.set_random_seed(config.seed)
    model = builders.build_pretrain_model(config, num_classes)
    optimizer = builders.build_training_optimizer(config, 1, total_steps)
    model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
    return model, optimizer


# --- NT-Xent in float16 ---------------------------------------------------------------


@pytest.mark.parametrize("hidden_norm, temperature", [(True, 0.1), (True, 0.05), (False, 0.5)])
def test_nt_xent_float16_inputs_equal_the_float32_reference(hidden_norm, temperature):
    # Projections that float16 represents exactly, so both calls see the same numbers.
    z = tf.random.stateless_normal([2, 16, 8], seed=[4, 2])
    z16 = tf.cast(z, tf.float16)
    z32 = tf.cast(z16, tf.float32)
    half = losses.nt_xent(z16[0], z16[1], temperature=temperature, hidden_norm=hidden_norm)
    full = losses.nt_xent(z32[0], z32[1], temperature=temperature, hidden_norm=hidden_norm)
    # The self-similarity mask (1e9) would overflow to inf in float16 and turn every
    # unmasked logit into 0 * inf = NaN; it must be applied in float32.
    assert half.loss.dtype == tf.float32 and half.logits.dtype == tf.float32
    assert np.isfinite(half.loss.numpy())
    np.testing.assert_allclose(half.loss.numpy(), full.loss.numpy(), rtol=1e-6)
    np.testing.assert_allclose(half.logits.numpy(), full.logits.numpy(), rtol=1e-6)


# --- Policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("precision", MIXED)
def test_encoder_computes_in_the_policy_and_everything_else_in_float32(precision):
    compute = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}[precision]
    model = builders.build_pretrain_model(tiny_config(precision=precision), num_classes=3)
    convs = [layer for layer in model.encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == compute for layer in convs)
    assert model.encoder.dtype_policy.name == precision
    # Conv outputs really are in the low-precision dtype (not only the declared policy).
    probe = keras.Model(model.encoder.input, model.encoder.get_layer("stem_conv").output)
    assert probe(tf.zeros([1, 16, 16, 3])).dtype == compute
    # The float32 islands: head, probe and pooled features; all weights are float32.
    assert model.head.compute_dtype == "float32" and model.probe.compute_dtype == "float32"
    outputs = model(tf.random.uniform([2, 16, 16, 3]), training=False)
    assert {k: v.dtype for k, v in outputs.items()} == dict.fromkeys(outputs, tf.float32)
    assert {v.dtype for v in model.variables} == {"float32"}


def test_precision_flag_beats_the_global_policy_and_does_not_change_it():
    before = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = builders.build_pretrain_model(tiny_config(precision="float32"), num_classes=3)
        computing = [
            layer
            for layer in model.encoder.layers
            if not isinstance(layer, keras.layers.InputLayer)  # passes float32 images through
        ]
        assert {layer.compute_dtype for layer in computing} == {"float32"}
        assert model.head.compute_dtype == model.probe.compute_dtype == "float32"
        builders.build_pretrain_model(tiny_config(precision="mixed_bfloat16"), num_classes=3)
        assert keras.config.dtype_policy().name == "mixed_float16"
    finally:
        keras.config.set_dtype_policy(before)
    assert keras.config.dtype_policy().name == before


def test_batch_norm_statistics_are_float32_under_bfloat16():
    # Inputs far from zero with a small spread: summing 4096 of them in bfloat16
    # (8-bit mantissa) would get the mean and especially the variance badly wrong.
    encoder = ResNet(18, width_multiplier=0.125, cifar_stem=True, dtype="mixed_bfloat16")
    bn = encoder.get_layer("stem_bn")
    x = 100.0 + tf.random.stateless_normal([64, 8, 8, bn.gamma.shape[0]], seed=[1, 1])
    x = tf.cast(x, tf.bfloat16)
    bn(x, training=True)
    reference = x.numpy().astype(np.float64).reshape(-1, x.shape[-1])
    decay = bn.momentum  # moving = decay * init + (1 - decay) * batch; init mean 0, var 1
    assert bn.moving_mean.dtype == "float32" and bn.moving_variance.dtype == "float32"
    np.testing.assert_allclose(bn.moving_mean.numpy(), (1 - decay) * reference.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), decay + (1 - decay) * reference.var(0), rtol=1e-4
    )


def test_resnet_policy_survives_serialization(tmp_path):
    encoder = ResNet(18, width_multiplier=0.125, cifar_stem=True, dtype="mixed_bfloat16")
    encoder(tf.zeros([1, 16, 16, 3]))
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    restored = keras.saving.load_model(path)
    assert restored.dtype_policy.name == "mixed_bfloat16"
    assert restored.get_layer("stem_conv").compute_dtype == "bfloat16"
    images = tf.random.stateless_uniform([2, 16, 16, 3], seed=[0, 0])
    np.testing.assert_array_equal(restored(images).numpy(), encoder(images).numpy())


# --- Training -------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["lars", "adam"])
@pytest.mark.parametrize("precision", ["float32", *MIXED])
def test_train_steps_are_finite_and_update_the_weights(precision, optimizer):
    config = tiny_config(precision=precision, optimizer=optimizer)
    model, opt = compiled_model(config)
    inner = opt.inner_optimizer if precision == "mixed_float16" else opt
    assert isinstance(inner, LARS if optimizer == "lars" else AdamL2)
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")
    before = [v.numpy() for v in model.trainable_variables]
    steps = 8
    data = tf.data.Dataset.from_tensors(two_view_batch()).repeat()
    logs = model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in logs.values())
    after = [v.numpy() for v in model.trainable_variables]
    assert all(np.all(np.isfinite(a)) for a in after)
    changed = sum(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    assert changed == len(after)
    applied = int(opt.iterations.numpy())
    if precision == "mixed_float16":
        # Every overflowing step halves the scale and is not counted; the rest applied.
        halvings = math.log2(opt.initial_scale / float(opt.dynamic_scale.numpy()))
        assert halvings == int(halvings) and applied + int(halvings) == steps
        assert applied > 0
    else:
        assert applied == steps


@pytest.mark.parametrize("name", ["lars", "adam"])
def test_loss_scaling_composes_with_our_optimizers(name):
    # The same variables and gradients through a bare optimizer and through a
    # LossScaleOptimizer wrapping an identical one, which gets the scaled gradients.
    shapes = {"conv/kernel": [3, 3, 2, 4], "conv_bn/gamma": [4], "head_supervised/kernel": [4, 3]}
    initial = [
        tf.random.stateless_normal(shape, seed=[i, 0]) for i, shape in enumerate(shapes.values())
    ]
    grads = [
        tf.random.stateless_normal(shape, seed=[i, 1]) for i, shape in enumerate(shapes.values())
    ]
    make_vars = lambda: [
        keras.Variable(value, name=path.split("/")[-1])
        for path, value in zip(shapes, initial, strict=True)
    ]
    bare_vars, scaled_vars = make_vars(), make_vars()
    bare = build_optimizer(name, 0.1, weight_decay=1e-3)
    scaled = keras.optimizers.LossScaleOptimizer(build_optimizer(name, 0.1, weight_decay=1e-3))
    scaled.build(scaled_vars)

    # A non-finite gradient: no update, not counted, the scale halves.
    scaled.apply([g * np.inf for g in grads], scaled_vars)
    assert int(scaled.iterations.numpy()) == 0
    assert float(scaled.dynamic_scale.numpy()) == scaled.initial_scale / 2
    for v, value in zip(scaled_vars, initial, strict=True):
        np.testing.assert_array_equal(v.numpy(), value.numpy())

    # Finite steps: the wrapped optimizer sees gradient / scale, i.e. the bare update.
    for _ in range(2):
        scale = float(scaled.dynamic_scale.numpy())
        scaled.apply([g * scale for g in grads], scaled_vars)
        bare.apply(grads, bare_vars)
    assert int(scaled.iterations.numpy()) == int(bare.iterations.numpy()) == 2
    for s_var, b_var, value in zip(scaled_vars, bare_vars, initial, strict=True):
        assert not np.array_equal(b_var.numpy(), value.numpy())
        np.testing.assert_allclose(s_var.numpy(), b_var.numpy(), rtol=1e-6, atol=1e-7)


def run_config(model_dir, **changes):
    return tiny_config(model_dir, **{"checkpoint_steps": 3, **changes})


def saved_loss_scale(model_dir):
    reader = tf.train.load_checkpoint(str(model_dir))
    names = [name for name in reader.get_variable_to_shape_map() if "dynamic_scale" in name]
    assert len(names) == 1, "the loss scale is not in the checkpoint"
    return float(reader.get_tensor(names[0]))


@pytest.mark.slow  # 20 s: two float16 runs through run.py
def test_float16_run_checkpoints_the_loss_scale_and_resumes(tmp_path):
    model_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=32):
        first = modes.run(run_config(model_dir, precision="mixed_float16", train_steps=6))
        # Overflowing first steps are skipped, so fewer than 6 were applied and counted.
        step = first["train"]["global_step"]
        scale = saved_loss_scale(model_dir)
        assert 0 < step < 6 and math.log2(2.0**15 / scale) == 6 - step
        resumed = modes.run(run_config(model_dir, precision="mixed_float16", train_steps=8))
    # The resumed run starts from the saved scale (not 2**15 again): the steps it
    # skipped are exactly its further halvings of that scale.
    final_step = resumed["train"]["global_step"]
    skipped = math.log2(scale / saved_loss_scale(model_dir))
    assert final_step + skipped == 8 and final_step > step
    assert np.isfinite(resumed["train"]["loss"])
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{final_step}")


def test_bfloat16_checkpoint_evaluates_in_float32(tmp_path):
    # Weights are float32 under every policy, so --precision may differ at evaluation
    # (given on the command line: else the recorded mixed_bfloat16 is adopted).
    model_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=32):
        modes.run(run_config(model_dir, precision="mixed_bfloat16", train_steps=2))
        evaluate = run_config(model_dir, mode="eval", eval_split="test", knn_k=3, train_steps=2)
        given = run_dir.given_fields(evaluate) | {"precision"}
        assert resolver.resolve(evaluate, given).config.precision == "float32"
        result = modes.run(evaluate, given)
    assert result["eval"]["global_step"] == 2
    assert 0.0 <= result["eval"]["knn_top1"] <= 1.0


# --- --precision=auto ---------------------------------------------------------------------

NO_AVX512 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})  # an AVX2-only CPU


@pytest.mark.parametrize(
    "cpu, gpus, policy",
    [
        (NO_AVX512, [], "float32"),
        (NO_AVX512 | {"avx512f", "avx512_vnni"}, [], "float32"),  # AVX-512 without BF16
        (NO_AVX512 | {"avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),  # Zen 4, Cooper Lake
        (NO_AVX512 | {"amx_tile", "amx_bf16", "amx_int8"}, [], "mixed_bfloat16"),  # Sapphire R.
        (NO_AVX512 | {"amx_tile", "amx_int8"}, [], "float32"),  # tiles without BF16
        (NO_AVX512, [(7, 0)], "mixed_float16"),  # V100
        (NO_AVX512 | {"avx512_bf16"}, [(8, 0), (8, 0)], "mixed_float16"),  # the GPUs decide
        (NO_AVX512 | {"avx512_bf16"}, [(6, 1)], "float32"),  # P40: no tensor cores
        (NO_AVX512, [(8, 6), (6, 0)], "float32"),  # mixed GPUs: the oldest decides
    ],
)
def test_auto_precision_is_decided_by_the_hardware(cpu, gpus, policy):
    chosen, reason = precision.choose(cpu, gpus)
    assert chosen == policy
    assert reason


def test_auto_reason_names_what_is_missing():
    assert precision.choose(NO_AVX512, []) == ("float32", "no AVX512-BF16/AMX, no GPU")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n"
    )
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A machine whose CPU has AVX512-BF16 and no GPU, as `--precision=auto` sees it."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: NO_AVX512 | {"avx512_bf16"})
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    precision._auto.cache_clear()
    yield
    precision._auto.cache_clear()


def test_auto_is_resolved_and_logged_once(bf16_cpu, monkeypatch):
    lines = []  # (absl's logger stops propagating to caplog once a run set it up)
    monkeypatch.setattr(precision.logging, "info", lambda fmt, *args: lines.append(fmt % args))
    assert precision.resolve("auto") == precision.resolve("auto") == "mixed_bfloat16"
    assert precision.resolve("float32") == "float32"
    assert lines == ["Precision: auto -> mixed_bfloat16 (CPU with AVX512-BF16, no GPU)"]


def test_auto_run_records_the_chosen_policy_and_eval_adopts_it(tmp_path, bf16_cpu):
    model_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=32):
        modes.run(run_config(model_dir, precision="auto", train_steps=1))
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["precision"] == "mixed_bfloat16"
    assert run_dir.read(str(model_dir))["precision"] == "mixed_bfloat16"
    evaluate = run_config(model_dir, mode="eval")
    assert resolver.resolve(evaluate, frozenset()).config.precision == "mixed_bfloat16"
    # A --precision given on the command line wins over the recorded one.
    assert resolver.resolve(evaluate, frozenset({"precision"})).config.precision == "float32"
