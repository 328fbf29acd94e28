"""No OpenMMLab package in ``install_requires``: pip cannot resolve their mmcv pins on PyTorch
2.14, so ``tools/setup_env.sh`` installs them with ``--no-deps`` next to a patched mmcv build."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup


def add_mim_extension():
    """Put what mim reads into ``deepmim_mm/.mim`` as mmpretrain's setup.py does: links for an
    editable install (``develop``, or pip's PEP 660 ``editable_wheel``), else copies."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        mode = 'copy'
    else:
        return
    repo_path = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(repo_path, 'deepmim_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for filename in ('configs', 'tools', 'model-index.yml'):
        src_path = osp.join(repo_path, filename)
        tar_path = osp.join(mim_path, filename)
        if not osp.exists(src_path):  # a wheel from an sdist: copied already (MANIFEST.in)
            continue
        if osp.islink(tar_path) or osp.isfile(tar_path):
            os.remove(tar_path)
        elif osp.isdir(tar_path):
            shutil.rmtree(tar_path)
        if mode == 'symlink':
            os.symlink(osp.relpath(src_path, mim_path), tar_path)
        elif osp.isdir(src_path):
            shutil.copytree(src_path, tar_path,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src_path, tar_path)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='deepmim_mm',
        version='0.1.0',
        description='DeepMIM (deep supervision) and MFF (multi-level feature fusion) for '
        'masked image modeling, as an mmpretrain / mmseg / mmdet plugin',
        packages=find_packages(include=['deepmim_mm', 'deepmim_mm.*']),
        include_package_data=True,  # MANIFEST.in: the demo images, .mim
        # torch 2.14.1 publishes wheels for CPython 3.10-3.13; CI runs 3.11.
        python_requires='>=3.10,<3.14',
        license='Apache-2.0',
    )
