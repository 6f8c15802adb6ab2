"""Reference decoders for the multiad decode benchmark.

usage: decode_ref.py SPEC.json RUNS

SPEC.json maps a group name to {"kind": "dicom"|"nifti", "files": [paths],
"reps": N}.
Every file is read into memory first; each timed run decodes all files of a
group from memory, "reps" times (default 1): pydicom.dcmread + pixel_array (with whatever pixel data
handlers this pydicom has), or nibabel's Nifti1Image.from_bytes of the
gunzipped bytes + the data array. Prints one JSON object: per group the
seconds of each run, the decoded bytes, and an error when the reference
could not decode the group. Progress goes to stderr.
"""
import gzip
import io
import json
import sys
import time

import numpy as np


def decode_dicom(blob):
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(blob))
    return ds.pixel_array


def decode_nifti(blob):
    import nibabel as nib
    img = nib.Nifti1Image.from_bytes(gzip.decompress(blob))
    return np.asanyarray(img.dataobj)


def main():
    spec = json.load(open(sys.argv[1]))
    runs = int(sys.argv[2])
    out = {}
    for name, g in spec.items():
        blobs = [open(p, "rb").read() for p in g["files"]]
        dec = decode_dicom if g["kind"] == "dicom" else decode_nifti
        res = {"secs": [], "bytes": 0, "handlers": ""}
        try:
            res["bytes"] = int(sum(dec(b).nbytes for b in blobs))  # warm-up
            for r in range(runs):
                t = time.perf_counter()
                for _ in range(g.get("reps", 1)):
                    for b in blobs:
                        dec(b)
                res["secs"].append(time.perf_counter() - t)
                print(f"[decode_ref] {name} run {r + 1}/{runs}: {res['secs'][-1]:.3f} s", file=sys.stderr)
        except Exception as e:  # the reference has no handler for this syntax
            res["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        out[name] = res
    try:
        import pydicom.config
        out["_handlers"] = [h.__name__.split(".")[-1] for h in pydicom.config.pixel_data_handlers if h.is_available()]
    except Exception:
        pass
    print(json.dumps(out))


if __name__ == "__main__":
    main()
