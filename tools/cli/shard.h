/*
 * shard.h — splitting a command's items over the ranks of an MPI job (dist/comm.h), for
 * `eval` and `index` under mpirun: each rank works on a contiguous run of whole batches and
 * rank 0 gathers the per-item results in item order, then alone scores, prints and writes.
 *
 * Why whole batches, not whole items: every forward pass then gets exactly the inputs it gets
 * in one process (the same rows in the same batch), so a sharded run computes the same bytes
 * as a single one without relying on a row's result being independent of the rest of its
 * batch (CLIP's text path pads to the batch's longest text; GEMM kernels pick their path by
 * the number of rows).
 *
 * Errors: a rank that fails (a missing image in its share, say) returns non-zero without
 * reaching the gather, and main ends the whole job (mmt_comm_abort), so no rank waits in a
 * collective its peer never reaches. Started without a launcher, the world is one rank and
 * these calls are plain copies.
 *
 * Usage:
 *   cli_shard sh;
 *   MMT_TRY(cli_shard_open(n, batch, &sh));          // sh.begin, sh.end: this rank's items
 *   ... compute rows [sh.begin, sh.end) into mine ...
 *   MMT_TRY(cli_shard_gather(&sh, mine, row_bytes, &all)); // all: n rows on rank 0, else NULL
 */
#ifndef MMT_TOOLS_CLI_SHARD_H
#define MMT_TOOLS_CLI_SHARD_H

#include <stdint.h>

#include "core/status.h"
#include "dist/comm.h"

typedef struct cli_shard {
    mmt_comm *comm;       /* the process's world (not owned) */
    int rank, size;
    int64_t n, batch;     /* all items; items per batch */
    int64_t begin, end;   /* this rank's items: whole batches, the last one possibly short */
} cli_shard;

/* This rank's share of n items cut into batches of `batch` (mmt_comm_share over the batches;
 * with more ranks than batches some shares are empty). */
mmt_status cli_shard_open(int64_t n, int64_t batch, cli_shard *sh);

/* Rank 0 speaks for the job: it prints the result and progress and writes the files. */
int cli_shard_is_root(const cli_shard *sh);

/* Every rank's rows [begin, end) of row_bytes each (mine) into *all, n rows in item order,
 * allocated with mmt_malloc, on rank 0; *all is NULL on the others. */
mmt_status cli_shard_gather(const cli_shard *sh, const void *mine, int64_t row_bytes, void **all);

/* The same for rows of different lengths: rank k sends `bytes` of its own; rank 0 gets them
 * in rank order (offsets as mmt_comm_gatherv, size + 1 entries, may be NULL). */
mmt_status cli_shard_gather_bytes(const cli_shard *sh, const void *mine, int64_t bytes, void **all, int64_t *offsets);

#endif
