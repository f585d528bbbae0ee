"""pix2pix networks (Isola et al. 2017, §3.2): the U-Net generator with feedback in its decoder, and the
conditional PatchGAN discriminator. Layer for layer the reference's `UnetGenerator` / `NLayerDiscriminator`
(junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py), written as loops instead of nested blocks so
each decoder stage can be reached by an adaptive spatial transform.
"""
from __future__ import annotations

import torch
from torch import nn

from falcli.nn.dims import conv_nd, conv_transpose_nd, norm_nd
from falcli.nn.spatial_transform import FeedbackModules


def unet_widths(base_channels: int, depth: int) -> list[int]:
    """Channels of encoder level j = 0..depth-1: base·2^j, capped at base·8 (pix2pix's ngf·min(2^j, 8))."""
    return [base_channels * min(2 ** j, 8) for j in range(depth)]


def decoder_stage_channels(base_channels: int, depth: int, stages) -> dict[int, int]:
    """Channels of the decoder features at stage k (1/2^k of the output size): those of encoder level k-1."""
    widths = unet_widths(base_channels, depth)
    return {k: widths[k - 1] for k in stages}


class UNetGenerator(nn.Module):
    """pix2pix U-Net: image (B, C_in, S, S) in [-1, 1] → image (B, C_out, S, S) in [-1, 1] (tanh).

    Encoder level j (0-based) halves the size: S/2^(j+1), widths[j] channels; no norm on the first and the
    innermost level. Decoder stage k (k = depth-1 … 0) doubles it back: stage k outputs S/2^k and is
    concatenated with encoder level k-1 as the skip. Stage 0 is the output image; stages 1..depth-1 are the
    feature maps an AST may modulate (`feedback.placement`: 2 and 1 are ¼ and ½ of the output size).
    Dropout 0.5 follows the 8·base-wide stages 4..depth-2, as in pix2pix (3 stages for unet_256).
    With batch norm the convolutions have no bias (the norm's shift replaces it), as in pix2pix.
    """

    def __init__(self, in_channels: int, out_channels: int, base_channels: int, depth: int, norm: str,
                 dropout: bool, feedback: FeedbackModules | None = None):
        super().__init__()
        widths = unet_widths(base_channels, depth)
        bias = norm == "instance"
        self.depth = depth
        self.down = nn.ModuleList()
        for j in range(depth):
            layers: list[nn.Module] = [] if j == 0 else [nn.LeakyReLU(0.2)]
            layers.append(conv_nd(2, in_channels if j == 0 else widths[j - 1], widths[j], 4, stride=2,
                                  padding=1, bias=bias))
            if 0 < j < depth - 1:
                layers.append(norm_nd(2, norm, widths[j], running_stats=False))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for k in range(depth):  # up[k] produces decoder stage k
            inner = widths[k] if k == depth - 1 else 2 * widths[k]  # the innermost stage has no skip yet
            layers = [nn.ReLU()]
            if k == 0:
                layers += [conv_transpose_nd(2, inner, out_channels, 4, stride=2, padding=1), nn.Tanh()]
            else:
                layers += [conv_transpose_nd(2, inner, widths[k - 1], 4, stride=2, padding=1, bias=bias),
                           norm_nd(2, norm, widths[k - 1], running_stats=False)]
                if dropout and 4 <= k <= depth - 2:
                    layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))
        init_pix2pix(self)  # before the feedback modules join: their γ/β heads must stay zero
        self.feedback = feedback

    output_activation = "tanh"          # the last module of up[0]; `pre_activation=True` stops before it

    def forward(self, x: torch.Tensor, feedback: torch.Tensor | None = None,
                pre_activation: bool = False) -> torch.Tensor:
        encoded = self.feedback.encode(feedback) if feedback is not None and self.feedback else None
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)  # level j: (B, widths[j], S/2^(j+1), S/2^(j+1))
        h = skips[-1]
        for k in reversed(range(self.depth)):
            up = self.up[k][:-1] if k == 0 and pre_activation else self.up[k]  # up[0] ends with its Tanh
            h = up(h if k == self.depth - 1 else torch.cat([skips[k], h], dim=1))
            if k > 0:
                if self.feedback is not None:
                    h = self.feedback.apply(k, h, encoded)  # stage k: (B, widths[k-1], S/2^k, S/2^k)
        return h


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: concat(input, output) (B, C, S, S) → logits map (B, 1, S', S').

    `layers` stride-2 4×4 convolutions, then two stride-1 4×4 ones; layers = 3 is pix2pix's 70×70
    PatchGAN (a 256² pair gives a 30×30 map, each logit judging a 70×70 patch). No norm on the first layer.
    """

    def __init__(self, in_channels: int, base_channels: int, layers: int, norm: str):
        super().__init__()
        bias = norm == "instance"
        stack: list[nn.Module] = [conv_nd(2, in_channels, base_channels, 4, stride=2, padding=1),
                                  nn.LeakyReLU(0.2)]
        width = base_channels
        for n in range(1, layers + 1):
            out = base_channels * min(2 ** n, 8)
            stride = 2 if n < layers else 1
            stack += [conv_nd(2, width, out, 4, stride=stride, padding=1, bias=bias),
                      norm_nd(2, norm, out, running_stats=False),
                      nn.LeakyReLU(0.2)]
            width = out
        stack.append(conv_nd(2, width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*stack)
        init_pix2pix(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)



@torch.no_grad()
def init_pix2pix(module: nn.Module) -> None:
    """pix2pix's 'normal' init: conv weights N(0, 0.02), biases 0; batch-norm scales N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
