# Speed variant of deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py (same model, data, schedule
# and loss): bf16 autocast instead of fp16, fused AdamW, and torch.compile of the training step.
# The per-level decoders already run as one batched computation (MultiLevelDecoder, batched by
# default). Measure it against mmpretrain's MAE with
#   python tools/analysis/benchmark.py \
#       configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py \
#       configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k_compile.py \
#       --device cuda --batch-size 256
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

# mmengine's Runner compiles model.train_step with torch.compile(**compile) when this key is set
# (mmengine 0.10.7 Runner._maybe_compile; True = default options, or a dict of torch.compile
# arguments, e.g. dict(mode='max-autotune')). The first iterations are slow while it compiles.
compile = True

optim_wrapper = dict(
    # torch 2.14's dynamo cannot trace the optimizer step over the ConfigDict param groups
    # mmengine builds from paramwise_cfg: this constructor gives plain-dict groups.
    constructor='PlainGroupsOptimWrapperConstructor',
    # bf16 needs no loss scaling; the wrapper keeps mmengine's GradScaler, whose checks run
    # inside the fused AdamW kernel (no host synchronisation per step).
    dtype='bfloat16',
    # One fused kernel for all parameters (PyTorch >= 2.0 on CUDA, >= 2.4 on CPU).
    optimizer=dict(fused=True))
