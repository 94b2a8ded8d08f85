"""Installation: nnU-Net's own trainer lookup finds our trainers in a fresh interpreter with no set-up step."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import nnunet_scribble.trainers as trainers
from nnunet_scribble._startup import EXT_TRAINER_DIR, ensure_torchvision_ops, register_ext_trainer_dir

LOOKUP = """
import json, sys
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
found = {}
for name in sys.argv[1:]:
    cls = recursive_find_trainer_class_by_name(name)
    found[name] = cls.__module__
import os
print("RESULT" + json.dumps({"found": found, "env": os.environ.get("nnUNet_extTrainer")}))
"""


def _run_lookup(names, env_extra=None, unset=("nnUNet_extTrainer",)):
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", LOOKUP, *names], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_nnunet_lookup_finds_every_trainer_without_environment_variable():
    result = _run_lookup(trainers.__all__)
    for name in trainers.__all__:
        assert result["found"][name].startswith("nnunet_scribble.trainers."), result
    assert result["env"].split(os.pathsep) == [EXT_TRAINER_DIR]


def test_user_folders_are_kept(tmp_path):
    result = _run_lookup(["nnUNetTrainerScribble"], {"nnUNet_extTrainer": str(tmp_path)})
    assert result["env"].split(os.pathsep) == [str(tmp_path), EXT_TRAINER_DIR]


def test_register_is_idempotent_and_appends():
    env = {"nnUNet_extTrainer": os.pathsep.join(["/a", "/b"])}
    register_ext_trainer_dir(env)
    register_ext_trainer_dir(env)
    assert env["nnUNet_extTrainer"].split(os.pathsep) == ["/a", "/b", EXT_TRAINER_DIR]
    env = {"nnUNet_extTrainer": EXT_TRAINER_DIR + os.sep}
    register_ext_trainer_dir(env)
    assert env["nnUNet_extTrainer"] == EXT_TRAINER_DIR + os.sep


def test_ext_path_command_prints_the_folder():
    from nnunet_scribble.pipeline import console_script
    out = subprocess.run([console_script("nnunet_scribble_ext_path")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == EXT_TRAINER_DIR
    assert os.path.isfile(os.path.join(out.stdout.strip(), "nnunet_scribble_trainers.py"))


def test_startup_hook_can_be_switched_off():
    result = _run_lookup([], {"NNUNET_SCRIBBLE_NO_STARTUP": "1"})
    assert result["env"] is None


def test_torchvision_imports_in_a_fresh_interpreter():
    """On CPU torch + CUDA-built torchvision this crashes without the start-up guard."""
    proc = subprocess.run([sys.executable, "-c", "import torchvision, torch; print(torchvision.__version__)"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_guard_reports_what_it_did():
    pytest.importorskip("torchvision")
    assert ensure_torchvision_ops() in ("loaded", "declared")
