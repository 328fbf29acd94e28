"""Merge the parts of tools/analysis/gpu_benchmarks.sh into results.json and write summary.md:
every result, and the ratios docs/en/advanced_guides/performance.md reports."""
import glob
import json
import os.path as osp
import sys


def load_parts(out_dir):
    return {osp.basename(p)[:-5]: json.load(open(p))
            for p in sorted(glob.glob(osp.join(out_dir, 'parts', '*.json')))}


def result(parts, part, label=None):
    return next((r for r in parts.get(part, {}).get('results', [])
                 if label is None or r.get('label') == label), None)


def ratios(parts):
    """(name, value, target) of the figures the issue asks for, where measured."""
    out = []
    base = result(parts, 'train', 'baseline: mae_vit-base-p16_8xb512-amp-coslr-300e_in1k')
    for label, target in (('deepmim-pixel', '>= 1.0'), ('deepmim-clip', '>= 0.85')):
        for kind, b, r in (('plain', base, result(parts, 'train', label)),
                           ('compiled', result(parts, 'compiled_mae'),
                            result(parts, f'compiled_{label}'))):
            if b and r:
                out.append((f'{label} / MAE img/s ({kind})', r['img_per_s'] / b['img_per_s'],
                            target))
                out.append((f'{label} / MAE peak memory ({kind})',
                            r['peak_mem_mib'] / b['peak_mem_mib'], '<= 1.3'))
    for part, target in (('e2e_device', '>= 0.90'), ('e2e_standard', '-')):
        r = result(parts, part)
        if r:
            out.append((f'end-to-end / model-only, {r["path"]} path', r['ratio'], target))
    return out


def main(out_dir):
    parts = load_parts(out_dir)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(parts, f, indent=2)
    lines = ['| figure | value | target |', '|---|---|---|']
    lines += [f'| {n} | {v:.3f} | {t} |' for n, v, t in ratios(parts)]
    for name, res in parts.items():
        lines.append(f'\n## {name}')
        for r in res.get('results', []):
            lines.append('- ' + ', '.join(
                f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                for k, v in r.items() if not isinstance(v, (dict, list))))
    text = '\n'.join(lines) + '\n'
    with open(osp.join(out_dir, 'summary.md'), 'w') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main(sys.argv[1])
