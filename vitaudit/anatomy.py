"""What kind of network a model is, and where its explanations are read: one table of families.

Every method asks the same few questions of a model: does it have a softmax attention whose
class-token row can be read (and in which modules), how many prefix tokens (class,
distillation, register) come before the patches, in which layout a layer hands out its
features (tokens, NCHW or Swin's NHWC), and which layer Grad-CAM reads by default. The answers
are looked up once per model by :func:`anatomy_of` from the family table below, so explainers
and the engine never test for model classes themselves, and every refusal can say what the
model is ("a windowed-attention transformer with no class token").

Families (``Anatomy.family``): ``vit`` (global softmax self-attention over tokens: ViT, DeiT,
DeiT3, BEiT, EVA/EVA02, RoPE ViTs, relpos ViTs, CaiT, DINOv2 with registers, and the Hugging
Face counterparts), ``windowed`` (Swin: attention inside shifted windows, no class token),
``transformer`` (another attention architecture vitaudit has no attention reader for) and
``cnn``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

Layout = Literal["tokens", "nchw", "nhwc"]


@dataclass(frozen=True)
class Anatomy:
    """How to read one model (plain data; see the module doc)."""

    family: str  # vit | windowed | transformer | cnn
    kind: str  # what the model is, in words, for refusals ("a BEiT vision transformer ...")
    attention: tuple[str, ...] = ()  # module paths whose softmax attention is read, in order
    class_token: bool = False  # a class token whose attention row the attention methods read
    num_prefix: int = 0  # tokens before the patches in the attention layers
    class_attention: bool = False  # CaiT: the attention layers' only query is the class token
    cam_layer: str | None = None  # default Grad-CAM layer; None: the last spatial map (CNNs)
    feature_layout: Layout = "nchw"  # how 4-D outputs of this model's layers are laid out
    patch_size: tuple[int, int] | None = None  # token grid = input size // patch (HF); None: timm's patch_embed
    pooling: str = ""  # how the head pools, for "no class token" refusals
    # The last block's per-token modules after its token mixing (attention projection, MLP) when
    # the head reads the class token alone: only their class row needs a gradient (capture.py).
    class_row_modules: tuple[str, ...] = ()

    def class_row_paths(self, layers: "set[str] | tuple[str, ...]") -> tuple[str, ...]:
        """``class_row_modules`` when every captured layer runs before them: the last block's
        ``norm1`` or a layer of an earlier block; otherwise () and the backward is the plain one."""
        if not self.class_row_modules or not layers:
            return ()
        blocks, last = self.class_row_modules[0].split(".")[:2]
        for path in layers:
            parts = path.split(".")
            earlier = len(parts) > 1 and parts[0] == blocks and parts[1].isdigit() and int(parts[1]) < int(last)
            if not earlier and path != f"{blocks}.{last}.norm1":
                return ()
        return self.class_row_modules

    @property
    def reads_attention(self) -> bool:
        return self.family == "vit" and bool(self.attention)


def _timm_vit(module: nn.Module, kind: str, blocks: str = "blocks") -> Anatomy:
    depth = len(getattr(module, blocks))
    has_cls = getattr(module, "cls_token", None) is not None
    return Anatomy(
        family="vit",
        kind=kind,
        attention=tuple(f"{blocks}.{i}.attn" for i in range(depth)),
        class_token=has_cls,
        num_prefix=int(getattr(module, "num_prefix_tokens", 1 if has_cls else 0)),
        cam_layer=f"{blocks}.{depth - 1}.norm1",
        feature_layout="tokens",
        pooling=str(getattr(module, "global_pool", "")),
        class_row_modules=_class_row_modules(module, blocks, depth),
    )


def _class_row_modules(module: nn.Module, blocks: str, depth: int) -> tuple[str, ...]:
    """The last block's attention projection and MLP, for timm's own ViT with its own head on the
    class token and a plain pre-norm last block (whose ``norm1``, the Grad-CAM layer, runs before
    both); () for anything else (a distilled head, an attention-pooling head, average pooling,
    other block types such as the post-norm ``ResPostBlock``), which keeps the plain backward."""
    from timm.models.vision_transformer import Block, VisionTransformer

    cls = type(module)
    if not (isinstance(module, VisionTransformer) and cls.forward_head is VisionTransformer.forward_head
            and cls.forward_features is VisionTransformer.forward_features and cls.pool is VisionTransformer.pool
            and getattr(module, "global_pool", None) == "token" and getattr(module, "attn_pool", None) is None
            and getattr(module, "cls_token", None) is not None and blocks == "blocks" and depth > 0):
        return ()
    last = module.blocks[depth - 1]
    if type(last) is not Block or not isinstance(getattr(last.attn, "proj", None), nn.Linear):
        return ()
    return (f"blocks.{depth - 1}.attn.proj", f"blocks.{depth - 1}.mlp")


def _timm_anatomy(module: nn.Module) -> Anatomy | None:
    from timm.models.beit import Beit
    from timm.models.cait import Cait
    from timm.models.eva import Eva
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.swin_transformer_v2 import SwinTransformerV2
    from timm.models.vision_transformer import VisionTransformer
    from timm.models.vision_transformer_relpos import VisionTransformerRelPos

    if isinstance(module, Cait):
        depth = len(module.blocks_token_only)
        # The patches run through talking-heads self-attention with no class token; the class
        # token joins in the class-attention blocks, whose only query it is.
        return Anatomy(
            family="vit", kind="a CaiT vision transformer (class-attention layers)",
            attention=tuple(f"blocks_token_only.{i}.attn" for i in range(depth)),
            class_token=True, num_prefix=1, class_attention=True,
            cam_layer=f"blocks_token_only.{depth - 1}.norm1", feature_layout="tokens", pooling="token",
        )
    if isinstance(module, Beit):
        return _timm_vit(module, "a BEiT vision transformer (relative position bias)")
    if isinstance(module, Eva):
        rope = getattr(module, "rope", None) is not None
        return _timm_vit(module, "an EVA vision transformer" + (" (rotary position embedding)" if rope else ""))
    if isinstance(module, VisionTransformerRelPos):
        return _timm_vit(module, "a vision transformer with relative position bias")
    if isinstance(module, VisionTransformer):
        return _timm_vit(module, "a vision transformer")
    if isinstance(module, (SwinTransformer, SwinTransformerV2)):
        return Anatomy(family="windowed", kind="a windowed-attention transformer with no class token",
                       cam_layer="norm", feature_layout="nhwc", pooling="avg")
    return None


def anatomy_of(module: nn.Module) -> Anatomy:
    """The family and reading plan of a model (timm, torchvision, Hugging Face adapter, other)."""
    own = getattr(module, "vitaudit_anatomy", None)  # adapters (e.g. Hugging Face) describe themselves
    if isinstance(own, Anatomy):
        return own
    found = _timm_anatomy(module)
    if found is not None:
        return found
    name = type(module).__name__
    if any("attention" in type(m).__name__.lower() for m in module.modules()):
        return Anatomy(family="transformer",
                       kind=f"an attention architecture vitaudit has no attention reader for ({name})")
    return Anatomy(family="cnn", kind=f"a convolutional network ({name})")
