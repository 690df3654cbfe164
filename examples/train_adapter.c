/*
 * train_adapter.c — train a LoRA adapter and use it, through the public API alone.
 *
 *     train_adapter [MODEL_DIR [IMAGE_DIR [OUT_DIR]]]
 *
 * Loads the base (default: the embedded models/mmtune-clip-tiny), pairs five photos of
 * IMAGE_DIR (default: tests/fixtures/clip/images) with captions of its own, in memory, and
 * trains a rank-4 LoRA adapter on them for 20 steps into the run folder OUT_DIR (default:
 * runs/train_adapter; replaced when it exists), printing the loss every 5 steps. Then it
 * opens OUT_DIR/adapter over the base and embeds the photos and captions with and without it,
 * and prints how often a photo's best caption is its own and the mean cosine of the matching
 * pairs. Exits 0 when the loss went down and the adapter moved the embeddings. `make test`
 * builds and runs it (tests/test_examples.c); it takes about half a second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmtune.h"

#define N_PAIRS 5

static const char *photos[N_PAIRS] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg",
                                      "rocket_rgba.png"};
static const char *captions[N_PAIRS] = {"a cat on a chair", "an astronaut smiling", "a man with a camera",
                                        "a cup of coffee", "a rocket on the pad"};

typedef struct loss_log {
    double first, last;
} loss_log;

/* Progress: the library prints nothing itself. */
static void on_step(void *user, const mmt_train_step_info *info) {
    loss_log *log = user;
    if (info->step == info->start_step + 1) log->first = info->loss;
    log->last = info->loss;
    if (info->step % 5 == 0)
        printf("step %lld/%lld  loss %.4f  lr %.2e\n", (long long)info->step, (long long)info->total_steps, info->loss,
               info->lr);
}

/* Embeds the photos and the captions, every row through adapter (NULL: the base alone). */
static mmt_status embed(mmt_clip_run *run, mmt_clip_adapter *adapter, const char *const *paths, float *img, float *txt) {
    mmt_clip_adapter *rows[N_PAIRS];
    for (int i = 0; i < N_PAIRS; i++) rows[i] = adapter;
    mmt_status s = mmt_clip_run_embed_image_files(run, paths, rows, N_PAIRS, img);
    return s == MMT_OK ? mmt_clip_run_embed_texts(run, captions, rows, N_PAIRS, txt) : s;
}

/* Photos whose most similar caption is their own; *mean_cos gets the matching pairs' mean
 * cosine (the embeddings are normalised, so a dot product). */
static int own_caption_first(const float *img, const float *txt, int64_t P, double *mean_cos) {
    int hits = 0;
    *mean_cos = 0;
    for (int i = 0; i < N_PAIRS; i++) {
        int best = 0;
        double best_cos = -2;
        for (int j = 0; j < N_PAIRS; j++) {
            double c = 0;
            for (int64_t k = 0; k < P; k++) c += (double)img[i * P + k] * txt[j * P + k];
            if (c > best_cos) best_cos = c, best = j;
            if (j == i) *mean_cos += c / N_PAIRS;
        }
        hits += best == i;
    }
    return hits;
}

int main(int argc, char **argv) {
    if (argc > 4) {
        fprintf(stderr, "usage: train_adapter [MODEL_DIR [IMAGE_DIR [OUT_DIR]]]\n");
        return 2;
    }
    const char *model_dir = argc > 1 ? argv[1] : "models/mmtune-clip-tiny";
    const char *image_dir = argc > 2 ? argv[2] : "tests/fixtures/clip/images";
    const char *out_dir = argc > 3 ? argv[3] : "runs/train_adapter";
    char path_store[N_PAIRS][1024], adapter_dir[1100];
    const char *paths[N_PAIRS];
    for (int i = 0; i < N_PAIRS; i++) {
        snprintf(path_store[i], sizeof path_store[i], "%s/%s", image_dir, photos[i]);
        paths[i] = path_store[i];
    }
    snprintf(adapter_dir, sizeof adapter_dir, "%s/adapter", out_dir);

    mmt_clip *base = NULL;
    mmt_clip_adapter *adapter = NULL;
    mmt_clip_run *run = NULL;
    float *emb = NULL;
    int rc = 1;
    if (mmt_clip_load(model_dir, &base) != MMT_OK) goto fail;

    mmt_train_options o;
    mmt_train_options_default(&o); /* the defaults of `mmtune train` */
    loss_log log = {0, 0};
    o.method = "lora";
    o.lora_r = 4;
    o.lora_alpha = 8;
    o.steps = 20;
    o.batch_size = N_PAIRS;
    o.lr = 1e-2;
    o.seed = 7;
    o.overwrite = 1;
    o.on_step = on_step;
    o.user = &log;
    mmt_train_summary sum;
    if (mmt_clip_train_adapter_on_pairs(base, paths, captions, N_PAIRS, &o, out_dir, &sum) != MMT_OK) goto fail;
    printf("trained %lld steps in %.2f s: %lld of %lld parameters, loss %.4f -> %.4f\n", (long long)sum.steps_done,
           sum.seconds, (long long)sum.trainable_params, (long long)sum.total_params, log.first, log.last);

    int64_t P = mmt_clip_embed_dim(base);
    emb = malloc((size_t)(4 * N_PAIRS * P) * sizeof(float));
    if (!emb) {
        fprintf(stderr, "train_adapter: out of memory\n");
        goto done;
    }
    float *img_base = emb, *txt_base = emb + N_PAIRS * P, *img_tuned = emb + 2 * N_PAIRS * P, *txt_tuned = emb + 3 * N_PAIRS * P;
    if (mmt_clip_adapter_open(base, adapter_dir, &adapter) != MMT_OK || mmt_clip_run_create(base, &run) != MMT_OK ||
        embed(run, NULL, paths, img_base, txt_base) != MMT_OK || embed(run, adapter, paths, img_tuned, txt_tuned) != MMT_OK)
        goto fail;
    double cos_base, cos_tuned;
    int hits_base = own_caption_first(img_base, txt_base, P, &cos_base);
    int hits_tuned = own_caption_first(img_tuned, txt_tuned, P, &cos_tuned);
    printf("own caption first: base %d/%d, adapter %d/%d; matching pairs' mean cosine: base %.3f, adapter %.3f\n",
           hits_base, N_PAIRS, hits_tuned, N_PAIRS, cos_base, cos_tuned);
    int moved = memcmp(img_base, img_tuned, (size_t)(N_PAIRS * P) * sizeof(float)) != 0;
    if (moved && log.last < log.first) {
        printf("train_adapter: ok, adapter in %s\n", adapter_dir);
        rc = 0;
    } else {
        fprintf(stderr, "train_adapter: the adapter did not learn (loss %.4f -> %.4f)\n", log.first, log.last);
    }
    goto done;
fail:
    fprintf(stderr, "train_adapter: %s\n", mmt_last_error());
done:
    free(emb);
    mmt_clip_run_free(run);
    mmt_clip_adapter_close(adapter);
    mmt_clip_free(base);
    return rc;
}
