"""Reference pixel metrics for the multiad metrics benchmark.

usage: metrics_ref.py SCORES.f32 MASKS.u8 N ROWS COLS RUNS

Reads N maps of ROWS x COLS float32 scores and uint8 masks (raw,
little-endian, C order) and times, RUNS times each (after one untimed run):
scikit-learn's roc_auc_score over every pixel, and a NumPy/SciPy AU-PRO
computed as in the MVTec AD evaluation (8-connected regions of each mask,
100 thresholds at ranks linspace(0, n-1, 100) of the sorted normal scores,
FPR = share of normal pixels > t, PRO = mean over regions of the share of
the region's pixels > t, (0,0) and (1,1) added, trapezoid up to FPR 0.3,
divided by 0.3). Prints one JSON object.
"""
import json
import sys
import time

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score


def aupro(scores, masks, limit=0.3):
    structure = np.ones((3, 3), dtype=int)
    normal = np.sort(scores[masks == 0])
    regions = []
    for s, m in zip(scores, masks):
        lab, n = ndimage.label(m != 0, structure=structure)
        if n == 0:
            continue
        idx = np.argsort(lab.ravel(), kind="stable")
        sl = lab.ravel()[idx]
        bounds = np.searchsorted(sl, np.arange(1, n + 2))
        flat = s.ravel()[idx]
        for r in range(n):
            regions.append(np.sort(flat[bounds[r]:bounds[r + 1]]))
    ranks = np.linspace(0, len(normal) - 1, 100).astype(np.int64)
    ts = normal[ranks]
    fpr = (len(normal) - np.searchsorted(normal, ts, side="right")) / len(normal)
    pro = np.zeros(100)
    for r in regions:
        pro += (len(r) - np.searchsorted(r, ts, side="right")) / len(r)
    pro /= len(regions)
    f = np.concatenate([[0.0, 1.0], fpr])
    p = np.concatenate([[0.0, 1.0], pro])
    order = np.lexsort((p, f))
    f, p = f[order], p[order]
    area = 0.0
    for i in range(1, len(f)):
        f0, p0, f1, p1 = f[i - 1], p[i - 1], f[i], p[i]
        if f0 >= limit:
            break
        if f1 > limit:
            p1 = p0 + (p1 - p0) * (limit - f0) / (f1 - f0)
            f1 = limit
        area += (f1 - f0) * (p0 + p1) / 2
    return area / limit


def timed(fn, runs, name):
    secs = []
    for r in range(runs):
        t = time.perf_counter()
        val = fn()
        secs.append(time.perf_counter() - t)
        print(f"[metrics_ref] {name} run {r + 1}/{runs}: {secs[-1]:.2f} s", file=sys.stderr)
    return {"value": float(val), "secs": secs}


def main():
    sp, mp, n, rows, cols, runs = sys.argv[1:7]
    n, rows, cols, runs = int(n), int(rows), int(cols), int(runs)
    scores = np.fromfile(sp, dtype="<f4").reshape(n, rows, cols)
    masks = np.fromfile(mp, dtype=np.uint8).reshape(n, rows, cols)
    out = {
        "sklearn_auroc": timed(lambda: roc_auc_score((masks != 0).ravel(), scores.ravel()), runs, "roc_auc_score"),
        "numpy_aupro": timed(lambda: aupro(scores, masks), runs, "numpy AU-PRO"),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
