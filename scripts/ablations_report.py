"""Tables and figures of the CIFAR-10 ablation study, from its results JSON.

    python scripts/ablations_report.py      # or: python scripts/ablations.py report

Reads `docs/results/ablations/<arm>.json` (written by `scripts/ablations.py run`),
writes a bar chart and training curves per group to `docs/figures/` and rewrites
the tables between the `<!-- ablations:GROUP -->` markers of `docs/results.md`.
The arms, their groups, labels and order come from their flag files
(`experiments/ablations/`, see `scripts/ablation_arms.py`).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ablation_arms import ARMS, ROOT  # noqa: E402

RESULTS_DIR = os.path.join(ROOT, "docs", "results", "ablations")
FIGURES_DIR = os.path.join(ROOT, "docs", "figures")
RESULTS_MD = os.path.join(ROOT, "docs", "results.md")

# The base arm belongs to every group: the reference point of each table.
GROUP_REFERENCE = {
    "projection_head": ("base", "non-linear, 2 layers (base)", "best (Fig. 8)"),
    "loss": ("base", "l2, T=0.5 (base)", "the paper's CIFAR choice (B.9)"),
    "batch_size": ("base", "batch 256 (base)", "between 128 and 512 (Fig. 9)"),
    "baselines": ("base", "SimCLR (base)", "between random init and supervised"),
}


def load_results(results_dir: str) -> dict:
    results = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            result = json.load(f)
        results[result["arm"]] = result
    return results


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def group_members(group: str) -> list[tuple[str, str, str]]:
    """(arm name, label, paper direction) of every arm of `group`, reference first."""
    members = [GROUP_REFERENCE[group]] if group in GROUP_REFERENCE else []
    return members + [(arm.name, arm.label, arm.paper) for arm in ARMS if arm.group == group]


def group_rows(group: str, results: dict) -> list[tuple[str, dict | None, str]]:
    """(label, result or None, paper direction) for every arm of `group`, reference first."""
    return [(label, results.get(name), paper) for name, label, paper in group_members(group)]


# Arms repeated with another seed: (arm, repeat). Their spread is the noise level.
SEED_PAIRS = (("base", "base_seed1"), ("no_color", "no_color_seed1"))
NOISE_METRICS = ("knn_top1", "linear_top1")


def seed_noise(results: dict) -> dict | None:
    """Mean |difference| between an arm and its seed-1 repeat, per metric, over the
    `SEED_PAIRS` that have both results; None when no pair is complete."""
    pairs = [
        (results[a]["metrics"], results[b]["metrics"])
        for a, b in SEED_PAIRS
        if results.get(a, {}).get("metrics") and results.get(b, {}).get("metrics")
    ]
    if not pairs:
        return None
    noise = {key: sum(abs(x[key] - y[key]) for x, y in pairs) / len(pairs) for key in NOISE_METRICS}
    return {**noise, "pairs": len(pairs)}


def _delta(result: dict, base: dict | None, noise: dict | None) -> str:
    """`-8.3 / -7.2` (kNN / linear points vs the base arm), `(noise)` when both
    differences are within twice the seed spread (about two standard deviations of
    a difference of two single runs)."""
    if not base or result is base or not result.get("metrics") or not base.get("metrics"):
        return ""
    deltas = [100 * (result["metrics"][k] - base["metrics"][k]) for k in NOISE_METRICS]
    text = " / ".join(f"{d:+.1f}" for d in deltas)
    if noise and all(
        abs(d) <= 2 * 100 * noise[k] for d, k in zip(deltas, NOISE_METRICS, strict=True)
    ):
        text += " (noise)"
    return text


def markdown_table(group: str, results: dict) -> str:
    lines = [
        "| arm | kNN top-1 | linear top-1 | online probe top-1 | vs base: kNN / linear "
        "| steps | train min | paper |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    base, noise = results.get("base"), seed_noise(results)
    for label, result, paper in group_rows(group, results):
        if result is None:
            lines.append(f"| {label} | not run yet | | | | | | {paper} |")
            continue
        m = result.get("metrics", {})
        probe = m.get("probe_top1", m.get("supervised_top1"))
        note = "" if result["status"] == "complete" else f" ({result['status']})"
        if result.get("diverged_at_step"):
            note = f" (diverged: NaN loss at step {result['diverged_at_step']})"
        lines.append(
            f"| {label}{note} | {_percent(m.get('knn_top1'))} | {_percent(m.get('linear_top1'))} "
            f"| {_percent(probe)} | {_delta(result, base, noise)} | {result['steps']} "
            f"| {result['train_seconds'] / 60:.0f} | {paper} |"
        )
    if noise:
        lines.append("")
        lines.append(
            f"Seed noise (mean |seed 0 - seed 1| over {noise['pairs']} repeated "
            f"arm{'s' if noise['pairs'] > 1 else ''}): kNN {100 * noise['knn_top1']:.1f}, "
            f"linear {100 * noise['linear_top1']:.1f} points; a difference to the base "
            "within twice that on both metrics is marked (noise)."
        )
    return "\n".join(lines)


def plot_group(group: str, results: dict, path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, r) for label, r, _ in group_rows(group, results) if r and r.get("metrics")]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.6))
    width = 0.38
    series = ((-width / 2, "knn_top1", "kNN"), (width / 2, "linear_top1", "linear"))
    for offset, key, name in series:
        values = [100 * r["metrics"].get(key, 0.0) for _, r in rows]
        bars = ax.bar([i + offset for i in range(len(rows))], values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([label for label, _ in rows], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title(f"Ablation: {group.replace('_', ' ')}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def group_results(group: str, results: dict) -> dict:
    """{arm: result} of `group`'s arms that have results, the group's reference first."""
    return {name: results[name] for name, _, _ in group_members(group) if name in results}


def arm_colours(names) -> dict[str, str]:
    """One matplotlib colour per arm (the colour cycle, in the order given): the same in
    every panel, also for an arm that has no points in one of them."""
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def is_diverged(result: dict) -> bool:
    return result.get("status") == "diverged"


def loss_limits(results: dict) -> tuple[float, float, bool] | None:
    """(bottom, top, log scale) of the loss panel, from the arms that did not diverge: a
    diverged arm's loss (up to 1e33) would flatten every other curve, so it is clipped to
    the top edge instead. A log scale when those arms' losses span more than 10x (no-l2
    arms start near 300, the others near 10). None when every arm diverged."""
    values = [
        v
        for r in results.values()
        if not is_diverged(r)
        for _, v in r.get("curves", {}).get("loss", [])
        if math.isfinite(v)
    ]
    if not values:
        return None
    low, high = min(values), max(values)
    if low > 0 and high / low > 10:
        return low / 1.2, high * 1.2, True
    margin = 0.05 * (high - low) or 0.5
    return low - margin, high + margin, False


def clip_to(values: list[float], top: float) -> list[float]:
    """`values` with everything above `top` (or not finite) drawn at `top`."""
    return [v if math.isfinite(v) and v <= top else top for v in values]


def plot_curves(results: dict, path: str) -> bool:
    """Training loss and kNN top-1 over training of every arm in `results`, one colour per
    arm in both panels; a diverged arm's loss is clipped to the top edge and marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in results.values() if r.get("curves", {}).get("loss")]
    if not trained:
        return False
    colours = arm_colours(r["arm"] for r in trained)
    limits = loss_limits({r["arm"]: r for r in trained})
    fig, (loss_ax, knn_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for r in trained:
        colour = colours[r["arm"]]
        epochs = [s / r["steps_per_epoch"] for s, _ in r["curves"]["loss"]]
        losses = [v for _, v in r["curves"]["loss"]]
        # A supervised arm's loss is its classifier's cross-entropy, not NT-Xent.
        name = r["arm"] + (" (cross-entropy)" if r.get("kind") == "supervised" else "")
        if is_diverged(r):
            name += f" (diverged at step {r.get('diverged_at_step', '?')})"
            if limits is not None:
                losses = clip_to(losses, limits[1])
        loss_ax.plot(epochs, losses, lw=1, color=colour, label=name)
        if is_diverged(r):  # an x where it left the plot (its legend entry says so)
            loss_ax.plot(epochs[-1], losses[-1], marker="x", ms=8, color=colour)
        if r.get("knn_curve"):
            steps, values = zip(*r["knn_curve"], strict=True)
            knn_ax.plot(
                [s / r["steps_per_epoch"] for s in steps],
                [100 * v for v in values],
                marker="o",
                lw=1,
                color=colour,
                label=r["arm"],
            )
    if limits is not None:
        bottom, top, log = limits
        if log:
            loss_ax.set_yscale("log")
        loss_ax.set_ylim(bottom, top)
    loss_ax.set(title="training loss (running mean within each epoch)", xlabel="epoch")
    if any(is_diverged(r) for r in trained):  # they leave at the top left
        loss_ax.legend(fontsize=7, loc="center right")
    else:
        loss_ax.legend(fontsize=7, ncol=2)
    knn_ax.set(title="kNN top-1 (%) on the test split", xlabel="epoch")
    for ax in (loss_ax, knn_ax):
        ax.grid(alpha=0.3)
    knn_ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def command_report(args) -> None:
    results = load_results(args.results_dir)
    groups = sorted({arm.group for arm in ARMS})
    os.makedirs(args.figures_dir, exist_ok=True)
    for group in groups:
        path = os.path.join(args.figures_dir, f"ablation_{group}.png")
        if plot_group(group, results, path):
            print(f"wrote {path}")
        path = os.path.join(args.figures_dir, f"ablation_curves_{group}.png")
        if plot_curves(group_results(group, results), path):
            print(f"wrote {path}")
    with open(args.markdown) as f:
        text = f.read()
    for group in groups:
        pattern = re.compile(
            rf"(<!-- ablations:{group} -->\n).*?(<!-- /ablations:{group} -->)", re.S
        )
        text, found = pattern.subn(
            lambda m, g=group: m.group(1) + markdown_table(g, results) + "\n" + m.group(2), text
        )
        if not found:
            print(f"{args.markdown} has no <!-- ablations:{group} --> markers; table:")
            print(markdown_table(group, results))
    with open(args.markdown, "w") as f:
        f.write(text)
    print(f"updated {args.markdown} ({len(results)} of {len(ARMS)} arms have results)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    parser.add_argument("--figures_dir", default=FIGURES_DIR, help="PNGs go here")
    parser.add_argument("--markdown", default=RESULTS_MD, help="tables go here")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    command_report(parser.parse_args(argv))


if __name__ == "__main__":
    main()
