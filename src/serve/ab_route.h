/*
 * ab_route.h — A/B routes of `mmtune serve`: a name that requests use in place of an
 * adapter's, served by one of several adapters ("arms") drawn by integer weight.
 *
 * A route is written NAME=ADAPTER:WEIGHT[,ADAPTER:WEIGHT]... (`--route`), e.g.
 * "search=shoes-v1:90,shoes-v2:10"; an arm is an adapter's name or "base". Weights are
 * positive integers; arm i is drawn with probability weight_i / total.
 *
 * Two ways to draw, both a number u uniform in [0, total) mapped to the arm whose cumulative
 * weight range holds it:
 *   - sticky: u from a hash of (route name, client key), so one key gets the same arm on every
 *     request, on every server and after restarts, and keys spread over the arms by weight.
 *     The seed does not enter: changing --route-seed keeps every client's arm.
 *   - without a key: u from the route's splitmix64 stream (core/rng.h), started from the
 *     seed and the route's name; the state advances by one atomic add per draw, so draws are
 *     thread-safe and a given sequence of requests gets the same arms for the same seed.
 *
 * mmt_route_recent remembers which (route, arm) served the last MMT_ROUTE_RECENT request ids,
 * so POST /v1/feedback can name a request alone and have its arm found.
 *
 * Usage:
 *     mmt_route r;
 *     MMT_TRY(mmt_route_parse("exp=a:90,b:10", &r));
 *     mmt_route_seed(&r, 42);
 *     int arm = mmt_route_pick(&r, user_key, user_key ? strlen(user_key) : 0);
 *     r.arms[arm].adapter  // "a" or "b"
 */
#ifndef MMT_SERVE_AB_ROUTE_H
#define MMT_SERVE_AB_ROUTE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define MMT_ROUTE_MAX_ARMS 16
#define MMT_ROUTE_MAX_WEIGHT 1000000
#define MMT_ROUTE_MAX_KEY 1024 /* bytes of a client key */

typedef struct mmt_route_arm {
    char adapter[64]; /* an adapter's name, or "base" */
    int64_t weight;   /* 1..MMT_ROUTE_MAX_WEIGHT */
} mmt_route_arm;

typedef struct mmt_route {
    char name[64];
    mmt_route_arm arms[MMT_ROUTE_MAX_ARMS];
    int n_arms;
    int64_t total;             /* the sum of the weights */
    _Atomic uint64_t rng;      /* the key-less draws' splitmix64 state */
} mmt_route;

/* Parses "NAME=ADAPTER:WEIGHT,..." into *out (names 1-63 of A-Z a-z 0-9 _ - ., the route's
 * not "base"; at least one arm, at most MMT_ROUTE_MAX_ARMS, no adapter twice). The error
 * message quotes the spec and says what is wrong. The stream starts from seed 0. */
mmt_status mmt_route_parse(const char *spec, mmt_route *out);
/* Restarts the key-less stream from seed (mixed with the route's name). */
void mmt_route_seed(mmt_route *r, uint64_t seed);

/* The arm whose weight range holds u (0 <= u < total). */
int mmt_route_arm_at(const mmt_route *r, uint64_t u);
/* The sticky draw of a client key (len bytes): the same arm for the same (route, key). */
int mmt_route_pick_key(const mmt_route *r, const char *key, size_t len);
/* The next draw of the seeded stream; safe from any thread. */
int mmt_route_pick_random(mmt_route *r);
/* pick_key when key is non-NULL and len > 0, else pick_random. */
int mmt_route_pick(mmt_route *r, const char *key, size_t len);
/* The index of the arm served by adapter, or -1. */
int mmt_route_find_arm(const mmt_route *r, const char *adapter);

/* ---- the last routed requests: request id -> (route, arm) ----
 * A ring of the last MMT_ROUTE_RECENT entries with a hash index: each bucket and each entry
 * link to the next-older entry of the bucket by (slot, sequence number); a link whose slot
 * has been overwritten since (another sequence number) ends the chain, since everything
 * after it is older still. So eviction costs nothing and a lookup a few comparisons. */

#define MMT_ROUTE_RECENT 65536

typedef struct mmt_route_link {
    int64_t seq;  /* the entry's sequence number; -1: none */
    int32_t slot;
} mmt_route_link;

typedef struct mmt_route_recent_entry {
    char request_id[65];
    int route, arm;
    int64_t seq;
    mmt_route_link older; /* the next-older entry of its bucket */
} mmt_route_recent_entry;

typedef struct mmt_route_recent {
    pthread_mutex_t mu;
    mmt_route_recent_entry *ring; /* owned: MMT_ROUTE_RECENT entries */
    mmt_route_link *buckets;      /* owned: MMT_ROUTE_RECENT, each the newest entry of its hash */
    int64_t next;                 /* entries written so far */
} mmt_route_recent;

mmt_status mmt_route_recent_init(mmt_route_recent *rr);
void mmt_route_recent_free(mmt_route_recent *rr);
void mmt_route_recent_put(mmt_route_recent *rr, const char *request_id, int route, int arm);
/* 1 and (*route, *arm) when request_id is among the last MMT_ROUTE_RECENT, else 0. */
int mmt_route_recent_get(mmt_route_recent *rr, const char *request_id, int *route, int *arm);

#endif
