"""One light MAE decoder per supervised level, run as one batched computation."""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.model import ModuleList
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.registry import MODELS

from ..utils.batched_transformer import (batched_encoder_layer, batched_layer_norm, batched_linear,
                                         layer_norm_supported, stacked_layer_params)


@MODELS.register_module()
class MultiLevelDecoder(MAEPretrainDecoder):
    """MAE decoders for every supervised level of a :class:`DeepMIMViT`.

    Adds over mmpretrain's ``MAEPretrainDecoder``: ``num_levels - 1`` independent auxiliary
    decoders for the intermediate levels (DeepMIM, arXiv 2303.08817), in ``aux_decoders``
    (shallowest first). The module itself is the deepest level's decoder, with
    ``MAEPretrainDecoder``'s parameter names, so with one level MAE / MFF checkpoints load.

    On accelerators the decoders run as one computation with a leading level dimension
    (:mod:`~deepmim_mm.models.utils.batched_transformer`), each keeping its modules and keys;
    the per-level loop runs for one level and where a wrapper (FSDP, activation checkpointing)
    owns a decoder's ``forward``.

    Args:
        num_levels: supervised levels, the last included; ``DeepMIM`` fills it in.
        aux_decoder_depth: blocks of each auxiliary decoder; defaults to ``decoder_depth``.
        batched: ``None`` (auto): batched on accelerators, the loop on the CPU; ``True``: always
            batched (a ``ValueError`` for decoder layers it does not compute, e.g. non-LayerNorm
            norms); ``False``: always the loop. Can be switched at run time.
        **kwargs: ``MAEPretrainDecoder`` arguments, shared by every level.
    """

    def __init__(self,
                 num_levels: int = 1,
                 aux_decoder_depth: Optional[int] = None,
                 decoder_depth: int = 8,
                 batched: Optional[bool] = None,
                 **kwargs) -> None:
        aux_depth = decoder_depth if aux_decoder_depth is None else aux_decoder_depth
        for name, depth in (('decoder_depth', decoder_depth), ('aux_decoder_depth', aux_depth)):
            if not isinstance(depth, int) or depth < 1:
                raise ValueError(f'MultiLevelDecoder: {name} must be a positive int '
                                 f'(decoder blocks), got {depth!r}')
        super().__init__(decoder_depth=decoder_depth, **kwargs)
        self.num_levels = num_levels
        # mmengine's ModuleList: init_weights reaches every decoder's position embedding.
        self.aux_decoders = ModuleList(
            MAEPretrainDecoder(decoder_depth=aux_depth, **kwargs) for _ in range(num_levels - 1))
        if batched not in (None, True, False):
            raise ValueError('MultiLevelDecoder: batched must be None (auto), True or False, got '
                             f'{batched!r}')
        # Every decoder's blocks and norm come from one norm_cfg: the final norm speaks for all.
        supported = layer_norm_supported(self.decoder_norm)
        if batched and not supported:
            raise ValueError('MultiLevelDecoder: batched=True needs LayerNorm decoder norms '
                             '(norm_cfg type "LN"); use batched=None (auto) or False for '
                             f'norm_cfg={kwargs.get("norm_cfg")!r}')
        self.batched = batched if supported else False

    def _decoders(self) -> List[MAEPretrainDecoder]:
        """Every level's decoder, in level order (shallowest first, this module last)."""
        return list(self.aux_decoders) + [self]

    def _batch_possible_now(self) -> bool:
        """False when a wrapper (FSDP unit, patched forward) owns a decoder or a block."""
        decs = self._decoders()
        return (all(type(d) is MAEPretrainDecoder and 'forward' not in vars(d) for d in decs[:-1])
                and all(type(b) is TransformerEncoderLayer and 'forward' not in vars(b)
                        for d in decs for b in d.decoder_blocks))

    def forward(self, x: Union[torch.Tensor, Sequence[torch.Tensor]],
                ids_restore: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """One ``(B, N, D)`` prediction per level of ``x``; one tensor in, one out, as upstream."""
        if isinstance(x, torch.Tensor):
            return super().forward(x, ids_restore)
        batched = self.batched if self.batched is not None else x[0].device.type != 'cpu'
        if batched and self.num_levels > 1 and self._batch_possible_now():
            return self.forward_batched(x, ids_restore)
        return self.forward_loop(x, ids_restore)

    def forward_loop(self, x: Sequence[torch.Tensor],
                     ids_restore: torch.Tensor) -> List[torch.Tensor]:
        """The straightforward implementation: mmpretrain's forward, one decoder at a time."""
        preds = [dec(lvl, ids_restore) for dec, lvl in zip(self.aux_decoders, x[:-1])]
        preds.append(super().forward(x[-1], ids_restore))
        return preds

    def forward_batched(self, x: Sequence[torch.Tensor],
                        ids_restore: torch.Tensor) -> List[torch.Tensor]:
        """Every level at once, with a leading level dimension (same result as the loop)."""
        decs = self._decoders()
        L = len(decs)
        eps = self.decoder_norm.eps
        # Embed the visible tokens of every level: (L, B, T, C) -> (L, B, T, D).
        h = batched_linear(
            torch.stack(list(x)), torch.stack([d.decoder_embed.weight for d in decs]),
            torch.stack([d.decoder_embed.bias for d in decs]))
        _, B, T, D = h.shape
        N = ids_restore.shape[1]
        # Mask tokens and unshuffle, for every level with one gather (index broadcast, not
        # copied), then the fixed position embedding.
        mask_tokens = torch.stack([d.mask_token for d in decs]).expand(L, B, N + 1 - T, D)
        tokens = torch.cat([h[:, :, 1:], mask_tokens], dim=2)
        tokens = torch.gather(tokens, 2, ids_restore.view(1, B, N, 1).expand(L, B, N, D))
        h = torch.cat([h[:, :, :1], tokens], dim=2)
        h = h + torch.stack([d.decoder_pos_embed for d in decs])

        # The auxiliary decoders share one depth, the final one may have another: the blocks in
        # common run over every level, the remaining ones over the deeper decoders only.
        aux_depth, depth = len(decs[0].decoder_blocks), len(self.decoder_blocks)
        preds: List[Optional[torch.Tensor]] = [None] * L
        deep = slice(0, L)  # the levels h holds
        for j in range(max(aux_depth, depth)):
            if j == min(aux_depth, depth) and aux_depth != depth:  # the shallower ones end here
                done, deep = ((slice(0, L - 1), slice(L - 1, L)) if aux_depth < depth else
                              (slice(L - 1, L), slice(0, L - 1)))
                preds[done] = self._predict(decs[done], h[done], eps)
                h = h[deep]
            blocks = [d.decoder_blocks[j] for d in decs[deep]]
            h = batched_encoder_layer(h, stacked_layer_params(blocks),
                                      blocks[0].attn.num_heads, eps)
        preds[deep] = self._predict(decs[deep], h, eps)
        return preds

    @staticmethod
    def _predict(decs: List[MAEPretrainDecoder], h: torch.Tensor,
                 eps: float) -> List[torch.Tensor]:
        """Final norm and prediction of ``decs`` (rows of ``h``), class token dropped first."""
        h = batched_layer_norm(h[:, :, 1:], torch.stack([d.decoder_norm.weight for d in decs]),
                               torch.stack([d.decoder_norm.bias for d in decs]), eps)
        out = batched_linear(h, torch.stack([d.decoder_pred.weight for d in decs]),
                             torch.stack([d.decoder_pred.bias for d in decs]))
        return list(out.unbind(0))
