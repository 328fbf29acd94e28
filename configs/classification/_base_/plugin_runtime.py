# What every classification config of this plugin adds to the mmpretrain config it inherits: the
# plugin's classification modules and its opt-in fix for loading mmengine checkpoints on
# torch >= 2.6 (deepmim_mm.compat; a no-op where mmengine loads them itself), and
# CheckpointMatchHook: a load_from / resume checkpoint that does not fit the model is an error
# (mmengine only logs it). (The leaves also select the crash-safe AtomicCheckpointHook in
# default_hooks: mmengine allows no key in two bases, and mmpretrain's bases define it.)
custom_imports = dict(
    imports=['deepmim_mm.classification', 'deepmim_mm.compat.mmengine_checkpoint'],
    allow_failed_imports=False)
custom_hooks = [dict(type='CheckpointMatchHook')]
