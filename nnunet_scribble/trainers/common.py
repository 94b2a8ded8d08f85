"""Machinery shared by every trainer of this package (scribble methods and the fully supervised upper bound).

:class:`TrainerCommon` extends nnU-Net's ``nnUNetTrainer`` without changing its behaviour unless asked:

- typed hyperparameters that survive nnU-Net's ``__init__`` and can be overridden through the environment
  (:mod:`nnunet_scribble.trainers.hparams`), printed into the training log;
- one training step written once: :meth:`TrainerCommon.compute_loss_terms` returns named loss terms with weights;
  the step sums them, back-propagates (AMP and gradient clipping as nnU-Net does) and every term is logged per epoch
  (terminal/log file and ``progress_terms.png``, next to nnU-Net's ``progress.png``);
- the code that trained the model in checkpoints (version, git commit: :mod:`nnunet_scribble.provenance`);
- extra method state in checkpoints (:meth:`get_extra_checkpoint_state` / :meth:`load_extra_checkpoint_state`) and
  the random number generators' states (Python, NumPy, torch CPU/CUDA), written atomically (temporary file +
  ``os.replace``) so a kill while saving never corrupts the last checkpoint; ``--c`` restores both (the generators
  only for training, so that in-process data augmentation and per-iteration draws such as DMPLS's beta or MaCo's
  masks continue the sequence they would have followed; with background augmentation workers nnU-Net's own
  augmentation is not reproducible anyway; not under DDP, where every rank would get rank 0's states);
- deep supervision switched on/off on *every* decoder of the network, not only ``network.decoder``;
- when the raw dataset has dense labels for its training cases (``nnUNet_raw/<dataset>/labelsTr_dense``), the final
  validation also reports Dice and HD95 against them (``validation/summary_dense.json`` and ``.md``).
"""
from __future__ import annotations

import math
import os
import random
from typing import Any, ClassVar

import numpy as np
import torch
from torch import distributed as dist
from torch._dynamo import OptimizedModule

from nnunetv2.paths import nnUNet_raw
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context

from nnunet_scribble import provenance
from nnunet_scribble.atomic import atomic_torch_save
from nnunet_scribble.trainers import hparams as hp

#: Prefix of per-term keys in train_step outputs and in nnU-Net's logger.
TERM_PREFIX = "term_"
#: Checkpoint key holding this package's extra state.
CHECKPOINT_KEY = "nnunet_scribble"

LossTerms = dict[str, tuple[torch.Tensor, float]]


def capture_rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU and every CUDA device) global random number generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only when the same number of devices is visible)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """Return the plain module inside DDP and/or ``torch.compile`` wrappers."""
    if isinstance(network, torch.nn.parallel.DistributedDataParallel):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


def describe_state(state: Any) -> str:
    """Short description of checkpoint state for the training log: keys, tensor shapes and sums, numbers."""
    if isinstance(state, dict):
        return "{" + ", ".join(f"{k}: {describe_state(v)}" for k, v in state.items()) + "}" if state else "{}"
    if isinstance(state, torch.Tensor):
        return f"tensor{tuple(state.shape)} sum {float(state.double().sum()):.6g}"
    if isinstance(state, (int, float, bool, str)):
        return repr(state)
    return type(state).__name__


class TrainerCommon(nnUNetTrainer):
    """nnU-Net trainer with typed hyperparameters, named loss terms, extra checkpoint state and dense evaluation.

    Subclasses keep nnU-Net's ``__init__`` signature; they declare hyperparameters as typed class attributes and
    nnU-Net's own knobs in :attr:`trainer_defaults`.
    """

    #: Overrides of nnU-Net's own attributes (``num_epochs``, ``initial_lr``, ...) applied after its ``__init__``.
    trainer_defaults: ClassVar[dict[str, Any]] = {}
    #: Gradient-norm clip of the training step (nnU-Net's constant).
    grad_clip_norm: float = 12.0
    #: Mirroring test-time augmentation in final validation and (through the checkpoint) in nnUNetv2_predict.
    #: nnU-Net's default is on; the CPU benchmark preset switches it off (4x fewer forward passes per patch).
    test_time_mirroring: bool = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        hp.apply_overrides(self, self.trainer_defaults, f"{type(self).__name__}.trainer_defaults")
        source = f"dataset.json of {plans.get('dataset_name', '<dataset>')}"
        self.dataset_overrides = hp.apply_overrides(self, self.dataset_hyperparameters(dataset_json), source)
        if self.dataset_overrides:
            self.print_to_log_file(f"Hyperparameters set by the {source}: {self.dataset_overrides}")
        self.hparam_overrides = hp.apply_overrides(self, hp.parse_env_overrides(), hp.HPARAMS_ENV)
        if self.hparam_overrides:
            self.print_to_log_file(f"Hyperparameters overridden by {hp.HPARAMS_ENV}: {self.hparam_overrides}")
        self.print_to_log_file(f"{type(self).__name__} hyperparameters: {hp.current_hyperparameters(self)}")
        self.print_to_log_file(f"nnunet_scribble code: {provenance.describe(provenance.code_version())}")

    def dataset_hyperparameters(self, dataset_json: dict) -> dict[str, Any]:
        """Hyperparameter values that the dataset itself declares in its ``dataset.json`` (default: none).

        Applied after :attr:`trainer_defaults` and before ``nnUNet_scribble_hparams`` (which wins), type-checked
        like both and printed into the training log. For what a converter knows about its labels and a trainer
        must not get wrong (see :meth:`nnUNetTrainerScribble.dataset_hyperparameters`).
        """
        return {}

    # ------------------------------------------------------------------ training step
    def compute_loss_terms(self, data: torch.Tensor, target: torch.Tensor | list[torch.Tensor],
                           extra: torch.Tensor | None = None) -> LossTerms:
        """Forward pass and loss terms of one batch: ``{name: (unweighted value, weight)}``.

        Args:
            data: ``(B, C, *spatial)`` images.
            target: label maps, one ``(B, 1, *spatial_s)`` tensor per deep-supervision scale (a tensor without deep
                supervision), exactly what nnU-Net's loss expects.
            extra: ``(B, K, *spatial)`` full-resolution extra target channels appended by
                :meth:`extra_target_transforms` (e.g. distance maps), or ``None``.

        The default is nnU-Net's supervised loss (``self.loss``, with deep supervision). Method trainers return their
        own terms; the total loss is ``sum(weight * value)``.
        """
        return {"sup": (self.loss(self.network(data), target), 1.0)}

    @staticmethod
    def split_target(target: torch.Tensor | list[torch.Tensor]
                     ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | None]:
        """Split channel 0 (labels, every scale) from extra channels (full resolution only)."""
        first = target[0] if isinstance(target, list) else target
        if first.shape[1] == 1:
            return target, None
        extra = first[:, 1:]
        labels = [t[:, :1] for t in target] if isinstance(target, list) else target[:, :1]
        return labels, extra

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) else \
            target.to(self.device, non_blocking=True)
        target, extra = self.split_target(target)
        self.optimizer.zero_grad(set_to_none=True)
        # autocast only on CUDA, as in nnU-Net (slow on CPU, unsupported on MPS)
        with torch.autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            terms = self.compute_loss_terms(data, target, extra)
            total = sum(weight * value for value, weight in terms.values())
        if self.grad_scaler is not None:
            self.grad_scaler.scale(total).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip_norm)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip_norm)
            self.optimizer.step()
        out = {"loss": total.detach().cpu().numpy()}
        out.update({TERM_PREFIX + name: float(value.detach()) for name, (value, _) in terms.items()})
        out.update({TERM_PREFIX + name + "@w": float(weight) for name, (_, weight) in terms.items()})
        return out

    # ------------------------------------------------------------------ per-term logging
    def on_train_epoch_end(self, train_outputs: list[dict]):
        super().on_train_epoch_end(train_outputs)
        keys = [k for k in train_outputs[0] if k.startswith(TERM_PREFIX)] if train_outputs else []
        for key in keys:
            values = [o[key] for o in train_outputs if key in o]
            mean = float(np.nanmean(values)) if values else math.nan
            if self.is_ddp:
                gathered = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, mean)
                mean = float(np.nanmean(gathered))
            self._log_term(key, mean)

    def _log_term(self, key: str, value: float) -> None:
        """Log a per-term epoch mean in nnU-Net's logger, registering the key (NaN-padded) on first use."""
        store = self.logger.local_logger.my_fantastic_logging
        history = store.setdefault(key, [])
        history.extend([math.nan] * (self.current_epoch - len(history)))
        self.logger.log(key, value, self.current_epoch)

    def logged_terms(self) -> dict[str, list[float]]:
        """``{term name: per-epoch means}`` of the loss terms (weights excluded)."""
        store = self.logger.local_logger.my_fantastic_logging
        return {k[len(TERM_PREFIX):]: v for k, v in store.items() if k.startswith(TERM_PREFIX) and "@" not in k}

    def on_epoch_end(self):
        terms = self.logged_terms()
        store = self.logger.local_logger.my_fantastic_logging
        if terms:
            parts = []
            for name, values in terms.items():
                weights = store.get(TERM_PREFIX + name + "@w", [])
                w = weights[self.current_epoch] if len(weights) > self.current_epoch else math.nan
                v = values[self.current_epoch] if len(values) > self.current_epoch else math.nan
                parts.append(f"{name} {v:.4f} (w {w:.3g})")
            self.print_to_log_file("loss terms: " + ", ".join(parts))
        super().on_epoch_end()
        if self.local_rank == 0 and terms:
            from nnunet_scribble.trainers.plotting import plot_loss_terms
            plot_loss_terms(self.logged_terms(), os.path.join(self.output_folder, "progress_terms.png"))

    # ------------------------------------------------------------------ deep supervision on every decoder
    def set_deep_supervision_enabled(self, enabled: bool):
        """Toggle deep supervision on every submodule that has a ``deep_supervision`` flag (all decoders)."""
        for module in unwrap_network(self.network).modules():
            if isinstance(getattr(module, "deep_supervision", None), bool):
                module.deep_supervision = enabled

    # ------------------------------------------------------------------ data beyond nnU-Net's preprocessed folder
    def on_train_start(self):
        if not self.was_initialized:
            self.initialize()
        self.prepare_training_data()
        super().on_train_start()

    def prepare_training_data(self) -> None:
        """Make what the training data loader reads beyond nnU-Net's preprocessed data (default: nothing).

        ``on_train_start`` calls it before the loaders are built (CSPNet: the fold's pseudo labels); tools that draw
        training batches without ``on_train_start`` (``benchmarks/term_gradients.py``) call it after
        ``initialize()``.
        """

    # ------------------------------------------------------------------ checkpoints
    def get_extra_checkpoint_state(self) -> dict[str, Any]:
        """Method state to store in checkpoints (tensors, numbers, state_dicts; no custom objects)."""
        return {}

    def load_extra_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_checkpoint_state` returned."""

    def save_checkpoint(self, filename: str) -> None:
        # nnU-Net's checkpoint content plus our key; written to a temporary file first, then renamed
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        checkpoint = {
            "network_weights": unwrap_network(self.network).state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": self._best_ema,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
            CHECKPOINT_KEY: {"hyperparameters": hp.current_hyperparameters(self), "code": provenance.code_version(),
                             "state": self.get_extra_checkpoint_state(), "rng": capture_rng_state()},
        }
        atomic_torch_save(checkpoint, filename)  # also removes leftovers of runs killed while writing it

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        if isinstance(filename_or_checkpoint, str):
            # nnU-Net 2.8.1's load_checkpoint only works with a file name (a dict argument hits an unbound name)
            super().load_checkpoint(filename_or_checkpoint)
            checkpoint = torch.load(filename_or_checkpoint, map_location=self.device, weights_only=False)
        else:
            raise TypeError(f"load_checkpoint expects a checkpoint file name, got {type(filename_or_checkpoint)}")
        extra = checkpoint.get(CHECKPOINT_KEY)
        if extra is None:
            self.print_to_log_file(f"WARNING: {filename_or_checkpoint} has no '{CHECKPOINT_KEY}' state "
                                   f"(written by another trainer?); method state starts fresh")
            return
        self.load_extra_checkpoint_state(extra.get("state", {}))
        # rank 0's generator states on every rank would make the ranks draw identical batches: single process only
        rng = "rng" in extra and not self.is_ddp
        if rng:
            restore_rng_state(extra["rng"])
        self.print_to_log_file(f"Restored from {filename_or_checkpoint}: epoch {checkpoint['current_epoch']}, method "
                               f"state {describe_state(extra.get('state', {}))}"
                               + (", random generator states" if rng else ""))

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        result = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.test_time_mirroring:  # training augmentation keeps its mirroring; only inference changes
            self.inference_allowed_mirroring_axes = None
        return result

    # ------------------------------------------------------------------ dense evaluation of the final validation
    def perform_actual_validation(self, save_probabilities: bool = False):
        if not self.test_time_mirroring:  # also for checkpoints written with mirroring (--val)
            self.inference_allowed_mirroring_axes = None
        super().perform_actual_validation(save_probabilities)
        if self.local_rank == 0:
            self.evaluate_validation_against_dense_labels()

    def evaluate_validation_against_dense_labels(self) -> dict | None:
        """Score ``fold_X/validation`` against ``nnUNet_raw/<dataset>/labelsTr_dense`` if that folder exists."""
        if not nnUNet_raw.is_set():
            self.print_to_log_file("nnUNet_raw is not set: no dense evaluation of the validation cases")
            return None
        dense = os.path.join(nnUNet_raw.get(), self.plans_manager.dataset_name, "labelsTr_dense")
        if not os.path.isdir(dense):
            self.print_to_log_file(f"No dense labels at {dense}: the validation Dice above is the only one "
                                   f"(on scribble data it scores annotated voxels only)")
            return None
        from nnunet_scribble.evaluation import cases_with_reference, evaluate_folder, format_table

        val_folder = os.path.join(self.output_folder, "validation")
        ending = self.dataset_json["file_ending"]
        predicted = sorted(f[:-len(ending)] for f in os.listdir(val_folder) if f.endswith(ending))
        cases, undocumented = cases_with_reference(dense, predicted, ending)
        if not cases:
            self.print_to_log_file(f"No dense labels in {dense} for the {len(predicted)} validation cases: the "
                                   f"validation Dice above is the only one")
            return None
        labels = {k: v for k, v in self.dataset_json["labels"].items() if k != "ignore"}
        summary = evaluate_folder(dense, val_folder, labels=labels, file_ending=ending, cases=cases,
                                  output_json=os.path.join(val_folder, "summary_dense.json"),
                                  output_markdown=os.path.join(val_folder, "summary_dense.md"))
        scored = f", {len(cases)} of {len(predicted)} validation cases; the others have no dense label" \
            if undocumented else ""
        self.print_to_log_file(f"Validation against dense labels (labelsTr_dense{scored}):\n" + format_table(summary),
                               also_print_to_console=True)
        for name, metrics in summary["per_class"].items():
            self.logger.log_summary(f"final_val_dense/{name}_dice", metrics["Dice"]["mean"])
        self.logger.log_summary("final_val_dense/mean_dice", summary["mean"]["Dice"]["mean"])
        return summary
