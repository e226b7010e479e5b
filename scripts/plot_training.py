"""Plots training scalars (loss, contrastive accuracy, probe accuracy, learning rate).

    python scripts/plot_training.py runs/cifar10_proof docs/figures/proof_loss.png

A thin wrapper of `tf_simclr.viz.plot_training`, which reads the TensorBoard
event files `run.py` writes to <model_dir>/train and draws a panel per scalar.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("output_png")
    args = parser.parse_args()
    from tf_simclr import viz
    from tf_simclr.errors import ArgumentError

    try:
        viz.plot_training(args.model_dir, path=args.output_png)
    except ArgumentError as e:
        raise SystemExit(f"plot_training.py: error: {e}") from None
    print(f"wrote {args.output_png}")


if __name__ == "__main__":
    main()
