"""tf_simclr.viz: each picture drawn from tiny inputs, with its panels counted."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_simclr import viz
from tf_simclr.data import AugmentConfig, make_source
from tf_simclr.errors import ArgumentError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_AUGMENT = AugmentConfig(
    image_size=16, crop=False, flip=False, color_jitter=False, grayscale=False, blur=False
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt = sys.modules.get("matplotlib.pyplot")  # None while a test blocks matplotlib
    if plt is not None:
        plt.close("all")


def image_axes(fig):
    """The panels that show an image."""
    return [ax for ax in fig.axes if ax.get_images()]


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC


def test_plot_views_from_a_source(tmp_path, image_folder):
    # In the folder's order (sources shuffle by default), so the first rows are cats.
    source = make_source("image_folder", "train", data_dir=str(image_folder), shuffle_files=False)
    path = tmp_path / "out" / "views.png"
    augment = AugmentConfig(image_size=16, blur=False, color_jitter_strength=0.5)
    fig = viz.plot_views(source, augment, 3, pairs=2, seed=1, path=str(path))
    assert_png(path)
    assert len(image_axes(fig)) == 3 * (1 + 2 * 2)
    assert [fig.axes[i * 5].get_ylabel() for i in range(3)] == ["cat"] * 3  # class per row
    assert fig.axes[1].get_title() == "view 1a" and fig.axes[4].get_title() == "view 2b"
    assert "no blur" in fig._suptitle.get_text()


def test_plot_views_from_a_batched_dataset_and_an_array(image_folder):
    source = make_source("image_folder", "train", data_dir=str(image_folder))
    batched = source.dataset.batch(4)
    fig = viz.plot_views(batched, NO_AUGMENT, 5, pairs=1)
    assert len(image_axes(fig)) == 5 * 3
    images = np.random.default_rng(0).uniform(size=(2, 20, 24, 3)).astype(np.float32)
    fig = viz.plot_views(images, NO_AUGMENT, 8, pairs=1)  # fewer images than rows asked
    assert len(image_axes(fig)) == 2 * 3


def test_views_follow_the_augment_config():
    """With every component off, every view is the resized original; with them on, not."""
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    _, views, labels, _ = viz.view_pairs([image], NO_AUGMENT, pairs=2)
    assert views.shape == (1, 2, 2, 16, 16, 3) and labels is None
    np.testing.assert_allclose(views, np.broadcast_to(image / 255.0, views.shape), atol=1e-6)
    _, views, _, _ = viz.view_pairs([image], AugmentConfig(image_size=16, blur=False), pairs=2)
    assert not np.allclose(views[0, 0, 0], views[0, 0, 1])


def test_plot_views_rejects_bad_arguments():
    with pytest.raises(ArgumentError, match="n=0"):
        viz.plot_views(np.zeros([2, 8, 8, 3]), NO_AUGMENT, 0)
    with pytest.raises(ArgumentError, match=r"\[H, W, 3\]"):
        viz.plot_views(np.zeros([2, 8, 8]), NO_AUGMENT, 2)


def clusters(n_per_class=20, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    centres = 4.0 * np.eye(3, dim)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def test_plot_embeddings_one_panel_per_feature_set(tmp_path):
    features, labels = clusters()
    noise = np.random.default_rng(1).normal(size=features.shape)
    path = tmp_path / "map.png"
    fig = viz.plot_embeddings(
        {"pretrained": features, "random init": noise},
        labels,
        class_names=("a", "b", "c"),
        path=str(path),
    )
    assert_png(path)
    assert len(fig.axes) == 2
    assert [ax.get_title().splitlines()[0] for ax in fig.axes] == ["pretrained", "random init"]
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "c"]
    # One dot per example in each panel.
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == len(labels)


def test_plot_embeddings_draws_unlabelled_points_grey():
    features, labels = clusters()
    labels[:5] = -1
    fig = viz.plot_embeddings(features, labels)
    assert len(fig.axes) == 1
    names = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert names == ["no label", "0", "1", "2"]


def test_project_2d_pca_finds_the_spread_direction():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    direction = np.array([3.0, 4.0, 0.0, 0.0]) / 5
    x = t[:, None] * direction * 10 + 0.01 * rng.normal(size=(200, 4))
    points, caption = viz.project_2d(x, normalize=False)
    assert abs(np.corrcoef(points[:, 0], t)[0, 1]) > 0.999
    assert np.std(points[:, 1]) < 0.05 * np.std(points[:, 0])
    assert caption.startswith("PCA (PC1 100%")


def test_tsne_without_scikit_learn_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        viz.project_2d(clusters()[0], method="tsne")
    with pytest.raises(ArgumentError, match="method='umap'"):
        viz.project_2d(clusters()[0], method="umap")


def test_tsne_with_scikit_learn():
    pytest.importorskip("sklearn")
    features, labels = clusters()
    fig = viz.plot_embeddings(features, labels, method="tsne")
    assert "t-SNE" in fig.axes[0].get_title()


def test_plots_without_matplotlib_raise_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    features, labels = clusters()
    with pytest.raises(ImportError, match=r"pip install 'tf_simclr\[viz\]'"):
        viz.plot_embeddings(features, labels)


def test_the_library_imports_and_writes_tensorboard_pictures_without_matplotlib(tmp_path):
    """matplotlib is an optional extra: blocked, tf_simclr.viz still imports and the
    TensorBoard parts (`tf_simclr.summaries`: view strips, projector files) work; only
    plot_* need it."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "matplotlib":
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import tf_simclr
        from tf_simclr import summaries, viz
        from tf_simclr.data import AugmentConfig
        images = [np.zeros([8, 8, 3], np.uint8)]
        assert summaries.view_strips(images, AugmentConfig(image_size=8)).shape == (1, 8, 26, 3)
        summaries.write_projector({str(tmp_path)!r}, np.ones([2, 3]), [0, 1])
        try:
            viz.plot_embeddings(np.ones([2, 3]), [0, 1])
        except ImportError as e:
            print("ERROR", e)
        assert not [m for m in sys.modules if m.startswith("matplotlib")]
        """
    )
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR tf_simclr.viz needs matplotlib" in done.stdout
    assert (tmp_path / "projector_config.pbtxt").exists()


def test_no_tf_simclr_module_imports_matplotlib_at_import_time():
    import ast
    import pathlib

    for path in pathlib.Path(ROOT, "tf_simclr").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only; plot_* import it when called
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "matplotlib" for n in names), path


def colour_images(colours, size=8):
    """One flat image per RGB colour (float [0, 1])."""
    return np.ones([len(colours), size, size, 3], np.float32) * np.asarray(colours)[:, None, None]


def mean_colour_encoder():
    """Images -> their mean colour: neighbours by cosine are the images of similar hue."""
    import keras

    return keras.Sequential([keras.Input([8, 8, 3]), keras.layers.GlobalAveragePooling2D()])


GALLERY = [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.2], [0, 0, 1], [0.1, 0, 1]]
GALLERY_LABELS = [0, 0, 1, 1, 2, 2]


def test_nearest_neighbours_is_cosine_top_k():
    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(5, 4)), rng.normal(size=(12, 4))
    indices, similarity = viz.nearest_neighbours(queries, 3.0 * gallery, 4)
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    ).T
    np.testing.assert_array_equal(indices, np.argsort(-cosine, axis=1)[:, :4])
    np.testing.assert_allclose(similarity, np.sort(cosine, axis=1)[:, ::-1][:, :4], rtol=1e-5)
    with pytest.raises(ArgumentError, match="k=13"):
        viz.nearest_neighbours(queries, gallery, 13)


def test_plot_neighbours_with_a_keras_encoder(tmp_path):
    queries = colour_images([[0.8, 0.2, 0.0], [0.0, 0.1, 0.9]])
    path = tmp_path / "neighbours.png"
    fig = viz.plot_neighbours(
        mean_colour_encoder(),
        queries,
        colour_images(GALLERY),
        k=2,
        query_labels=[0, 2],
        gallery_labels=GALLERY_LABELS,
        class_names=("red", "green", "blue"),
        path=str(path),
    )
    assert_png(path)
    assert len(image_axes(fig)) == 2 * (1 + 2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "red" and titles[3] == "blue"
    # The two nearest of the red query are the reds, of the blue query the blues.
    assert titles[1].startswith("red") and titles[2].startswith("red"), titles
    assert titles[4].startswith("blue") and titles[5].startswith("blue"), titles
    assert fig.axes[1].title.get_color() == "tab:green"


def test_plot_neighbours_with_a_saved_model_path_and_datasets(tmp_path):
    """A SavedModel called like tf_simclr's (`loaded(images, training)` -> {"embedding"}),
    given by its path; queries and gallery as `{"image", "label"}` batches."""

    class MeanColour(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3]), tf.TensorSpec([], tf.bool)])
        def __call__(self, images, training=False):
            return {"embedding": tf.reduce_mean(images, axis=[1, 2])}

    tf.saved_model.save(MeanColour(), str(tmp_path / "saved"))
    gallery = tf.data.Dataset.from_tensor_slices(
        {"image": colour_images(GALLERY), "label": np.asarray(GALLERY_LABELS, np.int64)}
    ).batch(4)
    queries = tf.data.Dataset.from_tensor_slices(
        {"image": colour_images([[0, 0.8, 0.1]]), "label": np.asarray([1], np.int64)}
    ).batch(4)
    fig = viz.plot_neighbours(str(tmp_path / "saved"), queries, gallery, k=3)
    assert len(image_axes(fig)) == 1 + 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "1" and titles[1].startswith("1 ") and titles[2].startswith("1 ")
    with pytest.raises(ArgumentError, match="not a SavedModel"):
        viz.plot_neighbours(str(tmp_path), queries, gallery, k=1)


def test_plot_training_draws_the_four_panels(tmp_path, training_events):
    path = tmp_path / "curves.png"
    fig = viz.plot_training(str(training_events), path=str(path))
    assert_png(path)
    assert [ax.get_title() for ax in fig.axes] == [
        "loss",
        "contrast_acc",
        "probe_acc",
        "learning_rate",
    ]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xydata(), [[10, 0.1], [20, 0.2], [30, 0.3]])
    with pytest.raises(ArgumentError, match="no training scalars"):
        viz.plot_training(str(tmp_path / "empty"))
