/* ab_route.c — parsing A/B routes and drawing their arms (see ab_route.h). */
#include "serve/ab_route.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "core/rng.h"
#include "serve/request.h"

/* The sticky draws' hash domain: changing it would move every client to another arm. */
#define KEY_HASH_SEED UINT64_C(0x6d6d74756e652d61) /* "mmtune-a" */

static int name_char(char c) {
    return c == '_' || c == '-' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A weight: decimal digits only, 1..MMT_ROUTE_MAX_WEIGHT. */
static int parse_weight(const char *s, size_t n, int64_t *out) {
    if (n == 0 || n > 7) return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > MMT_ROUTE_MAX_WEIGHT) return 0;
    *out = v;
    return 1;
}

mmt_status mmt_route_parse(const char *spec, mmt_route *r) {
    memset(r, 0, sizeof *r);
    for (size_t i = 0; spec[i]; i++) /* every message below quotes the spec: keep it one line */
        if ((unsigned char)spec[i] < 0x20 || spec[i] == 0x7f)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route: a control character at byte %zu of the spec", i);
    const char *eq = strchr(spec, '=');
    size_t name_len = eq ? (size_t)(eq - spec) : 0;
    if (!eq || name_len == 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%.200s': expected NAME=ADAPTER:WEIGHT[,ADAPTER:WEIGHT]...", spec);
    if (name_len > 63) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%.200s': the name is over 63 characters", spec);
    memcpy(r->name, spec, name_len);
    if (!mmt_serve_valid_name(r->name))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%.200s': the name must be 1-63 of A-Z a-z 0-9 _ - . (not 'base')",
                        spec);
    const char *p = eq + 1;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        if (len == 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%.200s': an empty arm (expected ADAPTER:WEIGHT)", spec);
        if (!colon)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%.200s': arm '%.*s' has no weight (expected ADAPTER:WEIGHT)",
                            spec, (int)(len > 100 ? 100 : len), p);
        size_t alen = (size_t)(colon - p);
        int ok_name = alen >= 1 && alen <= 63;
        for (size_t i = 0; ok_name && i < alen; i++) ok_name = name_char(p[i]);
        if (!ok_name)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "route '%.200s': arm '%.*s': an adapter name is 1-63 of A-Z a-z 0-9 _ - . (or base)", spec,
                            (int)(alen > 100 ? 100 : alen), p);
        int64_t w = 0;
        if (!parse_weight(colon + 1, len - alen - 1, &w))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%.200s': the weight '%.*s' of arm '%.*s' is not an integer from 1 to %d",
                            spec, (int)(len - alen - 1 > 40 ? 40 : len - alen - 1), colon + 1, (int)alen, p, MMT_ROUTE_MAX_WEIGHT);
        if (r->n_arms == MMT_ROUTE_MAX_ARMS)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%.200s': more than %d arms", spec, MMT_ROUTE_MAX_ARMS);
        mmt_route_arm *a = &r->arms[r->n_arms];
        memcpy(a->adapter, p, alen);
        a->adapter[alen] = '\0';
        if (mmt_route_find_arm(r, a->adapter) >= 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%.200s': adapter '%s' is in it twice", spec, a->adapter);
        a->weight = w;
        r->n_arms++;
        r->total += w;
        if (!end) break;
        p = end + 1;
    }
    mmt_route_seed(r, 0);
    return MMT_OK;
}

void mmt_route_seed(mmt_route *r, uint64_t seed) {
    atomic_store(&r->rng, mmt_splitmix64_mix(seed ^ mmt_hash64(r->name, strlen(r->name), 0)));
}

int mmt_route_arm_at(const mmt_route *r, uint64_t u) {
    for (int i = 0; i < r->n_arms; i++) {
        if (u < (uint64_t)r->arms[i].weight) return i;
        u -= (uint64_t)r->arms[i].weight;
    }
    return r->n_arms - 1; /* u >= total: not reached for u < total */
}

/* 64 uniform bits onto [0, total) by a 128-bit product (Lemire): the bias is total / 2^64. */
static uint64_t scale(uint64_t bits, int64_t total) {
    return (uint64_t)(((unsigned __int128)bits * (uint64_t)total) >> 64);
}

int mmt_route_pick_key(const mmt_route *r, const char *key, size_t len) {
    uint64_t h = mmt_hash64(r->name, strlen(r->name), KEY_HASH_SEED);
    h = mmt_hash64(key, len, h);
    return mmt_route_arm_at(r, scale(mmt_splitmix64_mix(h), r->total));
}

int mmt_route_pick_random(mmt_route *r) {
    /* splitmix64's step is an add: one atomic add advances the shared stream */
    uint64_t state = atomic_fetch_add(&r->rng, UINT64_C(0x9e3779b97f4a7c15)) + UINT64_C(0x9e3779b97f4a7c15);
    return mmt_route_arm_at(r, scale(mmt_splitmix64_mix(state), r->total));
}

int mmt_route_pick(mmt_route *r, const char *key, size_t len) {
    return key && len ? mmt_route_pick_key(r, key, len) : mmt_route_pick_random(r);
}

int mmt_route_find_arm(const mmt_route *r, const char *adapter) {
    for (int i = 0; i < r->n_arms; i++)
        if (!strcmp(r->arms[i].adapter, adapter)) return i;
    return -1;
}

/* ---- recent requests ---- */

mmt_status mmt_route_recent_init(mmt_route_recent *rr) {
    memset(rr, 0, sizeof *rr);
    rr->ring = mmt_calloc(MMT_ROUTE_RECENT, sizeof *rr->ring);
    rr->buckets = mmt_malloc(MMT_ROUTE_RECENT * sizeof *rr->buckets);
    if (!rr->ring || !rr->buckets) {
        mmt_free(rr->ring), mmt_free(rr->buckets);
        rr->ring = NULL, rr->buckets = NULL;
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; i < MMT_ROUTE_RECENT; i++) rr->buckets[i] = (mmt_route_link){.seq = -1};
    pthread_mutex_init(&rr->mu, NULL);
    return MMT_OK;
}

void mmt_route_recent_free(mmt_route_recent *rr) {
    if (!rr->ring) return;
    pthread_mutex_destroy(&rr->mu);
    mmt_free(rr->ring);
    mmt_free(rr->buckets);
    rr->ring = NULL, rr->buckets = NULL;
}

static mmt_route_link *bucket_of(mmt_route_recent *rr, const char *request_id) {
    return &rr->buckets[mmt_hash64(request_id, strlen(request_id), 0) % MMT_ROUTE_RECENT];
}

void mmt_route_recent_put(mmt_route_recent *rr, const char *request_id, int route, int arm) {
    if (!rr->ring || !request_id || !request_id[0]) return;
    pthread_mutex_lock(&rr->mu);
    int64_t seq = rr->next++;
    int32_t slot = (int32_t)(seq % MMT_ROUTE_RECENT);
    mmt_route_recent_entry *e = &rr->ring[slot];
    mmt_route_link *b = bucket_of(rr, request_id);
    snprintf(e->request_id, sizeof e->request_id, "%s", request_id);
    e->route = route, e->arm = arm, e->seq = seq;
    e->older = *b;
    *b = (mmt_route_link){.seq = seq, .slot = slot};
    pthread_mutex_unlock(&rr->mu);
}

int mmt_route_recent_get(mmt_route_recent *rr, const char *request_id, int *route, int *arm) {
    if (!rr->ring || !request_id || !request_id[0]) return 0;
    int found = 0;
    pthread_mutex_lock(&rr->mu);
    /* newest first: a reused id names its last use; a stale link ends the chain */
    for (mmt_route_link l = *bucket_of(rr, request_id); l.seq >= 0 && rr->ring[l.slot].seq == l.seq;) {
        const mmt_route_recent_entry *e = &rr->ring[l.slot];
        if (!strcmp(e->request_id, request_id)) {
            *route = e->route, *arm = e->arm, found = 1;
            break;
        }
        l = e->older;
    }
    pthread_mutex_unlock(&rr->mu);
    return found;
}
