"""Stand-ins for the GFPGAN restorer's networks: small random-weight convolutional networks with the real ones'
call signatures, laid out as gifstream.restore.gfpgan.load_networks lays out the real ones."""

from __future__ import annotations

import torch
from torch import nn

from gifstream.restore.gfpgan import ChannelsLast, GfpganNetworks


class TinyFaceNet(nn.Module):
    """Stand-in for GFPGANv1Clean: a residual pair of random 3x3 convolutions, output in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, return_rgb: bool = False, weight: float = 0.5) -> tuple[torch.Tensor, list]:
        return torch.tanh(x + 0.5 * self.body(x)), []


class TinyParser(nn.Module):
    """Stand-in for ParseNet: 19 class logits from one random convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Conv2d(3, 19, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.logits(x), None


def tiny_networks() -> GfpganNetworks:
    """Random-weight stand-ins, laid out as load_networks lays out the real ones (parser, background channels-last)."""
    torch.manual_seed(0)
    background = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    return GfpganNetworks(
        face=TinyFaceNet().eval(),
        parser=ChannelsLast(TinyParser().eval().to(memory_format=torch.channels_last)),
        background=background.to(memory_format=torch.channels_last),
    )
