"""Target sets: the 2018 grid (spec §2.2) and data-driven sets from a dump (spec §2.3)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from curricula import get_curriculum
from curricula.targets import (GRID_SIZE, curriculum_targets, data_driven_targets, read_dump, seed_grid,
                               split_indices)


def test_seed_grid_is_the_2018_cartesian_product():
    grid = seed_grid()
    assert len(grid) == GRID_SIZE == 1_200_000
    losses = torch.unique(grid.loss)
    assert len(losses) == 120 and float(losses.min()) == 0.0 and float(losses.max()) == 29.0
    assert_allclose(losses[100:].numpy(), np.arange(10, 30))
    diffs = torch.unique(grid.loss_diff)
    assert len(diffs) == 100 and float(diffs.min()) == -5.0
    assert_allclose(diffs.numpy(), np.arange(-5, 5, 0.1).astype(np.float32))
    assert torch.equal(torch.unique(grid.epoch), torch.arange(100))
    assert int(grid.label.abs().sum()) == 0


def test_split_keeps_every_row_exactly_once():
    train, test = split_indices(100_000, seed=3)
    assert len(train) == 80_000 and len(test) == 20_000  # 2018 dropped one row: 19,999
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(100_000))


def test_curriculum_targets_are_seeded_and_labelled_by_the_curriculum():
    curriculum = get_curriculum("spcl_linear")
    a = curriculum_targets(curriculum, sample_size=5000, seed=1)
    b = curriculum_targets(curriculum, sample_size=5000, seed=1)
    c = curriculum_targets(curriculum, sample_size=5000, seed=2)
    assert len(a.train) == 4000 and len(a.test) == 1000
    assert torch.equal(a.train.targets, b.train.targets) and torch.equal(a.test.features.loss, b.test.features.loss)
    assert not torch.equal(a.train.features.loss, c.train.features.loss)
    assert torch.equal(a.train.targets, curriculum.weight(a.train.features))
    assert a.source == {"type": "curriculum", "name": "spcl_linear", "params": {"gamma": 1.0},
                        "sample_size": 5000, "train_fraction": 0.8, "seed": 1}
    with pytest.raises(ValueError, match="sample size"):
        curriculum_targets(curriculum, sample_size=GRID_SIZE + 1)


def test_binary_detection_drives_the_objective():
    assert curriculum_targets(get_curriculum("self_paced"), sample_size=2000).train.is_binary
    assert not curriculum_targets(get_curriculum("baseline"), sample_size=2000).train.is_binary  # all ones
    assert not curriculum_targets(get_curriculum("mentornet_pd"), sample_size=20000).train.is_binary


SPACE_DUMP = "262 18 9 9 0.003101\n47108 18 6 1 19.554157\n5 18 3 3 0.5\n6 18 2 7 4.0\n"


def test_read_space_separated_2018_dump(tmp_path):
    path = tmp_path / "dump.txt"
    path.write_text(SPACE_DUMP)
    dump = read_dump(path)
    assert dump.sample_id.tolist() == [262, 47108, 5, 6]
    assert dump.noisy_label.tolist() == [9, 6, 3, 2] and dump.clean_label.tolist() == [9, 1, 3, 7]
    assert_allclose(dump.loss, [0.003101, 19.554157, 0.5, 4.0])
    assert dump.duplicates_dropped == 0 and len(dump.sha256) == 64


def test_read_csv_dump_with_header_and_duplicates_keep_the_last_line(tmp_path):
    path = tmp_path / "dump.csv"
    path.write_text("sample_id,epoch,noisy_label,clean_label,loss\n1,18,2,2,0.1\n2,18,3,4,2.0\n1,19,5,2,3.0\n")
    dump = read_dump(path)
    assert dump.sample_id.tolist() == [1, 2]
    assert dump.epoch.tolist() == [19, 18] and dump.noisy_label.tolist() == [5, 3]
    assert dump.duplicates_dropped == 1


@pytest.mark.parametrize("text, message", [
    ("1 18 2 2 0.1\n2 18 3 4\n", "line 2: expected 5 fields"),
    ("1 18 2 2 0.1\n2 18 x 4 1.0\n", "line 2: fields must be numbers"),
    ("1 18 2 2 0.1\n\n3 18 2.5 4 1.0\n", "line 3: id, epoch and labels must be integers"),
    ("1 18 2 2 -1\n", "line 1: loss must be finite"),
    ("1 18 2 2 nan\n", "line 1: loss must be finite"),
    ("sample_id,epoch,label,clean,loss\n1,2,3,4,5\n", "line 1: a CSV dump needs the header"),
    ("sample_id,epoch,noisy_label,clean_label,loss\n1,2,3,4\n", "line 2: expected 5 fields"),
    ("", "is empty"),
])
def test_malformed_dump_names_the_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_dump(path)


def test_data_driven_targets_follow_spec_2_3(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    clean = rng.integers(0, 10, n)
    noisy = np.where(rng.random(n) < 0.3, (clean + 1) % 10, clean)
    loss = np.where(noisy == clean, rng.uniform(0, 1, n), rng.uniform(1, 5, n))
    lines = [f"{i} 18 {noisy[i]} {clean[i]} {loss[i]:.6f}" for i in range(n)]
    path = tmp_path / "dump.txt"
    path.write_text("\n".join(lines) + "\n")
    dump = read_dump(path)
    split = data_driven_targets(dump, 0.9, seed=0)
    threshold = np.percentile(dump.loss, 90)  # the 90th percentile is 0.9 on the toolkit's one scale
    assert split.source["loss_threshold"] == pytest.approx(threshold)
    assert len(split.train) == 320 and len(split.test) == 80
    rows = torch.cat([split.train.features.loss, split.test.features.loss])
    diffs = torch.cat([split.train.features.loss_diff, split.test.features.loss_diff])
    assert_allclose(diffs.numpy(), (rows.double() - threshold).numpy(), atol=1e-5)
    targets = torch.cat([split.train.targets, split.test.targets])
    assert float(targets.sum()) == float((noisy == clean).sum())
    assert split.train.is_binary
    assert int(split.train.features.label.abs().sum()) == 0


def test_dump_without_a_clean_noisy_mixture_is_refused(tmp_path):
    path = tmp_path / "clean.txt"
    path.write_text("1 18 2 2 0.1\n2 18 3 3 0.2\n3 18 4 4 0.3\n")
    with pytest.raises(ValueError, match="only clean samples"):
        data_driven_targets(read_dump(path), 0.9)
