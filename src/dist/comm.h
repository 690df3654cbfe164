/*
 * comm.h — the communicator: the few collectives data-parallel training, sharded evaluation
 * and indexing need, behind one small interface so that a second engine (NCCL, for a GPU
 * backend) can sit beside MPI.
 *
 * Backends:
 *   single  one process (rank 0 of 1). Every collective is a local copy. Always built; a
 *           process not started by an MPI launcher gets it, and then runs no MPI code at all.
 *   mpi     MPI_COMM_WORLD (Debian's OpenMPI or MPICH), built when CMake finds MPI. Chosen
 *           when the process was started by an MPI launcher (mpirun / mpiexec / srun with
 *           PMI or PMIx), recognised by the variables the launcher sets.
 *
 * Every collective is called by every rank in the same order (as MPI requires). Reductions
 * are deterministic: the sum of rank 0's buffer, then rank 1's, ... in that order, and every
 * rank gets the same bytes, so a run is bitwise reproducible for a given number of ranks and
 * equal to one process that adds the same buffers in the same order.
 *
 * A failed collective (a peer died, the launcher ended the job) returns an error naming the
 * operation; the caller ends the job with mmt_comm_abort, so no rank waits forever.
 */
#ifndef MMT_DIST_COMM_H
#define MMT_DIST_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mmt_comm mmt_comm;

/* The process's communicator, created on first use (MPI_Init happens here, under a
 * launcher only). Never NULL after a successful call; later calls return the same one. */
mmt_status mmt_comm_world(mmt_comm **out);

/* The world of a process that was not started by a launcher: rank 0 of 1 (static). */
mmt_comm *mmt_comm_single(void);

int mmt_comm_rank(const mmt_comm *c);
int mmt_comm_size(const mmt_comm *c);
const char *mmt_comm_backend(const mmt_comm *c); /* "single" or "mpi" */

/* 1 when a thread other than the main one may make c's calls, one thread at a time (the
 * single world; MPI when the library gave MPI_THREAD_SERIALIZED or more). The trainer's
 * overlap of the all-reduce with backward needs it. */
int mmt_comm_any_thread(const mmt_comm *c);

/* 1 when this process was started by an MPI launcher (its variables are set). */
int mmt_comm_launched(void);

/* buf (n floats / doubles) becomes the sum over ranks, added in rank order, on every rank. */
mmt_status mmt_comm_allreduce_sum_f32(mmt_comm *c, float *buf, int64_t n);
mmt_status mmt_comm_allreduce_sum_f64(mmt_comm *c, double *buf, int64_t n);
/* The largest value over ranks (e.g. "did any rank fail"), on every rank. */
mmt_status mmt_comm_allreduce_max_i64(mmt_comm *c, int64_t *buf, int64_t n);

/* root's bytes [0, bytes) into every rank's buf. */
mmt_status mmt_comm_broadcast(mmt_comm *c, void *buf, int64_t bytes, int root);

/* Every rank sends `bytes` (the same count on every rank); recv (size * bytes) gets rank
 * 0's, then rank 1's, ... on every rank. */
mmt_status mmt_comm_allgather(mmt_comm *c, const void *send, int64_t bytes, void *recv);

/* Ranks send different counts. *recv (allocated with mmt_malloc; caller frees) gets every
 * rank's bytes in rank order on every rank (all = 1) or on root only (all = 0; NULL on the
 * others); offsets (size + 1 entries, caller-owned, may be NULL) where each rank's begin. */
mmt_status mmt_comm_gatherv(mmt_comm *c, const void *send, int64_t bytes, int all, int root, void **recv,
                            int64_t *offsets);

mmt_status mmt_comm_barrier(mmt_comm *c);

/* Ends every rank of the job with `code` (MPI_Abort); for single, exit(code). For the CLI,
 * after a rank has printed its error: the others would otherwise wait in a collective. */
void mmt_comm_abort(mmt_comm *c, int code);

/* Finalizes MPI (once, at the end of main). The single world needs nothing. */
void mmt_comm_finalize(void);

/* Which contiguous range [*begin, *end) of n items rank `rank` of `size` owns: the first
 * n % size ranks get one more (the split every sharded job uses). */
void mmt_comm_share(int64_t n, int rank, int size, int64_t *begin, int64_t *end);

/* The number of bytes one collective call moves at most (larger buffers are cut into
 * pieces of this size; MPI counts are int). */
#define MMT_COMM_PIECE_BYTES ((int64_t)1 << 28)

#endif
