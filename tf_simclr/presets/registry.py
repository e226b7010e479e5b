"""The published SimCLR models: the rows of `published.PRESETS` as `Preset`s (no TensorFlow).

A preset's name is its location below the bucket root, e.g. `simclrv2/pretrained/r50_1x_sk1`
(`<root>/<name>/saved_model/saved_model.pb`); the same name with `_` for `/`
(`simclrv2_pretrained_r50_1x_sk1`, keras-hub style) names it too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from tf_simclr.errors import ArgumentError
from tf_simclr.presets import published

# A published model's files, below its location (the reference's TF2 SavedModel).
FILES = (
    "saved_model/saved_model.pb",
    "saved_model/variables/variables.index",
    "saved_model/variables/variables.data-00000-of-00001",
)


@dataclasses.dataclass(frozen=True)
class Preset:
    """One published model (`published.py` says where each number comes from)."""

    name: str  # also its location below the bucket root
    version: int  # SimCLR v1 or v2
    training: str  # pretrained, finetuned_10pct, supervised, ... (SimCLRv1: pretrain, ...)
    depth: int
    width_multiplier: int
    sk: bool  # selective kernels (sk_ratio 0.0625)
    encoder_params: int  # trainable parameters of the ResNet encoder (heads excluded)
    params_m: int  # the published parameter count in millions (README, paper)
    top1: float  # published ImageNet top-1 (%)
    top1_protocol: str  # "linear eval" (pretrained) or "fine-tuned ..." / "supervised"
    top1_source: str = ""
    cifar_stem: bool = False
    files: tuple[str, ...] = FILES

    @property
    def location(self) -> str:
        return self.name

    @property
    def architecture(self) -> str:
        """E.g. `r50_1x_sk1` (as `tf_simclr.official.Architecture.name` writes it)."""
        if self.cifar_stem:
            return f"r{self.depth}_cifar_{self.width_multiplier}x" + ("_sk1" if self.sk else "")
        return f"r{self.depth}_{self.width_multiplier}x_sk{int(self.sk)}"

    @property
    def sk_ratio(self) -> float:
        return 0.0625 if self.sk else 0.0


def encoder_params(encoder) -> int:
    """Trainable parameters of a built encoder: what `Preset.encoder_params` counts."""
    return sum(math.prod(v.shape) for v in encoder.trainable_weights)


# What `top1` measures, by the training of the model.
PROTOCOLS = {
    "pretrained": "linear eval",
    "pretrain": "linear eval",
    "supervised": "supervised",
    **{
        f"{prefix}_{pct}pct": f"fine-tuned on {pct}% of labels"
        for prefix in ("finetuned", "finetune")
        for pct in (1, 10, 100)
    },
}


def from_row(row: tuple) -> Preset:
    """A `Preset` of a row of `published.PRESETS`; version and training come from the name."""
    name, depth, width, sk, encoder_params, params_m, top1, source = row
    version, training = name.split("/")[:2]
    return Preset(
        name=name,
        version=int(version.removeprefix("simclrv")),
        training=training,
        depth=depth,
        width_multiplier=width,
        sk=sk,
        encoder_params=encoder_params,
        params_m=params_m,
        top1=top1,
        top1_protocol=PROTOCOLS[training],
        top1_source=source,
    )


_PRESETS: dict[str, Preset] | None = None


def presets() -> dict[str, Preset]:
    """The package's registry, by name."""
    global _PRESETS
    if _PRESETS is None:
        _PRESETS = {row[0]: from_row(row) for row in published.PRESETS}
    return _PRESETS


def find(name: str, registry: Mapping[str, Preset] | None = None) -> Preset | None:
    """The preset called `name` (`a/b/c` or `a_b_c`), or None."""
    registry = presets() if registry is None else registry
    if name in registry:
        return registry[name]
    underscored = {key.replace("/", "_"): preset for key, preset in registry.items()}
    return underscored.get(name.strip("/"))


def get(name: str, registry: Mapping[str, Preset] | None = None) -> Preset:
    """The preset called `name`; else an ArgumentError (naming the presets that end with it,
    for a bare architecture such as `r50_1x_sk1`)."""
    preset = find(name, registry)
    if preset is None:
        registry = presets() if registry is None else registry
        endings = [key for key in registry if key.endswith("/" + name.strip("/"))]
        hint = (
            f"did you mean {' or '.join(endings)}?"
            if endings
            else "tf_simclr.list_presets() lists them, e.g. simclrv2/pretrained/r50_1x_sk1"
        )
        raise ArgumentError("name", f"is not a published model; {hint}", name)
    return preset


def list_presets(registry: Mapping[str, Preset] | None = None) -> list[str]:
    """Every preset name, in the registry's order."""
    return list(presets() if registry is None else registry)


def table(registry: Mapping[str, Preset] | None = None) -> str:
    """The presets as a Markdown table (name, architecture, parameters, published top-1)."""
    rows = [
        "| name | architecture | params (M) | ImageNet top-1 (%) |",
        "|---|---|---:|---|",
    ]
    for preset in (presets() if registry is None else registry).values():
        rows.append(
            f"| `{preset.name}` | {preset.architecture} | {preset.params_m} | "
            f"{preset.top1:.1f} ({preset.top1_protocol}) |"
        )
    return "\n".join(rows)
