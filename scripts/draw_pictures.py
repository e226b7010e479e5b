"""The embedding map (pretrained vs random encoder) and the neighbour grid of a run.

    python scripts/draw_pictures.py --model_dir=/tmp/viz_runs/cifar10_2ep \
        --data_dir=/tmp/cifar10_jpg --output_dir=docs/figures

Rebuilds and restores the model of `--model_dir` (its latest checkpoint; the
architecture and dataset from its model.json / config.json,
`tf_simclr.run_dir.load_model`) and the same architecture at its random
initialisation (seed `--seed`). Writes to `--output_dir`:

- `embeddings_<name>.png`: `tf_simclr.viz.plot_embeddings` of the encoder features
  of `--points` eval-split images (a seeded shuffle), pretrained beside random;
- `neighbours_<name>.png`: `tf_simclr.viz.plot_neighbours`: `--queries` eval
  images (one per class first) and their `--k` nearest among `--gallery`
  training images, by cosine similarity of the pretrained encoder's features.

`<name>` is `--name` (default: the model_dir's base name). Needs matplotlib.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", default="", help="default: the run's --data_dir")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--name", default="")
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--gallery", type=int, default=10000)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--method", default="pca", choices=("pca", "tsne"))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def images_of(source, count: int, image_size: int, batch_size: int = 256):
    """The first `count` examples of `source` with the eval preprocessing: (images, labels)."""
    import numpy as np

    from tf_simclr.data import eval_dataset

    images, labels = [], []
    for batch in eval_dataset(source, image_size, batch_size).take(-(-count // batch_size)):
        images.append(batch["image"].numpy())
        labels.append(batch["label"].numpy())
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def one_per_class_first(labels, count: int):
    """Indices of `count` examples: the first of each class, then the next ones in order."""
    import numpy as np

    firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return (firsts + rest)[:count]


def main(argv=None):
    args = parse_args(argv)
    import json

    import keras

    from tf_simclr import builders, run_dir, viz
    from tf_simclr.config import Config
    from tf_simclr.data import make_source
    from tf_simclr.eval import extract_features

    with open(os.path.join(args.model_dir, "config.json")) as f:
        saved = json.load(f)
    config = Config(**saved).replace(model_dir=args.model_dir)
    if args.data_dir:
        config = config.replace(data_dir=args.data_dir)
    model, step, config = run_dir.load_model(args.model_dir, config)
    keras.utils.set_random_seed(args.seed)
    source = make_source(config.dataset, config.train_split, config.data_dir or None)
    random_model = builders.build_pretrain_model(config, source.num_classes)
    name = args.name or os.path.basename(os.path.normpath(args.model_dir))

    def shuffled(split):
        return make_source(
            config.dataset, split, config.data_dir or None, shuffle_files=True, seed=args.seed
        )

    test = shuffled(config.eval_split)
    test_images, test_labels = images_of(test, args.points, config.image_size)
    features = {
        f"pretrained (step {step})": extract_features(model, _batches(test_images, test_labels))[0],
        "random init": extract_features(random_model, _batches(test_images, test_labels))[0],
    }
    path = os.path.join(args.output_dir, f"embeddings_{name}.png")
    viz.plot_embeddings(
        features, test_labels, class_names=test.class_names, method=args.method, path=path
    )
    print(f"wrote {path}")

    train_images, train_labels = images_of(
        shuffled(config.train_split), args.gallery, config.image_size
    )
    chosen = one_per_class_first(test_labels, args.queries)
    path = os.path.join(args.output_dir, f"neighbours_{name}.png")
    viz.plot_neighbours(
        model,
        test_images[chosen],
        train_images,
        k=args.k,
        query_labels=test_labels[chosen],
        gallery_labels=train_labels,
        class_names=test.class_names,
        path=path,
    )
    print(f"wrote {path}")


def _batches(images, labels, batch_size=256):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}).batch(batch_size)


if __name__ == "__main__":
    main()
