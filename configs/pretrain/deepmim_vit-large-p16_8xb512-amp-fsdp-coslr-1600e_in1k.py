# DeepMIM ViT-L/16 (pixel targets) with mmengine's FlexibleRunner + FSDPStrategy: parameters,
# gradients and optimizer states are sharded across the GPUs (PyTorch FSDP), for models whose
# replicated optimizer state outgrows a GPU under plain data parallelism (ViT-L/H with four
# decoders). Recipe, blocks and decoders as deepmim_vit-large-p16_8xb512-amp-coslr-1600e_in1k.py.
#   tools/dist_train.sh configs/pretrain/deepmim_vit-large-p16_8xb512-amp-fsdp-coslr-1600e_in1k.py 8
# Checkpoints are written as full (unsharded) state dicts on rank 0, in the same format as the
# DDP configs, so they load downstream unchanged.
_base_ = './deepmim_vit-large-p16_8xb512-amp-coslr-1600e_in1k.py'

runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    # One FSDP unit per ~1e7 parameters: each ViT-L block (12.6M) and each decoder becomes its
    # own shard unit, so only one block's full weights are gathered at a time.
    model_wrapper=dict(
        auto_wrap_policy=dict(type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
                              min_num_params=int(1e7)),
        use_orig_params=True),  # parameter names (and paramwise_cfg's no-decay rules) kept
    state_dict_cfg='full')
# mmengine's AmpOptimWrapper needs FSDP's ShardedGradScaler under FSDP.
optim_wrapper = dict(use_fsdp=True)
default_hooks = dict(checkpoint=dict(save_optimizer=True))
# No DeepMIMReconstructionHook: its forward needs the full (unsharded) model.
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteLossHook'),
                dict(type='CheckpointMatchHook')]
