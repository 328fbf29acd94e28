"""Entry-point helpers: what ``tools/`` does around the Runner (argument and config checks, the
CPU process group, the AMP fallback), and config loading for ``apis``. Nothing below ``apis``
imports them."""
from .amp import fall_back_to_fp32_without_gpu, to_fp32_optim_wrapper
from .config_checks import (apply_cfg_options, check_cfg_options, check_hook_args,
                            check_output_folder, load_config, runner_keys)
from .entry_point import add_cfg_options, build_runner, read_runner_config, run, runner_arg_parser
from .launcher import RankLostError, record_for_torchrun

__all__ = [
    'add_cfg_options', 'apply_cfg_options', 'build_runner', 'check_cfg_options', 'check_hook_args',
    'check_output_folder', 'fall_back_to_fp32_without_gpu', 'load_config', 'RankLostError',
    'read_runner_config', 'record_for_torchrun', 'run', 'runner_arg_parser', 'runner_keys',
    'to_fp32_optim_wrapper'
]
