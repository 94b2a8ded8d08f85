"""ACDC + Valvano scribbles -> nnU-Net raw Dataset027_ACDCScribble (official NIfTI or WSL4MIS h5 layout).

Example:
    python dataset_conversion/Dataset027_ACDCScribble.py /data/ACDC -s /data/ACDC/scribbles_valvano
Run with --help for the options (default: ID 027, 5-fold patient split of DMPLS/PCLMix).
"""
from nnunet_scribble.dataset_conversion.acdc import main

if __name__ == "__main__":
    raise SystemExit(main())
