"""Evaluation protocols, one module each; every one is a function of a model and data.

- `features`: `extract_features`, frozen features of a whole split, and
  `frozen_features` of several named sources;
- `classifier`: `evaluate_classifier`, top-1/top-5 of a model with logits;
- `knn`: `knn_predict` / `knn_accuracy` / `knn_top1`, weighted kNN on frozen features;
- `linear`: `linear_eval` (the paper's protocol) and `linear_eval_on_features`;
- `label_free`: RankMe, alignment, uniformity, embedding std: no labels needed.

The command line, the scripts and notebooks call the same functions. This
package imports models and data, never a training driver (`tf_simclr.modes`).
"""

from tf_simclr.eval.classifier import evaluate_classifier
from tf_simclr.eval.features import extract_features, frozen_features
from tf_simclr.eval.knn import knn_accuracy, knn_predict, knn_top1
from tf_simclr.eval.label_free import (
    alignment,
    embedding_std,
    label_free_metrics,
    rankme,
    uniformity,
)
from tf_simclr.eval.linear import linear_classifier, linear_eval, linear_eval_on_features

__all__ = [
    "alignment",
    "embedding_std",
    "label_free_metrics",
    "rankme",
    "uniformity",
    "evaluate_classifier",
    "extract_features",
    "frozen_features",
    "knn_accuracy",
    "knn_predict",
    "knn_top1",
    "linear_classifier",
    "linear_eval",
    "linear_eval_on_features",
]
