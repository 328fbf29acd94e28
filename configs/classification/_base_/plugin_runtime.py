# The plugin's additions to every classification config (README.md, "Configs").
custom_imports = dict(
    imports=['deepmim_mm.classification', 'deepmim_mm.compat.mmengine_checkpoint'],
    allow_failed_imports=False)
custom_hooks = [dict(type='CheckpointMatchHook')]
