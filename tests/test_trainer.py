"""The MentorNet trainer: the 2018 recipe's constants and reader, the objective choice, rebalancing,
determinism, and that short fits learn."""

import pytest
import torch

from curricula import get_curriculum
from curricula.targets import curriculum_targets
from mentor_training.trainer import (RECIPES, _random_batches, _sequential_batches, fit_mentornet, get_recipe,
                                     objective_for, target_strata)


def test_paper_recipe_constants():
    paper = RECIPES["paper"]
    assert (paper.steps, paper.batch_size, paper.learning_rate, paper.clip_norm) == (30_000, 32, 0.1, 5.0)
    assert paper.sampling == "sequential" and paper.schedule == "staircase"
    assert paper.learning_rate_at(0) == 0.1
    assert paper.learning_rate_at(999) == 0.1
    assert paper.learning_rate_at(1000) == pytest.approx(0.09)
    assert paper.learning_rate_at(29_999) == pytest.approx(0.1 * 0.9 ** 29)


def test_fast_recipe_is_cosine_and_overridable():
    fast = get_recipe("fast", steps=100)
    assert fast.steps == 100
    assert fast.learning_rate_at(fast.warmup_steps) == pytest.approx(fast.learning_rate)
    assert fast.learning_rate_at(99) < 0.01 * fast.learning_rate
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("slow")


def test_2018_reader_walks_in_order_drops_the_remainder_then_reshuffles():
    batches = _sequential_batches(10, 3, torch.Generator().manual_seed(0))
    first = [next(batches).tolist() for _ in range(3)]
    assert first == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # row 9 is dropped this pass
    second = torch.cat([next(batches) for _ in range(3)])
    assert len(set(second.tolist())) == 9 and second.tolist() != list(range(9))


def test_strata_give_equal_shares_per_batch():
    targets = torch.tensor([0.0] * 90 + [1.0] * 9 + [0.5])
    strata = target_strata(targets)
    assert [len(s) for s in strata] == [90, 9, 1]
    batch = next(_random_batches(strata, 30, torch.Generator().manual_seed(0)))
    values = targets[batch]
    assert int((values == 0).sum()) == 10 and int((values == 1).sum()) == 10 and int((values == 0.5).sum()) == 10


def test_objective_is_bce_only_for_exactly_binary_targets():
    assert objective_for(curriculum_targets(get_curriculum("self_paced"), sample_size=1000).train) == "bce"
    assert objective_for(curriculum_targets(get_curriculum("baseline"), sample_size=1000).train) == "mse"
    assert objective_for(curriculum_targets(get_curriculum("focal_loss"), sample_size=1000).train) == "mse"


@pytest.fixture(scope="module")
def self_paced_split():
    return curriculum_targets(get_curriculum("self_paced"), sample_size=20_000, seed=0)


def test_short_fit_learns_self_paced(self_paced_split):
    result = fit_mentornet(self_paced_split, recipe="fast", steps=300, seed=0)
    assert result.metrics["test"]["binary_accuracy"] > 0.97
    assert result.metrics["test"]["objective"] == "bce"
    assert not any(p.requires_grad for p in result.model.parameters())


def test_fits_are_deterministic_for_a_seed(self_paced_split):
    a = fit_mentornet(self_paced_split, recipe="fast", steps=30, seed=5).model.state_dict()
    b = fit_mentornet(self_paced_split, recipe="fast", steps=30, seed=5).model.state_dict()
    c = fit_mentornet(self_paced_split, recipe="fast", steps=30, seed=6).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1_weight"], c["fc1_weight"])


def test_paper_recipe_runs_its_reader(self_paced_split):
    result = fit_mentornet(self_paced_split, recipe="paper", steps=200, seed=0)
    assert result.recipe.batch_size == 32 and result.metrics["recipe"]["sampling"] == "sequential"
    assert result.metrics["test"]["mae"] < 0.5


def test_continuing_from_a_model_keeps_its_frozen_epoch_embedding(self_paced_split):
    first = fit_mentornet(self_paced_split, steps=20, seed=1).model
    second = fit_mentornet(self_paced_split, steps=20, seed=2, init=first).model
    assert torch.equal(first.epoch_embedding, second.epoch_embedding)
    assert not torch.equal(first.fc1_weight, second.fc1_weight)


def test_gradient_clipping_bounds_the_global_norm(self_paced_split, monkeypatch):
    norms = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, **kwargs):
        parameters = list(parameters)
        original(parameters, max_norm, **kwargs)
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters]))))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    fit_mentornet(self_paced_split, recipe="paper", steps=20, seed=0)
    assert len(norms) == 20 and max(norms) <= 5.0 + 1e-4


def test_bad_balance_is_refused(self_paced_split):
    with pytest.raises(ValueError, match="unknown balance"):
        fit_mentornet(self_paced_split, steps=1, balance="weighted")
