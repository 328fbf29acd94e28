"""Print a config with its whole inheritance resolved, as the Runner sees it.

    python tools/misc/print_config.py configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py
    python tools/misc/print_config.py mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py
    python tools/misc/print_config.py CONFIG --cfg-options model.neck.decoder_depth=8

Every ``_base_`` (files and ``pkg::`` configs of installed OpenMMLab packages) and every
``{{_base_.xxx}}`` substitution is resolved; ``--cfg-options`` are merged last, as
``tools/train.py`` merges them. Dicts inherited from a ``pkg::`` base carry ``_scope_`` (the
registry scope mmengine builds them in).
"""
import argparse

from _misc_utils import add_cfg_options, load_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file, or pkg::path.py of an installed package')
    add_cfg_options(parser)
    parser.add_argument('--json', action='store_true',
                        help='print the resolved config as JSON instead of Python')
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.allow_new_keys)
    if args.json:
        import json
        print(json.dumps(cfg.to_dict(), indent=2, default=str))
    else:
        print(cfg.pretty_text)


if __name__ == '__main__':
    main()
