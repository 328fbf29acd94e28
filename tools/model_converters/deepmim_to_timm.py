"""Convert a pretraining (or fine-tuned) checkpoint of this plugin / mmpretrain to a timm
``VisionTransformer`` state dict.

    python tools/model_converters/deepmim_to_timm.py epoch_1600.pth vit_base_deepmim.pth

The encoder (``backbone.``) maps to timm names (``patch_embed.proj``, ``blocks.{i}.norm1``, ...,
``norm``; a fine-tuned ``ln2`` to ``fc_norm``) and a ``LinearClsHead`` (``head.fc``) to ``head``.
Decoders (``neck.``), teachers and MFF's fusion layers are pretraining only: listed and dropped.
Any other key that cannot be mapped is an error unless ``--allow-drop``. The output is a bare
state dict (``.safetensors`` when DST ends so): ``timm.create_model('vit_base_patch16_224',
pretrained=True, num_classes=0, global_pool='token', pretrained_cfg_overlay=dict(file=DST))`` or
``model.load_state_dict(torch.load(DST))`` loads it.

``--layout mae`` writes ``{'model': state_dict}`` instead, the layout the official fine-tuning
scripts read (``main_finetune.py --finetune DST`` of facebookresearch/mae and OliverRensu/DeepMIM:
``checkpoint['model']``, loaded with ``strict=False``; they expect no ``fc_norm`` / ``head``, so
convert a pretraining checkpoint, not a fine-tuned one).
"""
import argparse
import re

from deepmim_mm.checkpoint import MFF_FUSION_KEYS, plugin_to_timm

from _converter_utils import add_common_args, check_not_near_empty, load, report_and_check, save


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_common_args(parser)
    parser.add_argument('--layout', choices=['timm', 'mae'], default='timm',
                        help="timm: a bare state dict (default); mae: {'model': state dict}, for "
                        "the official MAE / DeepMIM main_finetune.py --finetune")
    args = parser.parse_args(argv)
    src = load(args.src, args.dst, args.force)
    state, dropped = plugin_to_timm(src)
    report_and_check(dropped, args.allow_drop, 'plugin')
    # Encoder tensors: backbone.* less MFF's pretraining-only fusion layers.
    encoder_in = [k for k in src if k.startswith('backbone.')
                  and not re.fullmatch(MFF_FUSION_KEYS, k[len('backbone.'):])]
    check_not_near_empty(sum(not k.startswith('head.') for k in state), len(encoder_in),
                         args.src, 'backbone.* keys of this plugin or mmpretrain')
    save(state, args.dst, wrap=False, layout='model' if args.layout == 'mae' else None)


if __name__ == '__main__':
    main()
