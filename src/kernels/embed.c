/* embed.c — table lookups (token, position, segment embeddings).
 *
 * Forward copies (or adds, to sum token + position embeddings in one buffer)
 * one table row per id, parallel over rows. Backward scatters dout rows back
 * into the table; repeated ids make that a reduction, so instead of splitting
 * rows between threads (a race) we split the columns: each thread owns a fixed
 * slice of columns and visits the ids in order, so the sum order is fixed and
 * the result is independent of the thread count. A negative id reads as a zero
 * row and receives no gradient; ids >= V cannot be checked here (V is not
 * passed), so callers validate ids when they load data. */
#include <string.h>
#include "kernels/kernels.h"

#define COL_BLOCK 64

void embedding_forward(float *out,           // (N,C)
                       const int32_t *ids,   // (N)
                       const float *table,   // (V,C)
                       int64_t N, int64_t C, int accumulate) {
  #pragma omp parallel for schedule(static) if (N * C > 32768)
  for (int64_t n = 0; n < N; n++) {
    float *o = out + n * C;
    int32_t id = ids[n];
    if (id < 0) { if (!accumulate) memset(o, 0, (size_t)C * sizeof(float)); continue; }
    const float *row = table + (int64_t)id * C;
    if (accumulate) {
      for (int64_t c = 0; c < C; c++) o[c] += row[c];
    } else {
      memcpy(o, row, (size_t)C * sizeof(float));
    }
  }
}

void embedding_backward(float *dtable,        // (V,C)
                        const float *dout,    // (N,C)
                        const int32_t *ids,   // (N)
                        int64_t N, int64_t C) {
  if (!dtable) return;
  int64_t nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
  #pragma omp parallel for schedule(static) if (N * C > 32768)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    int64_t c0 = blk * COL_BLOCK;
    int64_t nc = C - c0 < COL_BLOCK ? C - c0 : COL_BLOCK;
    for (int64_t n = 0; n < N; n++) {
      int32_t id = ids[n];
      if (id < 0) continue;
      float *d = dtable + (int64_t)id * C + c0;
      const float *g = dout + n * C + c0;
      for (int64_t j = 0; j < nc; j++) d[j] += g[j];
    }
  }
}
