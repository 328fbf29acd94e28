"""Training-run options every user meets: TensorBoard logging (one switch, any config) and
gradient accumulation (``optim_wrapper.accumulative_counts``) as the way to keep the papers'
batch of 4096 on fewer GPUs, through tools/train.py and the real Runner."""
import glob
import json
import os.path as osp
import re

import torch

from conftest import DEMO, run_main


def tiny_config(path, batch_size, accumulative_counts, iters, optimizer="dict(type='SGD', lr=0.5)"):
    """The demo config at 64 px on its bundled photographs, with a deterministic pipeline (the
    only randomness per step is the mask, drawn from the global torch RNG in the same order
    whatever the batch is cut into), fp32, no dropout / drop path, a constant learning rate,
    one iteration checkpoint at the end and unsmoothed per-iteration logs."""
    path.write_text(f'''
_base_ = {DEMO!r}
model = dict(backbone=dict(img_size=64), neck=dict(num_patches=16))
pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64)),
            dict(type='PackInputs')]
train_dataloader = dict(batch_size={batch_size}, num_workers=0,
                        dataset=dict(times=1, dataset=dict(pipeline=pipeline)))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer={optimizer},
                     accumulative_counts={accumulative_counts})
param_scheduler = []
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters})
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(by_epoch=False, interval={iters}, max_keep_ckpts=1))
log_processor = dict(window_size=1, by_epoch=False)
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteLossHook')]
''')
    return str(path)


def _losses(work_dir):
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line)['loss'] for line in f if '"loss"' in line]


def test_accumulation_equals_the_big_batch_update(tmp_path):
    """Batch 4 x accumulative_counts 2 gives the weights of batch 8 after two updates (SGD, so a
    wrong gradient scale would show; up to float rounding). Equal because DeepMIM's loss is a
    mean over masked patches and every image masks the same number of patches: the mean of the
    two micro-batch losses, each divided by 2 by the wrapper, is the big-batch loss; the sampler
    order and the masks (torch.rand of the same total size, drawn serially) are the same."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    # Both runs start from the same saved weights (and the same seed, so the same masks).
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(tiny_config(tmp_path / 'init.py', 8, 1, 2)).model)
    model.init_weights()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({'state_dict': init, 'meta': {}}, tmp_path / 'init.pth')
    runs = {}
    for name, (bs, k, iters) in {'accumulated': (4, 2, 4), 'big_batch': (8, 1, 2)}.items():
        cfg = tiny_config(tmp_path / f'{name}.py', bs, k, iters)
        work = str(tmp_path / name)
        assert run_main('tools/train.py', cfg, '--work-dir', work, '--cfg-options',
                        f'load_from={tmp_path / "init.pth"}') == 0
        ckpt = torch.load(osp.join(work, f'iter_{iters}.pth'), map_location='cpu',
                          weights_only=False)
        runs[name] = (ckpt['state_dict'], _losses(work))
    (acc, acc_losses), (big, big_losses) = runs['accumulated'], runs['big_batch']
    assert len(acc_losses) == 4 and len(big_losses) == 2
    for i in range(2):  # each big-batch loss is the mean of its two micro-batch losses
        assert abs((acc_losses[2 * i] + acc_losses[2 * i + 1]) / 2 - big_losses[i]) < 1e-5
    assert big.keys() == acc.keys() == init.keys()
    moved = max((big[k] - init[k]).abs().max().item() for k in init)
    differ = max((big[k] - acc[k]).abs().max().item() for k in init)
    print(f'largest weight change {moved:.3g}, largest difference {differ:.3g}')
    assert moved > 1e-2  # the two updates moved the weights: the comparison can fail
    for key, value in big.items():
        torch.testing.assert_close(acc[key], value, atol=2e-6, rtol=1e-5, msg=key)


def test_auto_scale_lr_counts_gpus_times_batch_not_accumulation(tmp_path, capsys):
    """mmengine 0.10.7's --auto-scale-lr scales by world_size x batch_size / base_batch_size and
    ignores accumulative_counts: keep GPUs x batch x accumulative_counts = 4096 and leave
    --auto-scale-lr off (README)."""
    cfg = tiny_config(tmp_path / 'acc.py', 4, 2, 2)
    with open(cfg, 'a') as f:
        f.write('auto_scale_lr = dict(base_batch_size=8)\n')
    assert run_main('tools/train.py', cfg, '--work-dir', tmp_path / 'w', '--auto-scale-lr') == 0
    out = ''.join(capsys.readouterr())
    assert re.search(r'batch size of 8 and the current batch size is 4\. '
                     r'Scaling the original LR by 0\.5', out), out[-3000:]


def test_tensorboard_switch_writes_event_files(tmp_path):
    """The one switch: --cfg-options visualizer.vis_backends.0.type=TensorboardVisBackend
    (every config of the plugin inherits vis_backends=[LocalVisBackend])."""
    cfg = tiny_config(tmp_path / 'tb.py', 4, 1, 2)
    work = tmp_path / 'work'
    assert run_main('tools/train.py', cfg, '--work-dir', work, '--cfg-options',
                    'visualizer.vis_backends.0.type=TensorboardVisBackend') == 0
    (events, ) = glob.glob(str(work / '*' / 'vis_data' / 'events.out.tfevents.*'))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(osp.dirname(events))
    acc.Reload()
    tags = acc.Tags()['scalars']
    for tag in ('loss', 'loss_block3', 'loss_block6', 'lr'):
        assert tag in tags, tags
    assert [e.step for e in acc.Scalars('loss')] == [1, 2]
    assert all(e.value > 0 for e in acc.Scalars('loss_block6'))
