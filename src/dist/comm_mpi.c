/* comm_mpi.c — the MPI backend of the communicator (comm.h), built when CMake finds MPI
 * (MMT_HAVE_MPI); without it the same entry points say so. */
#include "dist/comm_impl.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#ifdef MMT_HAVE_MPI
#include <mpi.h>

/* Under LeakSanitizer, what MPI allocates for itself (and keeps past MPI_Finalize, or frees
 * from plugins it has unloaded) is not this program's leak: the calls below run with leak
 * tracking off on the calling thread. Elsewhere these are no-ops. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MMT_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define MMT_LSAN 1
#endif
#ifdef MMT_LSAN
#include <sanitizer/lsan_interface.h>
#define LSAN_OFF() __lsan_disable()
#define LSAN_ON() __lsan_enable()
/* OpenMPI's own threads (libevent's loop) allocate too; their stacks pass through plugins
 * unloaded at MPI_Finalize, so only a full unwind reaches libevent to match. Both only in a
 * process an MPI launcher started. */
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
/* Called while the sanitizer itself starts: no getenv yet, and no intercepted function
 * (open, read, strlen...) may run, so raw system calls and plain loops. */
__attribute__((no_sanitize_address)) static int has_prefix(const char *s, const char *p) {
    while (*p && *s == *p) s++, p++;
    return *p == '\0';
}
__attribute__((no_sanitize_address)) static int started_by_launcher(void) {
    static char env[1 << 18];
    long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/environ", O_RDONLY);
    if (fd < 0) return 0;
    long n = syscall(SYS_read, fd, env, sizeof env - 1);
    syscall(SYS_close, fd);
    if (n <= 0) return 0;
    env[n] = '\0';
    for (long i = 0; i < n; i++) {
        if (has_prefix(env + i, "OMPI_COMM_WORLD_SIZE=") || has_prefix(env + i, "PMI_SIZE=")) return 1;
        while (i < n && env[i]) i++;
    }
    return 0;
}
const char *__asan_default_options(void);
__attribute__((no_sanitize_address)) const char *__asan_default_options(void) { return started_by_launcher() ? "fast_unwind_on_malloc=0" : ""; }
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libevent_core\nleak:libevent_pthreads\n"; }
#else
#define LSAN_OFF() ((void)0)
#define LSAN_ON() ((void)0)
#endif

int mmt_comm_mpi_built(void) { return 1; }

static mmt_status mpi_error(int rc, const char *what) {
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, text, &len);
    for (char *p = text; *p; p++)
        if (*p == '\n') *p = ' ';
    return mmt_fail(MMT_STATUS_IO, "%s failed: %s (a rank has died or the job is ending)", what, text);
}

#define MPI_TRY(call, what)                                  \
    do {                                                     \
        LSAN_OFF();                                          \
        int rc_ = (call);                                    \
        LSAN_ON();                                           \
        if (rc_ != MPI_SUCCESS) return mpi_error(rc_, what); \
    } while (0)

mmt_status mmt_comm_mpi_init(mmt_comm *c) {
    int inited = 0, provided = 0, rc = MPI_SUCCESS;
    MPI_Initialized(&inited);
    /* the data loader and the server have threads of their own that never call MPI; the
     * trainer's gradient all-reduce may run on a thread of its own while the main thread
     * computes (never two calls at once): MPI_THREAD_SERIALIZED, used only if given */
    LSAN_OFF();
    if (!inited) rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    else MPI_Query_thread(&provided);
    c->any_thread = rc == MPI_SUCCESS && provided >= MPI_THREAD_SERIALIZED;
    if (rc == MPI_SUCCESS) {
        /* errors come back as codes, so a rank can say what failed before the job ends */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    }
    LSAN_ON();
    if (rc != MPI_SUCCESS) return mmt_fail(MMT_STATUS_IO, "MPI_Init failed");
    c->mpi = 1;
    return MMT_OK;
}

/* The all-reduce's receive buffer, kept from call to call (only the main thread calls MPI):
 * a buffer of tens of MiB allocated afresh each step is a new mapping whose pages fault in
 * again every time (3-4x slower for full fine-tuning's gradients). Freed at finalize. */
static char *scratch;
static size_t scratch_bytes;

static char *scratch_at_least(size_t bytes) {
    if (bytes <= scratch_bytes) return scratch;
    mmt_free(scratch);
    scratch = mmt_malloc(bytes);
    scratch_bytes = scratch ? bytes : 0;
    return scratch;
}

/* Deterministic sum: rank k gathers share k of every rank's buffer (all-to-all), adds the
 * pieces in rank order, and the reduced shares are gathered back to everyone: the bytes of
 * a ring all-reduce, with an order that does not depend on timing. */
mmt_status mmt_comm_mpi_allreduce_sum(mmt_comm *c, void *buf, int64_t n, int is_double) {
    size_t es = is_double ? sizeof(double) : sizeof(float);
    int64_t piece = MMT_COMM_PIECE_BYTES / (int64_t)es / c->size; /* elements per call */
    int *sc = mmt_malloc((size_t)c->size * sizeof *sc), *sd = mmt_malloc((size_t)c->size * sizeof *sd);
    int *rc = mmt_malloc((size_t)c->size * sizeof *rc), *rd = mmt_malloc((size_t)c->size * sizeof *rd);
    int64_t cap = (piece < n ? piece : n) / c->size + 1;
    char *tmp = scratch_at_least((size_t)c->size * (size_t)cap * es);
    mmt_status s = sc && sd && rc && rd && tmp ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    MPI_Datatype t = is_double ? MPI_DOUBLE : MPI_FLOAT;
    for (int64_t at = 0; s == MMT_OK && at < n; at += piece) {
        int64_t len = n - at < piece ? n - at : piece, mb, me;
        char *base = (char *)buf + at * (int64_t)es;
        for (int k = 0; k < c->size; k++) {
            int64_t b, e;
            mmt_comm_share(len, k, c->size, &b, &e);
            sc[k] = (int)(e - b);
            sd[k] = (int)b;
        }
        mmt_comm_share(len, c->rank, c->size, &mb, &me);
        int mine = (int)(me - mb);
        for (int k = 0; k < c->size; k++) {
            rc[k] = mine;
            rd[k] = k * mine;
        }
        LSAN_OFF();
        int rc_ = MPI_Alltoallv(base, sc, sd, t, tmp, rc, rd, t, MPI_COMM_WORLD);
        LSAN_ON();
        if (rc_ != MPI_SUCCESS) {
            s = mpi_error(rc_, "all-reduce (MPI_Alltoallv)");
            break;
        }
        if (is_double) {
            double *acc = (double *)tmp;
            for (int k = 1; k < c->size; k++)
                for (int i = 0; i < mine; i++) acc[i] += ((double *)tmp)[(int64_t)k * mine + i];
        } else {
            float *acc = (float *)tmp;
            for (int k = 1; k < c->size; k++)
                for (int i = 0; i < mine; i++) acc[i] += ((float *)tmp)[(int64_t)k * mine + i];
        }
        LSAN_OFF();
        rc_ = MPI_Allgatherv(tmp, mine, t, base, sc, sd, t, MPI_COMM_WORLD);
        LSAN_ON();
        if (rc_ != MPI_SUCCESS) s = mpi_error(rc_, "all-reduce (MPI_Allgatherv)");
    }
    mmt_free(sc);
    mmt_free(sd);
    mmt_free(rc);
    mmt_free(rd);
    return s;
}

mmt_status mmt_comm_mpi_allreduce_max_i64(mmt_comm *c, int64_t *buf, int64_t n) {
    for (int64_t at = 0; at < n; at += 1 << 24) {
        int len = (int)(n - at < (1 << 24) ? n - at : (1 << 24));
        MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, buf + at, len, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), "all-reduce (max)");
    }
    return MMT_OK;
}

mmt_status mmt_comm_mpi_broadcast(mmt_comm *c, void *buf, int64_t bytes, int root) {
    MPI_TRY(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast (MPI_Bcast)");
    return MMT_OK;
}

mmt_status mmt_comm_mpi_send(mmt_comm *c, const void *buf, int64_t bytes, int to) {
    MPI_TRY(MPI_Send(buf, (int)bytes, MPI_BYTE, to, 0, MPI_COMM_WORLD), "send (MPI_Send)");
    return MMT_OK;
}

mmt_status mmt_comm_mpi_recv(mmt_comm *c, void *buf, int64_t bytes, int from) {
    MPI_TRY(MPI_Recv(buf, (int)bytes, MPI_BYTE, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "receive (MPI_Recv)");
    return MMT_OK;
}

mmt_status mmt_comm_mpi_barrier(mmt_comm *c) {
    MPI_TRY(MPI_Barrier(MPI_COMM_WORLD), "barrier (MPI_Barrier)");
    return MMT_OK;
}

void mmt_comm_mpi_abort(int code) {
    LSAN_OFF();
    MPI_Abort(MPI_COMM_WORLD, code);
}

void mmt_comm_mpi_finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    LSAN_OFF();
    if (!fin) MPI_Finalize();
    LSAN_ON();
    mmt_free(scratch);
    scratch = NULL;
    scratch_bytes = 0;
}

#else /* no MPI at build time */

int mmt_comm_mpi_built(void) { return 0; }

static mmt_status no_mpi(void) {
    return mmt_fail(MMT_STATUS_UNSUPPORTED, "this mmtune was built without MPI (install libopenmpi-dev and rebuild)");
}

mmt_status mmt_comm_mpi_init(mmt_comm *c) { return no_mpi(); }
mmt_status mmt_comm_mpi_allreduce_sum(mmt_comm *c, void *buf, int64_t n, int is_double) { return no_mpi(); }
mmt_status mmt_comm_mpi_allreduce_max_i64(mmt_comm *c, int64_t *buf, int64_t n) { return no_mpi(); }
mmt_status mmt_comm_mpi_broadcast(mmt_comm *c, void *buf, int64_t bytes, int root) { return no_mpi(); }
mmt_status mmt_comm_mpi_send(mmt_comm *c, const void *buf, int64_t bytes, int to) { return no_mpi(); }
mmt_status mmt_comm_mpi_recv(mmt_comm *c, void *buf, int64_t bytes, int from) { return no_mpi(); }
mmt_status mmt_comm_mpi_barrier(mmt_comm *c) { return no_mpi(); }
void mmt_comm_mpi_abort(int code) { exit(code); }
void mmt_comm_mpi_finalize(void) {}

#endif
