/*
 * test_dora.c — DoRA (LoRA with a learned magnitude per output row) on the CLIP training view.
 *
 * PyTorch + PEFT parity (loss, every gradient, five AdamW steps, merge) is the lora_dora
 * scenario of test_train_parity.c. This file checks what the fixture cannot:
 *   - the magnitude gradient against a central finite difference of the whole model's loss
 *     (tiny-a, reference kernels), with and without LoRA dropout; Richardson-extrapolated
 *     from steps h and h/2, tolerance 2e-2 relative plus the float noise floor of the loss
 *     (as test_clip_train.c). Only the magnitude is checked this way: PEFT detaches the row
 *     norm ||W + s B A|| from the graph (DoRA paper §4.3), so the A and B gradients mmtune
 *     computes (PEFT's) are deliberately NOT the derivative of the forward, and a finite
 *     difference would disagree with them by design;
 *   - at initialisation (B = 0, m = ||W||) the adapted model embeds exactly as the base;
 *   - gradient checkpointing gives bitwise the same gradients (dropout on);
 *   - merging: W' = m / ||W + s B A|| (W + s B A) per row, bias unchanged, embeds like the
 *     adapter within 1e-5; save/load round trip of lora_magnitude_vector.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "clip_fixture.h"
#include "core/alloc.h"
#include "core/safetensors.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/adapter.h"
#include "peft/merge.h"
#include "peft/peft_config.h"
#include "train/clip_task.h"

#define B CLIP_BATCH

/* DoRA r=2 alpha=4 on q_proj, v_proj and fc1 of both towers and the patch conv; B and m moved off their
 * initial values so the magnitude's factor m / ||W + s B A|| is not 1. */
static mmt_status attach(mmt_clip_train *ct, float dropout, int trainable, mmt_adapter **ad) {
    mmt_peft_config pc;
    MMT_TRY(mmt_peft_config_default(&pc, MMT_PEFT_LORA));
    const char *t[] = {"q_proj", "v_proj", "fc1", "patch_embedding"};
    pc.r = 2;
    pc.lora_alpha = 4;
    pc.use_dora = 1;
    pc.lora_dropout = dropout;
    mmt_status s = mmt_peft_names_set_list(&pc.target_modules, t, 4);
    if (s == MMT_OK) s = mmt_adapter_from_config(mmt_clip_train_iface(ct), &pc, 3, trainable, ad);
    mmt_peft_config_free(&pc);
    return s;
}

static void perturb(mmt_adapter *ad) {
    for (int64_t i = 0; i < ad->n; i++) {
        mmt_lora *a = &ad->entries[i].lora;
        int64_t out = ad->entries[i].linear->out;
        for (int64_t j = 0; j < out * a->r; j++) a->b[j] = 0.3f * rng_uniform();
        for (int64_t j = 0; j < out; j++) a->magnitude[j] *= 1.0f + 0.2f * rng_uniform();
    }
}

static void check_magnitude_fd(float dropout) {
    clip_batch f;
    CHECK(batch_load("tiny-a", &f));
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    mmt_adapter *ad = NULL;
    CHECK(mmt_clip_train_create(f.model, &o, &ct) == MMT_OK);
    CHECK_MSG(attach(ct, dropout, 1, &ad) == MMT_OK, "%s", mmt_last_error());
    if (!ad) goto done;
    perturb(ad);
    int64_t n;
    mmt_clip_train_params(ct, &n);
    CHECK(n == 3 * (3 * 2 * 2 + 1)); /* 3 modules x 2 layers x 2 towers + the patch conv, 3 tensors each */
    /* only the magnitudes: the A and B gradients are PEFT's, not the forward's (see the top) */
    fd_options fo = fd_defaults();
    fo.only = "lora_magnitude_vector";
    char what[64];
    snprintf(what, sizeof what, "dropout %.2f", dropout);
    CHECK(check_fd_with(ct, &f, &fo, what) == 13);
done:
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
    batch_free(&f);
}

static void test_magnitude_gradient(void) { check_magnitude_fd(0); }
static void test_magnitude_gradient_with_dropout(void) { check_magnitude_fd(0.25f); }

static void test_identity_at_init(void) {
    clip_batch f;
    CHECK(batch_load("tiny-a", &f));
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    mmt_adapter *ad = NULL;
    CHECK(mmt_clip_train_create(f.model, &o, &ct) == MMT_OK);
    CHECK(attach(ct, 0, 1, &ad) == MMT_OK);
    int64_t P = mmt_clip_embed_dim(f.model);
    float *a = malloc((size_t)(B * P) * sizeof(float)), *r = malloc((size_t)(B * P) * sizeof(float));
    CHECK(mmt_clip_train_encode_pixels(ct, f.pixels, B, a) == MMT_OK);
    CHECK(mmt_clip_encode_pixels(f.model, f.pixels, B, r) == MMT_OK);
    for (int64_t i = 0; i < B * P; i++) CHECK_NEAR(a[i], r[i], 1e-5);
    CHECK(mmt_clip_train_encode_ids(ct, f.ids, B, f.L, a) == MMT_OK);
    CHECK(mmt_clip_encode_ids(f.model, f.ids, B, f.L, r) == MMT_OK);
    for (int64_t i = 0; i < B * P; i++) CHECK_NEAR(a[i], r[i], 1e-5);
    /* 12 targets: r (in + out) + out each */
    CHECK(mmt_adapter_numel(ad) > 0);
    free(a);
    free(r);
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
    batch_free(&f);
}

static void test_checkpointing_bitwise(void) {
    clip_batch f;
    CHECK(batch_load("tiny-a", &f));
    float **g[2] = {NULL, NULL};
    int64_t n[2] = {0, 0};
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        o.checkpointing = ckpt;
        mmt_clip_train *ct = NULL;
        mmt_adapter *ad = NULL;
        CHECK(mmt_clip_train_create(f.model, &o, &ct) == MMT_OK);
        CHECK(attach(ct, 0.25f, 1, &ad) == MMT_OK);
        rng_state = 42;
        perturb(ad);
        const mmt_nn_param *p = mmt_clip_train_params(ct, &n[ckpt]);
        g[ckpt] = grads_of(ct, &f, NULL);
        for (int64_t i = 0; ckpt == 1 && i < n[1] && i < n[0]; i++)
            CHECK_MSG(memcmp(g[0][i], g[1][i], (size_t)p[i].numel * sizeof(float)) == 0,
                      "checkpointing changed the gradient of %s", p[i].name);
        mmt_adapter_free(ad);
        mmt_clip_train_free(ct);
    }
    CHECK(n[0] == n[1]);
    for (int k = 0; k < 2; k++) grads_free(g[k], n[k]);
    batch_free(&f);
}

static void test_merge_and_round_trip(void) {
    clip_batch f;
    CHECK(batch_load("tiny-a", &f));
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL, *ct2 = NULL;
    mmt_adapter *ad = NULL, *ad2 = NULL;
    mmt_clip *merged = NULL;
    CHECK(mmt_clip_train_create(f.model, &o, &ct) == MMT_OK);
    CHECK(attach(ct, 0, 0, &ad) == MMT_OK);
    if (!ad) goto done;
    perturb(ad);
    char tmp[] = "/tmp/mmt_dora_XXXXXX", path[600];
    CHECK(mkdtemp(tmp) != NULL);
    /* round trip: a second adapter loads what the first saved, bit for bit */
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    CHECK(mmt_adapter_save_tensors(ad, path) == MMT_OK);
    CHECK(mmt_clip_train_create(f.model, &o, &ct2) == MMT_OK);
    CHECK(attach(ct2, 0, 0, &ad2) == MMT_OK);
    CHECK_MSG(mmt_adapter_load_tensors(ad2, path) == MMT_OK, "%s", mmt_last_error());
    for (int64_t i = 0; ad2 && i < ad->n; i++)
        CHECK(memcmp(ad->entries[i].lora.magnitude, ad2->entries[i].lora.magnitude,
                     (size_t)ad->entries[i].linear->out * sizeof(float)) == 0);
    mmt_safetensors *st = NULL;
    CHECK(mmt_safetensors_open(path, &st) == MMT_OK);
    if (st) {
        const mmt_st_tensor *t =
            mmt_safetensors_find(st, "base_model.model.vision_model.encoder.layers.1.mlp.fc1.lora_magnitude_vector");
        CHECK(t && t->ndim == 1 && t->shape[0] == mmt_clip_config_of(f.model)->vision.intermediate_size);
        CHECK(st->n_tensors == 39);
        t = mmt_safetensors_find(st, "base_model.model.vision_model.embeddings.patch_embedding.lora_magnitude_vector");
        CHECK(t && t->ndim == 4 && t->shape[0] == 1 && t->shape[1] == mmt_clip_config_of(f.model)->vision.hidden_size);
        mmt_safetensors_close(st);
    }
    unlink(path);
    /* merge */
    CHECK_MSG(mmt_adapter_merge_write(mmt_clip_weights(f.model), ad, tmp) == MMT_OK, "%s", mmt_last_error());
    CHECK(mmt_clip_load(tmp, &merged) == MMT_OK);
    if (merged) {
        int64_t P = mmt_clip_embed_dim(f.model);
        float *e = malloc((size_t)(B * P) * sizeof(float)), *a = malloc((size_t)(B * P) * sizeof(float));
        CHECK(mmt_clip_encode_pixels(merged, f.pixels, B, e) == MMT_OK);
        CHECK(mmt_clip_train_encode_pixels(ct, f.pixels, B, a) == MMT_OK);
        double worst = 0;
        for (int64_t i = 0; i < B * P; i++) worst = fmax(worst, fabs((double)e[i] - a[i]));
        CHECK(mmt_clip_encode_ids(merged, f.ids, B, f.L, e) == MMT_OK);
        CHECK(mmt_clip_train_encode_ids(ct, f.ids, B, f.L, a) == MMT_OK);
        for (int64_t i = 0; i < B * P; i++) worst = fmax(worst, fabs((double)e[i] - a[i]));
        CHECK_MSG(worst <= 1e-5, "merged vs adapter embeddings differ by %.3g", worst);
        /* the adapter moved the embeddings, so the check above means something */
        CHECK(mmt_clip_encode_ids(f.model, f.ids, B, f.L, e) == MMT_OK);
        double moved = 0;
        for (int64_t i = 0; i < B * P; i++) moved = fmax(moved, fabs((double)e[i] - a[i]));
        CHECK(moved > 1e-3);
        free(e);
        free(a);
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
done:
    mmt_clip_free(merged);
    mmt_adapter_free(ad2);
    mmt_clip_train_free(ct2);
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
    batch_free(&f);
}

int main(void) {
    rng_state = 0x2545f4914f6cdd1dull; /* this file's stream: pixels, adapters, directions */
    setenv("MMT_KERNELS", "ref", 1);
    RUN(test_identity_at_init);
    RUN(test_magnitude_gradient);
    RUN(test_magnitude_gradient_with_dropout);
    RUN(test_checkpointing_bitwise);
    RUN(test_merge_and_round_trip);
    return check_summary();
}
