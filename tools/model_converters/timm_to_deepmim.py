"""Convert a timm ``VisionTransformer`` state dict to this plugin's format (encoder under
``backbone.`` with mmpretrain ``VisionTransformer`` names, a classifier ``head`` to ``head.fc``).

    python tools/model_converters/timm_to_deepmim.py vit_base.pth vit_base_mm.pth

The result feeds the classification configs (``init_cfg=dict(type='Pretrained',
prefix='backbone.')``). timm keys that have no mmpretrain counterpart (e.g. register tokens,
layer scale, a pre-norm) are listed; they are an error unless ``--allow-drop``.
"""
import argparse

from deepmim_mm.checkpoint import timm_to_plugin

from _converter_utils import add_common_args, check_not_near_empty, load, report_and_check, save


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    src = load(args.src, args.dst, args.force)
    state, dropped = timm_to_plugin(src)
    report_and_check(dropped, args.allow_drop, 'timm')
    # Every key of a timm ViT but its classifier is an encoder key.
    check_not_near_empty(sum(k.startswith('backbone.') for k in state),
                         sum(not k.startswith('head.') for k in src), args.src,
                         'timm names: patch_embed.proj, blocks.N, ...')
    save(state, args.dst, meta=dict(converted_from=args.src, source_format='timm'))


if __name__ == '__main__':
    main()
