"""Convert a timm ``VisionTransformer`` state dict to this plugin's format (encoder under
``backbone.`` with mmpretrain ``VisionTransformer`` names, a classifier ``head`` to ``head.fc``)."""
from deepmim_mm.checkpoint import timm_to_plugin

from _converter_utils import convert, save


def main(argv=None):
    args, state = convert(argv, __doc__, timm_to_plugin, 'timm_to_deepmim.py',
                          lambda k: k.startswith('backbone.'))
    save(state, args.dst, meta=dict(converted_from=args.src, source_format='timm'))


if __name__ == '__main__':
    main()
