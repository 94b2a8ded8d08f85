"""NCI-ISBI 2013 prostate image + scribble NIfTI folders -> nnU-Net raw Dataset029_ProstateScribble.

Run with --help for the options (file patterns, unannotated value 0/4/255, labels).
"""
from nnunet_scribble.dataset_conversion.nifti_folders import main

if __name__ == "__main__":
    raise SystemExit(main(preset="prostate"))
