/*
 * test_threads.c — one base model shared by threads that each use their own adapters.
 *
 * The base (tests/fixtures/clip/tiny-a) is loaded once and never written after load: four
 * threads each tokenize the fixture captions and, three times over, for each of three
 * adapters (LoRA on q/v, LoRA r 2 on k/fc1, IA3 on k/fc1; made through the library, see
 * adapter_fixture.h) create a view of the base, load the adapter from its folder, embed the
 * fixture images and texts, and free the view. Every thread must get bitwise the ids and the
 * embeddings a single thread computed first, adapter by adapter, and different adapters must
 * give different embeddings. Built with -DMMT_TSAN=ON (make test-tsan, part of make test)
 * it runs under ThreadSanitizer, which fails the run on any data race.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapter_fixture.h"
#include "check.h"
#include "clip_fixture.h"
#include "core/alloc.h"

#define N_ADAPTERS 3
#define N_THREADS 4
#define ROUNDS 3

static clip_batch fx;
static char dirs[N_ADAPTERS][300];
static float *ref[N_ADAPTERS]; /* images then texts, (2 * CLIP_BATCH, P) */
static int64_t P;

/* The embeddings of the fixture batch through a fresh view with the adapter in dir (NULL:
 * the base), into out (2 * CLIP_BATCH, P); 0 on failure, with the message in err. */
static int embed_with(const char *dir, const int32_t *ids, float *out, char *err, size_t cap) {
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    mmt_adapter *ad = NULL;
    mmt_prompt *pr = NULL;
    mmt_status s = mmt_clip_train_create(fx.model, &o, &ct);
    if (s == MMT_OK && dir) s = mmt_adapter_folders_load(mmt_clip_train_iface(ct), dir, 0, &ad, &pr);
    if (s == MMT_OK) s = mmt_clip_train_encode_pixels(ct, fx.pixels, CLIP_BATCH, out);
    if (s == MMT_OK) s = mmt_clip_train_encode_ids(ct, ids, CLIP_BATCH, fx.L, out + CLIP_BATCH * P);
    if (s != MMT_OK) snprintf(err, cap, "%s", mmt_last_error());
    mmt_prompt_free(pr);
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
    return s == MMT_OK;
}

typedef struct worker {
    int index;
    int mismatches, failures;
    char err[256];
} worker;

static void *work(void *arg) {
    worker *w = arg;
    size_t n = (size_t)(2 * CLIP_BATCH * P);
    float *out = malloc(n * sizeof(float));
    int32_t *ids = malloc((size_t)(CLIP_BATCH * fx.L) * sizeof(int32_t));
    if (!out || !ids) {
        w->failures++;
        goto done;
    }
    for (int round = 0; round < ROUNDS; round++) {
        if (mmt_clip_tokenize(fx.model, CLIP_TEXTS, CLIP_BATCH, 1, ids) != MMT_OK) {
            w->failures++;
            continue;
        }
        if (memcmp(ids, fx.ids, (size_t)(CLIP_BATCH * fx.L) * sizeof(int32_t)) != 0) w->mismatches++;
        for (int k = 0; k < N_ADAPTERS; k++) {
            int a = (k + w->index + round) % N_ADAPTERS; /* threads visit the adapters in different orders */
            if (!embed_with(dirs[a], ids, out, w->err, sizeof w->err)) {
                w->failures++;
                continue;
            }
            if (memcmp(out, ref[a], n * sizeof(float)) != 0) w->mismatches++;
        }
    }
done:
    free(out);
    free(ids);
    return NULL;
}

static void test_threads_match_one_thread(void) {
    size_t n = (size_t)(2 * CLIP_BATCH * P);
    char err[256] = "";
    for (int a = 0; a < N_ADAPTERS; a++) {
        ref[a] = malloc(n * sizeof(float));
        CHECK_MSG(ref[a] && embed_with(dirs[a], fx.ids, ref[a], err, sizeof err), "adapter %d: %s", a, err);
    }
    float *base = malloc(n * sizeof(float));
    CHECK(base && embed_with(NULL, fx.ids, base, err, sizeof err));
    for (int a = 0; a < N_ADAPTERS; a++) {
        CHECK_MSG(memcmp(ref[a], base, n * sizeof(float)) != 0, "adapter %d changes nothing", a);
        for (int b = a + 1; b < N_ADAPTERS; b++) CHECK(memcmp(ref[a], ref[b], n * sizeof(float)) != 0);
    }
    free(base);
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    memset(w, 0, sizeof w);
    for (int t = 0; t < N_THREADS; t++) {
        w[t].index = t;
        CHECK(pthread_create(&th[t], NULL, work, &w[t]) == 0);
    }
    for (int t = 0; t < N_THREADS; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < N_THREADS; t++) {
        CHECK_MSG(w[t].failures == 0, "thread %d: %d failures (%s)", t, w[t].failures, w[t].err);
        CHECK_MSG(w[t].mismatches == 0, "thread %d: %d results differ from one thread's", t, w[t].mismatches);
    }
    for (int a = 0; a < N_ADAPTERS; a++) free(ref[a]);
}

int main(void) {
    char root[] = "/tmp/mmt_threads_XXXXXX";
    if (!mkdtemp(root) || !batch_load("tiny-a", &fx)) return 1;
    P = mmt_clip_embed_dim(fx.model);
    const char *qv[] = {"q_proj", "v_proj"}, *kf[] = {"k_proj", "fc1"}, *ff[] = {"fc1"};
    mmt_peft_config cfg;
    for (int a = 0; a < N_ADAPTERS; a++) {
        snprintf(dirs[a], sizeof dirs[a], "%s/adapter%d", root, a);
        CHECK_OK(mmt_peft_config_default(&cfg, a == 2 ? MMT_PEFT_IA3 : MMT_PEFT_LORA));
        cfg.r = a == 0 ? 4 : 2;
        CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, a == 0 ? qv : kf, 2));
        if (a == 2) CHECK_OK(mmt_peft_names_set_list(&cfg.feedforward_modules, ff, 1));
        adapter_fixture_save(fx.model, &cfg, dirs[a], 0.02f * (float)(a + 1));
        mmt_peft_config_free(&cfg);
    }
    RUN(test_threads_match_one_thread);
    batch_free(&fx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
