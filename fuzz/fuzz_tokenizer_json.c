/* fuzz_tokenizer_json.c — libFuzzer target for tokenizer.json (data/tokenizer_json.h).
 *
 * Byte 0 picks the reader (its value mod 2, so the seeds start with the digit); the rest is
 * the file:
 *   0  tokenizer.json [NUL tokenizer_config.json]  mmt_wordpiece_from_json
 *   1  tokenizer.json                              mmt_tokenizer_from_json (CLIP's BPE)
 * A file that fails must say why on one line. A tokenizer that loads must encode a few
 * texts (with and without the frame, and truncated: the truncated ids are a prefix of the
 * full ones plus the closing frame), give ids that are tokens, and decode them. Never crash,
 * hang, leak or read out of bounds. The logger is silenced.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "data/tokenizer.h"
#include "data/wordpiece.h"

static const char *const TEXTS[] = {
    "A photo of the thing in the ocean, 2 cats!", "Héllo WORLD [CLS] x [MASK]\tdon't <|endoftext|>",
    "中文字 한국어 😀 e\xcc\x81 \xc2\xad end.", "",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};

static void quiet(mmt_log_level level, const char *message, void *user) {
    (void)level;
    (void)user;
    if (!message) __builtin_trap();
}

static void check_failure(mmt_status s) {
    const char *msg = mmt_last_error();
    if (s == MMT_OK || !msg || !msg[0] || strchr(msg, '\n')) __builtin_trap();
}

static void fuzz_wordpiece(const mmt_json *root, const mmt_json *config) {
    mmt_wordpiece *t = NULL;
    mmt_status s = mmt_wordpiece_from_json(root, "tokenizer.json", config, "tokenizer_config.json", &t);
    if (s != MMT_OK) {
        check_failure(s);
        if (t) __builtin_trap();
        return;
    }
    const mmt_wordpiece_info *info = mmt_wordpiece_info_of(t);
    int64_t frame = info->n_prefix + info->n_suffix;
    for (size_t k = 0; k < sizeof TEXTS / sizeof *TEXTS; k++) {
        int32_t ids[512], cut[512];
        int64_t n = 0, nc = 0;
        size_t len = strlen(TEXTS[k]);
        if (mmt_wordpiece_encode(t, TEXTS[k], len, 1, ids, 512, &n) != MMT_OK || n < frame) __builtin_trap();
        int64_t kept = n < 512 ? n : 512;
        for (int64_t i = 0; i < kept; i++)
            if (!mmt_wordpiece_id_to_token(t, ids[i])) __builtin_trap();
        int64_t room = frame + 3;
        if (mmt_wordpiece_encode(t, TEXTS[k], len, 1, cut, room, &nc) != MMT_OK || nc != n) __builtin_trap();
        int64_t m = n < room ? n : room;
        if (memcmp(cut, ids, (size_t)(m - info->n_suffix) * sizeof *cut) != 0) __builtin_trap();
        if (mmt_wordpiece_encode(t, TEXTS[k], len, 0, cut, 512, &nc) != MMT_OK || nc != n - frame) __builtin_trap();
        char out[256];
        for (int skip = 0; skip < 2; skip++)
            if (mmt_wordpiece_decode(t, ids, kept, skip, out, sizeof out, &len) != MMT_OK) __builtin_trap();
    }
    mmt_wordpiece_free(t);
}

static void fuzz_clip(const mmt_json *root) {
    mmt_tokenizer *t = NULL;
    mmt_status s = mmt_tokenizer_from_json(root, "tokenizer.json", &t);
    if (s != MMT_OK) {
        check_failure(s);
        if (t) __builtin_trap();
        return;
    }
    for (int mode = 0; mode < 2; mode++) {
        mmt_tokenizer_set_mode(t, (mmt_tokenizer_mode)mode);
        for (size_t k = 0; k < sizeof TEXTS / sizeof *TEXTS; k++) {
            int32_t ids[512];
            int64_t n = 0;
            if (mmt_tokenizer_encode(t, TEXTS[k], strlen(TEXTS[k]), ids, 512, &n) != MMT_OK || n < 2)
                __builtin_trap();
            int64_t kept = n < 512 ? n : 512;
            for (int64_t i = 0; i < kept; i++)
                if (!mmt_tokenizer_id_to_token(t, ids[i])) __builtin_trap();
            char out[256];
            size_t len = 0;
            if (mmt_tokenizer_decode(t, ids, kept, 1, out, sizeof out, &len) != MMT_OK) __builtin_trap();
        }
    }
    mmt_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        mmt_log_set_callback(quiet, NULL);
        init = 1;
    }
    if (size < 1) return 0;
    int which = data[0] % 2;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    const char *zero = which == 0 ? memchr(body, 0, n) : NULL;
    size_t k = zero ? (size_t)(zero - body) : n;
    mmt_json_doc *doc = NULL, *config = NULL;
    mmt_status s = mmt_json_parse(body, k, "tokenizer.json", &doc);
    if (s == MMT_OK && zero) s = mmt_json_parse(zero + 1, n - k - 1, "tokenizer_config.json", &config);
    if (s != MMT_OK) {
        check_failure(s);
    } else if (which == 0) {
        fuzz_wordpiece(mmt_json_root(doc), config ? mmt_json_root(config) : NULL);
    } else {
        fuzz_clip(mmt_json_root(doc));
    }
    mmt_json_free(doc);
    mmt_json_free(config);
    return 0;
}
