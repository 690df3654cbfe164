/*
 * serve.c — `mmtune serve`: the HTTP service of serve/server.h until SIGTERM or SIGINT, then
 * a drain (requests in flight are answered) and exit 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "serve/feedback.h"
#include "serve/server.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_START_ADAPTERS 256
#define MAX_ROUTES 64

static const char *SERVE_HELP =
    "usage: mmtune serve --model DIR [--adapter NAME=DIR]... [--index DIR] [--host ADDR] [--port N]\n"
    "                    [--captioner GIT_DIR [--caption-adapter NAME=DIR]...]\n"
    "                    [--route NAME=ADAPTER:WEIGHT,ADAPTER:WEIGHT...]... [--route-seed N]\n"
    "                    [--feedback FILE [--feedback-fsync second|always|never]]\n"
    "                    [--max-batch N] [--max-wait-ms MS] [--threads N] [limits]\n"
    "\n"
    "Serves a CLIP over HTTP (docs/serving.md): POST /v1/embeddings (OpenAI's shape; texts or\n"
    "base64 images; \"model\" names an adapter), POST /v1/classify (zero-shot), POST /v1/search\n"
    "(the catalogue of --index, by text or image, with metadata filters), GET/POST\n"
    "/v1/adapters and DELETE /v1/adapters/NAME (load and unload while serving), GET /health\n"
    "(503 while loading), GET /metrics (Prometheus), GET / (a web page). Requests of any\n"
    "adapters are batched together. SIGTERM or SIGINT: stop accepting, answer what is in\n"
    "flight, exit 0.\n"
    "  --model DIR          the base CLIP (a Hugging Face snapshot)\n"
    "  --adapter NAME=DIR   a PEFT adapter served as NAME (repeat for more)\n"
    "  --index DIR          a catalogue index made by `mmtune index` with this model\n"
    "  --captioner GIT_DIR  a GIT captioner for POST /v1/caption: images (+ prompt, generation\n"
    "                       settings) to captions, equal to `mmtune caption`'s, decoded with\n"
    "                       continuous batching (requests join between decoding steps)\n"
    "  --caption-adapter NAME=DIR  a PEFT adapter of the captioner, the \"model\" of /v1/caption\n"
    "                       (repeat for more; /v1/caption/adapters loads more while serving)\n"
    "A/B routes (docs/serving.md, \"A/B routes and feedback\"):\n"
    "  --route NAME=A:90,B:10  requests whose \"model\" is NAME go to adapter A or B (an\n"
    "                       --adapter name, or base) drawn by the integer weights; the same\n"
    "                       client key (\"user\" field or X-Client-Key header) always gets the\n"
    "                       same arm. Answers name the arm (\"adapter\", X-Route-Arm) and carry\n"
    "                       X-Request-Id; /metrics counts per arm. Repeat for more routes\n"
    "  --route-seed N       seed of the draws of requests without a client key (default 0)\n"
    "  --feedback FILE      POST /v1/feedback appends events ({\"request_id\" or \"user\",\n"
    "                       \"route\", \"arm\", \"event\", \"value\"}) to FILE, one JSON line each\n"
    "                       with a timestamp and the arm that served the request\n"
    "  --feedback-fsync P   second (default: fdatasync once a second), always (before each\n"
    "                       answer) or never\n"
    "  --host ADDR          IPv4 address to listen on (default 127.0.0.1; 0.0.0.0: all)\n"
    "  --port N             TCP port (default 8080; 0: any free one, printed)\n"
    "  --max-batch N        inputs per batch (default 32; 1 turns batching off); captions:\n"
    "                       images decoding together\n"
    "  --max-wait-ms MS     how long the oldest request waits for a batch to fill (default 5;\n"
    "                       none once every open connection has its request queued)\n"
    "  --threads N          compute threads (default: every core)\n"
    "limits (a request over one gets a 4xx JSON error):\n"
    "  --max-body-bytes N   request body (default 16777216)\n"
    "  --max-inputs N       texts + images + labels per request (default 256)\n"
    "  --max-image-pixels N width x height of a decoded image (default 16777216)\n"
    "  --max-connections N  open connections; more are refused (default 256)\n"
    "  --idle-timeout S     a connection silent this long is closed (default 30)\n"
    "  --deadline-ms MS     a request not started by then gets 503 (default 30000)\n"
    "  --max-adapters N     adapters loaded at once (default 1024)\n"
    "  --max-new-tokens N   tokens a caption request may ask for (default 128)\n";

static int parse_num(const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi)) return 0;
    *out = x;
    return 1;
}

int cmd_serve(int argc, char **argv) {
    mmt_server_options o;
    mmt_server_options_default(&o);
    o.quantize = (int)cli_load_quant(); /* --int8 / --quantize-base (model_load.c) */
    o.no_prepack = !cli_load_prepack();   /* --no-prepack (model_load.c) */
    o.dicom = *cli_load_dicom(); /* --window (model_load.c): uploads too */
    o.port = 8080;
    const char *names[MAX_START_ADAPTERS], *dirs[MAX_START_ADAPTERS];
    char *owned[MAX_START_ADAPTERS];
    int64_t n_adapters = 0;
    const char *cap_names[MAX_START_ADAPTERS], *cap_dirs[MAX_START_ADAPTERS]; /* --caption-adapter */
    char *cap_owned[MAX_START_ADAPTERS];
    int64_t n_cap = 0;
    const char *routes[MAX_ROUTES];
    int64_t n_routes = 0;
    int fsync_given = 0;
    double threads = 0;
    int rc = 0;
    for (int i = 0; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(SERVE_HELP, stdout);
            goto done;
        }
        if (i + 1 >= argc) { /* every option takes a value: say which mistake the last word is */
            static const char *const known[] = {"--adapter", "--caption-adapter", "--captioner", "--deadline-ms", "--feedback",
                                                "--feedback-fsync", "--host", "--idle-timeout", "--index", "--max-adapters",
                                                "--max-batch", "--max-body-bytes", "--max-connections", "--max-image-pixels",
                                                "--max-inputs", "--max-new-tokens", "--max-wait-ms", "--model", "--port",
                                                "--route", "--route-seed", "--threads"};
            int is_known = 0;
            for (size_t k = 0; k < sizeof known / sizeof *known; k++) is_known |= !strcmp(a, known[k]);
            if (is_known) rc = cli_usage_error("serve: %s needs a value", a);
            else if (a[0] == '-') rc = cli_usage_error("serve: unknown option '%s'", a);
            else rc = cli_usage_error("serve: unexpected argument '%s' (options are --NAME VALUE)", a);
            break;
        }
        const char *v = argv[++i];
        double x;
        if (!strcmp(a, "--model")) o.model_dir = v;
        else if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--index")) o.index_dir = v;
        else if (!strcmp(a, "--adapter")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1]) rc = cli_usage_error("--adapter takes NAME=DIR, got '%s'", v);
            else if (n_adapters == MAX_START_ADAPTERS) rc = cli_usage_error("at most %d --adapter at start-up", MAX_START_ADAPTERS);
            else if (!(owned[n_adapters] = mmt_strdup(v))) rc = cli_usage_error("out of memory");
            else {
                owned[n_adapters][eq - v] = '\0';
                names[n_adapters] = owned[n_adapters];
                dirs[n_adapters] = owned[n_adapters] + (eq - v) + 1;
                n_adapters++;
            }
        } else if (!strcmp(a, "--captioner")) {
            o.captioner_dir = v;
        } else if (!strcmp(a, "--caption-adapter")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1]) rc = cli_usage_error("--caption-adapter takes NAME=DIR, got '%s'", v);
            else if (n_cap == MAX_START_ADAPTERS) rc = cli_usage_error("at most %d --caption-adapter at start-up", MAX_START_ADAPTERS);
            else if (!(cap_owned[n_cap] = mmt_strdup(v))) rc = cli_usage_error("out of memory");
            else {
                cap_owned[n_cap][eq - v] = '\0';
                cap_names[n_cap] = cap_owned[n_cap];
                cap_dirs[n_cap] = cap_owned[n_cap] + (eq - v) + 1;
                n_cap++;
            }
        } else if (!strcmp(a, "--route")) {
            if (n_routes == MAX_ROUTES) rc = cli_usage_error("at most %d --route", MAX_ROUTES);
            else routes[n_routes++] = v; /* checked by the server (serve/ab_route.h), before it loads */
        } else if (!strcmp(a, "--route-seed")) {
            char *end;
            errno = 0;
            unsigned long long seed = strtoull(v, &end, 10);
            if (!*v || *end || errno || *v == '-') rc = cli_usage_error("--route-seed needs an integer from 0 to 2^64-1, got '%s'", v);
            o.route_seed = (uint64_t)seed;
        } else if (!strcmp(a, "--feedback")) {
            o.feedback_path = v;
        } else if (!strcmp(a, "--feedback-fsync")) {
            int p = mmt_feedback_fsync_parse(v);
            if (p < 0) rc = cli_usage_error("--feedback-fsync takes second, always or never, got '%s'", v);
            o.feedback_fsync = p;
            fsync_given = 1;
        } else if (!strcmp(a, "--max-new-tokens")) {
            if (!parse_num(v, 1, 4096, &x) || x != (int)x) rc = cli_usage_error("--max-new-tokens needs 1..4096");
            o.max_new_tokens = (int64_t)x;
        } else if (!strcmp(a, "--port")) {
            if (!parse_num(v, 0, 65535, &x) || x != (int)x) rc = cli_usage_error("--port needs 0..65535");
            o.port = (int)x;
        } else if (!strcmp(a, "--max-batch")) {
            if (!parse_num(v, 1, 4096, &x) || x != (int)x) rc = cli_usage_error("--max-batch needs 1..4096");
            o.max_batch = (int64_t)x;
        } else if (!strcmp(a, "--max-wait-ms")) {
            if (!parse_num(v, 0, 10000, &x)) rc = cli_usage_error("--max-wait-ms needs 0..10000");
            o.max_wait_ms = x;
        } else if (!strcmp(a, "--threads")) {
            if (!parse_num(v, 1, 1024, &x) || x != (int)x) rc = cli_usage_error("--threads needs 1..1024");
            threads = x;
        } else if (!strcmp(a, "--max-body-bytes")) {
            if (!parse_num(v, 1024, 1e10, &x)) rc = cli_usage_error("--max-body-bytes needs at least 1024");
            o.max_body_bytes = (size_t)x;
        } else if (!strcmp(a, "--max-inputs")) {
            if (!parse_num(v, 1, 1e6, &x) || x != (int64_t)x) rc = cli_usage_error("--max-inputs needs 1..1000000");
            o.max_inputs = (int64_t)x;
        } else if (!strcmp(a, "--max-image-pixels")) {
            if (!parse_num(v, 1, 1e9, &x) || x != (int64_t)x) rc = cli_usage_error("--max-image-pixels needs 1..1e9");
            o.max_image_pixels = (int64_t)x;
        } else if (!strcmp(a, "--max-connections")) {
            if (!parse_num(v, 1, 100000, &x) || x != (int)x) rc = cli_usage_error("--max-connections needs 1..100000");
            o.max_connections = (int)x;
        } else if (!strcmp(a, "--idle-timeout")) {
            if (!parse_num(v, 1, 86400, &x) || x != (int)x) rc = cli_usage_error("--idle-timeout needs 1..86400 seconds");
            o.idle_timeout_s = (int)x;
        } else if (!strcmp(a, "--deadline-ms")) {
            if (!parse_num(v, 1, 3.6e6, &x)) rc = cli_usage_error("--deadline-ms needs 1..3600000");
            o.deadline_s = x / 1000.0;
        } else if (!strcmp(a, "--max-adapters")) {
            if (!parse_num(v, 0, 1e6, &x) || x != (int)x) rc = cli_usage_error("--max-adapters needs 0..1000000");
            o.max_adapters = (int)x;
        } else rc = cli_usage_error("serve: unknown option '%s'", a);
    }
    if (rc == 0 && !o.model_dir) rc = cli_usage_error("serve: --model is required");
    if (rc == 0 && n_adapters > o.max_adapters) rc = cli_usage_error("more --adapter than --max-adapters");
    if (rc == 0 && n_cap > 0 && !o.captioner_dir) rc = cli_usage_error("serve: --caption-adapter needs --captioner");
    if (rc == 0 && fsync_given && !o.feedback_path) rc = cli_usage_error("serve: --feedback-fsync needs --feedback FILE");
    if (rc != 0) goto done;
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads((int)threads);
#endif
    o.adapter_names = names;
    o.adapter_dirs = dirs;
    o.n_adapters = n_adapters;
    o.caption_adapter_names = cap_names;
    o.caption_adapter_dirs = cap_dirs;
    o.n_caption_adapters = n_cap;
    o.routes = routes;
    o.n_routes = n_routes;
    /* SIGTERM and SIGINT go to sigwait below, in no other thread; a closed client socket is
     * an error return, not a signal */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    mmt_server *srv = NULL;
    if (mmt_server_start(&o, &srv) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    fprintf(stderr, "mmtune: serving http://%s:%d/ (loading %s)\n", o.host ? o.host : "127.0.0.1", mmt_server_port(srv),
            o.model_dir);
    int ready = mmt_server_wait_ready(srv, 3600);
    if (ready < 0) {
        rc = cli_runtime_error();
        mmt_server_stop(srv, 0);
        goto done;
    }
    fprintf(stderr, "mmtune: ready on port %d\n", mmt_server_port(srv));
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "mmtune: %s: finishing the requests in flight\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    mmt_server_stop(srv, 30);
    fprintf(stderr, "mmtune: stopped\n");
done:
    for (int64_t i = 0; i < n_adapters; i++) mmt_free(owned[i]);
    for (int64_t i = 0; i < n_cap; i++) mmt_free(cap_owned[i]);
    return rc;
}
