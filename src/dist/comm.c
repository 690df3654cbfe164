/* comm.c — the communicator's front: backend choice, the single world, and the collectives
 * built from the backend's few primitives (see comm.h). */
#include "dist/comm_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static mmt_comm single_world = {0, 1, 0, 1};
static mmt_comm mpi_world;
static mmt_comm *world;

mmt_comm *mmt_comm_single(void) { return &single_world; }

/* A launcher's variables: OpenMPI's mpirun, MPICH's hydra, PMI-2 and PMIx (srun). */
static const char *const LAUNCHER_VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", NULL};

int mmt_comm_launched(void) {
    for (const char *const *v = LAUNCHER_VARS; *v; v++)
        if (getenv(*v)) return 1;
    return 0;
}

static long env_long(const char *name, long fallback) {
    const char *v = getenv(name);
    char *end = NULL;
    long x = v && *v ? strtol(v, &end, 10) : fallback;
    return end && *end ? fallback : x;
}

mmt_status mmt_comm_world(mmt_comm **out) {
    if (world) {
        *out = world;
        return MMT_OK;
    }
    long torch_world = env_long("WORLD_SIZE", 1);
    if (!mmt_comm_launched()) {
        if (torch_world > 1)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "WORLD_SIZE=%ld is set (torchrun style), but this process was not started by an MPI launcher; "
                            "mmtune's ranks talk through MPI: start them with mpirun -np %ld (or srun --mpi=pmix)",
                            torch_world, torch_world);
        world = &single_world;
        *out = world;
        return MMT_OK;
    }
    if (!mmt_comm_mpi_built()) {
        long n = env_long("OMPI_COMM_WORLD_SIZE", env_long("PMI_SIZE", 0));
        if (n > 1)
            return mmt_fail(MMT_STATUS_UNSUPPORTED,
                            "started as one of %ld ranks, but this mmtune was built without MPI (install libopenmpi-dev "
                            "and rebuild: scripts/install-deps.sh does)", n);
        world = &single_world;
        *out = world;
        return MMT_OK;
    }
    MMT_TRY(mmt_comm_mpi_init(&mpi_world));
    long torch_rank = env_long("RANK", -1);
    if ((getenv("WORLD_SIZE") && torch_world != mpi_world.size) || (torch_rank >= 0 && torch_rank != mpi_world.rank))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "RANK=%ld WORLD_SIZE=%ld disagree with the MPI launcher's rank %d of %d; unset them or make them agree",
                        torch_rank, torch_world, mpi_world.rank, mpi_world.size);
    world = &mpi_world;
    *out = world;
    return MMT_OK;
}

int mmt_comm_rank(const mmt_comm *c) { return c->rank; }
int mmt_comm_any_thread(const mmt_comm *c) { return !c->mpi || c->any_thread; }
int mmt_comm_size(const mmt_comm *c) { return c->size; }
const char *mmt_comm_backend(const mmt_comm *c) { return c->mpi ? "mpi" : "single"; }

void mmt_comm_share(int64_t n, int rank, int size, int64_t *begin, int64_t *end) {
    int64_t q = n / size, r = n % size;
    *begin = (int64_t)rank * q + (rank < r ? rank : r);
    *end = *begin + q + (rank < r ? 1 : 0);
}

mmt_status mmt_comm_allreduce_sum_f32(mmt_comm *c, float *buf, int64_t n) {
    if (c->size == 1 || n == 0) return MMT_OK;
    return mmt_comm_mpi_allreduce_sum(c, buf, n, 0);
}

mmt_status mmt_comm_allreduce_sum_f64(mmt_comm *c, double *buf, int64_t n) {
    if (c->size == 1 || n == 0) return MMT_OK;
    return mmt_comm_mpi_allreduce_sum(c, buf, n, 1);
}

mmt_status mmt_comm_allreduce_max_i64(mmt_comm *c, int64_t *buf, int64_t n) {
    if (c->size == 1 || n == 0) return MMT_OK;
    return mmt_comm_mpi_allreduce_max_i64(c, buf, n);
}

mmt_status mmt_comm_broadcast(mmt_comm *c, void *buf, int64_t bytes, int root) {
    if (root < 0 || root >= c->size) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "broadcast: no rank %d", root);
    if (c->size == 1 || bytes == 0) return MMT_OK;
    for (int64_t at = 0; at < bytes; at += MMT_COMM_PIECE_BYTES) {
        int64_t len = bytes - at < MMT_COMM_PIECE_BYTES ? bytes - at : MMT_COMM_PIECE_BYTES;
        MMT_TRY(mmt_comm_mpi_broadcast(c, (char *)buf + at, len, root));
    }
    return MMT_OK;
}

/* Rank `from`'s bytes to rank `to` (a no-op where from == to), in pieces. */
static mmt_status send_recv(mmt_comm *c, void *buf, int64_t bytes, int from, int to) {
    if (from == to || (c->rank != from && c->rank != to)) return MMT_OK;
    for (int64_t at = 0; at < bytes; at += MMT_COMM_PIECE_BYTES) {
        int64_t len = bytes - at < MMT_COMM_PIECE_BYTES ? bytes - at : MMT_COMM_PIECE_BYTES;
        if (c->rank == from) MMT_TRY(mmt_comm_mpi_send(c, (char *)buf + at, len, to));
        else MMT_TRY(mmt_comm_mpi_recv(c, (char *)buf + at, len, from));
    }
    return MMT_OK;
}

mmt_status mmt_comm_allgather(mmt_comm *c, const void *send, int64_t bytes, void *recv) {
    if (bytes < 0) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "allgather: negative size");
    memmove((char *)recv + (int64_t)c->rank * bytes, send, (size_t)bytes);
    for (int k = 0; k < c->size; k++) MMT_TRY(mmt_comm_broadcast(c, (char *)recv + (int64_t)k * bytes, bytes, k));
    return MMT_OK;
}

mmt_status mmt_comm_gatherv(mmt_comm *c, const void *send, int64_t bytes, int all, int root, void **recv,
                            int64_t *offsets) {
    *recv = NULL;
    if (bytes < 0) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "gatherv: negative size");
    if (root < 0 || root >= c->size) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "gatherv: no rank %d", root);
    int64_t *counts = mmt_malloc((size_t)c->size * sizeof *counts), *off = mmt_malloc((size_t)(c->size + 1) * sizeof *off);
    char *out = NULL;
    mmt_status s = counts && off ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_comm_allgather(c, &bytes, sizeof bytes, counts);
    if (s == MMT_OK) {
        off[0] = 0;
        for (int k = 0; k < c->size; k++) off[k + 1] = off[k] + counts[k];
        if (all || c->rank == root) {
            out = mmt_malloc((size_t)(off[c->size] > 0 ? off[c->size] : 1));
            if (!out) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "gatherv: no memory for %lld bytes", (long long)off[c->size]);
            else memcpy(out + off[c->rank], send, (size_t)bytes);
        }
    }
    /* every rank must take part in the same calls, even where one has failed to allocate */
    int64_t failed = s != MMT_OK;
    mmt_status s2 = mmt_comm_allreduce_max_i64(c, &failed, 1);
    if (s == MMT_OK && s2 != MMT_OK) s = s2;
    if (s == MMT_OK && failed) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "gatherv: another rank ran out of memory");
    for (int k = 0; s == MMT_OK && k < c->size; k++) {
        if (all) s = mmt_comm_broadcast(c, out + off[k], counts[k], k);
        else s = send_recv(c, c->rank == root ? out + off[k] : (char *)send, counts[k], k, root);
    }
    if (s == MMT_OK) {
        if (offsets) memcpy(offsets, off, (size_t)(c->size + 1) * sizeof *off);
        *recv = out;
        out = NULL;
    }
    mmt_free(out);
    mmt_free(counts);
    mmt_free(off);
    return s;
}

mmt_status mmt_comm_barrier(mmt_comm *c) { return c->size == 1 ? MMT_OK : mmt_comm_mpi_barrier(c); }

void mmt_comm_abort(mmt_comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
    if (c->mpi) mmt_comm_mpi_abort(code);
    exit(code);
}

void mmt_comm_finalize(void) {
    if (world && world->mpi) mmt_comm_mpi_finalize();
}
