"""The DeepMIM encoder: mmpretrain's MAEViT with multi-level outputs and optional MFF fusion."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.selfsup.mae import MAEViT
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

# DeepMIM (arXiv 2303.08817, official code) supervises ViT-B's blocks 6, 8 and 10 (1-indexed) plus
# the last one: 1/2, 2/3 and 5/6 of the depth. Other depths keep the same relative positions.
DEEPMIM_RELATIVE_DEPTHS = (1 / 2, 2 / 3, 5 / 6)


def default_supervised_blocks(num_layers: int) -> List[int]:
    """0-indexed blocks DeepMIM supervises by default: [5, 7, 9, 11] for 12 blocks."""
    blocks = {max(int(round(num_layers * f)) - 1, 0) for f in DEEPMIM_RELATIVE_DEPTHS}
    return sorted(blocks | {num_layers - 1})


def _resolve_blocks(field: str, indices: Union[int, Sequence[int]], depth: int) -> List[int]:
    """Sorted 0-indexed blocks, each within the depth and given once, the last block included."""
    indices = [indices] if isinstance(indices, int) else list(indices)
    for i in indices:
        if not -depth <= i < depth:
            raise ValueError(f'DeepMIMViT: {field} contains block {i}, beyond the encoder '
                             f'depth {depth}; accepted: 0..{depth - 1} (0-indexed) or '
                             f'-{depth}..-1')
    resolved = sorted({i % depth for i in indices})
    if len(resolved) != len(indices):
        raise ValueError(f'DeepMIMViT: {field} has repeated blocks: {indices}')
    if not resolved or resolved[-1] != depth - 1:
        raise ValueError(f'DeepMIMViT: {field} must end with the last block ({depth - 1}, '
                         f'0-indexed): its output, after the final norm, is the deepest level; '
                         f'got {indices}')
    return resolved


@MODELS.register_module()
class DeepMIMViT(MAEViT):
    """MAE encoder that returns several supervised levels, with optional MFF fusion.

    Adds over mmpretrain's ``MAEViT``:

    - ``out_indices`` (0-indexed; ``None``: :func:`default_supervised_blocks`; ``[-1]``: plain
      MAE) name the supervised blocks: the masked forward returns the raw output of every
      intermediate one and the last block's output after the final norm (DeepMIM).
    - ``fusion_indices`` turns on MFF (arXiv 2308.00261) with ``MFFViT``'s parameters
      (``proj_layers``, ``proj_weights``), so its checkpoints load as they are.
    - ``mask=None`` (feature extraction) does *not* mask, unlike ``MFFViT``, and returns every
      supervised block in ``out_type`` format (fused when MFF is on).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 224,
                 patch_size: int = 16,
                 out_indices: Optional[Union[int, Sequence[int]]] = None,
                 fusion_indices: Optional[Sequence[int]] = None,
                 mask_ratio: float = 0.75,
                 **kwargs) -> None:
        super().__init__(arch=arch, img_size=img_size, patch_size=patch_size,
                         mask_ratio=mask_ratio, **kwargs)
        if not 0 < mask_ratio < 1:
            raise ValueError(f'DeepMIMViT: mask_ratio must be in (0, 1), got {mask_ratio}')
        if any(s % patch_size for s in self.img_size):
            raise ValueError(f'DeepMIMViT: img_size {img_size} is not divisible by '
                             f'patch_size {patch_size}')
        depth = self.num_layers
        if out_indices is None:
            out_indices = default_supervised_blocks(depth)
        self.out_indices = _resolve_blocks('out_indices', out_indices, depth)
        self.fusion_indices = None
        if fusion_indices is not None:
            self.fusion_indices = _resolve_blocks('fusion_indices', fusion_indices, depth)
            n = len(self.fusion_indices)
            self.proj_layers = nn.ModuleList(
                nn.Linear(self.embed_dims, self.embed_dims) for _ in range(n - 1))
            self.proj_weights = nn.Parameter(torch.ones(n).view(-1, 1, 1, 1), requires_grad=n > 1)

    @property
    def level_names(self) -> List[str]:
        """Names of the supervised levels: ``block{n}`` with ``n`` the 1-indexed block."""
        return [f'block{i + 1}' for i in self.out_indices]

    def forward(self, x: torch.Tensor, mask: Optional[bool] = True):
        """``(levels, mask, ids_restore, fusion_weights)``: one ``(B, 1 + N_visible, C)`` tensor
        per supervised block (shallowest first) from one random mask, ``fusion_weights`` None
        without MFF; with ``mask`` None / False a tuple of unmasked ``out_type`` features."""
        if not mask:
            return self._extract(x)
        x = self._embed_patches(x)
        x, mask, ids_restore = self.random_masking(x, self.mask_ratio)
        levels, weights = self._encode_kept(x)
        return levels, mask, ids_restore, weights

    def encode_visible(self, x: torch.Tensor, ids_keep: torch.Tensor
                       ) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
        """``(levels, fusion_weights)`` of the patches ``ids_keep`` (``B x N_visible``) lists, in
        that order: a frozen teacher sees exactly the student's visible patches."""
        x = self._embed_patches(x)
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return self._encode_kept(x)

    def _embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus position embedding; images of another size are a ValueError."""
        tokens, grid = self.patch_embed(x)
        if tuple(grid) != tuple(self.patch_resolution):
            raise ValueError(f'DeepMIMViT: {x.shape[-2]}x{x.shape[-1]} images give a '
                             f'{grid[0]}x{grid[1]} patch grid, but the model was built for '
                             f'{self.patch_resolution[0]}x{self.patch_resolution[1]} '
                             '(model.backbone.img_size / patch_size): make the train pipeline\'s '
                             'crop size and model.backbone.img_size equal')
        return tokens + self.pos_embed[:, 1:, :]

    def _encode_kept(self, x: torch.Tensor
                     ) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
        """Prepend the class token to the kept patch tokens and run every block."""
        cls_token = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        return self._blocks(torch.cat((cls_token, x), dim=1))

    def _extract(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``VisionTransformer.forward``, with MFF fusion of the last level when it is on."""
        x, patch_resolution = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, patch_resolution,
                                 mode=self.interpolate_mode,
                                 num_extra_tokens=self.num_extra_tokens)
        levels, _ = self._blocks(self.pre_norm(self.drop_after_pos(x)))
        return tuple(self._format_output(t, patch_resolution) for t in levels)

    def _blocks(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
        """Run every block; return the supervised levels and the MFF weights (or None)."""
        fused_at = self.fusion_indices or []
        levels, fused = [], []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices[:-1]:
                levels.append(x)
            if i in fused_at[:-1]:
                fused.append(self.proj_layers[fused_at.index(i)](x))
        weights = None
        if self.fusion_indices is not None:
            # MFF: softmax-weighted sum of the projected shallow levels and the last block.
            weights = F.softmax(self.proj_weights, dim=0)
            x = (torch.stack(fused + [x]) * weights).sum(dim=0)
            weights = weights.view(-1)
        if self.final_norm:
            x = self.ln1(x)
        return levels + [x], weights
