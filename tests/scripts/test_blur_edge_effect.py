"""scripts/blur_edge_effect.py measures what docs/reference_differences.md says."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
import blur_edge_effect  # noqa: E402


def test_edge_effect_of_zero_padding_matches_the_closed_form():
    size, sigmas = 40, 3  # kernel 4: radius 2
    effect = blur_edge_effect.edge_effect(size, sigmas)
    assert effect["radius"] == 2
    assert effect["reflect (ours)"] == {"outer": 0.0, "band": 0.0, "image": 0.0}
    # Zero padding: a constant image becomes c * a(y) * a(x), a(d) the kernel weight
    # that falls inside the image at distance d from the border.
    grid = 0.1 + (np.arange(sigmas) + 0.5) * 1.9 / sigmas
    k = np.arange(-2, 3)
    change = []
    for sigma in grid:
        w = np.exp(-(k**2) / (2 * sigma**2))
        w /= w.sum()
        a = np.array([w[(d + k >= 0) & (d + k < size)].sum() for d in range(size)])
        change.append(np.outer(a, a) - 1)
    change = np.mean(change, axis=0)
    frame = np.ones((size, size), bool)
    frame[1:-1, 1:-1] = False
    band = np.ones((size, size), bool)
    band[2:-2, 2:-2] = False
    zeros = effect["zeros (reference)"]
    assert zeros["outer"] == pytest.approx(change[frame].mean(), abs=1e-5)
    assert zeros["band"] == pytest.approx(change[band].mean(), abs=1e-5)
    assert zeros["image"] == pytest.approx(change.mean(), abs=1e-5)
    assert zeros["outer"] < -0.1  # clearly darker at the border
