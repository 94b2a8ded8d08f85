"""nnU-Net trainers of this package. Every public trainer class is re-exported here (and, through
:mod:`nnunet_scribble.nnunet_ext.nnunet_scribble_trainers`, found by ``nnUNetv2_train -tr <name>``)."""
from nnunet_scribble.trainers.nnUNetTrainerCSPNet import (nnUNetTrainerCSPNet, nnUNetTrainerCSPNetBasic,
                                                          nnUNetTrainerCSPNetDPMRamp, nnUNetTrainerCSPNetNoDc,
                                                          nnUNetTrainerCSPNetNoDPM, nnUNetTrainerCSPNetNoDs,
                                                          nnUNetTrainerCSPNetNoLoRM)
from nnunet_scribble.trainers.nnUNetTrainerDMPLS import nnUNetTrainerDMPLS
from nnunet_scribble.trainers.nnUNetTrainerFullySupervised import nnUNetTrainerFullySupervised
from nnunet_scribble.trainers.nnUNetTrainerMaCo import (nnUNetTrainerMaCo, nnUNetTrainerMaCoHardPL,
                                                        nnUNetTrainerMaCoNoCPL, nnUNetTrainerMaCoNoMCM,
                                                        nnUNetTrainerMaCoPerClassN, nnUNetTrainerMaCoRandomMask)
from nnunet_scribble.trainers.nnUNetTrainerMedCL import (nnUNetTrainerMedCL, nnUNetTrainerMedCLNoAC,
                                                         nnUNetTrainerMedCLNoCategory, nnUNetTrainerMedCLNoCluster,
                                                         nnUNetTrainerMedCLNoMix, nnUNetTrainerMedCLUnionSum)
from nnunet_scribble.trainers.nnUNetTrainerPCLMix import (nnUNetTrainerPCLMix, nnUNetTrainerPCLMixNoContrast,
                                                          nnUNetTrainerPCLMixNoHet, nnUNetTrainerPCLMixNoMix,
                                                          nnUNetTrainerPCLMixNoTFSup)
from nnunet_scribble.trainers.nnUNetTrainerScribble import nnUNetTrainerScribble

__all__ = ["nnUNetTrainerCSPNet", "nnUNetTrainerCSPNetBasic", "nnUNetTrainerCSPNetDPMRamp", "nnUNetTrainerCSPNetNoDc",
           "nnUNetTrainerCSPNetNoDPM", "nnUNetTrainerCSPNetNoDs", "nnUNetTrainerCSPNetNoLoRM", "nnUNetTrainerDMPLS",
           "nnUNetTrainerFullySupervised",
           "nnUNetTrainerMaCo", "nnUNetTrainerMaCoHardPL",
           "nnUNetTrainerMaCoNoCPL", "nnUNetTrainerMaCoNoMCM", "nnUNetTrainerMaCoPerClassN",
           "nnUNetTrainerMaCoRandomMask", "nnUNetTrainerScribble",
           "nnUNetTrainerPCLMix", "nnUNetTrainerPCLMixNoContrast", "nnUNetTrainerPCLMixNoHet",
           "nnUNetTrainerPCLMixNoMix", "nnUNetTrainerPCLMixNoTFSup",
           "nnUNetTrainerMedCL", "nnUNetTrainerMedCLNoAC", "nnUNetTrainerMedCLNoCategory",
           "nnUNetTrainerMedCLNoCluster", "nnUNetTrainerMedCLNoMix", "nnUNetTrainerMedCLUnionSum"]
