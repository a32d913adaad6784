#!/usr/bin/env python3
"""Make the Fashion-MNIST subset shipped in this folder from the full data set.

Keeps the first 10,000 of the 60,000 training images (and their labels) and all 10,000 test images (and labels), and
writes them as gzip-compressed IDX files. The gzip streams carry no file name and a zero modification time, so running
this script twice gives byte-identical files.

Usage:  python3 make_subset.py [SOURCE_DIR] [OUT_DIR]
        SOURCE_DIR defaults to /usr/share/datasets/fashion-mnist (Debian package `dataset-fashion-mnist`),
        OUT_DIR to the folder of this script. Needs only the Python standard library.
"""

import gzip
import os
import struct
import sys

TRAIN_KEEP = 10_000


def read_idx(path):
    """Returns (dims, body bytes) of a gzip IDX u8 file, checking the header against the body length."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an IDX u8 file")
    dims = list(struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim]))
    body = raw[4 + 4 * ndim :]
    size = 1
    for d in dims:
        size *= d
    if len(body) != size:
        raise ValueError(f"{path}: header says {size} bytes, body has {len(body)}")
    return dims, body


def write_idx_gz(path, dims, body):
    header = struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    with open(path, "wb") as raw:
        # filename="" and mtime=0 keep the gzip header free of anything that changes between runs.
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as f:
            f.write(header)
            f.write(body)


def keep_first(dims, body, count):
    per_item = 1
    for d in dims[1:]:
        per_item *= d
    return [count] + dims[1:], body[: count * per_item]


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    for name, keep in [
        ("train-images-idx3-ubyte", TRAIN_KEEP),
        ("train-labels-idx1-ubyte", TRAIN_KEEP),
        ("t10k-images-idx3-ubyte", None),
        ("t10k-labels-idx1-ubyte", None),
    ]:
        dims, body = read_idx(os.path.join(source, name + ".gz"))
        if keep is not None:
            dims, body = keep_first(dims, body, keep)
        target = os.path.join(out, name + ".gz")
        write_idx_gz(target, dims, body)
        print(f"{target}: dims {dims}, {os.path.getsize(target)} bytes")


if __name__ == "__main__":
    main()
