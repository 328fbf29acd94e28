"""Per-layer probes: linear-probe and kNN top-1 on the cached frozen features of every block of
one or several checkpoints (docs/en/user_guides/analysis.md#per-layer-probes)."""
import argparse
import hashlib
import json
import os
import os.path as osp
import sys
import time

import torch

from deepmim_mm.analysis import FEATURES
from deepmim_mm.analysis.probe import DEFAULT_L2_GRID, knn_probe, linear_probe
from deepmim_mm.utils import add_cfg_options, check_output_folder, load_config

from analysis_utils import InputError, model_names, pyplot, run, save_figure, user_input, write_csv
from benchmark_utils import format_table

PROBES = ('linear', 'knn')
#: What the tool reads from the config; an override of anything else would change nothing.
READ_KEYS = ('model.backbone', 'model.data_preprocessor', 'data_preprocessor')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Per-layer linear and kNN probes of ViT checkpoints.')
    p.add_argument('config', help="a config whose model.backbone is a ViT (a file or "
                   "'mmpretrain::<dir>/<name>.py')")
    p.add_argument('checkpoints', nargs='+', help='pretraining (or fine-tuned) checkpoints')
    p.add_argument('--labels', '--name', nargs='+', dest='labels',
                   help='one label per checkpoint (default: file names)')
    p.add_argument('--data-root', required=True,
                   help='ImageNet-layout folder with train/ and val/ class subfolders')
    p.add_argument('--work-dir', '--out-dir', required=True, dest='work_dir',
                   help='where the CSV, JSON, PNG and cache go')
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
    p.add_argument('--probe', default='both', choices=PROBES + ('both', ),
                   help='linear classifier, kNN or both (default)')
    g = p.add_argument_group('linear probe')
    g.add_argument('--classifier', default='lbfgs', choices=('lbfgs', 'minibatch', 'ridge'),
                   help='lbfgs: full-batch logistic regression (default); minibatch: AdamW on '
                   'the same objective, for features too large for full batch; ridge: closed '
                   'form least squares')
    g.add_argument('--l2', type=float,
                   help='fixed L2 penalty (mean loss + l2/2 ||W||^2); default: chosen on '
                   '--holdout of the training split from --l2-grid')
    g.add_argument('--l2-grid', type=float, nargs='+', default=list(DEFAULT_L2_GRID),
                   help='L2 values tried (default: %(default)s)')
    g.add_argument('--holdout', type=float, default=0.2,
                   help='fraction of every training class held out to choose the L2')
    g.add_argument('--max-iter', type=int, default=1000, help='lbfgs: iteration budget')
    g.add_argument('--tol-grad', type=float, default=1e-5,
                   help='lbfgs: converged when max |gradient| <= this')
    g.add_argument('--tol-change', type=float, default=1e-9,
                   help='lbfgs: converged when the objective (or step) changes less than this')
    g.add_argument('--dtype', default='float32', choices=('float32', 'float64'),
                   help='precision of the linear fits (float64: tighter, slower on most GPUs)')
    g.add_argument('--max-steps', type=int, default=20000,
                   help='minibatch: optimisation-step budget (not epochs)')
    g.add_argument('--probe-batch-size', type=int, default=4096,
                   help='minibatch: samples per step (the whole set when it is smaller)')
    g.add_argument('--lr', type=float, default=1e-2,
                   help='minibatch: AdamW learning rate (our choice)')
    g.add_argument('--eval-every', type=int, default=100,
                   help='minibatch: steps between two checks of the full training objective')
    g.add_argument('--tol', type=float, default=1e-4,
                   help='minibatch: relative decrease under which the objective has plateaued '
                   '(lr / 10, twice, then stop)')
    g = p.add_argument_group('kNN probe')
    g.add_argument('--knn-k', type=int, default=20, help='neighbours (DINO: 20)')
    g.add_argument('--knn-temperature', type=float, default=0.07, help='DINO: 0.07')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-plot', action='store_true', help='skip the PNG')
    add_cfg_options(p)  # only READ_KEYS: an override of another key is an error
    args = p.parse_args(argv)
    args.labels = model_names(args.checkpoints, args.labels, '--labels')
    if len(set(args.labels)) != len(args.labels):
        p.error(f'--labels must be distinct, got {args.labels}')
    args.probes = list(PROBES) if args.probe == 'both' else [args.probe]
    for c in args.checkpoints:
        if not osp.isfile(c):
            raise FileNotFoundError(f'checkpoints: {c!r} not found')
    return args


def check_read_keys(options):
    """Every ``--cfg-options`` key must be one the tool reads (:data:`READ_KEYS`)."""
    for key in options or {}:
        if not any(key == k or key.startswith(k + '.') for k in READ_KEYS):
            raise InputError(f'--cfg-options {key}: layer_probe reads only {", ".join(READ_KEYS)} '
                             'from the config, so this override would change nothing (the probe '
                             'settings are flags: see --help)')


def digest(**fields) -> str:
    """A short hash of ``fields``: the cache key of a checkpoint or of a split."""
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def data_key(ds, normalisation):
    items = [(osp.relpath(ds.get_data_info(i)['img_path'], ds.data_root),
              int(ds.get_data_info(i)['gt_label'])) for i in range(len(ds))]
    return digest(items=items, classes=list(ds.metainfo['classes']),
                  pipeline=repr(ds.pipeline), normalisation=normalisation)


def layer_features(ckpt, label, model, datasets, args):
    """``{split: [per-block dict(cls, avg, labels)]}``, from the cache where it has them."""
    from mmengine.dataset import pseudo_collate
    from tqdm import tqdm

    from deepmim_mm.analysis import extract_features, labels_of
    from deepmim_mm.checkpoint import atomic_save, load_pretrained_encoder
    st = os.stat(ckpt)
    ckey = digest(path=osp.abspath(ckpt), size=st.st_size, mtime=st.st_mtime_ns,
                  encoder=args.encoder, prefix=args.prefix)
    out, report = {}, None
    for split, (ds, dkey) in datasets.items():
        path = osp.join(args.cache_dir, f'{ckey}_{split}-{dkey}.pt')
        if not args.no_cache and osp.isfile(path):
            out[split] = torch.load(path)
            print(f'[{label}] {split}: reusing cached features from {path}')
            continue
        if report is None:  # the first split not in the cache
            with user_input():  # a checkpoint of another model, width or format
                report = load_pretrained_encoder(model.backbone, ckpt, args.prefix or None,
                                                 'checkpoints', resizable=('pos_embed', ))
            print(f'[{label}] ' + report.format().split('\n')[0])
        t0 = time.time()
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size,
                                             num_workers=args.num_workers,
                                             collate_fn=pseudo_collate)
        feats = extract_features(model, tqdm(loader, desc=f'[{label}] {split} features',
                                             file=sys.stdout, dynamic_ncols=True),
                                 'all', pools=FEATURES)
        out[split] = [dict(per, labels=labels_of(ds)) for per in feats.values()]
        print(f'[{label}] {split}: {len(ds)} images x {len(feats)} blocks in '
              f'{time.time() - t0:.1f}s')
        if not args.no_cache:
            atomic_save(out[split], path)
    return out


# -- Probes on cached features -----------------------------------------------------------------
def linear_options(args):
    """The fitting options of ``--classifier`` (see :mod:`deepmim_mm.analysis.probe`)."""
    if args.classifier == 'lbfgs':
        return dict(max_iter=args.max_iter, tol_grad=args.tol_grad, tol_change=args.tol_change)
    if args.classifier == 'minibatch':
        return dict(max_steps=args.max_steps, batch_size=args.probe_batch_size, lr=args.lr,
                    eval_every=args.eval_every, tol=args.tol)
    return {}


def run_probes(tr, va, feat, num_classes, args):
    """``[row]``: one per probe of ``args.probes`` on one block's ``feat`` features."""
    dtype = getattr(torch, args.dtype)
    rows = []
    if 'linear' in args.probes:  # JSON: the l2 keys of holdout_* as text
        rows.append(dict(probe='linear', **linear_probe(
            tr[feat].to(dtype), tr['labels'], va[feat].to(dtype), va['labels'], num_classes,
            method=args.classifier, l2=args.l2, l2_grid=args.l2_grid, holdout=args.holdout,
            seed=args.seed, device=args.device, **linear_options(args))))
    if 'knn' in args.probes:
        rows.append(dict(probe='knn', **knn_probe(
            tr[feat], tr['labels'], va[feat], va['labels'], num_classes, k=args.knn_k,
            temperature=args.knn_temperature, device=args.device)))
    return rows


def describe(row):
    """One line per linear fit: what it reached on the training split and whether it converged."""
    if row['probe'] != 'linear':
        return f"kNN (k={row['k']}) top-1 {row['top1']:.2f}"
    flag = 'converged' if row['converged'] else 'NOT converged'
    grad = f", max|grad| {row['grad_max']:.1e}" if row.get('grad_max') is not None else ''
    return (f"linear top-1 {row['top1']:.2f} | train loss {row['train_loss']:.4f}, train acc "
            f"{row['train_acc']:.2f} | {row['iterations']} it, {flag} ({row['reason']}{grad}), "
            f"l2={row['l2']:g}")


CSV_FIELDS = ['label', 'checkpoint', 'block', 'feature', 'probe', 'top1', 'top5', 'train_loss',
              'train_acc', 'iterations', 'converged', 'reason', 'grad_max', 'l2', 'k']


def write_outputs(rows, args):
    """``layer_probe.{csv,json,png}`` in ``--work-dir``, and a table per probe on stdout."""
    fields = [f for f in CSV_FIELDS if any(r.get(f) is not None for r in rows)]
    csv_path, json_path = (osp.join(args.work_dir, f'layer_probe.{e}') for e in ('csv', 'json'))
    write_csv(csv_path, fields, [[r.get(f) for f in fields] for r in rows])
    with open(json_path, 'w') as f:
        json.dump(rows, f, indent=1)
    blocks = sorted({r['block'] for r in rows})
    table = {(r['label'], r['feature'], r['probe'], r['block']): r['top1'] for r in rows}
    cols = [(lab, feat) for lab in args.labels for feat in args.features]
    head = ['block'] + [f'{lab}/{feat}' for lab, feat in cols]
    for probe in args.probes:
        print(f"{'Linear-probe' if probe == 'linear' else 'kNN'} top-1 (%) per block (1-indexed):")
        print(format_table([[str(b)] + [f'{table[(lab, feat, probe, b)]:.2f}' for lab, feat in cols]
                            for b in blocks], head))
    bad = [r for r in rows if r['probe'] == 'linear' and not r['converged']]
    if bad:
        print(f'WARNING: {len(bad)} linear fit(s) did not converge (raise --max-iter / '
              '--max-steps): ' + ', '.join(f"{r['label']}/block{r['block']}/{r['feature']}"
                                           for r in bad))
    print(f'wrote {csv_path} and {json_path}')
    if args.no_plot:
        return
    fig, axes = pyplot().subplots(len(args.probes), len(args.features), squeeze=False,
                                  figsize=(5.5 * len(args.features), 4 * len(args.probes)))
    for row, probe in zip(axes, args.probes):
        for ax, feat in zip(row, args.features):
            for lab in args.labels:
                ax.plot(blocks, [table[(lab, feat, probe, b)] for b in blocks], marker='o',
                        label=lab)
            name = {'cls': 'class token', 'avg': 'average-pooled patch tokens'}[feat]
            ax.set_title(f"{'linear probe' if probe == 'linear' else 'kNN'}, {name}")
            ax.set(xlabel='block (1-indexed)', ylabel='top-1 (%)', xticks=blocks)
            ax.grid(alpha=0.3)
            ax.legend()
    save_figure(fig, osp.join(args.work_dir, 'layer_probe.png'), dpi=120)
    print(f"wrote {osp.join(args.work_dir, 'layer_probe.png')}")


def main(argv=None):
    from tqdm import tqdm

    from deepmim_mm.analysis import labelled_splits, model_input_size
    from deepmim_mm.apis import init_encoder
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    check_read_keys(args.cfg_options)
    with user_input():
        check_output_folder(args.work_dir, '--work-dir')
        cfg = load_config(args.config, args.cfg_options, args.allow_new_keys)
        # Every block's raw output is probed: no final norm, which a checkpoint need not have;
        # each checkpoint is loaded below, not the config's own init_cfg.
        cfg.merge_from_dict({'model.backbone.out_type': 'raw', 'model.backbone.final_norm': False,
                             'model.backbone.init_cfg': None,
                             **({'model.backbone.img_size': args.img_size} if args.img_size
                                else {})})
        model = init_encoder(cfg, None, args.device)
        splits = labelled_splits(args.data_root, model_input_size(model), args.max_per_class,
                                 args.seed, field_name='--data-root')
    args.encoder = cfg.model.backbone
    normalisation = cfg.model.get('data_preprocessor', cfg.get('data_preprocessor'))
    datasets = {split: (ds, data_key(ds, normalisation))
                for split, ds in zip(('train', 'val'), splits)}
    classes = splits[0].metainfo['classes']
    print(f"data: {len(splits[0])} train / {len(splits[1])} val images, {len(classes)} classes; "
          f'encoder {type(model.backbone).__name__} {model_input_size(model)} px; '
          f'device {args.device}')
    args.cache_dir = args.cache_dir or osp.join(args.work_dir, 'feature_cache')
    what = ' + '.join(args.classifier if p == 'linear' else 'knn' for p in args.probes)
    rows = []
    for ckpt, label in zip(args.checkpoints, args.labels):
        feats = layer_features(ckpt, label, model, datasets, args)
        jobs = [(b, f) for b in range(len(model.backbone.layers)) for f in args.features]
        for b, feat in tqdm(jobs, desc=f'[{label}] probes ({what})', file=sys.stdout,
                            dynamic_ncols=True):
            tr, va = feats['train'][b], feats['val'][b]
            for res in run_probes(tr, va, feat, len(classes), args):
                row = dict(label=label, checkpoint=ckpt, block=b + 1, feature=feat, **res)
                tqdm.write(f'[{label}] block {b + 1} {feat}: {describe(row)}', file=sys.stdout)
                rows.append(row)
    if args.l2 is None and len(args.l2_grid) > 1:
        edges = (min(args.l2_grid), max(args.l2_grid))
        edge = [r for r in rows if r['probe'] == 'linear' and r['l2'] in edges]
        if edge:
            print(f'NOTE: {len(edge)} linear fit(s) chose an L2 at the edge of --l2-grid '
                  f'({edges[0]:g} .. {edges[1]:g}); a wider grid may fit '
                  'better: ' + ', '.join(f"{r['label']}/block{r['block']}/{r['feature']} "
                                         f"(l2={r['l2']:g})" for r in edge))
    write_outputs(rows, args)
    return rows


if __name__ == '__main__':
    run(main)
