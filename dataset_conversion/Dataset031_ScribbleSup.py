"""PASCAL VOC 2012 + ScribbleSup scribbles -> nnU-Net raw Dataset031_ScribbleSup (natural-image 2D, RGB PNG).

Example:
    python dataset_conversion/Dataset031_ScribbleSup.py /data/VOC2012 -s /data/scribble_annotation/pascal_2012
Run with --help for the options.
"""
from nnunet_scribble.dataset_conversion.scribblesup import main

if __name__ == "__main__":
    raise SystemExit(main())
