/* dist.c — data-parallel training over Open MPI, with optional ZeRO-1.
 *
 * The group. `lmkit train` calls lm_dist_init; MPI is initialised only when
 * the process was launched by mpirun (OMPI_COMM_WORLD_SIZE is set). A plain
 * `lmkit train` (and every other command and test) never touches MPI: a
 * singleton MPI_Init costs a fraction of a second and starts helper threads
 * and sockets, which nothing outside a job needs. MPI_THREAD_FUNNELED: only
 * the main thread calls MPI; the OpenMP threads run the kernels.
 *
 * The gradient exchange. The flat gradient (model.h: one array indexed by
 * the parameter table) is cut into buckets: one per block of the decoder
 * stack ("h.N." tensors, contiguous in the table), and the ranges between
 * them (embeddings, final norm, head, an encoder). lm_backward calls
 * model.h's on_block_grads after each block's backward, in reverse layer
 * order; if the exchange is armed (the step's last micro-batch) that block's
 * bucket starts reducing at once (MPI_Iallreduce, or MPI_Ireduce_scatter with
 * ZeRO-1) while backward goes on, and each later hook calls MPI_Testall to
 * move the transfers along (Open MPI progresses non-blocking collectives only
 * inside MPI calls). lm_dp_reduce starts the rest and waits for all.
 *
 * Shares. Each bucket of n floats is split into P pieces, rank r's being
 * n/P (+1 for r < n%P) floats at displs[r]. Plain data parallelism reduces
 * whole buckets and every rank runs AdamW on every parameter; ZeRO-1
 * reduce-scatters them so that each rank receives only its pieces, runs AdamW
 * on them with its own share of the moments (1/P of the optimiser memory),
 * and all-gathers the updated parameters (MPI_Iallgatherv in place). Both
 * send the same bytes per step as an allreduce (docs/scaling-out.md).
 *
 * The global norm that clipping needs is the same in both: each rank sums
 * the squares of its pieces of the averaged gradient (kernels.h global_norm,
 * chunked in double, per piece), and an MPI_Allreduce of these partial sums
 * gives every rank the same total. With 2 ranks a reduced element is a + b
 * either way, so ZeRO-1 and plain data parallelism give the same bits.
 *
 * Checkpoints hold full moments: with ZeRO-1 lm_dp_gather collects the
 * pieces on rank 0 (MPI_Gatherv per bucket), and on resume every rank reads
 * the full file and keeps its pieces (lm_dp_scatter). Ranks must see the
 * same file system (one machine, or a shared directory). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "train/dist.h"

struct lm_dist {
  int rank, size, local_size;
  int mpi;               /* MPI was initialised here (and is finalised by lm_dist_free) */
};

lm_status lm_dist_init(lm_dist **out) {
  lm_dist *d = calloc(1, sizeof *d);
  if (!d) return lm_error(LM_ERR_NOMEM, "out of memory");
  d->size = d->local_size = 1;
  if (getenv("OMPI_COMM_WORLD_SIZE")) {
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
      free(d);
      return lm_error(LM_ERR_UNSUPPORTED, "MPI_Init_thread failed (launched by mpirun, but MPI cannot start)");
    }
    d->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &d->local_size);
    MPI_Comm_free(&local);
  }
  *out = d;
  return LM_OK;
}

void lm_dist_free(lm_dist *d) {
  if (!d) return;
  if (d->mpi) MPI_Finalize();
  free(d);
}

int lm_dist_rank(const lm_dist *d) { return d ? d->rank : 0; }
int lm_dist_size(const lm_dist *d) { return d ? d->size : 1; }
int lm_dist_local_size(const lm_dist *d) { return d ? d->local_size : 1; }

void lm_dist_abort(lm_dist *d, const char *msg) {
  if (!d || !d->mpi) return;
  fprintf(stderr, "lmkit: rank %d of %d: %s\n", d->rank, d->size, msg);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

double lm_dist_sum(lm_dist *d, double x) {
  if (!d || !d->mpi || d->size == 1) return x;
  double y = 0;
  MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return y;
}

/* ------------------------------------------------------------ the gradient exchange */

/* a bucket larger than this is cut (MPI counts are int; smaller pieces also overlap better) */
#define BUCKET_MAX ((size_t)1 << 26)

typedef struct {
  size_t off, n;         /* its range of the flat parameter / gradient arrays */
  int64_t layer;         /* the decoder block whose backward completes it, or -1: after backward */
  int *counts, *displs;  /* (P) each rank's piece */
  size_t local;          /* where this rank's piece lives in the local (ZeRO-1) arrays */
} bucket;

struct lm_dp {
  lm_dist *d;
  lm_model *m;
  int zero, armed, P, r;
  lm_trainable tr;
  bucket *b; int nb;
  MPI_Request *req;      /* (nb) */
  float *shard;          /* ZeRO-1: this rank's pieces of the reduced gradient (n_local) */
  size_t n_local;        /* floats of state this rank keeps */
};

static int cmp_bucket(const void *x, const void *y) {
  const bucket *a = x, *b = y;
  return a->off < b->off ? -1 : a->off > b->off;
}

static void start(lm_dp *dp, int i) {
  bucket *b = &dp->b[i];
  if (dp->req[i] != MPI_REQUEST_NULL) return;
  if (dp->zero)
    MPI_Ireduce_scatter(dp->tr.grads + b->off, dp->shard + b->local, b->counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &dp->req[i]);
  else
    MPI_Iallreduce(MPI_IN_PLACE, dp->tr.grads + b->off, (int)b->n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &dp->req[i]);
}

/* model.h on_block_grads: block `layer`'s gradients are complete */
static void on_block(void *user, int64_t layer) {
  lm_dp *dp = user;
  if (!dp->armed) return;
  for (int i = 0; i < dp->nb; i++)
    if (dp->b[i].layer == layer) start(dp, i);
  int done;
  MPI_Testall(dp->nb, dp->req, &done, MPI_STATUSES_IGNORE);
}

/* appends [off, off+n) as buckets of at most BUCKET_MAX floats */
static int add_range(lm_dp *dp, int *cap, size_t off, size_t n, int64_t layer) {
  while (n > 0) {
    size_t k = n < BUCKET_MAX ? n : BUCKET_MAX;
    if (dp->nb == *cap) {
      bucket *nbk = realloc(dp->b, (size_t)(*cap = *cap ? 2 * *cap : 64) * sizeof *nbk);
      if (!nbk) return -1;
      dp->b = nbk;
    }
    dp->b[dp->nb++] = (bucket){.off = off, .n = k, .layer = layer};
    off += k; n -= k;
  }
  return 0;
}

lm_status lm_dp_init(lm_dp **out, lm_dist *d, lm_model *m, int zero) {
  *out = NULL;
  if (!d || !d->mpi) return lm_error(LM_ERR_ARG, "data parallelism needs a job started by mpirun");
  lm_dp *dp = calloc(1, sizeof *dp);
  if (!dp) return lm_error(LM_ERR_NOMEM, "out of memory");
  dp->d = d; dp->m = m; dp->zero = zero; dp->P = d->size; dp->r = d->rank;
  dp->tr = lm_model_trainable(m);
  lm_status st = LM_OK;
  int cap = 0;
  if (!dp->tr.grads) { st = lm_error(LM_ERR_ARG, "the model has no gradients"); goto fail; }
  /* one bucket per block whose tensors are one contiguous range of the table (LoRA trains an
   * adapter of its own: one range, reduced after backward) */
  size_t n = dp->tr.n_params;
  for (int64_t l = 0; dp->tr.params == m->params && l < m->cfg.n_layer; l++) {
    char pre[32];
    int k = snprintf(pre, sizeof pre, "h.%lld.", (long long)l);
    size_t lo = SIZE_MAX, hi = 0, sum = 0;
    for (int i = 0; i < dp->tr.n_info; i++) {
      const lm_param_info *p = &dp->tr.info[i];
      if (strncmp(p->name, pre, (size_t)k)) continue;
      if (p->offset < lo) lo = p->offset;
      if (p->offset + p->numel > hi) hi = p->offset + p->numel;
      sum += p->numel;
    }
    if (sum == 0 || sum != hi - lo) continue;   /* absent (shared layers) or not contiguous: after backward */
    if (add_range(dp, &cap, lo, hi - lo, l)) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto fail; }
  }
  /* the ranges between the blocks' */
  qsort(dp->b, (size_t)dp->nb, sizeof *dp->b, cmp_bucket);
  int nblock = dp->nb;
  size_t at = 0;
  for (int i = 0; i <= nblock; i++) {
    size_t next = i < nblock ? dp->b[i].off : n;
    if (next > at && add_range(dp, &cap, at, next - at, -1)) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto fail; }
    if (i < nblock) at = dp->b[i].off + dp->b[i].n;
  }
  qsort(dp->b, (size_t)dp->nb, sizeof *dp->b, cmp_bucket);
  dp->req = malloc((size_t)dp->nb * sizeof *dp->req);
  if (!dp->req) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto fail; }
  for (int i = 0; i < dp->nb; i++) {
    bucket *b = &dp->b[i];
    dp->req[i] = MPI_REQUEST_NULL;
    b->counts = malloc((size_t)dp->P * sizeof(int));
    b->displs = malloc((size_t)dp->P * sizeof(int));
    if (!b->counts || !b->displs) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto fail; }
    size_t q = b->n / (size_t)dp->P, rem = b->n % (size_t)dp->P, o = 0;
    for (int r = 0; r < dp->P; r++) {
      b->counts[r] = (int)(q + ((size_t)r < rem));
      b->displs[r] = (int)o;
      o += (size_t)b->counts[r];
    }
    b->local = dp->n_local;
    dp->n_local += (size_t)b->counts[dp->r];
  }
  if (!zero) dp->n_local = n;
  if (zero && !(dp->shard = lm_alloc((dp->n_local ? dp->n_local : 1) * sizeof(float)))) {
    st = lm_error(LM_ERR_NOMEM, "out of memory for the gradient shard"); goto fail;
  }
  /* every rank starts from rank 0's weights, as DDP does (a model created from the same seed is
   * the same already; a loaded one is too when the ranks read the same file) */
  for (int i = 0; i < dp->nb; i++)
    MPI_Bcast(dp->tr.params + dp->b[i].off, (int)dp->b[i].n, MPI_FLOAT, 0, MPI_COMM_WORLD);
  m->on_block_grads = on_block;
  m->on_block_grads_user = dp;
  *out = dp;
  return LM_OK;
fail:
  lm_dp_free(dp);
  return st;
}

void lm_dp_free(lm_dp *dp) {
  if (!dp) return;
  if (dp->m && dp->m->on_block_grads_user == dp) { dp->m->on_block_grads = NULL; dp->m->on_block_grads_user = NULL; }
  for (int i = 0; i < dp->nb; i++) { free(dp->b[i].counts); free(dp->b[i].displs); }
  free(dp->b); free(dp->req);
  lm_free(dp->shard);
  free(dp);
}

size_t lm_dp_state_size(const lm_dp *dp) { return dp->n_local; }
int lm_dp_zero(const lm_dp *dp) { return dp->zero; }
void lm_dp_arm(lm_dp *dp) { dp->armed = 1; }

double lm_dp_reduce(lm_dp *dp, float scale) {
  dp->armed = 0;
  for (int i = 0; i < dp->nb; i++) start(dp, i);   /* what the hooks did not start */
  MPI_Waitall(dp->nb, dp->req, MPI_STATUSES_IGNORE);
  double part = 0;
  for (int i = 0; i < dp->nb; i++) {
    const bucket *b = &dp->b[i];
    float *mine = dp->zero ? dp->shard + b->local : dp->tr.grads + b->off + b->displs[dp->r];
    int64_t k = b->counts[dp->r];
    if (dp->zero && scale != 1.0f) scale_inplace(mine, k, scale);
    else if (!dp->zero && scale != 1.0f) scale_inplace(dp->tr.grads + b->off, (int64_t)b->n, scale);
    double s = global_norm(mine, k);
    part += s * s;
  }
  return sqrt(lm_dist_sum(dp->d, part));
}

void lm_dp_step(lm_dp *dp, float *mom, float *vel, float lr, float beta1, float beta2, float eps, float weight_decay,
                int64_t t, float clip) {
  const lm_trainable *tr = &dp->tr;
  if (!dp->zero) {
    for (int i = 0; i < tr->n_info; i++) {
      const lm_param_info *p = &tr->info[i];
      adamw_update(tr->params + p->offset, tr->grads + p->offset, mom + p->offset, vel + p->offset, (int64_t)p->numel,
                   lr, beta1, beta2, eps, p->decay ? weight_decay : 0.0f, t, clip);
    }
    return;
  }
  for (int i = 0; i < dp->nb; i++) {
    const bucket *b = &dp->b[i];
    size_t lo = b->off + (size_t)b->displs[dp->r], hi = lo + (size_t)b->counts[dp->r];
    for (int j = 0; j < tr->n_info && lo < hi; j++) {   /* the tensors this piece cuts through */
      const lm_param_info *p = &tr->info[j];
      size_t s = p->offset > lo ? p->offset : lo, e = p->offset + p->numel < hi ? p->offset + p->numel : hi;
      if (s >= e) continue;
      size_t k = b->local + (s - lo);
      adamw_update(tr->params + s, dp->shard + k, mom + k, vel + k, (int64_t)(e - s), lr, beta1, beta2, eps,
                   p->decay ? weight_decay : 0.0f, t, clip);
    }
    /* this bucket's updated parameters travel while the next one is updated */
    MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, tr->params + b->off, b->counts, b->displs, MPI_FLOAT,
                    MPI_COMM_WORLD, &dp->req[i]);
  }
  MPI_Waitall(dp->nb, dp->req, MPI_STATUSES_IGNORE);
}

void lm_dp_gather(lm_dp *dp, const float *mom, const float *vel, float *full_mom, float *full_vel) {
  if (!dp->zero) return;
  for (int i = 0; i < dp->nb; i++) {
    const bucket *b = &dp->b[i];
    int root = dp->r == 0;
    MPI_Gatherv(mom + b->local, b->counts[dp->r], MPI_FLOAT, root ? full_mom + b->off : NULL, b->counts, b->displs,
                MPI_FLOAT, 0, MPI_COMM_WORLD);
    MPI_Gatherv(vel + b->local, b->counts[dp->r], MPI_FLOAT, root ? full_vel + b->off : NULL, b->counts, b->displs,
                MPI_FLOAT, 0, MPI_COMM_WORLD);
  }
}

void lm_dp_scatter(lm_dp *dp, const float *full_mom, const float *full_vel, float *mom, float *vel) {
  if (!dp->zero) return;
  for (int i = 0; i < dp->nb; i++) {
    const bucket *b = &dp->b[i];
    size_t k = (size_t)b->counts[dp->r];
    memcpy(mom + b->local, full_mom + b->off + b->displs[dp->r], k * sizeof(float));
    memcpy(vel + b->local, full_vel + b->off + b->displs[dp->r], k * sizeof(float));
  }
}
