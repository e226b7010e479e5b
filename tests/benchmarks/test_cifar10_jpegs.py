"""benchmarks/cifar10_jpegs.py: `find_cifar10` from a folder, from the archive, from the cache."""

import pytest


@pytest.fixture(scope="module")
def bench(import_benchmark):
    return import_benchmark("cifar10_jpegs")


def test_find_cifar10(bench, tmp_path, monkeypatch):
    import tarfile

    folder = tmp_path / "given"
    (folder / "train" / "cat").mkdir(parents=True)
    assert bench.find_cifar10(str(folder)) == str(folder)
    with pytest.raises(SystemExit, match="holds no train/ folder"):
        bench.find_cifar10(str(tmp_path / "empty"))

    cache = tmp_path / "cache" / "cifar10_jpg"
    monkeypatch.setattr(bench, "CIFAR_CACHE", str(cache))
    monkeypatch.setattr(bench, "CIFAR_ARCHIVE", str(tmp_path / "missing.tar.gz"))
    assert bench.find_cifar10() is None
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "train", arcname="train")
    monkeypatch.setattr(bench, "CIFAR_ARCHIVE", str(archive))
    assert bench.find_cifar10() == str(cache) and (cache / "train" / "cat").is_dir()
    archive.unlink()  # extracted once: later calls reuse the cache
    assert bench.find_cifar10() == str(cache)
