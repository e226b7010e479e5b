"""The import graph follows docs/architecture.md; a violation fails here, naming the import.

Every `import` and `from ... import` of every module is read with `ast`,
function-level imports included (lazy imports are still dependencies).
"""

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tf_simclr"

# Who may not import whom: the layer of a module is its first component below
# tf_simclr (`tf_simclr.data.augment` -> "data"; `tf_simclr.run_dir` -> "run_dir").
# Training drivers: everything that runs or configures a training job.
# `presets` downloads published models and imports them with `--mode=import`; `resolver`
# decides once what the command line's locations are; `step_plan`, `records` and
# `initialise` are the parts of a training run around the loop (`training`).
DRIVERS = {
    "modes",
    "training",
    "builders",
    "run_dir",
    "callbacks",
    "config",
    "presets",
    "resolver",
    "step_plan",
    "records",
    "initialise",
}
FORBIDDEN = {
    "data": DRIVERS | {"models", "eval", "export", "optim", "losses", "checkpoints", "layers"},
    "models": DRIVERS | {"data", "eval", "export", "checkpoints", "layers"},
    # The augmentations as Keras layers: wrappers of data's batched ops, nothing else.
    "layers": DRIVERS
    | {"models", "eval", "export", "optim", "losses", "checkpoints", "official", "distribute"},
    "losses": DRIVERS | {"data", "models", "eval", "export"},
    "optim": DRIVERS | {"data", "models", "eval", "export", "losses"},
    "distribute": DRIVERS | {"data", "models", "eval", "export", "optim", "losses"},
    "errors": DRIVERS | {"data", "models", "eval", "export", "optim", "losses", "distribute"},
    "eval": DRIVERS | {"export", "checkpoints"},
    "export": DRIVERS | {"eval", "optim", "losses", "checkpoints", "distribute"},
    # LiteRT and ONNX files of a model: the SavedModel's outputs and variables, no training.
    "export_formats": DRIVERS | {"data", "eval", "optim", "losses", "checkpoints", "distribute"},
    "checkpoints": DRIVERS | {"data", "models", "eval", "export", "optim", "losses"},
    # What is at a path (model_dir, checkpoint, SavedModel, reference model): the one
    # place that tells them apart, below everything that reads them.
    "locations": DRIVERS
    | {
        "data",
        "models",
        "eval",
        "export",
        "export_formats",
        "optim",
        "losses",
        "checkpoints",
        "official",
        "distribute",
        "layers",
        "viz",
    },
    # The importer of the reference's published models: models, checkpoints, errors.
    "official": DRIVERS | {"data", "eval", "export", "optim", "losses", "distribute"},
    # Pictures (matplotlib plots) of data, features and runs.
    "viz": DRIVERS | {"export", "optim", "losses", "checkpoints", "official", "distribute"},
    # What training writes to TensorBoard beside scalars (view strips, projector files) and
    # reads back (scalars): data and features, no plots (so training never loads matplotlib).
    "summaries": DRIVERS
    | {"export", "optim", "losses", "checkpoints", "official", "distribute", "viz"},
    "builders": {"modes", "training", "run_dir", "callbacks", "resolver", "records", "initialise"},
    "run_dir": {"modes", "training", "callbacks", "resolver", "records", "initialise"},
    # The resolver runs before any training: it knows nothing of the loop.
    "resolver": {"modes", "training", "step_plan", "records", "initialise", "callbacks"},
    "step_plan": DRIVERS - {"config", "step_plan"},
    "records": {"modes", "training", "resolver", "initialise", "callbacks", "builders"},
    "initialise": {"modes", "training", "resolver", "records", "step_plan", "callbacks"},
    "training": {"modes", "resolver"},
}
# Modules only some layers may import: nothing below the drivers draws pictures or writes
# TensorBoard files; `viz` draws its figures from `summaries`' image intake and scalars.
ONLY_IMPORTED_BY = {"viz": {"modes"}, "summaries": {"modes", "training", "viz"}}
# Leaves: what each may import of tf_simclr (nothing else), and of the rest only the
# standard library, so that parsing a flag never loads TensorFlow. The config reads its
# choices and bounds from `choices`, shared with the modules that use them.
LEAVES = {"choices": set(), "errors": set(), "config": {"choices", "errors"}}
# The command line (`tf_simclr/cli.py`, started by run.py, `python -m tf_simclr` and the
# installed `tf-simclr` script) talks to the modes; no library module imports it.
CLI_MAY_IMPORT = {"config", "errors", "modes", "distribute", "logs"}
COMMAND_LINE = {"cli", "__main__"}


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in `path`, resolved to absolute names."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            # `from tf_simclr import eval` imports the submodule tf_simclr.eval.
            if node.module == "tf_simclr":
                # (`__version__` and other dunders are the package's attributes.)
                found += [
                    (node.lineno, f"tf_simclr.{a.name}")
                    for a in node.names
                    if not a.name.startswith("__")
                ]
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tf_simclr" or len(parts) < 2:
        return None
    return parts[1]


def test_library_layers():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer("tf_simclr." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for line, module in imports_of(path):
            target = layer(module)
            if own in COMMAND_LINE:
                bad = target is not None and target not in CLI_MAY_IMPORT | COMMAND_LINE
            elif own in LEAVES:
                bad = target is not None and target != own and target not in LEAVES[own]
            else:
                bad = (
                    target is not None
                    and target != own
                    and (
                        target in COMMAND_LINE
                        or target in FORBIDDEN.get(own, ())
                        or own not in ONLY_IMPORTED_BY.get(target, {own})
                    )
                )
            if bad:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {module}")
    assert not violations, "\n".join(violations)


def test_leaves_import_only_the_standard_library():
    """`choices`, `errors` and `config` load without TensorFlow, Keras, TFDS or absl."""
    outside = []
    for name in LEAVES:
        path = PACKAGE / f"{name}.py"
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("tf_simclr", "__future__"):
                outside.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not outside, "\n".join(outside)


def test_run_py_is_the_command_line():
    imported = {layer(m) for _, m in imports_of(ROOT / "run.py")} - {None}
    assert imported == {"cli"}, imported


def test_only_the_command_line_reads_absl_flags():
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE and path.stem in COMMAND_LINE:
            continue
        for line, module in imports_of(path):
            if module in ("absl.flags",) or (
                module == "absl" and "flags" in path.read_text().splitlines()[line - 1]
            ):
                readers.append(f"{path.relative_to(ROOT)}:{line}")
    assert not readers, readers


def test_tools_do_not_import_run_py():
    for path in sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("benchmarks/*.py")]):
        modules = {m for _, m in imports_of(path)}
        assert "run" not in modules, f"{path.relative_to(ROOT)} imports run.py"
        assert "tf_simclr.cli" not in modules, f"{path.relative_to(ROOT)} imports tf_simclr.cli"


def test_the_checker_sees_a_violation(tmp_path):
    """Negative control: the same rules flag a data module that imports models."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tf_simclr.models import SimCLR\n")
    ((line, module),) = imports_of(bad)
    assert (line, layer(module)) == (2, "models") and "models" in FORBIDDEN["data"]


def test_the_config_may_not_import_the_modes():
    """The arrow that once closed an import cycle of 12 modules: config -> modes."""
    assert "modes" not in LEAVES["config"] and "config" in LEAVES
