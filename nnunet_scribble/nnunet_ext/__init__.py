"""The folder nnU-Net searches for external trainers (``nnUNet_extTrainer``).

nnU-Net imports every module in this folder as a *top-level* module and removes those modules from
``sys.modules`` afterwards, so the folder holds only one module that re-exports the trainers by absolute import:
the classes nnU-Net finds are then the package's own objects (picklable for spawned workers).
"""
