"""Fetching a published model's files into the local cache (no TensorFlow, except for gs://).

Where from: `model_root()`, `$TF_SIMCLR_MODEL_ROOT` or the public bucket over HTTPS. A root is
a local folder, an `http(s)://` URL or a `gs://` bucket (read with `tf.io.gfile`), laid out
like the bucket: `<root>/simclrv2/pretrained/r50_1x_sk1/saved_model/saved_model.pb`.

Where to: `cache_dir()`, `$TF_SIMCLR_CACHE`, else `$XDG_CACHE_HOME/tf_simclr`, else
`~/.cache/tf_simclr`. `fetch_tree` writes every file of a model into a temporary directory
under `<cache>/tmp/` and renames that directory into place only when every file is complete
and has the size the server announced; on failure the temporary directory is removed, so the
cache never holds part of a model.

An HTTP transfer streams to disk, resumes with a `Range` request after a dropped connection
or a timeout (the bytes already received are kept), and retries transient failures (no
connection, a 5xx or 429 answer) with exponential backoff; the count of failed attempts
restarts whenever an attempt made progress. 401, 403, 404 and 410 are final: one line naming
the URL and how to use a mirror.

`download_preset(name)` fetches a registered model's files into `<cache>/downloads/<name>/`
(see `paths`), once.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

from absl import logging

from tf_simclr.errors import ArgumentError
from tf_simclr.presets import registry as registry_lib
from tf_simclr.presets.registry import Preset

BUCKET = "simclr-checkpoints-tf2"
DEFAULT_ROOT = f"https://storage.googleapis.com/{BUCKET}"
ROOT_VARIABLE = "TF_SIMCLR_MODEL_ROOT"
CACHE_VARIABLE = "TF_SIMCLR_CACHE"
MIRROR_HINT = (
    f"to use a mirror or a local copy, set {ROOT_VARIABLE} to a folder or URL with the "
    f"bucket's layout (<root>/simclrv2/pretrained/r50_1x_sk1/saved_model/...)"
)
_CHUNK = 1 << 20
_FINAL_HTTP = {401, 403, 404, 410}
# Network failures after which the same request may succeed.
_TRANSIENT = (
    urllib.error.URLError,
    http.client.HTTPException,  # IncompleteRead, RemoteDisconnected, BadStatusLine
    ConnectionError,
    TimeoutError,
)


class DownloadError(ArgumentError):
    """A file could not be fetched; the message is one line."""


class _Incomplete(Exception):
    """The connection ended before the announced size (transient: resume)."""


def model_root() -> str:
    """The root published models are fetched from (`$TF_SIMCLR_MODEL_ROOT` or the bucket)."""
    return os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT


def cache_dir() -> str:
    """The cache: `$TF_SIMCLR_CACHE`, `$XDG_CACHE_HOME/tf_simclr` or `~/.cache/tf_simclr`."""
    if os.environ.get(CACHE_VARIABLE):
        return os.path.expanduser(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tf_simclr")


def join(root: str, relative: str) -> str:
    """`root/relative` for a folder, an http(s) URL or a gs:// location."""
    if "://" in root:
        return root.rstrip("/") + "/" + urllib.parse.quote(relative.strip("/"))
    return os.path.join(os.path.expanduser(root), *relative.strip("/").split("/"))


class Progress:
    """A one-line progress bar on stderr (size, speed), drawn only on a terminal."""

    def __init__(self, label: str, total: int | None, enabled: bool | None = None):
        self.label = label
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.began = time.monotonic()
        self.done = 0
        self._drawn = 0.0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < 0.2):
            return
        self._drawn = now
        speed = done / max(now - self.began, 1e-6)
        size = f"{done / 1e6:.1f}" + (f"/{self.total / 1e6:.1f}" if self.total else "")
        percent = f" {100 * done / self.total:3.0f}%" if self.total else ""
        sys.stderr.write(f"\r{self.label}: {size} MB{percent} {speed / 1e6:.1f} MB/s   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self.done, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


def _content_range(value: str | None) -> tuple[int, int | None]:
    """`(first byte, total size or None)` of a `Content-Range: bytes a-b/total` header."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not m:
        raise _Incomplete(f"unreadable Content-Range {value!r}")
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))


def _http_attempt(url: str, part: str, timeout: float, progress: Progress) -> None:
    """One request for the bytes of `url` that `part` lacks; appends them to `part`.

    Raises `_Incomplete` (or a network error) when the transfer stops short, HTTPError for
    an error status."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # we hold more than the file: start again
            os.remove(part)
            raise _Incomplete("range not satisfiable") from None
        raise
    with response:
        if response.status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != have:
                os.remove(part)
                raise _Incomplete(f"the server resumed at byte {first}, not {have}")
        else:  # a full answer (the server ignored Range, or none was sent)
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        progress.total = total
        with open(part, "ab" if have else "wb") as f:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                have += len(chunk)
                progress.update(have)
    if total is not None and have != total:
        raise _Incomplete(f"{have} of {total} bytes")


def fetch_url(
    url: str,
    dest: str,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool | None = None,
    label: str | None = None,
) -> int:
    """Downloads `url` to `dest` (written as `dest.part`, renamed when complete); returns
    its size. Resumes, retries and checks the size as the module docstring says.

    Raises:
      DownloadError: a final HTTP status (401, 403, 404, 410), or `retries` consecutive
        failed attempts; `dest.part` is removed.
    """
    part = dest + ".part"
    bar = Progress(label or os.path.basename(dest), None, progress)
    failures, last_error = 0, ""
    try:
        while True:
            before = os.path.getsize(part) if os.path.exists(part) else 0
            try:
                _http_attempt(url, part, timeout, bar)
                os.replace(part, dest)
                return os.path.getsize(dest)
            except urllib.error.HTTPError as e:
                if e.code in _FINAL_HTTP:
                    raise DownloadError(
                        "url", f"HTTP {e.code} {e.reason}; {MIRROR_HINT}", url
                    ) from None
                if e.code < 500 and e.code != 429:
                    raise DownloadError("url", f"HTTP {e.code} {e.reason}", url) from None
                last_error = f"HTTP {e.code} {e.reason}"
            except (_Incomplete, *_TRANSIENT) as e:
                last_error = " ".join(f"{type(e).__name__}: {e}".split())
            after = os.path.getsize(part) if os.path.exists(part) else 0
            failures = 1 if after > before else failures + 1
            if failures > retries:
                raise DownloadError(
                    "url",
                    f"transfer failed {failures} times in a row ({last_error}) after "
                    f"{after} bytes; nothing was kept in the cache",
                    url,
                )
            time.sleep(backoff * 2 ** (failures - 1))
    finally:
        bar.close()
        if os.path.exists(part):
            os.remove(part)


def _copy_file(source: str, dest: str) -> int:
    """Copies a local or gs:// file to `dest` (through `dest.part`); returns its size."""
    part = dest + ".part"
    try:
        if "://" in source:
            import tensorflow as tf  # gs:// and other TensorFlow file systems

            if not tf.io.gfile.exists(source):
                raise DownloadError("url", f"not found; {MIRROR_HINT}", source)
            tf.io.gfile.copy(source, part, overwrite=True)
            expected = tf.io.gfile.stat(source).length
        else:
            if not os.path.isfile(source):
                raise DownloadError("path", f"not found; {MIRROR_HINT}", source)
            shutil.copyfile(source, part)
            expected = os.path.getsize(source)
        if os.path.getsize(part) != expected:
            raise DownloadError("path", f"copied {os.path.getsize(part)} of {expected} bytes")
        os.replace(part, dest)
        return expected
    finally:
        if os.path.exists(part):
            os.remove(part)


def fetch_tree(
    root: str,
    relative: str,
    files: Sequence[str],
    dest: str,
    cache: str | None = None,
    **http_options,
) -> str:
    """Fetches `root/relative/<file>` for each of `files` into the directory `dest`,
    atomically: `dest` appears, complete, or not at all. Returns `dest`.

    `http_options` go to `fetch_url` (retries, backoff, timeout, progress)."""
    cache = cache or cache_dir()
    scratch = os.path.join(cache, "tmp")
    os.makedirs(scratch, exist_ok=True)
    work = tempfile.mkdtemp(prefix="download-", dir=scratch)
    try:
        for name in files:
            source = join(root, f"{relative}/{name}")
            target = os.path.join(work, *name.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if source.startswith(("http://", "https://")):
                fetch_url(source, target, label=f"{relative}/{name}", **http_options)
            else:
                _copy_file(source, target)
        move_into_cache(work, dest)
        return dest
    finally:
        if os.path.exists(work):
            shutil.rmtree(work)


def move_into_cache(staged: str, dest: str) -> None:
    """Renames the complete directory `staged` to `dest` in the cache, atomically; a `dest`
    another process has just put there is kept (the same model, complete too)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    try:
        os.replace(staged, dest)
    except OSError:
        if not os.path.isdir(dest):
            raise


def paths(preset: Preset, cache: str | None = None) -> tuple[str, str]:
    """`(downloads dir, model_dir)` of `preset` in the cache."""
    cache = cache or cache_dir()
    parts = preset.location.split("/")
    return os.path.join(cache, "downloads", *parts), os.path.join(cache, "models", *parts)


def download_preset(
    name: str,
    root: str | None = None,
    cache: str | None = None,
    registry: Mapping[str, Preset] | None = None,
    **http_options,
) -> str:
    """The directory holding the published files of preset `name` (its `saved_model/`),
    fetched from `root` (default `model_root()`) unless already in the cache."""
    preset = registry_lib.get(name, registry)
    target, _ = paths(preset, cache)
    if os.path.isdir(target):
        return target
    root = root or model_root()
    logging.info("Downloading %s from %s", preset.name, join(root, preset.location))
    try:
        return fetch_tree(root, preset.location, preset.files, target, cache, **http_options)
    except DownloadError as e:
        raise DownloadError("name", f"{e}", preset.name) from None
