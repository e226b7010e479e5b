"""Encoders, heads and the SimCLR model."""

from tf_simclr.models.heads import LinearClassifier, ProjectionHead
from tf_simclr.models.resnet import ResNet, min_image_size
from tf_simclr.models.simclr import SimCLR

__all__ = ["LinearClassifier", "ProjectionHead", "ResNet", "SimCLR", "min_image_size"]
