/* fuzz_serve_request.c — libFuzzer target for the request bodies of `mmtune serve`.
 *
 * Byte 0 picks the endpoint (mod 4: 0 /v1/embeddings, 1 /v1/classify, 2 /v1/caption; 3: a
 * multipart/form-data body with the boundary "XyZ", for the endpoint byte 1 picks, turned into
 * JSON by mmt_multipart_to_json, which must then parse as JSON or fail with one line); the
 * rest is the body, parsed by mmt_serve_parse_clip with a limit of 64 inputs, or by
 * mmt_serve_parse_caption with 64 images and 100 new tokens at most (a caption request that
 * parses has 1..64 images, each some bytes, max_new_tokens 1..100, and its allowed or bad
 * words 1..100 bytes each). A body that parses must give a
 * consistent request (1..64 inputs; for classify one label per prompt row, after the images;
 * every text non-empty; every image some decoded bytes); one that fails must give a status
 * of 400, 413 or 500 and a one-line message. The base64 decoder also gets the body as is,
 * and so do the feedback parser (POST /v1/feedback: 0, or 400/413/500 with one line) and the
 * A/B route parser (a `--route` spec: a route with 1..16 arms of positive weights summing to
 * total, or one line). Never crash, hang, leak or read out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"
#include "serve/ab_route.h"
#include "serve/caption_request.h"
#include "serve/feedback.h"
#include "serve/multipart.h"
#include "serve/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 4, classify = which == 1;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    char err[400];
    if (which == 3) {
        static const char *const paths[4] = {"/v1/embeddings", "/v1/classify", "/v1/caption", "/v1/search"};
        if (len < 1) return 0;
        mmt_strbuf j = {0};
        mmt_status st = mmt_multipart_to_json("multipart/form-data; boundary=XyZ", body + 1, len - 1, paths[body[0] & 3], &j);
        if (st == MMT_OK) { /* what it makes is JSON */
            mmt_json_doc *doc = NULL;
            if (mmt_json_parse(j.data, j.len, "multipart json", &doc) != MMT_OK) __builtin_trap();
            mmt_json_free(doc);
        } else if (strchr(mmt_last_error(), '\n')) {
            __builtin_trap();
        }
        mmt_strbuf_free(&j);
        return 0;
    }
    if (which == 2) {
        mmt_caption_request c;
        int status = mmt_serve_parse_caption(body, len, 64, 100, &c, err, sizeof err);
        if (status) {
            if ((status != 400 && status != 413 && status != 500) || !err[0] || strchr(err, '\n')) __builtin_trap();
            return 0;
        }
        if (c.n_images < 1 || c.n_images > 64 || c.gen.max_new_tokens < 1 || c.gen.max_new_tokens > 100) __builtin_trap();
        for (int64_t i = 0; i < c.n_images; i++)
            if (!c.images[i].image || !c.images[i].bytes) __builtin_trap();
        if (c.n_words < 0 || c.n_words > MMT_CAPTION_MAX_WORDS || (c.n_words > 0) != (c.words != NULL)) __builtin_trap();
        for (int64_t i = 0; i < c.n_words; i++)
            if (!c.words[i] || !c.words[i][0] || strlen(c.words[i]) > 100) __builtin_trap();
        mmt_caption_request_free(&c);
        return 0;
    }
    mmt_clip_request r;
    int status = mmt_serve_parse_clip(body, len, classify, 64, &r, err, sizeof err);
    if (status) {
        if ((status != 400 && status != 413 && status != 500) || !err[0] || strchr(err, '\n')) __builtin_trap();
    } else {
        if (r.n_inputs < 1 || r.n_inputs > 64) __builtin_trap();
        if (classify && (r.n_labels < 1 || r.n_labels >= r.n_inputs)) __builtin_trap();
        if (!classify && r.n_labels) __builtin_trap();
        for (int64_t i = 0; i < r.n_inputs; i++) {
            const mmt_serve_input *in = &r.inputs[i];
            if (in->image ? !in->bytes : (!in->text || !in->text[0])) __builtin_trap();
            if (classify && (i < r.n_inputs - r.n_labels) != in->image) __builtin_trap();
        }
        mmt_clip_request_free(&r);
    }
    mmt_feedback_event ev;
    int fb = mmt_feedback_parse(body, len, NULL, &ev, err, sizeof err);
    if (fb) {
        if ((fb != 400 && fb != 413 && fb != 500) || !err[0] || strchr(err, '\n')) __builtin_trap();
    } else {
        if (!ev.event[0] || (!ev.request_id[0] && !ev.user[0])) __builtin_trap();
        mmt_feedback_event_free(&ev);
    }
    char *spec = malloc(len + 1);
    if (spec) {
        memcpy(spec, body, len);
        spec[len] = '\0';
        mmt_route route;
        if (mmt_route_parse(spec, &route) == MMT_OK) {
            int64_t total = 0;
            for (int a = 0; a < route.n_arms; a++) {
                if (route.arms[a].weight < 1) __builtin_trap();
                total += route.arms[a].weight;
            }
            if (route.n_arms < 1 || route.n_arms > MMT_ROUTE_MAX_ARMS || total != route.total) __builtin_trap();
            if (mmt_route_pick_random(&route) >= route.n_arms || mmt_route_pick_key(&route, spec, len) >= route.n_arms) __builtin_trap();
        } else if (strchr(mmt_last_error(), '\n')) {
            __builtin_trap();
        }
        free(spec);
    }
    uint8_t *bytes = NULL;
    size_t n = 0;
    if (mmt_base64_decode(body, len, &bytes, &n) == MMT_OK && n > len) __builtin_trap();
    mmt_free(bytes);
    return 0;
}
