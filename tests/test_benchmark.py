"""tools/analysis/benchmark.py (training steps) and benchmark_data.py (input side) on tiny
configs on the CPU, in this process (their ``main(argv)``): training steps against a tiny
mmpretrain MAE baseline; the data-pipeline, quality, end-to-end, decoder and make-set modes over
folders of JPEGs. Checks that the output is well-formed (never the times)."""
import json
import os
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import DEMO_IMAGES, ROOT, write_imagenet_folder

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
import benchmark  # noqa: E402
import benchmark_data  # noqa: E402

from benchmark_utils import flop_counter  # noqa: E402

DEMO_CFG = osp.join(ROOT, 'configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py')
TINY_ARCH = ('arch=dict(_delete_=True, embed_dims=64, num_layers=4, num_heads=2, '
             'feedforward_channels=128), img_size=32, patch_size=8')
TINY_NECK = ('embed_dim=64, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, '
             'num_patches=16, patch_size=8')


def tiny_configs(tmp_path):
    deepmim = tmp_path / 'deepmim_tiny.py'
    deepmim.write_text(
        f"_base_ = '{ROOT}/configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py'\n"
        f"model = dict(backbone=dict({TINY_ARCH}, out_indices=None),\n"
        f"             neck=dict({TINY_NECK}), head=dict(patch_size=8))\n")
    mae = tmp_path / 'mae_tiny.py'
    mae.write_text(
        "_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'\n"
        f"model = dict(backbone=dict({TINY_ARCH}), neck=dict({TINY_NECK}),\n"
        "             head=dict(patch_size=8))\n")
    compiled = tmp_path / 'deepmim_tiny_compile.py'
    # the Runner's `compile` key; the eager backend keeps the CPU test short (no C++ build)
    # (with the constructor that gives dynamo plain-dict param groups, as the compile config)
    compiled.write_text("_base_ = './deepmim_tiny.py'\ncompile = dict(backend='eager')\n"
                        "optim_wrapper = dict(constructor='PlainGroupsOptimWrapperConstructor')\n")
    return str(deepmim), str(mae), str(compiled)


def test_training_mode(tmp_path, capsys):
    deepmim, mae, compiled = tiny_configs(tmp_path)
    out = tmp_path / 'bench.json'
    benchmark.main([deepmim, compiled, '--baseline', mae, '--labels', 'deepmim',
                    'deepmim compiled', '--fused-adamw', '--batch-size', '2', '--warmup', '1',
                    '--steps', '2', '--no-isolate', '--json', str(out)])
    stdout, stderr = capsys.readouterr()
    assert '| baseline: mae_tiny' in stdout and '| deepmim ' in stdout
    assert '| deepmim compiled ' in stdout
    assert 'img/s vs base' in stdout and 'MFU' in stdout
    assert 'step 2/2' in stderr  # progress display
    res = json.loads(out.read_text())
    assert res['mode'] == 'training' and res['device'] == 'cpu'
    assert res['baseline'] == 'baseline: mae_tiny'
    assert res['matmul_peak_tflops']['float32'] > 0
    base, ours, compiled = res['results']
    assert compiled['compile'] and not ours['compile']
    assert compiled['gflop_per_img'] == pytest.approx(ours['gflop_per_img'])
    for r in (base, ours, compiled):
        assert r['fused_adamw']
        assert r['batch_size'] == 2 and r['img_size'] == 32 and r['optim_wrapper'] == 'OptimWrapper'
        assert r['step_ms_p25'] <= r['step_ms_median'] <= r['step_ms_p75']
        assert r['img_per_s'] == pytest.approx(2 / r['step_ms_median'] * 1e3)
        assert r['gflop_per_img'] > 0 and 0 < r['mfu']
        assert r['mem_kind'] == 'RSS growth'
        assert r['host_sync_ops'] == {}
    # DeepMIM's 4 decoders cost more FLOPs than MAE's one (same encoder, same decoder size)
    assert ours['gflop_per_img'] > base['gflop_per_img']
    assert ours['params_m'] > base['params_m']


def test_flops_include_cpu_attention():
    q = torch.randn(2, 4, 16, 8, requires_grad=True)
    with flop_counter() as fc:
        F.scaled_dot_product_attention(q, q, q).sum().backward()
    fwd = 2 * 2 * 4 * 16 * 16 * 8 * 2  # QK^T and AV
    assert fc.get_total_flops() >= fwd + 2 * fwd  # + backward (2x forward at least)


def test_compile_config():
    from mmengine.config import Config
    base = Config.fromfile(osp.join(
        ROOT, 'configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'))
    fast = Config.fromfile(osp.join(
        ROOT, 'configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k_compile.py'))
    assert fast.compile is True and base.get('compile') is None
    assert fast.optim_wrapper.type == 'AmpOptimWrapper' and fast.optim_wrapper.dtype == 'bfloat16'
    assert fast.optim_wrapper.optimizer.fused is True
    assert fast.model == base.model  # same function
    for k in ('type', 'lr', 'betas', 'weight_decay'):
        assert fast.optim_wrapper.optimizer[k] == base.optim_wrapper.optimizer[k]
    assert fast.param_scheduler == base.param_scheduler


@pytest.fixture
def jpeg_folder(tmp_path):
    return write_imagenet_folder(str(tmp_path / 'imgs'), num_classes=2, per_class=3, size=48)


def test_data_pipeline_mode(tmp_path, jpeg_folder, capsys):
    deepmim, _, _ = tiny_configs(tmp_path)
    res = benchmark_data.main(['pipeline', deepmim, '--data', jpeg_folder, '--workers', '0', '2',
                               '--batches', '2', '--batch-size', '2', '--repeats', '2'])
    stdout = capsys.readouterr().out
    assert '| workers |' in stdout and '| bytes-only ' in stdout
    assert res['mode'] == 'pipeline'
    assert [(r['workers'], r['path']) for r in res['results']] == [
        (w, p) for w in (0, 2) for p in ('standard', 'crop-aware', 'bytes-only')]
    assert all(r['img_per_s_per_worker'] > 0 and len(r['repeats']) == 2
               for r in res['results'])
    assert all(r['ratio_to_standard'] > 0 for r in res['results'] if r['path'] != 'standard')
    assert res['batch_size'] == 2


def test_make_set_and_quality_modes(tmp_path, capsys):
    deepmim, _, _ = tiny_configs(tmp_path)
    folder = str(tmp_path / 'set')
    benchmark_data.main(['make-set', folder, '--size', '500', '375', '--count', '4'])
    assert '4 JPEGs of 500x375' in capsys.readouterr().out
    assert len(os.listdir(folder)) == 4
    out = tmp_path / 'quality.json'
    # the pipeline's RandomResizedCrop at 224 (its own), so crops of 500x375 use scale 1 or 2
    benchmark_data.main(['quality', deepmim, '--data', folder, '--draws', '3', '--json', str(out)])
    res = json.loads(out.read_text())
    assert res['mode'] == 'quality' and res['crops'] == 12
    assert res['results'][-1]['dct_scale'] == 'all'
    assert sum(r['fraction'] for r in res['results'][:-1]) == pytest.approx(1)
    assert all(r['psnr_db'] > 25 for r in res['results'])


@pytest.mark.parametrize('path', ['device', 'standard'])
def test_end_to_end_mode(tmp_path, jpeg_folder, path, capsys):
    """Training from files through the real dataloader next to the model-only rate."""
    deepmim, _, _ = tiny_configs(tmp_path)
    res = benchmark_data.main([
        'end-to-end', deepmim, '--data', jpeg_folder, '--path', path, '--workers', '1',
        '--batch-size', '2', '--warmup', '1', '--steps', '2',
        '--cfg-options', 'train_dataloader.dataset.dataset.pipeline.1.scale=32'])
    assert 'end-to-end / model-only' in capsys.readouterr().out
    (r, ) = res['results']
    assert r['path'] == path and r['batch_size'] == 2 and r['optim_wrapper'] == 'OptimWrapper'
    assert r['model_only_img_per_s'] > 0 and r['end_to_end_img_per_s'] > 0
    assert r['ratio'] == pytest.approx(r['end_to_end_img_per_s'] / r['model_only_img_per_s'])


def test_decoders_mode_on_the_cpu(tmp_path):
    res = benchmark_data.main(['decoders', '--data', DEMO_IMAGES, '--batch-size', '4',
                               '--batches', '1'])
    names = [r['decoder'] for r in res['results']]
    assert names[:3] == ['torchcodec', 'torchvision.io', 'pillow (1 CPU thread)']
    assert names[3].startswith('DecodeDataPreprocessor (torchcodec')
    assert all(r.get('img_per_s', 0) > 0 for r in res['results'])


@pytest.mark.parametrize('argv,flag', [
    (['pipeline', 'x.py', '--data', '.', '--workers', '-1'], '--workers'),
    (['pipeline', 'x.py', '--data', '.', '--batch-size', '0'], '--batch-size'),
    (['end-to-end', 'x.py', '--data', '.', '--steps', '0'], '--steps'),
    (['end-to-end', 'x.py', '--data', '.', '--warmup', '-1'], '--warmup')])
def test_out_of_range_counts_name_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        benchmark_data.parse_args(argv)
    assert f'argument {flag}' in capsys.readouterr().err


@pytest.mark.parametrize('main,argv,error,named', [
    (benchmark.main, ['x.py', '--amp', 'bf16'], ValueError, '--amp bf16'),
    (benchmark_data.main, ['end-to-end', 'x.py', '--data', '.', '--amp', 'fp16'], ValueError,
     '--amp fp16'),
    (benchmark.main, ['no_such.py', '--baseline', 'none'], FileNotFoundError, 'no_such.py'),
    (benchmark_data.main, ['pipeline', DEMO_CFG, '--data', 'missing'], FileNotFoundError,
     'missing'),
    (benchmark_data.main, ['quality', DEMO_CFG, '--data', 'missing'], FileNotFoundError,
     'missing'),
    # a mistyped override would measure the unchanged config: refused before anything runs
    (benchmark.main, [DEMO_CFG, '--baseline', 'none', '--cfg-options',
                      'train_dataloder.batch_size=2'], ValueError, "'train_dataloader'"),
    (benchmark_data.main, ['pipeline', DEMO_CFG, '--data', DEMO_IMAGES, '--cfg-options',
                           'train_dataloader.batch_sise=2'], ValueError,
     "'train_dataloader.batch_size'")])
def test_bad_input_is_named(main, argv, error, named):
    with pytest.raises(error, match=named):
        main(argv)


def test_random_teachers_time_a_clip_config_without_its_file(tmp_path):
    """--random-teachers: the DeepMIM-CLIP config (tiny student and teacher) is measured without
    the CLIP checkpoint file, which does not exist here; without the flag that file is needed."""
    clip = tmp_path / 'deepmim_clip_tiny.py'
    base = osp.join(ROOT, 'configs', 'pretrain',
                    'deepmim-clip_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py')
    clip.write_text(
        f"_base_ = '{base}'\n"
        f"model = dict(backbone=dict({TINY_ARCH}, out_indices=None),\n"
        f"             neck=dict({TINY_NECK}),\n"
        "             target_generator=dict(checkpoint='/nonexistent/ViT-B-16.pt', img_size=32,\n"
        "                 arch=dict(_delete_=True, width=32, layers=1, heads=2, patch_size=8,\n"
        "                           output_dim=512)))\n")
    args = [str(clip), '--baseline', 'none', '--batch-size', '2', '--warmup', '1', '--steps', '1']
    res = benchmark.main(args + ['--random-teachers', '--no-isolate'])
    (r, ) = res['results']
    assert r['gflop_per_img'] > 0 and r['img_per_s'] > 0
    # measured in a fresh process by default (its own RSS): the error comes back from it
    with pytest.raises(FileNotFoundError, match='/nonexistent/ViT-B-16.pt'):
        benchmark.main(args)


def test_configs_load_with_the_compat_constructor():
    """The compiled parts of gpu_benchmarks.sh give mmpretrain's MAE config
    PlainGroupsOptimWrapperConstructor (in deepmim_mm.compat, which importing deepmim_mm does not
    import): load_cfg makes it available, in a fresh interpreter (this one has imported it)."""
    import subprocess
    code = ('import benchmark_utils as u; from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS '
            "as R; u.load_cfg('mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'); "
            "assert R.get('PlainGroupsOptimWrapperConstructor')")
    subprocess.run([sys.executable, '-c', code], check=True,
                   cwd=osp.join(ROOT, 'tools', 'analysis'),
                   env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_training_mode_cuda_bf16(tmp_path):
    deepmim, mae, _ = tiny_configs(tmp_path)
    res = benchmark.main([deepmim, '--baseline', mae, '--device', 'cuda', '--amp', 'bf16',
                          '--fused-adamw', '--batch-size', '4', '--warmup', '2', '--steps', '3'])
    for r in res['results']:
        assert r['mem_kind'] == 'cuda max allocated' and r['dtype'] == 'bfloat16'
        assert r['fused_adamw'] and r['host_sync_ops'] == {}


def test_gpu_script_parses_and_summarises(tmp_path):
    """tools/analysis/gpu_benchmarks.sh is valid bash; its summary computes the ratios the
    README reports from the parts' JSON (as benchmark.py / benchmark_data.py write them)."""
    import subprocess
    subprocess.run(['bash', '-n', osp.join(ROOT, 'tools', 'analysis', 'gpu_benchmarks.sh')],
                   check=True)
    import gpu_summary
    parts = tmp_path / 'parts'
    parts.mkdir()
    base = 'baseline: mae_vit-base-p16_8xb512-amp-coslr-300e_in1k'
    (parts / 'train.json').write_text(json.dumps(dict(results=[
        dict(label=base, img_per_s=100.0, peak_mem_mib=10.0),
        dict(label='deepmim-pixel', img_per_s=110.0, peak_mem_mib=12.0)])))
    (parts / 'e2e_device.json').write_text(json.dumps(dict(results=[
        dict(path='device', ratio=0.95)])))
    gpu_summary.main(str(tmp_path))
    text = (tmp_path / 'summary.md').read_text()
    assert '| deepmim-pixel / MAE img/s (plain) | 1.100 | >= 1.0 |' in text
    assert '| deepmim-pixel / MAE peak memory (plain) | 1.200 | <= 1.3 |' in text
    assert '| end-to-end / model-only, device path | 0.950 | >= 0.90 |' in text
    assert set(json.loads((tmp_path / 'results.json').read_text())) == {'train', 'e2e_device'}
