/*
 * test_bottleneck.c — bottleneck adapters (nn/bottleneck.h, peft/bottleneck_config.h) in the
 * CLIP training view. There is no PyTorch reference (PEFT has no such method); the checks are:
 *   - a fresh adapter (up = 0) leaves the embeddings exactly as the base model's;
 *   - every adapter tensor's gradient through the whole model against a central finite
 *     difference of the loss along a random direction (tiny-a and tiny-b, reference kernels),
 *     Richardson-extrapolated from steps h and h/2 (h = 5% of the tensor's RMS, at least of
 *     0.1; 0.2% with ReLU, whose kink at 0 a larger step crosses too often); tolerance 2e-2
 *     relative plus the float noise floor 16 * 6e-8 |loss| / h, as in test_clip_train.c (the
 *     check is check_fd_with of clip_fixture.h, with step 2e-3 for ReLU). Adapters after
 *     attention and after the MLP, ReLU and GELU, one tower or both, chosen layers;
 *   - gradient checkpointing gives bitwise the same gradients;
 *   - adapter_config.json + adapter_model.safetensors round trip through
 *     mmt_adapter_folder_load (keys and shapes as documented), and merging is refused.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "clip_fixture.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/safetensors.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/bottleneck_config.h"
#include "peft/merge.h"
#include "train/clip_task.h"

#define B CLIP_BATCH

/* Moves up (and the biases) off zero so every tensor has a gradient worth checking. */
static void perturb(mmt_adapter *ad) {
    for (int64_t i = 0; i < ad->n; i++) {
        mmt_bottleneck *bn = &ad->entries[i].bottleneck;
        for (int64_t j = 0; j < bn->dim * bn->hidden; j++) bn->up_w[j] = 0.3f * rng_uniform();
        for (int64_t j = 0; j < bn->dim; j++) bn->up_b[j] = 0.1f * rng_uniform();
        for (int64_t j = 0; j < bn->hidden; j++) bn->down_b[j] = 0.1f * rng_uniform();
    }
}

static mmt_adapter *attach(mmt_clip_train *ct, int placement, mmt_bottleneck_act act, mmt_peft_scope towers,
                           int64_t layer, int trainable) {
    mmt_bottleneck_config cfg;
    mmt_bottleneck_config_default(&cfg);
    cfg.reduction_factor = 8;
    cfg.placement = placement;
    cfg.act = act;
    cfg.towers = towers;
    if (layer >= 0) cfg.layers[cfg.n_layers++] = layer;
    mmt_adapter *ad = NULL;
    CHECK_MSG(mmt_bottleneck_attach(mmt_clip_train_iface(ct), &cfg, 5, trainable, &ad) == MMT_OK, "%s", mmt_last_error());
    return ad;
}

static void test_identity_at_init(void) {
    clip_batch b;
    CHECK(batch_load("tiny-a", &b));
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    mmt_adapter *ad = attach(ct, MMT_BOTTLENECK_AT_ATTN | MMT_BOTTLENECK_AT_MLP, MMT_BOTTLENECK_RELU, MMT_SCOPE_BOTH, -1, 1);
    const mmt_clip_config *c = mmt_clip_config_of(b.model);
    if (ad) { /* 2 places x every layer of both towers, 4 tensors each */
        int64_t n;
        mmt_clip_train_params(ct, &n);
        CHECK(ad->n == 2 * (c->text.num_layers + c->vision.num_layers));
        CHECK(n == 4 * ad->n);
    }
    int64_t P = mmt_clip_embed_dim(b.model);
    float *a = malloc((size_t)(B * P) * sizeof(float)), *r = malloc((size_t)(B * P) * sizeof(float));
    CHECK(mmt_clip_train_encode_pixels(ct, b.pixels, B, a) == MMT_OK);
    CHECK(mmt_clip_encode_pixels(b.model, b.pixels, B, r) == MMT_OK);
    for (int64_t i = 0; i < B * P; i++) CHECK_NEAR(a[i], r[i], 1e-6);
    CHECK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, a) == MMT_OK);
    CHECK(mmt_clip_encode_ids(b.model, b.ids, B, b.L, r) == MMT_OK);
    for (int64_t i = 0; i < B * P; i++) CHECK_NEAR(a[i], r[i], 1e-6);
    free(a);
    free(r);
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
    batch_free(&b);
}

static void fd_case(const char *model, int placement, mmt_bottleneck_act act, mmt_peft_scope towers, int64_t layer,
                    const char *what) {
    clip_batch b;
    CHECK(batch_load(model, &b));
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    mmt_adapter *ad = attach(ct, placement, act, towers, layer, 1);
    if (ad) {
        perturb(ad);
        /* ReLU: a small step, so that few pre-activations cross the kink at 0 */
        fd_options fo = fd_defaults();
        if (act == MMT_BOTTLENECK_RELU) fo.step = 2e-3;
        check_fd_with(ct, &b, &fo, what);
    }
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
    batch_free(&b);
}

static void test_gradients_both_places_gelu(void) {
    fd_case("tiny-a", MMT_BOTTLENECK_AT_ATTN | MMT_BOTTLENECK_AT_MLP, MMT_BOTTLENECK_GELU, MMT_SCOPE_BOTH, -1,
            "both places, gelu, tiny-a");
}
static void test_gradients_attn_relu_text_layer0(void) {
    fd_case("tiny-b", MMT_BOTTLENECK_AT_ATTN, MMT_BOTTLENECK_RELU, MMT_SCOPE_TEXT, 0, "attn, relu, text layer 0");
}
static void test_gradients_mlp_relu_vision(void) {
    fd_case("tiny-b", MMT_BOTTLENECK_AT_MLP, MMT_BOTTLENECK_RELU, MMT_SCOPE_VISION, -1, "mlp, relu, vision");
}

static void test_checkpointing_bitwise(void) {
    clip_batch b;
    CHECK(batch_load("tiny-b", &b));
    float **g[2] = {NULL, NULL};
    int64_t n[2] = {0, 0};
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        o.checkpointing = ckpt;
        mmt_clip_train *ct = NULL;
        CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
        mmt_adapter *ad = attach(ct, MMT_BOTTLENECK_AT_ATTN | MMT_BOTTLENECK_AT_MLP, MMT_BOTTLENECK_GELU, MMT_SCOPE_BOTH, -1, 1);
        rng_state = 1234;
        if (ad) perturb(ad);
        const mmt_nn_param *p = mmt_clip_train_params(ct, &n[ckpt]);
        g[ckpt] = grads_of(ct, &b, NULL);
        for (int64_t i = 0; ckpt == 1 && i < n[1] && i < n[0]; i++)
            CHECK_MSG(memcmp(g[0][i], g[1][i], (size_t)p[i].numel * sizeof(float)) == 0,
                      "checkpointing changed the gradient of %s", p[i].name);
        mmt_adapter_free(ad);
        mmt_clip_train_free(ct);
    }
    CHECK(n[0] == n[1] && n[0] > 0);
    for (int k = 0; k < 2; k++) grads_free(g[k], n[k]);
    batch_free(&b);
}

static void test_save_load_round_trip(void) {
    clip_batch b;
    CHECK(batch_load("tiny-a", &b));
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL, *ct2 = NULL;
    mmt_adapter *ad2 = NULL;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    mmt_bottleneck_config cfg;
    mmt_bottleneck_config_default(&cfg);
    cfg.reduction_factor = 4;
    cfg.placement = MMT_BOTTLENECK_AT_MLP;
    cfg.act = MMT_BOTTLENECK_GELU;
    cfg.towers = MMT_SCOPE_VISION;
    cfg.layers[cfg.n_layers++] = 1;
    snprintf(cfg.base_model, sizeof cfg.base_model, "tests/fixtures/clip/tiny-a");
    mmt_adapter *ad = NULL;
    CHECK(mmt_bottleneck_attach(mmt_clip_train_iface(ct), &cfg, 9, 0, &ad) == MMT_OK);
    if (!ad) goto done;
    perturb(ad);
    char tmp[] = "/tmp/mmt_bottleneck_XXXXXX", cpath[600], wpath[600];
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(cpath, sizeof cpath, "%s/adapter_config.json", tmp);
    snprintf(wpath, sizeof wpath, "%s/adapter_model.safetensors", tmp);
    CHECK(mmt_bottleneck_config_save(&cfg, cpath) == MMT_OK);
    CHECK(mmt_adapter_save_tensors(ad, wpath) == MMT_OK);
    /* the file: four tensors with the documented keys and shapes */
    mmt_safetensors *st = NULL;
    CHECK(mmt_safetensors_open(wpath, &st) == MMT_OK);
    if (st) {
        CHECK(st->n_tensors == 4);
        const char *pre = "base_model.model.vision_model.encoder.layers.1.adapter_mlp.";
        const char *sfx[4] = {"down.weight", "down.bias", "up.weight", "up.bias"};
        int64_t C = mmt_clip_config_of(b.model)->vision.hidden_size, D = C / 4;
        int64_t shapes[4][2] = {{D, C}, {D, 0}, {C, D}, {C, 0}};
        for (int k = 0; k < 4; k++) {
            char key[256];
            snprintf(key, sizeof key, "%s%s", pre, sfx[k]);
            const mmt_st_tensor *t = mmt_safetensors_find(st, key);
            CHECK_MSG(t != NULL, "no %s", key);
            if (t) CHECK(t->shape[0] == shapes[k][0] && t->ndim == (shapes[k][1] ? 2 : 1) && (!shapes[k][1] || t->shape[1] == shapes[k][1]));
        }
        mmt_safetensors_close(st);
    }
    /* loaded back onto a second view: same embeddings, bit for bit */
    CHECK(mmt_clip_train_create(b.model, &o, &ct2) == MMT_OK);
    CHECK_MSG(mmt_adapter_folder_load(mmt_clip_train_iface(ct2), tmp, 0, &ad2) == MMT_OK, "%s", mmt_last_error());
    int64_t P = mmt_clip_embed_dim(b.model);
    float *e1 = malloc((size_t)(B * P) * sizeof(float)), *e2 = malloc((size_t)(B * P) * sizeof(float));
    if (ad2) {
        CHECK(ad2->n == 1 && ad2->entries[0].bottleneck.act == MMT_BOTTLENECK_GELU);
        CHECK(mmt_clip_train_encode_pixels(ct, b.pixels, B, e1) == MMT_OK);
        CHECK(mmt_clip_train_encode_pixels(ct2, b.pixels, B, e2) == MMT_OK);
        CHECK(memcmp(e1, e2, (size_t)(B * P) * sizeof(float)) == 0);
        CHECK(mmt_clip_encode_pixels(b.model, b.pixels, B, e2) == MMT_OK);
        double moved = 0;
        for (int64_t i = 0; i < B * P; i++) moved = fmax(moved, fabs((double)e1[i] - e2[i]));
        CHECK(moved > 1e-4);
    }
    free(e1);
    free(e2);
    /* the config reads back as written */
    mmt_bottleneck_config back;
    CHECK(mmt_bottleneck_config_load(cpath, &back) == MMT_OK);
    CHECK(back.reduction_factor == 4 && back.placement == MMT_BOTTLENECK_AT_MLP && back.act == MMT_BOTTLENECK_GELU &&
          back.towers == MMT_SCOPE_VISION && back.n_layers == 1 && back.layers[0] == 1 &&
          strcmp(back.base_model, cfg.base_model) == 0);
    /* merging is refused with a message */
    CHECK_FAILS(mmt_adapter_merge_write(mmt_clip_weights(b.model), ad, tmp), MMT_STATUS_UNSUPPORTED, "cannot be merged");
    /* a bad value is a one-line error naming the key */
    const char *bad = "{\"peft_type\": \"MMTUNE_BOTTLENECK\", \"placement\": \"ffn\"}";
    CHECK(mmt_file_write_atomic(cpath, bad, strlen(bad)) == MMT_OK);
    CHECK_FAILS(mmt_bottleneck_config_load(cpath, &back), MMT_STATUS_BAD_FORMAT, "placement");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
done:
    mmt_adapter_free(ad2);
    mmt_clip_train_free(ct2);
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
    batch_free(&b);
}

int main(void) {
    rng_state = 0x9d2c5680a5a5a5a5ull; /* this file's stream: pixels, adapters, directions */
    setenv("MMT_KERNELS", "ref", 1);
    RUN(test_identity_at_init);
    RUN(test_gradients_both_places_gelu);
    RUN(test_gradients_attn_relu_text_layer0);
    RUN(test_gradients_mlp_relu_vision);
    RUN(test_checkpointing_bitwise);
    RUN(test_save_load_round_trip);
    return check_summary();
}
