# deepmim_vit-large-p16_8xb512-amp-coslr-1600e_in1k.py sharded with mmengine's FSDPStrategy;
# checkpoints are full state dicts, as the DDP configs' (README.md, "FSDP").
_base_ = './deepmim_vit-large-p16_8xb512-amp-coslr-1600e_in1k.py'

runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        # Our choice: one FSDP unit per ~1e7 parameters, i.e. per ViT-L block and per decoder.
        auto_wrap_policy=dict(type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
                              min_num_params=int(1e7)),
        use_orig_params=True),  # parameter names (and paramwise_cfg's no-decay rules) kept
    state_dict_cfg='full')
optim_wrapper = dict(use_fsdp=True)  # AmpOptimWrapper with FSDP's ShardedGradScaler
default_hooks = dict(checkpoint=dict(save_optimizer=True))
# No DeepMIMReconstructionHook: its forward needs the full (unsharded) model.
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteLossHook'),
                dict(type='CheckpointMatchHook')]
