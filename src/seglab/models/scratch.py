"""Models trained from random init, rewritten cleanly after the two study notebooks.

They are the baselines the notebooks compared against pretrained encoders; keeping them here lets a
study run "same data, same loss, different model" with one spec string (``scratch:unet``).
Every model maps (B, in_channels, H, W) -> (B, num_classes, H, W) logits for any H, W divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimpleSegNet(nn.Module):
    """The notebook's first model: two conv+pool stages down, two transposed convs back up, no skips.

    Args:
        num_classes: output channels (logits).
        in_channels: input channels.
        width: channels of the first stage (the second has twice as many).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),  # (B, w, H, W)
            nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),  # (B, 2w, H/2, W/2)
            nn.MaxPool2d(2),  # (B, 2w, H/4, W/4)
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 2, stride=2),
            nn.ReLU(inplace=True),  # (B, w, H/2, W/2)
            nn.ConvTranspose2d(width, num_classes, 2, stride=2),  # (B, C, H, W)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """(conv3x3 -> BN -> ReLU) x 2, the U-Net building block; keeps the spatial size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Ronneberger-style U-Net: `depth` pooled levels, a bottleneck, and mirrored up levels with skips.

    The notebook used base=64 (31 M parameters, ``scratch:unet:64``); base=32 (7.8 M) keeps CPU runs practical.
    Inputs must be divisible by 2**depth (16 for the default).

    Args:
        num_classes: output channels (logits).
        in_channels: input channels.
        base: channels of the first level; level i has base * 2**i.
        depth: number of down/up levels.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, base: int = 32, depth: int = 4):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]  # e.g. 32, 64, 128, 256 | 512 (bottleneck)
        self.downs = nn.ModuleList(
            double_conv(c_in, c_out) for c_in, c_out in zip([in_channels] + widths[:-2], widths[:-1])
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(widths[-2], widths[-1])
        # Each up level halves the channels, then the concatenated skip restores them: 2c -> c (+ c) -> c.
        self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * c, c, 2, stride=2) for c in reversed(widths[:-1]))
        self.up_convs = nn.ModuleList(double_conv(2 * c, c) for c in reversed(widths[:-1]))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)  # (B, c_i, H/2**i, W/2**i)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)  # (B, base*2**depth, H/2**depth, W/2**depth)
        for up, conv, skip in zip(self.ups, self.up_convs, reversed(skips)):
            x = conv(torch.cat([skip, up(x)], dim=1))  # (B, c_i, H/2**i, W/2**i)
        return self.head(x)  # (B, C, H, W)


class Attention(nn.Module):
    """Multi-head self-attention over tokens, computed by PyTorch's fused scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        # (B, N, 3D) -> (3, B, heads, N, D/heads)
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, D/heads)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTSegmenter(nn.Module):
    """A small ViT that classifies every patch, then upsamples the patch logits to the image size.

    The notebook's version fixed the image size through its position embeddings and upsampled the
    features before the decoder; here the embeddings are learned for `base_grid` and bilinearly
    resized to the actual patch grid, so any input size divisible by `patch_size` works, and the
    linear decoder runs on patches (cheap) before the logits are upsampled.

    Args:
        num_classes: output channels (logits).
        in_channels: input channels.
        patch_size: side of a square patch; H and W must be divisible by it.
        embed_dim, depth, num_heads, mlp_ratio: transformer size (ViT-Tiny width, 4 blocks by default).
        base_grid: (rows, cols) of patches the position embeddings are stored for.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 4,
        num_heads: int = 3,
        mlp_ratio: float = 4,
        base_grid: tuple[int, int] = (14, 14),
    ):
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        # Stored as an image of embeddings, (1, D, rows, cols), so resizing it is one F.interpolate.
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *base_grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder = nn.Linear(embed_dim, num_classes)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings for a (rows, cols) patch grid, as tokens (1, rows*cols, D)."""
        pos = self.pos_embed
        if tuple(pos.shape[-2:]) != tuple(grid):
            pos = F.interpolate(pos, size=grid, mode="bilinear", align_corners=False)  # (1, D, rows, cols)
        return pos.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        x = self.patch_embed(x)  # (B, D, H/ps, W/ps)
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2) + self.position_embedding(grid)  # (B, N, D), N = rows*cols
        x = self.decoder(self.norm(self.blocks(x)))  # (B, N, C)
        x = x.transpose(1, 2).reshape(x.shape[0], -1, *grid)  # (B, C, rows, cols)
        return F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)  # (B, C, H, W)


# Spec name -> class, for "scratch:<name>" (read by spec.parse_spec and builder.build_model).
SCRATCH_MODELS = {"simplesegnet": SimpleSegNet, "unet": UNet, "vit": ViTSegmenter}

# The size W of "scratch:<name>:W": (what it sets, its step, smallest, largest, default). The ViT's heads follow
# its width at 64 channels per head (ViT-Ti 192/3, ViT-S 384/6), so one number names each notebook's model:
# scratch:unet:64 is the second notebook's U-Net (64..512, bottleneck 1024, 31 M parameters) and scratch:vit:384
# its segmenter (embedding 384, 6 heads, 4 blocks, patch 16, 7.5 M).
SCRATCH_WIDTH = {
    "simplesegnet": ("width", 8, 8, 512, 32),
    "unet": ("base", 8, 8, 256, 32),
    "vit": ("embed_dim", 64, 64, 1024, 192),
}
HEAD_DIM = 64


def scratch_kwargs(name: str, width: int | None) -> dict:
    """Constructor arguments of SCRATCH_MODELS[name] for the size W (checked by spec.parse_spec); {} for None."""
    if width is None:
        return {}
    if name == "vit":
        return {"embed_dim": width, "num_heads": width // HEAD_DIM}
    return {SCRATCH_WIDTH[name][0]: width}
