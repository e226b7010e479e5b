"""Encoders, heads, the SimCLR model and the fine-tuning classifier."""

from tf_simclr.models.classifier import Classifier, freeze_report
from tf_simclr.models.distill import Distiller, distillation_loss
from tf_simclr.models.heads import LinearClassifier, ProjectionHead
from tf_simclr.models.resnet import ResNet, min_image_size
from tf_simclr.models.simclr import SimCLR

__all__ = [
    "Classifier",
    "Distiller",
    "LinearClassifier",
    "ProjectionHead",
    "ResNet",
    "SimCLR",
    "distillation_loss",
    "freeze_report",
    "min_image_size",
]
