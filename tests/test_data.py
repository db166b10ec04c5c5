"""Data sets: CIFAR archives round-trip, Fashion-MNIST idx files, the bundled digits, subsets, errors."""

from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import build_cifar10, build_cifar100, read_members
from student_training import data, list_datasets, load_dataset
from student_training.data import DataError, DatasetNotFoundError


def _expected_cifar10(archive: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    members = read_members(archive)
    train = [members[f"data_batch_{i}"] for i in range(1, 6)]
    images = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b[b"labels"] for b in train])
    test = members["test_batch"]
    return images, labels, test[b"data"].reshape(-1, 3, 32, 32), np.asarray(test[b"labels"])


def test_list_datasets_names_the_contract():
    assert list_datasets() == ["cifar10", "cifar100", "digits", "fashion-mnist"]


def test_cifar10_archive_round_trip(tmp_path, trust_archive):
    archive = build_cifar10(tmp_path / "cifar-10-python.tar.gz")
    trust_archive("cifar10", archive)
    dataset = load_dataset("cifar10", data_dir=tmp_path)
    images, labels, test_images, test_labels = _expected_cifar10(archive)
    np.testing.assert_array_equal(dataset.train_images.numpy(), images)
    np.testing.assert_array_equal(dataset.train_labels.numpy(), labels)
    np.testing.assert_array_equal(dataset.test_images.numpy(), test_images)
    np.testing.assert_array_equal(dataset.test_labels.numpy(), test_labels)
    assert dataset.train_images.dtype == torch.uint8 and dataset.train_labels.dtype == torch.int64
    assert (dataset.num_classes, dataset.in_channels, dataset.image_size) == (10, 3, 32)
    assert dataset.class_names[9] == "truck"


def test_cifar10_pixel_layout_is_rgb_planes(tmp_path, trust_archive):
    """Row-major R, then G, then B planes: byte 1024 is the first green pixel."""
    archive = build_cifar10(tmp_path / "cifar-10-python.tar.gz")
    trust_archive("cifar10", archive)
    first = read_members(archive)["data_batch_1"][b"data"][0]
    image = load_dataset("cifar10", data_dir=tmp_path).train_images[0]
    assert int(image[1, 0, 0]) == first[1024] and int(image[2, 31, 31]) == first[3071]
    assert int(image[0, 1, 2]) == first[32 + 2]


def test_cifar10_extracted_folder_loads_without_md5(tmp_path):
    archive = build_cifar10(tmp_path / "cifar-10-python.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    dataset = load_dataset("cifar10", data_dir=tmp_path / "extracted")
    np.testing.assert_array_equal(dataset.train_images.numpy(), _expected_cifar10(archive)[0])


def test_cifar100_archive_uses_fine_labels(tmp_path, trust_archive):
    archive = build_cifar100(tmp_path / "cifar-100-python.tar.gz")
    trust_archive("cifar100", archive)
    dataset = load_dataset("cifar100", data_dir=tmp_path)
    members = read_members(archive)
    np.testing.assert_array_equal(dataset.train_labels.numpy(), members["train"][b"fine_labels"])
    np.testing.assert_array_equal(dataset.test_images.numpy(), members["test"][b"data"].reshape(-1, 3, 32, 32))
    assert dataset.num_classes == 100 and dataset.class_names[3] == "fine3"


def test_official_md5_is_checked(tmp_path):
    build_cifar10(tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match=r"md5 .* expected c58f30108f718f92721af3b95e74349a.*cs\.toronto\.edu"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_truncated_archive_says_how_to_get_the_file(tmp_path, trust_archive):
    archive = build_cifar10(tmp_path / "cifar-10-python.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    trust_archive("cifar10", archive)
    with pytest.raises(DataError, match=r"cannot read .*download https://www\.cs\.toronto\.edu") as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_missing_archive_is_a_clear_value_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"no cifar-100-python\.tar\.gz.*download=True") as info:
        load_dataset("cifar100", data_dir=tmp_path)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)


def test_malicious_pickle_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    build_cifar10(tmp_path / "a.tar.gz")
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    (folder / "test_batch").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(DataError, match="not allowed"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_download_fetches_checks_md5_and_loads(tmp_path, monkeypatch, trust_archive):
    source = build_cifar10(tmp_path / "source.tar.gz")
    trust_archive("cifar10", source)
    calls = []
    monkeypatch.setattr(data.urllib.request, "urlretrieve",
                        lambda url, target: calls.append(url) or shutil.copy(source, target))
    dataset = load_dataset("cifar10", data_dir=tmp_path / "dl", download=True)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").is_file() and dataset.num_train == 30


def test_download_with_bad_md5_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(data.urllib.request, "urlretrieve", lambda url, target: Path(target).write_bytes(b"junk"))
    with pytest.raises(DataError, match="expected c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", data_dir=tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------- Fashion-MNIST


def _write_idx(path: Path, array: np.ndarray, *, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_tiny_idx_round_trip(tmp_path, monkeypatch, compress):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(20) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
              "t10k-labels-idx1-ubyte": np.array([3, 1, 4, 1])}
    for stem, array in arrays.items():
        _write_idx(tmp_path / (stem + (".gz" if compress else "")), array, compress=compress)
    dataset = load_dataset("fashion-mnist", data_dir=tmp_path)
    np.testing.assert_array_equal(dataset.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(dataset.test_labels.numpy(), [3, 1, 4, 1])
    assert (dataset.in_channels, dataset.image_size, dataset.num_classes) == (1, 28, 10)


def test_fashion_mnist_truncated_idx_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    for stem in data.FASHION_MNIST_FILES:
        _write_idx(tmp_path / stem, np.zeros((2, 28, 28) if "images" in stem else (2,)), compress=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist.*download=True"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


@pytest.mark.skipif(not (data.DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_real_debian_files():
    dataset = load_dataset("fashion-mnist", subset=1000, seed=3)
    assert dataset.source_indices.max() < 60000 and dataset.test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(dataset.train_labels).tolist() == [100] * 10
    assert torch.bincount(dataset.test_labels).tolist() == [1000] * 10


# ------------------------------------------------------------------------------ digits and splits


def test_bundled_digits_needs_no_download():
    dataset = load_dataset("digits")
    assert dataset.train_images.shape == (1438, 1, 8, 8) and dataset.test_images.shape == (359, 1, 8, 8)
    assert dataset.train_images.dtype == torch.uint8 and int(dataset.train_images.max()) == 255
    assert dataset.num_classes == 10 and set(dataset.train_labels.tolist()) == set(range(10))


def test_subset_is_class_balanced_and_seeded():
    first = load_dataset("digits", subset=105, seed=7)
    again = load_dataset("digits", subset=105, seed=7)
    other = load_dataset("digits", subset=105, seed=8)
    counts = torch.bincount(first.train_labels, minlength=10)
    assert first.num_train == 105 and int(counts.max() - counts.min()) <= 1
    torch.testing.assert_close(first.source_indices, again.source_indices)
    assert not torch.equal(first.source_indices, other.source_indices)
    full = load_dataset("digits")
    torch.testing.assert_close(first.train_images, full.train_images[first.source_indices])


def test_clean_subset_is_held_out_of_training():
    dataset = load_dataset("digits", clean_subset_fraction=0.1, seed=1)
    clean, train = dataset.clean_subset_indices, dataset.train_indices
    assert len(clean) == round(0.1 * dataset.num_train)
    assert not set(clean.tolist()) & set(train.tolist())
    assert sorted(clean.tolist() + train.tolist()) == list(range(dataset.num_train))
    counts = torch.bincount(dataset.train_labels[clean], minlength=10)
    assert int(counts.max() - counts.min()) <= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "mnist"}, r"unknown data set 'mnist'; choose one of: cifar10, cifar100, digits, fashion-mnist"),
        ({"name": "digits", "subset": 0}, "subset must be a positive integer, got 0"),
        ({"name": "digits", "subset": 10**6}, "subset 1000000 is larger than the 1438 training images"),
        ({"name": "digits", "clean_subset_fraction": 1.0}, r"clean subset fraction must be in \[0, 1\), got 1.0"),
        ({"name": "digits", "clean_subset_fraction": -0.1}, r"must be in \[0, 1\), got -0.1"),
    ],
)
def test_bad_input_is_a_one_line_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        load_dataset(**kwargs)
    assert "\n" not in str(info.value)
