/*
 * metrics.h — the server's counters in Prometheus' text exposition format (version 0.0.4).
 *
 * Series: mmtune_requests_total{endpoint,adapter,code}, mmtune_request_seconds (histogram per
 * endpoint and adapter), mmtune_batch_rows and mmtune_batch_seconds (histograms of the
 * batches run), mmtune_generated_tokens_total, and the gauges the caller passes at render
 * time (queue depth, requests in flight, adapters loaded, resident memory). At most
 * MMT_METRICS_MAX_SERIES (endpoint, adapter) pairs are kept apart; later ones are counted
 * under adapter="_other", so a client inventing adapter names cannot grow memory. Every
 * call is thread-safe.
 *
 * A/B routes (serve/ab_route.h) add, per route and arm: mmtune_route_weight (gauge),
 * mmtune_route_requests_total{route,arm,code}, mmtune_route_request_seconds (histogram) and
 * mmtune_feedback_total{route,arm,event}. Arms are declared at start-up (so every arm shows,
 * at 0, from the first scrape); at most MMT_METRICS_MAX_EVENTS event names are kept apart
 * per arm, later ones counted under event="_other".
 */
#ifndef MMT_SERVE_METRICS_H
#define MMT_SERVE_METRICS_H

#include <stdint.h>

#include "core/json.h"
#include "core/status.h"

#define MMT_METRICS_MAX_SERIES 512
#define MMT_METRICS_MAX_ARMS 1024  /* (route, arm) pairs */
#define MMT_METRICS_MAX_EVENTS 16  /* feedback event names per arm */

typedef struct mmt_metrics mmt_metrics;

typedef struct mmt_metrics_gauges {
    int64_t queue_rows;     /* rows waiting for a batch */
    int64_t in_flight;      /* requests not answered yet */
    int64_t connections;    /* client connections open */
    int64_t adapters;       /* adapters loaded */
    int ready;              /* the model is loaded */
} mmt_metrics_gauges;

mmt_status mmt_metrics_create(mmt_metrics **out);
void mmt_metrics_free(mmt_metrics *m);

/* One answered request: its endpoint ("/v1/embeddings"), adapter name ("" or NULL: the
 * base), HTTP status and seconds from arrival to reply. */
void mmt_metrics_request(mmt_metrics *m, const char *endpoint, const char *adapter, int status, double seconds);
void mmt_metrics_batch(mmt_metrics *m, int64_t rows, double seconds);
void mmt_metrics_tokens(mmt_metrics *m, int64_t generated);
/* A/B routes: declares an arm with its weight (start-up; MMT_STATUS_INVALID_ARGUMENT past
 * MMT_METRICS_MAX_ARMS), counts a request it answered, counts a feedback event. Requests
 * and events of an arm never declared are not counted. */
mmt_status mmt_metrics_route_arm(mmt_metrics *m, const char *route, const char *arm, int64_t weight);
void mmt_metrics_route_request(mmt_metrics *m, const char *route, const char *arm, int status, double seconds);
void mmt_metrics_feedback(mmt_metrics *m, const char *route, const char *arm, const char *event);
/* Appends the whole exposition. */
void mmt_metrics_render(mmt_metrics *m, const mmt_metrics_gauges *g, mmt_strbuf *out);

#endif
