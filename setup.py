"""Build hook: ship ``nnunet_scribble.pth`` at the top level of site-packages.

Python executes ``import`` lines of ``*.pth`` files in site-packages at start-up. Ours imports
:mod:`nnunet_scribble._startup`, which (1) appends this package's trainer folder to ``nnUNet_extTrainer`` so that
``nnUNetv2_train``/``nnUNetv2_predict -tr <our trainer>`` find the trainers with no set-up step, and (2) guards
``import torchvision`` against the CUDA-built PyPI torchvision next to a CPU torch. Everything else is in setup.cfg.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "nnunet_scribble.pth"
#: The whole content of the start-up file (generated at build time rather than tracked as a file).
PTH_LINE = "import nnunet_scribble._startup\n"


def _write_pth(folder: str) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / PTH).write_text(PTH_LINE)


class BuildPyWithPth(build_py):
    """``build_py`` that also writes the start-up ``.pth`` file into the root of the wheel."""

    def run(self):
        super().run()
        _write_pth(self.build_lib)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / PTH)]


class EditableWheelWithPth(editable_wheel):
    """``pip install -e .``: put the ``.pth`` into the editable wheel too (everything in ``unpacked`` is packed)."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        _write_pth(unpacked_wheel)
        return result


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
