# What every pretraining config of this plugin adds to mmpretrain's runtime: the plugin's import,
# its opt-in fix for loading mmengine checkpoints on torch >= 2.6 (deepmim_mm.compat; it does
# nothing where mmengine loads them itself), and its training hooks. The first hook is off by
# default; switch it on with
#   --cfg-options custom_hooks.0.enable=True  (and custom_hooks.0.interval=N)
# (Leaves that inherit an mmpretrain:: config directly also select the AtomicCheckpointHook in
# default_hooks: mmengine allows no key in two bases.)
custom_imports = dict(imports=['deepmim_mm', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)

custom_hooks = [
    # Per-level reconstruction figures through the runner's visualizer (vis_backends).
    dict(type='DeepMIMReconstructionHook', enable=False, interval=1000, num_images=4),
    # Torch / numpy / python RNG states in every checkpoint: exact mid-epoch resume.
    dict(type='RNGStateHook'),
    # Stop at the first non-finite loss, naming the level and iteration (AMP: let the loss
    # scaler skip the step first).
    dict(type='NonFiniteLossHook'),
    # A load_from / resume checkpoint of another architecture is an error, not a warning.
    dict(type='CheckpointMatchHook'),
    # kNN top-1 of every supervised level on a small labelled folder (train/ and val/ class
    # subfolders), every epoch when switched on:
    #   --cfg-options custom_hooks.4.enable=True custom_hooks.4.data_root=/path/to/subset
    dict(type='KNNMonitorHook', enable=False, data_root=None),
]
