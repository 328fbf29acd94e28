"""Per-layer linear probe: top-1 of a linear classifier on the frozen features of EVERY block.

DeepMIM (arXiv 2303.08817) claims deep supervision makes the shallower blocks of a ViT better;
this tool measures it on your own checkpoints, e.g. MAE against DeepMIM:

    python tools/analysis/layer_probe.py \\
        configs/classification/vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py \\
        work_dirs/mae/epoch_300.pth work_dirs/deepmim/epoch_300.pth --labels MAE DeepMIM \\
        --data-root data/imagenet --max-per-class 50 --work-dir work_dirs/layer_probe \\
        --device cuda

- CONFIG gives the encoder: ``model.backbone``'s ``arch``, ``patch_size`` (and ``img_size``
  unless ``--img-size``) of any ViT config of this plugin or mmpretrain (fine-tuning, linear
  probing or pretraining). The encoder is built as mmpretrain's ``VisionTransformer`` and loads
  each checkpoint's ``backbone.`` weights through
  :func:`deepmim_mm.utils.checkpoint.load_pretrained_encoder` (every encoder weight must load;
  decoders and MFF fusion layers are dropped and reported).
- The dataset is in ImageNet layout: ``DATA_ROOT/train/<class>/*`` and ``DATA_ROOT/val/<class>/*``
  (read by mmpretrain's ``CustomDataset``; ``--max-per-class`` takes a class-balanced subset).
  Images are resized (short side ``img_size * 256 / 224``, bicubic) and centre-cropped, the
  config's (or ImageNet's) mean / std normalise them.
- One forward pass per image gives every block's output (``out_indices`` = all blocks, raw
  tokens, no final norm): the class token and the average of the patch tokens of each block.
- Features are cached on disk per checkpoint x block x split x data (``--cache-dir``, default
  ``WORK_DIR/feature_cache``), keyed by the checkpoint file (path, size, mtime), the encoder
  settings and the list of images: a rerun (e.g. with another classifier) extracts nothing.
- Per block and feature type, a linear classifier is trained on the standardised features
  (standardising = MAE's BatchNorm-without-affine before the linear layer): ``--classifier
  linear`` (default: mini-batch AdamW with cross-entropy for ``--epochs``) or ``ridge``
  (closed-form least squares on one-hot targets, ``--ridge-lambda``).
- Prints a table, writes ``layer_probe.csv`` (label, checkpoint, block (1-indexed), feature,
  top1 [, top5]) and ``layer_probe.png`` (top-1 per block, one line per checkpoint, one panel
  per feature type) to ``--work-dir``.
"""
import argparse
import csv
import hashlib
import json
import os
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

FEATURES = ('cls', 'avg')
DEFAULT_MEAN = [123.675, 116.28, 103.53]
DEFAULT_STD = [58.395, 57.12, 57.375]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Per-layer linear probe of ViT checkpoints.')
    p.add_argument('config', help='a config whose model.backbone is a ViT')
    p.add_argument('checkpoints', nargs='+', help='pretraining (or fine-tuned) checkpoints')
    p.add_argument('--labels', nargs='+', help='one label per checkpoint (default: file names)')
    p.add_argument('--data-root', required=True,
                   help='ImageNet-layout folder with train/ and val/ class subfolders')
    p.add_argument('--work-dir', required=True, help='where the CSV, PNG and cache go')
    p.add_argument('--cache-dir', help='feature cache (default: WORK_DIR/feature_cache)')
    p.add_argument('--no-cache', action='store_true', help='neither read nor write the cache')
    p.add_argument('--prefix', default='backbone.',
                   help="encoder prefix in the checkpoints ('' for a bare encoder state dict)")
    p.add_argument('--img-size', type=int, help='input size (default: the config backbone\'s)')
    p.add_argument('--max-per-class', type=int, help='use at most N images per class and split')
    p.add_argument('--batch-size', type=int, default=64, help='extraction batch size')
    p.add_argument('--num-workers', type=int, default=2, help='data loading workers')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                   help='cpu, cuda, cuda:1, ... (default: cuda when available)')
    p.add_argument('--features', nargs='+', default=list(FEATURES), choices=FEATURES,
                   help='cls: class token; avg: mean of the patch tokens')
    p.add_argument('--classifier', default='linear', choices=('linear', 'ridge'))
    p.add_argument('--epochs', type=int, default=100, help='linear: training epochs')
    p.add_argument('--lr', type=float, default=1e-3, help='linear: AdamW learning rate')
    p.add_argument('--weight-decay', type=float, default=1e-4, help='linear: AdamW decay')
    p.add_argument('--probe-batch-size', type=int, default=4096,
                   help='linear: mini-batch size on the cached features')
    p.add_argument('--ridge-lambda', type=float, default=1.0, help='ridge: regularisation')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-plot', action='store_true', help='skip the PNG')
    args = p.parse_args(argv)
    if args.labels is None:
        args.labels = [osp.splitext(osp.basename(c))[0] for c in args.checkpoints]
    if len(args.labels) != len(args.checkpoints):
        p.error(f'--labels: {len(args.labels)} labels for {len(args.checkpoints)} checkpoints; '
                'give one label per checkpoint')
    if len(set(args.labels)) != len(args.labels):
        p.error(f'--labels must be distinct, got {args.labels}')
    for split in ('train', 'val'):
        if not osp.isdir(osp.join(args.data_root, split)):
            raise FileNotFoundError(f'--data-root: {osp.join(args.data_root, split)!r} not '
                                    'found; expected ImageNet layout: train/ and val/ folders '
                                    'of class subfolders')
    for c in args.checkpoints:
        if not osp.isfile(c):
            raise FileNotFoundError(f'checkpoints: {c!r} not found')
    return args


# ------------------------------------------------------------------------------------------------
# Encoder and data
# ------------------------------------------------------------------------------------------------
def encoder_settings(cfg, img_size=None):
    """``arch``, ``patch_size``, ``img_size`` of ``cfg.model.backbone``."""
    bb = cfg.get('model', {}).get('backbone')
    if not bb or 'arch' not in bb:
        raise ValueError('config: model.backbone.arch not found; the config must describe a '
                         'ViT backbone (VisionTransformer, MAEViT, DeepMIMViT, ...)')
    arch = bb['arch']
    arch = arch.to_dict() if hasattr(arch, 'to_dict') else arch
    if isinstance(arch, dict):
        arch = {k: arch[k] for k in ('embed_dims', 'num_layers', 'num_heads',
                                     'feedforward_channels')}
    size = img_size or bb.get('img_size', 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return dict(arch=arch, patch_size=bb.get('patch_size', 16), img_size=int(size))


def build_encoder(settings):
    from mmpretrain.models.backbones import VisionTransformer
    vit = VisionTransformer(arch=settings['arch'], img_size=settings['img_size'],
                            patch_size=settings['patch_size'], out_type='raw', final_norm=False)
    vit.out_indices = list(range(vit.num_layers))  # every block, in one forward pass
    return vit


def build_dataset(data_root, split, img_size, max_per_class, seed):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=int(round(img_size * 256 / 224)), edge='short',
             backend='pillow', interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=img_size),
        dict(type='PackInputs'),
    ]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dict(type='CustomDataset', data_root=data_root, data_prefix=split,
                                 pipeline=pipeline, lazy_init=True))
        ds.full_init()
        if max_per_class:
            g = torch.Generator().manual_seed(seed)
            order = torch.randperm(len(ds), generator=g).tolist()
            counts, keep = {}, []
            for i in order:
                label = ds.get_data_info(i)['gt_label']
                if counts.get(label, 0) < max_per_class:
                    counts[label] = counts.get(label, 0) + 1
                    keep.append(i)
            ds = ds.get_subset(sorted(keep))
    return ds


def data_key(ds, img_size):
    items = [(osp.relpath(ds.get_data_info(i)['img_path'], ds.data_root),
              int(ds.get_data_info(i)['gt_label'])) for i in range(len(ds))]
    blob = json.dumps(dict(items=items, classes=list(ds.metainfo['classes']), img=img_size))
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def checkpoint_key(path, settings, prefix):
    st = os.stat(path)
    blob = json.dumps(dict(path=osp.abspath(path), size=st.st_size, mtime=st.st_mtime_ns,
                           settings=settings, prefix=prefix), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@torch.no_grad()
def extract(encoder, ds, preprocessor, args, desc):
    """Every block's class token and mean patch token for every image of ``ds``."""
    from mmengine.dataset import pseudo_collate
    from tqdm import tqdm
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.num_workers, collate_fn=pseudo_collate)
    num = encoder.num_layers
    feats = {f: [[] for _ in range(num)] for f in FEATURES}
    labels = []
    for batch in tqdm(loader, desc=desc, unit='batch', file=sys.stdout, dynamic_ncols=True):
        data = preprocessor(batch, False)
        x = data['inputs'].to(args.device)
        labels.append(torch.cat([s.gt_label for s in data['data_samples']]))
        for i, tokens in enumerate(encoder(x)):
            feats['cls'][i].append(tokens[:, 0].float().cpu())
            feats['avg'][i].append(tokens[:, 1:].mean(dim=1).float().cpu())
    labels = torch.cat(labels).long()
    return [dict(cls=torch.cat(feats['cls'][i]), avg=torch.cat(feats['avg'][i]), labels=labels)
            for i in range(num)]


def layer_features(ckpt, label, settings, datasets, preprocessor, args, cache_dir):
    """``{split: [per-block dict(cls, avg, labels)]}``, from the cache when it is complete."""
    from deepmim_mm.checkpoint import load_pretrained_encoder
    ckey = checkpoint_key(ckpt, settings, args.prefix)
    num = settings['num_layers']
    out, todo = {}, []
    for split, (ds, dkey) in datasets.items():
        files = [osp.join(cache_dir, f'{ckey}_{split}-{dkey}_block{b + 1:02d}.pt')
                 for b in range(num)]
        if not args.no_cache and all(osp.isfile(f) for f in files):
            out[split] = [torch.load(f) for f in files]
            print(f'[{label}] {split}: reusing cached features ({num} blocks) from {cache_dir}')
        else:
            todo.append((split, ds, files))
    if not todo:
        return out
    encoder = build_encoder(settings)
    report = load_pretrained_encoder(encoder, ckpt, prefix=args.prefix or None,
                                     field_name='checkpoints', resizable=('pos_embed', ))
    print(f'[{label}] ' + report.format().split('\n')[0])
    encoder.to(args.device).eval()
    for split, ds, files in todo:
        t0 = time.time()
        feats = extract(encoder, ds, preprocessor, args, f'[{label}] {split} features')
        print(f'[{label}] {split}: {len(ds)} images x {num} blocks in {time.time() - t0:.1f}s')
        if not args.no_cache:
            os.makedirs(cache_dir, exist_ok=True)
            for f, block in zip(files, feats):
                torch.save(block, f + '.tmp')
                os.replace(f + '.tmp', f)
        out[split] = feats
    return out


# ------------------------------------------------------------------------------------------------
# Linear classifiers on cached features
# ------------------------------------------------------------------------------------------------
def train_probe(xtr, ytr, xva, yva, num_classes, args):
    """Top-1 (and top-5 with more than 5 classes) of a linear classifier, in percent."""
    dev = args.device
    mean, std = xtr.mean(0, keepdim=True), xtr.std(0, keepdim=True).clamp_min(1e-6)
    xtr, xva = ((xtr - mean) / std).to(dev), ((xva - mean) / std).to(dev)
    ytr, yva = ytr.to(dev), yva.to(dev)
    if args.classifier == 'ridge':
        y = torch.nn.functional.one_hot(ytr, num_classes).float()
        x = torch.cat([xtr, torch.ones_like(xtr[:, :1])], 1).double()
        reg = args.ridge_lambda * torch.eye(x.shape[1], dtype=x.dtype, device=dev)
        reg[-1, -1] = 0  # no penalty on the bias
        w = torch.linalg.solve(x.T @ x + reg, x.T @ y.double()).float()
        logits = torch.cat([xva, torch.ones_like(xva[:, :1])], 1) @ w
    else:
        g = torch.Generator(device='cpu').manual_seed(args.seed)
        fc = torch.nn.Linear(xtr.shape[1], num_classes).to(dev)
        opt = torch.optim.AdamW(fc.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=args.epochs * ((len(xtr) + args.probe_batch_size - 1)
                                      // args.probe_batch_size))
        for _ in range(args.epochs):
            for idx in torch.randperm(len(xtr), generator=g).split(args.probe_batch_size):
                idx = idx.to(dev)
                loss = torch.nn.functional.cross_entropy(fc(xtr[idx]), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        with torch.no_grad():
            logits = fc(xva)
    res = dict(top1=(logits.argmax(1) == yva).float().mean().item() * 100)
    if num_classes > 5:
        top5 = logits.topk(5, dim=1).indices
        res['top5'] = (top5 == yva[:, None]).any(1).float().mean().item() * 100
    return res


def write_outputs(rows, labels, features, work_dir, plot):
    os.makedirs(work_dir, exist_ok=True)
    csv_path = osp.join(work_dir, 'layer_probe.csv')
    fields = ['label', 'checkpoint', 'block', 'feature', 'top1'] + (
        ['top5'] if any('top5' in r for r in rows) else [])
    with open(csv_path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f'{r[k]:.2f}' if k in ('top1', 'top5') else r[k]) for k in fields})
    blocks = sorted({r['block'] for r in rows})
    cols = [(lab, feat) for lab in labels for feat in features]
    table = {(r['label'], r['feature'], r['block']): r['top1'] for r in rows}
    head = ['block'] + [f'{lab}/{feat}' for lab, feat in cols]
    widths = [max(5, len(h)) for h in head]
    lines = ['  '.join(h.rjust(w) for h, w in zip(head, widths))]
    for b in blocks:
        vals = [str(b)] + [f'{table[(lab, feat, b)]:.2f}' for lab, feat in cols]
        lines.append('  '.join(v.rjust(w) for v, w in zip(vals, widths)))
    print('Linear-probe top-1 (%) per block (1-indexed):')
    print('\n'.join(lines))
    print(f'wrote {csv_path}')
    png_path = None
    if plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(features), figsize=(5.5 * len(features), 4),
                                 squeeze=False)
        for ax, feat in zip(axes[0], features):
            for lab in labels:
                ax.plot(blocks, [table[(lab, feat, b)] for b in blocks], marker='o', label=lab)
            ax.set_title({'cls': 'class token', 'avg': 'average-pooled patch tokens'}[feat])
            ax.set_xlabel('block (1-indexed)')
            ax.set_ylabel('linear-probe top-1 (%)')
            ax.set_xticks(blocks)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        png_path = osp.join(work_dir, 'layer_probe.png')
        fig.savefig(png_path, dpi=120)
        plt.close(fig)
        print(f'wrote {png_path}')
    return csv_path, png_path


def main(argv=None):
    args = parse_args(argv)
    import deepmim_mm  # noqa: F401  (compat fixes for checkpoint loading)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from tqdm import tqdm
    torch.manual_seed(args.seed)
    cfg = Config.fromfile(args.config)
    settings = encoder_settings(cfg, args.img_size)
    probe = build_encoder(settings)
    settings['num_layers'] = probe.num_layers
    del probe
    dp = cfg.get('data_preprocessor') or cfg.get('model', {}).get('data_preprocessor') or {}
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        preprocessor = MODELS.build(dict(type='ClsDataPreprocessor',
                                         mean=dp.get('mean', DEFAULT_MEAN),
                                         std=dp.get('std', DEFAULT_STD),
                                         to_rgb=dp.get('to_rgb', True)))
    datasets = {}
    for split in ('train', 'val'):
        ds = build_dataset(args.data_root, split, settings['img_size'], args.max_per_class,
                           args.seed)
        datasets[split] = (ds, data_key(ds, settings['img_size']))
    classes = datasets['train'][0].metainfo['classes']
    if list(datasets['val'][0].metainfo['classes']) != list(classes):
        raise ValueError(f'--data-root: train/ and val/ have different classes: {classes} vs '
                         f"{datasets['val'][0].metainfo['classes']}")
    print(f"data: {len(datasets['train'][0])} train / {len(datasets['val'][0])} val images, "
          f'{len(classes)} classes; encoder {settings}; device {args.device}')
    cache_dir = args.cache_dir or osp.join(args.work_dir, 'feature_cache')
    rows = []
    for ckpt, label in zip(args.checkpoints, args.labels):
        feats = layer_features(ckpt, label, settings, datasets, preprocessor, args, cache_dir)
        jobs = [(b, f) for b in range(settings['num_layers']) for f in args.features]
        for b, feat in tqdm(jobs, desc=f'[{label}] probes ({args.classifier})', file=sys.stdout,
                            dynamic_ncols=True):
            tr, va = feats['train'][b], feats['val'][b]
            res = train_probe(tr[feat], tr['labels'], va[feat], va['labels'], len(classes),
                              args)
            rows.append(dict(label=label, checkpoint=ckpt, block=b + 1, feature=feat, **res))
    write_outputs(rows, args.labels, args.features, args.work_dir, not args.no_plot)
    return rows


if __name__ == '__main__':
    main()
