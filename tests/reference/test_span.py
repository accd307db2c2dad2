"""T5 span corruption (src/train/objectives/span.c) against the T5 reference.

- random_spans_noise_mask: a port of the reference algorithm (t5.data.preprocessors,
  as transformers' run_t5_mlm_flax.py copies it: np.round, _random_segmentation with
  np.random.shuffle's Fisher-Yates) replaying the draws lmkit made must give the same
  mask for each of 10,000 sequences of random lengths; over them the noise density is
  0.15 +- 0.005 and the mean noise span 3 +- 0.1, counted from the masks.
- compute_input_and_target_lengths: the same raw window and target length (512 -> 568
  raw tokens, 114 target tokens, as T5 uses).
- the corruption: each span one sentinel counting down from <extra_id_0>, the target the
  sentinels and the hidden tokens, EOS ending both, as create_sentinel_ids +
  filter_input_ids + EOS compute it."""
import os
import subprocess
import tempfile

import numpy as np

from refutil import BIN, Tally

REF = os.path.join(BIN, "ref_span")


class Replay:
    """np.random's bounded draws, replayed from lmkit's record."""

    def __init__(self, draws):
        self.d, self.i = draws, 0

    def shuffle(self, x):   # numpy's shuffle of a 1-D array: for i = n-1 .. 1 swap x[i], x[j], j in [0, i]
        for i in reversed(range(1, len(x))):
            j = int(self.d[self.i])
            self.i += 1
            assert 0 <= j <= i
            x[i], x[j] = x[j], x[i]


def random_spans_noise_mask(length, noise_density, mean_noise_span_length, rng):
    """The reference, with np.random.shuffle replaced by the replayed draws."""
    orig_length = length
    length = max(length, 2)
    num_noise_tokens = int(np.round(length * noise_density))
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = int(np.round(num_noise_tokens / mean_noise_span_length))
    num_noise_spans = max(num_noise_spans, 1)
    num_nonnoise_tokens = length - num_noise_tokens

    def _random_segmentation(num_items, num_segments):
        mask_indices = np.arange(num_items - 1) < (num_segments - 1)
        rng.shuffle(mask_indices)
        first_in_segment = np.pad(mask_indices, [[1, 0]])
        segment_id = np.cumsum(first_in_segment)
        _, segment_length = np.unique(segment_id, return_counts=True)
        return segment_length

    noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans)
    nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans)
    interleaved_span_lengths = np.reshape(np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1),
                                          [num_noise_spans * 2])
    span_starts = np.cumsum(interleaved_span_lengths)[:-1]
    span_start_indicator = np.zeros((length,), dtype=np.int8)
    span_start_indicator[span_starts] = True
    span_num = np.cumsum(span_start_indicator)
    is_noise = np.equal(span_num % 2, 1)
    return is_noise[:orig_length]


def compute_input_and_target_lengths(inputs_length, noise_density, mean_noise_span_length):
    """transformers' run_t5_mlm_flax.compute_input_and_target_lengths."""
    def _tokens_length_to_inputs_length_targets_length(tokens_length):
        num_noise_tokens = int(round(tokens_length * noise_density))
        num_nonnoise_tokens = tokens_length - num_noise_tokens
        num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
        _input_length = num_nonnoise_tokens + num_noise_spans + 1
        _output_length = num_noise_tokens + num_noise_spans + 1
        return _input_length, _output_length

    tokens_length = inputs_length
    while _tokens_length_to_inputs_length_targets_length(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    inputs_length, targets_length = _tokens_length_to_inputs_length_targets_length(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def corrupt(raw, noise, sentinel0, eos):
    """create_sentinel_ids + filter_input_ids for inputs (noise) and labels (~noise), then EOS;
    sentinel k is sentinel0 - k (transformers: len(tokenizer) - k - 1, <extra_id_0> on top)."""
    def filt(mask):
        start = mask & ~np.pad(mask[:-1], [1, 0])
        sent = np.where(start, np.cumsum(start), 0)
        sent = np.where(sent != 0, sentinel0 + 1 - sent, 0)
        sent -= (mask & ~start).astype(np.int64)        # continuation: -1, dropped
        ids = np.where(sent != 0, sent, raw)
        return np.concatenate([ids[ids >= 0], [eos]])
    return filt(noise.astype(bool)), filt(~noise.astype(bool))


def main():
    t = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        N = 10000
        r = subprocess.run([REF, "--masks", "1234", str(N), "40", "600", tmp], capture_output=True, text=True)
        t.check(r.returncode == 0, "ref_span --masks ran: " + r.stderr)
        lengths = np.fromfile(os.path.join(tmp, "lengths.bin"), dtype="<i8")
        masks = np.fromfile(os.path.join(tmp, "masks.bin"), dtype=np.uint8)
        spans = np.fromfile(os.path.join(tmp, "spans.bin"), dtype="<i8")
        rng = Replay(np.fromfile(os.path.join(tmp, "draws.bin"), dtype="<u4"))
        at, same, noise_total, runs_total = 0, 0, 0, 0
        for i, n in enumerate(lengths):
            ours = masks[at:at + n].astype(bool)
            at += n
            ref = random_spans_noise_mask(int(n), 0.15, 3.0, rng)
            same += bool(np.array_equal(ours, ref))
            noise_total += int(ours.sum())
            runs = int((ours & ~np.pad(ours[:-1], [1, 0])).sum())   # noise runs seen in the mask
            runs_total += runs
            if runs != spans[i] and same == i + 1:
                t.check(False, f"sequence {i}: {runs} noise runs, lmkit reported {spans[i]}")
        t.check(rng.i == len(rng.d), f"every draw replayed ({rng.i} of {len(rng.d)})")
        t.check(same == N, f"masks equal to the reference's with the same draws: {same} of {N}")
        density = noise_total / lengths.sum()
        mean_span = noise_total / runs_total
        print(f"density {density:.5f}, mean span {mean_span:.4f} over {N} sequences of {lengths.min()}..{lengths.max()} tokens")
        t.check(abs(density - 0.15) <= 0.005, f"noise density {density} not 0.15 +- 0.005")
        t.check(abs(mean_span - 3.0) <= 0.1, f"mean noise span {mean_span} not 3 +- 0.1")

        sizes = [4, 8, 16, 33, 64, 100, 128, 256, 512, 1000, 1024, 2048]
        r = subprocess.run([REF, "--lengths"] + [str(s) for s in sizes], capture_output=True, text=True)
        got = {int(a): (int(b), int(c)) for a, b, c in (l.split() for l in r.stdout.split("\n") if l)}
        for s in sizes:
            t.check(got.get(s) == compute_input_and_target_lengths(s, 0.15, 3.0),
                    f"lengths for inputs {s}: {got.get(s)} vs {compute_input_and_target_lengths(s, 0.15, 3.0)}")
        t.check(got.get(512) == (568, 114), "inputs 512 -> 568 raw tokens, 114 targets (T5)")

        g = np.random.default_rng(7)
        for k in range(60):
            n = int(g.integers(2, 300))
            raw = g.integers(3, 1000, n).astype(np.int32)
            noise = random_spans_noise_mask(n, 0.15, 3.0, np.random.default_rng(k)).astype(np.uint8)
            raw.tofile(os.path.join(tmp, "raw.bin"))
            noise.tofile(os.path.join(tmp, "noise.bin"))
            r = subprocess.run([REF, "--corrupt", "1099", "1", tmp], capture_output=True, text=True)
            inp = np.fromfile(os.path.join(tmp, "inp.bin"), dtype="<i4")
            tgt = np.fromfile(os.path.join(tmp, "tgt.bin"), dtype="<i4")
            ri, rt = corrupt(raw.astype(np.int64), noise, 1099, 1)
            if not t.check(r.returncode == 0 and np.array_equal(inp, ri) and np.array_equal(tgt, rt),
                           f"corruption {k} (n={n}): input {inp[:12]} vs {ri[:12]}, target {tgt[:12]} vs {rt[:12]}"):
                break
    t.finish()


if __name__ == "__main__":
    main()
