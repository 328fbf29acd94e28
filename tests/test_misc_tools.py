"""tools/misc/: print_config.py and browse_dataset.py on the plugin's configs (the demo config
first), pkg:: configs and --cfg-options, through their main in this process."""
import json
import os
import os.path as osp

import numpy as np

from conftest import run_main, write_imagenet_folder

DEMO = 'configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py'
FINETUNE = 'configs/classification/vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py'


def print_config(capsys, *argv):
    assert run_main('tools/misc/print_config.py', *argv) == 0
    return capsys.readouterr().out


def print_config_json(capsys, *argv):
    """The JSON document of ``--json``: from its first line (``{``) on, as the fork's task
    libraries print to stdout when first imported."""
    lines = print_config(capsys, *argv, '--json').splitlines()
    return json.loads('\n'.join(lines[lines.index('{'):]))


def test_print_config_resolves_inheritance_and_overrides(capsys):
    out = print_config(capsys, DEMO, '--cfg-options', 'model.neck.decoder_depth=3',
                       'train_dataloader.batch_size=2')
    # From the demo itself, from its plugin base, and from the mmpretrain:: base two levels up.
    assert "type='DeepMIMReconstructionHook'" in out
    assert "type='MultiLevelDecoder'" in out
    assert "type='SelfSupDataPreprocessor'" in out and "_scope_='mmpretrain'" in out
    # {{_base_.train_pipeline}} substituted; --cfg-options merged last.
    assert "type='RandomResizedCrop'" in out
    assert 'decoder_depth=3' in out and 'decoder_depth=2' not in out

    js = print_config_json(capsys, DEMO)
    assert js['model']['neck']['decoder_depth'] == 2
    assert js['train_dataloader']['dataset']['dataset']['data_root'] == \
        'deepmim_mm/demo/images/train'


def test_misc_tools_check_overrides(tmp_path, capsys):
    """A mistyped --cfg-options key is one error line naming the closest key (browse_dataset
    would otherwise show the unchanged pipeline); --allow-new-keys adds it on purpose."""
    for tool in ('print_config.py', 'browse_dataset.py'):
        extra = ['-o', str(tmp_path), '--not-show'] if tool.startswith('browse') else []
        assert run_main(f'tools/misc/{tool}', DEMO, '--cfg-options',
                        'train_dataloder.batch_size=2', *extra) == 1
        err = capsys.readouterr().err
        assert err.startswith('error: --cfg-options train_dataloder.batch_size') and \
            "'train_dataloader'" in err and len(err.strip().splitlines()) == 1, err
    js = print_config_json(capsys, DEMO, '--cfg-options', 'my_note=1', '--allow-new-keys')
    assert js['my_note'] == 1


def test_print_config_of_a_package_config(capsys):
    cfg = print_config_json(capsys,
                            'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py')
    assert cfg['model']['type'] == 'MAE' and cfg['model']['neck']['decoder_depth'] == 8
    assert cfg['train_cfg']['max_epochs'] == 300


def test_print_config_of_a_config_with_an_mmseg_base(capsys):
    """``mmseg::`` bases resolve on either stack (the OneDL fork's distribution is
    ``onedl-mmsegmentation``: deepmim_mm.compat.mmengine_config_packages)."""
    cfg = print_config_json(capsys, 'configs/segmentation/mae-base_upernet_8xb2-amp-160k_'
                            'ade20k-512x512.py')
    assert cfg['model']['backbone']['type'] == 'PretrainedMAE'
    assert cfg['model']['decode_head']['type'] == 'UPerHead'  # from mmseg's config


def _images(folder):
    from PIL import Image
    names = sorted(os.listdir(folder))
    return names, [np.asarray(Image.open(osp.join(folder, n))) for n in names]


def test_browse_dataset_pretraining_demo(tmp_path):
    """The demo config (mmpretrain:: base configs, a RepeatDataset of the bundled photographs):
    mmpretrain's own browse_dataset.py fails on it with `unexpected keyword argument
    '_scope_'`."""
    out = tmp_path / 'browse'
    assert run_main('tools/misc/browse_dataset.py', DEMO, '--output-dir', out, '--not-show',
                    '--show-number', '4', '--mode', 'pipeline') == 0
    names, images = _images(out)
    assert len(names) == 4 and names[0].startswith('00000_')
    for img in images:  # a figure of every stage, non-blank
        assert img.ndim == 3 and img.shape[1] > 1000 and img.std() > 5


def test_browse_dataset_finetuning_config(tmp_path):
    data = str(tmp_path / 'imagenet')
    write_imagenet_folder(osp.join(data, 'train'), num_classes=3, per_class=2)
    out = tmp_path / 'browse'
    assert run_main('tools/misc/browse_dataset.py', FINETUNE, '-o', out, '--not-show', '-n', '3',
                    '-m', 'concat', '--cfg-options', f'train_dataloader.dataset.data_root={data}',
                    'train_dataloader.dataset.metainfo.classes=[class0,class1,class2]') == 0
    names, images = _images(out)
    assert len(names) == 3 and all(img.std() > 5 for img in images)
