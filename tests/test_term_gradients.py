"""benchmarks/term_gradients.py: per-term gradient norms and cosines, worked out by hand on a two-parameter model."""
from __future__ import annotations

import math

import pytest
import torch
from nnunet_helpers import load_benchmark


def _module():
    return load_benchmark("term_gradients")


def _terms():
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    b = torch.nn.Parameter(torch.tensor([3.0]))
    terms = {
        "sup": (a.sum(), 1.0),                               # d/da = (1, 1), b unused
        "pull": ((a[0] - a[1]) * 2 + (b ** 2).sum(), 0.5),   # weighted: d/da = (1, -1), d/db = 3
        "against": (-a.sum(), 2.0),                          # weighted: d/da = (-2, -2)
        "off": (a.sum() * 5, 0.0),                           # weight 0: no gradient
        "const": (torch.tensor(7.0), 1.0),                   # reaches no parameter
    }
    return terms, {"enc": [a], "head": [b]}


def test_norms_and_cosines_by_hand():
    tg = _module()
    terms, groups = _terms()
    table = tg.term_gradients(terms, groups)
    assert table["sup"] == pytest.approx({"value": 3.0, "weight": 1.0, "|g| enc": math.sqrt(2), "|g| head": 0.0,
                                          "|g| all": math.sqrt(2), "cos": 1.0})
    pull = table["pull"]
    assert pull["value"] == pytest.approx(7.0) and pull["weight"] == 0.5
    assert pull["|g| enc"] == pytest.approx(math.sqrt(2)) and pull["|g| head"] == pytest.approx(3.0)
    assert pull["|g| all"] == pytest.approx(math.sqrt(11))
    assert pull["cos"] == pytest.approx(0.0, abs=1e-12)  # (1, -1) . (1, 1) = 0; b is not reached by "sup"
    assert table["against"]["|g| enc"] == pytest.approx(2 * math.sqrt(2))
    assert table["against"]["cos"] == pytest.approx(-1.0)
    for name in ("off", "const"):
        assert table[name]["|g| enc"] == 0.0 and table[name]["|g| head"] == 0.0 and math.isnan(table[name]["cos"])
    # the step's total: 3 + 0.5 * 7 - 2 * 3 + 0 * 15 + 7 = 7.5; gradient a: (1, 1) + (1, -1) + (-2, -2) = (0, -2), b: 3
    total = table["total"]
    assert total["value"] == pytest.approx(7.5) and total["weight"] == 1.0
    assert total["|g| enc"] == pytest.approx(2.0) and total["|g| head"] == pytest.approx(3.0)
    assert total["|g| all"] == pytest.approx(math.sqrt(13))
    assert total["cos"] == pytest.approx(-2 / (2 * math.sqrt(2)))  # (0, -2) . (1, 1) / (2 * sqrt 2)
    # another reference: "pull" against itself is 1, "sup" against "pull" is 0 over the shared parameter a
    other = tg.term_gradients(terms, groups, reference="pull")
    assert other["pull"]["cos"] == pytest.approx(1.0) and other["sup"]["cos"] == pytest.approx(0.0, abs=1e-12)


def test_graph_is_kept_for_the_training_step():
    tg = _module()
    terms, groups = _terms()
    tg.term_gradients(terms, groups)
    total = sum(w * v for v, w in terms.values())
    total.backward()  # would raise if the graph had been freed
    assert groups["enc"][0].grad.tolist() == pytest.approx([1 + 1 - 2, 1 - 1 - 2])
    assert groups["head"][0].grad.tolist() == pytest.approx([3.0])


def test_bad_reference_and_empty_terms():
    tg = _module()
    terms, groups = _terms()
    with pytest.raises(ValueError, match="'nope' is not one of"):
        tg.term_gradients(terms, groups, reference="nope")
    with pytest.raises(ValueError, match="no loss terms"):
        tg.term_gradients({}, groups)


def test_mean_rows_leaves_out_nans():
    tg = _module()
    rows = [{"t": {"value": 1.0, "cos": math.nan}}, {"t": {"value": 3.0, "cos": 0.5}},
            {"t": {"value": 2.0, "cos": math.nan}}]
    mean = tg.mean_rows(rows)["t"]
    assert mean["value"] == pytest.approx(2.0) and mean["cos"] == pytest.approx(0.5)
    assert math.isnan(tg.mean_rows([{"t": {"cos": math.nan}}])["t"]["cos"])


def test_parameter_groups_are_top_level_children_with_trainable_parameters():
    tg = _module()
    net = torch.nn.Sequential()
    net.add_module("encoder", torch.nn.Linear(2, 3))
    net.add_module("act", torch.nn.ReLU())
    net.add_module("frozen", torch.nn.Linear(3, 3).requires_grad_(False))
    net.add_module("head", torch.nn.Linear(3, 1))
    groups = tg.parameter_groups(net)
    assert list(groups) == ["encoder", "head"]
    assert [tuple(p.shape) for p in groups["encoder"]] == [(3, 2), (3,)]


def test_parameter_groups_count_a_shared_encoder_once_as_in_nnunets_decoder(make_trainer):
    """nnU-Net's ``UNetDecoder`` holds the encoder: groups must be disjoint and cover each parameter once."""
    tg = _module()
    from nnunet_scribble.trainers import nnUNetTrainerScribble
    net = make_trainer(nnUNetTrainerScribble).network
    assert net.decoder.encoder is net.encoder  # the reference that made the old columns count the encoder twice
    groups = tg.parameter_groups(net)
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len([p for p in net.parameters() if p.requires_grad])
    assert {id(p) for p in groups["encoder"]} == {id(p) for p in net.encoder.parameters()}
    # "|g| all" is then the norm over the network's parameters: check it on a gradient that is 1 everywhere
    terms = {"t": (sum(p.sum() for p in net.parameters()), 1.0)}
    row = tg.term_gradients(terms, groups)["t"]
    n = sum(p.numel() for p in net.parameters())
    assert row["|g| all"] == pytest.approx(n ** 0.5)
    assert row["|g| encoder"] == pytest.approx(sum(p.numel() for p in net.encoder.parameters()) ** 0.5)


def test_batches_must_be_positive():
    tg = _module()
    with pytest.raises(SystemExit):
        tg.parse_args(["-d", "1", "-tr", "nnUNetTrainerMedCL", "--batches", "0"])


def test_measure_runs_the_trainers_step_and_leaves_weights_and_trainer_as_they_were(make_trainer):
    from nnunet_scribble.trainers.nnUNetTrainerMedCL import nnUNetTrainerMedCL

    tg, bench = _module(), load_benchmark("bench_train_step")
    trainer = make_trainer(nnUNetTrainerMedCL)
    before = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    step = vars(trainer.optimizer).get("step")  # nnU-Net's LR scheduler wraps the instance's step
    batches = [bench.synthetic_batch(trainer, annotated=0.2, seed=s) for s in range(2)]
    table = tg.measure(trainer, batches)
    assert list(table) == ["scribble", "category", "mix", "proto", "cluster", "ac", "total"]
    assert table["scribble"]["cos"] == pytest.approx(1.0)
    assert table["scribble"]["|g| encoder"] > 0 and table["scribble"]["|g| union_head"] == 0.0
    assert table["proto"]["|g| prototypes"] > 0  # the method's own parameters are reported
    after = trainer.network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # measured, not trained
    assert "compute_loss_terms" not in vars(trainer) and vars(trainer.optimizer).get("step") is step
    out = trainer.train_step(batches[0])  # a normal step changes the weights again
    assert math.isfinite(float(out["loss"]))
    assert not all(torch.equal(before[k], v) for k, v in trainer.network.state_dict().items())
