/* caption_request.c — parsing the body of POST /v1/caption (see caption_request.h). */
#include "serve/caption_request.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"

void mmt_caption_request_free(mmt_caption_request *r) {
    for (int64_t i = 0; i < r->n_images; i++) mmt_free(r->images[i].bytes);
    mmt_free(r->images);
    mmt_free(r->model);
    mmt_free(r->prompt);
    for (int64_t i = 0; i < r->n_words; i++) mmt_free(r->words[i]);
    mmt_free(r->words);
    memset(r, 0, sizeof *r);
}

static int refuse(mmt_caption_request *r, int status, char *err, size_t err_size, const char *msg) {
    snprintf(err, err_size, "%s", msg);
    for (char *c = err; *c; c++) /* one line, whatever the client's field names hold */
        if ((unsigned char)*c < 0x20) *c = '?';
    mmt_caption_request_free(r);
    return status;
}

/* An image item: a base64 string, {"image": B64} or the image_url form. */
static int parse_image(const mmt_json *v, mmt_serve_input *row, char *err, size_t err_size) {
    const char *b64 = NULL;
    size_t n = 0;
    if (v->type == MMT_JSON_STRING) {
        b64 = v->string, n = v->len;
    } else if (v->type == MMT_JSON_OBJECT) {
        const mmt_json *im = mmt_json_get(v, "image"), *url = mmt_json_get(v, "image_url");
        if (url && url->type == MMT_JSON_OBJECT) url = mmt_json_get(url, "url");
        if (im && im->type == MMT_JSON_STRING) b64 = im->string, n = im->len;
        else if (url && url->type == MMT_JSON_STRING) b64 = url->string, n = url->len;
    }
    if (!b64) {
        snprintf(err, err_size, "expected an image: a base64 string, {\"image\": BASE64} or {\"type\": \"image_url\", ...}");
        return 0;
    }
    row->image = 1;
    if (mmt_base64_decode(b64, n, &row->bytes, &row->n_bytes) != MMT_OK) {
        snprintf(err, err_size, "%s", mmt_last_error());
        return 0;
    }
    if (row->n_bytes == 0) {
        snprintf(err, err_size, "an empty image");
        return 0;
    }
    return 1;
}

/* A whole number field in [lo, hi]; 0 with the message in err otherwise. */
static int get_count(const mmt_json *v, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err, size_t err_size) {
    if (v->type == MMT_JSON_NUMBER && !v->is_integer && v->number == floor(v->number) && fabs(v->number) >= 9.2e18) {
        snprintf(err, err_size, "\"%s\" is out of range; it must be %lld..%lld", key, (long long)lo, (long long)hi);
        return 0;
    }
    if (v->type != MMT_JSON_NUMBER || !v->is_integer) {
        snprintf(err, err_size, "\"%s\" must be a whole number", key);
        return 0;
    }
    if (v->integer < lo || v->integer > hi) {
        snprintf(err, err_size, "\"%s\" is %lld; it must be %lld..%lld", key, (long long)v->integer, (long long)lo,
                 (long long)hi);
        return 0;
    }
    *out = v->integer;
    return 1;
}

static int get_real(const mmt_json *v, const char *key, double *out, char *err, size_t err_size) {
    if (v->type != MMT_JSON_NUMBER || !isfinite(v->number)) {
        snprintf(err, err_size, "\"%s\" must be a number", key);
        return 0;
    }
    *out = v->number;
    return 1;
}

int mmt_serve_parse_caption(const char *body, size_t len, int64_t max_images, int64_t max_new_tokens_limit,
                            mmt_caption_request *r, char *err, size_t err_size) {
    memset(r, 0, sizeof *r);
    r->gen = mmt_gen_settings_default();
    r->gen.max_new_tokens = max_new_tokens_limit < 30 ? max_new_tokens_limit : 30; /* `mmtune caption`'s default */
    mmt_json_doc *doc = NULL;
    if (mmt_json_parse(body, len, "request body", &doc) != MMT_OK)
        return refuse(r, 400, err, err_size, mmt_last_error());
    const mmt_json *root = mmt_json_root(doc);
    char msg[400] = "";
    int status = 0;
    if (root->type != MMT_JSON_OBJECT) {
        status = 400, snprintf(msg, sizeof msg, "the body must be a JSON object");
        goto out;
    }
    const mmt_json *images = mmt_json_get(root, "images");
    for (size_t i = 0; i < root->len && !status; i++) {
        const char *key = root->keys[i];
        const mmt_json *v = &root->items[i];
        int64_t n = 0;
        double x = 0;
        int ok = 1;
        if (!strcmp(key, "images")) continue;
        static const char *const known[] = {"model", "prompt", "allowed_words", "bad_words", "do_sample", "early_stopping",
                                            "max_new_tokens", "min_new_tokens", "num_beams", "top_k", "seed",
                                            "no_repeat_ngram_size", "temperature", "top_p", "repetition_penalty",
                                            "length_penalty"};
        size_t k = 0;
        while (k < sizeof known / sizeof *known && strcmp(key, known[k])) k++;
        if (k == sizeof known / sizeof *known) {
            status = 400, snprintf(msg, sizeof msg, "unknown field \"%.60s\" (see docs/serving.md, Captioning)", key);
            break;
        }
        if (v->type == MMT_JSON_NULL) continue; /* null: as absent, for every setting */
        if (!strcmp(key, "model") || !strcmp(key, "prompt")) {
            if (v->type != MMT_JSON_STRING || strlen(v->string) != v->len) {
                status = 400, snprintf(msg, sizeof msg, "\"%s\" must be %s", key,
                                       v->type == MMT_JSON_STRING ? "a text without NUL characters" : "a string");
                break;
            }
            char **dst = !strcmp(key, "model") ? &r->model : &r->prompt;
            mmt_free(*dst);
            *dst = v->len || dst == &r->model ? mmt_strdup(v->string) : NULL;
            if (v->len && !*dst) status = 500, snprintf(msg, sizeof msg, "out of memory");
            continue;
        }
        if (!strcmp(key, "allowed_words") || !strcmp(key, "bad_words")) {
            int allowed = !strcmp(key, "allowed_words");
            if (r->words) {
                status = 400, snprintf(msg, sizeof msg, "\"allowed_words\" and \"bad_words\" exclude each other");
                break;
            }
            if (v->type != MMT_JSON_ARRAY || v->len == 0 || v->len > MMT_CAPTION_MAX_WORDS) {
                status = 400, snprintf(msg, sizeof msg, "\"%s\" must be a list of 1..%d words", key, MMT_CAPTION_MAX_WORDS);
                break;
            }
            if (!(r->words = mmt_calloc(v->len, sizeof *r->words))) {
                status = 500, snprintf(msg, sizeof msg, "out of memory");
                break;
            }
            r->words_allowed = allowed;
            for (size_t w = 0; w < v->len && !status; w++) {
                const mmt_json *e = &v->items[w];
                if (e->type != MMT_JSON_STRING || strlen(e->string) != e->len || e->len == 0 || e->len > 100)
                    status = 400, snprintf(msg, sizeof msg, "\"%s\" item %zu must be a text of 1..100 bytes", key, w);
                else if (!(r->words[w] = mmt_strdup(e->string)))
                    status = 500, snprintf(msg, sizeof msg, "out of memory");
                else r->n_words++;
            }
            continue;
        }
        if (!strcmp(key, "do_sample")) {
            if (v->type != MMT_JSON_BOOL) status = 400, snprintf(msg, sizeof msg, "\"do_sample\" must be true or false");
            else r->gen.do_sample = v->boolean;
            continue;
        }
        if (!strcmp(key, "early_stopping")) { /* generate()'s: true, false (the heuristic) or "never" */
            if (v->type == MMT_JSON_BOOL)
                r->gen.early_stopping = v->boolean ? MMT_GEN_EARLY_STOPPING_TRUE : MMT_GEN_EARLY_STOPPING_HEURISTIC;
            else if (v->type == MMT_JSON_STRING && !strcmp(v->string, "never"))
                r->gen.early_stopping = MMT_GEN_EARLY_STOPPING_NEVER;
            else status = 400, snprintf(msg, sizeof msg, "\"early_stopping\" must be true, false or \"never\"");
            continue;
        }
        if (!strcmp(key, "max_new_tokens")) {
            if ((ok = get_count(v, key, 1, max_new_tokens_limit, &n, msg, sizeof msg))) r->gen.max_new_tokens = n;
        } else if (!strcmp(key, "min_new_tokens")) {
            if ((ok = get_count(v, key, 0, max_new_tokens_limit, &n, msg, sizeof msg))) r->gen.min_new_tokens = n;
        } else if (!strcmp(key, "num_beams")) {
            if ((ok = get_count(v, key, 1, 16, &n, msg, sizeof msg))) r->gen.num_beams = n;
        } else if (!strcmp(key, "top_k")) {
            if ((ok = get_count(v, key, 0, INT32_MAX, &n, msg, sizeof msg))) r->gen.top_k = n;
        } else if (!strcmp(key, "seed")) {
            if ((ok = get_count(v, key, 0, INT64_MAX, &n, msg, sizeof msg))) r->gen.seed = (uint64_t)n;
        } else if (!strcmp(key, "no_repeat_ngram_size")) {
            if ((ok = get_count(v, key, 0, 64, &n, msg, sizeof msg))) r->gen.no_repeat_ngram_size = n;
        } else if (!strcmp(key, "temperature")) {
            if ((ok = get_real(v, key, &x, msg, sizeof msg))) r->gen.temperature = x;
        } else if (!strcmp(key, "top_p")) {
            if ((ok = get_real(v, key, &x, msg, sizeof msg))) r->gen.top_p = x;
        } else if (!strcmp(key, "repetition_penalty")) {
            if ((ok = get_real(v, key, &x, msg, sizeof msg))) r->gen.repetition_penalty = x;
        } else if (!strcmp(key, "length_penalty")) {
            if ((ok = get_real(v, key, &x, msg, sizeof msg))) r->gen.length_penalty = x;
        }
        if (!ok) status = 400;
    }
    if (status) goto out;
    if (!images || images->type != MMT_JSON_ARRAY || images->len == 0) {
        status = 400, snprintf(msg, sizeof msg, "\"images\" must be a list of one or more images");
        goto out;
    }
    if ((int64_t)images->len > max_images) {
        status = 413, snprintf(msg, sizeof msg, "%zu images, over the limit of %lld per request", images->len,
                               (long long)max_images);
        goto out;
    }
    if (!(r->images = mmt_calloc(images->len, sizeof *r->images))) {
        status = 500, snprintf(msg, sizeof msg, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < images->len && !status; i++) {
        char why[300];
        r->n_images++;
        if (!parse_image(&images->items[i], &r->images[i], why, sizeof why))
            status = 400, snprintf(msg, sizeof msg, "image %zu: %s", i, why);
    }
out:
    mmt_json_free(doc);
    if (status) return refuse(r, status, err, err_size, msg);
    return 0;
}
