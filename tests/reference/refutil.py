"""Helpers for the reference tests: locate the build, read and write safetensors without
the safetensors package (struct + json), read dropout masks, and compare tensors."""
import json
import os
import struct
import sys

import numpy as np
import torch

SRC = os.environ.get("LMKIT_SRC", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.environ.get("LMKIT_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build"))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype="<f4").reshape(info["shape"]).copy()
    return out


def mask_bits(d, name, shape):
    """d/name's mask (uint64 words of bits, 1 = kept) as a float64 tensor of shape; None if absent"""
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return None
    b = np.unpackbits(np.fromfile(path, dtype="<u8").view(np.uint8), bitorder="little")[: int(np.prod(shape))]
    return torch.from_numpy(b.reshape(shape).astype(np.float64))


def dropout_masks(d, layers, B, T, C, NH, head_shape=None):
    """The dropout masks a C driver saved (refdrv.h save_dropout_masks) as float64 torch tensors, 1 = kept:
    {"emb": (B,T,C), l: {"att": (B,NH,T,T), "res1": (B,T,C), "res2": (B,T,C)}, "head": head_shape};
    absent files are None."""
    bits = lambda name, shape: mask_bits(d, name, shape)
    out = {"emb": bits("mask_emb.bin", (B, T, C)), "head": bits("mask_head.bin", head_shape) if head_shape else None}
    for l in range(layers):
        out[l] = {k: bits(f"mask_{l}_{k}.bin", (B, NH, T, T) if k == "att" else (B, T, C)) for k in ("att", "res1", "res2")}
    return out


def encdec_dropout_masks(d, enc_layers, dec_layers, B, S, T, C, NH, F):
    """An encoder-decoder's masks a C driver saved (refdrv.h save_encdec_dropout_masks) as float64 torch
    tensors, 1 = kept: {"emb", "lnf": (B,T,C), "enc_emb", "enc_out": (B,S,C), "dec": [per layer {"att":
    (B,NH,T,T), "res1", "resx", "res2": (B,T,C), "xatt": (B,NH,T,S), "act": (B,T,F)}], "enc": [per layer
    {"att": (B,NH,S,S), "res1", "res2": (B,S,C), "act": (B,S,F)}]}; absent files are None."""
    bits = lambda name, shape: mask_bits(d, name, shape)
    def layer(prefix, Tq, Tk):
        shapes = {"att": (B, NH, Tq, Tq), "res1": (B, Tq, C), "xatt": (B, NH, Tq, Tk), "resx": (B, Tq, C),
                  "act": (B, Tq, F), "res2": (B, Tq, C)}
        return {k: bits(f"{prefix}_{k}.bin", sh) for k, sh in shapes.items()}

    return {"emb": bits("mask_emb.bin", (B, T, C)), "lnf": bits("mask_lnf.bin", (B, T, C)),
            "enc_emb": bits("mask_enc_emb.bin", (B, S, C)), "enc_out": bits("mask_enc_out.bin", (B, S, C)),
            "dec": [layer(f"mask_{l}", T, S) for l in range(dec_layers)],
            "enc": [layer(f"mask_enc_{l}", S, 0) for l in range(enc_layers)]}


def same_run(a, b, names=("loss.bin", "logits.bin", "grads.safetensors")):
    """(whether driver outputs a and b hold the same bytes in each of names, the mask files b holds)"""
    same = all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read() for f in names)
    return same, [f for f in os.listdir(b) if f.startswith("mask")]


def dropped(x, mask, p):
    """Inverted dropout with a given mask (1 = kept): x * mask / (1 - p); x itself when mask is None."""
    return x if mask is None else x * mask / (1.0 - p)


# safetensors by hand (no safetensors package): dtype -> (torch dtype, bytes per element)
DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
          "BOOL": (torch.bool, 1), "U8": (torch.uint8, 1), "F64": (torch.float64, 8), "I32": (torch.int32, 4)}


def tensor_bytes(t, dtype):
    t = t.detach().to(DTYPES[dtype][0]).contiguous()
    if dtype == "BF16":
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """A safetensors file as the safetensors library writes it (header padded to 8 bytes). tensors: a
    list of (name, torch tensor, dtype string), data in the given order; metadata: the __metadata__ dict."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t, dt in tensors:
        b = tensor_bytes(t, dt)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))



def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.abs(b).max(), 1e-12)
    return float(np.abs(a - b).max() / scale)


class Checker:
    def __init__(self, tol=1e-5):
        self.tol, self.passed, self.failed = tol, 0, 0

    def check(self, label, err, tol=None):
        tol = self.tol if tol is None else tol
        ok = err <= tol
        self.passed += ok
        self.failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {label}: rel err {err:.2e} (tol {tol:.0e})")
        return ok

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


class Tally:
    """Pass/fail checks without a tolerance: check(ok, what) prints each failure; finish() prints
    the counts and exits 1 if any failed."""

    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what):
        self.passed += bool(ok)
        self.failed += not ok
        if not ok:
            print("FAIL:", what)
        return ok

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)
