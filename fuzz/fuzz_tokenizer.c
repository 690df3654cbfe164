/* fuzz_tokenizer.c — libFuzzer target for the CLIP BPE tokenizer (encode and decode).
 *
 * The input is text. It is encoded in both modes, with room for everything and with the
 * 77-id context; the results must agree with each other (same n_total, truncated ids are a
 * prefix plus EOS), every id must exist, and decoding must succeed. Invalid UTF-8 must fail
 * with a message. Never crash, hang, leak or read out of bounds.
 * The vocabulary is the committed CLIP one, loaded once from MMT_FIXTURE_DIR. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"

static mmt_tokenizer *tokenizer(void) {
    static mmt_tokenizer *tok;
    if (!tok &&
        mmt_tokenizer_load(MMT_FIXTURE_DIR "/tokenizer/vocab.json",
                           MMT_FIXTURE_DIR "/tokenizer/merges.txt", &tok) != MMT_OK)
        __builtin_trap();
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mmt_tokenizer *t = tokenizer();
    const char *text = (const char *)data;
    /* Each byte of normalised text yields at most one id, and normalisation (NFC, the
     * lowercase of U+0130) at most triples the bytes: this always fits. */
    size_t cap = 4 * size + 8;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return 0;
    for (int mode = 0; mode < 2; mode++) {
        mmt_tokenizer_set_mode(t, (mmt_tokenizer_mode)mode);
        int64_t n = 0, n77 = 0;
        mmt_status s = mmt_tokenizer_encode(t, text, size, ids, (int64_t)cap, &n);
        if (s != MMT_OK) {
            if (s != MMT_STATUS_BAD_FORMAT || !strstr(mmt_last_error(), "invalid UTF-8"))
                __builtin_trap();
            break;
        }
        if (n < 2 || n > (int64_t)cap || ids[0] != mmt_tokenizer_bos(t) ||
            ids[n - 1] != mmt_tokenizer_eos(t))
            __builtin_trap();
        for (int64_t i = 0; i < n; i++)
            if (!mmt_tokenizer_id_to_token(t, ids[i])) __builtin_trap();
        int32_t ids77[MMT_CLIP_CONTEXT_LENGTH];
        if (mmt_tokenizer_encode(t, text, size, ids77, MMT_CLIP_CONTEXT_LENGTH, &n77) != MMT_OK ||
            n77 != n)
            __builtin_trap();
        int64_t kept = n < MMT_CLIP_CONTEXT_LENGTH ? n : MMT_CLIP_CONTEXT_LENGTH;
        if (memcmp(ids77, ids, (size_t)(kept - 1) * sizeof *ids) != 0 ||
            ids77[kept - 1] != mmt_tokenizer_eos(t))
            __builtin_trap();
        char out[256];
        size_t len = 0;
        if (mmt_tokenizer_decode(t, ids, n, mode, out, sizeof out, &len) != MMT_OK)
            __builtin_trap();
    }
    mmt_tokenizer_set_mode(t, MMT_TOKENIZER_FAST);
    free(ids);
    return 0;
}
