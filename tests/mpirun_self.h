/*
 * mpirun_self.h — the multi-rank half of the tests that start themselves again under mpirun
 * (test_dist.c, test_gather_loss.c).
 *
 * ctest starts the test without a launcher; it runs its single-process checks, then
 * mpirun_self_run() starts the same program under `mpirun -np 2` and `-np 3` (MMT_MPIRUN,
 * found at build time) and requires every rank to pass. Each rank sees mmt_comm_launched()
 * and runs the checks that need a real communicator instead. --oversubscribe lets 3 ranks
 * run on a 2-core machine; --allow-run-as-root lets them run in a container. Where no mpirun
 * was found at build time, a line on stderr says that the multi-rank half is skipped.
 *
 *     int main(int argc, char **argv) {
 *         if (mmt_comm_launched()) return child();
 *         RUN(test_single_process);
 *         mpirun_self_run("test_x", argv[0]);
 *         return check_summary();
 *     }
 *
 * Header-only, like check.h.
 */
#ifndef MMT_TESTS_MPIRUN_SELF_H
#define MMT_TESTS_MPIRUN_SELF_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "check.h"

static const char *mpirun_self_path; /* argv[0] */

/* This program again under mpirun at 2 and 3 ranks: every rank must pass. */
static inline void test_under_mpirun(void) {
    for (int np = 2; np <= 3; np++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s --allow-run-as-root --oversubscribe -np %d %s", MMT_MPIRUN, np, mpirun_self_path);
        int st = system(cmd);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mpirun -np %d: exit %d", np, WEXITSTATUS(st));
    }
}

/* RUN(test_under_mpirun) with self_path (argv[0]), or the line that says it is skipped. */
static inline void mpirun_self_run(const char *test_name, const char *self_path) {
    if (!MMT_MPIRUN[0]) {
        fprintf(stderr, "%s: no mpirun at build time; the multi-rank half is skipped\n", test_name);
        return;
    }
    mpirun_self_path = self_path;
    RUN(test_under_mpirun);
}

#endif
