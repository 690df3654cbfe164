/*
 * bench_search.c — `mmtune bench search`: how long an exact search of an index takes as the
 * catalogue grows, float32 and int8, with and without a metadata filter.
 *
 * Each size gets a real index (serve/index.h) written to a scratch folder: random unit
 * vectors, items whose metadata holds a category (ten values) and a price, so that the
 * filter "category=3" keeps a tenth of the rows. Searches are timed from query vector to
 * fetched hits (the embedding of the query is not included: it is the model's cost, the same
 * for every catalogue size). The int8 results are compared with the float32 ones per query.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/dir.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "ops/scan.h"
#include "serve/index.h"

static const char *HELP =
    "usage: mmtune bench search [--sizes LIST] [--dim D] [--queries Q] [--top-k K] [--dir DIR]\n"
    "                           [--markdown FILE] [--seed S]\n"
    "\n"
    "Builds an index of random unit vectors for each size and times exact top-k searches:\n"
    "float32 and int8 (+ float32 rescoring of 4096 candidates), without and with a metadata\n"
    "filter that keeps a tenth of the items (category=3). Prints a table (median of Q queries).\n"
    "  --sizes LIST     comma-separated catalogue sizes (default 10000,100000,1000000)\n"
    "  --dim D          vector width (default 512, CLIP ViT-B/32's)\n"
    "  --queries Q      queries per measurement (default 20)\n"
    "  --top-k K        results per query (default 10)\n"
    "  --dir DIR        scratch folder for the indexes (default /tmp/mmtune-bench-search-PID;\n"
    "                   each index is removed after its size is measured)\n"
    "  --markdown FILE  also write the table as Markdown (e.g. bench/results/search.md)\n"
    "  --seed S         random seed (default 1)\n";

#define MAX_SIZES 16

typedef struct bench_row {
    int64_t n;
    double build_s, bytes;
    double ms[2][2];      /* [int8][filter]: median search time */
    double filter_ms;     /* median time of the SQL filter alone */
    double agree;         /* share of queries whose int8 top-k equals the float32 top-k */
} bench_row;

/* n random unit rows (n, D) from seed. */
static void random_units(float *x, int64_t n, int64_t D, uint64_t seed) {
    uint64_t state = seed;
    for (int64_t i = 0; i < n * D; i++) x[i] = (float)((double)(mmt_splitmix64(&state) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    mmt_ops_cpu()->l2_normalize_fwd(x, NULL, x, n, D);
}

static int by_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, by_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The items of a synthetic catalogue; the strings live in one block (*block, owned). */
static mmt_status make_items(int64_t n, mmt_index_item **items, char **block) {
    const size_t per = 128;
    *items = mmt_malloc((size_t)n * sizeof **items);
    *block = mmt_malloc((size_t)n * per);
    if (!*items || !*block) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) {
        char *id = *block + (size_t)i * per, *meta = id + 32;
        snprintf(id, 32, "item-%lld", (long long)i);
        snprintf(meta, per - 32, "{\"category\":%lld,\"price\":%.2f}", (long long)(i % 10), (double)(i * 7919 % 100000) / 100);
        (*items)[i] = (mmt_index_item){.id = id, .title = id, .meta = meta};
    }
    return MMT_OK;
}

static mmt_status bench_size(const char *dir, int64_t n, int64_t D, int64_t queries, int64_t k, uint64_t seed,
                             bench_row *row) {
    memset(row, 0, sizeof *row);
    row->n = n;
    float *vectors = mmt_malloc((size_t)(n * D) * sizeof(float)), *q = mmt_malloc((size_t)(queries * D) * sizeof(float));
    double *times = mmt_malloc((size_t)queries * sizeof(double)), *filter_times = mmt_malloc((size_t)queries * sizeof(double));
    int64_t *top = mmt_malloc((size_t)(queries * k) * sizeof(int64_t));
    mmt_index_item *items = NULL;
    char *block = NULL;
    mmt_index *ix = NULL;
    mmt_status s = vectors && q && times && filter_times && top ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = make_items(n, &items, &block);
    if (s == MMT_OK) {
        random_units(vectors, n, D, seed + (uint64_t)n);
        random_units(q, queries, D, seed * 31 + 7);
    }
    mmt_index_build b = {.mode = MMT_INDEX_OVERWRITE, .dim = D, .model_dir = "(random vectors)",
                         .model_fingerprint = "0000000000000000", .embed = "image"};
    double t0 = mmt_now_seconds();
    if (s == MMT_OK) s = mmt_index_write(dir, &b, items, vectors, n);
    row->build_s = mmt_now_seconds() - t0;
    row->bytes = (double)n * (double)D * 5;
    mmt_free(vectors);
    vectors = NULL;
    if (s == MMT_OK) s = mmt_index_open(dir, &ix);
    mmt_search_filter filter;
    if (s == MMT_OK) s = mmt_search_filter_parse("category=3", &filter);
    int64_t agree = 0;
    for (int int8 = 0; int8 < 2 && s == MMT_OK; int8++)
        for (int filtered = 0; filtered < 2 && s == MMT_OK; filtered++) {
            mmt_search_options o;
            mmt_search_options_default(&o);
            o.top_k = k;
            o.int8 = int8;
            o.filters = filtered ? &filter : NULL;
            o.n_filters = filtered;
            mmt_search_result r;
            if ((s = mmt_index_search(ix, q, &o, &r)) != MMT_OK) break; /* warm-up: pages in the files */
            mmt_search_result_free(&r);
            for (int64_t i = 0; i < queries && s == MMT_OK; i++) {
                double a = mmt_now_seconds();
                if ((s = mmt_index_search(ix, q + i * D, &o, &r)) != MMT_OK) break;
                times[i] = (mmt_now_seconds() - a) * 1e3;
                filter_times[i] = r.filter_s * 1e3;
                for (int64_t j = 0; j < r.n && !filtered; j++) {
                    if (!int8) top[i * k + j] = r.hits[j].row;
                    else agree += top[i * k + j] == r.hits[j].row;
                }
                mmt_search_result_free(&r);
            }
            if (s != MMT_OK) break;
            row->ms[int8][filtered] = median(times, queries);
            if (filtered && !int8) row->filter_ms = median(filter_times, queries);
        }
    row->agree = (double)agree / (double)(queries * (k < n ? k : n));
    if (s == MMT_OK) mmt_search_filter_free(&filter);
    mmt_index_close(ix);
    mmt_free(vectors);
    mmt_free(q);
    mmt_free(times);
    mmt_free(filter_times);
    mmt_free(top);
    mmt_free(items);
    mmt_free(block);
    return s;
}

static void print_table(FILE *f, const bench_row *rows, int64_t n_rows, int64_t D, int64_t queries, int64_t k) {
    fprintf(f, "| items | index on disk | build s | float32 ms | int8 + rescore ms | float32 + filter ms (SQL part) | "
               "int8 + filter ms | float32 scan GB/s | int8 top-%lld = float32 |\n", (long long)k);
    fprintf(f, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int64_t i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        double gbs = (double)r->n * (double)D * 4 / (r->ms[0][0] * 1e-3) / 1e9;
        fprintf(f, "| %lld | %.0f MB | %.1f | %.2f | %.2f | %.2f (%.2f) | %.2f | %.1f | %.1f%% |\n", (long long)r->n,
                r->bytes / 1e6, r->build_s, r->ms[0][0], r->ms[1][0], r->ms[0][1], r->filter_ms, r->ms[1][1], gbs,
                100 * r->agree);
    }
    fprintf(f, "\nD = %lld, top-%lld, median of %lld queries, scan kernels: %s, %ld CPU threads online.\n",
            (long long)D, (long long)k, (long long)queries, mmt_scan_best()->name, sysconf(_SC_NPROCESSORS_ONLN));
}

int cmd_bench_search(int argc, char **argv) {
    int64_t sizes[MAX_SIZES] = {10000, 100000, 1000000}, n_sizes = 3, D = 512, queries = 20, k = 10;
    uint64_t seed = 1;
    const char *dir = NULL, *markdown = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (strcmp(a, "--sizes") && strcmp(a, "--dim") && strcmp(a, "--queries") && strcmp(a, "--top-k") &&
            strcmp(a, "--dir") && strcmp(a, "--markdown") && strcmp(a, "--seed"))
            return cli_usage_error("bench search: unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("bench search: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--markdown")) markdown = v;
        else if (!strcmp(a, "--sizes")) {
            n_sizes = 0;
            for (const char *p = v; *p;) {
                char *end;
                errno = 0;
                long long x = strtoll(p, &end, 10);
                if (errno || end == p || x < 1 || n_sizes == MAX_SIZES || (*end && *end != ','))
                    return cli_usage_error("bench search: --sizes wants up to %d whole numbers >= 1, comma-separated",
                                           MAX_SIZES);
                sizes[n_sizes++] = x;
                p = *end ? end + 1 : end;
            }
        } else {
            char *end;
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno || end == v || *end || x < 1) return cli_usage_error("bench search: %s '%s' is not a whole number >= 1", a, v);
            if (!strcmp(a, "--dim")) D = x;
            else if (!strcmp(a, "--queries")) queries = x;
            else if (!strcmp(a, "--top-k")) k = x;
            else seed = (uint64_t)x;
        }
    }
    char scratch[256];
    if (!dir) {
        snprintf(scratch, sizeof scratch, "/tmp/mmtune-bench-search-%ld", (long)getpid());
        dir = scratch;
    }
    bench_row rows[MAX_SIZES];
    int rc = 0;
    for (int64_t i = 0; i < n_sizes && rc == 0; i++) {
        fprintf(stderr, "mmtune: info: bench search: %lld items...\n", (long long)sizes[i]);
        if (bench_size(dir, sizes[i], D, queries, k, seed, &rows[i]) != MMT_OK) rc = cli_runtime_error();
        mmt_dir_remove_tree(dir);
    }
    if (rc) return rc;
    print_table(stdout, rows, n_sizes, D, queries, k);
    if (markdown) {
        FILE *f = fopen(markdown, "w");
        if (!f) {
            fprintf(stderr, "mmtune: error: %s: cannot write: %s\n", markdown, strerror(errno));
            return 1;
        }
        print_table(f, rows, n_sizes, D, queries, k);
        fclose(f);
    }
    return 0;
}
