/* request.c — parsing the JSON bodies of the CLIP endpoints (see request.h). */
#include "serve/request.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"
#include "eval/zeroshot.h"

mmt_status mmt_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (len && memchr(in, ':', len < 16 ? len : 16) && (len < 5 || strncmp(in, "data:", 5))) /* base64 has no ':' */
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "only data: URIs (data:image/jpeg;base64,...) and base64 are accepted, "
                        "not a URL: the server fetches nothing");
    if (len >= 5 && !strncmp(in, "data:", 5)) { /* a data URI: the payload after ";base64," */
        const char *comma = memchr(in, ',', len);
        if (!comma || comma - in < 7 || strncmp(comma - 7, ";base64", 7))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "a data URI that is not ;base64");
        len -= (size_t)(comma + 1 - in);
        in = comma + 1;
    }
    uint8_t *o = mmt_malloc(len / 4 * 3 + 3);
    if (!o) return MMT_STATUS_OUT_OF_MEMORY;
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0, i = 0;
    for (; i < len && in[i] != '='; i++) {
        unsigned char c = (unsigned char)in[i];
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
              : c == '+' || c == '-' ? 62 : c == '/' || c == '_' ? 63 : -1;
        if (v < 0) {
            mmt_free(o);
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "base64: byte %zu is not a base64 character", i);
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (uint8_t)(acc >> bits);
        }
    }
    for (; i < len; i++)
        if (in[i] != '=') {
            mmt_free(o);
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "base64: data after the padding at byte %zu", i);
        }
    if (bits >= 6) { /* one lone character: not a whole byte */
        mmt_free(o);
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "base64: truncated (a lone final character)");
    }
    *out = o;
    *out_len = n;
    return MMT_OK;
}

/* One input of /v1/embeddings or an image of /v1/classify: a string (text, or for images
 * base64), or {"image": B64} / {"type": "image_url", "image_url": {"url": DATA_URI}} /
 * {"text": T}. */
static int parse_input(const mmt_json *v, int want_image, mmt_serve_input *row, char *err, size_t err_size) {
    const char *image = NULL, *text = NULL;
    size_t image_len = 0;
    if (v->type == MMT_JSON_STRING) {
        if (want_image) image = v->string, image_len = v->len;
        else text = v->string;
    } else if (v->type == MMT_JSON_OBJECT) {
        static const char *const known[] = {"text", "image", "image_url", "type"};
        const mmt_json *im = mmt_json_get(v, "image"), *url = mmt_json_get(v, "image_url"), *t = mmt_json_get(v, "text");
        const char *unknown = mmt_json_unknown_key(v, known, sizeof known / sizeof *known);
        if (unknown) {
            snprintf(err, err_size, "unknown field \"%.60s\" (an input is {\"text\": T}, {\"image\": BASE64} or "
                     "{\"type\": \"image_url\", \"image_url\": {\"url\": DATA_URI}})", unknown);
            return 0;
        }
        if (!!im + !!url + !!t > 1) {
            snprintf(err, err_size, "give one of \"text\", \"image\" and \"image_url\" per input");
            return 0;
        }
        if (url && url->type == MMT_JSON_OBJECT) url = mmt_json_get(url, "url");
        if (im && im->type == MMT_JSON_STRING) image = im->string, image_len = im->len;
        else if (url && url->type == MMT_JSON_STRING) image = url->string, image_len = url->len;
        else if (t && t->type == MMT_JSON_STRING && !want_image) text = t->string;
    }
    if (text) {
        const mmt_json *tv = v->type == MMT_JSON_STRING ? v : mmt_json_get(v, "text");
        if (!text[0] || strlen(text) != tv->len) {
            snprintf(err, err_size, "%s", text[0] ? "a text with a NUL character" : "an empty text");
            return 0;
        }
        row->text = mmt_strdup(text);
        return row->text != NULL || (snprintf(err, err_size, "out of memory"), 0);
    }
    if (!image) {
        snprintf(err, err_size, want_image ? "expected an image: a base64 string or {\"image\": BASE64}"
                                           : "expected a text, {\"text\": T}, {\"image\": BASE64} or {\"type\": \"image_url\", ...}");
        return 0;
    }
    row->image = 1;
    if (mmt_base64_decode(image, image_len, &row->bytes, &row->n_bytes) != MMT_OK) {
        snprintf(err, err_size, "%s", mmt_last_error());
        return 0;
    }
    return 1;
}

int mmt_serve_valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 63) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || s[i] == '-' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z')))
            return 0;
    return strcmp(s, "base") != 0;
}

void mmt_clip_request_free(mmt_clip_request *r) {
    for (int64_t i = 0; i < r->n_inputs; i++) {
        mmt_free(r->inputs[i].text);
        mmt_free(r->inputs[i].bytes);
    }
    mmt_free(r->inputs);
    for (int64_t i = 0; i < r->n_labels; i++) mmt_free(r->labels[i]);
    mmt_free(r->labels);
    mmt_free(r->model);
    mmt_free(r->user);
    memset(r, 0, sizeof *r);
}

/* Sets err and returns status (freeing what was parsed). */
static int refuse(mmt_clip_request *r, int status, char *err, size_t err_size, const char *msg) {
    snprintf(err, err_size, "%s", msg);
    for (char *c = err; *c; c++) /* one line, whatever the client's field names hold */
        if ((unsigned char)*c < 0x20) *c = '?';
    mmt_clip_request_free(r);
    return status;
}

int mmt_serve_parse_clip(const char *body, size_t len, int classify, int64_t max_inputs, mmt_clip_request *r, char *err,
                         size_t err_size) {
    memset(r, 0, sizeof *r);
    char msg[400];
    mmt_json_doc *doc = NULL;
    if (mmt_json_parse(body, len, "request body", &doc) != MMT_OK) return refuse(r, 400, err, err_size, mmt_last_error());
    const mmt_json *root = mmt_json_root(doc);
    int status = 0;
    const mmt_json *m = mmt_json_get(root, "model"), *fmt = mmt_json_get(root, "encoding_format");
    const mmt_json *tmpl = mmt_json_get(root, "template"), *user = mmt_json_get(root, "user");
    const mmt_json *inputs = mmt_json_get(root, classify ? "images" : "input");
    const mmt_json *labels = classify ? mmt_json_get(root, "labels") : NULL;
    int64_t n_in = !inputs ? 0 : inputs->type == MMT_JSON_ARRAY ? (int64_t)inputs->len : 1;
    int64_t n_lab = labels && labels->type == MMT_JSON_ARRAY ? (int64_t)labels->len : 0;
    static const char *const known_embed[] = {"input", "model", "encoding_format", "user"};
    static const char *const known_classify[] = {"images", "labels", "template", "model", "user"};
    const char *unknown = classify ? mmt_json_unknown_key(root, known_classify, sizeof known_classify / sizeof *known_classify)
                                   : mmt_json_unknown_key(root, known_embed, sizeof known_embed / sizeof *known_embed);
    if (root->type != MMT_JSON_OBJECT) snprintf(msg, sizeof msg, "the body must be a JSON object"), status = 400;
    else if (unknown)
        snprintf(msg, sizeof msg, "unknown field \"%.60s\" (expected %s)", unknown,
                 classify ? "images, labels, template, model, user" : "input, model, encoding_format, user"), status = 400;
    else if (m && m->type != MMT_JSON_STRING && m->type != MMT_JSON_NULL)
        snprintf(msg, sizeof msg, "\"model\" must be a string (the base, or an adapter's name)"), status = 400;
    else if (n_in == 0 || (classify && inputs->type != MMT_JSON_ARRAY))
        snprintf(msg, sizeof msg, classify ? "\"images\" must be a non-empty list" : "\"input\" must be a text or a non-empty list"),
            status = 400;
    else if (classify && (!labels || labels->type != MMT_JSON_ARRAY || n_lab < 1))
        snprintf(msg, sizeof msg, "\"labels\" must be a non-empty list of strings"), status = 400;
    else if (n_in + n_lab > max_inputs)
        snprintf(msg, sizeof msg, "%lld inputs, over the limit of %lld per request (--max-inputs)", (long long)(n_in + n_lab),
                 (long long)max_inputs), status = 413;
    else if (fmt && !(fmt->type == MMT_JSON_STRING && (!strcmp(fmt->string, "float") || !strcmp(fmt->string, "base64"))))
        snprintf(msg, sizeof msg, "\"encoding_format\" must be \"float\" or \"base64\""), status = 400;
    else if (tmpl && (tmpl->type != MMT_JSON_STRING || !strstr(tmpl->string, "{}")))
        snprintf(msg, sizeof msg, "\"template\" must be a string with {} where the label goes"), status = 400;
    else if (user && user->type != MMT_JSON_NULL &&
             (user->type != MMT_JSON_STRING || user->len > 1024 || strlen(user->string) != user->len))
        snprintf(msg, sizeof msg, "\"user\" must be a string of up to 1024 bytes (the client key of A/B routes)"), status = 400;
    if (!status && user && user->type == MMT_JSON_STRING && user->len && !(r->user = mmt_strdup(user->string)))
        snprintf(msg, sizeof msg, "out of memory"), status = 500;
    if (!status && m && m->type == MMT_JSON_STRING && !(r->model = mmt_strdup(m->string)))
        snprintf(msg, sizeof msg, "out of memory"), status = 500;
    r->base64_out = fmt && fmt->type == MMT_JSON_STRING && !strcmp(fmt->string, "base64");
    if (!status) {
        r->inputs = mmt_calloc((size_t)(n_in + n_lab), sizeof *r->inputs);
        r->labels = n_lab ? mmt_calloc((size_t)n_lab, sizeof *r->labels) : NULL;
        if (!r->inputs || (n_lab && !r->labels)) snprintf(msg, sizeof msg, "out of memory"), status = 500;
    }
    for (int64_t i = 0; !status && i < n_in; i++) {
        const mmt_json *v = inputs->type == MMT_JSON_ARRAY ? &inputs->items[i] : inputs;
        char e[300];
        r->n_inputs++;
        if (!parse_input(v, classify, &r->inputs[i], e, sizeof e))
            snprintf(msg, sizeof msg, "%s %lld: %s", classify ? "images" : "input", (long long)i, e), status = 400;
    }
    for (int64_t c = 0; !status && c < n_lab; c++) {
        const mmt_json *v = &labels->items[c];
        if (v->type != MMT_JSON_STRING || !v->string[0] || strlen(v->string) != v->len) {
            snprintf(msg, sizeof msg, "labels %lld: expected a non-empty string", (long long)c), status = 400;
            break;
        }
        r->n_labels++;
        r->n_inputs++;
        if (!(r->labels[c] = mmt_strdup(v->string)) ||
            !(r->inputs[n_in + c].text = mmt_zeroshot_prompt(tmpl ? tmpl->string : "a photo of a {}.", v->string)))
            snprintf(msg, sizeof msg, "out of memory"), status = 500;
    }
    mmt_json_free(doc);
    if (status) return refuse(r, status, err, err_size, msg);
    return 0;
}
