"""Backbones configurable down to tiny sizes for CPU tests.

* `vgg`: VGG16 (the heatmap-loss thesis);
* `resnet`: ResNet34 (the LGE-MRI QA heads);
* `unet`: 2D UNet and a UNet decoder on an encoder (the LA detector);
* `vit3d`: a 3D ViT encoder and decoder (Brain-Aware Replacements).
"""

from shared.backbones.vgg import vgg16_backbone
from shared.backbones.resnet import resnet34_backbone, resnet_stage_output_names
from shared.backbones.unet import unet2d, unet2d_on_encoder, unet_decoder
from shared.backbones.vit3d import (
    PatchEmbedding3D,
    SplitClassToken,
    TokensAndPositions,
    TransformerBlock,
    vit3d_decoder,
    vit3d_encoder,
)

__all__ = [
    "PatchEmbedding3D",
    "SplitClassToken",
    "TokensAndPositions",
    "TransformerBlock",
    "resnet34_backbone",
    "resnet_stage_output_names",
    "unet2d",
    "unet2d_on_encoder",
    "unet_decoder",
    "vgg16_backbone",
    "vit3d_decoder",
    "vit3d_encoder",
]
