"""Networks built around nnU-Net's planned architecture."""
from nnunet_scribble.networks.lorm import LoRMHead
from nnunet_scribble.networks.multi_decoder import MultiDecoderNetwork, MultiDecoderOutput, channel_dropout

__all__ = ["LoRMHead", "MultiDecoderNetwork", "MultiDecoderOutput", "channel_dropout"]
