"""Measures what the blur's padding does to an image's border: ours (reflect) vs the
reference's zeros (`padding="SAME"` in its `data_util.gaussian_blur`).

    python scripts/blur_edge_effect.py            # 224 px (ImageNet) and 32 px
    python scripts/blur_edge_effect.py --sizes 96

The image is constant (value 0.5), so any change is the padding's doing. The blur
is `augment.gaussian_blur` with the paper's kernel (10% of the side) and the sigma
averaged over its distribution U[0.1, 2.0] (a midpoint grid of `--sigmas` values).
Printed per size: the mean relative change of the outermost row and column (every
pixel within 1 px of the border), of the band of `radius` pixels along the border
(the pixels the padding can reach) and of the whole image. A blurred view is drawn
with p = 0.5 in pretraining; the numbers are for the views that are blurred.
docs/reference_differences.md quotes them.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_simclr.data.augment import gaussian_blur  # noqa: E402
from tf_simclr.data.augment_params import BLUR_SIGMA_RANGE, blur_kernel_size  # noqa: E402

VALUE = 0.5


def blurred(size: int, sigma: float, padding: str) -> np.ndarray:
    """The blur of a constant `size`-px image, one channel `[size, size]`."""
    image = np.full((size, size, 3), VALUE, np.float32)
    return gaussian_blur(image, blur_kernel_size(size), sigma, padding).numpy()[..., 0]


def edge_effect(size: int, sigmas: int = 20) -> dict[str, dict[str, float]]:
    """{padding: {"outer": ..., "band": ..., "image": ...}}: mean relative change
    (negative: darker) over the sigma grid, of the outer 1-px frame, the `radius`-px
    band and the whole image; also "radius"."""
    low, high = BLUR_SIGMA_RANGE
    grid = low + (np.arange(sigmas) + 0.5) * (high - low) / sigmas
    radius = blur_kernel_size(size) // 2
    frame = np.ones((size, size), bool)
    frame[1:-1, 1:-1] = False
    band = np.ones((size, size), bool)
    if radius:
        band[radius:-radius, radius:-radius] = False
    result: dict = {"radius": radius}
    for padding, name in (("REFLECT", "reflect (ours)"), ("SAME", "zeros (reference)")):
        change = np.mean([blurred(size, s, padding) / VALUE - 1 for s in grid], axis=0)
        means = {
            "outer": change[frame].mean(),
            "band": change[band].mean() if radius else 0.0,
            "image": change.mean(),
        }
        # Float32 round-off (about 1e-7) is no change.
        result[name] = {k: float(v) if abs(v) > 1e-5 else 0.0 for k, v in means.items()}
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 32])
    parser.add_argument("--sigmas", type=int, default=20)
    args = parser.parse_args(argv)
    print("| size | radius | padding | outer 1-px frame | radius band | whole image |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        effect = edge_effect(size, args.sigmas)
        for name, values in effect.items():
            if name == "radius":
                continue
            print(
                f"| {size} | {effect['radius']} | {name} | {values['outer']:+.1%} "
                f"| {values['band']:+.1%} | {values['image']:+.2%} |"
            )


if __name__ == "__main__":
    main()
