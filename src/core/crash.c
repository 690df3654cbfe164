/* crash.c — MMT_CRASH_AT=NAME:N kills the process at the N-th pass of a crash point. */
#include "core/crash.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char target[128];
static long remaining = -1; /* passes of target left before the kill; -1: disarmed */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void arm(void) {
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
