"""A 3D Vision Transformer encoder and its transposed-convolution reconstruction decoder.

The encoder follows the BAR paper (Seyfioglu et al., MICCAI 2022, Sec. 2 "Model
Architecture"), itself the ViT of UNETR / MONAI's `ViT`: non-overlapping 16^3 patches of
a 96^3 volume are projected to 768 dimensions, a learnable [cls] token is prepended,
learnable positional embeddings are added (217 x 768 tokens), then 10 pre-norm
transformer blocks with 12 heads. The decoder is MONAI's `ViTAutoEnc` head: the 216
patch tokens (not [cls]) are reshaped to a 6^3 grid and two transposed convolutions
bring them back to 96^3.

Example:
    >>> enc = vit3d_encoder((32, 32, 32, 1), patch_size=8, width=64, depth=2, num_heads=4)
    >>> dec = vit3d_decoder(enc.output_shape[1][1:], grid=(4, 4, 4), patch_size=8)
    >>> cls, tokens = enc(volumes)
    >>> recon = dec(tokens)   # [B, 32, 32, 32, 1]
"""

import keras
from keras import layers, ops


def _triple(value, name):
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{name} must be an int or 3 ints. Received: {name}={value}")
    return value


@keras.saving.register_keras_serializable(package="medrepro")
class PatchEmbedding3D(layers.Layer):
    """Cuts a volume into non-overlapping patches and projects each to `width` dims.

    A strided Conv3D whose kernel equals the patch size is exactly a linear projection
    of each flattened patch.

    Args:
        patch_size: int or 3 ints. Patch edge in voxels.
        width: int. Embedding dimension.
    """

    def __init__(self, patch_size, width, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = _triple(patch_size, "patch_size")
        self.width = int(width)
        self.proj = layers.Conv3D(self.width, self.patch_size, strides=self.patch_size,
                                  padding="valid", name="proj")

    def build(self, input_shape):
        for axis, (size, patch) in enumerate(zip(input_shape[1:4], self.patch_size)):
            if size is not None and size % patch:
                raise ValueError(
                    f"Input spatial size {tuple(input_shape[1:4])} is not divisible by the patch "
                    f"size {self.patch_size} (axis {axis}). Received: input_shape={input_shape}")
        self.proj.build(input_shape)
        self.built = True

    def call(self, inputs):
        x = self.proj(inputs)
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1] * shape[2] * shape[3], self.width))

    def compute_output_shape(self, input_shape):
        n = 1
        for size, patch in zip(input_shape[1:4], self.patch_size):
            n = None if (n is None or size is None) else n * (size // patch)
        return (input_shape[0], n, self.width)

    def get_config(self):
        config = super().get_config()
        config.update(patch_size=self.patch_size, width=self.width)
        return config


@keras.saving.register_keras_serializable(package="medrepro")
class TokensAndPositions(layers.Layer):
    """Prepends a learnable [cls] token (optional) and adds learnable positional embeddings.

    Args:
        num_patches: int. Number of patch tokens.
        width: int. Embedding dimension.
        class_token: bool, default True. Prepend a [cls] token.
    """

    def __init__(self, num_patches, width, class_token=True, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)
        self.width = int(width)
        self.class_token = bool(class_token)

    def build(self, input_shape):
        n = self.num_patches + (1 if self.class_token else 0)
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.position = self.add_weight(shape=(1, n, self.width), initializer=init,
                                        name="position_embedding")
        if self.class_token:
            self.cls = self.add_weight(shape=(1, 1, self.width), initializer="zeros",
                                       name="cls_token")
        self.built = True

    def call(self, tokens):
        if self.class_token:
            cls = ops.broadcast_to(ops.cast(self.cls, tokens.dtype),
                                   (ops.shape(tokens)[0], 1, self.width))
            tokens = ops.concatenate([cls, tokens], axis=1)
        return tokens + ops.cast(self.position, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_patches + (1 if self.class_token else 0), self.width)

    def get_config(self):
        config = super().get_config()
        config.update(num_patches=self.num_patches, width=self.width,
                      class_token=self.class_token)
        return config


@keras.saving.register_keras_serializable(package="medrepro")
class TransformerBlock(layers.Layer):
    """Pre-norm transformer block: LN -> MHSA -> residual, LN -> MLP (GELU) -> residual.

    Args:
        width: int. Token dimension.
        num_heads: int. Attention heads; `width` must be divisible by it.
        mlp_dim: int. Hidden units of the MLP.
        dropout: float, default 0.0. Dropout in attention and MLP.
    """

    def __init__(self, width, num_heads, mlp_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if width % num_heads:
            raise ValueError(f"width must be divisible by num_heads. Received: width={width}, "
                             f"num_heads={num_heads}")
        self.width = int(width)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.dropout = float(dropout)
        self.norm1 = layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attn = layers.MultiHeadAttention(num_heads, width // num_heads, dropout=dropout,
                                              name="attn")
        self.norm2 = layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.fc1 = layers.Dense(mlp_dim, activation="gelu", name="fc1")
        self.fc2 = layers.Dense(width, name="fc2")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attn.build(input_shape, input_shape)
        self.norm2.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        self.built = True

    def call(self, x, training=None):
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, training=training), training=training)
        h = self.fc2(self.drop(self.fc1(self.norm2(x)), training=training))
        return x + self.drop(h, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(width=self.width, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                      dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="medrepro")
class SplitClassToken(layers.Layer):
    """Splits `[B, 1 + N, W]` into the [cls] token `[B, W]` and the patch tokens `[B, N, W]`.

    Without a class token the first output is the mean of the patch tokens.

    Args:
        class_token: bool, default True. Whether the first token is [cls].
    """

    def __init__(self, class_token=True, **kwargs):
        super().__init__(**kwargs)
        self.class_token = bool(class_token)

    def call(self, tokens):
        if self.class_token:
            return tokens[:, 0], tokens[:, 1:]
        return ops.mean(tokens, axis=1), tokens

    def compute_output_shape(self, input_shape):
        n = input_shape[1]
        if self.class_token and n is not None:
            n = n - 1
        return (input_shape[0], input_shape[2]), (input_shape[0], n, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(class_token=self.class_token)
        return config


def vit3d_encoder(input_shape, *, patch_size=16, width=768, depth=10, num_heads=12,
                  mlp_dim=3072, class_token=True, dropout=0.0, name="vit3d"):
    """Builds the 3D ViT encoder (BAR paper, Sec. 2 "Model Architecture").

    Args:
        input_shape: tuple (D, H, W, C). The paper uses (96, 96, 96, 1).
        patch_size: int or 3 ints, default 16. Each spatial size must be divisible by it.
        width: int, default 768. Token dimension.
        depth: int, default 10. Transformer blocks.
        num_heads: int, default 12. Attention heads.
        mlp_dim: int, default 3072. MLP hidden units in each block.
        class_token: bool, default True. Prepend a learnable [cls] token; without it the
            first output is the mean patch token.
        dropout: float, default 0.0.
        name: str, default "vit3d".

    Returns:
        A functional `keras.Model` mapping volumes `[B, D, H, W, C]` to
        `(cls [B, width], patch_tokens [B, N, width])`, N = prod(size // patch).
        Layer names: `patch_embedding`, `tokens`, `block_0` .. `block_{depth-1}`, `norm`.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (D, H, W, C). Received: input_shape={input_shape}")
    patch = _triple(patch_size, "patch_size")
    for size, p in zip(input_shape[:3], patch):
        if size % p:
            raise ValueError(f"Each spatial size must be divisible by patch_size. Received: "
                             f"input_shape={input_shape}, patch_size={patch}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1. Received: depth={depth}")
    grid = tuple(s // p for s, p in zip(input_shape[:3], patch))
    num_patches = grid[0] * grid[1] * grid[2]
    inputs = keras.Input(input_shape, name="volume")
    x = PatchEmbedding3D(patch, width, name="patch_embedding")(inputs)
    x = TokensAndPositions(num_patches, width, class_token=class_token, name="tokens")(x)
    for i in range(depth):
        x = TransformerBlock(width, num_heads, mlp_dim, dropout=dropout, name=f"block_{i}")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    cls, tokens = SplitClassToken(class_token, name="split")(x)
    return keras.Model(inputs, [cls, tokens], name=name)


def vit3d_decoder(token_shape, *, grid, patch_size=16, out_channels=1, hidden_channels=16,
                  name="vit3d_decoder"):
    """Two transposed convolutions from patch tokens back to the volume (Eq. 5's decoder).

    As MONAI's `ViTAutoEnc`: the tokens are reshaped to the patch grid, a first
    transposed convolution upsamples by `patch_size / 4` to `hidden_channels`, the second
    by 4 to `out_channels` (patch 16: 4 x 4; patch 8: 2 x 4; patch 4: 1 x 4).

    Args:
        token_shape: tuple (N, width). Patch tokens, [cls] excluded.
        grid: 3 ints. Patch grid, prod(grid) == N.
        patch_size: int or 3 ints, default 16.
        out_channels: int, default 1.
        hidden_channels: int, default 16 (MONAI's choice).
        name: str.

    Returns:
        A functional `keras.Model` `[B, N, width] -> [B, D, H, W, out_channels]`, linear output.
    """
    n, width = (int(v) for v in token_shape)
    grid = _triple(grid, "grid")
    if grid[0] * grid[1] * grid[2] != n:
        raise ValueError(f"prod(grid) must equal the number of tokens. Received: grid={grid}, "
                         f"token_shape={token_shape}")
    patch = _triple(patch_size, "patch_size")
    second = tuple(min(4, p) for p in patch)
    first = tuple(p // s for p, s in zip(patch, second))
    if any(f * s != p for f, s, p in zip(first, second, patch)):
        raise ValueError(f"patch_size must be a multiple of 4 or below 4. Received: {patch}")
    inputs = keras.Input((n, width), name="tokens")
    x = layers.Reshape(grid + (width,), name="to_grid")(inputs)
    x = layers.Conv3DTranspose(hidden_channels, first, strides=first, name="deconv_1")(x)
    x = layers.Conv3DTranspose(out_channels, second, strides=second, name="deconv_2")(x)
    return keras.Model(inputs, x, name=name)
