/*
 * test_clip.c — CLIP inference against transformers itself.
 *
 * Fixtures: tests/fixtures/clip/, made by tools/fixtures/make_clip_fixtures.py with
 * transformers' CLIPModel / CLIPVisionModelWithProjection / CLIPTextModelWithProjection,
 * CLIPImageProcessorPil and CLIPTokenizer (versions in versions.json). Tolerances: image and
 * text embeddings and logits within 1e-4 absolute; pixel values within 1e-6; token ids exact.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "models/clip.h"

#define EMBED_TOL 1e-4
#define PIXEL_TOL 1e-6

static const char *IMAGES[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png",
                               "coffee_portrait.jpg", "rocket_rgba.png"};
static const char *TEXTS[] = {"a photo of a cat", "A red car parked on the street.",
                              "two dogs playing in the snow!!", "an astronaut, smiling",
                              "coffee cup 123"};
#define N_INPUTS 5

typedef struct expected {
    mmt_safetensors *st;
    const mmt_st_tensor *pixels, *ids, *image, *text, *logits;
} expected;

static int load_expected(const char *model, expected *e) {
    char path[512];
    snprintf(path, sizeof path, "%s/clip/%s/expected.safetensors", MMT_FIXTURE_DIR, model);
    memset(e, 0, sizeof *e);
    if (mmt_safetensors_open(path, &e->st) != MMT_OK) {
        fprintf(stderr, "cannot open %s: %s\n", path, mmt_last_error());
        return 0;
    }
    e->pixels = mmt_safetensors_find(e->st, "pixel_values");
    e->ids = mmt_safetensors_find(e->st, "input_ids");
    e->image = mmt_safetensors_find(e->st, "image_embeds");
    e->text = mmt_safetensors_find(e->st, "text_embeds");
    e->logits = mmt_safetensors_find(e->st, "logits_per_image");
    return 1;
}

static double max_abs_diff(const float *a, const mmt_st_tensor *t) {
    float *b = malloc((size_t)t->numel * sizeof(float));
    mmt_st_tensor_to_f32(t, b);
    double m = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    free(b);
    return m;
}

static void model_dir(const char *model, char *out, size_t cap) {
    snprintf(out, cap, "%s/clip/%s", MMT_FIXTURE_DIR, model);
}

/* Core numerics: from transformers' own pixel_values and input_ids. */
static void check_model_core(const char *name) {
    char dir[512];
    model_dir(name, dir, sizeof dir);
    mmt_clip *m = NULL;
    expected e;
    CHECK_OK(mmt_clip_load(dir, &m));
    if (!m || !load_expected(name, &e)) {
        check_current_failed_ = 1;
        mmt_clip_free(m);
        return;
    }
    int64_t P = mmt_clip_embed_dim(m);
    float img[N_INPUTS * 64], txt[N_INPUTS * 64];
    if (e.image) {
        float *pix = malloc((size_t)e.pixels->numel * 4);
        mmt_st_tensor_to_f32(e.pixels, pix);
        CHECK_OK(mmt_clip_encode_pixels(m, pix, N_INPUTS, img));
        double d = max_abs_diff(img, e.image);
        CHECK_MSG(d <= EMBED_TOL, "%s: image embeddings differ by %g", name, d);
        free(pix);
    }
    if (e.text) {
        int32_t ids[N_INPUTS * 77];
        const int64_t *src = e.ids->data;
        for (int64_t i = 0; i < e.ids->numel; i++) ids[i] = (int32_t)src[i];
        CHECK_OK(mmt_clip_encode_ids(m, ids, N_INPUTS, e.ids->shape[1], txt));
        double d = max_abs_diff(txt, e.text);
        CHECK_MSG(d <= EMBED_TOL, "%s: text embeddings differ by %g", name, d);
    }
    if (e.logits) {
        float logits[N_INPUTS * N_INPUTS];
        float scale = mmt_clip_logit_scale(m);
        for (int i = 0; i < N_INPUTS; i++)
            for (int j = 0; j < N_INPUTS; j++) {
                double dot = 0;
                for (int64_t k = 0; k < P; k++) dot += (double)img[i * P + k] * txt[j * P + k];
                logits[i * N_INPUTS + j] = (float)(dot * scale);
            }
        double d = max_abs_diff(logits, e.logits);
        CHECK_MSG(d <= EMBED_TOL, "%s: logits differ by %g", name, d);
    }
    mmt_safetensors_close(e.st);
    mmt_clip_free(m);
}

static void test_tiny_a_quick_gelu(void) { check_model_core("tiny-a"); }
static void test_tiny_b_gelu_sharded_legacy_eos(void) { check_model_core("tiny-b"); }
static void test_tiny_a_float16(void) { check_model_core("tiny-a-f16"); }
static void test_vision_tower_alone(void) { check_model_core("tiny-a-vision"); }
static void test_text_tower_alone(void) { check_model_core("tiny-a-text"); }

/* End to end: files and strings through the C decoder, processor and tokenizer. */
static void check_model_end_to_end(const char *name) {
    char dir[512];
    model_dir(name, dir, sizeof dir);
    mmt_clip *m = NULL;
    expected e;
    CHECK_OK(mmt_clip_load(dir, &m));
    if (!m || !load_expected(name, &e)) {
        check_current_failed_ = 1;
        mmt_clip_free(m);
        return;
    }
    const mmt_clip_config *cfg = mmt_clip_config_of(m);
    float out[N_INPUTS * 64];
    if (cfg->has_vision) {
        char paths[N_INPUTS][512];
        const char *p[N_INPUTS];
        for (int i = 0; i < N_INPUTS; i++) {
            snprintf(paths[i], sizeof paths[i], "%s/clip/images/%s", MMT_FIXTURE_DIR, IMAGES[i]);
            p[i] = paths[i];
        }
        CHECK_OK(mmt_clip_embed_image_files(m, p, N_INPUTS, out));
        double d = max_abs_diff(out, e.image);
        CHECK_MSG(d <= EMBED_TOL, "%s: image embeddings from files differ by %g", name, d);
    }
    if (cfg->has_text) {
        int32_t ids[N_INPUTS * 77];
        CHECK_OK(mmt_clip_tokenize(m, TEXTS, N_INPUTS, 0, ids));
        const int64_t *want = e.ids->data;
        int same = 1;
        for (int64_t i = 0; i < e.ids->numel; i++) same &= ids[i] == want[i];
        CHECK_MSG(same, "%s: token ids differ from CLIPTokenizer", name);
        CHECK_OK(mmt_clip_embed_texts(m, TEXTS, N_INPUTS, out));
        double d = max_abs_diff(out, e.text);
        CHECK_MSG(d <= EMBED_TOL, "%s: text embeddings from strings differ by %g", name, d);
    }
    mmt_safetensors_close(e.st);
    mmt_clip_free(m);
}

static void test_end_to_end_a(void) { check_model_end_to_end("tiny-a"); }
static void test_end_to_end_b(void) { check_model_end_to_end("tiny-b"); }

/* ---- bad input --------------------------------------------------------------------- */

static char scratch[256];

static void write_text(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void copy_file(const char *from, const char *name) {
    char path[512];
    size_t len;
    char *data = check_read_file(from, &len);
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    FILE *f = fopen(path, "wb");
    if (data) fwrite(data, 1, len, f);
    fclose(f);
    free(data);
}

/* Writes tiny-a's tensors into the scratch folder, without `drop` and with `reshape`
 * given a wrong first dimension. */
static void write_variant(const char *drop, const char *reshape) {
    char src[512], dst[512];
    model_dir("tiny-a", src, sizeof src);
    strcat(src, "/model.safetensors");
    mmt_safetensors *st;
    if (mmt_safetensors_open(src, &st) != MMT_OK) return;
    mmt_st_write_tensor *w = calloc((size_t)st->n_tensors, sizeof *w);
    int64_t (*shapes)[MMT_MAX_DIMS] = calloc((size_t)st->n_tensors, sizeof *shapes);
    int64_t n = 0;
    for (int64_t i = 0; i < st->n_tensors; i++) {
        const mmt_st_tensor *t = &st->tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        memcpy(shapes[n], t->shape, sizeof shapes[n]);
        w[n] = (mmt_st_write_tensor){t->name, t->dtype, t->ndim, shapes[n], t->data};
        if (reshape && !strcmp(t->name, reshape)) {
            shapes[n][0] = 1;
            shapes[n][1] = t->numel; /* same bytes, inconsistent shape */
        }
        n++;
    }
    snprintf(dst, sizeof dst, "%s/model.safetensors", scratch);
    mmt_safetensors_write(dst, w, n, NULL, 0);
    free(w);
    free(shapes);
    mmt_safetensors_close(st);
}

static void test_bad_checkpoints(void) {
    char src[512];
    mmt_clip *m = NULL;
    snprintf(scratch, sizeof scratch, "/tmp/mmt_test_clip_%d", (int)getpid());
    mkdir(scratch, 0755);
    model_dir("tiny-a", src, sizeof src);
    strcat(src, "/config.json");
    copy_file(src, "config.json");

    write_variant("text_model.encoder.layers.1.mlp.fc2.bias", NULL);
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_NOT_FOUND,
                "missing tensor \"text_model.encoder.layers.1.mlp.fc2.bias\"");
    write_variant(NULL, "visual_projection.weight");
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_BAD_FORMAT,
                "tensor \"visual_projection.weight\" has shape [1, 1152], the config implies [24, 48]");

    write_variant(NULL, NULL);
    write_text("config.json", "{\"model_type\": \"clip\", \"text_config\": {\"hidden_size\": \"32\"}}");
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_BAD_FORMAT,
                "config.json: text_config.hidden_size: expected an integer, got a string");
    write_text("config.json", "{\"vision_config\": {\"hidden_size\": 48, \"num_attention_heads\": 5}}");
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_BAD_FORMAT, "not divisible by num_attention_heads");
    write_text("config.json", "{\"text_config\": {\"hidden_act\": \"swish\"}}");
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_UNSUPPORTED, "text_config.hidden_act: \"swish\"");
    write_text("config.json", "{\"model_type\": \"bert\"}");
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_UNSUPPORTED, "model_type \"bert\" is not a CLIP model");
    write_text("config.json", "{\"projection_dim\": -3}");
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_BAD_FORMAT, "projection_dim: -3 is out of range");
    write_text("config.json", "{not json");
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_BAD_FORMAT, "config.json: invalid JSON at byte 1");
    CHECK(m == NULL);

    char path[512];
    snprintf(path, sizeof path, "%s/config.json", scratch);
    unlink(path);
    CHECK_FAILS(mmt_clip_load(scratch, &m), MMT_STATUS_NOT_FOUND, "config.json: cannot open");
    snprintf(path, sizeof path, "%s/model.safetensors", scratch);
    unlink(path);
    rmdir(scratch);
}

static void test_text_errors(void) {
    char dir[512];
    model_dir("tiny-a", dir, sizeof dir);
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(dir, &m));
    if (!m) return;
    float out[2 * 64];
    const char *empty[] = {"fine", ""};
    CHECK_FAILS(mmt_clip_embed_texts(m, empty, 2, out), MMT_STATUS_INVALID_ARGUMENT, "text 2 is empty");
    char longtext[2000] = "";
    for (int i = 0; i < 100; i++) strcat(longtext, "cat ");
    const char *longs[] = {longtext};
    CHECK_FAILS(mmt_clip_embed_texts(m, longs, 1, out), MMT_STATUS_INVALID_ARGUMENT,
                "tokens long, more than the model's 77");
    CHECK_OK(mmt_clip_embed_texts_ex(m, longs, 1, 1, out));
    const char *bad_utf8[] = {"ok \xff"};
    CHECK(mmt_clip_embed_texts(m, bad_utf8, 1, out) == MMT_STATUS_BAD_FORMAT);
    int32_t ids[77] = {0};
    ids[0] = 999999;
    CHECK_FAILS(mmt_clip_encode_ids(m, ids, 1, 77, out), MMT_STATUS_INVALID_ARGUMENT, "outside the vocabulary");
    const char *missing[] = {"/nonexistent/cat.jpg"};
    CHECK_FAILS(mmt_clip_embed_image_files(m, missing, 1, out), MMT_STATUS_NOT_FOUND, "/nonexistent/cat.jpg");
    mmt_clip_free(m);
}

static void test_no_leaks_on_failed_load(void) {
    char dir[512];
    model_dir("tiny-b", dir, sizeof dir);
    size_t before = mmt_alloc_current_bytes();
    /* Fail each of the first allocations in turn: every failure must be clean. */
    for (long n = 1; n <= 400; n += 7) {
        mmt_clip *m = NULL;
        mmt_alloc_fail_after(n);
        mmt_status s = mmt_clip_load(dir, &m);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            mmt_clip_free(m);
        } else {
            CHECK(m == NULL);
            CHECK(s == MMT_STATUS_OUT_OF_MEMORY);
        }
        CHECK(mmt_alloc_current_bytes() == before);
    }
}

/* A snapshot that carries only tokenizer.json (what transformers 5 saves) embeds texts as the
 * same snapshot with vocab.json + merges.txt: the default model has both. */
static void test_tokenizer_json_only(void) {
    char tmp[] = "/tmp/mmt_tokjson_XXXXXX", cmd[600];
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(cmd, sizeof cmd, "cp %s/../../models/mmtune-clip-tiny/*.json %s/../../models/mmtune-clip-tiny/*.safetensors %s/ && rm %s/vocab.json",
             MMT_FIXTURE_DIR, MMT_FIXTURE_DIR, tmp, tmp);
    CHECK(system(cmd) == 0);
    mmt_clip *a = NULL, *b = NULL;
    snprintf(cmd, sizeof cmd, "%s/../../models/mmtune-clip-tiny", MMT_FIXTURE_DIR);
    CHECK_OK(mmt_clip_load(cmd, &a));
    CHECK_OK(mmt_clip_load(tmp, &b));
    if (a && b) {
        const char *texts[3] = {"a photo of a sandal", "Ankle boot, size 42!", "t-shirt / top"};
        int64_t P = mmt_clip_embed_dim(a);
        float *ea = malloc((size_t)(3 * P) * sizeof(float)), *eb = malloc((size_t)(3 * P) * sizeof(float));
        CHECK_OK(mmt_clip_embed_texts(a, texts, 3, ea));
        CHECK_OK(mmt_clip_embed_texts(b, texts, 3, eb));
        CHECK(memcmp(ea, eb, (size_t)(3 * P) * sizeof(float)) == 0);
        free(ea), free(eb);
    }
    mmt_clip_free(a);
    mmt_clip_free(b);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

int main(void) {
    RUN(test_tokenizer_json_only);
    RUN(test_tiny_a_quick_gelu);
    RUN(test_tiny_b_gelu_sharded_legacy_eos);
    RUN(test_tiny_a_float16);
    RUN(test_vision_tower_alone);
    RUN(test_text_tower_alone);
    RUN(test_end_to_end_a);
    RUN(test_end_to_end_b);
    RUN(test_bad_checkpoints);
    RUN(test_text_errors);
    RUN(test_no_leaks_on_failed_load);
    return check_summary();
}
