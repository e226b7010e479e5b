"""NT-Xent against an independent float64 NumPy restatement, plus closed forms."""

import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.losses import contrastive_accuracy, contrastive_entropy, nt_xent


def reference_nt_xent(z1, z2, temperature, hidden_norm):
    """Paper eq. (1) over the 2n x 2n similarity matrix, in float64.

    Row k of `z = [z1; z2]` has its positive at `(k + n) mod 2n` and competes
    with every other row. The reference convention is the sum of the two
    directional means, i.e. `sum over all 2n rows / n`.
    """
    z = np.concatenate([z1, z2]).astype(np.float64)
    if hidden_norm:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    sim = z @ z.T / temperature
    total = 0.0
    for k in range(2 * n):
        others = [j for j in range(2 * n) if j != k]
        log_denominator = np.log(np.sum(np.exp(sim[k, others] - sim[k, others].max())))
        log_denominator += sim[k, others].max()
        total += log_denominator - sim[k, (k + n) % (2 * n)]
    return total / n


def random_views(n, d=16, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d)) * scale
    z2 = z1 + 0.5 * rng.normal(size=(n, d)) * scale
    return z1.astype(np.float32), z2.astype(np.float32)


@pytest.mark.parametrize("hidden_norm", [True, False])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 3, 8])
def test_matches_numpy_reference(n, temperature, hidden_norm):
    # Unnormalised projections are kept small so logits stay in a range where
    # float32 can be compared tightly with float64.
    z1, z2 = random_views(n, seed=n, scale=1.0 if hidden_norm else 0.3)
    out = nt_xent(z1, z2, temperature=temperature, hidden_norm=hidden_norm)

    expected = reference_nt_xent(z1, z2, temperature, hidden_norm)
    np.testing.assert_allclose(out.loss.numpy(), expected, rtol=1e-5, atol=1e-5)

    a, b = z1.astype(np.float64), z2.astype(np.float64)
    if hidden_norm:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(out.logits.numpy(), a @ b.T / temperature, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.labels.numpy(), np.arange(n))
    assert out.loss.dtype == tf.float32 and out.loss.shape == ()
    assert out.labels.dtype == tf.int32


def test_symmetric_in_views():
    z1, z2 = random_views(6, seed=1)
    loss_12 = nt_xent(z1, z2, temperature=0.2).loss
    loss_21 = nt_xent(z2, z1, temperature=0.2).loss
    np.testing.assert_allclose(loss_12.numpy(), loss_21.numpy(), rtol=1e-6)
    # And not symmetric in a trivial way: pairing view 1 with a shuffled view 2 changes it.
    shuffled = nt_xent(z1, z2[::-1], temperature=0.2).loss
    assert abs(shuffled.numpy() - loss_12.numpy()) > 0.1


@pytest.mark.parametrize("n, temperature", [(1, 0.5), (4, 0.5), (5, 0.1)])
def test_closed_form_for_identical_orthogonal_views(n, temperature):
    # z1 = z2 = one-hot rows: the positive logit is 1/T, the other 2n - 2 logits
    # (the self-similarity is masked) are 0. Both directions give the same CE.
    z = np.eye(n, 2 * n, dtype=np.float32) * 3.0  # scaled, normalisation undoes it
    loss = nt_xent(z, z, temperature=temperature, hidden_norm=True).loss
    positive = np.exp(1.0 / temperature)
    expected = 2.0 * -np.log(positive / (positive + 2 * n - 2))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_batch_size_comes_from_the_tensor_shape():
    fn = tf.function(
        lambda z1, z2: nt_xent(z1, z2, temperature=1.0),
        input_signature=[tf.TensorSpec([None, 8], tf.float32)] * 2,
    )
    for n in (5, 2):  # a full batch, then a partial one, through one traced graph
        z1, z2 = random_views(n, d=8, seed=n)
        out = fn(z1, z2)
        assert out.logits.shape == (n, n)
        np.testing.assert_allclose(
            out.loss.numpy(), reference_nt_xent(z1, z2, 1.0, True), rtol=1e-5
        )


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    # At temperature 0.1 without normalisation, float16 logits would overflow and
    # the 1e9 mask is inf in float16 (inf * 0 = NaN): computing in float32 avoids both.
    z1, z2 = random_views(8, seed=3, scale=4.0)
    z1_low, z2_low = tf.cast(z1, dtype), tf.cast(z2, dtype)
    out = nt_xent(z1_low, z2_low, temperature=0.1, hidden_norm=False)
    assert out.loss.dtype == tf.float32 and out.logits.dtype == tf.float32
    assert np.isfinite(out.loss.numpy())
    # Same as float32 on the same (rounded) values ...
    rounded = nt_xent(
        tf.cast(z1_low, tf.float32), tf.cast(z2_low, tf.float32), temperature=0.1, hidden_norm=False
    ).loss
    np.testing.assert_allclose(out.loss.numpy(), rounded.numpy(), rtol=1e-6)
    # ... and close to float32 on the original values with normalisation.
    normed_low = nt_xent(z1_low, z2_low, temperature=0.1).loss
    normed = nt_xent(z1, z2, temperature=0.1).loss
    np.testing.assert_allclose(normed_low.numpy(), normed.numpy(), rtol=2e-2)


def test_gradients_are_finite_and_nonzero():
    z1, z2 = (tf.constant(v) for v in random_views(4, seed=5))
    with tf.GradientTape() as tape:
        tape.watch([z1, z2])
        loss = nt_xent(z1, z2).loss
    g1, g2 = tape.gradient(loss, [z1, z2])
    for g in (g1, g2):
        assert np.all(np.isfinite(g.numpy())) and np.abs(g.numpy()).max() > 0


def test_accuracy_and_entropy_when_perfectly_separable():
    n = 6
    z = np.eye(n, dtype=np.float32)
    out = nt_xent(z, z, temperature=0.01)
    assert contrastive_accuracy(out.logits, out.labels).numpy() == 1.0
    assert contrastive_entropy(out.logits).numpy() < 1e-3


def test_accuracy_and_entropy_when_uniform():
    n = 5
    z = np.ones((n, 3), dtype=np.float32)
    out = nt_xent(z, z, temperature=0.5)
    # All logits equal: every row is the uniform distribution over the n columns,
    # and argmax picks column 0, which is only row 0's positive.
    np.testing.assert_allclose(contrastive_entropy(out.logits).numpy(), np.log(n), rtol=1e-6)
    np.testing.assert_allclose(contrastive_accuracy(out.logits, out.labels).numpy(), 1.0 / n)
    # With identical views every negative looks like the positive: loss = 2 log(2n - 1).
    np.testing.assert_allclose(out.loss.numpy(), 2 * np.log(2 * n - 1), rtol=1e-6)


def test_accuracy_and_entropy_against_numpy():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, -1.0], [5.0, 1.0, 4.0]], np.float32)
    labels = np.array([0, 0, 2], np.int32)
    np.testing.assert_allclose(contrastive_accuracy(logits, labels).numpy(), 1.0 / 3.0)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.mean(-np.sum(p * np.log(p), axis=1))
    np.testing.assert_allclose(contrastive_entropy(logits).numpy(), expected, rtol=1e-6)
