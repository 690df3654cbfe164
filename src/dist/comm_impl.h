/* comm_impl.h — what comm.c and the MPI backend (comm_mpi.c) share; not for other folders. */
#ifndef MMT_DIST_COMM_IMPL_H
#define MMT_DIST_COMM_IMPL_H

#include "dist/comm.h"

struct mmt_comm {
    int rank, size;
    int mpi; /* 1: MPI_COMM_WORLD; 0: the single world */
    int any_thread; /* 1: any one thread at a time may call it (MPI_THREAD_SERIALIZED or more) */
};

/* The MPI backend (comm_mpi.c); when MPI was not found at build time these fail. */
int mmt_comm_mpi_built(void);
mmt_status mmt_comm_mpi_init(mmt_comm *c);
mmt_status mmt_comm_mpi_allreduce_sum(mmt_comm *c, void *buf, int64_t n, int is_double);
mmt_status mmt_comm_mpi_allreduce_max_i64(mmt_comm *c, int64_t *buf, int64_t n);
mmt_status mmt_comm_mpi_broadcast(mmt_comm *c, void *buf, int64_t bytes, int root);
mmt_status mmt_comm_mpi_send(mmt_comm *c, const void *buf, int64_t bytes, int to);
mmt_status mmt_comm_mpi_recv(mmt_comm *c, void *buf, int64_t bytes, int from);
mmt_status mmt_comm_mpi_barrier(mmt_comm *c);
void mmt_comm_mpi_abort(int code);
void mmt_comm_mpi_finalize(void);

#endif
