"""Convert an official MAE (facebookresearch/mae) or DeepMIM (OliverRensu/DeepMIM) checkpoint to
this plugin's pretraining format (docs/en/user_guides/finetune.md#converting-checkpoints)."""
from deepmim_mm.checkpoint import official_mae_to_plugin

from _converter_utils import convert, save


def main(argv=None):
    args, state = convert(argv, __doc__, official_mae_to_plugin, 'official_to_deepmim.py',
                          lambda k: k.startswith('backbone.'))
    aux = {k.split('.')[2] for k in state if k.startswith('neck.aux_decoders.')}
    final = any(k.startswith('neck.') and 'aux_decoders' not in k for k in state)
    print(f'encoder: {sum(k.startswith("backbone.") for k in state)} keys; decoders: '
          f'{int(final)} final + {len(aux)} auxiliary')
    save(state, args.dst, meta=dict(converted_from=args.src, source_format='official MAE/DeepMIM'))


if __name__ == '__main__':
    main()
