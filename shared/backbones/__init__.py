"""Backbones configurable down to tiny sizes for CPU tests.

Import from the submodules: `shared.backbones.vgg`, `shared.backbones.resnet`,
`shared.backbones.unet`, `shared.backbones.vit3d`.
"""
