"""Entry-point helpers: what ``tools/`` does around the Runner (argument and config checks, the
CPU process group, the AMP fallback), and config loading for ``apis``. Nothing below ``apis``
imports them."""
from .amp import fall_back_to_fp32_without_gpu, to_fp32_optim_wrapper
from .config_checks import (ALLOW_NEW_FLAG, apply_cfg_options, check_cfg_options, check_hook_args,
                            check_output_folder, check_work_dir, config_file, load_config,
                            runner_keys)
from .entry_point import add_cfg_options, build_runner, read_runner_config, run, runner_arg_parser
from .launcher import (RankLostError, check_launcher_env, init_cpu_distributed, name_lost_ranks,
                       record_for_torchrun)

__all__ = [
    'ALLOW_NEW_FLAG', 'add_cfg_options', 'apply_cfg_options', 'build_runner', 'check_cfg_options',
    'check_hook_args', 'check_launcher_env', 'check_output_folder', 'check_work_dir',
    'config_file', 'fall_back_to_fp32_without_gpu', 'init_cpu_distributed', 'load_config',
    'name_lost_ranks', 'RankLostError', 'read_runner_config', 'record_for_torchrun', 'run',
    'runner_arg_parser', 'runner_keys', 'to_fp32_optim_wrapper'
]
