#!/usr/bin/env python
"""How hard each loss term of a trainer pushes the network, and in which direction, on real training batches.

The per-term loss values that every trainer logs (``progress_terms.png``) do not say which term drives the weights:
a term with a small value can have a large gradient, and two terms can pull against each other. For a trainer of
this package this script runs nnU-Net's own training step on ``--batches`` training batches of a fold (the trainer's
data loader and augmentation, its ``train_step`` with every method-specific hook) at a checkpoint or at
initialisation, without changing the weights, and prints per loss term

    value           the unweighted term, mean over the batches
    weight          its weight in the total loss (ramps included, as at that checkpoint)
    |g| <module>    the norm of ``weight * d term / d parameters`` of each top-level module of the network
                    (``encoder``, ``decoder``, the method's heads) and of all of them, mean over the batches
    cos <ref>       the cosine between the term's gradient and the reference term's (``--reference``, default the
                    first term: the scribble / supervised loss) over the parameters both reach, mean over batches

A last row ``total`` is the weighted sum that the step back-propagates; nnU-Net clips its gradient to norm 12 over
all parameters. A negative cosine with a norm comparable to the reference's means the term undoes part of the
supervised update.

    python benchmarks/term_gradients.py -d 528 -c 2d -f 0 -tr nnUNetTrainerMedCL -p nnUNetPlans_1p46mm_cpu \\
        --checkpoint final --batches 8

``--checkpoint`` is ``none`` (random initialisation, seeded by ``--seed``), ``final``, ``best`` or a file path; the
hyperparameters stored in the checkpoint (a preset's schedule, which sets the length of the ramps) and the trainer's
extra state (e.g. PCLMix's iteration counter and queue, so its ramped weights) are restored with it; the batches
are drawn after seeding (``--seed``), so every checkpoint of a trainer sees the same ones. ``nnUNet_n_proc_DA``
defaults to 0 here (no augmentation workers). ``nnUNet_scribble_hparams`` applies as in training; a checkpoint's
stored values win over it. ``python benchmarks/reproduce.py term_gradients`` runs it on the MSCMRseg models.
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import random
from collections.abc import Iterable, Sequence

import numpy as np
import torch

_ABSENT = object()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--dataset", required=True, help="dataset name or ID")
    p.add_argument("-c", "--configuration", default="2d")
    p.add_argument("-f", "--fold", default="0")
    p.add_argument("-tr", "--trainer", required=True)
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: %(default)s)")
    p.add_argument("--checkpoint", default="final",
                   help="none, final, best or a checkpoint file (default: %(default)s)")
    p.add_argument("--batches", type=int, default=8, help="training batches to average over (default: %(default)s)")
    p.add_argument("--reference", default=None, help="term the cosines refer to (default: the first term)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the batches")
    p.add_argument("-device", default="cpu", choices=("cpu", "cuda"))
    args = p.parse_args(argv)
    if args.batches < 1:
        p.error(f"--batches must be at least 1, got {args.batches}")
    return args


def parameter_groups(network: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """Trainable parameters by top-level child module (``encoder``, ``decoder``, heads), in registration order.

    Each parameter counts once, in the first child that holds it: nnU-Net's ``UNetDecoder`` keeps a reference to
    the encoder (``decoder.encoder``), so ``decoder.parameters()`` alone would count the encoder twice.
    """
    seen: set[int] = set()
    groups = {}
    for name, child in network.named_children():
        own = [p for p in child.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            groups[name] = own
    return groups


def term_gradients(terms: dict[str, tuple[torch.Tensor, float]], groups: dict[str, Sequence[torch.nn.Parameter]],
                   reference: str | None = None) -> dict[str, dict[str, float]]:
    """Per term: value, weight, norm of the weighted gradient per parameter group, cosine with the reference term.

    The graph is kept (``retain_graph``) so the caller can still back-propagate the total. Parameters a term does not
    reach count as zero gradient. The cosine is over the parameters that both the term and the reference reach
    (NaN when they share none or either gradient is zero there). A last row ``total`` holds the weighted sum of the
    terms and its gradient: what the training step back-propagates, and whose ``|g| all`` nnU-Net's gradient
    clipping (norm 12) compares.

    Args:
        terms: ``{name: (unweighted value, weight)}`` as ``compute_loss_terms`` returns them.
        groups: ``{group name: parameters}``.
        reference: the term the cosines refer to (default: the first).

    Returns:
        ``{term: {"value", "weight", "|g| <group>"..., "|g| all", "cos"}}``, then ``"total"``.
    """
    if not terms:
        raise ValueError("no loss terms")
    reference = next(iter(terms)) if reference is None else reference
    if reference not in terms:
        raise ValueError(f"reference term {reference!r} is not one of {sorted(terms)}")
    names = list(groups)
    params = [p for n in names for p in groups[n]]
    grads: dict[str, list[torch.Tensor | None]] = {}
    for name, (value, weight) in terms.items():
        if value.requires_grad and weight != 0:
            grads[name] = list(torch.autograd.grad(weight * value, params, retain_graph=True, allow_unused=True))
        else:
            grads[name] = [None] * len(params)
    summed = [None if all(g[k] is None for g in grads.values()) else
              sum(g[k] for g in grads.values() if g[k] is not None) for k in range(len(params))]
    total = sum(float(w * v.detach()) for v, w in terms.values())
    rows = [(name, float(value.detach()), float(weight), grads[name]) for name, (value, weight) in terms.items()]
    rows.append(("total", total, 1.0, summed))
    ref = grads[reference]
    out = {}
    for name, value, weight, grad in rows:
        row = {"value": value, "weight": weight}
        i, squares = 0, 0.0
        for group in names:
            group_squares = sum(float((x.double() ** 2).sum()) for x in grad[i:i + len(groups[group])] if x is not None)
            row[f"|g| {group}"] = math.sqrt(group_squares)
            squares += group_squares
            i += len(groups[group])
        row["|g| all"] = math.sqrt(squares)
        shared = [(x, y) for x, y in zip(grad, ref) if x is not None and y is not None]
        dot = sum(float((x.double() * y.double()).sum()) for x, y in shared)
        nx = math.sqrt(sum(float((x.double() ** 2).sum()) for x, _ in shared))
        ny = math.sqrt(sum(float((y.double() ** 2).sum()) for _, y in shared))
        row["cos"] = dot / (nx * ny) if nx > 0 and ny > 0 else math.nan
        out[name] = row
    return out


def mean_rows(rows: Iterable[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean of each number over batches (NaNs left out; NaN when every batch has NaN)."""
    acc: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        for term, values in row.items():
            for key, v in values.items():
                acc.setdefault(term, {}).setdefault(key, []).append(v)
    out = {}
    for term, values in acc.items():
        out[term] = {}
        for key, vs in values.items():
            finite = [v for v in vs if not math.isnan(v)]
            out[term][key] = sum(finite) / len(finite) if finite else math.nan
    return out


def measure(trainer, batches: Iterable[dict], reference: str | None = None) -> dict[str, dict[str, float]]:
    """:func:`term_gradients` of the trainer's own ``train_step`` on each batch, averaged; the weights are unchanged.

    The trainer's ``compute_loss_terms`` is wrapped (so ``train_step`` and its method hooks run as in training) and
    the optimiser's step is skipped; both are restored afterwards. Method state that a step advances (PCLMix's
    iteration counter and queue, MaCo's memory) advances as in training.
    """
    from nnunet_scribble.trainers.common import unwrap_network

    network = unwrap_network(trainer.network)
    network.train()
    groups = parameter_groups(network)
    rows: list[dict[str, dict[str, float]]] = []
    compute = trainer.compute_loss_terms

    def measured(*a, **kw):
        terms = compute(*a, **kw)
        rows.append(term_gradients(terms, groups, reference))
        return terms

    patched = [(trainer, "compute_loss_terms", measured), (trainer.optimizer, "step", lambda *a, **kw: None)]
    if trainer.grad_scaler is not None:
        patched.append((trainer.grad_scaler, "step", lambda *a, **kw: None))
    saved = [(owner, name, vars(owner).get(name, _ABSENT)) for owner, name, _ in patched]
    for owner, name, replacement in patched:
        setattr(owner, name, replacement)
    try:
        for batch in batches:
            trainer.train_step(batch)
    finally:
        for owner, name, original in saved:
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
    if not rows:
        raise ValueError("no batches")
    return mean_rows(rows)


def format_table(table: dict[str, dict[str, float]], reference: str) -> str:
    keys = [k for k in next(iter(table.values())) if k != "cos"]
    head = ["term"] + keys + [f"cos {reference}"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for term, row in table.items():
        lines.append(" | ".join([term] + [f"{row[k]:.4g}" for k in keys] + [f"{row['cos']:+.3f}"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("nnUNet_n_proc_DA", "0")  # a few batches: no augmentation workers unless asked
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunet_scribble.trainers.common import CHECKPOINT_KEY, TrainerCommon
    from nnunet_scribble.trainers.hparams import apply_overrides

    torch.manual_seed(args.seed)
    fold = args.fold if args.fold == "all" else int(args.fold)
    folder = get_output_folder(args.dataset, args.trainer, args.plans, args.configuration, fold)
    logs_before = set(glob.glob(os.path.join(folder, "training_log_*.txt")))
    trainer = get_trainer_from_args(args.dataset, args.configuration, fold, args.trainer, args.plans,
                                    device=torch.device(args.device))
    if not isinstance(trainer, TrainerCommon):
        raise SystemExit(f"{args.trainer} is not a trainer of nnunet_scribble (its loss terms are not named)")
    # messages still reach the console; the model folder keeps its training's logs only (the trainer's constructor
    # has already started a log of its own there: remove it)
    if os.path.isfile(trainer.log_file) and trainer.log_file not in logs_before:
        os.remove(trainer.log_file)
    trainer.log_file = os.devnull
    path = None
    if args.checkpoint != "none":
        path = args.checkpoint
        if args.checkpoint in ("final", "best"):
            path = os.path.join(trainer.output_folder, f"checkpoint_{args.checkpoint}.pth")
        if not os.path.isfile(path):
            raise SystemExit(f"checkpoint not found: {path} (train first, or pass --checkpoint none or a file)")
        # the hyperparameters it was trained with (a preset's schedule sets the ramps' length)
        stored = torch.load(path, map_location="cpu", weights_only=False).get(CHECKPOINT_KEY, {})
        apply_overrides(trainer, stored.get("hyperparameters", {}), f"hyperparameters stored in {path}")
    trainer.initialize()
    if path is not None:
        trainer.load_checkpoint(path)
    trainer.prepare_training_data()  # e.g. CSPNet's pseudo labels (the loader reads them as a second channel)
    # the same batches for every checkpoint (loading one restores the generators of its training)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    loader = trainer.get_dataloaders()[0]
    table = measure(trainer, (next(loader) for _ in range(args.batches)), args.reference)
    reference = args.reference or next(iter(table))
    print(f"{args.trainer} on {args.dataset} {args.configuration} fold {args.fold}, checkpoint {args.checkpoint}, "
          f"{args.batches} training batches (means):")
    print(format_table(table, reference))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
