"""Importing the reference's published models (`tf_simclr.official`, `--mode=import`).

The reference models are rebuilt from the fixtures in `tests/fixtures/reference_tf2/`
(copied from the shared `reference_tf2` fixtures, see the README there): every variable's
value follows from its name, so a fixture is its variable list, the checkpoint's object
graph, and the reference outputs for some images (`expected_strided.npz`: the tensors of
the reference's `expected.npz` at every few pixels). That gives the reference `run.py`'s
training checkpoint in a plain clone. The SavedModel form needs the reference graph
(`saved_model.pb`, several MB), so its tests run where the shared fixtures are
(`../shared/fixtures/reference_tf2/`), and compare with the full `expected.npz` there.
"""

import base64
import json
import os
import pathlib
import subprocess
import sys
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tf_simclr import locations, modes, official, resolver, run_dir
from tf_simclr.config import Config, ConfigError
from tf_simclr.errors import ArgumentError

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "reference_tf2"
SHARED = (
    pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "reference_tf2"
)
NAMES = ("r18_cifar_1x", "r50_1x_sk0", "r50_1x_sk1")
TOLERANCE = 1e-5  # relative, float32
needs_shared = pytest.mark.skipif(
    not (SHARED / "r18_cifar_1x" / "saved_model.pb").exists(),
    reason="the shared reference fixtures (SavedModel graphs) are absent",
)


# --- Rebuilding the reference files (as ../shared/tools/rebuild_reference_fixture.py) ---


def rule(name: str, shape, seed: int) -> np.ndarray:
    """The value of the reference variable `name` (without ':0'); manifest.json's rule."""
    g = np.random.default_rng(zlib.crc32(name.encode()) ^ seed)
    kind, shape = name.rsplit("/", 1)[-1], tuple(shape)
    if kind == "kernel" and len(shape) == 4:
        scale = np.sqrt(2.0 / (shape[0] * shape[1] * shape[2]))
        return (g.standard_normal(shape) * scale).astype(np.float32)
    if kind == "kernel" and len(shape) == 2:
        return (g.standard_normal(shape) * np.sqrt(1.0 / shape[0])).astype(np.float32)
    if kind == "gamma":
        return g.uniform(0.2, 0.5, shape).astype(np.float32)
    if kind in ("beta", "bias", "moving_mean"):
        return g.normal(0.0, 0.1, shape).astype(np.float32)
    if kind == "moving_variance":
        return g.uniform(0.5, 1.5, shape).astype(np.float32)
    raise ValueError(f"no rule for {name}")


def write_bundle(prefix: str, values: dict, all_keys: list, object_graph: bytes) -> None:
    names, tensors = [], []
    for key, shape, dtype in all_keys:
        names.append(key)
        tensors.append(tf.constant(values[key]) if key in values else tf.zeros(shape, dtype))
    names.append("_CHECKPOINTABLE_OBJECT_GRAPH")
    tensors.append(tf.constant(object_graph))
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    tf.raw_ops.SaveV2(
        prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors
    )


def manifest(name: str) -> dict:
    return json.loads((FIXTURES / name / "manifest.json").read_text())


def rebuild_checkpoint(name: str, out, change=None) -> str:
    """The reference run.py's checkpoint `out/ckpt-1`; `change(values, keys)` may edit it."""
    m = manifest(name)
    values = {
        v["ckpt_key"]: rule(v["name"].split(":")[0], v["shape"], m["seed"])
        for v in m["variables"]
        if v["ckpt_key"]
    }
    keys = [list(k) for k in m["ckpt_keys"]]
    if change is not None:
        change(values, keys)
    graph = base64.b64decode((FIXTURES / name / "ckpt_object_graph.b64").read_text())
    prefix = os.path.join(out, "ckpt-1")
    write_bundle(prefix, values, keys, graph)
    pathlib.Path(out, "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    return prefix


def rebuild_saved_model(name: str, out) -> str:
    """The reference SavedModel `out/saved_model` (needs the shared fixture's graph)."""
    shared = SHARED / name
    m = json.loads((shared / "manifest.json").read_text())
    values = {
        v["savedmodel_key"]: rule(v["name"].split(":")[0], v["shape"], m["seed"])
        for v in m["variables"]
        if v["savedmodel_key"]
    }
    path = pathlib.Path(out, "saved_model")
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes((shared / "saved_model.pb").read_bytes())
    graph = base64.b64decode((shared / "object_graph.b64").read_text())
    write_bundle(str(path / "variables" / "variables"), values, m["savedmodel_keys"], graph)
    return str(path)


@pytest.fixture(scope="module")
def checkpoints_dir(tmp_path_factory):
    """name -> the rebuilt reference checkpoint directory (made on first use)."""
    made = {}

    def get(name):
        if name not in made:
            made[name] = str(tmp_path_factory.mktemp(f"{name}_ckpt"))
            rebuild_checkpoint(name, made[name])
        return made[name]

    return get


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            made[name] = rebuild_saved_model(name, tmp_path_factory.mktemp(f"{name}_sm"))
        return made[name]

    return get


# --- Comparing outputs -------------------------------------------------------------------


def strided(name: str, x: np.ndarray) -> np.ndarray:
    """`x` as `expected_strided.npz` stores it: 4-D tensors at every (H // 4)-th pixel."""
    if x.ndim != 4:
        return x
    s = max(1, x.shape[1] // 4)
    return x[:, ::s, ::s, :]


def expected_outputs(name: str) -> tuple[dict, bool]:
    """The reference outputs (full where the shared fixture is, else strided), and which."""
    full = SHARED / name / "expected.npz"
    if full.exists():
        return dict(np.load(full)), True
    return dict(np.load(FIXTURES / name / "expected_strided.npz")), False


def assert_matches_reference(model, name: str) -> set[str]:
    expected, full = expected_outputs(name)
    ours = official.reference_outputs(model, expected["images"])
    for key, value in ours.items():
        value = np.asarray(value)
        value = value if full else strided(name, value)
        difference = official.relative_difference(value, expected[key])
        assert difference < TOLERANCE, (key, difference)
    return set(ours)


ALL_OUTPUTS = {
    *official.RESNET_OUTPUTS,
    "proj_head_input",
    "proj_head_output",
    "logits_sup",
}


def check_architecture(architecture: official.Architecture, name: str) -> None:
    flags = manifest(name)["flags"]
    assert architecture.depth == flags["depth"]
    assert architecture.width_multiplier == flags["width"]
    assert architecture.sk_ratio == flags["sk_ratio"]
    assert architecture.se_ratio == flags["se_ratio"]
    assert architecture.cifar_stem == (flags["image_size"] <= 32)
    assert architecture.proj_head_mode == flags["proj_head_mode"]
    assert architecture.num_proj_layers == flags["num_proj_layers"]
    assert architecture.proj_out_dim == flags["proj_out_dim"]
    assert architecture.num_classes == flags["num_classes"]
    assert architecture.name() == name


# --- Import and compare, both forms, all fixtures -------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_import_matches_the_reference(name, checkpoints_dir):
    result = official.import_official(checkpoints_dir(name))
    check_architecture(result.architecture, name)
    assert result.source.kind == "checkpoint" and result.differences == {}
    assert result.architecture.ft_proj_selector == 0  # the reference's default
    # The step counter is ignored, every variable of the model is used.
    assert "global_step/.ATTRIBUTES/VARIABLE_VALUE" in result.source.ignored
    assert not any(key.startswith("model/") for key in result.source.ignored)
    assert len(result.source.keys) == len(result.model.weights) == manifest(name)["n_variables"]
    assert assert_matches_reference(result.model, name) == ALL_OUTPUTS


def test_checkpoint_prefix_and_model_dir_are_the_same_source(checkpoints_dir):
    directory = checkpoints_dir("r18_cifar_1x")
    by_dir = official.read_source(directory)
    by_prefix = official.read_source(os.path.join(directory, "ckpt-1"))
    assert by_dir.prefix == by_prefix.prefix and by_dir.keys == by_prefix.keys


@needs_shared
@pytest.mark.parametrize(
    "name", ["r18_cifar_1x", pytest.param("r50_1x_sk0", marks=pytest.mark.slow), "r50_1x_sk1"]
)
def test_saved_model_import_matches_the_reference(name, saved_models):
    result = official.import_official(saved_models(name))
    check_architecture(result.architecture, name)
    assert result.source.kind == "saved_model"
    # The import compared every output of the SavedModel with ours.
    assert set(result.differences) == ALL_OUTPUTS
    assert result.max_relative_difference < TOLERANCE
    assert assert_matches_reference(result.model, name) == ALL_OUTPUTS


# --- What a source that does not fit gives -------------------------------------------


HEAD_KERNEL = "model/_projection_head/linear_layers/1/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def set_shape(key, shape):
    def change(values, keys):
        values[key] = np.zeros(shape, np.float32)
        for entry in keys:
            if entry[0] == key:
                entry[1] = list(shape)

    return change


def add_variable(key, shape):
    def change(values, keys):
        values[key] = np.zeros(shape, np.float32)
        keys.append([key, list(shape), "float32"])

    return change


def drop(prefix):
    def change(values, keys):
        keys[:] = [entry for entry in keys if not entry[0].startswith(prefix)]

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (
            set_shape(HEAD_KERNEL, (512, 256)),
            r"variable _projection_head/linear_layers/1/dense/kernel: shape \[512, 256\] does "
            r"not fit the inferred architecture",
        ),
        (
            add_variable("model/resnet_model/extra/kernel/.ATTRIBUTES/VARIABLE_VALUE", (3,)),
            r"variable resnet_model/extra/kernel: shape \[3\] has no counterpart",
        ),
        (
            drop("model/resnet_model/block_groups/2/layers/1/conv2d_bn_layers/2/"),
            r"variable resnet_model/block_groups/2/layers/1/conv2d_bn_layers/2/conv2d/kernel: "
            r"is missing",
        ),
        (
            drop("model/resnet_model/block_groups/3/layers/1/"),
            r"variable resnet_model/block_groups: blocks per group \[2, 2, 2, 1\] fit no",
        ),
        (
            set_shape(
                "model/resnet_model/initial_conv_relu_max_pool/0/conv2d/kernel/.ATTRIBUTES/"
                "VARIABLE_VALUE",
                (5, 5, 3, 64),
            ),
            r"initial_conv_relu_max_pool/0/conv2d/kernel: shape \[5, 5, 3, 64\] fits no "
            r"reference stem",
        ),
    ],
    ids=["shape", "unknown", "missing", "blocks", "stem"],
)
def test_a_source_that_does_not_fit_is_one_error_and_loads_nothing(tmp_path, change, message):
    prefix = rebuild_checkpoint("r18_cifar_1x", tmp_path, change)
    target = official.build_simclr(
        official.infer_architecture(
            official.read_source(rebuild_checkpoint("r18_cifar_1x", tmp_path / "good"))
        )
    )
    before = [v.numpy().copy() for v in target.weights]
    with pytest.raises(ArgumentError, match=message):
        official.import_official(prefix, model=target)
    for variable, value in zip(target.weights, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_not_a_reference_model(tmp_path):
    module = tf.Module()
    module.v = tf.Variable([1.0])
    tf.train.Checkpoint(other=module).write(str(tmp_path / "ckpt-1"))
    with pytest.raises(ArgumentError, match="holds no variables of a reference SimCLR model"):
        official.load_official(str(tmp_path / "ckpt-1"))
    v1 = str(tmp_path / "model.ckpt-250228")
    tf.raw_ops.SaveV2(
        prefix=v1,
        tensor_names=["base_model/conv2d/kernel"],
        shape_and_slices=[""],
        tensors=[tf.zeros([7, 7, 3, 64])],
    )
    with pytest.raises(ArgumentError, match=r"name-based \(TF1\) checkpoint .*base_model/conv2d"):
        official.load_official(v1)
    with pytest.raises(ArgumentError, match="no such checkpoint"):
        official.load_official(str(tmp_path / "missing"))


def test_a_model_without_projection_head_like_simclr_v1(tmp_path):
    """SimCLRv1's published models have no projection head: our head is the identity."""
    prefix = rebuild_checkpoint("r18_cifar_1x", tmp_path, drop("model/_projection_head/"))
    result = official.import_official(prefix)
    assert result.architecture.proj_head_mode == "none"
    assert result.architecture.num_proj_layers == 0
    model = result.model
    assert model.head.mode == "none" and not model.head.weights
    outputs = assert_matches_reference(model, "r18_cifar_1x")
    assert outputs == set(official.RESNET_OUTPUTS) | {"logits_sup"}
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    result = model(images)
    np.testing.assert_array_equal(result["projection"], result["embedding"])


def test_the_supervised_head_input_is_taken_from_the_logits_width(tmp_path):
    """A head reading the 128-d projection can only be ft_proj_selector = 3."""
    key = "model/supervised_head/linear_layer/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    architecture = official.infer_architecture(
        official.read_source(
            rebuild_checkpoint("r18_cifar_1x", tmp_path, set_shape(key, (128, 10)))
        )
    )
    assert architecture.ft_proj_selector == 3 and architecture.selector_candidates == (3,)
    with pytest.raises(ArgumentError, match=r"cannot read head layer 1 \(ft_proj_selector\)"):
        official.infer_architecture(official.read_source(str(tmp_path)), ft_proj_selector=1)


def test_comparison_fails_above_the_tolerance_and_picks_the_head_layer(checkpoints_dir):
    model = official.load_official(checkpoints_dir("r18_cifar_1x"))
    images = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    ours = {k: np.asarray(v) for k, v in official.reference_outputs(model, images).items()}
    hiddens = model.head.call_with_hiddens(ours["final_avg_pool"])
    logits_from_layer_1 = np.asarray(model.probe(hiddens[1]))

    def fake_module(scale, logits=None):
        """Stands in for the loaded reference SavedModel: `m(images, trainable=False)`."""

        def call(x, trainable):
            assert not trainable
            result = {k: tf.constant(v * scale) for k, v in ours.items()}
            if logits is not None:
                result["logits_sup"] = tf.constant(logits)
            return result

        return call

    differences = official.compare_with_saved_model(model, fake_module(1.0), images)
    assert max(differences.values()) < 1e-6 and set(differences) == ALL_OUTPUTS
    too_far = r"initial_conv differs from the SavedModel.s by 0.000999"
    with pytest.raises(ArgumentError, match=too_far):
        official.compare_with_saved_model(model, fake_module(1.001), images)
    # The supervised head of a model fine-tuned from head layer 1 (SimCLRv2).
    official.compare_with_saved_model(
        model, fake_module(1.0, logits_from_layer_1), images, selector_candidates=(0, 1, 2)
    )
    assert model.ft_proj_selector == 1


# --- The command line: import, then eval, export and fine-tune ---------------------------


@pytest.fixture(scope="module")
def imported(checkpoints_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "r18"
    result = modes.run(
        Config(mode="import", checkpoint=checkpoints_dir("r18_cifar_1x"), model_dir=str(out))
    )["import"]
    return out, result


def test_import_mode_writes_a_self_describing_model_dir(imported, checkpoints_dir):
    out, result = imported
    assert result["architecture"] == "r18_cifar_1x"
    assert (out / "ckpt-0.index").exists() and (out / "config.json").exists()
    assert (out / "saved_model" / "0" / "saved_model.pb").exists()
    _harness.assert_loads_in_a_tf1_session(out / "saved_model" / "0")
    description = run_dir.read(str(out))
    assert description["model"]["resnet_depth"] == 18 and description["cifar_stem"]
    assert description["model"]["image_size"] == 32 and description["num_classes"] == 10
    assert description["imported_from"]["kind"] == "checkpoint"
    # run_dir.load_model rebuilds it from model.json and restores ckpt-0: the reference's outputs.
    model, step, _ = run_dir.load_model(str(out))
    assert step == 0
    assert_matches_reference(model, "r18_cifar_1x")
    # Importing over it again is refused.
    with pytest.raises(ConfigError, match="--model_dir=.*already holds a model"):
        modes.run(
            Config(mode="import", checkpoint=checkpoints_dir("r18_cifar_1x"), model_dir=str(out))
        )


@needs_shared
def test_import_of_a_saved_model_logs_a_handful_of_lines(saved_models, tmp_path):
    """`run.py --mode=import` of a reference SavedModel, as a user runs it (no
    TF_CPP_MIN_LOG_LEVEL): it printed ~230 lines, ~215 of them TensorFlow's "Importing a
    function ... Will likely fail if a gradient is requested" and 4 of a Keras warning."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    source = saved_models("r18_cifar_1x")
    proc = subprocess.run(
        [sys.executable, str(_harness.ROOT / "run.py"), "--mode=import"]
        + [f"--checkpoint={source}", f"--model_dir={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=_harness.ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    assert len(lines) < 10, "\n".join(line[:200] for line in lines)
    log = "\n".join(lines)
    assert "Warning" not in log  # Keras: "UserWarning: The structure of `inputs` ..."
    assert "r18_cifar_1x" in log and "largest relative difference" in log
    assert f"into {tmp_path / 'out'}" in log


def test_import_mode_needs_a_source(tmp_path):
    with pytest.raises(ConfigError, match="--checkpoint: --mode=import needs"):
        modes.run(Config(mode="import", model_dir=str(tmp_path / "out")))
    with pytest.raises(ConfigError, match="--checkpoint=.*holds no variables of a reference"):
        tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "ckpt-1"))
        modes.run(
            Config(
                mode="import", checkpoint=str(tmp_path / "ckpt-1"), model_dir=str(tmp_path / "o")
            )
        )


def test_eval_and_export_of_an_imported_model(imported, session_train_test_folder):
    out, _ = imported
    data = dict(dataset="image_folder", data_dir=str(session_train_test_folder))
    evaluation = modes.run(
        Config(
            mode="eval", model_dir=str(out), eval_split="test", knn_k=3, eval_batch_size=8, **data
        )
    )["eval"]
    assert evaluation["global_step"] == 0
    assert {"probe_top1", "knn_top1"} <= set(evaluation)
    assert modes.run(Config(mode="export", model_dir=str(out)))["export"].endswith("saved_model/0")


def test_fine_tune_an_imported_model_from_the_head_middle(
    imported, session_train_test_folder, tmp_path
):
    out, _ = imported
    ft_dir = tmp_path / "ft"
    config = finetune_config(out, ft_dir, session_train_test_folder)
    result = modes.run(config)["train"]
    assert result["global_step"] == 2 and np.isfinite(result["loss"])
    # The fine-tuned model: every trainable variable gets a gradient.
    classifier, step, _ = run_dir.load_model(str(ft_dir))
    assert step == 2 and classifier.ft_proj_selector == 1
    images = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    labels = tf.constant([0, 1, 0, 1])
    with tf.GradientTape() as tape:
        logits = classifier(images, training=True)["logits"]
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    grads = tape.gradient(loss, classifier.trainable_weights)
    # The encoder, the first head layer (kernel, BN gamma and beta) and the classifier.
    assert len(grads) == len(classifier.encoder.trainable_weights) + 3 + 2
    for variable, grad in zip(classifier.trainable_weights, grads, strict=True):
        assert grad is not None, variable.path
        assert np.all(np.isfinite(grad)) and np.abs(np.asarray(grad)).max() > 0, variable.path


# --- Fine-tuning straight from a reference model (imported on the fly) --------------------


def finetune_config(checkpoint, model_dir, data_dir, **overrides) -> Config:
    fields = dict(
        mode="train",
        train_mode="finetune",
        checkpoint=str(checkpoint),
        ft_proj_selector=1,
        model_dir=str(model_dir),
        dataset="image_folder",
        data_dir=str(data_dir),
        image_size=32,
        train_batch_size=8,
        train_steps=2,
        optimizer="momentum",
        learning_rate=0.01,
        verbose=0,
    )
    return Config(**{**fields, **overrides})


def test_fine_tune_from_a_reference_checkpoint_imports_it(
    checkpoints_dir, session_train_test_folder, tmp_path
):
    """`--checkpoint=<the reference run.py's model_dir>`: its architecture is adopted, the
    encoder and head start from its variables, and every trainable variable trains."""
    source = checkpoints_dir("r18_cifar_1x")
    imported = official.load_official(source)
    ft_dir = tmp_path / "ft"
    # 16 images, batches of 8: 2 steps per epoch; one warmup epoch makes step 0's learning
    # rate 0 (warmup from 0), so ckpt-1 holds the weights the run started from.
    config = finetune_config(
        source, ft_dir, session_train_test_folder, warmup_epochs=1, checkpoint_steps=1
    )
    result = modes.run(config)["train"]
    assert result["global_step"] == 2 and np.isfinite(result["loss"])
    description = run_dir.read(str(ft_dir))
    assert description["model"]["resnet_depth"] == 18  # adopted: the default is 50
    assert description["model"]["num_proj_layers"] == 3 and description["cifar_stem"]

    start, _, _ = run_dir.load_model(str(ft_dir / "ckpt-1"))
    end, _, _ = run_dir.load_model(str(ft_dir / "ckpt-2"))
    assert start.ft_proj_selector == 1
    # The start: the reference's encoder and whole head (the classifier is new).
    pairs = list(zip(start.encoder.weights, imported.encoder.weights, strict=True))
    pairs += list(zip(start.head.weights, imported.head.weights, strict=True))
    for ours, reference in pairs:
        if ours.trainable or not ours.path.endswith(("moving_mean", "moving_variance")):
            np.testing.assert_array_equal(ours.numpy(), reference.numpy(), err_msg=ours.path)
    # One step later every trainable variable has moved (the encoder, head layer 1 and the
    # classifier); the head layers after the selector (frozen) have not.
    trainable = {v.path for v in end.trainable_weights}
    assert len(trainable) == len(end.encoder.trainable_weights) + 3 + 2
    for before, after in zip(start.weights, end.weights, strict=True):
        if after.path in trainable:
            assert np.abs(after.numpy() - before.numpy()).max() > 0, after.path
    frozen = lambda model: [
        w for layer in (*model.head.denses[1:], *model.head.bns[1:]) for w in layer.weights
    ]
    for before, after in zip(frozen(start), frozen(end), strict=True):
        np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=after.path)


def test_a_reference_checkpoint_gives_its_architecture_and_one_line_errors(
    checkpoints_dir, tmp_path
):
    source = checkpoints_dir("r18_cifar_1x")
    config = finetune_config(source, tmp_path / "ft", tmp_path)
    given = frozenset({"checkpoint", "image_size", "ft_proj_selector"})
    resolved = resolver.resolve(config, given).config
    assert (resolved.resnet_depth, resolved.width_multiplier, resolved.sk_ratio) == (18, 1, 0)
    assert (resolved.proj_head_mode, resolved.num_proj_layers, resolved.proj_out_dim) == (
        "nonlinear",
        3,
        128,
    )
    # The prefix names the same model; our own model_dirs are not mistaken for one.
    assert locations.find(os.path.join(source, "ckpt-1")).reference
    assert not locations.find(str(tmp_path)).reference
    with pytest.raises(
        ConfigError,
        match=r"^--resnet_depth=50: contradicts the model in --checkpoint=.*, which has "
        r"--resnet_depth=18;",
    ):
        resolver.resolve(config.replace(resnet_depth=50), given | {"resnet_depth"})
    with pytest.raises(ConfigError, match=r"^--image_size=64: the encoder in .* has the CIFAR"):
        resolver.resolve(config.replace(image_size=64), given)


@needs_shared
def test_a_reference_saved_model_initialises_like_its_checkpoint(
    saved_models, checkpoints_dir, tmp_path
):
    """`--checkpoint=<published model>/saved_model`: the same architecture and start weights
    as the checkpoint form (the import also ran the SavedModel against ours)."""
    published = pathlib.Path(saved_models("r18_cifar_1x")).parent  # holds saved_model/
    config = finetune_config(published, tmp_path / "ft", tmp_path)
    resolved = resolver.resolve(config, frozenset({"checkpoint", "image_size"}))
    assert resolved.config.resnet_depth == 18 and resolved.config.num_proj_layers == 3
    assert resolved.checkpoint.reference
    model = resolved.checkpoint.init_model(resolved.config)
    reference = official.load_official(checkpoints_dir("r18_cifar_1x"))
    for ours, theirs in zip(model.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)


# --- Our export keeps the reference's calling convention ---------------------------------

# Run in a fresh process without tf_simclr, as a notebook written for the published models.
CALL_LIKE_THE_REFERENCE = """
import json, sys
import numpy as np
import tensorflow as tf

m = tf.saved_model.load(sys.argv[1])
images = tf.constant(np.load(sys.argv[2])["images"])
outputs = {k: v.numpy() for k, v in m(images, False).items()}
by_keyword = m(images, trainable=False)
same = all(np.array_equal(by_keyword[k].numpy(), v) for k, v in outputs.items())
training = sorted(m(images, True))
np.savez(sys.argv[3], **outputs)
print(json.dumps({
    "same_by_keyword": same,
    "training_keys": training,
    "trainable_variables_list": len(m.trainable_variables_list),
    "signatures": sorted(m.signatures),
    "tf_simclr_imported": any(name.split(".")[0] == "tf_simclr" for name in sys.modules),
}))
"""


def test_our_export_is_called_like_the_reference_saved_model(imported, tmp_path):
    """`m(images, False)` on the SavedModel that `--mode=import` exported returns the
    reference's outputs under its keys, equal to the reference's own."""
    out, _ = imported
    expected, full = expected_outputs("r18_cifar_1x")
    np.savez(tmp_path / "images.npz", images=expected["images"])
    script = tmp_path / "call.py"
    script.write_text(CALL_LIKE_THE_REFERENCE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(script), str(out / "saved_model" / "0"), "images.npz", "out.npz"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["tf_simclr_imported"] is False and report["same_by_keyword"]
    assert report["signatures"] == ["serving_default", "serving_float"]
    reference_trainable = sum(v["trainable"] for v in manifest("r18_cifar_1x")["variables"])
    assert report["trainable_variables_list"] == reference_trainable
    outputs = dict(np.load(tmp_path / "out.npz"))
    assert ALL_OUTPUTS <= set(outputs) and ALL_OUTPUTS <= set(report["training_keys"])
    for key in sorted(ALL_OUTPUTS):
        value = outputs[key] if full else strided("r18_cifar_1x", outputs[key])
        assert value.dtype == np.float32
        difference = official.relative_difference(value, expected[key])
        assert difference < TOLERANCE, (key, difference)


# --- A published model as the teacher of distillation ------------------------------------


def test_distill_from_a_reference_checkpoint_and_from_its_import(
    checkpoints_dir, imported, make_image_folder, mirrored_strategy, tmp_path
):
    """`--teacher` takes a published model directly (imported on the fly, under the run's
    strategy) or the model_dir `--mode=import` wrote; either teacher predicts the
    reference's `logits_sup`, and the student trains on it."""
    from tf_simclr.modes import distill

    classes = [f"c{i}" for i in range(10)]  # the fixture's 10 classes
    data = make_image_folder(tmp_path / "images", classes=classes, per_class=1, size=32)
    expected, _ = expected_outputs("r18_cifar_1x")  # logits: 2-D, never strided
    reference = checkpoints_dir("r18_cifar_1x")
    out, _ = imported
    config = _harness.tiny_config(
        train_mode="distill",
        dataset="image_folder",
        data_dir=str(data),
        image_size=32,
        train_batch_size=5,
        train_steps=2,
        optimizer="momentum",
        learning_rate=0.1,
    )
    # The published model built under 2 replicas (its variables mirrored), the import's on one.
    for teacher, strategy in ((reference, mirrored_strategy), (str(out), None)):
        run = config.replace(teacher=teacher, model_dir=str(tmp_path / "student"))
        strategy = strategy or tf.distribute.get_strategy()
        resolved = resolver.resolve(run, frozenset({"teacher", "model_dir"}))
        model = distill.load_teacher(resolved, strategy, num_classes=10)
        assert not model.trainable_weights
        logits = np.asarray(model(expected["images"], training=False)["logits"])
        difference = official.relative_difference(logits, expected["logits_sup"])
        assert difference < TOLERANCE, (teacher, difference)
    # The mode with the published model as the teacher (the model_dir's path, a tf_simclr
    # model_dir, is the one every other distillation test takes).
    result = modes.run(config.replace(teacher=reference, model_dir=str(tmp_path / "student")))
    assert result["train"]["global_step"] == 2 and np.isfinite(result["train"]["loss"])
    assert run_dir.read(str(tmp_path / "student"))["model"]["width_multiplier"] == 0.125


def test_a_reference_teacher_without_classifier_or_with_another_stem_is_refused(
    checkpoints_dir, tmp_path, make_image_folder
):
    data = make_image_folder(tmp_path / "images", classes=[f"c{i}" for i in range(10)])
    config = Config(
        mode="train",
        train_mode="distill",
        dataset="image_folder",
        data_dir=str(data),
        model_dir=str(tmp_path / "student"),
        image_size=32,
        train_batch_size=8,
        verbose=0,
    )
    without = rebuild_checkpoint("r18_cifar_1x", tmp_path / "v1", drop("model/supervised_head/"))
    with pytest.raises(ConfigError, match="^--teacher=.*has no classifier"):
        modes.run(config.replace(teacher=without))
    with pytest.raises(ConfigError, match="^--image_size=64: the encoder in --teacher=.*CIFAR"):
        modes.run(config.replace(teacher=checkpoints_dir("r18_cifar_1x"), image_size=64))
    assert not (tmp_path / "student").exists()
