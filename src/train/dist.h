/* dist.h — data-parallel training over MPI (src/train/dist.c).
 *
 * lm_dist is the process group: every rank of an `mpirun -np P lmkit train`
 * job, or a group of one when lmkit was not launched by mpirun (MPI is then
 * never initialised). lm_dp is one training run's gradient exchange over a
 * group: it reduces the gradients in buckets (one per block, started while
 * backward goes on, then the rest), computes the global gradient norm, and
 * runs AdamW either on every parameter (plain data parallelism) or, with
 * ZeRO-1, on this rank's 1/P of them followed by an all-gather. */
#ifndef LM_DIST_H
#define LM_DIST_H

#include <stdint.h>
#include "lmkit.h"
#include "model/model.h"

typedef struct lm_dist lm_dist;

/* Joins the MPI job when the process was started by Open MPI's mpirun (OMPI_COMM_WORLD_SIZE is
 * set); otherwise a group of one without MPI. */
lm_status lm_dist_init(lm_dist **out);
/* Leaves the job (MPI_Finalize) and frees d; NULL is a no-op. */
void lm_dist_free(lm_dist *d);
int lm_dist_rank(const lm_dist *d);         /* 0 for a NULL group */
int lm_dist_size(const lm_dist *d);         /* 1 for a NULL group */
int lm_dist_local_size(const lm_dist *d);   /* ranks on this machine */
/* Ends the whole job after an error on this rank: prints "lmkit: rank R of P: msg" and calls
 * MPI_Abort, so that the other ranks do not wait for it forever. Returns only without MPI. */
void lm_dist_abort(lm_dist *d, const char *msg);
/* Sum of x over the ranks (the same value on every rank). */
double lm_dist_sum(lm_dist *d, double x);

typedef struct lm_dp lm_dp;

/* The gradient exchange of a run training m's trainable parameters on group d; zero = 1 shards
 * the AdamW state (ZeRO-1). */
lm_status lm_dp_init(lm_dp **out, lm_dist *d, lm_model *m, int zero);
void lm_dp_free(lm_dp *dp);
/* Floats of AdamW state (each of m and v) this rank keeps: every trainable parameter, or with
 * ZeRO-1 its own share. */
size_t lm_dp_state_size(const lm_dp *dp);
/* Arms the exchange for the next backward (call before the step's last micro-batch): each
 * block's gradient bucket starts reducing as soon as that block's backward is done. */
void lm_dp_arm(lm_dp *dp);
/* After the last backward: finishes every reduction, scales the gradients by `scale` (1 /
 * (micro-batches x ranks): the mean) and returns the norm of the whole averaged gradient. */
double lm_dp_reduce(lm_dp *dp, float scale);
/* AdamW (kernels.h adamw_update) with clipping factor clip over this rank's parameters, then,
 * with ZeRO-1, the all-gather that gives every rank every updated parameter. */
void lm_dp_step(lm_dp *dp, float *mom, float *vel, float lr, float beta1, float beta2, float eps, float weight_decay,
                int64_t t, float clip);
/* With ZeRO-1 (collective): gathers the ranks' shares of m and v into full (n_params) buffers
 * on rank 0, for a checkpoint. Without ZeRO-1, nothing to do. */
void lm_dp_gather(lm_dp *dp, const float *mom, const float *vel, float *full_mom, float *full_vel);
/* With ZeRO-1: keeps this rank's share of full (n_params) m and v read from a checkpoint. */
void lm_dp_scatter(lm_dp *dp, const float *full_mom, const float *full_vel, float *mom, float *vel);
int lm_dp_zero(const lm_dp *dp);

#endif
