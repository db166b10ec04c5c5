"""Noise models: realised rates, transition matrices, determinism, label files and noisy_labels.npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from student_training import list_noise_types, load_noise_file, load_noisy_labels, make_noisy_labels
from student_training import save_noisy_labels
from student_training.data import CIFAR100_COARSE_OF_FINE
from student_training.noise import CIFAR10_ASYMMETRIC_MAP, transition_matrix

N = 20000


def _clean(num_classes: int, count: int = N, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, num_classes, count))


def _noisy(noise_type: str, rate: float, num_classes: int = 10, seed: int = 0, dataset: str | None = None):
    return make_noisy_labels(_clean(num_classes), noise_type=noise_type, rate=rate, num_classes=num_classes,
                             seed=seed, dataset=dataset)


def test_noise_types_are_listed():
    assert list_noise_types() == ["asymmetric", "pairflip", "symmetric", "uniform"]


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.45, 0.8, 1.0])
def test_symmetric_rate_is_exact(rate):
    result = _noisy("symmetric", rate)
    changed = int((result.noisy_labels != result.clean_labels).sum())
    assert changed == round(rate * N)
    assert result.noise_rate == changed / N


def test_symmetric_flips_spread_uniformly_over_other_classes():
    result = _noisy("symmetric", 0.8)
    matrix = result.transition_matrix.numpy()
    off_diagonal = matrix[~np.eye(10, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, 0.8 / 9, atol=0.02)
    np.testing.assert_allclose(np.diag(matrix), 0.2, atol=0.03)


@pytest.mark.parametrize(("rate", "num_classes"), [(0.2, 10), (0.8, 10), (0.5, 100)])
def test_uniform_rate_is_r_times_one_minus_one_over_c(rate, num_classes):
    result = _noisy("uniform", rate, num_classes)
    expected = rate * (1 - 1 / num_classes)
    assert abs(result.noise_rate - expected) < 4 * np.sqrt(expected * (1 - expected) / N)


def test_pairflip_moves_to_the_next_class_only():
    result = _noisy("pairflip", 0.45)
    clean, noisy = result.clean_labels, result.noisy_labels
    assert torch.all((noisy == clean) | (noisy == (clean + 1) % 10))
    np.testing.assert_allclose(result.noise_rate, 0.45, atol=1e-3)


def test_asymmetric_cifar10_follows_the_class_map():
    result = _noisy("asymmetric", 0.4, dataset="cifar10")
    clean, noisy = result.clean_labels.numpy(), result.noisy_labels.numpy()
    flipped = noisy != clean
    expected_target = np.array([CIFAR10_ASYMMETRIC_MAP.get(c, -1) for c in clean[flipped]])
    np.testing.assert_array_equal(noisy[flipped], expected_target)
    untouched = ~np.isin(clean, list(CIFAR10_ASYMMETRIC_MAP))
    assert not flipped[untouched].any()
    for source, target in CIFAR10_ASYMMETRIC_MAP.items():
        np.testing.assert_allclose(result.transition_matrix[source, target].item(), 0.4, atol=1e-3)


def test_asymmetric_cifar100_stays_within_superclasses():
    result = _noisy("asymmetric", 0.3, num_classes=100, dataset="cifar100")
    coarse = np.asarray(CIFAR100_COARSE_OF_FINE)
    clean, noisy = result.clean_labels.numpy(), result.noisy_labels.numpy()
    flipped = noisy != clean
    np.testing.assert_array_equal(coarse[noisy], coarse[clean])
    np.testing.assert_allclose(flipped.mean(), 0.3, atol=0.01)
    assert np.bincount(coarse).tolist() == [5] * 20


@pytest.mark.parametrize("noise_type", ["symmetric", "uniform", "pairflip", "asymmetric"])
def test_transition_matrix_is_the_realised_row_stochastic_matrix(noise_type):
    result = _noisy(noise_type, 0.35, dataset="cifar10")
    matrix = result.transition_matrix.numpy()
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert (matrix >= 0).all()
    clean, noisy = result.clean_labels.numpy(), result.noisy_labels.numpy()
    for cls in (0, 3):
        np.testing.assert_allclose(matrix[cls], np.bincount(noisy[clean == cls], minlength=10) / (clean == cls).sum())


def test_transition_matrix_of_an_absent_class_is_identity():
    matrix = transition_matrix(np.array([0, 1]), np.array([0, 0]), 3)
    np.testing.assert_allclose(matrix, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]])


@pytest.mark.parametrize("noise_type", ["symmetric", "uniform", "pairflip", "asymmetric"])
def test_same_seed_same_labels(noise_type):
    first = _noisy(noise_type, 0.4, seed=5, dataset="cifar10")
    again = _noisy(noise_type, 0.4, seed=5, dataset="cifar10")
    other = _noisy(noise_type, 0.4, seed=6, dataset="cifar10")
    torch.testing.assert_close(first.noisy_labels, again.noisy_labels)
    assert not torch.equal(first.noisy_labels, other.noisy_labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 1.5}, r"noise rate must be in \[0, 1\], got 1.5"),
        ({"rate": -0.1}, r"noise rate must be in \[0, 1\], got -0.1"),
        ({"rate": float("nan")}, "got nan"),
        ({"noise_type": "gaussian"}, "unknown noise type 'gaussian'; choose one of: asymmetric, pairflip"),
        ({"noise_type": "asymmetric", "dataset": "digits"}, "asymmetric noise is defined for cifar10 and cifar100"),
        ({"num_classes": 5}, r"clean labels must be in \[0, 5\), found"),
    ],
)
def test_bad_noise_arguments(kwargs, message):
    arguments = {"noise_type": "symmetric", "rate": 0.2, "num_classes": 10, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        make_noisy_labels(_clean(10, 100), **arguments)
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------- noisy_labels.npz


def test_save_and_load_noisy_labels_round_trip(tmp_path):
    result = _noisy("uniform", 0.4, seed=2)
    path = save_noisy_labels(tmp_path / "run" / "noisy_labels.npz", result)
    assert sorted(p.name for p in path.parent.iterdir()) == ["noisy_labels.npz"]
    with np.load(path, allow_pickle=False) as bundle:
        assert {"noisy_labels", "clean_labels", "transition_matrix", "noise_rate"} <= set(bundle.files)
        np.testing.assert_array_equal(bundle["noisy_labels"], result.noisy_labels.numpy())
        np.testing.assert_allclose(float(bundle["noise_rate"]), result.noise_rate)
        assert str(bundle["noise_type"]) == "uniform"
    loaded = load_noisy_labels(path)
    torch.testing.assert_close(loaded.transition_matrix, result.transition_matrix)
    assert (loaded.noise_type, loaded.seed, loaded.nominal_rate) == ("uniform", 2, 0.4)
    assert "realised rate" in result.summary()


# ------------------------------------------------------------------------------------ label files


@pytest.fixture
def clean_and_noisy():
    result = _noisy("symmetric", 0.3, seed=1)
    return result.clean_labels, result.noisy_labels


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_numpy_noise_files(tmp_path, clean_and_noisy, suffix):
    clean, noisy = clean_and_noisy
    path = tmp_path / f"labels{suffix}"
    if suffix == ".npy":
        np.save(path, noisy.numpy())
    else:
        np.savez(path, noisy_labels=noisy.numpy(), clean_labels=clean.numpy())
    result = load_noise_file(path, clean, 10)
    torch.testing.assert_close(result.noisy_labels, noisy)
    np.testing.assert_allclose(result.noise_rate, 0.3)
    assert result.noise_type == "file"


def test_cifar10n_style_pt_file_with_a_chosen_key(tmp_path, clean_and_noisy):
    clean, noisy = clean_and_noisy
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": clean.numpy(), "worse_label": noisy.numpy(), "aggre_label": clean.numpy(),
                "random_label1": noisy.numpy()}, path)
    torch.testing.assert_close(load_noise_file(f"{path}:worse_label", clean, 10).noisy_labels, noisy)
    assert load_noise_file(path, clean, 10, key="aggre_label").noise_rate == 0.0
    with pytest.raises(ValueError, match="several label arrays .*worse_label.*FILE:KEY, e.g. --noise-file .*:aggre"):
        load_noise_file(path, clean, 10)


def test_cifar100n_style_default_key_and_subset_indices(tmp_path):
    clean = _clean(100, 500)
    noisy = (clean + 1) % 100
    path = tmp_path / "CIFAR-100_human.pt"
    torch.save({"clean_label": clean.numpy(), "noisy_label": noisy.numpy()}, path)
    indices = torch.tensor([4, 0, 99])
    result = load_noise_file(path, clean[indices], 100, indices=indices)
    torch.testing.assert_close(result.noisy_labels, noisy[indices])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros(N - 1, dtype=np.int64), rf"holds {N - 1} labels, the training set has {N}"),
        (np.full(N, 10), r"must be in \[0, 10\), found 10"),
        (np.full(N, 0.5), "must be integers"),
    ],
)
def test_bad_noise_files(tmp_path, clean_and_noisy, labels, message):
    np.save(tmp_path / "bad.npy", labels)
    with pytest.raises(ValueError, match=message):
        load_noise_file(tmp_path / "bad.npy", clean_and_noisy[0], 10)


@pytest.mark.parametrize("name, message", [("n.npy", r"is not an .npy file \(np.save writes one\)"),
                                           ("n.npz", r"is not an .npz archive \(np.savez writes one\)")])
def test_a_noise_file_that_is_not_the_numpy_format_its_suffix_says_is_named_as_such(tmp_path, clean_and_noisy,
                                                                                     name, message):
    (tmp_path / name).write_text("3,1,4,1,5\n")  # numpy would refuse it as pickled data
    with pytest.raises(ValueError, match=f"noise file .*{name} {message}"):
        load_noise_file(tmp_path / name, clean_and_noisy[0], 10)
    np.savez(tmp_path / "a.npz", labels=clean_and_noisy[1].numpy())
    (tmp_path / "a.npz").rename(tmp_path / "a.npy")  # an .npz archive named .npy
    with pytest.raises(ValueError, match=r"is not an .npy file"):
        load_noise_file(tmp_path / "a.npy", clean_and_noisy[0], 10)


def test_noise_file_from_another_data_set_is_refused(tmp_path, clean_and_noisy):
    clean, noisy = clean_and_noisy
    torch.save({"clean_label": noisy.numpy(), "worse_label": noisy.numpy()}, tmp_path / "n.pt")
    with pytest.raises(ValueError, match="clean_label disagree with the data set's at"):
        load_noise_file(tmp_path / "n.pt", clean, 10, key="worse_label")


def test_unknown_key_and_suffix(tmp_path, clean_and_noisy):
    clean, noisy = clean_and_noisy
    np.savez(tmp_path / "n.npz", a=noisy.numpy())
    with pytest.raises(ValueError, match="has no key 'b'; keys: a"):
        load_noise_file(f"{tmp_path / 'n.npz'}:b", clean, 10)
    (tmp_path / "n.csv").write_text("1,2")
    with pytest.raises(ValueError, match="must end in .npy, .npz or .pt"):
        load_noise_file(tmp_path / "n.csv", clean, 10)
