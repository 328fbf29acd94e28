"""One light MAE decoder per supervised level."""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.model import ModuleList
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.registry import MODELS


@MODELS.register_module()
class MultiLevelDecoder(MAEPretrainDecoder):
    """MAE decoders for every supervised level of a :class:`DeepMIMViT`.

    Adds over mmpretrain's ``MAEPretrainDecoder``: ``num_levels - 1`` auxiliary decoders for the
    intermediate levels, each fully independent (its own embed, mask token, blocks, norm and
    prediction layer; DeepMIM, arXiv 2303.08817), in ``aux_decoders`` (shallowest level first).
    The module itself is the decoder of the deepest level, with exactly ``MAEPretrainDecoder``'s
    parameter names, so with ``num_levels=1`` mmpretrain's MAE / MFF checkpoints load unchanged.

    Args:
        num_levels: supervised levels, including the last. ``DeepMIM`` fills it in from the
            backbone when the config leaves it out.
        aux_decoder_depth: blocks of each auxiliary decoder; defaults to ``decoder_depth``.
        **kwargs: ``MAEPretrainDecoder`` arguments, shared by every level.
    """

    def __init__(self,
                 num_levels: int = 1,
                 aux_decoder_depth: Optional[int] = None,
                 decoder_depth: int = 8,
                 **kwargs) -> None:
        if not isinstance(num_levels, int) or num_levels < 1:
            raise ValueError(f'MultiLevelDecoder: num_levels must be a positive int, '
                             f'got {num_levels!r}')
        aux_depth = decoder_depth if aux_decoder_depth is None else aux_decoder_depth
        for name, depth in (('decoder_depth', decoder_depth), ('aux_decoder_depth', aux_depth)):
            if not isinstance(depth, int) or depth < 1:
                raise ValueError(f'MultiLevelDecoder: {name} must be a positive int '
                                 f'(decoder blocks), got {depth!r}')
        super().__init__(decoder_depth=decoder_depth, **kwargs)
        self.num_levels = num_levels
        # mmengine's ModuleList, so init_weights reaches every auxiliary decoder (sin-cos
        # position embedding, mask token).
        self.aux_decoders = ModuleList(
            MAEPretrainDecoder(decoder_depth=aux_depth, **kwargs) for _ in range(num_levels - 1))

    def forward(self, x: Union[torch.Tensor, Sequence[torch.Tensor]],
                ids_restore: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Decode every level; ``x`` is the backbone's list of levels (or one tensor).

        Returns a list of ``(B, N, D)`` predictions, one per level, in the order of ``x``; a
        single tensor in gives a single tensor out, as ``MAEPretrainDecoder`` does.
        """
        if isinstance(x, torch.Tensor):
            return super().forward(x, ids_restore)
        if len(x) != self.num_levels:
            raise ValueError(f'MultiLevelDecoder: got {len(x)} levels, built for '
                             f'{self.num_levels}')
        preds = [dec(lvl, ids_restore) for dec, lvl in zip(self.aux_decoders, x[:-1])]
        preds.append(super().forward(x[-1], ids_restore))
        return preds
