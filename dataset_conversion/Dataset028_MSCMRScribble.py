"""MSCMRseg + CycleMix scribbles -> nnU-Net raw Dataset028_MSCMRScribble (25/5/15 split of the papers).

Example:
    python dataset_conversion/Dataset028_MSCMRScribble.py /data/MSCMR
Run with --help for the options.
"""
from nnunet_scribble.dataset_conversion.mscmr import main

if __name__ == "__main__":
    raise SystemExit(main())
