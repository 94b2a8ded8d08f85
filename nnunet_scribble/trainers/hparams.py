"""Typed trainer hyperparameters that survive ``nnUNetTrainer.__init__`` and can be overridden without code.

nnU-Net's trainer assigns its own knobs (``num_epochs``, ``initial_lr``, ...) as instance attributes inside
``__init__``, which shadows class attributes of a subclass, and its ``__init__`` signature must not grow
(``my_init_kwargs`` is built from ``locals()``). So hyperparameters are handled in two layers, applied once right
after ``super().__init__``:

1. ``trainer_defaults`` (a class-level mapping) for nnU-Net's own attributes, e.g. a short-schedule variant
   ``trainer_defaults = {"num_epochs": 50}``; method hyperparameters are plain typed class attributes
   (``lambda_pls: float = 0.5``) and need no mapping.
2. The environment variable ``nnUNet_scribble_hparams``: a JSON object such as
   ``'{"num_epochs": 5, "num_iterations_per_epoch": 50, "lambda_pls": 0.3}'``, applied last. It lets the benchmark
   runner and the demo shorten any trainer (ours and the fully supervised upper bound) through the real
   ``nnUNetv2_train`` command. Every override is type-checked against the attribute's current value, and the
   trainer prints all overridden values into its training log.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

HPARAMS_ENV = "nnUNet_scribble_hparams"


def parse_env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the overrides in ``nnUNet_scribble_hparams`` (empty dict if unset).

    Raises:
        ValueError: if the variable is not a JSON object.
    """
    raw = (os.environ if environ is None else environ).get(HPARAMS_ENV, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{HPARAMS_ENV} must be a JSON object like '{{\"num_epochs\": 5}}', got {raw!r} ({e})")
    if not isinstance(value, dict):
        raise ValueError(f"{HPARAMS_ENV} must be a JSON object like '{{\"num_epochs\": 5}}', got {raw!r}")
    return value


def _coerce(name: str, current: Any, value: Any, source: str) -> Any:
    """Check ``value`` against the type of ``current`` (int -> float promotion allowed)."""
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(current, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = type(current)(value) if ok else value
    elif current is None:
        ok = True
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise ValueError(f"{source}: hyperparameter {name!r} expects {type(current).__name__} "
                         f"(current value {current!r}), got {value!r}")
    return value


def apply_overrides(trainer: Any, overrides: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Set each ``name: value`` of ``overrides`` on ``trainer`` after checking that it names a known attribute.

    Returns:
        The applied ``{name: value}`` mapping.

    Raises:
        ValueError: for an unknown name (the message lists the trainer's hyperparameters) or a mistyped value.
    """
    applied = {}
    for name, value in overrides.items():
        if name.startswith("_") or not hasattr(trainer, name) or callable(getattr(trainer, name)):
            known = ", ".join(sorted(hyperparameter_names(trainer)))
            raise ValueError(f"{source}: {type(trainer).__name__} has no hyperparameter {name!r}. Known: {known}")
        applied[name] = _coerce(name, getattr(trainer, name), value, source)
        setattr(trainer, name, applied[name])
    return applied


#: nnU-Net's own training knobs that may be overridden (set in ``nnUNetTrainer.__init__``).
NNUNET_KNOBS = ("initial_lr", "weight_decay", "oversample_foreground_percent", "probabilistic_oversampling",
                "num_iterations_per_epoch", "num_val_iterations_per_epoch", "num_epochs", "enable_deep_supervision",
                "save_every", "disable_checkpointing")


def hyperparameter_names(trainer: Any) -> list[str]:
    """nnU-Net's knobs plus every annotated class attribute of the trainer's class hierarchy."""
    names = set(NNUNET_KNOBS)
    for cls in type(trainer).__mro__:
        names.update(n for n in getattr(cls, "__annotations__", {}) if not n.startswith("_") and n.islower()
                     and not n.startswith("trainer_defaults"))
    return sorted(n for n in names if hasattr(trainer, n))


def current_hyperparameters(trainer: Any) -> dict[str, Any]:
    """``{name: value}`` of :func:`hyperparameter_names` (for the training log and checkpoints)."""
    return {n: getattr(trainer, n) for n in hyperparameter_names(trainer)}


def class_hyperparameters(trainer_cls: type) -> dict[str, Any]:
    """``{name: value}`` a new instance of ``trainer_cls`` starts from, read without building it.

    The annotated public class attributes of its hierarchy (the method hyperparameters) plus its
    ``trainer_defaults``; nnU-Net's knobs that only ``nnUNetTrainer.__init__`` sets are not included (their values
    need an instance: plans, device).
    """
    values = {}
    for cls in reversed(trainer_cls.__mro__):
        for name in vars(cls).get("__annotations__", {}):
            if (not name.startswith("_") and name.islower() and not name.startswith("trainer_defaults")
                    and hasattr(trainer_cls, name) and not callable(getattr(trainer_cls, name))):
                values[name] = getattr(trainer_cls, name)
    values.update(getattr(trainer_cls, "trainer_defaults", {}))
    return values


NOT_RECORDED = "<not recorded>"  #: stands for a hyperparameter a checkpoint predates in :func:`differences`


def differences(recorded: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{name: (recorded value, expected value)}`` for every name of ``expected`` whose value ``recorded`` does not
    hold (tuples and lists compare equal; a name missing from ``recorded`` appears as :data:`NOT_RECORDED`).

    Used to tell that a reused model (its checkpoint records :func:`current_hyperparameters`) was trained with
    other settings than the current code and overrides would use, e.g. before a default changed.
    """
    def plain(v):
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    return {name: (recorded.get(name, NOT_RECORDED), now) for name, now in expected.items()
            if name not in recorded or plain(recorded[name]) != plain(now)}


def format_differences(diff: Mapping[str, Any]) -> str:
    """``"name 'then' -> 'now', ..."`` for :func:`differences`' result or its JSON form ``{name: {"checkpoint": then,
    "now": now}}`` (the ``reused_model_differs`` entry of ``run_quality.py``'s summaries)."""
    pairs = ((k, (v["checkpoint"], v["now"]) if isinstance(v, Mapping) else v) for k, v in diff.items())
    return ", ".join(f"{name} {then!r} -> {now!r}" for name, (then, now) in pairs)
