"""Convert a pretraining (or fine-tuned) checkpoint of this plugin / mmpretrain to a timm
``VisionTransformer`` state dict (docs/en/user_guides/finetune.md#converting-checkpoints)."""
from deepmim_mm.checkpoint import plugin_to_timm

from _converter_utils import convert, save


def main(argv=None):
    def layout(parser):
        parser.add_argument('--layout', choices=['timm', 'mae'], default='timm',
                            help="timm: a bare state dict (default); mae: {'model': state dict}, "
                            'for the official MAE / DeepMIM main_finetune.py --finetune')
    args, state = convert(argv, __doc__, plugin_to_timm, 'deepmim_to_timm.py',
                          lambda k: not k.startswith('head.'), layout)
    save(state, args.dst, layout='model' if args.layout == 'mae' else None)


if __name__ == '__main__':
    main()
