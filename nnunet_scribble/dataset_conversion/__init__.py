"""Conversion of scribble datasets into nnU-Net v2 raw datasets with an ignore label.

Converters (each with ``main(argv)``; thin scripts in ``dataset_conversion/DatasetXXX_Name.py``):
:mod:`.acdc` (027), :mod:`.mscmr` (028), :mod:`.nifti_folders` (029 prostate, 030 MyoPS), :mod:`.scribblesup`
(031). Tools for any raw dataset: :mod:`.simulate_dataset` (scribbles from dense labels),
:mod:`.degrade_dataset` (shrink/drop), :mod:`.scribble_stats` (statistics vs dense labels); run them with
``python -m nnunet_scribble.dataset_conversion.<module> --help``.
"""
