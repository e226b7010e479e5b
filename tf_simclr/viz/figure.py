"""What every picture of `tf_simclr.viz` shares: matplotlib (imported when a figure is
drawn, never at import), saving a figure, and images made displayable."""

from __future__ import annotations

import os
import sys

import numpy as np

_INSTALL_HINT = "pip install 'tf_simclr[viz]' (or pip install matplotlib)"


def pyplot():
    """matplotlib.pyplot, with the Agg backend when there is no display to draw on.

    Raises:
      ImportError: without matplotlib, saying how to install it.
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            f"tf_simclr.viz needs matplotlib to draw figures: {_INSTALL_HINT}"
        ) from None
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    # A notebook kernel (ipykernel) and an explicit MPLBACKEND choose their own backend.
    if (
        headless
        and sys.platform.startswith("linux")
        and not os.environ.get("MPLBACKEND")
        and "ipykernel" not in sys.modules
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def below_title(fig) -> tuple[float, float, float, float]:
    """The tight_layout rectangle that leaves a third of an inch on top for the suptitle."""
    return (0.0, 0.0, 1.0, 1.0 - 0.33 / fig.get_figheight())


def save(fig, path: str | None):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=fig.dpi, bbox_inches="tight", pad_inches=0.05)
    return fig


def displayable(image) -> np.ndarray:
    """float [H, W, 3] in [0, 1] from uint8 0-255 or float [0, 1], 1-4 channels."""
    image = np.asarray(image)
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(float)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.clip(image[..., :3], 0.0, 1.0)
