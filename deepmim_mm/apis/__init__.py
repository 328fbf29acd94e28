"""Python API: a pretrained encoder from a config and a checkpoint, and its features per level.

    from deepmim_mm.apis import extract_levels, init_encoder
    model = init_encoder('configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
                         'work_dirs/deepmim/epoch_300.pth', device='cuda')
    feats = extract_levels(model, ['a.jpg', 'b.jpg'], pool='avg')  # {'block6': (2, 768), ...}
"""
from ..analysis.features import eval_pipeline, labelled_folder, level_features, level_names
from ..analysis.features import model_input_size as model_img_size
from ..utils import load_config
from .inference import LevelFeatureExtractor, extract_levels, init_encoder

__all__ = [
    'LevelFeatureExtractor', 'eval_pipeline', 'extract_levels', 'init_encoder',
    'labelled_folder', 'level_features', 'level_names', 'load_config', 'model_img_size'
]
