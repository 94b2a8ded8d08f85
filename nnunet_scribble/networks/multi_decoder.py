"""A planned nnU-Net network with extra decoders on its encoder, for multi-branch scribble methods.

:class:`MultiDecoderNetwork` wraps the network that nnU-Net builds from the plans (``PlainConvUNet``,
``ResidualEncoderUNet`` or any module with an ``encoder`` and a ``UNetDecoder`` ``decoder``, 2D or 3D) and adds
auxiliary decoders of the same kind on the same encoder:

- eval mode returns exactly what the planned network returns (a tensor, or the deep-supervision list), so nnU-Net's
  online validation, final validation and ``nnUNetv2_predict`` work unchanged and cost the same as plain nnU-Net;
- training mode returns a :class:`MultiDecoderOutput` with the main output, one output per auxiliary decoder and,
  if asked, the encoder's feature maps;
- ``encoder`` and ``decoder`` keep their names and their state_dict keys, so the main part of the state_dict is the
  planned network's. The auxiliary decoders do not re-register the encoder (see :func:`build_auxiliary_decoder`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

Output = torch.Tensor | list[torch.Tensor]


@dataclass
class MultiDecoderOutput:
    """Training-mode output of :class:`MultiDecoderNetwork`.

    Attributes:
        main: output of the main (inference) decoder: ``(B, C, *spatial)``, or a list with one tensor per
            deep-supervision scale, full resolution first, exactly as the planned network returns it.
        aux: one output per auxiliary decoder, each in the same form as ``main``.
        features: the encoder's feature maps (skips, highest resolution first, bottleneck last) when the network's
            ``return_features`` is true, else ``None``. These are the clean maps that the main decoder sees.
        embeddings: output of the network's ``head`` on encoder stage ``head_stage`` when it has one, else ``None``.
    """

    main: Output
    aux: list[Output] = field(default_factory=list)
    features: list[torch.Tensor] | None = None
    embeddings: torch.Tensor | None = None


def channel_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Drop whole channels with probability ``p`` and rescale the rest by ``1/(1-p)`` (any spatial dimension).

    The dimension-agnostic equivalent of ``torch.nn.functional.dropout2d``/``dropout3d``: one Bernoulli draw per
    sample and channel. Identity when ``training`` is false or ``p`` is 0.

    Shape:
        x: ``(B, C, *spatial)``; returns the same shape.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"channel dropout probability must be in [0, 1), got p={p}")
    if not training or p == 0.0:
        return x
    keep = torch.empty(x.shape[:2] + (1,) * (x.ndim - 2), device=x.device, dtype=x.dtype).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


def build_auxiliary_decoder(decoder: UNetDecoder, encoder: nn.Module, init: object | None = None) -> UNetDecoder:
    """A decoder with the structure of ``decoder`` (stages, norm, dropout, deep supervision, heads), new weights.

    The decoder is deep-copied (so every structural option of the planned decoder is kept, for plain and residual
    encoders alike) with the encoder shared rather than copied, then re-initialised with ``init`` (nnU-Net's
    ``network.initialize``; modules' own ``reset_parameters`` when ``None``), so that the two branches start apart.

    ``UNetDecoder`` registers its encoder as a submodule. Left as is, the auxiliary decoder would re-list every encoder
    tensor in the state_dict under ``<name>.encoder.*``. The reference is therefore removed from ``_modules`` and kept
    as a plain attribute (``UNetDecoder.compute_conv_feature_map_size`` still reads it); its parameters are owned by
    the wrapper's ``encoder``.
    """
    if not isinstance(decoder, UNetDecoder):
        raise TypeError(f"the planned network's decoder must be a dynamic_network_architectures UNetDecoder, "
                        f"got {type(decoder).__name__}")
    aux = copy.deepcopy(decoder, memo={id(encoder): encoder, id(decoder.encoder): encoder})
    del aux._modules["encoder"]
    aux.__dict__["encoder"] = encoder
    for module in aux.modules():
        if init is not None:
            init(module)
        elif module is not aux and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return aux


class MultiDecoderNetwork(nn.Module):
    """Planned encoder + main decoder + ``num_aux`` auxiliary decoders (see the module docstring).

    Args:
        base: the planned network (``nnUNetTrainer.build_network_architecture``); its ``encoder`` and ``decoder``
            become this module's ``encoder`` and ``decoder``.
        num_aux: number of auxiliary decoders.
        aux_feature_dropout: channel dropout probability applied, in training only, to every encoder feature map fed
            to the auxiliary decoders (each decoder gets its own draw). The main decoder sees clean features.
        return_features: in training mode, also return the encoder feature maps.
        aux_decoders: decoders of another kind to use as auxiliary decoders instead of ``num_aux`` copies of the
            planned one (e.g. a transformer decoder); each takes the skips and returns what ``UNetDecoder`` returns.
        head: a module applied, in training mode, to encoder stage ``head_stage`` (e.g. a projection head); its output
            is :attr:`MultiDecoderOutput.embeddings`. Not run in eval mode.
        head_stage: index of the encoder stage (skips order) that ``head`` reads.

    Random draws (the dropout masks) happen inside ``forward`` but do not change shapes or control flow, so the
    module traces under ``torch.compile`` (checked with the ``aot_eager`` backend, training and eval mode).
    Every decoder keeps its own ``deep_supervision`` flag; ``TrainerCommon.set_deep_supervision_enabled`` switches
    all of them. Each parameter reaches the loss as long as the trainer uses every returned output (DDP needs that).
    """

    def __init__(self, base: nn.Module, num_aux: int = 1, aux_feature_dropout: float = 0.0,
                 return_features: bool = False, aux_decoders: list[nn.Module] | None = None,
                 head: nn.Module | None = None, head_stage: int = -1):
        super().__init__()
        if not hasattr(base, "encoder") or not hasattr(base, "decoder"):
            raise TypeError(f"expected a planned nnU-Net network with 'encoder' and 'decoder' attributes, "
                            f"got {type(base).__name__}")
        if num_aux < 0:
            raise ValueError(f"num_aux must be >= 0, got {num_aux}")
        if not 0.0 <= aux_feature_dropout < 1.0:
            raise ValueError(f"aux_feature_dropout must be in [0, 1), got {aux_feature_dropout}")
        self.encoder = base.encoder
        self.decoder = base.decoder
        init = getattr(base, "initialize", None)
        if aux_decoders is not None:
            self.aux_decoders = nn.ModuleList(aux_decoders)
        else:
            self.aux_decoders = nn.ModuleList(build_auxiliary_decoder(base.decoder, base.encoder, init)
                                              for _ in range(num_aux))
        self.aux_feature_dropout = aux_feature_dropout
        self.return_features = return_features
        self.head = head
        self.head_stage = head_stage

    def forward(self, x: torch.Tensor) -> Output | MultiDecoderOutput:
        skips = self.encoder(x)
        main = self.decoder(skips)
        if not self.training:
            return main
        aux = [dec([channel_dropout(s, self.aux_feature_dropout) for s in skips]) for dec in self.aux_decoders]
        embeddings = self.head(skips[self.head_stage]) if self.head is not None else None
        return MultiDecoderOutput(main=main, aux=aux, features=list(skips) if self.return_features else None,
                                  embeddings=embeddings)

    def compute_conv_feature_map_size(self, input_size: list[int]) -> int:
        """Feature-map size estimate of nnU-Net's planners (main path plus auxiliary decoders)."""
        total = self.encoder.compute_conv_feature_map_size(input_size)
        return total + sum(d.compute_conv_feature_map_size(input_size) for d in [self.decoder, *self.aux_decoders])
