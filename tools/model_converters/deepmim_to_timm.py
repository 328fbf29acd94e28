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
"""
import argparse

from _converter_utils import add_common_args, load, report_and_check, save

from deepmim_mm.checkpoint import plugin_to_timm


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    state, dropped = plugin_to_timm(load(args.src))
    if not state:
        raise SystemExit(f'error: {args.src} has no backbone.* (encoder) keys: not a '
                         'checkpoint of this plugin or mmpretrain')
    report_and_check(dropped, args.allow_drop, 'plugin')
    save(state, args.dst, wrap=False)


if __name__ == '__main__':
    main()
