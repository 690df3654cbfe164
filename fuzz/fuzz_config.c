/* fuzz_config.c — libFuzzer target for the settings files of a model or adapter folder.
 *
 * Byte 0 picks the file (its value mod 6, so the seeds start with the digit); the rest is
 * the file's content:
 *   0  config.json               mmt_clip_config_parse (validation included), then the
 *                                check against the small fixture tokenizer. A config that
 *                                loads must survive mmt_clip_config_to_json and read back equal.
 *   1  adapter_config.json       mmt_peft_config_from_json; one that loads must write
 *                                (mmt_peft_config_to_json) and read back.
 *   2  vocab.json                with the small fixture's merges.txt
 *   3  merges.txt                with the small fixture's vocab.json
 *   4  vocab.json NUL merges.txt both from the input (split at the first zero byte)
 *   5  preprocessor_config.json  mmt_image_processor_parse (validation included)
 * A tokenizer that loads must encode and decode a caption in both modes. A failure must
 * leave a message, on one line for the parsers of issue 9 (all but the PEFT one). Never
 * crash, hang, leak or read out of bounds. The tokenizer loader takes paths, so its files
 * go through one temporary folder per process; the logger is silenced (a merges.txt
 * without "#version" warns on every run).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/json.h"
#include "data/preprocess.h"
#include "data/tokenizer.h"
#include "models/clip_config.h"
#include "peft/peft_config.h"

#define SMALL MMT_FIXTURE_DIR "/tokenizer/small"

static void quiet(mmt_log_level level, const char *message, void *user) {
    (void)level;
    (void)user;
    if (!message || strchr(message, '\n')) __builtin_trap();
}

static const char *temp_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(dir, sizeof dir, "%s/mmt_fuzz_config_XXXXXX", base);
        if (!mkdtemp(dir)) __builtin_trap();
        mmt_log_set_callback(quiet, NULL);
    }
    return dir;
}

static const char *temp_write(const char *name, const uint8_t *data, size_t size) {
    static char paths[2][320];
    static int which;
    char *path = paths[which++ & 1];
    snprintf(path, sizeof paths[0], "%s/%s", temp_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) __builtin_trap();
    if (size && fwrite(data, 1, size, f) != size) __builtin_trap();
    fclose(f);
    return path;
}

/* A failed call must say why, on one line when `one_line`. */
static void check_failure(mmt_status s, int one_line) {
    const char *msg = mmt_last_error();
    if (s == MMT_OK || !msg || !msg[0]) __builtin_trap();
    if (one_line && strchr(msg, '\n')) __builtin_trap();
}

static mmt_tokenizer *small_tokenizer(void) {
    static mmt_tokenizer *tok;
    if (!tok && mmt_tokenizer_load(SMALL "/vocab.json", SMALL "/merges.txt", &tok) != MMT_OK)
        __builtin_trap();
    return tok;
}

static int same_tower(const mmt_clip_tower_config *a, const mmt_clip_tower_config *b, int is_text) {
    int same = a->hidden_size == b->hidden_size && a->intermediate_size == b->intermediate_size &&
               a->num_layers == b->num_layers && a->num_heads == b->num_heads && a->act == b->act &&
               a->layer_norm_eps == b->layer_norm_eps;
    if (is_text)
        return same && a->vocab_size == b->vocab_size && a->max_positions == b->max_positions &&
               a->eos_token_id == b->eos_token_id && a->bos_token_id == b->bos_token_id &&
               a->pad_token_id == b->pad_token_id;
    return same && a->num_channels == b->num_channels && a->image_size == b->image_size &&
           a->patch_size == b->patch_size;
}

static void fuzz_clip_config(const mmt_json *root) {
    mmt_clip_config cfg, back;
    mmt_status s = mmt_clip_config_parse(root, "config.json", &cfg);
    if (s != MMT_OK) {
        check_failure(s, 1);
        return;
    }
    s = mmt_clip_config_check_tokenizer(&cfg, "config.json", small_tokenizer(), "vocab.json");
    if (s != MMT_OK) check_failure(s, 1);
    mmt_strbuf b = {0};
    mmt_clip_config_to_json(&cfg, 1.0, 0.02, &b);
    if (b.failed) __builtin_trap();
    mmt_json_doc *doc = NULL;
    if (mmt_json_parse(b.data, b.len, "written config.json", &doc) != MMT_OK ||
        mmt_clip_config_parse(mmt_json_root(doc), "written config.json", &back) != MMT_OK)
        __builtin_trap();
    if (cfg.projection_dim != back.projection_dim || cfg.logit_scale_init != back.logit_scale_init ||
        (cfg.has_text && !same_tower(&cfg.text, &back.text, 1)) ||
        (cfg.has_vision && !same_tower(&cfg.vision, &back.vision, 0)))
        __builtin_trap();
    mmt_json_free(doc);
    mmt_strbuf_free(&b);
}

static void fuzz_peft_config(const mmt_json *root) {
    mmt_peft_config cfg;
    mmt_status s = mmt_peft_config_from_json(root, "adapter_config.json", &cfg);
    if (s != MMT_OK) {
        check_failure(s, 0);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    if (mmt_peft_config_to_json(&cfg, &text, &len) != MMT_OK) __builtin_trap();
    mmt_json_doc *doc = NULL;
    mmt_peft_config back;
    if (mmt_json_parse(text, len, "written adapter_config.json", &doc) != MMT_OK ||
        mmt_peft_config_from_json(mmt_json_root(doc), "written adapter_config.json", &back) != MMT_OK)
        __builtin_trap();
    if (back.peft_type != cfg.peft_type || back.r != cfg.r) __builtin_trap();
    mmt_peft_config_free(&back);
    mmt_json_free(doc);
    mmt_free(text);
    mmt_peft_config_free(&cfg);
}

static void fuzz_processor(const mmt_json *root) {
    mmt_image_processor p;
    mmt_status s = mmt_image_processor_parse(root, "preprocessor_config.json", &p);
    if (s != MMT_OK) check_failure(s, 1);
}

static void fuzz_tokenizer(const char *vocab, const char *merges) {
    mmt_tokenizer *t = NULL;
    mmt_status s = mmt_tokenizer_load(vocab, merges, &t);
    if (s != MMT_OK) {
        check_failure(s, 1);
        if (t) __builtin_trap();
        return;
    }
    static const char text[] = "A photo of the thing in the ocean, 2 cats!";
    for (int mode = 0; mode < 2; mode++) {
        mmt_tokenizer_set_mode(t, (mmt_tokenizer_mode)mode);
        int32_t ids[128];
        int64_t n = 0;
        if (mmt_tokenizer_encode(t, text, sizeof text - 1, ids, 128, &n) != MMT_OK || n < 2 || n > 128)
            __builtin_trap();
        for (int64_t i = 0; i < n; i++)
            if (!mmt_tokenizer_id_to_token(t, ids[i])) __builtin_trap();
        char out[512];
        size_t len = 0;
        if (mmt_tokenizer_decode(t, ids, n, mode, out, sizeof out, &len) != MMT_OK) __builtin_trap();
    }
    mmt_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 6;
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    temp_dir();
    if (which == 2 || which == 3 || which == 4) {
        const char *vocab = SMALL "/vocab.json", *merges = SMALL "/merges.txt";
        if (which == 2) vocab = temp_write("vocab.json", body, n);
        if (which == 3) merges = temp_write("merges.txt", body, n);
        if (which == 4) {
            const uint8_t *zero = memchr(body, 0, n);
            size_t k = zero ? (size_t)(zero - body) : n;
            vocab = temp_write("vocab.json", body, k);
            merges = temp_write("merges.txt", zero ? zero + 1 : body + n, zero ? n - k - 1 : 0);
        }
        fuzz_tokenizer(vocab, merges);
        return 0;
    }
    mmt_json_doc *doc = NULL;
    mmt_status s = mmt_json_parse((const char *)body, n, "input", &doc);
    if (s != MMT_OK) {
        check_failure(s, 1);
        return 0;
    }
    const mmt_json *root = mmt_json_root(doc);
    if (which == 0) fuzz_clip_config(root);
    if (which == 1) fuzz_peft_config(root);
    if (which == 5) fuzz_processor(root);
    mmt_json_free(doc);
    return 0;
}
