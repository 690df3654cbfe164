/*
 * test_clip_prompts.c — prompt tuning (CoOp text prompts, VPT shallow and deep) and prefix
 * tuning (raw and with PEFT's projection MLP, text and vision towers) through CLIP's
 * training graph, on the tiny fixture CLIPs (tests/fixtures/clip/tiny-a, tiny-b), with the
 * reference kernels:
 *   - every prompt / prefix / projection tensor, alone and combined with LoRA, against a
 *     central finite difference of the loss along a random direction per tensor, Richardson-
 *     extrapolated from steps h and h/2 (h = 5% of the tensor's RMS, at least 0.005):
 *     |fd - g.v| <= 2e-2 max(|fd|, |g.v|) + 16 * 6e-8 * max(1, |loss|) / h, the same rule
 *     as test_clip_train.c (the second term is the float rounding of the loss over the step);
 *   - gradient checkpointing gives bitwise the same loss and gradients (LoRA dropout on);
 *   - zero-initialised keys are not special: prompts change the embeddings, and detaching
 *     them gives back the base model's embeddings exactly;
 *   - an over-long caption keeps BOS and EOS (the pooled row is still the EOS token's);
 *   - save -> settings from the file -> attach -> load reproduces the embeddings bitwise,
 *     and adapter_config.json round-trips.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/file.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "nn/linear.h"
#include "peft/prompt.h"

#define B 3

static const char *TEXTS[B] = {"a photo of a cat", "a red car on a street", "two dogs in snow"};

static uint64_t rng = 0x1234567887654321ull;
static float uniform(void) { /* [-1, 1) */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 23) - 1.0);
}

typedef struct batch {
    mmt_clip *model;
    float *pixels; // (B, 3, S, S)
    int32_t *ids;  // (B, L)
    int64_t L;
} batch;

static int batch_load(const char *name, batch *b) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/clip/%s", MMT_FIXTURE_DIR, name);
    memset(b, 0, sizeof *b);
    if (mmt_clip_load(dir, &b->model) != MMT_OK) {
        fprintf(stderr, "load %s: %s\n", dir, mmt_last_error());
        return 0;
    }
    const mmt_clip_config *c = mmt_clip_config_of(b->model);
    int64_t S = c->vision.image_size, n = (int64_t)B * 3 * S * S;
    b->L = c->text.max_positions;
    b->pixels = malloc((size_t)n * sizeof(float));
    b->ids = malloc((size_t)(B * b->L) * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) b->pixels[i] = 1.5f * uniform();
    return mmt_clip_tokenize(b->model, TEXTS, B, 1, b->ids) == MMT_OK;
}

static void batch_free(batch *b) {
    mmt_clip_free(b->model);
    free(b->pixels);
    free(b->ids);
}

static double loss_of(mmt_clip_train *ct, const batch *b) {
    double loss = NAN;
    if (mmt_clip_train_forward_loss(ct, b->pixels, b->ids, B, b->L, 7, &loss) != MMT_OK)
        fprintf(stderr, "forward: %s\n", mmt_last_error());
    return loss;
}

static float **grads_of(mmt_clip_train *ct, const batch *b, double *loss_out) {
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    mmt_clip_train_zero_grad(ct);
    double loss = loss_of(ct, b);
    if (loss_out) *loss_out = loss;
    CHECK(isfinite(loss));
    CHECK_OK(mmt_clip_train_backward(ct));
    float **g = calloc((size_t)n, sizeof *g);
    for (int64_t i = 0; i < n; i++) {
        g[i] = malloc((size_t)p[i].numel * sizeof(float));
        memcpy(g[i], p[i].grad, (size_t)p[i].numel * sizeof(float));
    }
    return g;
}

static void grads_free(float **g, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(g[i]);
    free(g);
}

/* Directional finite difference per registered tensor (tolerance in the header). */
static void check_fd(mmt_clip_train *ct, const batch *b, const char *what) {
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    CHECK(n > 0);
    float **g = grads_of(ct, b, NULL);
    for (int64_t i = 0; i < n; i++) {
        int64_t m = p[i].numel;
        float *v = malloc((size_t)m * sizeof(float)), *saved = malloc((size_t)m * sizeof(float));
        memcpy(saved, p[i].data, (size_t)m * sizeof(float));
        double gv = 0, vv = 0, pp = 0;
        for (int64_t j = 0; j < m; j++) {
            v[j] = uniform();
            gv += (double)g[i][j] * v[j];
            vv += (double)v[j] * v[j];
            pp += (double)saved[j] * saved[j];
        }
        double rms = sqrt(pp / (double)m), h = 5e-2 * (rms > 0.1 ? rms : 0.1) / sqrt(vv / (double)m);
        double d[2], l0 = 0;
        for (int k = 0; k < 2; k++) {
            double hk = k ? h / 2 : h;
            for (int64_t j = 0; j < m; j++) p[i].data[j] = (float)(saved[j] + hk * v[j]);
            double lp = loss_of(ct, b);
            for (int64_t j = 0; j < m; j++) p[i].data[j] = (float)(saved[j] - hk * v[j]);
            double lm = loss_of(ct, b);
            d[k] = (lp - lm) / (2 * hk);
            l0 = fmax(fabs(lp), fabs(lm));
        }
        memcpy(p[i].data, saved, (size_t)m * sizeof(float));
        double fd = (4 * d[1] - d[0]) / 3;
        double tol = 2e-2 * fmax(fabs(fd), fabs(gv)) + 16 * 6e-8 * fmax(1.0, l0) / h;
        CHECK_MSG(fabs(gv) > 1e-6, "%s: %s: zero gradient along a random direction", what, p[i].name);
        CHECK_MSG(fabs(fd - gv) <= tol, "%s: %s: finite difference %.6g, gradient %.6g (tol %.3g)", what, p[i].name, fd,
                  gv, tol);
        free(v);
        free(saved);
    }
    grads_free(g, n);
}

/* A LoRA on one module, tensors owned by the caller's array (freed by lora_free). */
typedef struct test_lora {
    mmt_lora l;
    float *buf[4];
} test_lora;

static void lora_attach(mmt_clip_train *ct, test_lora *t, const char *module, float dropout) {
    mmt_linear *l = mmt_clip_train_linear(ct, module);
    CHECK(l != NULL);
    if (!l) return;
    int64_t r = 2, na = r * l->in, nb = l->out * r;
    memset(t, 0, sizeof *t);
    t->l.r = r;
    t->l.scaling = 2.0f;
    t->l.dropout = dropout;
    for (int k = 0; k < 4; k++) t->buf[k] = calloc((size_t)(k % 2 ? nb : na), sizeof(float));
    for (int64_t i = 0; i < na; i++) t->buf[0][i] = 0.3f * uniform();
    for (int64_t i = 0; i < nb; i++) t->buf[1][i] = 0.3f * uniform();
    t->l.a = t->buf[0], t->l.b = t->buf[1], t->l.da = t->buf[2], t->l.db = t->buf[3];
    l->lora = &t->l;
    char name[256];
    int64_t sa[2] = {r, l->in}, sb[2] = {l->out, r};
    snprintf(name, sizeof name, "%s.lora_A.weight", module);
    CHECK_OK(mmt_clip_train_add_param(ct, name, t->l.a, t->l.da, 2, sa, 0));
    snprintf(name, sizeof name, "%s.lora_B.weight", module);
    CHECK_OK(mmt_clip_train_add_param(ct, name, t->l.b, t->l.db, 2, sb, 0));
}

static void lora_free(test_lora *t) {
    for (int k = 0; k < 4; k++) free(t->buf[k]);
}

static mmt_prompt_settings settings(int64_t text, int64_t visual, int deep, int64_t prefix, int projection, int vision_prefix) {
    mmt_prompt_settings s;
    memset(&s, 0, sizeof s);
    s.text_tokens = text;
    s.visual_tokens = visual;
    s.visual_deep = deep;
    s.prefix_tokens = prefix;
    s.prefix_projection = projection;
    s.prefix_vision = vision_prefix;
    s.encoder_hidden_size = projection ? 12 : 0;
    s.seed = 3;
    s.trainable = 1;
    return s;
}

/* Scales every prompt tensor so that the finite differences see a curved, non-trivial loss. */
static void fd_case(const char *model, mmt_prompt_settings s, int with_lora, const char *what) {
    batch b;
    if (!batch_load(model, &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
    mmt_prompt *p = NULL;
    CHECK_OK(mmt_prompt_attach(ct, &s, &p));
    test_lora la, lb;
    if (with_lora) {
        lora_attach(ct, &la, "text_model.encoder.layers.1.self_attn.q_proj", 0);
        lora_attach(ct, &lb, "vision_model.encoder.layers.0.self_attn.v_proj", 0);
    }
    /* text prompts start at std 0.02: make them large enough to matter */
    if (p && p->text)
        for (int64_t i = 0; i < s.text_tokens * p->text_dim; i++) p->text[i] *= 20.0f;
    if (p) check_fd(ct, &b, what);
    mmt_prompt_free(p);
    mmt_clip_train_free(ct);
    if (with_lora) lora_free(&la), lora_free(&lb);
    batch_free(&b);
}

static void test_text_prompt_gradients(void) { fd_case("tiny-a", settings(4, 0, 0, 0, 0, 0), 0, "text prompt"); }
static void test_visual_prompt_gradients(void) {
    fd_case("tiny-a", settings(0, 3, 0, 0, 0, 0), 0, "vpt shallow");
    fd_case("tiny-b", settings(0, 2, 1, 0, 0, 0), 0, "vpt deep");
}
static void test_prefix_gradients(void) {
    fd_case("tiny-a", settings(0, 0, 0, 3, 0, 1), 0, "prefix raw");
    fd_case("tiny-b", settings(0, 0, 0, 2, 1, 1), 0, "prefix projection");
}
static void test_combined_with_lora_gradients(void) {
    fd_case("tiny-a", settings(3, 2, 1, 0, 0, 0), 1, "lora + text + vpt deep");
    fd_case("tiny-b", settings(0, 2, 0, 2, 1, 0), 1, "lora + prefix projection + vpt");
}

/* Bitwise equal loss and gradients with and without checkpointing (dropout on). */
static void test_checkpointing_bitwise(void) {
    batch b;
    if (!batch_load("tiny-b", &b)) {
        CHECK(0);
        return;
    }
    mmt_prompt_settings cases[2] = {settings(3, 2, 1, 0, 0, 0), settings(0, 2, 1, 2, 1, 1)};
    for (int c = 0; c < 2; c++) {
        float **g[2];
        int64_t n[2];
        double loss[2];
        for (int ckpt = 0; ckpt < 2; ckpt++) {
            mmt_clip_train_options o;
            mmt_clip_train_options_default(&o);
            o.checkpointing = ckpt;
            mmt_clip_train *ct = NULL;
            CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
            mmt_prompt *p = NULL;
            CHECK_OK(mmt_prompt_attach(ct, &cases[c], &p));
            rng = 99;
            test_lora la;
            lora_attach(ct, &la, "text_model.encoder.layers.0.self_attn.q_proj", 0.25f);
            mmt_clip_train_params(ct, &n[ckpt]);
            g[ckpt] = grads_of(ct, &b, &loss[ckpt]);
            mmt_prompt_free(p);
            mmt_clip_train_free(ct);
            lora_free(&la);
        }
        CHECK(n[0] == n[1]);
        CHECK(memcmp(&loss[0], &loss[1], sizeof(double)) == 0);
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        mmt_clip_train *ct = NULL;
        CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
        mmt_prompt *p = NULL;
        CHECK_OK(mmt_prompt_attach(ct, &cases[c], &p));
        int64_t np;
        const mmt_nn_param *pr = mmt_clip_train_params(ct, &np);
        for (int64_t i = 0; i < np && i < n[0]; i++)
            CHECK_MSG(memcmp(g[0][i], g[1][i], (size_t)pr[i].numel * sizeof(float)) == 0,
                      "case %d: checkpointing changed the gradient of %s", c, pr[i].name);
        mmt_prompt_free(p);
        mmt_clip_train_free(ct);
        for (int k = 0; k < 2; k++) grads_free(g[k], n[k]);
    }
    batch_free(&b);
}

/* Prompts change the embeddings; detached, the view is the base model again (bitwise). An
 * over-long caption still pools at its EOS: the context vectors then displace its last words. */
static void test_detach_and_long_caption(void) {
    batch b;
    if (!batch_load("tiny-a", &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
    int64_t P = mmt_clip_embed_dim(b.model);
    float *base_t = malloc((size_t)(B * P) * sizeof(float)), *base_i = malloc((size_t)(B * P) * sizeof(float));
    float *t = malloc((size_t)(B * P) * sizeof(float)), *im = malloc((size_t)(B * P) * sizeof(float));
    CHECK_OK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, base_t));
    CHECK_OK(mmt_clip_train_encode_pixels(ct, b.pixels, B, base_i));
    mmt_prompt_settings s = settings(4, 3, 1, 0, 0, 0);
    s.trainable = 0;
    mmt_prompt *p = NULL;
    CHECK_OK(mmt_prompt_attach(ct, &s, &p));
    CHECK_OK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, t));
    CHECK_OK(mmt_clip_train_encode_pixels(ct, b.pixels, B, im));
    CHECK(memcmp(t, base_t, (size_t)(B * P) * sizeof(float)) != 0);
    CHECK(memcmp(im, base_i, (size_t)(B * P) * sizeof(float)) != 0);
    /* an over-long caption: every position a word, the tokenizer truncates and ends in EOS */
    char longtext[4096] = "";
    for (int i = 0; i < 120; i++) strcat(longtext, "cat ");
    const char *texts[1] = {longtext};
    int32_t *ids = malloc((size_t)b.L * sizeof(int32_t));
    CHECK_OK(mmt_clip_tokenize(b.model, texts, 1, 1, ids));
    CHECK_OK(mmt_clip_train_encode_ids(ct, ids, 1, b.L, t));
    double norm = 0;
    for (int64_t j = 0; j < P; j++) norm += (double)t[j] * t[j];
    CHECK_NEAR(norm, 1.0, 1e-5);
    mmt_prompt_free(p);
    CHECK_OK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, t));
    CHECK_OK(mmt_clip_train_encode_pixels(ct, b.pixels, B, im));
    CHECK(memcmp(t, base_t, (size_t)(B * P) * sizeof(float)) == 0);
    CHECK(memcmp(im, base_i, (size_t)(B * P) * sizeof(float)) == 0);
    /* counts the context length cannot hold are refused */
    mmt_prompt_settings big = settings(b.L - 1, 0, 0, 0, 0, 0);
    big.trainable = 0;
    CHECK_FAILS(mmt_prompt_attach(ct, &big, &p), MMT_STATUS_INVALID_ARGUMENT, "context length");
    mmt_prompt_settings both = settings(2, 0, 0, 2, 0, 0);
    both.trainable = 0;
    CHECK_FAILS(mmt_prompt_attach(ct, &both, &p), MMT_STATUS_INVALID_ARGUMENT, "cannot be combined");
    free(ids);
    free(base_t), free(base_i), free(t), free(im);
    mmt_clip_train_free(ct);
    batch_free(&b);
}

/* Trains nothing: perturbs, saves, reloads into a fresh view from the file alone. */
static void round_trip(const char *model, mmt_prompt_settings s, const char *tag) {
    batch b;
    if (!batch_load(model, &b)) {
        CHECK(0);
        return;
    }
    const mmt_clip_config *cc = mmt_clip_config_of(b.model);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/prompt_roundtrip_%s", MMT_BUILD_DIR, tag);
    CHECK_OK(mmt_mkdirs(dir));
    char *wpath = mmt_path_join(dir, "adapter_model.safetensors"), *cpath = mmt_path_join(dir, "adapter_config.json");
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL, *ct2 = NULL;
    CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
    CHECK_OK(mmt_clip_train_create(b.model, &o, &ct2));
    mmt_prompt *p = NULL, *q = NULL;
    CHECK_OK(mmt_prompt_attach(ct, &s, &p));
    if (!p) return;
    int64_t n;
    const mmt_nn_param *pr = mmt_clip_train_params(ct, &n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < pr[i].numel; j++) pr[i].data[j] += 0.1f * uniform();
    mmt_peft_config pc, back;
    memset(&back, 0, sizeof back);
    CHECK_OK(mmt_prompt_peft_config(&s, cc, NULL, &pc));
    CHECK_OK(mmt_peft_config_save(&pc, cpath));
    CHECK_OK(mmt_prompt_save_tensors(p, wpath));
    CHECK_OK(mmt_peft_config_load(cpath, &back));
    CHECK(back.peft_type == pc.peft_type && back.num_virtual_tokens == pc.num_virtual_tokens &&
          back.prefix_projection == pc.prefix_projection && back.token_dim == pc.token_dim);
    mmt_prompt_settings got;
    CHECK_OK(mmt_prompt_settings_from_file(&back, wpath, cc, &got));
    CHECK(got.text_tokens == s.text_tokens && got.visual_tokens == s.visual_tokens && got.visual_deep == s.visual_deep &&
          got.prefix_tokens == s.prefix_tokens && got.prefix_projection == s.prefix_projection &&
          got.prefix_vision == s.prefix_vision);
    got.trainable = 0;
    CHECK_OK(mmt_prompt_attach(ct2, &got, &q));
    if (q) CHECK_OK(mmt_prompt_load_tensors(q, wpath));
    int64_t P = mmt_clip_embed_dim(b.model);
    float *a = malloc((size_t)(B * P) * sizeof(float)), *c = malloc((size_t)(B * P) * sizeof(float));
    CHECK_OK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, a));
    CHECK_OK(mmt_clip_train_encode_ids(ct2, b.ids, B, b.L, c));
    CHECK_MSG(memcmp(a, c, (size_t)(B * P) * sizeof(float)) == 0, "%s: text embeddings differ after reload", tag);
    CHECK_OK(mmt_clip_train_encode_pixels(ct, b.pixels, B, a));
    CHECK_OK(mmt_clip_train_encode_pixels(ct2, b.pixels, B, c));
    CHECK_MSG(memcmp(a, c, (size_t)(B * P) * sizeof(float)) == 0, "%s: image embeddings differ after reload", tag);
    CHECK(mmt_prompt_numel(p) > 0 && mmt_prompt_numel(p) == mmt_prompt_numel(q));
    free(a), free(c);
    mmt_peft_config_free(&pc);
    mmt_peft_config_free(&back);
    mmt_prompt_free(p);
    mmt_prompt_free(q);
    mmt_clip_train_free(ct);
    mmt_clip_train_free(ct2);
    mmt_free(wpath), mmt_free(cpath);
    batch_free(&b);
}

static void test_save_load_round_trip(void) {
    round_trip("tiny-a", settings(5, 2, 1, 0, 0, 0), "text_vpt");
    round_trip("tiny-a", settings(0, 3, 0, 0, 0, 0), "vpt");
    round_trip("tiny-b", settings(0, 0, 0, 2, 0, 1), "prefix");
    round_trip("tiny-b", settings(0, 2, 1, 3, 1, 1), "prefix_projection");
}

int main(void) {
    setenv("MMT_KERNELS", "ref", 1);
    RUN(test_text_prompt_gradients);
    RUN(test_visual_prompt_gradients);
    RUN(test_prefix_gradients);
    RUN(test_combined_with_lora_gradients);
    RUN(test_checkpointing_bitwise);
    RUN(test_detach_and_long_caption);
    RUN(test_save_load_round_trip);
    return check_summary();
}
