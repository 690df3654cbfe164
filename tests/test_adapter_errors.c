/*
 * test_adapter_errors.c — every failure to load an adapter folder names that folder.
 *
 * Issue 9: "Every error about an adapter names its folder." Three real adapters are made on
 * the tiny-a fixture CLIP through the library (LoRA on q_proj/v_proj, IA3 on k_proj/fc1 with
 * fc1 feed-forward, CoOp text prompts), saved as PEFT writes them, and checked to load. Then
 * each is copied into a folder of its own and broken in one way (missing or bad
 * adapter_config.json, unknown peft_type, targets that match nothing, a tensor for a module
 * that does not exist, a shape that disagrees with r, an integer dtype, missing or truncated
 * adapter_model.safetensors, prompts of the wrong count or width, more prompt tokens than the
 * context holds, a bottleneck layer the model lacks, a rank_pattern rank of 2^63, a prefix
 * projection 2^60 wide in a tensor of no bytes). mmt_adapter_folders_load, the entry point
 * the CLI and the encoders use, must fail, hand back nothing, leave the view as it was, and
 * leave a one-line message that contains the folder's path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "adapter_fixture.h"
#include "clip_fixture.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/safetensors.h"
#include "peft/adapter.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"
#include "train/clip_task.h"

static clip_batch fx;
static mmt_clip_train *view;
static char root[256]; /* a fresh folder under /tmp; every case is a folder inside it */

/* ---- making folders ----------------------------------------------------------------- */

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[600];
    path_in(p, sizeof p, dir, name);
    CHECK_OK(mmt_file_write_atomic(p, text, strlen(text)));
}

/* root/<name>, created empty; its path in out. */
static void new_case(const char *name, char *out, size_t cap) {
    path_in(out, cap, root, name);
    CHECK_OK(mmt_mkdirs(out));
}

/* Copies file `name` from folder src to folder dst; only the first `keep` bytes when keep >= 0. */
static void copy_file(const char *src, const char *dst, const char *name, long keep) {
    char a[600], b[600];
    path_in(a, sizeof a, src, name);
    path_in(b, sizeof b, dst, name);
    size_t len = 0;
    char *data = check_read_file(a, &len);
    CHECK(data != NULL);
    if (!data) return;
    if (keep >= 0 && (size_t)keep < len) len = (size_t)keep;
    CHECK_OK(mmt_file_write_atomic(b, data, len));
    free(data);
}

/* A copy of src's adapter_model.safetensors in dst with every tensor rewritten by edit
 * (which may change a tensor's dtype, shape and data) and, when extra is not NULL, one
 * more tensor. */
typedef void (*tensor_edit)(mmt_st_write_tensor *t, int64_t index, int64_t *shape, void **owned);

static void rewrite_tensors(const char *src, const char *dst, tensor_edit edit, const mmt_st_write_tensor *extra) {
    char a[600], b[600];
    path_in(a, sizeof a, src, "adapter_model.safetensors");
    path_in(b, sizeof b, dst, "adapter_model.safetensors");
    mmt_safetensors *st = NULL;
    CHECK_OK(mmt_safetensors_open(a, &st));
    if (!st) return;
    int64_t n = st->n_tensors;
    mmt_st_write_tensor *w = calloc((size_t)n + 1, sizeof *w);
    int64_t(*shapes)[MMT_MAX_DIMS] = calloc((size_t)n + 1, sizeof *shapes);
    void **owned = calloc((size_t)n + 1, sizeof *owned);
    for (int64_t i = 0; i < n; i++) {
        const mmt_st_tensor *t = &st->tensors[i];
        memcpy(shapes[i], t->shape, (size_t)t->ndim * sizeof(int64_t));
        w[i] = (mmt_st_write_tensor){t->name, t->dtype, t->ndim, shapes[i], t->data};
        if (edit) edit(&w[i], i, shapes[i], &owned[i]);
    }
    if (extra) w[n++] = *extra;
    CHECK_OK(mmt_safetensors_write(b, w, n, NULL, 0));
    for (int64_t i = 0; i < st->n_tensors; i++) free(owned[i]);
    free(owned);
    free(shapes);
    free(w);
    mmt_safetensors_close(st);
}

/* ---- the reference adapters ------------------------------------------------------------- */

static char lora_dir[300], ia3_dir[300], prompt_dir[300], saved_dir[300];

/* On a view of its own: modules_to_save makes the view's own tensors trainable for good. */
static void save_from_config(const mmt_peft_config *cfg, const char *dir) { adapter_fixture_save(fx.model, cfg, dir, 0.01f); }

static void make_references(void) {
    mmt_peft_config cfg;
    const char *qv[] = {"q_proj", "v_proj"}, *kf[] = {"k_proj", "fc1"}, *ff[] = {"fc1"};
    path_in(lora_dir, sizeof lora_dir, root, "lora");
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    cfg.r = 4;
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, qv, 2));
    save_from_config(&cfg, lora_dir);
    mmt_peft_config_free(&cfg);

    path_in(saved_dir, sizeof saved_dir, root, "lora_saved");
    const char *saved[] = {"visual_projection"};
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    cfg.r = 2;
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, qv, 2));
    CHECK_OK(mmt_peft_names_set_list(&cfg.modules_to_save, saved, 1));
    save_from_config(&cfg, saved_dir);
    mmt_peft_config_free(&cfg);

    path_in(ia3_dir, sizeof ia3_dir, root, "ia3");
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_IA3));
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, kf, 2));
    CHECK_OK(mmt_peft_names_set_list(&cfg.feedforward_modules, ff, 1));
    save_from_config(&cfg, ia3_dir);
    mmt_peft_config_free(&cfg);

    path_in(prompt_dir, sizeof prompt_dir, root, "prompt");
    CHECK_OK(mmt_mkdirs(prompt_dir));
    mmt_prompt_settings ps = {0};
    ps.text_tokens = 4;
    mmt_prompt *p = NULL;
    char w[600];
    path_in(w, sizeof w, prompt_dir, "adapter_model.safetensors");
    CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(view), &ps, &p));
    CHECK_OK(mmt_prompt_peft_config(&ps, &mmt_clip_train_iface(view)->dims, NULL, &cfg));
    CHECK_OK(mmt_peft_config_save(&cfg, prompt_dir));
    if (p) CHECK_OK(mmt_prompt_save_tensors(p, w));
    mmt_prompt_free(p);
    mmt_peft_config_free(&cfg);
}

/* ---- the check -------------------------------------------------------------------------- */

/* The embeddings of the fixture batch through a view (text then images): equal before and
 * after a failed load means the load left nothing behind. */
static float *embed(mmt_clip_train *ct) {
    int64_t P = mmt_clip_embed_dim(fx.model);
    float *e = malloc((size_t)(2 * CLIP_BATCH * P) * sizeof(float));
    CHECK_OK(mmt_clip_train_encode_ids(ct, fx.ids, CLIP_BATCH, fx.L, e));
    CHECK_OK(mmt_clip_train_encode_pixels(ct, fx.pixels, CLIP_BATCH, e + CLIP_BATCH * P));
    return e;
}

/* Loads dir onto a fresh view: it must fail, hand back nothing, leave the view computing
 * what it did, and leave one line that names dir once. */
static void expect_failure(const char *dir, const char *why) {
    mmt_adapter *ad = NULL;
    mmt_prompt *p = NULL;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(fx.model, &o, &ct));
    if (!ct) return;
    int64_t P = mmt_clip_embed_dim(fx.model);
    float *before = embed(ct);
    mmt_clear_error();
    mmt_status s = mmt_adapter_folders_load(mmt_clip_train_iface(ct), dir, 0, &ad, &p);
    const char *msg = mmt_last_error();
    CHECK_MSG(s != MMT_OK, "%s: %s loaded", why, dir);
    CHECK_MSG(!ad && !p, "%s: a failed load handed something back", why);
    CHECK_MSG(strstr(msg, dir) != NULL, "%s: the message does not name %s: \"%s\"", why, dir, msg);
    CHECK_MSG(!strchr(msg, '\n'), "%s: the message is more than one line: \"%s\"", why, msg);
    /* the folder once, not twice ("dir: dir/adapter_config.json: ...") */
    const char *first = strstr(msg, dir);
    CHECK_MSG(!first || !strstr(first + strlen(dir), dir), "%s: the folder is named twice: \"%s\"", why, msg);
    printf("     %-22s %s\n", why, msg);
    mmt_adapter_free(ad);
    mmt_prompt_free(p);
    float *after = embed(ct);
    CHECK_MSG(memcmp(before, after, (size_t)(2 * CLIP_BATCH * P) * sizeof(float)) == 0,
              "%s: the view computes differently after the failed load", why);
    free(before);
    free(after);
    mmt_clip_train_free(ct);
}

/* ---- tensor edits ---------------------------------------------------------------------------- */

static void first_to_int(mmt_st_write_tensor *t, int64_t i, int64_t *shape, void **owned) {
    (void)shape, (void)owned;
    if (i == 0) t->dtype = MMT_DTYPE_I32; /* same byte size as F32 */
}

/* every lora_B tensor becomes I32 (the saved module's tensors are read before them) */
static void lora_b_to_int(mmt_st_write_tensor *t, int64_t i, int64_t *shape, void **owned) {
    (void)i, (void)shape, (void)owned;
    if (strstr(t->name, "lora_B")) t->dtype = MMT_DTYPE_I32;
}

static void transpose_all(mmt_st_write_tensor *t, int64_t i, int64_t *shape, void **owned) {
    (void)i, (void)owned, (void)t;
    int64_t x = shape[0];
    shape[0] = shape[1];
    shape[1] = x;
}

/* prompt_embeddings (M, C) -> (M, C + 1), or (M + 2, C) with rows, data zero */
static int64_t add_rows, add_cols;
static void reshape_prompt(mmt_st_write_tensor *t, int64_t i, int64_t *shape, void **owned) {
    (void)i;
    shape[0] += add_rows;
    shape[1] += add_cols;
    *owned = calloc((size_t)(shape[0] * shape[1]), sizeof(float));
    t->data = *owned;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_references_load(void) {
    const char *dirs[] = {lora_dir, ia3_dir, prompt_dir, saved_dir};
    for (int i = 0; i < 4; i++) {
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        mmt_clip_train *ct = NULL;
        mmt_adapter *ad = NULL;
        mmt_prompt *p = NULL;
        CHECK_OK(mmt_clip_train_create(fx.model, &o, &ct));
        if (!ct) continue;
        float *before = embed(ct);
        CHECK_OK(mmt_adapter_folders_load(mmt_clip_train_iface(ct), dirs[i], 0, &ad, &p));
        CHECK_MSG((ad != NULL) + (p != NULL) == 1, "%s", dirs[i]);
        float *after = embed(ct);
        int64_t P = mmt_clip_embed_dim(fx.model);
        CHECK_MSG(memcmp(before, after, (size_t)(2 * CLIP_BATCH * P) * sizeof(float)) != 0,
                  "%s: loading it changes nothing", dirs[i]);
        free(before);
        free(after);
        mmt_adapter_free(ad);
        mmt_prompt_free(p);
        mmt_clip_train_free(ct);
    }
}

static void test_config_errors(void) {
    char d[400];
    new_case("no_config", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    expect_failure(d, "missing config");

    new_case("bad_json", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4,\n \"target_modules\": [\"q_proj\"");
    expect_failure(d, "bad JSON");

    new_case("not_an_object", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "[1, 2]");
    expect_failure(d, "JSON not an object");

    new_case("unknown_type", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LOHA\", \"r\": 4, \"target_modules\": [\"q_proj\"]}");
    expect_failure(d, "unknown peft_type");

    new_case("bad_value", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": \"four\", \"target_modules\": [\"q_proj\"]}");
    expect_failure(d, "r not an integer");
}

static void test_selection_errors(void) {
    char d[400];
    new_case("targets_nothing", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"zz_proj\"]}");
    expect_failure(d, "targets match nothing");

    new_case("targets_unset", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4}");
    expect_failure(d, "no target_modules");

    new_case("bad_regex", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \"(q_proj\"}");
    expect_failure(d, "bad target regex");

    new_case("ia3_no_feedforward", d, sizeof d);
    copy_file(ia3_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"IA3\", \"target_modules\": [\"k_proj\"]}");
    expect_failure(d, "IA3 feedforward unset");

    /* INT64_MAX as a rank becomes 2^63 as a double, which no int64_t holds */
    new_case("rank_pattern_huge", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"], "
                                         "\"rank_pattern\": {\"q_proj\": 9223372036854775807}}");
    expect_failure(d, "rank_pattern 2^63");

    /* errors raised where the adapter meets the model (train/clip_task.c) name the folder too */
    new_case("lora_bias_all", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4, \"bias\": \"all\", "
                                         "\"target_modules\": [\"q_proj\", \"v_proj\"]}");
    expect_failure(d, "LoRA bias all");

    new_case("embedding_target", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"token_embedding\"]}");
    expect_failure(d, "embedding target");

    new_case("modules_to_save_nothing", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\", "
                                         "\"v_proj\"], \"modules_to_save\": [\"no_such_module\"]}");
    expect_failure(d, "modules_to_save matching nothing");

    new_case("bottleneck_layer", d, sizeof d);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"MMTUNE_BOTTLENECK\", \"layers_to_transform\": [7]}");
    expect_failure(d, "bottleneck layer");
}

static void test_tensor_errors(void) {
    char d[400];
    new_case("no_weights", d, sizeof d);
    copy_file(lora_dir, d, "adapter_config.json", -1);
    expect_failure(d, "missing weights");

    char full[600];
    path_in(full, sizeof full, lora_dir, "adapter_model.safetensors");
    size_t len = 0;
    free(check_read_file(full, &len));
    new_case("truncated", d, sizeof d);
    copy_file(lora_dir, d, "adapter_config.json", -1);
    copy_file(lora_dir, d, "adapter_model.safetensors", (long)len / 2);
    expect_failure(d, "truncated weights");

    new_case("truncated_header", d, sizeof d);
    copy_file(lora_dir, d, "adapter_config.json", -1);
    copy_file(lora_dir, d, "adapter_model.safetensors", 40);
    expect_failure(d, "truncated header");

    new_case("stray_tensor", d, sizeof d);
    copy_file(lora_dir, d, "adapter_config.json", -1);
    static const float zeros[4 * 32];
    const int64_t shape[2] = {4, 32};
    mmt_st_write_tensor stray = {"base_model.model.text_model.encoder.layers.0.self_attn.zz_proj.lora_A.weight",
                                 MMT_DTYPE_F32, 2, shape, zeros};
    rewrite_tensors(lora_dir, d, NULL, &stray);
    expect_failure(d, "tensor for no module");

    new_case("rank_mismatch", d, sizeof d);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": [\"q_proj\", \"v_proj\"]}");
    expect_failure(d, "rank mismatch");

    new_case("int_dtype", d, sizeof d);
    copy_file(lora_dir, d, "adapter_config.json", -1);
    rewrite_tensors(lora_dir, d, first_to_int, NULL);
    expect_failure(d, "integer dtype");

    /* modules_to_save tensors are the view's own weights: a later bad tensor must not leave
     * them changed (expect_failure compares the view's embeddings) */
    new_case("saved_then_bad", d, sizeof d);
    copy_file(saved_dir, d, "adapter_config.json", -1);
    rewrite_tensors(saved_dir, d, lora_b_to_int, NULL);
    expect_failure(d, "saved module, bad LoRA");

    new_case("ia3_transposed", d, sizeof d);
    copy_file(ia3_dir, d, "adapter_config.json", -1);
    rewrite_tensors(ia3_dir, d, transpose_all, NULL);
    expect_failure(d, "IA3 shape");
}

static void test_prompt_errors(void) {
    char d[400];
    new_case("prompt_width", d, sizeof d);
    copy_file(prompt_dir, d, "adapter_config.json", -1);
    add_rows = 0, add_cols = 1;
    rewrite_tensors(prompt_dir, d, reshape_prompt, NULL);
    expect_failure(d, "prompt width");

    new_case("prompt_count", d, sizeof d);
    copy_file(prompt_dir, d, "adapter_config.json", -1);
    add_rows = 2, add_cols = 0;
    rewrite_tensors(prompt_dir, d, reshape_prompt, NULL);
    expect_failure(d, "prompt count");

    /* 80 prompt tokens, as the config says, but the context holds 77 - 2 */
    new_case("prompt_too_long", d, sizeof d);
    char *cfg = NULL;
    size_t n = 0;
    char p[600];
    path_in(p, sizeof p, prompt_dir, "adapter_config.json");
    CHECK_OK(mmt_file_read_all(p, 1 << 20, &cfg, &n));
    char *at = cfg ? strstr(cfg, "\"num_virtual_tokens\": 4") : NULL;
    CHECK(at != NULL);
    if (at) {
        char text[8192];
        snprintf(text, sizeof text, "%.*s\"num_virtual_tokens\": 80%s", (int)(at - cfg), cfg,
                 at + strlen("\"num_virtual_tokens\": 4"));
        write_text(d, "adapter_config.json", text);
    }
    mmt_free(cfg);
    add_rows = 76, add_cols = 0;
    rewrite_tensors(prompt_dir, d, reshape_prompt, NULL);
    expect_failure(d, "prompt too long");

    new_case("prompt_no_tensor", d, sizeof d);
    copy_file(prompt_dir, d, "adapter_config.json", -1);
    rewrite_tensors(lora_dir, d, NULL, NULL); /* LoRA tensors under a prompt config */
    expect_failure(d, "prompt tensors absent");

    /* prefix tuning whose projection MLP claims to be 2^60 wide in a tensor of no bytes */
    new_case("prefix_encoder_width", d, sizeof d);
    write_text(d, "adapter_config.json", "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"FEATURE_EXTRACTION\", "
                                         "\"num_virtual_tokens\": 2, \"prefix_projection\": true}");
    {
        static const float kv[2 * 2 * 2 * 32], emb[2 * 32];
        const int64_t kv_shape[2] = {2, 2 * 2 * 32}, emb_shape[2] = {2, 32}, w1_shape[2] = {(int64_t)1 << 60, 0};
        mmt_st_write_tensor t[3] = {{"prompt_embeddings", MMT_DTYPE_F32, 2, kv_shape, kv},
                                    {"mmtune.prefix_encoder.text.embedding.weight", MMT_DTYPE_F32, 2, emb_shape, emb},
                                    {"mmtune.prefix_encoder.text.transform.0.weight", MMT_DTYPE_F32, 2, w1_shape, emb}};
        char w[600];
        path_in(w, sizeof w, d, "adapter_model.safetensors");
        CHECK_OK(mmt_safetensors_write(w, t, 3, NULL, 0));
    }
    expect_failure(d, "prefix encoder width");

    /* a prompt/ subfolder beside a working LoRA: the message names the subfolder */
    new_case("lora_with_bad_prompt", d, sizeof d);
    copy_file(lora_dir, d, "adapter_config.json", -1);
    copy_file(lora_dir, d, "adapter_model.safetensors", -1);
    char sub[500];
    path_in(sub, sizeof sub, d, "prompt");
    CHECK_OK(mmt_mkdirs(sub));
    copy_file(prompt_dir, sub, "adapter_config.json", -1);
    add_rows = 0, add_cols = 1;
    rewrite_tensors(prompt_dir, sub, reshape_prompt, NULL);
    expect_failure(sub, "bad prompt subfolder");
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/mmt_adapter_errors_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    if (!batch_load("tiny-a", &fx)) return 1;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    if (mmt_clip_train_create(fx.model, &o, &view) != MMT_OK) {
        fprintf(stderr, "view: %s\n", mmt_last_error());
        return 1;
    }
    make_references();
    RUN(test_references_load);
    RUN(test_config_errors);
    RUN(test_selection_errors);
    RUN(test_tensor_errors);
    RUN(test_prompt_errors);
    mmt_clip_train_free(view);
    batch_free(&fx);
    if (check_failed_ == 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    }
    return check_summary();
}
