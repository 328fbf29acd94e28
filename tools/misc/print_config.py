"""Print a config with its whole inheritance resolved, as the Runner sees it."""
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
