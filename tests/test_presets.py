"""Published models by name (`tf_simclr.presets`): registry, download, cache, `from_preset`.

Offline: a real HTTP server (`http.server` in a thread, on 127.0.0.1, with Range support)
serves a reference SavedModel rebuilt from the fixtures (`tests/test_official.py`), laid out
like the bucket, under a name of a small test registry whose expected parameter count is the
reference's own (the fixture's README: 11,173,056 for the ResNet-18 CIFAR backbone).
"""

import http.server
import math
import os
import pathlib
import re
import threading

import keras
import numpy as np
import pytest

import tf_simclr
from tests import test_official
from tf_simclr import presets
from tf_simclr.errors import ArgumentError
from tf_simclr.models import ResNet
from tf_simclr.presets import download, registry

NAME = "fixtures/pretrained/r18_cifar_1x"
FIXTURE = registry.Preset(
    name=NAME,
    version=2,
    training="pretrained",
    depth=18,
    width_multiplier=1,
    sk=False,
    cifar_stem=True,
    encoder_params=11_173_056,  # the reference's count (shared fixtures README)
    params_m=11,
    top1=0.0,
    top1_protocol="none (seeded values)",
)
REGISTRY = {NAME: FIXTURE}
DATA_FILE = "saved_model/variables/variables.data-00000-of-00001"
FAST = {"retries": 2, "backoff": 0.01, "timeout": 10}


# --- A bucket on disk, and a server for it ---------------------------------------------


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """A folder laid out like the bucket, holding the ResNet-18 CIFAR fixture under NAME."""
    if not (test_official.SHARED / "r18_cifar_1x" / "saved_model.pb").exists():
        pytest.skip("the shared reference fixtures (SavedModel graphs) are absent")
    root = tmp_path_factory.mktemp("bucket")
    test_official.rebuild_saved_model("r18_cifar_1x", root / NAME)
    return root


class Server(http.server.ThreadingHTTPServer):
    """Serves `root` with Range support. Knobs: `status` (path -> HTTP error code, always),
    `fail_once` (path -> code, once), `cut_once` (paths whose first answer stops halfway),
    `ignore_range` (answer 200 with the whole file to a Range request),
    `cut_for_good` (paths whose first answer stops halfway, after which every request to
    the server is dropped unanswered). `requests` logs (path, Range header)."""

    daemon_threads = True

    def __init__(self, root):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = pathlib.Path(root)
        self.requests = []
        self.status, self.fail_once = {}, {}
        self.cut_once, self.cut_for_good = set(), set()
        self.ignore_range = self.down = False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server, path = self.server, self.path.lstrip("/")
        server.requests.append((path, self.headers.get("Range")))
        if server.down:
            self.close_connection = True
            return  # no answer at all
        code = server.status.get(path) or server.fail_once.pop(path, None)
        if code:
            self.send_error(code)
            return
        file = server.root / path
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        first = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and not server.ignore_range:
            first = int(m.group(1))
            if first >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[first:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if path in server.cut_once or path in server.cut_for_good:
            server.down = path in server.cut_for_good
            server.cut_once.discard(path)
            server.cut_for_good.discard(path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server(bucket):
    server = Server(bucket)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache, named by TF_SIMCLR_CACHE."""
    path = tmp_path / "cache"
    monkeypatch.setenv("TF_SIMCLR_CACHE", str(path))
    return path


def files_in(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in pathlib.Path(path).rglob("*") if p.is_file())


def assert_same_files(a, b):
    assert files_in(a) == files_in(b) == sorted(FIXTURE.files)
    for name in FIXTURE.files:
        assert pathlib.Path(a, name).read_bytes() == pathlib.Path(b, name).read_bytes(), name


def one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


# --- Loading by name, and from the cache ------------------------------------------------


def test_from_preset_by_name_then_from_the_cache(server, cache, monkeypatch):
    monkeypatch.setenv("TF_SIMCLR_MODEL_ROOT", server.url)
    model = tf_simclr.from_preset(NAME, registry=REGISTRY, **FAST)
    assert sorted(path for path, _ in server.requests) == sorted(
        f"{NAME}/{f}" for f in FIXTURE.files
    )
    test_official.assert_matches_reference(model, "r18_cifar_1x")
    assert registry.encoder_params(model.encoder) == FIXTURE.encoder_params
    # The cache holds the files and our model_dir, nothing else.
    downloads, model_dir = download.paths(FIXTURE)
    assert_same_files(downloads, server.root / NAME)
    assert (pathlib.Path(model_dir) / "model.json").exists()
    assert (pathlib.Path(model_dir) / "saved_model" / "0" / "saved_model.pb").exists()
    assert files_in(cache / "tmp") == []

    # The second load reads the cache only: no request, no import.
    server.requests.clear()
    monkeypatch.setattr(download, "fetch_tree", None)  # any download would fail
    import tf_simclr.modes.import_official as import_mode

    monkeypatch.setattr(import_mode, "run", None)  # and any conversion
    again = presets.load_preset(NAME.replace("/", "_"), registry=REGISTRY)
    assert server.requests == []
    for a, b in zip(model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_wrong_parameter_count_is_refused_and_nothing_is_cached(server, cache):
    wrong = {NAME: registry.Preset(**{**FIXTURE.__dict__, "encoder_params": 11_173_057})}
    with pytest.raises(ArgumentError) as error:
        presets.load_preset(NAME, root=server.url, registry=wrong, **FAST)
    assert "11,173,056 trainable parameters" in one_line(error)
    assert "11,173,057" in str(error.value)
    assert files_in(cache) == []


# --- The download ----------------------------------------------------------------------


def test_model_root_as_a_folder_and_as_a_url(bucket, server, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("TF_SIMCLR_MODEL_ROOT", str(bucket))
    from_folder = presets.download_preset(NAME, registry=REGISTRY)
    assert_same_files(from_folder, bucket / NAME)
    assert server.requests == []
    monkeypatch.setenv("TF_SIMCLR_MODEL_ROOT", server.url)
    monkeypatch.setenv("TF_SIMCLR_CACHE", str(tmp_path / "other"))
    from_url = presets.download_preset(NAME, registry=REGISTRY, **FAST)
    assert from_url.startswith(str(tmp_path / "other"))
    assert_same_files(from_url, bucket / NAME)
    assert len(server.requests) == len(FIXTURE.files)


def test_a_transfer_cut_in_the_middle_resumes(bucket, server, cache, tmp_path):
    whole = presets.download_preset(
        NAME, root=server.url, cache=str(tmp_path / "uninterrupted"), registry=REGISTRY
    )
    server.requests.clear()
    server.cut_once.add(f"{NAME}/{DATA_FILE}")
    resumed = presets.download_preset(NAME, root=server.url, registry=REGISTRY, **FAST)
    size = (bucket / NAME / DATA_FILE).stat().st_size
    assert (f"{NAME}/{DATA_FILE}", None) in server.requests
    assert (f"{NAME}/{DATA_FILE}", f"bytes={size // 2}-") in server.requests
    assert len(server.requests) == len(FIXTURE.files) + 1
    assert_same_files(resumed, whole)
    assert_same_files(resumed, bucket / NAME)


def test_a_server_that_ignores_range_gets_the_file_again_whole(bucket, server, cache):
    server.cut_once.add(f"{NAME}/{DATA_FILE}")
    server.ignore_range = True
    path = presets.download_preset(NAME, root=server.url, registry=REGISTRY, **FAST)
    assert_same_files(path, bucket / NAME)
    size = (bucket / NAME / DATA_FILE).stat().st_size
    assert (f"{NAME}/{DATA_FILE}", f"bytes={size // 2}-") in server.requests


def test_a_tensorflow_file_system_root(bucket, cache):
    """gs:// goes through tf.io.gfile; TensorFlow's in-memory ram:// file system stands in."""
    import tensorflow as tf

    root = "ram://bucket"
    for name in FIXTURE.files:
        tf.io.gfile.makedirs(os.path.dirname(f"{root}/{NAME}/{name}"))
        tf.io.gfile.copy(str(bucket / NAME / name), f"{root}/{NAME}/{name}", overwrite=True)
    path = presets.download_preset(NAME, root=root, registry=REGISTRY)
    assert_same_files(path, bucket / NAME)
    with pytest.raises(presets.DownloadError) as error:
        presets.download_preset(
            NAME, root="ram://nothing", cache=str(cache / "b"), registry=REGISTRY
        )
    assert "not found" in one_line(error) and "ram://nothing/" in str(error.value)


def test_a_transient_error_is_retried(bucket, server, cache):
    server.fail_once[f"{NAME}/{DATA_FILE}"] = 503
    path = presets.download_preset(NAME, root=server.url, registry=REGISTRY, **FAST)
    assert_same_files(path, bucket / NAME)
    assert [r for r in server.requests if r[0].endswith(DATA_FILE)] == [
        (f"{NAME}/{DATA_FILE}", None)
    ] * 2


def test_a_connection_that_drops_for_good_leaves_nothing(server, cache):
    server.cut_for_good.add(f"{NAME}/{DATA_FILE}")
    with pytest.raises(presets.DownloadError) as error:
        presets.download_preset(NAME, root=server.url, registry=REGISTRY, **FAST)
    text = one_line(error)
    assert f"{server.url}/{NAME}/{DATA_FILE}" in text
    assert "nothing was kept in the cache" in text
    assert files_in(cache) == []
    # It tried again (resuming) until the retries ran out.
    assert server.requests[-1][1] is not None and len(server.requests) >= 2 + FAST["retries"]


@pytest.mark.parametrize("code", [403, 404])
def test_403_and_404_are_one_line(server, cache, code):
    server.status[f"{NAME}/{FIXTURE.files[0]}"] = code
    with pytest.raises(presets.DownloadError) as error:
        presets.download_preset(NAME, root=server.url, registry=REGISTRY, **FAST)
    text = one_line(error)
    assert f"HTTP {code}" in text and f"{server.url}/{NAME}/{FIXTURE.files[0]}" in text
    assert "TF_SIMCLR_MODEL_ROOT" in text
    assert len(server.requests) == 1  # final: no retry
    assert files_in(cache) == []


def test_a_missing_file_in_a_folder_root_is_one_line(tmp_path, cache):
    with pytest.raises(presets.DownloadError) as error:
        presets.download_preset(NAME, root=str(tmp_path / "empty"), registry=REGISTRY)
    assert "not found" in one_line(error) and "TF_SIMCLR_MODEL_ROOT" in str(error.value)
    assert files_in(cache) == []


def test_cache_and_root_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_SIMCLR_CACHE", raising=False)
    monkeypatch.delenv("TF_SIMCLR_MODEL_ROOT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.cache_dir() == str(tmp_path / "xdg" / "tf_simclr")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.cache_dir() == str(tmp_path / "home" / ".cache" / "tf_simclr")
    monkeypatch.setenv("TF_SIMCLR_CACHE", str(tmp_path / "mine"))
    assert download.cache_dir() == str(tmp_path / "mine")
    assert download.model_root() == "https://storage.googleapis.com/simclr-checkpoints-tf2"


def test_the_progress_bar_shows_size_and_speed(capsys):
    bar = download.Progress("x.data", 4_000_000, enabled=True)
    bar.update(2_000_000, force=True)
    bar.close()
    err = capsys.readouterr().err
    assert "x.data: 2.0/4.0 MB  50%" in err and "MB/s" in err
    quiet = download.Progress("x.data", 4_000_000)  # stderr is not a terminal here
    quiet.update(2_000_000, force=True)
    quiet.close()
    assert capsys.readouterr().err == ""


# --- The registry ----------------------------------------------------------------------


def test_every_name_resolves_to_a_well_formed_location():
    names = presets.list_presets()
    assert len(names) == 13 * 5 + 3 * 3
    pattern = re.compile(
        r"simclrv2/(pretrained|finetuned_(1|10|100)pct|supervised)/r(50|101|152)_[123]x_sk[01]"
        r"|simclrv1/(pretrain|finetune_(10|100)pct)/[124]x"
    )
    for name in names:
        preset = presets.get(name)
        assert pattern.fullmatch(preset.location), name
        assert presets.get(name.replace("/", "_")) is preset
        url = download.join(download.DEFAULT_ROOT, f"{preset.location}/{preset.files[0]}")
        assert url == f"{download.DEFAULT_ROOT}/{name}/saved_model/saved_model.pb"
        if preset.version == 2:
            assert name.endswith("/" + preset.architecture), name
        else:
            assert preset.architecture == "r50_" + name.rsplit("/", 1)[1] + "_sk0"
        assert 50 < preset.top1 < 90
    with pytest.raises(ArgumentError) as error:
        presets.get("r50_1x_sk1")
    assert one_line(error).startswith("name='r50_1x_sk1': is not a published model; did you")
    assert "simclrv2/pretrained/r50_1x_sk1 or simclrv2/finetuned_1pct/r50_1x_sk1 or" in (
        str(error.value)
    )
    with pytest.raises(ArgumentError, match="list_presets"):
        presets.get("simclrv3/r50")
    assert "| `simclrv2/pretrained/r50_1x_sk1` | r50_1x_sk1 | 35 | 74.6 (linear eval) |" in (
        presets.table()
    )


ARCHITECTURES = sorted(
    {(p.depth, p.width_multiplier, p.sk) for p in registry.presets().values()},
    key=lambda a: a[0] * a[1] ** 2,
)
# The reference's own counts (shared fixtures README), independent of our ResNet.
REFERENCE_COUNTS = {(50, 1, False): 23_508_032, (50, 1, True): 35_215_584}


@pytest.mark.parametrize(
    "architecture",
    [
        a if a in REFERENCE_COUNTS else pytest.param(a, marks=pytest.mark.slow)
        for a in ARCHITECTURES
    ],
    ids=lambda a: f"r{a[0]}_{a[1]}x_sk{int(a[2])}",
)
def test_the_architecture_has_the_claimed_parameter_count(architecture):
    depth, width, sk = architecture
    claimed = [
        p
        for p in registry.presets().values()
        if (p.depth, p.width_multiplier, p.sk) == architecture
    ]
    encoder = ResNet(depth=depth, width_multiplier=width, sk_ratio=0.0625 if sk else 0.0)
    encoder.build((None, 64, 64, 3))
    count = registry.encoder_params(encoder)
    every = sum(math.prod(v.shape) for v in encoder.weights)
    assert REFERENCE_COUNTS.get(architecture, count) == count
    for preset in claimed:
        assert preset.encoder_params == count, preset.name
        # The published figures: the v2 README's round the count of every encoder variable
        # (BatchNorm moving statistics too: r152_2x_sk0 has 232.25 M trainable, 232.56 M in
        # all, and the README says 233); the SimCLR paper's 375 M for v1 4x is the trainable
        # count (375.38 M; 375.59 M in all).
        published = every if preset.version == 2 else count
        assert round(published / 1e6) == preset.params_m, preset.name
    keras.backend.clear_session()


def test_the_docs_list_every_preset():
    docs = pathlib.Path(__file__).parents[1] / "docs" / "official_models.md"
    assert presets.table() in docs.read_text()
