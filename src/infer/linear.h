/* linear.h — the f32 linear layer of decoding (linear.c): out(n,OC) = inp(n,C) @ W(OC,C)^T + b for
 * the few rows of a decode step, each output the same bits whatever n, the other rows and the
 * thread count. */
#ifndef LM_INFER_LINEAR_H
#define LM_INFER_LINEAR_H
#include <stdint.h>

/* b may be NULL. Row i of out depends only on row i of inp: a sequence decoded alone gets the
 * bits it gets in any batch. */
void lm_linear_rows(float *out, const float *inp, const float *w, const float *b, int64_t n, int64_t C, int64_t OC);
/* the same with W as f16 values packed in panels of 16 rows (quant.h lm_qmat_pack; C a multiple of
 * 16; w at a panel's start): the same bits as lm_linear_rows on W converted to f32 */
void lm_linear_rows_f16(float *out, const float *inp, const uint16_t *w, const float *b, int64_t n, int64_t C, int64_t OC);

#endif
