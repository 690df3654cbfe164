/*
 * test_serve_ab.c — A/B routes and feedback of `mmtune serve` (serve/ab_route.h,
 * serve/feedback.h, server.c), on the tiny CLIP fixture and two LoRA adapters made for it:
 *   - the routing function: 10,000 key-less draws and 10,000 distinct client keys per route
 *     land on each arm within binomial bounds, |observed - n p| <= 4.5 sqrt(n p (1 - p))
 *     (a false alarm about once in 150,000 runs per arm); the same key gets the same arm
 *     every time and whatever the seed; one seed gives one sequence, from any number of
 *     threads the counts still add up; the arm boundaries are exact;
 *   - through HTTP (real sockets, http_client.h): 10,000 key-less requests on a 90/10 route
 *     from 4 client threads (about 4 s on 2 cores, 12 under ThreadSanitizer) are within the
 *     same bounds, each answer's embedding is its arm's adapter's (1e-6) and names it in
 *     the body and in X-Route-Arm, with a request id (body and X-Request-Id) of its own; keyed requests ("user" field or X-Client-Key header) get the arm the function
 *     predicts for their key, every time; key-less requests one after another get exactly
 *     the seeded stream's sequence, the same from a restarted server with the same seed;
 *   - /metrics counts per route and arm equal what the clients saw;
 *   - POST /v1/feedback lines land in the --feedback file with a timestamp, the request id
 *     and the arm that served it (found from the request id, the client key or given); the
 *     last MMT_ROUTE_RECENT request ids are remembered (the ring is checked on its own);
 *   - bad input: malformed routes (library and `mmtune serve` one-line errors), unknown
 *     adapters, duplicate names, malformed or oversized feedback, unloading an arm's adapter.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapter_fixture.h"
#include "check.h"
#include "cli_run.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/json.h"
#include "eval/report.h"
#include "http_client.h"
#include "mmtune.h"
#include "serve/ab_route.h"
#include "serve/feedback.h"
#include "serve/server.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"

#define HTTP_DRAWS 10000

static char root[] = "/tmp/mmt_serve_ab_XXXXXX";
static char lora_dir[2][300];
static mmt_clip *model;
static int64_t dim;
static float want[3][512]; /* the text's embedding by base, a0, a1 */
static const char *TEXT = "a photo of a cat";

/* |observed - n p| <= 4.5 sqrt(n p (1 - p)) */
static int binomial_ok(int64_t observed, int64_t n, double p) {
    return fabs((double)observed - (double)n * p) <= 4.5 * sqrt((double)n * p * (1 - p));
}

static void check_counts(const char *what, const int64_t *counts, const mmt_route *r, int64_t n) {
    int64_t sum = 0;
    for (int a = 0; a < r->n_arms; a++) {
        double p = (double)r->arms[a].weight / (double)r->total;
        sum += counts[a];
        CHECK_MSG(binomial_ok(counts[a], n, p), "%s: arm %s drawn %lld of %lld times, expected %.1f +- %.1f", what,
                  r->arms[a].adapter, (long long)counts[a], (long long)n, n * p, 4.5 * sqrt(n * p * (1 - p)));
    }
    CHECK_MSG(sum == n, "%s: %lld draws counted of %lld", what, (long long)sum, (long long)n);
}

/* ---- the routing function ------------------------------------------------------------ */

static void test_route_parse(void) {
    mmt_route r;
    CHECK_OK(mmt_route_parse("exp=a0:90,a1:10", &r));
    CHECK(!strcmp(r.name, "exp") && r.n_arms == 2 && r.total == 100 && !strcmp(r.arms[1].adapter, "a1") && r.arms[1].weight == 10);
    CHECK_OK(mmt_route_parse("one=base:1", &r));
    CHECK(r.n_arms == 1 && r.total == 1 && mmt_route_pick_random(&r) == 0 && mmt_route_pick_key(&r, "k", 1) == 0);
    /* the weight ranges: [0, 90) is arm 0, [90, 100) arm 1 */
    CHECK_OK(mmt_route_parse("exp=a0:90,a1:10", &r));
    CHECK(mmt_route_arm_at(&r, 0) == 0 && mmt_route_arm_at(&r, 89) == 0 && mmt_route_arm_at(&r, 90) == 1 &&
          mmt_route_arm_at(&r, 99) == 1);
    char many[400] = "m=";
    for (int i = 0; i <= MMT_ROUTE_MAX_ARMS; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "%sa%d:1", i ? "," : "", i);
    struct {
        const char *spec, *needle;
    } bad[] = {{"exp", "expected NAME=ADAPTER:WEIGHT"},
               {"=a:1", "expected NAME=ADAPTER:WEIGHT"},
               {"exp=", "an empty arm"},
               {"exp=a:1,", "an empty arm"},
               {"exp=a:1,,b:2", "an empty arm"},
               {"exp=a", "has no weight"},
               {"exp=a:0", "not an integer from 1 to 1000000"},
               {"exp=a:-1", "not an integer"},
               {"exp=a:1.5", "not an integer"},
               {"exp=a:x", "not an integer"},
               {"exp=a:", "not an integer"},
               {"exp=a:90,b:10000000", "the weight '10000000' of arm 'b'"},
               {"exp=a:1,a:2", "adapter 'a' is in it twice"},
               {"exp=a b:1", "an adapter name is"},
               {"exp=:1", "an adapter name is"},
               {"base=a:1", "the name must be"},
               {"e/x=a:1", "the name must be"},
               {"exp=a:1\n", "a control character at byte 7"},
               {many, "more than 16 arms"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_FAILS(mmt_route_parse(bad[i].spec, &r), MMT_STATUS_INVALID_ARGUMENT, bad[i].needle);
        CHECK_MSG(!strchr(mmt_last_error(), '\n'), "case %zu: not one line", i);
    }
}

typedef struct drawer {
    mmt_route *r;
    int n;
    int64_t counts[MMT_ROUTE_MAX_ARMS];
} drawer;

static void *draw_thread(void *arg) {
    drawer *d = arg;
    for (int i = 0; i < d->n; i++) d->counts[mmt_route_pick_random(d->r)]++;
    return NULL;
}

static void test_route_draws(void) {
    enum { N = 10000 };
    const char *specs[] = {"exp=a0:90,a1:10", "trio=base:5,a0:3,a1:2", "even=x:1,y:1"};
    for (int s = 0; s < 3; s++) {
        mmt_route r;
        CHECK_OK(mmt_route_parse(specs[s], &r));
        mmt_route_seed(&r, 1234);
        int64_t random[MMT_ROUTE_MAX_ARMS] = {0}, keyed[MMT_ROUTE_MAX_ARMS] = {0};
        for (int i = 0; i < N; i++) random[mmt_route_pick_random(&r)]++;
        check_counts(specs[s], random, &r, N);
        int sticky_broken = 0;
        for (int i = 0; i < N; i++) {
            char key[32];
            int n = snprintf(key, sizeof key, "user-%d", i);
            int arm = mmt_route_pick(&r, key, (size_t)n);
            keyed[arm]++;
            if (i < 500) /* the same key again, after other draws, from a reseeded route */
                for (int k = 0; k < 3; k++) {
                    mmt_route_seed(&r, (uint64_t)k);
                    sticky_broken += mmt_route_pick_key(&r, key, (size_t)n) != arm;
                }
        }
        check_counts(specs[s], keyed, &r, N);
        CHECK_MSG(sticky_broken == 0, "%s: %d keys changed arm", specs[s], sticky_broken);
    }
    /* one seed, one sequence; another seed, another */
    mmt_route a, b;
    CHECK_OK(mmt_route_parse("coin=h:1,t:1", &a));
    CHECK_OK(mmt_route_parse("coin=h:1,t:1", &b));
    mmt_route_seed(&a, 7), mmt_route_seed(&b, 7);
    int same = 0;
    for (int i = 0; i < 1000; i++) same += mmt_route_pick_random(&a) == mmt_route_pick_random(&b);
    CHECK(same == 1000);
    mmt_route_seed(&b, 8);
    same = 0;
    for (int i = 0; i < 1000; i++) same += mmt_route_pick_random(&a) == mmt_route_pick_random(&b);
    CHECK_MSG(same > 400 && same < 600, "seeds 7 and 8 agree on %d of 1000 coin flips", same);
    /* the same key on two routes of equal weights: independent arms (the route's name is hashed in) */
    CHECK_OK(mmt_route_parse("other=h:1,t:1", &b));
    same = 0;
    for (int i = 0; i < 1000; i++) {
        char key[32];
        int n = snprintf(key, sizeof key, "k%d", i);
        same += mmt_route_pick_key(&a, key, (size_t)n) == mmt_route_pick_key(&b, key, (size_t)n);
    }
    CHECK_MSG(same > 400 && same < 600, "two routes agree on %d of 1000 keys", same);
    /* draws from 4 threads at once: none lost, still within the bounds */
    mmt_route r;
    CHECK_OK(mmt_route_parse("exp=a0:90,a1:10", &r));
    drawer d[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        d[t] = (drawer){.r = &r, .n = N / 4};
        pthread_create(&th[t], NULL, draw_thread, &d[t]);
    }
    int64_t counts[MMT_ROUTE_MAX_ARMS] = {0};
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        for (int a2 = 0; a2 < r.n_arms; a2++) counts[a2] += d[t].counts[a2];
    }
    check_counts("4 threads", counts, &r, N);
    /* the recent requests remember the last MMT_ROUTE_RECENT ids */
    mmt_route_recent rr;
    CHECK_OK(mmt_route_recent_init(&rr));
    for (int i = 0; i < MMT_ROUTE_RECENT + 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "id%d", i);
        mmt_route_recent_put(&rr, id, i % 3, i % 2);
    }
    int route = -1, arm = -1, lost = 0;
    CHECK(!mmt_route_recent_get(&rr, "id5", &route, &arm) && !mmt_route_recent_get(&rr, "id9", &route, &arm));
    for (int i = 10; i < MMT_ROUTE_RECENT + 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "id%d", i);
        lost += !mmt_route_recent_get(&rr, id, &route, &arm) || route != i % 3 || arm != i % 2;
    }
    CHECK_MSG(lost == 0, "%d of the last %d ids lost or wrong", lost, MMT_ROUTE_RECENT);
    CHECK(!mmt_route_recent_get(&rr, "nope", &route, &arm));
    mmt_route_recent_put(&rr, "again", 1, 1);
    mmt_route_recent_put(&rr, "again", 2, 0);
    CHECK(mmt_route_recent_get(&rr, "again", &route, &arm) && route == 2 && arm == 0);
    mmt_route_recent_free(&rr);
}

/* ---- the server -------------------------------------------------------------------------- */

static void make_adapters(void) {
    for (int a = 0; a < 2; a++) {
        adapter_fixture_serve_lora(model, root, a, lora_dir[a], sizeof lora_dir[a]);
        mmt_clip_adapter *ad = NULL;
        CHECK_OK(mmt_clip_adapter_open(model, lora_dir[a], &ad));
        mmt_clip_run *run = NULL;
        CHECK_OK(mmt_clip_run_create(model, &run));
        if (run && ad) CHECK_OK(mmt_clip_run_embed_texts(run, &TEXT, &ad, 1, want[a + 1]));
        if (run && a == 0) CHECK_OK(mmt_clip_run_embed_texts(run, &TEXT, NULL, 1, want[0]));
        mmt_clip_run_free(run);
        mmt_clip_adapter_close(ad);
    }
}

static char feedback_path[320];
static const char *ROUTES[] = {"exp=a0:90,a1:10", "trio=base:5,a0:3,a1:2"};

static mmt_server *start(const char *const *routes, int64_t n_routes, uint64_t seed, const char *feedback) {
    mmt_server_options o;
    mmt_server_options_default(&o);
    o.model_dir = MODEL;
    o.port = 0;
    o.max_wait_ms = 1;
    const char *names[] = {"a0", "a1"}, *dirs[] = {lora_dir[0], lora_dir[1]};
    o.adapter_names = names, o.adapter_dirs = dirs, o.n_adapters = 2;
    o.routes = routes, o.n_routes = n_routes, o.route_seed = seed;
    o.feedback_path = feedback;
    return http_server_start(&o);
}

/* The arm a routed answer names (-1 base, 0 a0, 1 a1; -2 when missing or inconsistent), with
 * its request id; checks the embedding is that adapter's. */
typedef struct answer {
    int adapter;  /* -1 base, 0 a0, 1 a1; -2 unknown */
    int embedding_ok;
    char request_id[80];
} answer;

static int adapter_index(const char *name) { return !strcmp(name, "base") ? -1 : !strcmp(name, "a0") ? 0 : !strcmp(name, "a1") ? 1 : -2; }

static answer read_answer(const response *r, const char *route) {
    answer a = {.adapter = -2};
    mmt_json_doc *doc = NULL;
    char header_arm[80] = "", header_route[80] = "", header_id[80] = "";
    if (r->status != 200 || !r->body || mmt_json_parse(r->body, r->len, "answer", &doc) != MMT_OK) return a;
    const mmt_json *root = mmt_json_root(doc);
    const mmt_json *ad = mmt_json_get(root, "adapter"), *rt = mmt_json_get(root, "route"), *id = mmt_json_get(root, "request_id");
    const mmt_json *model_field = mmt_json_get(root, "model");
    response_header(r, "X-Route-Arm", header_arm, sizeof header_arm);
    response_header(r, "X-Route", header_route, sizeof header_route);
    response_header(r, "X-Request-Id", header_id, sizeof header_id);
    if (ad && ad->type == MMT_JSON_STRING && rt && rt->type == MMT_JSON_STRING && !strcmp(rt->string, route) && id &&
        id->type == MMT_JSON_STRING && !strcmp(id->string, header_id) && !strcmp(ad->string, header_arm) &&
        !strcmp(header_route, route) && model_field && !strcmp(model_field->string, ad->string)) {
        a.adapter = adapter_index(ad->string);
        snprintf(a.request_id, sizeof a.request_id, "%s", id->string);
    }
    const mmt_json *data = mmt_json_get(root, "data");
    const mmt_json *e = data && data->len == 1 ? mmt_json_get(&data->items[0], "embedding") : NULL;
    if (a.adapter >= -1 && e && e->type == MMT_JSON_ARRAY && (int64_t)e->len == dim) {
        double m = 0;
        for (int64_t c = 0; c < dim; c++) m = fmax(m, fabs(e->items[c].number - want[a.adapter + 1][c]));
        a.embedding_ok = m <= 1e-6;
    }
    mmt_json_free(doc);
    return a;
}

typedef struct ab_client {
    int n;
    int64_t counts[3]; /* base, a0, a1 */
    int failed, wrong;
    answer *answers;   /* n of them */
} ab_client;

static void *ab_client_thread(void *arg) {
    ab_client *c = arg;
    for (int k = 0; k < c->n; k++) {
        char body[200];
        snprintf(body, sizeof body, "{\"input\": \"%s\", \"model\": \"exp\"}", TEXT);
        response r = call("POST", "/v1/embeddings", body);
        answer a = read_answer(&r, "exp");
        c->answers[k] = a;
        if (a.adapter < -1) c->failed++;
        else {
            c->counts[a.adapter + 1]++;
            c->wrong += !a.embedding_ok;
        }
        response_free(&r);
    }
    return NULL;
}

/* The value of one exposition line "name{labels} value" (-1 when absent). */
static double metric(const char *text, const char *series) {
    const char *p = text;
    size_t n = strlen(series);
    while (p && (p = strstr(p, series))) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return atof(p + n + 1);
        p += n;
    }
    return -1;
}

static int file_lines(const char *path) {
    char *text = check_read_file(path, NULL);
    int n = 0;
    for (const char *p = text; p && *p; p++) n += *p == '\n';
    free(text);
    return n;
}

/* The k-th answer counted from the end, over the clients in turn (the newest requests). */
static const answer *last_answer(const ab_client *cl, int n_clients, int k) {
    const ab_client *c = &cl[k % n_clients];
    return &c->answers[c->n - 1 - k / n_clients];
}

static void test_routes_over_http(void) {
    snprintf(feedback_path, sizeof feedback_path, "%s/feedback.jsonl", root);
    mmt_server *s = start(ROUTES, 2, 11, feedback_path);
    if (!s) return;
    /* (1) key-less requests on the 90/10 route, from 4 clients at once */
    enum { T = 4 };
    pthread_t th[T];
    ab_client cl[T];
    for (int t = 0; t < T; t++) {
        cl[t] = (ab_client){.n = HTTP_DRAWS / T, .answers = calloc(HTTP_DRAWS / T, sizeof(answer))};
        pthread_create(&th[t], NULL, ab_client_thread, &cl[t]);
    }
    int64_t counts[3] = {0};
    int failed = 0, wrong = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        for (int a = 0; a < 3; a++) counts[a] += cl[t].counts[a];
        failed += cl[t].failed, wrong += cl[t].wrong;
    }
    CHECK_MSG(failed == 0 && wrong == 0, "%d answers without a consistent arm, %d with another adapter's embedding", failed, wrong);
    mmt_route exp;
    CHECK_OK(mmt_route_parse(ROUTES[0], &exp));
    int64_t by_arm[2] = {counts[1], counts[2]};
    check_counts("HTTP exp", by_arm, &exp, HTTP_DRAWS);
    CHECK(counts[0] == 0);
    /* request ids: all different */
    int dup = 0;
    for (int t = 0; t < T && cl[0].answers; t++)
        for (int k = 1; k < cl[t].n; k++) dup += !strcmp(cl[t].answers[k].request_id, cl[t].answers[k - 1].request_id);
    CHECK(dup == 0 && strlen(cl[0].answers[0].request_id) == 16);

    /* (2) keyed requests: the arm the function predicts, every time, by field or header */
    mmt_route trio;
    CHECK_OK(mmt_route_parse(ROUTES[1], &trio));
    int64_t keyed[3] = {0};
    int mispredicted = 0, bad = 0;
    enum { KEYS = 60 };
    int key_arm[KEYS];
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof key, "client-%d", k);
        int predicted = mmt_route_pick_key(&trio, key, strlen(key));
        key_arm[k] = adapter_index(trio.arms[predicted].adapter);
        keyed[predicted]++;
        for (int rep = 0; rep < 3; rep++) {
            char body[300], head[200];
            response r;
            if (rep == 1) { /* the header */
                snprintf(body, sizeof body, "{\"input\": \"%s\", \"model\": \"trio\"}", TEXT);
                snprintf(head, sizeof head, "X-Client-Key: %s\r\n", key);
                r = call_raw("POST", "/v1/embeddings", body, strlen(body), head);
            } else {
                snprintf(body, sizeof body, "{\"input\": \"%s\", \"model\": \"trio\", \"user\": \"%s\"}", TEXT, key);
                r = call("POST", "/v1/embeddings", body);
            }
            answer a = read_answer(&r, "trio");
            bad += a.adapter < -1 || !a.embedding_ok;
            mispredicted += a.adapter != key_arm[k];
            response_free(&r);
        }
    }
    CHECK_MSG(bad == 0 && mispredicted == 0, "keyed: %d bad answers, %d not the predicted arm", bad, mispredicted);
    CHECK(keyed[0] > 0 && keyed[1] > 0 && keyed[2] > 0); /* 60 keys reach every arm of 5/3/2 */
    /* a classify request through a route, and a client's own request id */
    const char *corrupt = "{\"images\": [\"iVBORw0KGgo=\"], \"labels\": [\"cat\"], \"model\": \"exp\"}";
    response r = call_raw("POST", "/v1/classify", corrupt, strlen(corrupt), "X-Request-Id: my-req.1\r\n");
    char h[80] = "";
    CHECK_MSG(r.status == 400 && response_header(&r, "X-Request-Id", h, sizeof h) && !strcmp(h, "my-req.1") &&
                  response_header(&r, "X-Route", h, sizeof h) && !strcmp(h, "exp"),
              "classify with a corrupt image through a route: %d %s", r.status, r.body);
    response_free(&r);
    {
        size_t len = 0;
        char path[400];
        snprintf(path, sizeof path, "%s/chelsea.jpg", MMT_FIXTURE_DIR "/clip/images");
        char *img = check_read_file(path, &len);
        mmt_strbuf b = {0};
        mmt_strbuf_printf(&b, "{\"images\": [\"");
        mmt_report_base64(&b, (const uint8_t *)img, len);
        mmt_strbuf_printf(&b, "\"], \"labels\": [\"cat\", \"dog\"], \"model\": \"exp\", \"user\": \"client-0\"}");
        free(img);
        r = call_raw("POST", "/v1/classify", b.data, b.len, "X-Request-Id: my-req.2\r\n");
        mmt_strbuf_free(&b);
        CHECK_MSG(r.status == 200 && r.body && strstr(r.body, "\"route\": \"exp\"") && strstr(r.body, "\"request_id\": \"my-req.2\""),
                  "classify through a route: %d %s", r.status, r.body);
        response_free(&r);
    }
    /* requests naming an adapter are not routed */
    r = call("POST", "/v1/embeddings", "{\"input\": \"x\", \"model\": \"a1\"}");
    CHECK(r.status == 200 && r.body && !strstr(r.body, "\"route\"") && response_header(&r, "X-Request-Id", h, sizeof h) &&
          !response_header(&r, "X-Route-Arm", h, sizeof h));
    response_free(&r);
    r = call("GET", "/nowhere", NULL);
    CHECK(r.status == 404 && response_header(&r, "X-Request-Id", h, sizeof h) && strlen(h) == 16);
    response_free(&r);
    r = call("GET", "/v1/routes", NULL);
    CHECK_MSG(r.status == 200 && r.body && strstr(r.body, "{\"name\": \"exp\", \"total_weight\": 100, \"arms\": [{\"adapter\": \"a0\", \"weight\": 90}") &&
                  strstr(r.body, "\"trio\"") && strstr(r.body, "\"seed\": 11"),
              "GET /v1/routes: %s", r.body);
    response_free(&r);

    /* (3) /metrics: per route and arm, what the clients saw */
    r = call("GET", "/metrics", NULL);
    CHECK(r.status == 200 && r.body);
    int64_t trio_seen[3] = {keyed[0] * 3, keyed[1] * 3, keyed[2] * 3};
    const char *arms[3] = {"base", "a0", "a1"};
    double n400 = 0;
    for (int a = 1; a < 3 && r.body; a++) {
        char series[160];
        int extra = mmt_route_pick_key(&exp, "client-0", 8) == a - 1; /* client-0's classify request */
        snprintf(series, sizeof series, "mmtune_route_requests_total{route=\"exp\",arm=\"%s\",code=\"200\"}", arms[a]);
        double ok200 = metric(r.body, series);
        CHECK_MSG(ok200 == (double)(counts[a] + extra), "%s = %g, clients saw %lld", series, ok200, (long long)(counts[a] + extra));
        snprintf(series, sizeof series, "mmtune_route_requests_total{route=\"exp\",arm=\"%s\",code=\"400\"}", arms[a]);
        double bad400 = fmax(metric(r.body, series), 0); /* the corrupt image, on whichever arm drew it */
        n400 += bad400;
        snprintf(series, sizeof series, "mmtune_route_request_seconds_count{route=\"exp\",arm=\"%s\"}", arms[a]);
        CHECK_MSG(metric(r.body, series) == ok200 + bad400, "%s = %g", series, metric(r.body, series));
    }
    CHECK_MSG(n400 == 1, "%g routed 400s counted, 1 sent", n400);
    for (int a = 0; a < 3 && r.body; a++) {
        char series[160];
        snprintf(series, sizeof series, "mmtune_route_requests_total{route=\"trio\",arm=\"%s\",code=\"200\"}", arms[a]);
        CHECK_MSG(metric(r.body, series) == (double)trio_seen[a], "%s = %g, clients saw %lld", series, metric(r.body, series),
                  (long long)trio_seen[a]);
    }
    CHECK(r.body && metric(r.body, "mmtune_route_weight{route=\"exp\",arm=\"a0\"}") == 90 &&
          metric(r.body, "mmtune_route_weight{route=\"trio\",arm=\"base\"}") == 5);
    response_free(&r);

    /* (4) feedback: by request id (route and arm found), by client key, with an explicit arm */
    int64_t clicks[2] = {0, 0};
    int fb_bad = 0;
    for (int k = 0; k < 20; k++) {
        const answer *a = last_answer(cl, T, k);
        char body[300];
        snprintf(body, sizeof body, "{\"request_id\": \"%s\", \"event\": \"click\", \"value\": %d}", a->request_id, k);
        response f = call("POST", "/v1/feedback", body);
        char expect[120];
        snprintf(expect, sizeof expect, "\"arm\": \"%s\"", arms[a->adapter + 1]);
        fb_bad += f.status != 200 || !f.body || !strstr(f.body, expect) || !strstr(f.body, "\"route\": \"exp\"");
        clicks[a->adapter]++;
        response_free(&f);
    }
    CHECK_MSG(fb_bad == 0, "%d feedback requests by request id failed", fb_bad);
    int64_t labels[3] = {0};
    for (int k = 0; k < 6; k++) {
        char body[300], expect[120];
        snprintf(body, sizeof body, "{\"user\": \"client-%d\", \"route\": \"trio\", \"event\": \"label\", \"value\": \"good \\\"one\\\"\"}", k);
        response f = call("POST", "/v1/feedback", body);
        snprintf(expect, sizeof expect, "\"arm\": \"%s\"", arms[key_arm[k] + 1]);
        CHECK_MSG(f.status == 200 && f.body && strstr(f.body, expect), "feedback by key %d: %d %s", k, f.status, f.body);
        labels[key_arm[k] + 1]++;
        response_free(&f);
    }
    const char *by_header = "{\"route\": \"trio\", \"event\": \"label\", \"value\": null}";
    r = call_raw("POST", "/v1/feedback", by_header, strlen(by_header), "X-Client-Key: client-7\r\n");
    CHECK_MSG(r.status == 200, "feedback with the key in the header: %d %s", r.status, r.body);
    labels[key_arm[7] + 1]++;
    response_free(&r);
    r = call("POST", "/v1/feedback",
             "{\"request_id\": \"from-elsewhere\", \"route\": \"exp\", \"arm\": \"a1\", \"event\": \"rating\", \"value\": 4.5, "
             "\"metadata\": {\"page\": 2, \"tags\": [\"x\"]}}");
    CHECK_MSG(r.status == 200 && r.body && strstr(r.body, "\"arm\": \"a1\""), "explicit arm: %d %s", r.status, r.body);
    response_free(&r);
    /* route and arm alone name the arm; numbers past the double range stay valid JSON in the file */
    r = call("POST", "/v1/feedback", "{\"route\": \"exp\", \"arm\": \"a1\", \"event\": \"rating\", \"value\": 1e999, "
                                     "\"metadata\": {\"x\": -1e999}}");
    CHECK_MSG(r.status == 200 && r.body && strstr(r.body, "\"request_id\": null"), "route and arm: %d %s", r.status, r.body);
    response_free(&r);
    /* the file: one line per event, each with a timestamp, its request id and its arm */
    char *text = check_read_file(feedback_path, NULL);
    int lines = 0, line_bad = 0;
    for (char *line = text, *nl; line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) {
            line_bad++;
            break;
        }
        mmt_json_doc *doc = NULL;
        if (mmt_json_parse(line, (size_t)(nl - line), "feedback line", &doc) != MMT_OK) {
            line_bad++;
            continue;
        }
        const mmt_json *o = mmt_json_root(doc), *t = mmt_json_get(o, "time"), *arm = mmt_json_get(o, "arm");
        const mmt_json *id = mmt_json_get(o, "request_id"), *ev = mmt_json_get(o, "event");
        int ok = t && t->type == MMT_JSON_STRING && t->len == 24 && t->string[4] == '-' && t->string[10] == 'T' &&
                 t->string[23] == 'Z' && arm && arm->type == MMT_JSON_STRING && ev && ev->type == MMT_JSON_STRING;
        if (ok && lines < 20) { /* the clicks: the request's id and the arm that served it */
            const answer *a = last_answer(cl, T, lines);
            ok = id && !strcmp(id->string, a->request_id) && !strcmp(arm->string, arms[a->adapter + 1]) &&
                 !strcmp(ev->string, "click") && mmt_json_get(o, "value")->number == lines;
        } else if (ok && lines < 27) {
            int k = lines - 20;
            const mmt_json *u = mmt_json_get(o, "user"), *v = mmt_json_get(o, "value");
            char key[32];
            snprintf(key, sizeof key, "client-%d", k < 6 ? k : 7);
            ok = u && !strcmp(u->string, key) && !strcmp(arm->string, arms[key_arm[k < 6 ? k : 7] + 1]) && !id && v &&
                 (k < 6 ? v->type == MMT_JSON_STRING && !strcmp(v->string, "good \"one\"") : v->type == MMT_JSON_NULL);
        } else if (ok && lines == 27) {
            const mmt_json *meta = mmt_json_get(o, "metadata");
            ok = !strcmp(arm->string, "a1") && !strcmp(id->string, "from-elsewhere") && meta &&
                 mmt_json_get(meta, "page")->number == 2 && mmt_json_get(o, "value")->number == 4.5;
        } else if (ok) {
            const mmt_json *meta = mmt_json_get(o, "metadata"), *x = meta ? mmt_json_get(meta, "x") : NULL;
            ok = !strcmp(arm->string, "a1") && !id && mmt_json_get(o, "value")->number > 1e308 && x && x->number < -1e308;
        }
        line_bad += !ok;
        if (!ok) fprintf(stderr, "     feedback line %d: %.*s\n", lines, (int)(nl - line), line);
        lines++;
        mmt_json_free(doc);
    }
    free(text);
    CHECK_MSG(lines == 29 && line_bad == 0, "%d feedback lines, %d wrong", lines, line_bad);
    r = call("GET", "/metrics", NULL);
    for (int a = 0; a < 2 && r.body; a++) {
        char series[160];
        snprintf(series, sizeof series, "mmtune_feedback_total{route=\"exp\",arm=\"%s\",event=\"click\"}", arms[a + 1]);
        double got = metric(r.body, series);
        CHECK_MSG(got == (double)clicks[a] || (clicks[a] == 0 && got < 0), "%s = %g, %lld sent", series, got, (long long)clicks[a]);
    }
    for (int a = 0; a < 3 && r.body; a++) {
        char series[160];
        snprintf(series, sizeof series, "mmtune_feedback_total{route=\"trio\",arm=\"%s\",event=\"label\"}", arms[a]);
        double got = metric(r.body, series);
        CHECK_MSG(got == (double)labels[a] || (labels[a] == 0 && got < 0), "%s = %g, %lld sent", series, got, (long long)labels[a]);
    }
    CHECK(r.body && metric(r.body, "mmtune_feedback_total{route=\"exp\",arm=\"a1\",event=\"rating\"}") == 2);
    response_free(&r);

    /* (5) bad input: each a one-line JSON error, and nothing written */
    char big[MMT_FEEDBACK_MAX_BODY + 100];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *big_head = "{\"event\": \"click\", \"user\": \"u\", \"route\": \"exp\", \"value\": \"";
    memcpy(big, big_head, strlen(big_head));
    memcpy(big + sizeof big - 4, "\"}", 3);
    char known_id[200];
    snprintf(known_id, sizeof known_id, "{\"request_id\": \"%s\", \"arm\": \"%s\", \"event\": \"click\"}",
             last_answer(cl, T, 0)->request_id, last_answer(cl, T, 0)->adapter == 0 ? "a1" : "a0");
    struct {
        const char *body;
        int status;
        const char *needle;
    } bad_fb[] = {{"{\"event\": ", 400, "request body"},
                  {"[1]", 400, "JSON object"},
                  {"{\"user\": \"u\", \"route\": \"exp\"}", 400, "\\\"event\\\" is required"},
                  {"{\"user\": \"u\", \"route\": \"exp\", \"event\": \"a b\"}", 400, "\\\"event\\\" must be"},
                  {"{\"user\": \"u\", \"route\": \"exp\", \"event\": 3}", 400, "\\\"event\\\" must be a string"},
                  {"{\"user\": \"u\", \"route\": \"exp\", \"event\": \"click\", \"colour\": 1}", 400, "unknown field \\\"colour\\\""},
                  {"{\"user\": \"u\", \"route\": \"exp\", \"event\": \"click\", \"value\": [1]}", 400, "\\\"value\\\" must be"},
                  {"{\"user\": \"u\", \"route\": \"exp\", \"event\": \"click\", \"metadata\": 1}", 400, "\\\"metadata\\\" must be"},
                  {"{\"route\": \"exp\", \"event\": \"click\"}", 400, "give \\\"request_id\\\""},
                  {"{\"user\": \"u\", \"event\": \"click\"}", 400, "\\\"route\\\" is required"},
                  {"{\"user\": \"u\", \"route\": \"nope\", \"event\": \"click\"}", 404, "no route named 'nope'"},
                  {"{\"user\": \"u\", \"route\": \"exp\", \"arm\": \"base\", \"event\": \"click\"}", 400, "not an arm of route 'exp'"},
                  {"{\"request_id\": \"unknown-id\", \"route\": \"exp\", \"event\": \"click\"}", 400, "not among the last"},
                  {"{\"request_id\": \"bad id!\", \"route\": \"exp\", \"event\": \"click\"}", 400, "request_id"},
                  {known_id, 400, "was served by arm"},
                  {"{\"request_id\": \"never-seen\", \"event\": \"click\"}", 400, "not among the recent routed requests"},
                  {big, 413, "over the limit of 65536"}};
    int before = file_lines(feedback_path);
    for (size_t i = 0; i < sizeof bad_fb / sizeof *bad_fb; i++) {
        response f = call("POST", "/v1/feedback", bad_fb[i].body);
        CHECK_MSG(f.status == bad_fb[i].status && f.body && strstr(f.body, bad_fb[i].needle) && strstr(f.body, "\"error\"") &&
                      strchr(f.body, '\n') == f.body + f.len - 1,
                  "feedback case %zu: %d %s", i, f.status, f.body ? f.body : "(none)");
        response_free(&f);
    }
    CHECK(file_lines(feedback_path) == before);
    r = call("GET", "/v1/feedback", NULL);
    CHECK(r.status == 405);
    response_free(&r);
    r = call("POST", "/v1/embeddings", "{\"input\": \"x\", \"model\": \"exp\", \"user\": 5}");
    CHECK(r.status == 400 && r.body && strstr(r.body, "\\\"user\\\" must be a string"));
    response_free(&r);
    /* an arm's adapter stays loaded; a route's name cannot be an adapter's */
    r = call("DELETE", "/v1/adapters/a1", NULL);
    CHECK_MSG(r.status == 409 && r.body && strstr(r.body, "arm of route 'exp'"), "%d %s", r.status, r.body);
    response_free(&r);
    char load[400];
    snprintf(load, sizeof load, "{\"name\": \"trio\", \"path\": \"%s\"}", lora_dir[0]);
    r = call("POST", "/v1/adapters", load);
    CHECK_MSG(r.status == 409 && r.body && strstr(r.body, "name of a route"), "%d %s", r.status, r.body);
    response_free(&r);
    r = call("POST", "/v1/embeddings", "{\"input\": \"a photo of a cat\", \"model\": \"exp\", \"user\": \"client-3\"}");
    CHECK(read_answer(&r, "exp").embedding_ok);
    response_free(&r);
    for (int t = 0; t < T; t++) free(cl[t].answers);
    mmt_server_stop(s, 10);
}

/* Key-less requests one after another get the seeded stream's sequence, again after a restart. */
static void test_seeded_sequence(void) {
    const char *coin[] = {"coin=a0:1,a1:1"};
    enum { N = 24 };
    int seen[2][N];
    for (int run = 0; run < 2; run++) {
        mmt_server *s = start(coin, 1, 5, NULL);
        if (!s) return;
        for (int k = 0; k < N; k++) {
            response r = call("POST", "/v1/embeddings", "{\"input\": \"a photo of a cat\", \"model\": \"coin\"}");
            seen[run][k] = read_answer(&r, "coin").adapter;
            response_free(&r);
        }
        if (run == 0) { /* no --feedback: the endpoint says so */
            response r = call("POST", "/v1/feedback", "{\"user\": \"u\", \"route\": \"coin\", \"event\": \"click\"}");
            CHECK(r.status == 404 && r.body && strstr(r.body, "--feedback FILE"));
            response_free(&r);
        }
        mmt_server_stop(s, 10);
    }
    mmt_route r;
    CHECK_OK(mmt_route_parse(coin[0], &r));
    mmt_route_seed(&r, 5);
    int differ = 0, heads = 0;
    for (int k = 0; k < N; k++) {
        int arm = mmt_route_pick_random(&r);
        differ += seen[0][k] != arm || seen[1][k] != arm;
        heads += arm == 0;
    }
    CHECK_MSG(differ == 0, "%d of %d draws differ from the seeded stream", differ, N);
    CHECK(heads > 0 && heads < N);
}

static void test_start_errors(void) {
    struct {
        const char *routes[2];
        int n;
        const char *feedback, *needle;
    } bad[] = {{{"exp=a0:1,nobody:1"}, 1, NULL, "route 'exp': no adapter named 'nobody'"},
               {{"exp=a0:1", "exp=a1:1"}, 2, NULL, "route 'exp' is given twice"},
               {{"a1=a0:1"}, 1, NULL, "the name is also an adapter's"},
               {{"tiny-a=a0:1"}, 1, NULL, "the model folder's"},
               {{"exp=a0:0"}, 1, NULL, "not an integer from 1"},
               {{"exp=a0:1"}, 1, "/nonexistent/dir/feedback.jsonl", "feedback file /nonexistent/dir/feedback.jsonl"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mmt_server_options o;
        mmt_server_options_default(&o);
        o.model_dir = MODEL;
        o.port = 0;
        const char *names[] = {"a0", "a1"}, *dirs[] = {lora_dir[0], lora_dir[1]};
        o.adapter_names = names, o.adapter_dirs = dirs, o.n_adapters = 2;
        o.routes = bad[i].routes, o.n_routes = bad[i].n, o.feedback_path = bad[i].feedback;
        mmt_server *s = NULL;
        mmt_status st = mmt_server_start(&o, &s);
        CHECK_MSG(st != MMT_OK && !s && strstr(mmt_last_error(), bad[i].needle), "case %zu: %s", i, mmt_last_error());
        if (s) mmt_server_stop(s, 1);
    }
    /* the binary: one line on stderr, a non-zero exit, before anything loads */
    cli_run_setup(root);
    struct {
        const char *args, *needle;
    } cli[] = {{"--route exp=a0:90,nobody:10", "no adapter named 'nobody'"},
               {"--route exp=a0:ninety", "weight 'ninety'"},
               {"--route exp=a0:1 --route exp=a1:1", "given twice"},
               {"--route exp=a0:1 --route-seed -3", "--route-seed"},
               {"--route exp=a0:1 --feedback-fsync sometimes --feedback /tmp/x", "--feedback-fsync"},
               {"--feedback-fsync always", "needs --feedback"}};
    for (size_t i = 0; i < sizeof cli / sizeof *cli; i++) {
        int rc = run("serve --model %s --adapter a0=%s --adapter a1=%s --port 0 %s", MODEL, lora_dir[0], lora_dir[1], cli[i].args);
        int n_lines = 0;
        for (const char *p = err_text; p && *p; p++) n_lines += *p == '\n';
        CHECK_MSG(rc != 0 && err_text && strstr(err_text, cli[i].needle) && n_lines == 1, "cli case %zu: exit %d, stderr: %s", i,
                  rc, err_text ? err_text : "(none)");
    }
    CHECK(run("serve --help") == 0 && out_text && strstr(out_text, "--route NAME=A:90,B:10") && strstr(out_text, "--feedback FILE"));
    cli_run_cleanup();
}

int main(void) {
    if (!mkdtemp(root)) return 1;
    CHECK_OK(mmt_clip_load(MODEL, &model));
    if (!model) return check_summary();
    dim = mmt_clip_embed_dim(model);
    CHECK(dim <= 512);
    make_adapters();
    RUN(test_route_parse);
    RUN(test_route_draws);
    double t0 = mmt_now_seconds();
    RUN(test_routes_over_http);
    fprintf(stderr, "     %d routed requests over HTTP and the rest took %.1f s\n", HTTP_DRAWS, mmt_now_seconds() - t0);
    RUN(test_seeded_sequence);
    RUN(test_start_errors);
    mmt_clip_free(model);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return check_summary();
}
