/*
 * bench_allreduce.c — `mmtune bench allreduce`: the raw speed of the communicator's float32
 * all-reduce (src/dist/comm.h: the deterministic rank-order sum, an MPI_Alltoallv
 * reduce-scatter then an MPI_Allgatherv), the collective data-parallel training calls once
 * per step on the packed gradients. Run it under mpirun (mmtune's main lets exactly this
 * bench run on several ranks); in one process it times the local copy.
 *
 * Each call is timed between a barrier and its return on every rank; a call's time is the
 * slowest rank's, and a size's result the median over the timed calls. Bandwidth follows
 * nccl-tests: algbw = bytes / time, busbw = algbw x 2 (R - 1) / R, the bytes each rank's link
 * carries in a bandwidth-optimal all-reduce, so busbw is comparable across rank counts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "dist/comm.h"

static const char *HELP =
    "usage: mpirun -np R mmtune bench allreduce [--sizes-mb LIST] [--iters N] [--warmup N] [--json]\n"
    "\n"
    "Times the communicator's float32 all-reduce (rank-order sum: all-to-all reduce-scatter +\n"
    "all-gather) over the ranks of an MPI job. A call's time is the slowest rank's from a\n"
    "common barrier; each size reports the median call. busbw = bytes / time x 2 (R-1) / R.\n"
    "  --sizes-mb LIST  buffer sizes in MB (10^6 bytes), comma-separated (default 1,16,64)\n"
    "  --iters N        timed calls per size (default 10)\n"
    "  --warmup N       untimed calls first (default 2)\n"
    "  --json           one JSON object per size (rank 0 prints)\n";

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times `iters` all-reduces of n floats after `warmup` untimed ones; times[i] is the slowest
 * rank's time of call i on every rank. *ok: the sum came out right on this rank. */
static mmt_status time_size(mmt_comm *c, float *buf, int64_t n, long warmup, long iters, double *times, int *ok) {
    int rank = mmt_comm_rank(c), size = mmt_comm_size(c);
    int64_t *ns = mmt_malloc((size_t)iters * sizeof *ns);
    if (!ns) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    /* every rank holds rank + 1 everywhere, so the sum is R (R + 1) / 2: exact in float32 */
    float want = (float)size * (float)(size + 1) / 2.0f;
    *ok = 1;
    for (long it = 0; it < warmup + iters && s == MMT_OK; it++) {
        for (int64_t i = 0; i < n; i++) buf[i] = (float)(rank + 1);
        if ((s = mmt_comm_barrier(c)) != MMT_OK) break;
        double t0 = mmt_now_seconds();
        s = mmt_comm_allreduce_sum_f32(c, buf, n);
        double t = mmt_now_seconds() - t0;
        if (it >= warmup) ns[it - warmup] = (int64_t)(t * 1e9);
        if (s == MMT_OK && (buf[0] != want || buf[n / 2] != want || buf[n - 1] != want)) *ok = 0;
    }
    if (s == MMT_OK) s = mmt_comm_allreduce_max_i64(c, ns, iters);
    if (s == MMT_OK)
        for (long i = 0; i < iters; i++) times[i] = (double)ns[i] * 1e-9;
    mmt_free(ns);
    return s;
}

int cmd_bench_allreduce(int argc, char **argv) {
    const char *sizes = "1,16,64";
    long iters = 10, warmup = 2;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--json")) json = 1;
        else if (i + 1 < argc && !strcmp(a, "--sizes-mb")) sizes = argv[++i];
        else if (i + 1 < argc && (!strcmp(a, "--iters") || !strcmp(a, "--warmup"))) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < (strcmp(a, "--warmup") ? 1 : 0) || v > 100000) return cli_usage_error("bad value for %s", a);
            *(!strcmp(a, "--iters") ? &iters : &warmup) = v;
        } else return cli_usage_error("bench allreduce: unknown option '%s'", a);
    }
    double mb[32];
    int n_sizes = 0;
    for (const char *p = sizes; *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0) || v > 4096 || n_sizes == 32 || (*end && *end != ','))
            return cli_usage_error("bench allreduce: --sizes-mb takes up to 32 sizes in MB (0 < size <= 4096), not '%s'", sizes);
        mb[n_sizes++] = v;
        p = *end ? end + 1 : end;
    }
    mmt_comm *c = NULL;
    if (mmt_comm_world(&c) != MMT_OK) return cli_runtime_error();
    int rank = mmt_comm_rank(c), size = mmt_comm_size(c), rc = 0;
    double *times = mmt_malloc((size_t)iters * sizeof *times);
    float *buf = NULL;
    if (!times) return cli_runtime_error();
    for (int k = 0; k < n_sizes && !rc; k++) {
        int64_t n = (int64_t)(mb[k] * 1e6 / sizeof(float));
        if (n < 1) n = 1;
        int64_t bytes = n * (int64_t)sizeof(float);
        buf = mmt_malloc((size_t)bytes);
        int ok = 0;
        if (!buf || time_size(c, buf, n, warmup, iters, times, &ok) != MMT_OK) {
            rc = cli_runtime_error();
            break;
        }
        mmt_free(buf);
        buf = NULL;
        /* every rank must have summed right: the worst of them */
        int64_t bad = !ok;
        if (mmt_comm_allreduce_max_i64(c, &bad, 1) != MMT_OK) {
            rc = cli_runtime_error();
            break;
        }
        qsort(times, (size_t)iters, sizeof *times, compare_double);
        double median = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
        double algbw = median > 0 ? (double)bytes / median / 1e9 : 0.0, busbw = algbw * 2.0 * (double)(size - 1) / (double)size;
        if (rank == 0) {
            if (json)
                printf("{\"bytes\": %lld, \"ranks\": %d, \"backend\": \"%s\", \"iters\": %ld, \"warmup\": %ld, \"median_s\": %.6f, "
                       "\"min_s\": %.6f, \"max_s\": %.6f, \"algbw_gb_s\": %.3f, \"busbw_gb_s\": %.3f, \"sum_ok\": %s}\n",
                       (long long)bytes, size, mmt_comm_backend(c), iters, warmup, median, times[0], times[iters - 1], algbw,
                       busbw, bad ? "false" : "true");
            else
                printf("%10.1f MB  %d ranks (%s): median %.3f ms (min %.3f, max %.3f), algbw %.2f GB/s, busbw %.2f GB/s%s\n",
                       (double)bytes / 1e6, size, mmt_comm_backend(c), median * 1e3, times[0] * 1e3, times[iters - 1] * 1e3,
                       algbw, busbw, bad ? "  WRONG SUM" : "");
            fflush(stdout);
        }
        if (bad) {
            if (rank == 0) fprintf(stderr, "mmtune: error: bench allreduce: the all-reduce of %lld bytes gave a wrong sum\n", (long long)bytes);
            rc = 1;
        }
    }
    mmt_free(buf);
    mmt_free(times);
    return rc;
}
