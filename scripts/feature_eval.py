"""kNN and linear probe on frozen encoder features, for a checkpoint or a random init.

    python scripts/feature_eval.py --flagfile=experiments/cifar10_r18w025_proof.flags \
        --data_dir=/tmp/data/cifar10_jpg --model_dir=runs/cifar10_proof \
        --output=docs/results/proof_features_pretrained.json
    python scripts/feature_eval.py ... --random_init --output=..._random.json

Takes run.py's flags (`--flagfile=PATH` and `--name=value`, later ones winning;
read with `tf_simclr.flagfiles`, not absl) plus its own: --random_init, --output,
--probe_epochs. Rebuilds and restores the model of `--model_dir` (its latest
checkpoint; the architecture from its model.json, `tf_simclr.run_dir.load_model`),
extracts encoder features of the train and eval splits once (eval preprocessing,
no augmentation), then reports weighted kNN top-1 (k=--knn_k, cosine,
temperature --knn_temperature) and a linear classifier on standardised
features (`tf_simclr.eval.linear_eval_on_features`: the cheap variant of the
linear protocol, without augmentation). `--random_init` evaluates the same
architecture at its initialisation (seed --seed): the baseline that shows what
pretraining learned.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def linear_on_standardised(features: dict, num_classes: int, epochs: int, seed: int) -> dict:
    """`linear_eval_on_features` on features standardised with the train split's statistics."""
    from tf_simclr.eval import linear_eval_on_features

    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    return linear_eval_on_features(
        (train_x - mean) / std,
        train_y,
        (test_x - mean) / std,
        test_y,
        num_classes,
        epochs=epochs,
        learning_rate=0.1,
        seed=seed,
    )


def _bool(text: str) -> bool:
    from tf_simclr.flagfiles import parse_bool

    return parse_bool(text, "random_init")


def parse_args(argv: list[str]):
    """(own options, {run.py flag: value string}) of the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        epilog="Any other --name=value is a run.py flag; --flagfile=PATH reads a flag file.",
    )
    parser.add_argument(
        "--random_init",
        nargs="?",
        const=True,
        default=False,
        type=_bool,
        help="Evaluate the randomly initialised encoder.",
    )
    parser.add_argument("--output", default="", help="Write the results as JSON here.")
    parser.add_argument(
        "--probe_epochs", type=int, default=30, help="Epochs of the linear classifier."
    )
    options, rest = parser.parse_known_args(argv)
    from tf_simclr.flagfiles import values_from_args

    return options, values_from_args(rest)


def evaluate(config, options) -> dict:
    import keras
    import numpy as np

    from tf_simclr import builders, run_dir
    from tf_simclr.eval import frozen_features, knn_top1

    num_classes = builders.train_source(config, subset=False).num_classes
    if options.random_init:
        keras.utils.set_random_seed(config.seed)
        model, step = builders.build_pretrain_model(config, num_classes), 0
    else:
        model, step, config = run_dir.load_model(config.model_dir, config)
    features = frozen_features(
        model, builders.knn_sources(config), config.image_size, config.eval_batch_size, verbose=1
    )
    train_x = features["train"][0]
    probe = linear_on_standardised(features, num_classes, options.probe_epochs, config.seed)
    return {
        "encoder": "random_init" if options.random_init else f"{config.model_dir} step {step}",
        "feature_dim": int(train_x.shape[1]),
        "knn_top1": knn_top1(
            features, num_classes, k=config.knn_k, temperature=config.knn_temperature
        ),
        "knn_k": config.knn_k,
        "linear_on_features": probe,
        "feature_mean_norm": float(np.linalg.norm(train_x, axis=1).mean()),
    }


def main(argv=None) -> None:
    from tf_simclr.config import ConfigError
    from tf_simclr.errors import ArgumentError
    from tf_simclr.flagfiles import config_from_flags

    try:
        options, values = parse_args(sys.argv[1:] if argv is None else argv)
        config = config_from_flags(values)
        config.validate()
        result = evaluate(config, options)
    except (ConfigError, ArgumentError) as e:
        print(f"feature_eval.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result, indent=2))
    if options.output:
        os.makedirs(os.path.dirname(os.path.abspath(options.output)), exist_ok=True)
        with open(options.output, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
