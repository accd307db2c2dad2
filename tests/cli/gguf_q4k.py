#!/usr/bin/env python3
"""gguf_q4k.py — a Q4_K GGUF from a Q4_0 one, for tests and benchmarks (lmkit writes no Q4_K).

    gguf_q4k.py IN.gguf OUT.gguf

Every Q4_0 tensor whose rows are whole 256-value super-blocks becomes Q4_K, the rest of the file
unchanged: Q4_K has Q4_0's 144 bytes per 256 values, so only the tensor's type field and its
blocks change. Each Q4_0 block (scale d, values d (q - 8)) becomes a Q4_K sub-block
x = (D sc) q' - (Dmin m) with q' = q (d >= 0) or 15 - q (d < 0), sc ~ |d| / D and m ~ 8|d| / Dmin
(or 7|d|) rounded to 6 bits, D and Dmin the super-block's f16 scales: the same weights to within
Q4_K's own rounding, so a trained model stays trained (docs/gguf.md, ggml's block_q4_K)."""
import struct
import sys

import numpy as np

Q4_0, Q4_K = 2, 12
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def convert(raw):
    """Q4_0 blocks (a multiple of 8) -> Q4_K super-blocks, as bytes"""
    b = np.frombuffer(raw, np.uint8).reshape(-1, 8, 18)
    d = b[:, :, :2].copy().view(np.float16)[:, :, 0].astype(np.float32)            # (S, 8)
    q = np.concatenate([b[:, :, 2:] & 15, b[:, :, 2:] >> 4], axis=2)                # (S, 8, 32)
    neg = d < 0
    q = np.where(neg[:, :, None], 15 - q, q).astype(np.uint8)
    a, mn = np.abs(d), np.where(neg, 7, 8) * np.abs(d)

    def six_bits(v):   # the super-block's f16 scale and each sub-block's 6-bit multiple of it
        s = (v.max(axis=1) / 63).astype(np.float16)
        sf = s.astype(np.float32)[:, None]
        k = np.clip(np.rint(np.divide(v, sf, out=np.zeros_like(v), where=sf > 0)), 0, 63).astype(np.uint8)
        return s, k
    dk, sc = six_bits(a)
    dm, m = six_bits(mn)
    scales = np.zeros((len(b), 12), np.uint8)
    scales[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(len(b), 128)                # chunk k: sub-blocks 2k, 2k+1
    out = np.concatenate([dk.view(np.uint8).reshape(-1, 2), dm.view(np.uint8).reshape(-1, 2), scales, qs], axis=1)
    return out.tobytes()


def main():
    src, dst = sys.argv[1:3]
    buf = bytearray(open(src, "rb").read())
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def skip(t):
        nonlocal pos
        if t == 8:
            n = take("<Q")
            pos += n
        elif t == 9:
            et, n = take("<I"), take("<Q")
            for _ in range(n):
                skip(et)
        else:
            pos += SCALAR[t]

    assert buf[:4] == b"GGUF", f"{src}: not a GGUF file"
    pos = 4
    _, nt, nkv = take("<I"), take("<Q"), take("<Q")
    align = 32
    for _ in range(nkv):
        n = take("<Q")
        key = bytes(buf[pos:pos + n]).decode()
        pos += n
        t = take("<I")
        if key == "general.alignment":
            align = struct.unpack_from("<I", buf, pos)[0]
        skip(t)
    infos = []
    for _ in range(nt):
        n = take("<Q")
        pos += n
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        tpos = pos
        t, off = take("<I"), take("<Q")
        infos.append((ne, t, off, tpos))
    data = pos + (-pos % align)
    done = 0
    for ne, t, off, tpos in infos:
        if t != Q4_0 or ne[0] % 256:
            continue
        n = int(np.prod(ne)) // 32 * 18
        buf[data + off:data + off + n] = convert(bytes(buf[data + off:data + off + n]))
        struct.pack_into("<I", buf, tpos, Q4_K)
        done += 1
    open(dst, "wb").write(buf)
    print(f"{dst}: {done} tensors Q4_K")


main()
