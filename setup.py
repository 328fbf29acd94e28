"""deepmim_mm: DeepMIM and MFF masked image modeling as an OpenMMLab 2.x plugin.

Install with ``bash tools/setup_env.sh`` (creates .venv with the pinned stack). The OpenMMLab
packages are deliberately not listed in ``install_requires``: their releases pin mmcv ranges that
pip cannot resolve from PyPI wheels on PyTorch 2.14, so the set-up script installs them with
``--no-deps`` next to a patched mmcv build.
"""
from setuptools import find_packages, setup

setup(
    name='deepmim_mm',
    version='0.1.0',
    description='DeepMIM (deep supervision) and MFF (multi-level feature fusion) for '
    'masked image modeling, as an mmpretrain / mmseg / mmdet plugin',
    packages=find_packages(include=['deepmim_mm', 'deepmim_mm.*']),
    package_data={'deepmim_mm': ['demo/images/*/*/*.JPEG']},
    include_package_data=True,
    python_requires='==3.11.*',
    license='Apache-2.0',
)
