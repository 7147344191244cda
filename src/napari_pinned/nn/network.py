"""The PINNED network (:class:`PinnedNetwork`) and a trained model (:class:`ModelBundle`).

Architecture (Awan et al., "Physics Informed Neural Network Enhanced Denoising for
Atomic Resolution STEM Imaging" (PINNED), Methods): a convolutional
encoder–decoder.  Every encoder and decoder block applies three successive 3×3
convolutions, each followed by a Leaky ReLU; the encoder compresses the image into a
latent representation and the decoder mirrors it, upsampling with transposed
convolutions.  The paper's network has no skip connections; we keep that as the
``"paper"`` preset and offer U-Net-style skip connections and a residual output
(``output = input + f(input)``) as the ``"unet"`` preset.

Downsampling uses 2×2 max-pooling with stride 2 rather than strided convolutions: the
paper describes each block as exactly three convolutions, pooling adds no parameters
and no extra layer to that description, and it keeps the receptive field a simple
analytic function of the depth (:func:`receptive_field`).

Beyond the paper, a network can be **noise-conditioned** (``conditioning="noise-map"``,
in the spirit of FFDNet: Zhang, Zuo and Zhang, IEEE TIP 27, 2018): its input has a
second channel holding each pixel's noise standard deviation σ (see
:mod:`napari_pinned.nn.conditioning`) and it returns ``x + σ · f(x, σ, log σ)``.  One
network then serves every dose, a clean image (σ = 0) passes through unchanged, and
scaling σ sets the denoising strength.  With ``conditioning="noise-map+lattice"`` a third
channel holds the lattice-averaged image ``p`` (:mod:`napari_pinned.nn.lattice_prior`),
and the network sees ``p`` and ``(p − x) / σ`` (clipped at ±:data:`DIFFERENCE_CLIP`) too:
the second is how many noise σ the rest of the frame puts each pixel away from what it
recorded, which is what ``f`` returns where the prior holds.

The configuration (:class:`~napari_pinned.settings.ModelConfig`) is torch-free and lives
in :mod:`napari_pinned.settings`.  The same network, written with torch alone, travels in
BioImage Model Zoo packages as ``PinnedNetwork`` of :mod:`napari_pinned.share.bmz_denoiser`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from napari_pinned.settings import ModelConfig

#: Smallest σ inside ``log σ`` (model units), so that σ = 0 stays finite.
_LOG_FLOOR = 1e-3
#: The lattice prior's distance from the image, in noise σ, is clipped at ± this: where
#: it is larger the prior is plainly not what is there (a vacancy, vacuum, an edge).
DIFFERENCE_CLIP = 10.0


# -- network ---------------------------------------------------------------------------


def _conv_block(in_channels: int, out_channels: int, slope: float) -> nn.Sequential:
    """Three 3×3 convolutions, each followed by a Leaky ReLU (the paper's block)."""
    layers: list[nn.Module] = []
    for i in range(3):
        layers.append(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)
        )
        # In place: 15 % faster on CPUs (no extra tensor per layer), gradients unchanged.
        layers.append(nn.LeakyReLU(slope, inplace=True))
    return nn.Sequential(*layers)


class PinnedNetwork(nn.Module):
    """The PINNED encoder–decoder.

    Takes ``(B, C, H, W)`` inputs of any size in model units (C = 1, or 2 for a
    noise-conditioned network: image and noise map, see
    :mod:`napari_pinned.nn.conditioning`) and returns ``(B, 1, H, W)``.  Inputs are
    reflect-padded at the bottom and right to a multiple of ``2**depth``
    (replicate-padded where the image is too small to reflect) and the output is
    cropped back.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        channels = config.channels()
        slope = config.negative_slope
        depth = config.depth
        self.encoder = nn.ModuleList(
            _conv_block(
                feature_channels(config) if level == 0 else channels[level - 1],
                channels[level],
                slope,
            )
            for level in range(depth)
        )
        self.pool = nn.MaxPool2d(2, stride=2)
        self.latent = _conv_block(channels[depth - 1], channels[depth], slope)
        # Index ``level`` of up/decoder works at encoder ``level``'s resolution.
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2)
            for level in range(depth)
        )
        factor = 2 if config.skip_connections else 1
        self.decoder = nn.ModuleList(
            _conv_block(factor * channels[level], channels[level], slope) for level in range(depth)
        )
        self.head = nn.Conv2d(channels[0], 1, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation for the Leaky ReLU (He et al. 2015, "Delving deep into
        rectifiers"), so activations keep their scale through the 20-odd layers.

        PyTorch's default (uniform, gain 1/√3) shrinks them at every layer: a fresh
        depth-3 plain network then outputs a nearly constant image and trains slowly.
        """
        slope = self.config.negative_slope
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module is not self.head:
                nn.init.kaiming_normal_(module.weight, a=slope, nonlinearity="leaky_relu")
            elif isinstance(module, nn.ConvTranspose2d):
                # Kernel 2 = stride 2: each output pixel sees one input pixel in every
                # input channel, so the fan-in is the input channel count (torch's
                # fan-in formula for transposed weights would count output channels).
                nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_channels))
            else:
                continue
            nn.init.zeros_(module.bias)
        if self.config.conditioned:
            # Start as the identity: x + σ · 0.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise a ``(B, C, H, W)`` batch; returns ``(B, 1, H, W)``."""
        channels = self.config.input_channels
        if x.ndim != 4 or x.shape[1] != channels:
            raise ValueError(
                f"PINNED expects a (B, {channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            x = x.float()
        height, width = x.shape[-2:]
        if self.config.conditioned:
            out = self._core(_pad_to_multiple(self._features(x), self.config.alignment))
            return x[:, :1] + x[:, 1:2] * out[..., :height, :width]
        out = self._core(_pad_to_multiple(x, self.config.alignment))[..., :height, :width]
        return x + out if self.config.residual else out

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for inputs whose height and width are multiples of
        :attr:`~napari_pinned.settings.ModelConfig.alignment`: no padding, no checks
        (the graph exported to ONNX)."""
        if self.config.conditioned:
            return x[:, :1] + x[:, 1:2] * self._core(self._features(x))
        out = self._core(x)
        return x + out if self.config.residual else out

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """What a conditioned network's first layer reads (:func:`feature_channels`)."""
        image, sigma = x[:, :1], x[:, 1:2]
        parts = [image, sigma, torch.log(sigma.clamp_min(_LOG_FLOOR))]
        if self.config.lattice:
            prior = x[:, 2:3]
            distance = (prior - image) / sigma.clamp_min(_LOG_FLOOR)
            parts += [prior, distance.clamp(-DIFFERENCE_CLIP, DIFFERENCE_CLIP)]
        return torch.cat(parts, dim=1)

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.latent(x)
        for level in reversed(range(self.config.depth)):
            # Each skip is let go once used, and each decoder block lets go of its
            # input after its first layer: at full resolution the concatenated input
            # alone is 2 × width × 4 bytes per pixel (inference holds about a third
            # less this way; training keeps what autograd needs anyway).
            parts = [self.up[level](x)]
            if self.config.skip_connections:
                parts.insert(0, skips.pop())
            held = [torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]]
            del parts
            x = _through(self.decoder[level], held)
        return self.head(x)


def _through(block: nn.Sequential, held: list[torch.Tensor]) -> torch.Tensor:
    """``block`` applied to the one tensor in ``held``, which no caller's name keeps
    alive: it is freed as soon as the first layer has read it."""
    x = held.pop()
    for layer in block:
        x = layer(x)
    return x


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad H and W at the bottom and right up to a multiple of ``multiple``.

    Padding only after the image keeps the pooling grid anchored at its first row and
    column: a network with 2×2 pooling is shift-equivariant only for shifts by
    multiples of ``2**depth``, so a crop starting at such a multiple is processed
    exactly like the same pixels inside the whole image (tiled inference relies on
    it).  Reflection needs the pad to be shorter than the axis; tiny images fall back
    to replicating the edge.
    """
    for axis in (-2, -1):
        size = x.shape[axis]
        pad = (-size) % multiple
        if pad == 0:
            continue
        mode = "reflect" if pad < size else "replicate"
        x = F.pad(x, (0, 0, 0, pad) if axis == -2 else (0, pad, 0, 0), mode=mode)
    return x


def feature_channels(config: ModelConfig) -> int:
    """Channels the first convolution sees: the image; with a noise map σ and log σ
    too; with the lattice prior also the prior and its distance from the image."""
    if not config.conditioned:
        return 1
    return 5 if config.lattice else 3


def build_model(config: ModelConfig) -> PinnedNetwork:
    """A freshly initialised PINNED network for ``config``."""
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
    return PinnedNetwork(config)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights and biases) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def receptive_field(config: ModelConfig) -> int:
    """Edge length in pixels of the input window that can influence one output pixel.

    Computed exactly by following one output pixel back through the layers as an
    interval of pixel indices: a 3×3 convolution widens it by one pixel per side, a
    2×2 stride-2 transposed convolution maps output pixel ``q`` to input pixel
    ``q // 2``, a 2×2 stride-2 pooling maps pixel ``q`` to ``2q`` and ``2q + 1``.  The
    window depends on the output pixel's position modulo ``2**depth`` (how it aligns
    with the pooling grid); the largest is returned (26, 66, 146, 298 px for depth
    1–4).  Skip paths are shallower and lie inside it; the residual adds the pixel
    itself.  The window is the same along rows and columns.
    """
    return max(high - low + 1 for _, low, high in _receptive_intervals(config))


def receptive_reach(config: ModelConfig) -> int:
    """How far (pixels) an output pixel's receptive field reaches on either side of it.

    The window of :func:`receptive_field` is not centred on its pixel for every
    position on the pooling grid: at depth 4 it spans 298 px but reaches 153 px to
    one side (13, 33, 73, 153 px for depth 1–4).  A tile whose kept pixels have this
    much context on every side gives the whole image's values there.
    """
    return max(
        max(position - low, high - position) for position, low, high in _receptive_intervals(config)
    )


def _receptive_intervals(config: ModelConfig) -> list[tuple[int, int, int]]:
    """(position, first, last) input pixel seen by an output pixel, per position."""
    intervals = []
    for position in range(2**config.depth):
        low = high = position
        for _ in range(config.depth):  # decoder block, then its transposed convolution
            low, high = (low - 3) // 2, (high + 3) // 2
        low, high = low - 3, high + 3  # latent block
        for _ in range(config.depth):  # pooling, then the encoder block before it
            low, high = 2 * low - 3, 2 * high + 1 + 3
        intervals.append((position, low, high))
    return intervals


@dataclass
class ModelBundle:
    """A network with its configuration and provenance; what model files contain.

    ``metadata`` is plain JSON-able data (training steps, losses, validation metrics,
    loss weights, noise range, date, package version, name).  ``source`` says where the
    bundle came from (a file path, or ``"<memory>"``).
    """

    model: PinnedNetwork
    config: ModelConfig
    metadata: dict = field(default_factory=dict)
    source: str = "<memory>"
