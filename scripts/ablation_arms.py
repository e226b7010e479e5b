"""The arms of the CIFAR-10 ablation study: one flag file each, `experiments/ablations/`.

`base.flags` is the base setting and the `base` arm; every other `<arm>.flags`
holds `--flagfile=experiments/ablations/base.flags` and the arm's overrides. The arm's
name is its file name without `.flags`. Its metadata are comment lines of the form `# key: value`:

    # priority: 20          the study runs arms in ascending priority (unique
                            integers; the arms with results first, gaps of 10
                            leave room to insert one)
    # group: augmentation   the table / figure it belongs to
    # label: crop+flip only short text for tables and charts
    # paper: far below ...  the direction the paper reports (may be empty)
    # kind: pretrain        pretrain | random_init (evaluated untrained) | supervised

Other comments are free text. Used by `scripts/ablations.py` (running) and
`scripts/ablations_report.py` (tables and figures).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tf_simclr import flagfiles  # noqa: E402

ARMS_DIR = os.path.join(ROOT, "experiments", "ablations")
BASE = "base"
METADATA = ("priority", "group", "label", "paper", "kind")
KINDS = ("pretrain", "random_init", "supervised")
_METADATA_LINE = re.compile(rf"#\s*({'|'.join(METADATA)}):[ \t]*(.*?)\s*$")


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    group: str
    label: str  # short text for tables and charts
    flags: dict  # overrides of base.flags, typed ({"use_blur": True})
    paper: str = ""  # the direction the paper reports for this arm
    kind: str = "pretrain"  # pretrain | random_init | supervised
    priority: int = 0
    path: str = ""  # its flag file


def read_arm(path: str) -> Arm:
    """The arm of a flag file: its metadata header and its own overrides."""
    name = os.path.basename(path)[: -len(".flags")]
    metadata, own = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            match = _METADATA_LINE.match(line)
            if match:
                metadata[match.group(1)] = match.group(2)
            elif line.startswith("--") and not line.startswith("--flagfile="):
                own.append(line)
    missing = [key for key in METADATA if key not in metadata and key != "paper"]
    if missing:
        raise SystemExit(f"{path}: no `# {missing[0]}: ...` line (see scripts/ablation_arms.py)")
    if metadata["kind"] not in KINDS:
        raise SystemExit(f"{path}: kind {metadata['kind']!r} is not one of {', '.join(KINDS)}")
    try:
        priority = int(metadata["priority"])
    except ValueError:
        raise SystemExit(f"{path}: priority {metadata['priority']!r} is not an integer") from None
    # The base arm is base.flags itself: it overrides nothing.
    overrides = {} if name == BASE else flagfiles.values_from_args(own)
    return Arm(
        name=name,
        group=metadata["group"],
        label=metadata["label"],
        flags={k: flagfiles.parse_value(k, v) for k, v in overrides.items()},
        paper=metadata.get("paper", ""),
        kind=metadata["kind"],
        priority=priority,
        path=path,
    )


def load_arms(folder: str = ARMS_DIR) -> list[Arm]:
    """Every `*.flags` arm of `folder`, in priority order."""
    arms = [read_arm(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".flags")]
    arms.sort(key=lambda arm: arm.priority)
    for first, second in zip(arms, arms[1:], strict=False):
        if first.priority == second.priority:
            raise SystemExit(
                f"arms {first.name} and {second.name} have the same priority {first.priority}"
            )
    return arms


ARMS = load_arms()
ARMS_BY_NAME = {arm.name: arm for arm in ARMS}


def arm_flags(arm: Arm, data_dir: str, model_dir: str, extra: dict | None = None) -> dict:
    """All flags of an arm, as strings: its flag file + `extra` + the paths."""
    values = flagfiles.read_flagfile(arm.path)
    values.update(extra or {})
    values.update(data_dir=data_dir, model_dir=model_dir)
    return values


def arm_config(arm: Arm, data_dir: str, model_dir: str, extra: dict | None = None):
    """The `Config` of an arm (parsed as run.py parses the same flags)."""
    return flagfiles.config_from_flags(arm_flags(arm, data_dir, model_dir, extra))
