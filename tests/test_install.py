"""What installing tf_simclr promises (issue 26): declared dependencies, one version.

- every import in tf_simclr/ is the standard library, tf_simclr, a declared dependency,
  or optional (an extra, or guarded by `except ImportError`);
- the version has one source, `tf_simclr.__version__`, which the wheel's metadata, the
  model description (`model.json`) and an exported SavedModel's description carry;
- the notebook's install cell supports the versions pyproject.toml declares, keeps the
  runtime's TensorFlow, and refuses an unsupported runtime in one line saying what to do.
"""

import ast
import importlib.metadata
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tf_simclr"
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"

# Import name -> distribution name, where they differ.
DISTRIBUTION_OF = {
    "absl": "absl-py",
    "tensorflow_datasets": "tensorflow-datasets",
    "sklearn": "scikit-learn",
}


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def declared() -> tuple[set[str], set[str]]:
    """(the distributions `pip install tf_simclr` installs, those of its extras)."""
    project = pyproject()["project"]
    required = {requirement_name(r) for r in project["dependencies"]}
    extras = {requirement_name(r) for rs in project["optional-dependencies"].values() for r in rs}
    return required, extras


def imports(path: pathlib.Path) -> list[tuple[int, str, str]]:
    """(line, top-level module, where) of the absolute imports in `path`; where is
    "module" (runs on import), "function" (runs when called) or "guarded" (inside a
    `try` that catches ImportError: optional by construction)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, where):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name.split(".")[0], where) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0], where))
        if isinstance(node, ast.Try) and any(
            h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers
        ):
            for child in node.body:
                visit(child, "guarded")
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, where)
            return
        inner = "function" if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else where
        for child in ast.iter_child_nodes(node):
            visit(child, "module" if where == "module" and inner == "module" else inner)

    visit(tree, "module")
    return found


def undeclared_imports(package: pathlib.Path, required: set, extras: set) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        for line, module, where in imports(path):
            if module in sys.stdlib_module_names or module in ("tf_simclr", "__future__"):
                continue
            name = DISTRIBUTION_OF.get(module, module).lower().replace("_", "-")
            if name in required or where == "guarded":
                continue
            if name in extras and where == "function":
                continue  # an optional feature, imported when used
            kind = "an extra imported on import" if name in extras else "not declared"
            problems.append(f"{path.relative_to(package.parent)}:{line}: {module} ({kind})")
    return problems


def test_every_import_of_the_package_is_a_declared_dependency():
    required, extras = declared()
    assert not undeclared_imports(PACKAGE, required, extras)


def test_the_import_check_sees_an_undeclared_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(
        "import os\nimport numpy\nimport yaml\n"
        "def f():\n    import matplotlib\n"
        "try:\n    import sklearn\nexcept ImportError:\n    sklearn = None\n"
        "import matplotlib.pyplot\n"
    )
    problems = undeclared_imports(tmp_path / "pkg", {"numpy"}, {"matplotlib"})
    assert problems == [
        "pkg/a.py:3: yaml (not declared)",
        "pkg/a.py:10: matplotlib (an extra imported on import)",
    ]


def test_supported_ranges_have_a_floor_and_a_ceiling():
    """Ranges, not pins (a pin would replace Colab's TensorFlow); requirements.txt pins
    the newest tested set, which the ranges include."""
    packaging = pytest.importorskip("packaging.requirements")
    pinned = pins("requirements.txt")
    for text in pyproject()["project"]["dependencies"]:
        requirement = packaging.Requirement(text)
        operators = {s.operator for s in requirement.specifier}
        assert operators == {">=", "<"}, text
        assert requirement.specifier.contains(pinned[requirement_name(text)]), (text, pinned)


def test_version_has_one_source():
    import tf_simclr

    project = pyproject()
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "tf_simclr.__version__"
    try:
        installed = importlib.metadata.version("tf_simclr")
    except importlib.metadata.PackageNotFoundError:
        installed = None  # run from a checkout that is not installed
    if installed is not None:
        assert installed == tf_simclr.__version__


@pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None, reason="builds the wheel with setuptools"
)
def test_the_wheel_carries_the_version_the_ranges_and_every_module(tmp_path):
    import tf_simclr

    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("tf_simclr-*.whl")
    assert wheel.name.startswith(f"tf_simclr-{tf_simclr.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = z.read(metadata).decode()
    assert f"\nVersion: {tf_simclr.__version__}\n" in metadata
    for requirement in pyproject()["project"]["dependencies"]:
        name = requirement_name(requirement)
        (line,) = [
            line
            for line in metadata.splitlines()
            if line.startswith("Requires-Dist: ")
            and "extra ==" not in line
            and requirement_name(line[len("Requires-Dist: ") :]) == name
        ]
        assert "<" in line and ">=" in line, line
    modules = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_model_json_and_the_saved_model_record_the_release(tmp_path):
    import tensorflow as tf

    import tf_simclr
    from tf_simclr import export, run_dir
    from tf_simclr.config import Config
    from tf_simclr.models import ProjectionHead, ResNet, SimCLR

    description = run_dir.describe(Config(model_dir=str(tmp_path)), num_classes=3)
    assert description["tf_simclr_version"] == tf_simclr.__version__
    run_dir.write(str(tmp_path / run_dir.MODEL_FILE), description)
    assert run_dir.read(str(tmp_path))["tf_simclr_version"] == tf_simclr.__version__

    model = SimCLR(ResNet(18, width_multiplier=0.125, cifar_stem=True), ProjectionHead(), 3)
    model(tf.zeros([1, 16, 16, 3]))
    older = {**description, "tf_simclr_version": "0.0.1"}  # trained by an older release
    path = export.export_saved_model(model, str(tmp_path / "sm"), 1, 16, description=older)
    saved = json.loads((pathlib.Path(path) / export.DESCRIPTION_FILE).read_text())
    assert saved["tf_simclr_version"] == tf_simclr.__version__  # the release that exported it


# The notebook's first code cell: checks the runtime, then installs tf_simclr into it.


def install_cell() -> str:
    notebook = json.loads(NOTEBOOK.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    return "".join(code[0]["source"])


def test_the_notebook_supports_what_pyproject_declares():
    namespace = {}
    source = install_cell()
    (line,) = [line for line in source.splitlines() if line.startswith("SUPPORTED = ")]
    exec(line, namespace)
    declared_ranges = {requirement_name(r): r for r in pyproject()["project"]["dependencies"]}
    for package, (lowest, below) in namespace["SUPPORTED"].items():
        assert declared_ranges[package] == f"{package}>={lowest},<{below}"


FIND_SPEC = importlib.util.find_spec


def run_install_cell(monkeypatch, tmp_path, versions, has_tf_simclr, source=""):
    """Runs the install cell with the runtime's `versions` and no real pip; returns the
    pip commands it ran."""
    commands = []

    def version(name):
        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    def run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tf_simclr" and not has_tf_simclr else FIND_SPEC(name, *a),
    )
    monkeypatch.setenv("TF_SIMCLR_SOURCE", source)
    monkeypatch.chdir(tmp_path)
    exec(install_cell(), {})
    return commands


COLAB = {"tensorflow": "2.19.0", "keras": "3.10.0", "numpy": "2.0.2"}


def test_install_cell_keeps_the_runtimes_tensorflow(monkeypatch, tmp_path):
    wheel = tmp_path / "tf_simclr-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")  # uploaded to the runtime's folder: found without a setting
    (command,) = run_install_cell(monkeypatch, tmp_path, COLAB, has_tf_simclr=False)
    assert command[-1] == f"tf_simclr[viz] @ {wheel.resolve().as_uri()}"
    constraints = command[command.index("--constraint") + 1]
    assert pathlib.Path(constraints).read_text().split() == [
        "tensorflow==2.19.0",
        "keras==3.10.0",
        "numpy==2.0.2",
    ]
    git = "git+https://github.com/someone/tf_simclr"
    (command,) = run_install_cell(monkeypatch, tmp_path, COLAB, has_tf_simclr=False, source=git)
    assert command[-1] == f"tf_simclr[viz] @ {git}"
    assert run_install_cell(monkeypatch, tmp_path, COLAB, has_tf_simclr=True) == []


@pytest.mark.parametrize(
    "versions, message",
    [
        (
            {**COLAB, "tensorflow": "2.18.1"},
            "tensorflow>=2.19,<2.22 (this runtime has 2.18.1)",
        ),
        ({"numpy": "2.0.2", "keras": "3.10.0"}, "tensorflow>=2.19,<2.22 (this runtime has none)"),
        ({**COLAB, "keras": "3.16.0"}, "keras>=3.10,<3.16 (this runtime has 3.16.0)"),
    ],
)
def test_install_cell_refuses_an_unsupported_runtime_in_one_line(
    monkeypatch, tmp_path, versions, message
):
    with pytest.raises(RuntimeError) as error:
        run_install_cell(monkeypatch, tmp_path, versions, has_tf_simclr=False)
    text = str(error.value)
    assert "\n" not in text and message in text, text
    assert "pip install" in text and "Restart session" in text, text


def test_install_cell_without_a_source_says_how_to_give_one(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match="TF_SIMCLR_SOURCE") as error:
        run_install_cell(monkeypatch, tmp_path, COLAB, has_tf_simclr=False)
    assert "\n" not in str(error.value)


def pins(name: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            package, _, version = line.partition("==")
            found[requirement_name(package)] = version
    return found


def test_ci_tests_the_lower_bounds_and_the_newest_pins():
    """requirements-oldest.txt (the second CI venv) pins each dependency at its declared
    lower bound; requirements.txt (the full suite) inside the range."""
    version = pytest.importorskip("packaging.version").Version
    requirements = pytest.importorskip("packaging.requirements")
    oldest, newest = pins("requirements-oldest.txt"), pins("requirements.txt")
    for text in pyproject()["project"]["dependencies"]:
        requirement = requirements.Requirement(text)
        name = requirement_name(text)
        (lowest,) = [s.version for s in requirement.specifier if s.operator == ">="]
        floor = version(lowest).release
        assert version(oldest[name]).release[: len(floor)] == floor, (text, oldest[name])
        assert requirement.specifier.contains(newest[name]), (text, newest[name])


def test_the_ci_subset_on_the_oldest_versions_names_tests_that_exist():
    script = (ROOT / ".ci" / "run").read_text()
    listed = script.split("OLDEST_TESTS=(", 1)[1].split(")", 1)[0].split()
    assert len(listed) >= 5 and '"${OLDEST_TESTS[@]}"' in script
    for test in listed:
        path, _, function = test.strip('"').partition("::")
        assert (ROOT / path).exists(), test
        if function:
            assert f"def {function.split('[')[0]}(" in (ROOT / path).read_text(), test


def test_no_placeholder_owner_where_users_read_or_run():
    for path in (ROOT / "README.md", NOTEBOOK):
        assert "<owner>" not in path.read_text(), path
