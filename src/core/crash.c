/* crash.c — MMT_CRASH_AT=NAME:N kills the process at the N-th pass of a crash point; with
 * MMT_CRASH_RANK=R only rank R of an MPI job (the launcher's rank variable) does. */
#include "core/crash.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char target[128];
static long remaining = -1; /* passes of target left before the kill; -1: disarmed */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* This process's rank as the MPI launcher set it (OpenMPI, MPICH/PMI, PMIx), or NULL. */
static const char *launcher_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", NULL};
    for (const char *const *p = vars; *p; p++)
        if (getenv(*p)) return getenv(*p);
    return NULL;
}

static void arm(void) {
    const char *only = getenv("MMT_CRASH_RANK"), *rank = launcher_rank();
    if (only && (!rank || strcmp(only, rank) != 0)) return;
    const char *v = getenv("MMT_CRASH_AT");
    const char *colon = v ? strrchr(v, ':') : NULL;
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof target) return;
    char *end;
    long n = strtol(colon + 1, &end, 10);
    if (*end || n < 1) return;
    memcpy(target, v, (size_t)(colon - v));
    target[colon - v] = '\0';
    remaining = n;
}

void mmt_crash_point(const char *name) {
    pthread_once(&once, arm);
    if (remaining < 0 || strcmp(name, target) != 0) return;
    pthread_mutex_lock(&lock);
    int fire = --remaining == 0;
    pthread_mutex_unlock(&lock);
    if (fire) raise(SIGKILL);
}
