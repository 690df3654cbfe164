/* metrics.c — Prometheus counters and histograms of the server (see metrics.h). */
#include "serve/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"

static const double LATENCY_BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_LATENCY (sizeof LATENCY_BOUNDS / sizeof *LATENCY_BOUNDS)
static const double ROW_BOUNDS[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
#define N_ROWS (sizeof ROW_BOUNDS / sizeof *ROW_BOUNDS)
#define N_CODES 8 /* distinct status codes kept per series */

typedef struct series {
    char endpoint[48], adapter[80];
    int codes[N_CODES];
    int64_t code_counts[N_CODES];
    int64_t buckets[N_LATENCY + 1]; /* the last: +Inf */
    double sum;
    int64_t count;
} series;

/* An A/B route's arm: its requests as a series, its weight, its feedback by event. */
typedef struct arm_series {
    char route[64], arm[64];
    int64_t weight;
    series requests; /* endpoint/adapter unused */
    char events[MMT_METRICS_MAX_EVENTS + 1][64]; /* the last: "_other" */
    int64_t event_counts[MMT_METRICS_MAX_EVENTS + 1];
    int n_events;
} arm_series;

typedef struct histogram {
    int64_t buckets[16];
    double sum;
    int64_t count;
} histogram;

struct mmt_metrics {
    pthread_mutex_t mu;
    series *s;
    int64_t n;
    histogram batch_rows, batch_seconds;
    int64_t tokens;
    arm_series *arms; /* n_arms of cap_arms (grown as arms are declared) */
    int64_t n_arms, cap_arms;
};

mmt_status mmt_metrics_create(mmt_metrics **out) {
    mmt_metrics *m = mmt_calloc(1, sizeof *m);
    if (!m || !(m->s = mmt_calloc(MMT_METRICS_MAX_SERIES + 1, sizeof *m->s))) {
        mmt_free(m);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return MMT_OK;
}

void mmt_metrics_free(mmt_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    mmt_free(m->arms);
    mmt_free(m->s);
    mmt_free(m);
}

static series *find(mmt_metrics *m, const char *endpoint, const char *adapter) {
    if (!adapter || !adapter[0]) adapter = "base";
    for (int64_t i = 0; i < m->n; i++)
        if (!strcmp(m->s[i].endpoint, endpoint) && !strcmp(m->s[i].adapter, adapter)) return &m->s[i];
    series *s = &m->s[MMT_METRICS_MAX_SERIES]; /* full: the one overflow series */
    if (m->n < MMT_METRICS_MAX_SERIES) s = &m->s[m->n++];
    else endpoint = adapter = "_other";
    snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    snprintf(s->adapter, sizeof s->adapter, "%s", adapter);
    return s;
}

static void observe(int64_t *buckets, const double *bounds, size_t n, double v) {
    size_t i = 0;
    while (i < n && v > bounds[i]) i++;
    buckets[i]++;
}

static void series_add(series *s, int status, double seconds) {
    int k = 0;
    while (k < N_CODES - 1 && s->codes[k] && s->codes[k] != status) k++;
    s->codes[k] = status; /* the last slot takes any further code */
    s->code_counts[k]++;
    observe(s->buckets, LATENCY_BOUNDS, N_LATENCY, seconds);
    s->sum += seconds;
    s->count++;
}

void mmt_metrics_request(mmt_metrics *m, const char *endpoint, const char *adapter, int status, double seconds) {
    pthread_mutex_lock(&m->mu);
    series_add(find(m, endpoint, adapter), status, seconds);
    pthread_mutex_unlock(&m->mu);
}

static arm_series *find_arm(mmt_metrics *m, const char *route, const char *arm) {
    for (int64_t i = 0; i < m->n_arms; i++)
        if (!strcmp(m->arms[i].route, route) && !strcmp(m->arms[i].arm, arm)) return &m->arms[i];
    return NULL;
}

mmt_status mmt_metrics_route_arm(mmt_metrics *m, const char *route, const char *arm, int64_t weight) {
    mmt_status st = MMT_OK;
    pthread_mutex_lock(&m->mu);
    arm_series *a = find_arm(m, route, arm);
    if (!a && m->n_arms == MMT_METRICS_MAX_ARMS)
        st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "more than %d route arms in all", MMT_METRICS_MAX_ARMS);
    if (!a && st == MMT_OK && m->n_arms == m->cap_arms) {
        int64_t cap = m->cap_arms ? 2 * m->cap_arms : 8;
        arm_series *g = mmt_realloc(m->arms, (size_t)cap * sizeof *g);
        if (g) m->arms = g, m->cap_arms = cap;
        else st = MMT_STATUS_OUT_OF_MEMORY;
    }
    if (!a && st == MMT_OK) {
        memset(&m->arms[m->n_arms], 0, sizeof *m->arms);
        a = &m->arms[m->n_arms++];
        snprintf(a->route, sizeof a->route, "%s", route);
        snprintf(a->arm, sizeof a->arm, "%s", arm);
        snprintf(a->events[MMT_METRICS_MAX_EVENTS], sizeof a->events[0], "_other");
    }
    if (a) a->weight = weight;
    pthread_mutex_unlock(&m->mu);
    return st;
}

void mmt_metrics_route_request(mmt_metrics *m, const char *route, const char *arm, int status, double seconds) {
    pthread_mutex_lock(&m->mu);
    arm_series *a = find_arm(m, route, arm);
    if (a) series_add(&a->requests, status, seconds);
    pthread_mutex_unlock(&m->mu);
}

void mmt_metrics_feedback(mmt_metrics *m, const char *route, const char *arm, const char *event) {
    pthread_mutex_lock(&m->mu);
    arm_series *a = find_arm(m, route, arm);
    int k = 0;
    while (a && k < a->n_events && strcmp(a->events[k], event)) k++;
    if (a && k == a->n_events && a->n_events < MMT_METRICS_MAX_EVENTS)
        snprintf(a->events[a->n_events++], sizeof a->events[0], "%s", event);
    else if (a && k == a->n_events) k = MMT_METRICS_MAX_EVENTS; /* full: "_other" */
    if (a) a->event_counts[k]++;
    pthread_mutex_unlock(&m->mu);
}

void mmt_metrics_batch(mmt_metrics *m, int64_t rows, double seconds) {
    pthread_mutex_lock(&m->mu);
    observe(m->batch_rows.buckets, ROW_BOUNDS, N_ROWS, (double)rows);
    m->batch_rows.sum += (double)rows;
    m->batch_rows.count++;
    observe(m->batch_seconds.buckets, LATENCY_BOUNDS, N_LATENCY, seconds);
    m->batch_seconds.sum += seconds;
    m->batch_seconds.count++;
    pthread_mutex_unlock(&m->mu);
}

void mmt_metrics_tokens(mmt_metrics *m, int64_t generated) {
    pthread_mutex_lock(&m->mu);
    m->tokens += generated;
    pthread_mutex_unlock(&m->mu);
}

static void histogram_lines(mmt_strbuf *o, const char *name, const char *labels, const int64_t *buckets,
                            const double *bounds, size_t n, double sum, int64_t count) {
    int64_t cum = 0;
    for (size_t i = 0; i <= n; i++) {
        cum += buckets[i];
        if (i < n) mmt_strbuf_printf(o, "%s_bucket{%s%sle=\"%g\"} %lld\n", name, labels, *labels ? "," : "", bounds[i], (long long)cum);
        else mmt_strbuf_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", name, labels, *labels ? "," : "", (long long)cum);
    }
    if (*labels) mmt_strbuf_printf(o, "%s_sum{%s} %.9g\n%s_count{%s} %lld\n", name, labels, sum, name, labels, (long long)count);
    else mmt_strbuf_printf(o, "%s_sum %.9g\n%s_count %lld\n", name, sum, name, (long long)count);
}

/* The A/B routes' families (m->mu held). */
static void route_lines(mmt_metrics *m, mmt_strbuf *o) {
    mmt_strbuf_printf(o, "# HELP mmtune_route_weight The weight of each arm of an A/B route (--route).\n"
                         "# TYPE mmtune_route_weight gauge\n");
    for (int64_t i = 0; i < m->n_arms; i++)
        mmt_strbuf_printf(o, "mmtune_route_weight{route=\"%s\",arm=\"%s\"} %lld\n", m->arms[i].route, m->arms[i].arm,
                          (long long)m->arms[i].weight);
    mmt_strbuf_printf(o, "# HELP mmtune_route_requests_total Requests of an A/B route answered, by arm and HTTP status.\n"
                         "# TYPE mmtune_route_requests_total counter\n");
    for (int64_t i = 0; i < m->n_arms; i++) {
        const arm_series *a = &m->arms[i];
        if (!a->requests.codes[0]) /* every arm shows from the start */
            mmt_strbuf_printf(o, "mmtune_route_requests_total{route=\"%s\",arm=\"%s\",code=\"200\"} 0\n", a->route, a->arm);
        for (int k = 0; k < N_CODES && a->requests.codes[k]; k++)
            mmt_strbuf_printf(o, "mmtune_route_requests_total{route=\"%s\",arm=\"%s\",code=\"%d\"} %lld\n", a->route,
                              a->arm, a->requests.codes[k], (long long)a->requests.code_counts[k]);
    }
    mmt_strbuf_printf(o, "# HELP mmtune_route_request_seconds Time from arrival to reply of an A/B route's requests, by arm.\n"
                         "# TYPE mmtune_route_request_seconds histogram\n");
    for (int64_t i = 0; i < m->n_arms; i++) {
        const arm_series *a = &m->arms[i];
        char labels[200];
        snprintf(labels, sizeof labels, "route=\"%s\",arm=\"%s\"", a->route, a->arm);
        histogram_lines(o, "mmtune_route_request_seconds", labels, a->requests.buckets, LATENCY_BOUNDS, N_LATENCY,
                        a->requests.sum, a->requests.count);
    }
    mmt_strbuf_printf(o, "# HELP mmtune_feedback_total Feedback events (POST /v1/feedback) by route, arm and event.\n"
                         "# TYPE mmtune_feedback_total counter\n");
    for (int64_t i = 0; i < m->n_arms; i++) {
        const arm_series *a = &m->arms[i];
        for (int k = 0; k <= MMT_METRICS_MAX_EVENTS; k++)
            if (k < a->n_events || (k == MMT_METRICS_MAX_EVENTS && a->event_counts[k]))
                mmt_strbuf_printf(o, "mmtune_feedback_total{route=\"%s\",arm=\"%s\",event=\"%s\"} %lld\n", a->route,
                                  a->arm, a->events[k], (long long)a->event_counts[k]);
    }
}

/* Resident set size in bytes from /proc/self/statm (0 if unreadable). */
static int64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, resident = 0;
    if (!f) return 0;
    int ok = fscanf(f, "%lld %lld", &size, &resident) == 2;
    fclose(f);
    return ok ? resident * (int64_t)sysconf(_SC_PAGESIZE) : 0;
}

void mmt_metrics_render(mmt_metrics *m, const mmt_metrics_gauges *g, mmt_strbuf *o) {
    pthread_mutex_lock(&m->mu);
    mmt_strbuf_printf(o, "# HELP mmtune_requests_total Requests answered, by endpoint, adapter and HTTP status.\n"
                         "# TYPE mmtune_requests_total counter\n");
    int64_t n = m->n + (m->s[MMT_METRICS_MAX_SERIES].count ? 1 : 0);
    for (int64_t i = 0; i < n; i++) {
        const series *s = &m->s[i < m->n ? i : MMT_METRICS_MAX_SERIES];
        for (int k = 0; k < N_CODES && s->codes[k]; k++)
            mmt_strbuf_printf(o, "mmtune_requests_total{endpoint=\"%s\",adapter=\"%s\",code=\"%d\"} %lld\n", s->endpoint,
                              s->adapter, s->codes[k], (long long)s->code_counts[k]);
    }
    mmt_strbuf_printf(o, "# HELP mmtune_request_seconds Time from a request's arrival to its reply.\n"
                         "# TYPE mmtune_request_seconds histogram\n");
    for (int64_t i = 0; i < n; i++) {
        const series *s = &m->s[i < m->n ? i : MMT_METRICS_MAX_SERIES];
        char labels[200];
        snprintf(labels, sizeof labels, "endpoint=\"%s\",adapter=\"%s\"", s->endpoint, s->adapter);
        histogram_lines(o, "mmtune_request_seconds", labels, s->buckets, LATENCY_BOUNDS, N_LATENCY, s->sum, s->count);
    }
    if (m->n_arms) route_lines(m, o);
    mmt_strbuf_printf(o, "# HELP mmtune_batch_rows Rows (inputs) per batch run.\n# TYPE mmtune_batch_rows histogram\n");
    histogram_lines(o, "mmtune_batch_rows", "", m->batch_rows.buckets, ROW_BOUNDS, N_ROWS, m->batch_rows.sum,
                    m->batch_rows.count);
    mmt_strbuf_printf(o, "# HELP mmtune_batch_seconds Compute time per batch.\n# TYPE mmtune_batch_seconds histogram\n");
    histogram_lines(o, "mmtune_batch_seconds", "", m->batch_seconds.buckets, LATENCY_BOUNDS, N_LATENCY,
                    m->batch_seconds.sum, m->batch_seconds.count);
    mmt_strbuf_printf(o, "# HELP mmtune_generated_tokens_total Caption tokens generated.\n"
                         "# TYPE mmtune_generated_tokens_total counter\nmmtune_generated_tokens_total %lld\n",
                      (long long)m->tokens);
    pthread_mutex_unlock(&m->mu);
    mmt_strbuf_printf(o, "# HELP mmtune_queue_rows Inputs waiting for a batch.\n# TYPE mmtune_queue_rows gauge\n"
                         "mmtune_queue_rows %lld\n", (long long)g->queue_rows);
    mmt_strbuf_printf(o, "# HELP mmtune_requests_in_flight Requests not answered yet.\n"
                         "# TYPE mmtune_requests_in_flight gauge\nmmtune_requests_in_flight %lld\n", (long long)g->in_flight);
    mmt_strbuf_printf(o, "# HELP mmtune_http_connections Client connections open.\n"
                         "# TYPE mmtune_http_connections gauge\nmmtune_http_connections %lld\n", (long long)g->connections);
    mmt_strbuf_printf(o, "# HELP mmtune_adapters_loaded Adapters loaded over the base.\n"
                         "# TYPE mmtune_adapters_loaded gauge\nmmtune_adapters_loaded %lld\n", (long long)g->adapters);
    mmt_strbuf_printf(o, "# HELP mmtune_ready 1 once the model is loaded.\n# TYPE mmtune_ready gauge\nmmtune_ready %d\n",
                      g->ready);
    mmt_strbuf_printf(o, "# HELP mmtune_resident_memory_bytes Resident set size of the process.\n"
                         "# TYPE mmtune_resident_memory_bytes gauge\nmmtune_resident_memory_bytes %lld\n",
                      (long long)rss_bytes());
}
