"""notebooks/quickstart.ipynb runs top to bottom at quick size and shows its pictures.

Executed with nbclient in a real Jupyter kernel, with its default WORK_DIR (relative: the
kernel runs in a temporary directory), under `TF_SIMCLR_QUICK=1`, on a tiny
image folder (5 classes, 32 px: 200 training and 100 test images) and, for the last
step, the reference's r18_cifar_1x checkpoint rebuilt from the fixtures (no download).
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")


def load_test_module(name: str):
    """tests/<name>.py, loaded by its path (the tests folder is no package)."""
    spec = importlib.util.spec_from_file_location(f"_nb_{name}", ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rebuilt_reference_checkpoint(out) -> str:
    load_test_module("test_official").rebuild_checkpoint("r18_cifar_1x", str(out))
    return str(out)


def test_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:80]


def test_the_notebooks_training_batches_mix_the_classes(class_sorted_folder, monkeypatch):
    # The notebook's own settings and data cells, run here (its install cell: the imports):
    # on a class-sorted image folder its first training batches hold many classes.
    monkeypatch.setenv("TF_SIMCLR_QUICK", "1")
    monkeypatch.setenv("TF_SIMCLR_DATA_DIR", str(class_sorted_folder))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    namespace = {}
    for cell in notebook.cells[:7]:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and (
            "settings" in tags or "data" in tags or "pip" in cell.source
        ):
            exec(cell.source, namespace)
    labels = [batch["label"].numpy() for batch in namespace["train_data"].take(4)]
    assert namespace["BATCH_SIZE"] == 32 and all(len(b) == 32 for b in labels)
    classes = [len(set(b.tolist())) for b in labels]
    assert min(classes) >= 5, classes  # of 8; the folder's order: [1, 1, 1, 1]


@pytest.mark.slow
@pytest.mark.ci  # issue 14: the notebook is executed in CI (minutes: the ci step, not the default)
def test_quickstart_notebook_runs_and_draws(tmp_path, monkeypatch):
    classes = ("a", "b", "c", "d", "e")
    write_image_folder = load_test_module("conftest").write_image_folder
    data = write_image_folder(tmp_path / "data", "train", classes, per_class=40, size=32)
    write_image_folder(data, "test", classes, per_class=20, size=32, seed=1)
    monkeypatch.setenv("TF_SIMCLR_QUICK", "1")
    monkeypatch.setenv("TF_SIMCLR_DATA_DIR", str(data))
    # Its default WORK_DIR (relative, runs/quickstart), under the kernel's cwd tmp_path: the
    # export cell's serving check runs in a subprocess with cwd="/" (issue 23).
    monkeypatch.delenv("TF_SIMCLR_WORK_DIR", raising=False)
    monkeypatch.setenv("TF_SIMCLR_OFFICIAL_MODEL", rebuilt_reference_checkpoint(tmp_path / "ref"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("MPLBACKEND", raising=False)

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell when any cell raises

    def outputs(tag):
        (cell,) = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
        return cell.outputs

    for tag in ("views", "embeddings"):
        pictures = [o for o in outputs(tag) if "image/png" in o.get("data", {})]
        assert len(pictures) == 1, (tag, outputs(tag))
    text = "".join(
        o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "kNN top-1" in text and "tf_simclr imported: False" in text
    assert (
        "published encoder" in text and (tmp_path / "runs" / "quickstart" / "simclr.keras").exists()
    )
