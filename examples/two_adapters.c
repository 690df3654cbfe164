/*
 * two_adapters.c — one base model, two adapters, two threads, through the public API alone.
 *
 *     two_adapters MODEL_DIR ADAPTER_A ADAPTER_B
 *
 * Loads the base once, opens both adapter folders over it, and lets two threads embed the
 * same captions, each with a run context of its own: rows alternate between adapter A,
 * adapter B and the base alone, in one call. Each thread's results must equal those of a
 * single call made first on the main thread, bit for bit. Prints one line per caption and
 * exits 0 when everything agrees. `make test` builds and runs it (tests/test_examples.c).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmtune.h"

#define N_ROWS 6

static const char *captions[N_ROWS] = {"a photo of a cat",  "a red car on a street", "two dogs in snow",
                                       "a photo of a cat",  "a red car on a street", "two dogs in snow"};

typedef struct job {
    mmt_clip *base;
    mmt_clip_adapter *const *adapters; /* one per row */
    float *out;                        /* N_ROWS * embed_dim */
    mmt_status status;
    char error[256];
} job;

static void *embed_job(void *arg) {
    job *j = arg;
    mmt_clip_run *run = NULL;
    j->status = mmt_clip_run_create(j->base, &run);
    if (j->status == MMT_OK) j->status = mmt_clip_run_embed_texts(run, captions, j->adapters, N_ROWS, j->out);
    if (j->status != MMT_OK) snprintf(j->error, sizeof j->error, "%s", mmt_last_error());
    mmt_clip_run_free(run);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: two_adapters MODEL_DIR ADAPTER_A ADAPTER_B\n");
        return 2;
    }
    mmt_clip *base = NULL;
    mmt_clip_adapter *a = NULL, *b = NULL;
    if (mmt_clip_load(argv[1], &base) != MMT_OK || mmt_clip_adapter_open(base, argv[2], &a) != MMT_OK ||
        mmt_clip_adapter_open(base, argv[3], &b) != MMT_OK) {
        fprintf(stderr, "two_adapters: %s\n", mmt_last_error());
        mmt_clip_adapter_close(a);
        mmt_clip_free(base);
        return 1;
    }
    /* rows: A, B, base, A, B, base */
    mmt_clip_adapter *rows[N_ROWS] = {a, b, NULL, a, b, NULL};
    size_t n = (size_t)N_ROWS * (size_t)mmt_clip_embed_dim(base);
    float *ref = malloc(n * sizeof(float)), *out[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    job single = {base, rows, ref, MMT_OK, ""};
    embed_job(&single);
    int rc = single.status == MMT_OK ? 0 : 1;
    if (rc) fprintf(stderr, "two_adapters: %s\n", single.error);
    job jobs[2] = {{base, rows, out[0], MMT_OK, ""}, {base, rows, out[1], MMT_OK, ""}};
    pthread_t th[2];
    for (int t = 0; rc == 0 && t < 2; t++) pthread_create(&th[t], NULL, embed_job, &jobs[t]);
    for (int t = 0; rc == 0 && t < 2; t++) pthread_join(th[t], NULL);
    for (int t = 0; rc == 0 && t < 2; t++) {
        if (jobs[t].status != MMT_OK) {
            fprintf(stderr, "two_adapters: thread %d: %s\n", t, jobs[t].error);
            rc = 1;
        } else if (memcmp(out[t], ref, n * sizeof(float)) != 0) {
            fprintf(stderr, "two_adapters: thread %d computed other embeddings than the main thread\n", t);
            rc = 1;
        }
    }
    size_t P = n / N_ROWS;
    for (int i = 0; rc == 0 && i < N_ROWS; i++) {
        const char *who = rows[i] == a ? "A" : rows[i] == b ? "B" : "base";
        printf("%-4s %-22s [% .5f % .5f % .5f ...]\n", who, captions[i], ref[i * P], ref[i * P + 1], ref[i * P + 2]);
    }
    if (rc == 0) printf("two threads x two adapters: identical to one thread\n");
    free(ref);
    free(out[0]);
    free(out[1]);
    mmt_clip_adapter_close(a);
    mmt_clip_adapter_close(b);
    mmt_clip_free(base);
    return rc;
}
