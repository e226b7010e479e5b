"""kNN and linear probe on frozen encoder features, for a checkpoint or a random init.

    python scripts/feature_eval.py --flagfile=experiments/cifar10_r18w025_proof.flags \
        --data_dir=/tmp/data/cifar10_jpg --model_dir=runs/cifar10_proof \
        --output=docs/results/proof_features_pretrained.json
    python scripts/feature_eval.py ... --random_init --output=..._random.json

Extracts encoder features of the train and eval splits once (eval preprocessing,
no augmentation), then reports weighted kNN top-1 (k=--knn_k, cosine,
temperature --knn_temperature) and a linear classifier on standardised
features (`tf_simclr.eval.linear.linear_eval_on_features`: the cheap variant of
the linear protocol, without augmentation). `--random_init` evaluates the same
architecture at its initialisation (seed --seed): the baseline that shows what
pretraining learned.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from tf_simclr.config import Config, flag_specs  # noqa: E402

# The run.py flags, the same names and meanings (defined here: tools do not import run.py).
for _name, _kind, _default, _help, _ in flag_specs():
    {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float}.get(
        _kind, flags.DEFINE_bool
    )(_name, _default, _help)

flags.DEFINE_bool("random_init", False, "Evaluate the randomly initialised encoder.")
flags.DEFINE_string("output", "", "Write the results as JSON here.")
flags.DEFINE_integer("probe_epochs", 30, "Epochs of the linear classifier on features.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_simclr import builders
    from tf_simclr.eval.linear import linear_eval_on_features
    from tf_simclr.modes.evaluate import frozen_features, knn_top1

    config = Config(**{name: FLAGS[name].value for name, *_ in flag_specs()})
    train_source = builders.train_source(config, subset=False)
    keras.utils.set_random_seed(config.seed)
    model = builders.build_pretrain_model(config, train_source.num_classes)
    step = 0
    if not FLAGS.random_init:
        latest = tf.train.latest_checkpoint(config.model_dir)
        status = tf.train.Checkpoint(model=model).restore(latest)
        status.assert_existing_objects_matched().expect_partial()
        step = int(latest.rsplit("-", 1)[1])
    features = frozen_features(config, model, verbose=1)
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    knn = knn_top1(config, features, train_source.num_classes)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    probe = linear_eval_on_features(
        (train_x - mean) / std,
        train_y,
        (test_x - mean) / std,
        test_y,
        train_source.num_classes,
        epochs=FLAGS.probe_epochs,
        learning_rate=0.1,
        seed=config.seed,
    )
    result = {
        "encoder": "random_init" if FLAGS.random_init else f"{config.model_dir} step {step}",
        "feature_dim": int(train_x.shape[1]),
        "knn_top1": knn,
        "knn_k": config.knn_k,
        "linear_on_features": probe,
        "feature_mean_norm": float(np.linalg.norm(train_x, axis=1).mean()),
    }
    print(json.dumps(result, indent=2))
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    app.run(main)
