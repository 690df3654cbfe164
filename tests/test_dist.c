/* test_dist.c — the communicator (src/dist/comm.h).
 *
 * Started by ctest (no launcher): checks the single world, then starts itself under
 * `mpirun -np 2` and `-np 3` (mpirun_self.h) and checks that every rank
 * passed. Under the launcher (the child): every collective against what it must give,
 * computed locally from what each rank is known to hold; reductions bitwise equal to the
 * sum in rank order. Skips the multi-rank half where mpirun was not found at build time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"
#include "core/alloc.h"
#include "dist/comm.h"
#include "mpirun_self.h"

/* What rank r holds at element i (the same formula on every rank). */
static float value_f(int r, int64_t i) { return (float)((r + 1) * 0.1 + (double)(i % 97) * 1e-3 + (double)r / (i + 3)); }

static void test_share(void) {
    int64_t n = 10, prev = 0;
    for (int r = 0; r < 4; r++) {
        int64_t b, e;
        mmt_comm_share(n, r, 4, &b, &e);
        CHECK(b == prev);
        CHECK(e - b == (r < 2 ? 3 : 2));
        prev = e;
    }
    CHECK(prev == n);
    int64_t b, e;
    mmt_comm_share(1, 3, 4, &b, &e);
    CHECK(b == 1 && e == 1); /* more ranks than items: an empty share */
}

static void test_single(void) {
    mmt_comm *c = mmt_comm_single();
    CHECK(mmt_comm_rank(c) == 0 && mmt_comm_size(c) == 1);
    CHECK(!strcmp(mmt_comm_backend(c), "single"));
    float x[3] = {1, 2, 3};
    CHECK(mmt_comm_allreduce_sum_f32(c, x, 3) == MMT_OK && x[2] == 3);
    char s[4] = "abc", r[4];
    CHECK(mmt_comm_allgather(c, s, 4, r) == MMT_OK && !strcmp(r, "abc"));
    void *g = NULL;
    int64_t off[2];
    CHECK(mmt_comm_gatherv(c, s, 3, 1, 0, &g, off) == MMT_OK && g && !memcmp(g, "abc", 3) && off[1] == 3);
    mmt_free(g);
    CHECK(mmt_comm_broadcast(c, s, 4, 1) != MMT_OK); /* no rank 1 */
    CHECK(mmt_comm_barrier(c) == MMT_OK);
}

/* torchrun's variables without a launcher: a clear refusal, not a silent single run. */
static void test_torchrun_vars_refused(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "env -u OMPI_COMM_WORLD_SIZE WORLD_SIZE=2 RANK=0 %s --version >/dev/null 2>/tmp/mmt_dist_err.txt",
             MMT_BINARY);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    char *err = check_read_file("/tmp/mmt_dist_err.txt", NULL);
    CHECK(err && strstr(err, "mpirun -np 2"));
    free(err);
    remove("/tmp/mmt_dist_err.txt");
}

/* ---- under the launcher ---------------------------------------------------------------- */

static void test_collectives(void) {
    mmt_comm *c = NULL;
    CHECK(mmt_comm_world(&c) == MMT_OK);
    if (!c) return;
    int rank = mmt_comm_rank(c), size = mmt_comm_size(c);
    CHECK(size > 1 && !strcmp(mmt_comm_backend(c), "mpi"));
    /* sums: several sizes, one crossing the piece boundary is too big for a test; odd ones */
    static const int64_t sizes[] = {1, 2, 7, 1000, 65537};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t n = sizes[k];
        float *x = mmt_malloc((size_t)n * sizeof *x);
        double *d = mmt_malloc((size_t)n * sizeof *d);
        for (int64_t i = 0; i < n; i++) x[i] = value_f(rank, i), d[i] = (double)value_f(rank, i) * 1.1;
        CHECK(mmt_comm_allreduce_sum_f32(c, x, n) == MMT_OK);
        CHECK(mmt_comm_allreduce_sum_f64(c, d, n) == MMT_OK);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            float want = value_f(0, i);
            double wantd = (double)value_f(0, i) * 1.1;
            for (int r = 1; r < size; r++) want += value_f(r, i), wantd += (double)value_f(r, i) * 1.1;
            bad += memcmp(&want, &x[i], sizeof want) != 0 || memcmp(&wantd, &d[i], sizeof wantd) != 0;
        }
        CHECK_MSG(bad == 0, "n=%lld: %d sums differ from the rank-order sum", (long long)n, bad);
        mmt_free(x);
        mmt_free(d);
    }
    int64_t m = rank * 10;
    CHECK(mmt_comm_allreduce_max_i64(c, &m, 1) == MMT_OK && m == (size - 1) * 10);
    char msg[32] = "";
    if (rank == size - 1) snprintf(msg, sizeof msg, "from %d", rank);
    CHECK(mmt_comm_broadcast(c, msg, sizeof msg, size - 1) == MMT_OK);
    char want[32];
    snprintf(want, sizeof want, "from %d", size - 1);
    CHECK(!strcmp(msg, want));
    int32_t mine = 100 + rank, *all = mmt_malloc((size_t)size * sizeof *all);
    CHECK(mmt_comm_allgather(c, &mine, sizeof mine, all) == MMT_OK);
    for (int r = 0; r < size; r++) CHECK(all[r] == 100 + r);
    mmt_free(all);
    /* ragged gathers: rank r sends r + 1 bytes of 'a' + r (rank 1 of 3 sends none) */
    int64_t bytes = size == 3 && rank == 1 ? 0 : rank + 1;
    char send[8];
    memset(send, 'a' + rank, sizeof send);
    for (int everyone = 0; everyone < 2; everyone++) {
        void *got = NULL;
        int64_t *off = mmt_malloc((size_t)(size + 1) * sizeof *off);
        CHECK(mmt_comm_gatherv(c, send, bytes, everyone, size - 1, &got, off) == MMT_OK);
        if (everyone || rank == size - 1) {
            CHECK(got != NULL);
            for (int r = 0; got && r < size; r++) {
                int64_t want_bytes = size == 3 && r == 1 ? 0 : r + 1;
                CHECK(off[r + 1] - off[r] == want_bytes);
                for (int64_t i = off[r]; i < off[r + 1]; i++) CHECK(((char *)got)[i] == 'a' + r);
            }
        } else {
            CHECK(got == NULL);
        }
        mmt_free(got);
        mmt_free(off);
    }
    CHECK(mmt_comm_barrier(c) == MMT_OK);
}

static int child(void) {
    RUN(test_collectives);
    int failed = check_summary();
    mmt_comm_finalize();
    return failed;
}

int main(int argc, char **argv) {
    if (mmt_comm_launched()) return child();
    RUN(test_share);
    RUN(test_single);
    RUN(test_torchrun_vars_refused);
    mpirun_self_run("test_dist", argv[0]);
    return check_summary();
}
