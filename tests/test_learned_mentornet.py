"""train-student --mentornet learn (paper Algorithm 1 in one command), --train-on and --clean-subset-file: the
clean subset's split, the fits and their files, resume across fits, the user's own clean subset, and bad input."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import cli
from curricula.features import MentorFeatures
from mentor_training.model import MentorNet, MentorNetConfig
from mentor_training.pretrained import load_mentornet
from student_training.config import RELABEL_CONFIDENCE_DEFAULT, THRESHOLD_FALLBACK_DEFAULT, StudentConfig
from student_training.data import load_dataset
from student_training.learned_mentornet import LEARN_COLUMNS, Refurbishment, TrustedStream, fit_threshold, \
    precision_threshold, prior_threshold, probe_transition, split_clean_subset
from student_training.loader import DeviceLoader, crop_flip
from student_training.trainer import prepare_run, train
from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
KILL_PLUGIN = str(ROOT / "tests" / "fault_injection.py")
QUICK = ["--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--batch-size", "64"]
DEFAULT_LEARN_EPOCHS = next(f.default for f in dataclasses.fields(StudentConfig) if f.name == "learn_epochs")
LEARN = [*QUICK, "--clean-subset-fraction", "0.3", "--mentornet", "learn", "--learn-epochs", "20,40,60"]


def invoke(*args):
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "cli.py", "--plugin", KILL_PLUGIN, "train-student", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def config(**changes) -> StudentConfig:
    values = dict(dataset="digits", studentnet="mlp", noise=0.4, batch_size=64, epochs=4, clean_subset_fraction=0.3,
                  mentornet="learn", learn_epochs="20,40,60", record_samples=False)
    return StudentConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("learned") / "run"
    result = invoke("train-student", *LEARN, "--epochs", "4", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, result.output


def test_the_clean_subset_splits_into_disjoint_balanced_parts():
    labels = torch.arange(10).repeat(30)  # 300 samples, 30 per class
    indices = torch.arange(1000, 1300)
    parts = split_clean_subset(indices, labels, probe_fraction=0.5, validation=True, seed=0)
    every = torch.cat([parts.validation, parts.probe, parts.trusted])
    assert len(every) == 300 and len(set(every.tolist())) == 300 and set(every.tolist()) == set(indices.tolist())
    assert len(parts.validation) == 60 and len(parts.probe) == 120 and len(parts.trusted) == 120
    for part in (parts.validation, parts.probe):
        assert set(np.bincount(labels[part - 1000].numpy(), minlength=10)) == {len(part) // 10}
    again = split_clean_subset(indices, labels, probe_fraction=0.5, validation=True, seed=0)
    assert torch.equal(again.probe, parts.probe)
    without = split_clean_subset(indices, labels, probe_fraction=None, validation=False, seed=0)
    assert len(without.validation) == 0 and len(without.probe) == 0 and len(without.trusted) == 300


def test_the_precision_threshold_is_the_lowest_output_whose_selection_is_clean_enough():
    v = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    clean = torch.tensor([True, True, True, False, True, False, False])
    assert precision_threshold(v, clean, 0.99) == pytest.approx(0.7)  # the top three are clean, the fourth is not
    assert precision_threshold(v, clean, 0.8) == pytest.approx(0.5)  # 4 of the top 5: 0.8
    assert precision_threshold(v, clean, 0.6) == pytest.approx(0.4)  # 4 of 6; all 7 hold 4 of 7 = 0.57
    assert precision_threshold(v, clean, 0.5) == pytest.approx(0.3)
    assert precision_threshold(v[3:], clean[3:], 0.9) == float("inf")  # the top row is corrupted: nothing qualifies
    # a threshold selects every row tied with it: a tie of a clean and a corrupted row counts as both
    tied = torch.tensor([0.9, 0.7, 0.7, 0.1])
    assert precision_threshold(tied, torch.tensor([True, True, False, True]), 0.9) == pytest.approx(0.9)
    assert precision_threshold(tied, torch.tensor([True, True, False, True]), 0.6) == pytest.approx(0.1)
    # the rows' order does not matter
    order = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    assert precision_threshold(v[order], clean[order], 0.8) == pytest.approx(0.5)


def test_a_fit_whose_outputs_never_reach_the_threshold_falls_back_to_a_probe_precision_of_it():
    v = torch.tensor([0.6, 0.5, 0.4, 0.3, 0.2])  # well ranked, but no output reaches 0.9
    clean = torch.tensor([True, True, False, True, False])
    assert fit_threshold(v, clean, config(learn_threshold_fallback="precision")) == (pytest.approx(0.5), "fallback")
    assert fit_threshold(v, clean, config(learn_threshold_fallback="precision", learn_threshold=0.6)) == \
        (pytest.approx(0.6), "fixed")  # a row reaches 0.6: the fixed threshold stays
    assert fit_threshold(v, clean, config(learn_threshold_fallback="none")) == (0.9, "fixed")  # nothing selected
    assert fit_threshold(v, clean, config(learn_precision=0.7, learn_threshold_fallback=THRESHOLD_FALLBACK_DEFAULT)) \
        == (pytest.approx(0.3), "precision")  # 3 of the top 4
    # no set of top-ranked rows is 90% clean (the top row is corrupted, then 2 of 3, 2 of 4...): nothing selected
    assert fit_threshold(v, ~clean, config(learn_threshold_fallback="precision")) == (float("inf"), "fallback")


def test_the_odds_prior_reads_the_threshold_at_an_even_prior():
    # Bayes in odds form: posterior odds = likelihood ratio x prior odds; tau 0.9 asks for a ratio of 9
    for share in (0.8, 0.6, 0.55):
        raised = prior_threshold(0.9, share)
        assert raised / (1 - raised) == pytest.approx(9 * share / (1 - share))
    assert prior_threshold(0.9, 0.8) == pytest.approx(36 / 37)  # 20% noise: 0.973
    assert prior_threshold(0.9, 0.5) == pytest.approx(0.9)  # an even prior: tau itself
    assert prior_threshold(0.9, 0.2) == 0.9  # never below tau
    assert prior_threshold(0.9, 1.0) == 1.0
    v = torch.tensor([0.99, 0.98, 0.95, 0.92, 0.5])
    clean = torch.tensor([True, True, True, False, True])  # 80% clean: the bar rises to 0.973
    assert fit_threshold(v, clean, config(learn_threshold_prior="odds")) == (pytest.approx(36 / 37), "odds")
    assert fit_threshold(v, clean, config()) == (0.9, "fixed")
    mostly_corrupted = torch.tensor([True, False, False, False, False])
    assert fit_threshold(v, mostly_corrupted, config(learn_threshold_prior="odds")) == (0.9, "fixed")
    # no row reaches the raised bar: the fallback works with it (the top three rows are clean, the fourth is not)
    assert fit_threshold(v - 0.05, clean, config(learn_threshold_prior="odds")) == (pytest.approx(0.90), "fallback")


def test_the_start_up_line_says_how_the_threshold_is_set():
    assert cli._learned_threshold(config()) == " at 0.9 (a fit whose outputs never reach it selects down to a probe " \
        "precision of 0.9)"
    assert cli._learned_threshold(config(learn_threshold_fallback="none")) == " at 0.9"
    odds = cli._learned_threshold(config(learn_threshold_prior="odds"))
    assert odds.startswith(" at 0.9 read at an even prior") and odds.endswith("a probe precision of its raised threshold)")
    assert cli._learned_threshold(config(learn_precision=0.95)) == " set by each fit for probe precision 0.95"
    assert cli._learned_threshold(config(learn_weights="soft")) == ""


def test_a_nan_output_is_left_out_of_the_probe_precision():
    v = torch.tensor([float("nan"), 0.8, 0.6, 0.4])  # no threshold selects the NaN row, clean or not
    assert precision_threshold(v, torch.tensor([True, True, False, True]), 0.75) == pytest.approx(0.8)  # 2 of 3: 0.67
    assert precision_threshold(v, torch.tensor([True, False, True, True]), 0.9) == float("inf")


def test_the_min_rule_lowers_every_fits_threshold_to_its_probe_precision_but_never_raises_it():
    v = torch.tensor([0.95, 0.6, 0.5, 0.4, 0.3])  # one row reaches 0.9: the fallback keeps 0.9 and selects one row
    clean = torch.tensor([True, True, True, False, True])
    assert fit_threshold(v, clean, config(learn_threshold_fallback="precision")) == (0.9, "fixed")
    assert fit_threshold(v, clean, config(learn_threshold_fallback="min")) == (pytest.approx(0.5), "fallback")
    # with no output reaching it, min lowers it as the fallback does, to nothing if no top rows are clean enough
    assert fit_threshold(v[1:], clean[1:], config(learn_threshold_fallback="min")) == (pytest.approx(0.5), "fallback")
    assert fit_threshold(v[1:], ~clean[1:], config(learn_threshold_fallback="min")) == (float("inf"), "fallback")
    # the rows at 0.9 and above are less than 90% clean: the precision threshold is inf, and 0.9 stays
    assert fit_threshold(v, ~clean, config(learn_threshold_fallback="min")) == (0.9, "fixed")
    # precision 0.55 holds only down to 0.95, above the threshold 0.55, which stays (min never raises it)
    few = torch.tensor([True, False, False, False])
    assert fit_threshold(v[:4], few, config(learn_threshold_fallback="min", learn_threshold=0.55)) == (0.55, "fixed")


def test_a_value_outside_an_options_choices_is_refused_from_a_file_or_code_too():
    with pytest.raises(ValueError, match="unknown --learn-threshold-fallback 'Precision'; choose one of: precision, min, none"):
        config(learn_threshold_fallback="Precision")
    with pytest.raises(ValueError, match="unknown --learn-weights 'bogus'; choose one of: threshold, soft"):
        config(learn_weights="bogus")


def test_an_old_learned_config_switched_to_per_fit_thresholds_drops_its_unused_fallback():
    old = config(learn_threshold_fallback="none")  # as a run folder of an earlier release reads
    assert old.with_options({"learn_precision": 0.95}).learn_threshold_fallback == THRESHOLD_FALLBACK_DEFAULT
    assert old.with_options({"learn_weights": "soft"}).learn_weights == "soft"
    assert old.with_options({"learn_threshold": 0.8}).learn_threshold_fallback == "none"  # still a fixed threshold
    odds = config(learn_threshold_prior="odds")  # likewise the prior, which also applies to a fixed threshold only
    assert odds.with_options({"learn_precision": 0.95}).learn_threshold_prior == "none"
    assert odds.with_options({"learn_threshold": 0.8}).learn_threshold_prior == "odds"


def test_a_fit_that_ranks_well_but_never_reaches_the_threshold_selects_by_the_fallback():
    from curricula.features import WeighterConfig
    from student_training.learned_mentornet import LearnedMentorWeighter

    # 200 probe images at 90% noise, over 5 epochs: 3 clean ones with the smallest losses, then 17 clean and 40
    # corrupted mixed below 0.5, and 140 corrupted above: a good ranking whose best output stays below 0.9
    n, generator = 200, torch.Generator().manual_seed(0)
    is_clean = torch.zeros(n + 5, dtype=torch.bool)
    is_clean[:20] = True
    fits = {}
    for fallback in ("precision", "none"):
        weighter = LearnedMentorWeighter(config(learn_threshold_fallback=fallback), WeighterConfig(), total_steps=1000,
                                         num_samples=n + 5, probe=torch.arange(n), is_clean=is_clean,
                                         device=torch.device("cpu"))
        generator.manual_seed(0)
        for epoch in range(5):
            loss = torch.cat([torch.rand(3, generator=generator) * 0.01,
                              0.01 + torch.rand(57, generator=generator) * 0.49,
                              0.5 + torch.rand(140, generator=generator) * 2.5])
            weighter.losses[:n, epoch], weighter.loss_diffs[:n, epoch] = loss, 0.0
        row, mentor, split = weighter.fit(5, seed=0)
        fits[fallback] = row
        weighter.use(mentor, 5)
        outside = torch.arange(n, n + 5)  # samples outside the probe, at the smallest and a large loss
        weights = weighter.mentor_weights(torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0]), 60, outside)
        assert split.source["threshold_rule"] == row["threshold_rule"] and weighter.threshold == row["threshold"]
        assert weights.tolist() == ([1.0] * 4 + [0.0] if fallback == "precision" else [0.0] * 5)
    assert fits["none"]["selected"] == 0 and fits["none"]["threshold_rule"] == "fixed"  # no output reaches 0.9
    assert fits["precision"]["threshold_rule"] == "fallback" and fits["precision"]["threshold"] < 0.9
    assert 0 < fits["precision"]["selected"] and fits["precision"]["precision"] >= 0.9
    assert fits["precision"]["fit_auc"] > 0.85


def test_each_fit_sets_its_threshold_for_the_asked_precision_and_a_fixed_one_stays(tmp_path):
    run = prepare_run(config(epochs=4, learn_precision=0.9), tmp_path / "precision")
    train(run)
    fits = pd.read_csv(tmp_path / "precision" / "relearn.csv")
    chosen = fits[fits["selected"] > 0]
    assert len(chosen) and (chosen["precision"] >= 0.9).all()
    assert run.weighter.threshold == pytest.approx(fits["threshold"].iloc[-1])
    mentor = load_mentornet(tmp_path / "precision" / fits["checkpoint"].iloc[-1])
    assert mentor.source["precision_target"] == 0.9 and mentor.source["threshold"] == pytest.approx(run.weighter.threshold)
    fixed = prepare_run(config(epochs=4, learn_threshold=0.6), tmp_path / "fixed")
    train(fixed)
    assert (pd.read_csv(tmp_path / "fixed" / "relearn.csv")["threshold"] == 0.6).all() and fixed.weighter.threshold == 0.6


def test_no_loss_above_the_largest_the_fit_selected_is_selected(tmp_path):
    run = prepare_run(config(epochs=4), tmp_path / "guard")
    train(run)
    weighter = run.weighter
    largest = weighter.max_loss
    assert weighter.mentor.max_selected_loss == largest
    assert 0 < largest < float("inf")
    mentor = load_mentornet(tmp_path / "guard" / pd.read_csv(tmp_path / "guard" / "relearn.csv")["checkpoint"].iloc[-1])
    assert mentor.source["max_selected_loss"] == pytest.approx(largest)
    outside = torch.tensor(sorted(set(range(len(weighter.released))) - set(run.clean_parts.probe.tolist()))[:3])
    weighter.threshold = 0.0  # every output qualifies: only the loss guard decides
    weights = weighter.mentor_weights(torch.tensor([largest / 2, largest, largest * 2]), run.total_steps - 1, outside)
    assert weights.tolist() == [1.0, 1.0, 0.0]


def test_the_keep_rate_caps_a_batch_at_the_share_the_fit_selected_on_the_probe(tmp_path):
    run = prepare_run(config(epochs=4, learn_keep_rate="probe"), tmp_path / "cap")
    train(run)
    weighter, fits = run.weighter, pd.read_csv(tmp_path / "cap" / "relearn.csv")
    share = weighter.keep_share
    assert 0 < share < 1 and share == pytest.approx(fits["keep_share"].iloc[-1])
    # the share is that of the window's last epoch: the probe rows recorded there, selected at its epoch input
    last = weighter.mentor.last_fitted_epoch
    losses = weighter.losses[:-1, last]
    seen = ~torch.isnan(losses)
    v = weighter.mentor.weight(MentorFeatures.build(losses[seen], torch.zeros(int(seen.sum())), epoch=last))
    chosen = (v >= weighter.threshold) & (losses[seen] <= weighter.max_loss)
    assert share == pytest.approx(float(chosen.float().mean()))
    mentor = load_mentornet(tmp_path / "cap" / fits["checkpoint"].iloc[-1])
    assert mentor.source["keep_share"] == pytest.approx(share)
    # every output qualifies and no loss is too large: the cap alone decides, keeping the lowest losses
    outside = torch.tensor(sorted(set(range(len(weighter.released))) - set(run.clean_parts.probe.tolist()))[:10])
    weighter.threshold, weighter.max_loss, weighter.keep_share = 0.0, float("inf"), 0.35
    loss = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0])
    weights = weighter.mentor_weights(loss, run.total_steps - 1, outside)
    assert weights.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 0]  # ceil(0.35 * 10) = 4 lowest losses
    weighter.keep_share = 0.0
    assert weighter.mentor_weights(loss, run.total_steps - 1, outside).sum() == 0
    restored = prepare_run(config(epochs=4, learn_keep_rate="probe"), tmp_path / "other").weighter
    restored.load_state_dict(weighter.state_dict())
    assert restored.keep_share == 0.0
    uncapped = prepare_run(config(epochs=4), tmp_path / "uncapped")
    train(uncapped)
    assert uncapped.weighter.keep_share == 1.0 and (pd.read_csv(tmp_path / "uncapped" / "relearn.csv")["keep_share"] == 1).all()


def test_per_sample_trusted_loss_weighs_each_trusted_sample_as_one_noisy_sample(tmp_path):
    mean = prepare_run(config(learn_trusted_batch=16, learn_trusted_loss="mean"), tmp_path / "mean")
    per_sample = prepare_run(config(learn_trusted_batch=16, learn_trusted_loss="per-sample"), tmp_path / "per_sample")
    assert mean.trusted.scale == 1.0 and per_sample.trusted.scale == 16 / 64  # the trusted batch / the noisy batch
    per_sample.model.load_state_dict(mean.model.state_dict())
    expected = mean.trusted.loss(mean, mean.model)
    torch.testing.assert_close(per_sample.trusted.loss(per_sample, per_sample.model), expected * 16 / 64)


def test_relabelling_trains_confident_unselected_samples_on_their_predicted_class():
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(64, 5, generator=generator) * 4).requires_grad_()
    labels = torch.randint(0, 5, (64,), generator=generator)
    weights = (torch.rand(64, generator=generator) < 0.5).float()
    probability, predicted = torch.softmax(logits.detach(), 1).max(1)
    chosen = (weights == 0) & (probability >= 0.9)
    assert 0 < chosen.sum() < (weights == 0).sum()  # some unselected samples are confident, some are not
    loss = Refurbishment(0.9).loss(logits, labels, weights)
    reference_logits = logits.detach().clone().requires_grad_()
    per_sample = torch.nn.functional.cross_entropy(reference_logits, predicted, reduction="none")
    reference = (per_sample * chosen).sum() / 64
    torch.testing.assert_close(loss, reference)
    loss.backward()
    reference.backward()
    torch.testing.assert_close(logits.grad, reference_logits.grad)
    assert (logits.grad[~chosen] == 0).all()  # selected or unsure samples get nothing from it
    assert Refurbishment(0.9).loss(logits.detach(), labels, torch.ones(64)) == 0  # all selected: nothing to relabel


def test_the_posterior_relabelling_weighs_the_prediction_by_the_probes_noise_transition():
    verified = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    noisy = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    transition = probe_transition(noisy, verified, 3)
    counts = torch.tensor([[3., 2, 1], [1, 3, 2], [2, 1, 2]])  # add-one counts, rows the verified (true) classes
    torch.testing.assert_close(transition, counts / counts.sum(1, keepdim=True))
    logits = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 2.0, 0.0]], requires_grad=True)
    labels = torch.tensor([1, 0, 1, 2])
    # Bayes' rule, one sample at a time: P(c | x, noisy y) ∝ softmax(x)_c · P(noisy y | true c) = p_c · T[c, y]
    p = torch.softmax(logits.detach(), 1)
    posterior = torch.tensor([[float(p[b, c] * transition[c, labels[b]]) for c in range(3)] for b in range(4)])
    posterior /= posterior.sum(1, keepdim=True)
    sure, target = posterior.max(1)
    assert target.tolist() == [0, 0, 2, 1] and sure[0] < 0.8 < sure[1]  # the noisy label 1 is evidence against 0
    chosen = sure >= 0.8
    reference = (torch.nn.functional.cross_entropy(logits.detach(), target, reduction="none") * chosen).sum() / 4
    torch.testing.assert_close(Refurbishment(0.8, transition).loss(logits, labels, torch.zeros(4)), reference)
    # T the other way round (P(true | noisy)) picks other samples: the check above tells the two apart
    transposed = Refurbishment(0.8, transition.T.contiguous()).loss(logits, labels, torch.zeros(4))
    assert not torch.isclose(transposed, reference)
    # samples that are not candidates (a released probe sample) are never relabelled
    kept = torch.tensor([True, True, False, True])
    torch.testing.assert_close(Refurbishment(0.8, transition).loss(logits, labels, torch.zeros(4), kept),
                               (torch.nn.functional.cross_entropy(logits.detach(), target, reduction="none")
                                * chosen * kept).sum() / 4)


def test_the_other_target_rules_out_the_noisy_label_and_renormalises_over_the_rest():
    transition = torch.full((3, 3), 0.1) + torch.eye(3) * 0.7  # P(noisy | true): 0.8 kept, 0.1 to each other class
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.5], [0.0, 1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 0])
    # P(c | x, noisy y, c != y) ∝ softmax(x)_c · T[c, y] over c != y, renormalised
    p = torch.softmax(logits.detach(), 1)
    posterior = torch.stack([p[:, c] * transition[c, 0] for c in range(3)], 1)
    assert posterior.argmax(1).tolist() == [0, 1, 0]  # the plain posterior keeps the noisy label of samples 0 and 2
    other = posterior.clone()
    other[:, 0] = 0
    other /= other.sum(1, keepdim=True)
    sure, target = other.max(1)
    assert target.tolist()[:2] == [1, 1] and sure[1] > 0.9 > sure[0] and sure[2] == 0.5  # a tie is never sure
    chosen = sure >= 0.9
    reference = (torch.nn.functional.cross_entropy(logits.detach(), target, reduction="none") * chosen).sum() / 3
    rule = Refurbishment(0.9, transition, exclude_noisy=True)
    torch.testing.assert_close(rule.loss(logits, labels, torch.zeros(3)), reference)
    loss = rule.loss(logits, labels, torch.tensor([0.0, 1.0, 0.0]))  # sample 1 selected: nothing relabelled
    assert loss == 0
    with pytest.raises(ValueError, match="needs the noise transition"):
        Refurbishment(0.9, exclude_noisy=True)
    with pytest.raises(ValueError, match="3 classes or more"):  # with 2, the other class is always sure
        Refurbishment(0.9, torch.full((2, 2), 0.5), exclude_noisy=True)


def test_relabelling_leaves_a_released_probe_alone_and_the_burn_in_if_asked(tmp_path, monkeypatch):
    """With --no-learn-relabel-in-burn-in relabelling starts with the first fit's MentorNet; it never touches the
    probe once released (with --learn-probe-labels verified, from the start): that trains in the trusted stream
    with its verified labels. By default it relabels in the burn-in too."""
    run = prepare_run(config(learn_probe_labels="verified", learn_relabel_confidence=0.5,
                             learn_relabel_in_burn_in=False), tmp_path / "run")
    calls, batches = [], []
    loss, in_noisy_stream = Refurbishment.loss, run.weighter.in_noisy_stream

    def spy(self, logits, labels, weights, candidates=None):
        calls.append((run.weighter.mentor is not None, candidates.clone()))
        return loss(self, logits, labels, weights, candidates)

    monkeypatch.setattr(Refurbishment, "loss", spy)
    run.weighter.in_noisy_stream = lambda indices: batches.append(indices.clone()) or in_noisy_stream(indices)
    train(run)
    steps = run.epochs * len(run.train_loader)
    assert 0 < len(calls) < steps and all(fitted for fitted, _ in calls)  # from the first fit on, never before
    probe = run.clean_parts.probe
    released = [torch.isin(indices, probe) for indices in batches]
    assert sum(int(r.sum()) for r in released) > 0  # the batches hold probe samples ...
    assert all(torch.equal(candidates, ~r) for (_, candidates), r in zip(calls, released))  # ... never candidates
    calls.clear()
    run = prepare_run(config(learn_relabel_confidence=0.5), tmp_path / "burn_in")  # the default: in the burn-in too
    train(run)
    assert len(calls) == steps and not calls[0][0] and calls[-1][0]  # every step, before the first fit too


def test_a_learned_run_with_relabelling_records_the_option_and_trains_differently(tmp_path):
    runs = {}
    for name, changes in (("relabel", {"learn_relabel_confidence": 0.5, "learn_relabel_target": "prediction"}),
                          ("plain", {"learn_relabel_confidence": 0.0}),
                          ("posterior", {"learn_relabel_confidence": 0.5, "learn_relabel_target": "posterior"}),
                          ("other", {"learn_relabel_confidence": 0.5, "learn_relabel_target": "other"})):
        train(prepare_run(config(**changes), tmp_path / name))
        runs[name] = pd.read_csv(tmp_path / name / "metrics.csv")
    recorded = json.loads((tmp_path / "relabel" / "config.json").read_text())["config"]
    assert recorded["learn_relabel_confidence"] == 0.5
    assert (runs["relabel"]["epoch"] == runs["plain"]["epoch"]).all()
    assert not np.allclose(runs["relabel"]["loss"], runs["plain"]["loss"])  # the refurbished samples trained
    assert not np.allclose(runs["posterior"]["loss"], runs["relabel"]["loss"])  # on other labels
    assert not np.allclose(runs["other"]["loss"], runs["posterior"]["loss"])  # never on the noisy label itself


def test_each_fit_is_logged_saved_and_usable_as_a_mentornet(learned_run, tmp_path):
    out, output = learned_run
    fits = pd.read_csv(out / "relearn.csv")
    assert list(fits.columns) == list(LEARN_COLUMNS)
    assert fits["progress_epoch"].tolist() == [20, 40, 60] and (fits["status"] == "fitted").all()
    assert (fits["rows"] > 0).all() and fits["noisy_fraction"].between(0.05, 0.95).all()
    assert "learned a MentorNet at progress epoch 20" in output
    for path in fits["checkpoint"]:
        mentor = load_mentornet(out / path)
        assert mentor.source["type"] == "learned_in_run" and mentor.config.uses_loss_diff is False
    # the last fit drives another run, and plot and show accept it
    fitted = str(out / fits["checkpoint"].iloc[-1])
    other = invoke("train-student", *QUICK, "--epochs", "1", "--mentornet", fitted, "--out", str(tmp_path / "reuse"))
    assert other.exit_code == 0, other.output
    shown = invoke("show", fitted)
    assert shown.exit_code == 0
    # Report: the recorded command re-ran the run into its own folder, which is refused (it holds the run)
    assert f'"command": "train-student --config {out / "config.json"} --out NEW_FOLDER"' in shown.output
    picture = invoke("plot", "--mentornet", fitted, "--out", str(tmp_path / "surface.png"))
    assert picture.exit_code == 0, picture.output and (tmp_path / "surface.png").stat().st_size > 0
    assert invoke("plot", "--run", str(out), "--out", str(tmp_path / "curves.png")).exit_code == 0


def test_the_statistics_describe_the_noisy_training_set_and_validation_a_held_out_fifth(learned_run):
    out, output = learned_run
    run = prepare_run(None, out, resume=True)
    run.release()
    parts = run.clean_parts
    subset = set(run.data.clean_subset_indices.tolist())
    assert set(parts.validation.tolist()) | set(parts.probe.tolist()) | set(parts.trusted.tolist()) == subset
    assert len(parts.validation) == round(0.2 * len(subset))
    assert set(run.validation_loader.indices.tolist()) == set(parts.validation.tolist())
    trained = set(run.train_loader.indices.tolist())
    assert trained == set(run.data.train_indices.tolist()) | set(parts.probe.tolist())
    assert "a fifth, never trained on" in output
    rows = pd.read_csv(out / "metrics.csv")
    last = rows.iloc[-1]  # the learned MentorNet keeps clean labels and drops corrupted ones
    assert last["detector_auc"] > 0.6 and last["weight_noisy"] < last["weight_clean"] / 4


def test_a_mentornet_fitted_without_loss_diff_ignores_it_in_every_loop():
    torch.manual_seed(0)
    mentor = MentorNet(MentorNetConfig(uses_loss_diff=False))
    mentor.reset_parameters(torch.Generator().manual_seed(0))
    loss = torch.linspace(0, 5, 20)
    a = mentor.weight(MentorFeatures.build(loss, torch.zeros(20), epoch=10))
    b = mentor.weight(MentorFeatures.build(loss, torch.randn(20) * 3, epoch=10))
    assert torch.equal(a, b)
    ordinary = MentorNet(MentorNetConfig())
    ordinary.load_state_dict(mentor.state_dict())
    assert not torch.equal(ordinary.weight(MentorFeatures.build(loss, torch.randn(20) * 3, epoch=10)), a)


def test_resume_across_fits_ends_like_an_uninterrupted_run(tmp_path):
    args = [*LEARN, "--epochs", "4", "--seed", "2"]
    whole = _cli(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed = _cli(*args, "--out", str(tmp_path / "cut"), env={"MENTORNET_KILL_AT_STEP": "40"})  # after two fits, in epoch 3
    assert killed.returncode == 137
    assert len(pd.read_csv(tmp_path / "cut" / "relearn.csv")) == 2
    resumed = _cli("--out", str(tmp_path / "cut"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (pd.read_csv(tmp_path / name / "metrics.csv").drop(columns="seconds") for name in ("whole", "cut"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    fits = [pd.read_csv(tmp_path / name / "relearn.csv").drop(columns="fit_seconds") for name in ("whole", "cut")]
    pd.testing.assert_frame_equal(*fits, check_exact=True)
    last_a, last_b = (torch.load(tmp_path / name / "last.pt", weights_only=True) for name in ("whole", "cut"))
    assert all(torch.equal(last_a["model"][k], last_b["model"][k]) for k in last_a["model"])


def test_train_on_the_clean_subset_alone_or_beside_the_noisy_set(tmp_path):
    only = prepare_run(config(mentornet="none", learn_epochs=DEFAULT_LEARN_EPOCHS, train_on="clean_subset"),
                       tmp_path / "only")
    parts = only.clean_parts
    assert set(only.train_loader.indices.tolist()) == set(parts.trusted.tolist())
    assert torch.equal(only.train_loader.labels[parts.trusted], only.verified_labels[parts.trusted])
    train(only)
    both = prepare_run(config(mentornet="none", learn_epochs=DEFAULT_LEARN_EPOCHS,
                              train_on="noisy+clean_subset"), tmp_path / "both")
    both.release()
    assert set(both.train_loader.indices.tolist()) == set(both.data.train_indices.tolist()) | \
        set(both.clean_parts.trusted.tolist())
    assert bool(both.trusted_mask[both.clean_parts.trusted].all()) and int(both.trusted_mask.sum()) == \
        len(both.clean_parts.trusted)


def test_a_clean_subset_file_gives_ids_and_verified_labels(tmp_path):
    data = load_dataset("digits")
    ids = np.arange(0, len(data.train_labels), 3)
    verified = data.train_labels.numpy()[ids].copy()
    verified[0] = (verified[0] + 1) % 10  # a verified label that differs from the data set's
    path = tmp_path / "clean.csv"
    pd.DataFrame({"sample_id": ids, "label": verified}).to_csv(path, index=False)
    run = prepare_run(config(clean_subset_fraction=0.0, clean_subset_file=str(path)), tmp_path / "run")
    run.release()
    assert run.data.clean_subset_indices.tolist() == ids.tolist()
    assert not set(ids.tolist()) & set(run.data.train_indices.tolist())
    assert torch.equal(run.verified_labels[torch.from_numpy(ids)], torch.from_numpy(verified))
    assert int(run.verified_labels[0]) == verified[0] != int(data.train_labels[0])


@pytest.mark.parametrize("text, message", [
    ("id,label\n1,2\n", "must start with the header sample_id,label"),
    ("sample_id,label\n1,2\nx,3\n", "line 3: expected two integers"),
    ("sample_id,label\n999999,2\n", "line 2: sample_id 999999 is not in the training set"),
    ("sample_id,label\n1,12\n", "line 2: label 12 is outside 0..9"),
    ("sample_id,label\n1,2\n1,2\n", "line 3: sample_id 1 is listed again (first on line 2)"),
])
def test_a_malformed_clean_subset_file_is_one_line_naming_the_line(tmp_path, text, message):
    path = tmp_path / "clean.csv"
    path.write_text(text)
    result = invoke("train-student", *QUICK, "--epochs", "1", "--mentornet", "learn", "--clean-subset-file", str(path),
                    "--out", str(tmp_path / "run"))
    assert_one_line_error(result, message)
    assert not (tmp_path / "run").exists()


def test_a_clean_subset_file_id_outside_a_subset_names_the_subset(tmp_path):
    data = load_dataset("digits", subset=500, seed=0)
    outside = sorted(set(range(data.source_size)) - set(data.source_indices.tolist()))[0]
    path = tmp_path / "clean.csv"
    path.write_text(f"sample_id,label\n{outside},2\n")
    result = invoke("train-student", *QUICK, "--subset", "500", "--epochs", "1", "--mentornet", "learn",
                    "--clean-subset-file", str(path), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, f"sample_id {outside} is not among the 500 images --subset drew from the "
                                  f"{data.source_size} of the training set")
    assert "drop --subset, or list only ids it keeps" in result.output
    # Report: nothing said which ids the subset keeps; the hint's call lists them
    assert "(load_dataset('digits', subset=500, seed=SEED).source_indices, in student_training.data" in result.output


def test_a_clean_subset_too_small_is_refused_with_the_smallest_fraction_that_works(tmp_path):
    result = invoke("train-student", *QUICK, "--epochs", "1", "--mentornet", "learn", "--clean-subset-fraction", "0.05",
                    "--out", str(tmp_path / "small"))
    assert_one_line_error(result, "needs 10 of each: use --clean-subset-fraction")
    assert not (tmp_path / "small").exists()
    smallest = result.output.split("--clean-subset-fraction ")[-1].split()[0]
    works = invoke("train-student", *QUICK, "--epochs", "1", "--mentornet", "learn", "--learn-epochs", "50",
                   "--clean-subset-fraction", smallest, "--out", str(tmp_path / "enough"))
    assert works.exit_code == 0, works.output


@pytest.mark.parametrize("extra, message", [
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--max-steps", "10", "--learn-epochs", "95"],
     "--learn-epochs 95 is never reached: 10 steps reach progress epoch 90 at most; run at least 20 steps"),
    (["--mentornet", "learn"], "--mentornet learn needs a clean subset"),
    (["--mentornet", "mentornet_pd", "--learn-window", "3"], "--learn-window applies only with --mentornet learn"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--mentormix"], "does not combine with --mentormix"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--burn-in-epoch", "5"],
     "--burn-in-epoch does not apply to --mentornet learn"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-threshold", "1.5"],
     "--learn-threshold must lie in (0, 1)"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-epochs", "5,5"],
     "--learn-epochs lists progress epoch 5 more than once"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-epochs", "5,,10"],
     "--learn-epochs must be progress epochs like 5,10,15; got '5,,10'"),
    (["--mentornet", "mentornet_pd", "--relearn-mentor", "30,30", "--clean-subset-fraction", "0.3"],
     "--relearn-mentor lists progress epoch 30 more than once"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-precision", "1"],
     "--learn-precision must lie in (0, 1)"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-precision", "0.9", "--learn-threshold", "0.5"],
     "give one"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-weights", "soft", "--learn-threshold", "0.5"],
     "--learn-weights soft uses the MentorNet's output as the weight, with no threshold; drop --learn-threshold"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-precision", "0.9",
      "--learn-threshold-fallback", "none" if THRESHOLD_FALLBACK_DEFAULT == "precision" else "precision"],
     "--learn-threshold-fallback applies to a fixed --learn-threshold; --learn-precision sets every fit's threshold"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-weights", "soft",
      "--learn-threshold-prior", "odds"],
     "--learn-threshold-prior applies to a fixed --learn-threshold; --learn-weights soft has no threshold"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-weights", "soft", "--learn-keep-rate",
      "probe"], "--learn-keep-rate caps a thresholded selection; --learn-weights soft selects nothing"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-trusted-batch", "0", "--learn-burn-in-weight",
      "1", "--learn-trusted-loss", "mean"], "--learn-trusted-batch 0 has none; drop one of them"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-trusted-batch", "0", "--learn-burn-in-weight",
      "1", "--learn-probe-labels", "verified"], "trains the probe in the trusted stream, and --learn-trusted-batch 0"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-relabel-confidence", "1"],
     "--learn-relabel-confidence must lie in (0, 1), or be 0 for no relabelling, got 1.0"),
    (["--learn-relabel-confidence", "0.5"], "--learn-relabel-confidence applies only with --mentornet learn"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-relabel-confidence", "0",
      "--learn-relabel-target", "prediction"], "--learn-relabel-confidence 0 relabels nothing; drop one of them"),
    (["--mentornet", "learn", "--clean-subset-fraction", "0.3", "--learn-relabel-confidence", "0",
      "--no-learn-relabel-in-burn-in"], "--learn-relabel-confidence 0 relabels nothing; drop one of them"),
    (["--train-on", "clean_subset"], "--train-on clean_subset needs a clean subset"),
    (["--train-on", "clean_subset", "--clean-subset-fraction", "0.3", "--mentornet", "mentornet_pd"],
     "there is nothing for a MentorNet to weight"),
    (["--clean-subset-fraction", "0.3", "--clean-subset-file", "x.csv"], "not both"),
])
def test_learn_mode_bad_input_is_one_line_before_any_work(tmp_path, extra, message):
    length = [] if "--max-steps" in extra else ["--epochs", "1"]  # the two exclude each other
    result = invoke("train-student", *QUICK, *length, *extra, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, message)
    assert not (tmp_path / "run").exists()


def test_a_probe_with_verified_labels_trains_in_the_trusted_stream_and_still_records_its_noisy_losses(tmp_path):
    run = prepare_run(config(learn_probe_labels="verified"), tmp_path / "verified")
    probe, weighter = run.clean_parts.probe, run.weighter
    assert set(run.trusted.indices.tolist()) == set(run.clean_parts.trusted.tolist()) | set(probe.tolist())
    assert bool(weighter.released[probe].all()) and int(weighter.released.sum()) == len(probe)
    rows = train(run)
    assert len(rows) == 4
    fits = pd.read_csv(tmp_path / "verified" / "relearn.csv")
    assert fits["status"].eq("fitted").all() and (fits["rows"] > 0).all()
    # every recorded probe loss is its loss under the noisy label, though it trained on the verified one
    recorded = weighter.losses[:-1]
    assert bool((~torch.isnan(recorded)).any(dim=1).all())
    noisy, verified = run.noise.noisy_labels[probe], run.verified_labels[probe]
    corrupted = noisy != verified
    last = recorded[:, ~torch.isnan(recorded).all(dim=0)][:, -1]
    assert float(last[corrupted].nanmean()) > 3 * float(last[~corrupted].nanmean())
    assert len(run.trusted.indices) == len(run.clean_parts.trusted) + len(probe)  # not added twice at the last fit


def test_a_probe_of_the_whole_clean_subset_trains_without_a_trusted_part(tmp_path):
    # the noisy samples train before the first fit (--learn-burn-in-weight 1): there is nothing else to train on
    run = prepare_run(config(learn_probe_fraction=1.0, learn_burn_in_weight=1.0, max_steps=40, epochs=100,
                             learn_window=20), tmp_path / "all_probe")  # windows of enough rows for every fit
    assert len(run.clean_parts.trusted) == 0 and run.trusted is not None
    rows = train(run)  # the trusted stream is empty until the probe is released
    assert len(rows) >= 1 and pd.read_csv(tmp_path / "all_probe" / "relearn.csv")["status"].eq("fitted").all()


@pytest.mark.parametrize("extra, message", [
    (["--learn-probe-fraction", "1"], "--learn-probe-fraction 1 leaves no trusted images before the last fit, and "
                                      "--learn-burn-in-weight 0 gives the noisy samples weight 0"),
    (["--learn-trusted-batch", "100000"], "--learn-trusted-batch 100000 exceeds both the "),
])
def test_trusted_batches_that_cannot_train_are_refused_before_training(tmp_path, extra, message):
    result = invoke("train-student", *QUICK, "--epochs", "1", "--mentornet", "learn", "--clean-subset-fraction", "0.3",
                    "--learn-epochs", "50", *extra, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, message)
    assert not (tmp_path / "run").exists()
    if extra[0] == "--learn-trusted-batch":  # the largest batch it names is accepted
        largest = result.output.split("give at most ")[-1].split()[0]
        check = invoke("train-student", *QUICK, "--max-steps", "2", "--mentornet", "learn", "--clean-subset-fraction",
                       "0.3", "--learn-epochs", "50", "--learn-trusted-batch", largest, "--out", str(tmp_path / "ok"))
        assert check.exit_code == 0, check.output


@pytest.mark.parametrize("option", ["--loss-p-percentile", "--loss-moving-average-decay"])
def test_loss_diff_options_are_refused_for_a_mentornet_fitted_without_loss_diff(tmp_path, option):
    """Report: --mentornet mentornet_learned --loss-p-percentile 0.5 ran, with the same weights as without it."""
    result = invoke("train-student", *QUICK, "--epochs", "1", "--mentornet", "mentornet_learned", option, "0.5",
                    "--out", str(tmp_path / "run"))
    assert_one_line_error(result, f"{option} defines loss_diff, which the MentorNet mentornet_learned was fitted "
                                  "without")
    assert not (tmp_path / "run").exists()


def test_a_short_run_clamps_the_epoch_input_to_epochs_that_hold_losses(tmp_path):
    run = prepare_run(config(max_steps=24, epochs=100, learn_epochs="50", learn_window=20), tmp_path / "short")
    train(run)
    recorded = torch.nonzero(~torch.isnan(run.weighter.losses[:-1, 30:50]).all(dim=0)).flatten() + 30
    assert run.weighter.last_fitted_epoch == int(recorded.max())
    embedding = run.weighter.mentor.epoch_embedding
    assert torch.equal(embedding[99], embedding[int(recorded.max())])


def test_the_clean_subset_file_is_kept_in_the_run_folder_for_resume(tmp_path):
    data = load_dataset("digits")
    ids = np.arange(0, len(data.train_labels), 3)
    path = tmp_path / "clean.csv"
    pd.DataFrame({"sample_id": ids, "label": data.train_labels.numpy()[ids]}).to_csv(path, index=False)
    out = tmp_path / "run"
    args = [*QUICK, "--epochs", "2", "--mentornet", "learn", "--learn-epochs", "20", "--clean-subset-file", str(path)]
    assert invoke("train-student", *args, "--out", str(out)).exit_code == 0
    kept = np.load(out / "clean_subset.npz")
    assert kept["sample_id"].tolist() == ids.tolist()
    path.unlink()  # the user's file is gone: the resume uses the run folder's copy
    assert invoke("train-student", "--out", str(out), "--resume", "--epochs", "2").exit_code in (0,)


@pytest.mark.parametrize("extra, message", [
    (["--train-on", "noisy+clean_subset", "--mentornet", "mentornet_pd", "--relearn-mentor", "30"],
     "which --relearn-mentor needs held out"),
    (["--train-on", "noisy+clean_subset", "--mentornet", "mentornet_pd", "--mentormix"], "which --mentormix needs"),
])
def test_train_on_the_clean_subset_refuses_what_needs_it_held_out(tmp_path, extra, message):
    result = invoke("train-student", *QUICK, "--epochs", "1", "--clean-subset-fraction", "0.3", *extra,
                    "--out", str(tmp_path / "run"))
    assert_one_line_error(result, message)


def test_no_trusted_batches_and_no_burn_in_weight_is_refused_as_training_nothing(tmp_path):
    result = invoke("train-student", *QUICK, "--epochs", "1", "--clean-subset-fraction", "0.3", "--mentornet", "learn",
                    "--learn-trusted-batch", "0", "--learn-burn-in-weight", "0", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "trains nothing before the first fit")


def test_trusted_batches_are_augmented_like_the_noisy_stream_and_restore_exactly():
    images = torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8)
    loader = DeviceLoader(images, torch.zeros(40, dtype=torch.long), batch_size=8, augment=True, pad=2)
    stream = TrustedStream(torch.arange(10, 30), batch_size=8, seed=3)
    stream.next()
    state = stream.state_dict()
    batch = stream.next()  # crosses into the next permutation (20 samples, batches of 8)
    reference = torch.Generator().set_state(stream.generator.get_state())
    augmented = loader.batch_of(batch, stream.generator)
    span = torch.randint(0, 5, (2, 8), generator=reference)
    flips = torch.rand(8, generator=reference) < 0.5
    assert torch.equal(augmented, loader.prepare(crop_flip(images[batch], span[0], span[1], flips, 2)))
    assert not torch.equal(augmented, loader.prepare(images[batch]))  # the draws did crop or flip something
    again = TrustedStream(torch.arange(10, 30), batch_size=8, seed=0)
    again.load_state_dict(state)
    assert torch.equal(again.next(), batch) and torch.equal(loader.batch_of(batch, again.generator), augmented)
    assert set(batch.tolist()) <= set(range(10, 30)) and batch.device.type == "cpu"


def test_a_run_folder_of_an_earlier_release_reads_whatever_its_learn_defaults_were(tmp_path):
    import json

    from student_training.run_folder import read_config

    for mentornet, kept in (("none", False), ("learn", True)):
        out = tmp_path / mentornet
        out.mkdir()
        made = StudentConfig(dataset="digits", noise=0.4, clean_subset_fraction=0.3, mentornet=mentornet)
        values = {**made.to_dict(), "learn_epochs": "5,10", "learn_threshold": 0.8}
        for absent in ("learn_threshold_fallback", "learn_relabel_confidence", "learn_relabel_target",
                       "learn_relabel_in_burn_in"):
            del values[absent]  # options that release did not have
        (out / "config.json").write_text(json.dumps({"format_version": 2, "config": values}))
        saved, _ = read_config(out)
        assert (saved.learn_epochs, saved.learn_threshold) == (("5,10", 0.8) if kept else (DEFAULT_LEARN_EPOCHS, 0.9))
        # a learned run written before --learn-threshold-fallback existed selected nothing on an empty fit, and one
        # written before --learn-relabel-confidence relabelled nothing
        assert saved.learn_threshold_fallback == ("none" if kept else THRESHOLD_FALLBACK_DEFAULT)
        assert saved.learn_relabel_confidence == (0.0 if kept else RELABEL_CONFIDENCE_DEFAULT)
    # with a threshold set by each fit (or soft weights) the fallback is unused, whatever a release recorded
    out = tmp_path / "precision"
    out.mkdir()
    values = {**StudentConfig(dataset="digits", noise=0.4, clean_subset_fraction=0.3, mentornet="learn",
                              learn_precision=0.95).to_dict(), "learn_threshold_fallback": "none"}
    (out / "config.json").write_text(json.dumps({"format_version": 2, "config": values}))
    saved, _ = read_config(out)
    assert saved.learn_precision == 0.95 and saved.learn_threshold_fallback == THRESHOLD_FALLBACK_DEFAULT


def test_a_fit_with_too_few_rows_of_one_kind_is_skipped_and_logged(tmp_path):
    """Report: a 3-epoch run fitted a MentorNet on 4 probe rows, one of them corrupted, without a word."""
    run = prepare_run(config(max_steps=12, epochs=100, learn_epochs="50", learn_window=10), tmp_path / "few")
    train(run)
    log = pd.read_csv(tmp_path / "few" / "relearn.csv")
    assert len(log) == 1 and log["status"][0].startswith("skipped: the window holds ")
    assert "fewer than the 10 of each a fit needs" in log["status"][0]
    assert run.weighter.mentor is None  # nothing fitted: the burn-in weight stays in use
    assert not (tmp_path / "few" / "mentornets").exists()


def test_a_class_with_no_trusted_image_is_named_before_training(tmp_path):
    """Report: a clean subset file with 8 images of class 4 left none in the trusted part (the validation fifth
    and the probe take equal counts per class first); class 4 then scored 0/36, without a word."""
    data = load_dataset("digits")
    labels = data.train_labels.numpy()
    ids = np.concatenate([np.flatnonzero(labels == c)[:(8 if c == 4 else 16)] for c in range(10)])
    path = tmp_path / "clean.csv"
    pd.DataFrame({"sample_id": ids, "label": labels[ids]}).to_csv(path, index=False)
    result = invoke("train-student", *QUICK, "--epochs", "1", "--mentornet", "learn", "--learn-epochs", "50",
                    "--clean-subset-file", str(path), "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("Warning: ")  # but these two:
               and "best.pt is chosen on a validation split of 30 images" not in line  # the fifth: 30 of 152
               and "the run's one fit learned no MentorNet" not in line]  # one epoch: too few probe rows
    assert len(warning) == 1 and "no verified image of class 4 (8 verified:" in warning[0]
    assert "give more verified samples of that class" in warning[0]
    # the small validation split's advice names the option this run uses (--clean-subset-fraction is refused here)
    assert ("the choice is mostly chance; list more samples in --clean-subset-file for 50 images or more"
            in result.output)


@pytest.mark.parametrize("per_class, fragment", [
    (5, "raise --learn-probe-fraction to 0.6 or more, or list more samples in the file"),
    (2, "list more samples in the file (no --learn-probe-fraction makes a probe of them that is enough)"),
])
def test_a_probe_too_small_for_a_clean_subset_file_gets_advice_that_works(tmp_path, per_class, fragment):
    """Report: the advice was 'raise --learn-probe-fraction' where no fraction could be enough."""
    data = load_dataset("digits")
    labels = data.train_labels.numpy()
    ids = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    path = tmp_path / "clean.csv"
    pd.DataFrame({"sample_id": ids, "label": labels[ids]}).to_csv(path, index=False)
    args = [*QUICK, "--epochs", "1", "--mentornet", "learn", "--clean-subset-file", str(path)]
    result = invoke("train-student", *args, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, fragment)
    if per_class == 5:  # the advice, followed, starts the run
        result = invoke("train-student", *args, "--learn-probe-fraction", "0.6", "--out", str(tmp_path / "run"))
        assert result.exit_code == 0, result.output


def test_a_run_whose_fits_all_fail_says_so(tmp_path):
    """Report: a --mentornet learn run whose 19 fits were all skipped ended with status 0 and no warning."""
    result = invoke("train-student", *QUICK, "--epochs", "2", "--mentornet", "learn", "--clean-subset-fraction",
                    "0.06", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "Warning: none of the 19 fits learned a MentorNet (the first was skipped: " in result.output
    assert "so no learned MentorNet weighted this run: its noisy samples kept --learn-burn-in-weight 0" \
        in result.output


def test_the_progress_bar_shows_each_fit_as_it_happens():
    """Report: the fit lines were printed only when the run ended, so an interrupted run never showed its fits."""
    from types import SimpleNamespace

    bar, shown = cli._ProgressBar(), []
    bar.bar = SimpleNamespace(update=lambda steps, text: shown.append(text))
    fits = SimpleNamespace(rows=[])
    run = SimpleNamespace(callbacks=[fits])
    row = {"epoch": 1, "loss": 2.0, "test_accuracy": 0.5}
    bar.on_epoch_end(run, 0, row)
    fits.rows.append({"progress_epoch": 20, "status": "fitted", "selected": 0.42})
    bar.on_epoch_end(run, 1, {**row, "epoch": 2})
    fits.rows.append({"progress_epoch": 50, "status": "skipped: too few rows"})
    bar.on_epoch_end(run, 2, {**row, "epoch": 3})
    assert "fit" not in shown[0]
    assert shown[1].endswith("; fit at progress epoch 20: selects 42%")
    assert shown[2].endswith("; fit at progress epoch 50: skipped")


def test_the_other_target_is_refused_for_two_classes_before_anything_is_written(tmp_path):
    from student_training.data import DIGITS_FILE

    d = np.load(DIGITS_FILE)
    keep = d["labels"] < 2
    images, labels, test = (d["images"][keep] * 15).astype(np.uint8), d["labels"][keep], d["is_test"][keep]
    np.savez(tmp_path / "two.npz", train_images=images[~test], train_labels=labels[~test],
             test_images=images[test], test_labels=labels[test])
    out = tmp_path / "run"
    result = invoke("train-student", "--dataset", f"npz:{tmp_path / 'two.npz'}", "--studentnet", "mlp", "--noise",
                    "0.2", "--epochs", "2", "--batch-size", "32", "--clean-subset-fraction", "0.5", "--mentornet",
                    "learn", "--learn-epochs", "50", "--learn-relabel-target", "other", "--out", str(out))
    assert_one_line_error(result, "--learn-relabel-target other needs 3 classes or more", "has 2")
    assert not out.exists()
