"""Pictures of a SimCLR run: augmented views, embedding maps, nearest neighbours, curves.

A self-supervised run is judged by eye long before any number: are the two
views sensible, do the classes separate, do neighbours look alike.

- `plot_views(images, augment, n)`: each original beside pairs of its training views
  (`views`);
- `plot_embeddings(features, labels)`: a 2-D map of frozen features coloured by class
  (PCA with numpy; t-SNE with scikit-learn, when installed and asked for; `embeddings`);
- `plot_neighbours(model, queries, gallery, k)`: query images and their k nearest
  gallery images by cosine similarity of the encoder features (`neighbours`);
- `plot_training(model_dir)`: the training scalars of a run's TensorBoard events
  (`curves`).

Each `plot_*` returns the matplotlib `Figure` (a notebook shows it inline) and,
given `path`, writes it there as a PNG. matplotlib is an optional extra
(``pip install 'tf_simclr[viz]'``): it is imported by the first `plot_*` call, never
by ``import tf_simclr`` or ``import tf_simclr.viz``, and without a display
(outside a notebook) figures are drawn with the Agg backend (`figure.pyplot`).

The arrays behind the figures need no matplotlib: `view_pairs` (the views
`plot_views` draws), `project_2d`, `nearest_neighbours`. What training writes to
TensorBoard (view strips, projector files) and reads back (`read_scalars`) is
`tf_simclr.summaries`.
"""

from tf_simclr.viz.curves import TRAINING_PANELS, plot_training
from tf_simclr.viz.embeddings import plot_embeddings, project_2d
from tf_simclr.viz.figure import pyplot
from tf_simclr.viz.neighbours import draw_neighbours, nearest_neighbours, plot_neighbours
from tf_simclr.viz.views import describe_augment, plot_views, view_pairs

__all__ = [
    "TRAINING_PANELS",
    "describe_augment",
    "draw_neighbours",
    "nearest_neighbours",
    "plot_embeddings",
    "plot_neighbours",
    "plot_training",
    "plot_views",
    "project_2d",
    "pyplot",
    "view_pairs",
]
