/*
 * crash.h — named crash points for the crash tests.
 *
 * Code that must survive a kill at any moment (checkpoint and folder writes) marks its
 * delicate moments with mmt_crash_point("checkpoint.task_saved"). With the environment
 * variable MMT_CRASH_AT=NAME:N the process kills itself with SIGKILL (no clean-up, exactly
 * as `kill -9` would) the N-th time it passes NAME; unset, a crash point costs one branch.
 * MMT_CRASH_RANK=R arms it on rank R of an MPI job only (tests/test_dist_train.c).
 * tests/test_crash.c drives it to prove that a resumed run ends with the same bytes.
 */
#ifndef MMT_CORE_CRASH_H
#define MMT_CORE_CRASH_H

void mmt_crash_point(const char *name);

#endif
