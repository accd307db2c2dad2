#!/usr/bin/env python3
"""gguf_q4k.py — K-quant GGUF files from a Q4_0 one, for tests and benchmarks (lmkit writes none).

    gguf_q4k.py IN.gguf OUT.gguf [--q6k SUFFIX,SUFFIX...]

Every Q4_0 tensor whose rows are whole 256-value super-blocks becomes Q4_K, or Q6_K when its name
ends with one of the --q6k suffixes (e.g. attn_v.weight,ffn_down.weight: a Q4_K_M-like mix); the
rest of the file is unchanged. The same weights to within the K-quants' own rounding, so a trained
model stays trained (docs/gguf.md, ggml's block_q4_K and block_q6_K):
  - Q4_K: each Q4_0 block (scale d, values d (q - 8)) becomes a sub-block x = (D sc) q' - (Dmin m),
    q' = q (d >= 0) or 15 - q (d < 0), sc ~ |d| / D and m ~ 8|d| / Dmin (or 7|d|) rounded to 6 bits,
    D and Dmin the super-block's f16 scales;
  - Q6_K: each Q4_0 block becomes two 16-value sub-blocks x = (D sc) (q - 32) with q = 2 (q4 - 8) + 32
    and sc ~ d / (2 D) rounded to 8 signed bits."""
import struct
import sys

import numpy as np

Q4_0, Q4_K, Q6_K = 2, 12, 14
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def q4_0_blocks(raw):
    """(S, 8) scales and (S, 8, 32) values q in 0..15 of the Q4_0 blocks, 8 to a super-block"""
    b = np.frombuffer(raw, np.uint8).reshape(-1, 8, 18)
    d = b[:, :, :2].copy().view(np.float16)[:, :, 0].astype(np.float32)
    return d, np.concatenate([b[:, :, 2:] & 15, b[:, :, 2:] >> 4], axis=2)


def scale_of(v, top):
    """a super-block's f16 scale s = max|v| / top, and v / s rounded (v: (S, k))"""
    s = (np.abs(v).max(axis=1) / top).astype(np.float16)
    sf = s.astype(np.float32)[:, None]
    return s, np.rint(np.divide(v, sf, out=np.zeros_like(v), where=sf > 0))


def to_q4_k(raw):
    d, q = q4_0_blocks(raw)
    neg = d < 0
    q = np.where(neg[:, :, None], 15 - q, q).astype(np.uint8)
    dk, sc = scale_of(np.abs(d), 63)
    dm, m = scale_of(np.where(neg, 7, 8) * np.abs(d), 63)
    sc, m = np.clip(sc, 0, 63).astype(np.uint8), np.clip(m, 0, 63).astype(np.uint8)
    scales = np.zeros((len(d), 12), np.uint8)
    scales[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(len(d), 128)   # 64-value chunk k: sub-blocks 2k, 2k+1
    return np.concatenate([dk.view(np.uint8).reshape(-1, 2), dm.view(np.uint8).reshape(-1, 2), scales, qs], axis=1).tobytes()


def to_q6_k(raw):
    d, q4 = q4_0_blocks(raw)
    S = len(d)
    q = (2 * (q4.astype(np.int32) - 8) + 32).astype(np.uint8).reshape(S, 256)   # value v of the super-block
    dd, sc = scale_of(np.repeat(d / 2, 2, axis=1), 127)                         # (S, 16): sub-block v // 16
    sc = np.clip(sc, -128, 127).astype(np.int8)
    ql, qh = np.zeros((S, 128), np.uint8), np.zeros((S, 64), np.uint8)
    for n in range(2):          # v = 128 n + 32 k + l
        for k in range(4):
            v = q[:, 128 * n + 32 * k:128 * n + 32 * k + 32]
            at = slice(64 * n + 32 * (k % 2), 64 * n + 32 * (k % 2) + 32)
            ql[:, at] |= (v & 15) << (0 if k < 2 else 4)
            qh[:, 32 * n:32 * n + 32] |= (v >> 4) << (2 * k)
    return np.concatenate([ql, qh, sc.view(np.uint8), dd.view(np.uint8).reshape(-1, 2)], axis=1).tobytes()


def main():
    args = sys.argv[1:]
    q6k = []
    if "--q6k" in args:
        i = args.index("--q6k")
        q6k = args[i + 1].split(",")
        del args[i:i + 2]
    src, dst = args
    buf = open(src, "rb").read()
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
    version, nt, nkv = take("<I"), take("<Q"), take("<Q")
    kv0, align = pos, 32
    for _ in range(nkv):
        n = take("<Q")
        key = buf[pos:pos + n].decode()
        pos += n
        t = take("<I")
        if key == "general.alignment":
            align = struct.unpack_from("<I", buf, pos)[0]
        skip(t)
    kv = buf[kv0:pos]
    infos = []
    for _ in range(nt):
        n = take("<Q")
        name = buf[pos:pos + n].decode()
        pos += n
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        infos.append([name, ne, take("<I"), take("<Q")])
    data = pos + (-pos % align)
    sizes = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 12: (256, 144), 13: (256, 176), 14: (256, 210)}
    tensors, counts = [], {Q4_K: 0, Q6_K: 0}
    for name, ne, t, off in infos:
        if t not in sizes:
            sys.exit(f"{src}: tensor {name} has ggml type {t}, which gguf_q4k.py does not know")
        el, by = sizes[t]
        raw = buf[data + off:data + off + int(np.prod(ne)) // el * by]
        if t == Q4_0 and ne[0] % 256 == 0:
            t = Q6_K if any(name.endswith(s) for s in q6k) else Q4_K
            raw = to_q6_k(raw) if t == Q6_K else to_q4_k(raw)
            counts[t] += 1
        tensors.append((name, ne, t, raw))
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, nt, nkv) + kv)
    off = 0
    for name, ne, t, raw in tensors:
        nb = name.encode()
        out += struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", t, off)
        off += len(raw) + (-len(raw) % align)
    out += b"\0" * (-len(out) % align)
    for _, _, _, raw in tensors:
        out += raw + b"\0" * (-len(raw) % align)
    open(dst, "wb").write(out)
    print(f"{dst}: {counts[Q4_K]} tensors Q4_K, {counts[Q6_K]} Q6_K")


main()
