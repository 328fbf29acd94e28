"""Convert an official MAE (facebookresearch/mae) or DeepMIM (OliverRensu/DeepMIM) checkpoint to
this plugin's pretraining format.

    python tools/model_converters/official_to_deepmim.py deepmim_pretrain.pth deepmim_mm.pth

Input: a dict whose ``model`` holds timm-style keys (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.{i}.*``, ``norm``) and optionally decoders: MAE's ``decoder_embed``,
``mask_token``, ``decoder_pos_embed``, ``decoder_blocks.{i}``, ``decoder_norm``,
``decoder_pred``; DeepMIM's numbered ones (``decoder_embed1``..``decoder_embedL``, ...,
shallowest level first, ``decoder_pos_embed`` shared).
Output: an mmengine checkpoint: encoder under ``backbone.`` (mmpretrain names), the last level's
decoder under ``neck.`` (``MAEPretrainDecoder`` names), DeepMIM's other decoders under
``neck.aux_decoders.{k}.`` (shallowest first). Keys that cannot be mapped are listed and are an
error unless ``--allow-drop``. (Official *fine-tuned* checkpoints, with ``fc_norm`` and ``head``,
are timm ViTs: convert them with ``timm_to_deepmim.py``.)
"""
import argparse

from deepmim_mm.checkpoint import official_mae_to_plugin

from _converter_utils import add_common_args, check_not_near_empty, load, report_and_check, save


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    src = load(args.src, args.dst, args.force)
    state, dropped = official_mae_to_plugin(src)
    report_and_check(dropped, args.allow_drop, 'official')
    encoder_in = [k for k in src if not k.startswith(('decoder', 'mask_token'))]
    check_not_near_empty(sum(k.startswith('backbone.') for k in state), len(encoder_in),
                         args.src, 'timm names: patch_embed.proj, blocks.N, ...')
    aux = {k.split('.')[2] for k in state if k.startswith('neck.aux_decoders.')}
    print(f'encoder: {sum(k.startswith("backbone.") for k in state)} keys; decoders: '
          f'{int(any(k.startswith("neck.") and "aux_decoders" not in k for k in state))} final '
          f'+ {len(aux)} auxiliary')
    save(state, args.dst, meta=dict(converted_from=args.src, source_format='official MAE/DeepMIM'))


if __name__ == '__main__':
    main()
