# Speed variant of deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py (same model, data, schedule,
# loss): torch.compile, bf16, fused AdamW. Measuring it: README.md, "Fast variants".
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

compile = True  # mmengine's Runner compiles train_step (True = torch.compile's defaults)

optim_wrapper = dict(
    # Plain-dict param groups: torch 2.14's dynamo cannot trace mmengine's ConfigDict groups.
    constructor='PlainGroupsOptimWrapperConstructor',
    dtype='bfloat16',
    optimizer=dict(fused=True))
