/*
 * test_quant_models.c — whole models with quantized linears (models/qlinear.h, mmtune.h
 * mmt_clip_quantize / mmt_git_quantize, the CLI's --int8 and --quantize-base).
 *
 * References and tolerances (the embedded default models, fixed inputs):
 *   - int8 (weights per row, activations per token, integer kernels): every embedding's cosine
 *     with the fp32 model's at least 0.999; NF4 (fp32 compute on 4-bit weights) at least 0.98.
 *     These bound the quantization error itself; the accuracy on the demo task (zero-shot,
 *     retrieval within a point of fp32) is measured in docs/quantization.md.
 *   - the quantized model runs alike on every CPU table: int8 embeddings from the ref table
 *     and the fastest table agree to 5e-3. The integer products are exact on both (test_ops
 *     checks it), but the fp32 attention and norms between them sum in another order, and an
 *     ulp there can move an activation across an int8 rounding boundary: one level of one
 *     activation moves a normalised embedding element by about 1e-3.
 *   - the patch embedding computes in int8 exactly when the first vision block does (an
 *     in-memory copy; files and training keep it float32).
 *   - full fine-tuning of a quantized weight and an unknown quantization are refused in one line.
 */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "cli_run.h"
#include "core/safetensors.h"
#include "models/clip.h"
#include "models/clip_internal.h"
#include "models/clip_train.h"
#include "peft/adapter_folder.h"
#include "ops/ops.h"

static char tmp[256], data[320];

#define TINY MMT_SOURCE_DIR "/models/mmtune-clip-tiny"
#define GIT_TINY MMT_SOURCE_DIR "/models/mmtune-git-tiny"
#define B 3

static void embed_all(mmt_clip *m, float *img, float *txt) {
    const mmt_clip_config *c = mmt_clip_config_of(m);
    int64_t S = c->vision.image_size, L = 8;
    float *pixels = malloc(sizeof(float) * (size_t)(B * 3 * S * S));
    int32_t ids[B * 8];
    for (int64_t i = 0; i < B * 3 * S * S; i++) pixels[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    for (int64_t i = 0; i < B * L; i++) {
        int64_t pos = i % L;
        ids[i] = pos == 0 ? (int32_t)c->text.bos_token_id
               : pos < 6 ? (int32_t)(100 + (i * 31) % 500) : (int32_t)c->text.eos_token_id;
    }
    CHECK_OK(mmt_clip_encode_pixels(m, pixels, B, img));
    CHECK_OK(mmt_clip_encode_ids(m, ids, B, L, txt));
    free(pixels);
}

static double min_cosine(const float *a, const float *b, int64_t n, int64_t P) {
    double worst = 1;
    for (int64_t i = 0; i < n; i++) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t j = 0; j < P; j++) {
            ab += (double)a[i * P + j] * b[i * P + j];
            aa += (double)a[i * P + j] * a[i * P + j];
            bb += (double)b[i * P + j] * b[i * P + j];
        }
        double c = ab / sqrt(aa * bb);
        if (c < worst) worst = c;
    }
    return worst;
}

static void quantized_embeddings(mmt_quant_type type, float *img, float *txt) {
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(TINY, &m));
    if (!m) return;
    mmt_quant_options o;
    mmt_quant_options_default(&o, type);
    CHECK_OK(mmt_clip_quantize(m, &o));
    embed_all(m, img, txt);
    mmt_clip_free(m);
}

static void test_clip_int8_and_nf4_close_to_fp32(void) {
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(TINY, &m));
    if (!m) return;
    int64_t P = mmt_clip_embed_dim(m);
    float *img = malloc(sizeof(float) * (size_t)(4 * B * P)), *txt = malloc(sizeof(float) * (size_t)(4 * B * P));
    embed_all(m, img, txt);
    mmt_clip_free(m);
    quantized_embeddings(MMT_QUANT_INT8, img + B * P, txt + B * P);
    quantized_embeddings(MMT_QUANT_NF4, img + 2 * B * P, txt + 2 * B * P);
    double ci = min_cosine(img, img + B * P, B, P), ct = min_cosine(txt, txt + B * P, B, P);
    CHECK_MSG(ci >= 0.999 && ct >= 0.999, "int8: cosine with fp32 image %.5f text %.5f", ci, ct);
    ci = min_cosine(img, img + 2 * B * P, B, P), ct = min_cosine(txt, txt + 2 * B * P, B, P);
    CHECK_MSG(ci >= 0.98 && ct >= 0.98, "nf4: cosine with fp32 image %.5f text %.5f", ci, ct);
    free(img);
    free(txt);
}

/* The patch embedding (a Conv2d) gets an in-memory int8 copy exactly when the vision
 * tower's first block is int8: --int8 and an int8 snapshot, not NF4, not with the edge
 * blocks kept in fp32; its float32 weight stays for files and training. */
static void test_int8_patch_embedding(void) {
    static const struct {
        mmt_quant_type type;
        int keep_edges, expect;
    } cases[] = {{MMT_QUANT_INT8, 0, 1}, {MMT_QUANT_NF4, 0, 0}, {MMT_QUANT_INT8, 1, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mmt_clip *m = NULL;
        CHECK_OK(mmt_clip_load(TINY, &m));
        if (!m) return;
        CHECK(!m->vision.patch_qw);
        mmt_quant_options o;
        mmt_quant_options_default(&o, cases[k].type);
        o.keep_edge_layers = cases[k].keep_edges;
        CHECK_OK(mmt_clip_quantize(m, &o));
        CHECK_MSG((m->vision.patch_qw != NULL) == cases[k].expect, "case %zu: patch int8 copy %s", k,
                  m->vision.patch_qw ? "made" : "missing");
        CHECK(m->vision.patch_weight != NULL);
        if (m->vision.patch_qw) CHECK(m->vision.patch_qw->type == MMT_QMAT_S8 && m->vision.patch_qw->s8_packed);
        mmt_clip_free(m);
    }
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(MMT_FIXTURE_DIR "/quant/clip-tiny-int8", &m));
    if (m) CHECK(m->vision.patch_qw != NULL);
    mmt_clip_free(m);
}

/* The CLI's embedding of one text under MMT_KERNELS=name (NULL: the machine's best). */
static int cli_embedding(const char *kernels, float *out, int cap) {
    if (kernels) setenv("MMT_KERNELS", kernels, 1);
    int rc = run("embed --model %s --text 'a red shirt' --image %s/clip/images/chelsea.jpg --int8", TINY,
                 MMT_FIXTURE_DIR);
    unsetenv("MMT_KERNELS");
    if (rc != 0 || !out_text) return 0;
    int n = 0;
    for (const char *p = out_text; (p = strstr(p, "\"embedding\":[")) != NULL;) {
        p += 13;
        while (n < cap && *p && *p != ']') {
            char *end;
            out[n++] = strtof(p, &end);
            p = *end == ',' ? end + 1 : end;
        }
    }
    return n;
}

static void test_int8_same_on_every_table(void) {
    float a[512], b[512];
    int na = cli_embedding("ref", a, 512), nb = cli_embedding(NULL, b, 512);
    CHECK(na == 256 && na == nb);
    double worst = 0;
    for (int i = 0; i < na && i < nb; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    CHECK_MSG(worst < 5e-3, "int8 embeddings, ref vs %s table: worst difference %.3g", mmt_ops_cpu()->name, worst);
}

/* Encodes the fixture's pixel_values and input_ids with the model (or, when view is not NULL,
 * with the view and its adapter) and compares the L2-normalised features with the fixture's
 * image_embeds / text_embeds (transformers' get_*_features, not normalised): max abs
 * difference below 1e-4 when exact, else cosine at least 0.999. */
static void compare_with_fixture(const char *what, const char *path, mmt_clip *m, mmt_clip_train *view, int exact) {
    mmt_safetensors *st = NULL;
    CHECK_OK(mmt_safetensors_open(path, &st));
    if (!st) return;
    const mmt_st_tensor *px = mmt_safetensors_find(st, "pixel_values"), *ids = mmt_safetensors_find(st, "input_ids");
    const mmt_st_tensor *ie = mmt_safetensors_find(st, "image_embeds"), *te = mmt_safetensors_find(st, "text_embeds");
    CHECK(px && ids && ie && te);
    int64_t P = mmt_clip_embed_dim(m), n = px ? px->shape[0] : 0, L = ids ? ids->shape[1] : 0;
    if (!px || !ids || !ie || !te || n * P > 4 * 128) {
        mmt_safetensors_close(st);
        return;
    }
    float *pixels = malloc(sizeof(float) * (size_t)px->numel), ref[2][4 * 128], got[2][4 * 128];
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)ids->numel);
    CHECK_OK(mmt_st_tensor_to_f32(px, pixels));
    for (int64_t i = 0; i < ids->numel; i++) tok[i] = (int32_t)((const int64_t *)ids->data)[i];
    CHECK_OK(mmt_st_tensor_to_f32(ie, ref[0]));
    CHECK_OK(mmt_st_tensor_to_f32(te, ref[1]));
    CHECK_OK(view ? mmt_clip_train_encode_pixels(view, pixels, n, got[0]) : mmt_clip_encode_pixels(m, pixels, n, got[0]));
    CHECK_OK(view ? mmt_clip_train_encode_ids(view, tok, n, L, got[1]) : mmt_clip_encode_ids(m, tok, n, L, got[1]));
    for (int k = 0; k < 2; k++) {
        for (int64_t i = 0; i < n; i++) {
            double ss = 0;
            for (int64_t j = 0; j < P; j++) ss += (double)ref[k][i * P + j] * ref[k][i * P + j];
            for (int64_t j = 0; j < P; j++) ref[k][i * P + j] = (float)(ref[k][i * P + j] / sqrt(ss));
        }
        double worst = 0;
        for (int64_t i = 0; i < n * P; i++) worst = fmax(worst, fabs(ref[k][i] - got[k][i]));
        double cos = min_cosine(ref[k], got[k], n, P);
        if (exact) CHECK_MSG(worst < 1e-4, "%s %s: worst difference %.3g", what, k ? "text" : "image", worst);
        else CHECK_MSG(cos >= 0.999, "%s %s: cosine %.5f", what, k ? "text" : "image", cos);
    }
    free(pixels);
    free(tok);
    mmt_safetensors_close(st);
}

/* A snapshot transformers + bitsandbytes saved (tests/fixtures/quant, made by
 * tools/fixtures/make_quant_fixtures.py) against the features transformers computed from it.
 * NF4 is computed in fp32 on the 4-bit weights as transformers does with compute dtype
 * float32: the L2-normalised features agree within 1e-4. The 8-bit file's reference is
 * transformers on its dequantized weights; mmtune runs the int8 weights with int8
 * activations, so the bound is the activation rounding's: cosine at least 0.999. */
static void check_snapshot(const char *name, int exact) {
    char dir[512], fix[512];
    snprintf(dir, sizeof dir, "%s/quant/clip-tiny-%s", MMT_FIXTURE_DIR, name);
    snprintf(fix, sizeof fix, "%s/quant/clip_%s_embeddings.safetensors", MMT_FIXTURE_DIR, name);
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(dir, &m));
    if (!m) return;
    int64_t quantized = 0;
    for (int64_t i = 0; i < m->qlinears.n; i++) quantized += m->qlinears.slots[i].from_file;
    CHECK_MSG(quantized == 49, "%s: %lld linears held quantized (transformers quantizes all but text_projection)",
              name, (long long)quantized);
    compare_with_fixture(name, fix, m, NULL, exact);
    mmt_clip_free(m);
}

/* QLoRA: an adapter mmtune trained on the NF4 base (tools/fixtures/make_qlora_fixtures.py)
 * loaded in PEFT over transformers' model with its linears round-tripped through bitsandbytes'
 * NF4 gives these features; mmtune's NF4 base + the adapter gives them within 1e-4
 * (normalised). */
static void test_qlora_adapter_matches_peft(void) {
    mmt_clip *m = NULL;
    mmt_clip_train *view = NULL;
    mmt_adapter *ad = NULL;
    mmt_prompt *prompt = NULL;
    CHECK_OK(mmt_clip_load(TINY, &m));
    if (!m) return;
    mmt_quant_options o;
    mmt_quant_options_default(&o, MMT_QUANT_NF4);
    CHECK_OK(mmt_clip_quantize(m, &o));
    mmt_clip_train_options to;
    mmt_clip_train_options_default(&to);
    CHECK_OK(mmt_clip_train_create(m, &to, &view));
    if (view)
        CHECK_OK(mmt_adapter_folders_load(mmt_clip_train_iface(view), MMT_FIXTURE_DIR "/quant/qlora/adapter", 0, &ad,
                                          &prompt));
    if (view && ad) compare_with_fixture("QLoRA vs PEFT", MMT_FIXTURE_DIR "/quant/qlora/peft_embeddings.safetensors", m, view, 1);
    mmt_prompt_free(prompt);
    mmt_adapter_free(ad);
    mmt_clip_train_free(view);
    mmt_clip_free(m);
}

static void test_bitsandbytes_snapshots(void) {
    check_snapshot("nf4", 1);
    check_snapshot("int8", 0);
}

static void test_refusals(void) {
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(TINY, &m));
    if (!m) return;
    mmt_quant_options o;
    mmt_quant_options_default(&o, (mmt_quant_type)7);
    CHECK(mmt_clip_quantize(m, &o) == MMT_STATUS_INVALID_ARGUMENT);
    mmt_quant_type t;
    CHECK(mmt_quant_type_parse("int4", &t) == MMT_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(mmt_last_error(), "int4") != NULL);
    mmt_clip_free(m);
}

static void test_cli(void) {
    CHECK(run("classify --model %s --image %s/clip/images/chelsea.jpg --labels cat,rocket --quantize-base nf4",
              TINY, MMT_FIXTURE_DIR) == 0);
    CHECK(run("caption --model %s --image %s/clip/images/chelsea.jpg --int8 --max-new-tokens 5", GIT_TINY,
              MMT_FIXTURE_DIR) == 0);
    CHECK(out_text && strstr(out_text, "chelsea.jpg\t"));
    CHECK(run("embed --model %s --text x --quantize-base int3", TINY) == 2);
    CHECK(err_text && strstr(err_text, "--quantize-base takes int8 or nf4"));
    /* full fine-tuning cannot train a quantized weight */
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 4; i++) fprintf(f, "{\"image_path\": \"%s/clip/images/chelsea.jpg\", \"text\": \"a cat\"}\n", MMT_FIXTURE_DIR);
    fclose(f);
    CHECK(run("train --model %s --data %s --method full --steps 1 --batch-size 2 --out %s/full --quantize int8", TINY,
              data, tmp) == 1);
    CHECK_MSG(err_text && strstr(err_text, "quantized and cannot be trained"), "stderr: %s", err_text);
    /* QLoRA from the command line; the run records --quantize, so resuming without it is refused */
    CHECK(run("train --model %s --data %s --method lora --steps 2 --save-every 1 --batch-size 2 --out %s/qlora "
              "--quantize nf4 --quiet", TINY, data, tmp) == 0);
    CHECK(run("train --model %s --data %s --method lora --steps 2 --save-every 1 --batch-size 2 --out %s/qlora "
              "--resume %s/qlora --quiet", TINY, data, tmp, tmp) == 1);
    CHECK(err_text && strstr(err_text, "settings.quantize"));
    CHECK(run("train --model %s --data %s --quantize fp4 --out %s/x", TINY, data, tmp) == 2);
}

/* Reads a whole file (NULL on failure); *len gets its size. */
static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)*len + 1);
    if (d && fread(d, 1, (size_t)*len, f) != (size_t)*len) {
        free(d);
        d = NULL;
    }
    fclose(f);
    return d;
}

/* `mmtune quantize --to nf4` on the default model writes the very bytes transformers +
 * bitsandbytes saved from it (the fixture snapshot); the result loads quantized, and a
 * quantized snapshot is not quantized twice. */
static void test_quantize_command(void) {
    CHECK(run("quantize --model %s --to nf4 --out %s/nf4", TINY, tmp) == 0);
    CHECK(out_text && strstr(out_text, "\"linears\": 49"));
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/nf4/model.safetensors", tmp);
    snprintf(b, sizeof b, "%s/quant/clip-tiny-nf4/model.safetensors", MMT_FIXTURE_DIR);
    long la = 0, lb = 0;
    char *da = slurp(a, &la), *db = slurp(b, &lb);
    CHECK_MSG(da && db && la == lb && memcmp(da, db, (size_t)la) == 0, "%s differs from transformers' file", a);
    free(da);
    free(db);
    snprintf(a, sizeof a, "%s/nf4/config.json", tmp);
    da = slurp(a, &la);
    CHECK(da && strstr(da, "\"quantization_config\"") && strstr(da, "\"bnb_4bit_quant_type\": \"nf4\""));
    free(da);
    mmt_clip *m = NULL;
    snprintf(a, sizeof a, "%s/nf4", tmp);
    CHECK_OK(mmt_clip_load(a, &m));
    int64_t held = 0;
    for (int64_t i = 0; m && i < m->qlinears.n; i++) held += m->qlinears.slots[i].from_file;
    CHECK(held == 49);
    mmt_clip_free(m);
    CHECK(run("quantize --model %s/nf4 --to int8 --out %s/twice", tmp, tmp) == 1);
    CHECK(err_text && strstr(err_text, "already quantized"));
    CHECK(run("quantize --model %s --to int4 --out %s/x", TINY, tmp) == 2);
    CHECK(run("quantize --model %s --to int8 --out %s/int8", GIT_TINY, tmp) == 0);
    CHECK(run("caption --model %s/int8 --image %s/clip/images/chelsea.jpg --max-new-tokens 5", tmp, MMT_FIXTURE_DIR) == 0);
}

int main(void) {
    mmt_log_set_level(MMT_LOG_ERROR);
    snprintf(tmp, sizeof tmp, "/tmp/mmt_quant_models_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    snprintf(data, sizeof data, "%s/pairs.jsonl", tmp);
    RUN(test_clip_int8_and_nf4_close_to_fp32);
    RUN(test_int8_same_on_every_table);
    RUN(test_int8_patch_embedding);
    RUN(test_bitsandbytes_snapshots);
    RUN(test_qlora_adapter_matches_peft);
    RUN(test_quantize_command);
    RUN(test_refusals);
    RUN(test_cli);
    cli_run_cleanup();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
