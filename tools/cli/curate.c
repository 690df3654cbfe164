/*
 * curate.c — `mmtune curate`: near-duplicate and mismatched image–text pairs found with a CLIP
 * (and adapter), and the set written without them (data/curate.h; docs/curation.md).
 *
 * The pairs are read as `train --data` reads them (data/datasets.h: JSONL, COCO, CSV or an
 * image folder), embedded through cli/encoder.h (each distinct image file once), judged by
 * mmt_curate, and the output folder is written whole or not at all (out_dir.c):
 *     pairs.jsonl   the kept pairs in their order: image_path (relative to the folder),
 *                   text, and label where the pair has one — `train --data OUT/pairs.jsonl`
 *     report.json   counts, settings, the score statistics, every removed near-duplicate
 *                   (with the kept pair it duplicates and both cosines) and every mismatched
 *                   pair (with its score); records are numbered from 1 in the order read
 *     report.md     the same for people, the lists cut at REPORT_MD_ROWS rows
 * Progress (pairs/s, ETA; then the comparison) goes to stderr; stdout gets one JSON line.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/encoder.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/json.h"
#include "data/curate.h"
#include "data/datasets.h"

#define REPORT_MD_ROWS 50

static const char *HELP =
    "usage: mmtune curate --model DIR [--adapter DIR] --data FILE|DIR --out DIR [--overwrite]\n"
    "                     [--dup-threshold X] [--text-threshold X] [--keep first|best]\n"
    "                     [--mismatch-threshold X] [--drop-mismatched] [--batch-size N]\n"
    "                     [--image-root DIR] [--skip-bad]\n"
    "\n"
    "Finds near-duplicate and mismatched image-text pairs with a CLIP and writes the set\n"
    "without them, with a report of what was removed and why (docs/curation.md).\n"
    "  --model DIR        Hugging Face CLIP snapshot\n"
    "  --adapter DIR      a PEFT adapter folder: embed through the adapted model\n"
    "  --data PATH        the pairs, as train --data reads them: .jsonl, COCO .json, .csv or a\n"
    "                     class-per-folder directory\n"
    "  --out DIR          written whole or not at all: pairs.jsonl (the kept pairs),\n"
    "                     report.json and report.md\n"
    "  --overwrite        replace a non-empty DIR (otherwise refused)\n"
    "  --dup-threshold X  image cosine at or above which two pairs may be duplicates (0.95)\n"
    "  --text-threshold X text cosine at or above which they are (0.95): a pair is removed when\n"
    "                     a pair kept before it passes both\n"
    "  --keep K           first (default): of duplicates, the first in file order stays;\n"
    "                     best: the one whose image and text agree best (highest cosine)\n"
    "  --mismatch-threshold X  flag pairs whose image-text cosine is below X (default: below\n"
    "                     median - 4 x 1.4826 x MAD of the set's cosines, a robust z of -4)\n"
    "  --drop-mismatched  remove the flagged pairs too (before deduplication)\n"
    "  --batch-size N     images or texts per forward pass (default 32)\n"
    "  --image-root DIR   COCO: the folder file_name is relative to\n"
    "  --skip-bad         leave out (and count) bad records instead of stopping\n"
    "\n"
    "Progress goes to stderr; stdout gets one JSON line with the counts.\n";

typedef struct curate_opts {
    const char *model, *adapter, *data, *out, *image_root;
    int overwrite, skip_bad;
    int64_t batch;
    mmt_curate_options c;
} curate_opts;

/* A number in [lo, hi] from text into *out; 0, or 2 after printing a usage error. */
static int parse_number(const char *flag, const char *text, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= hi))
        return cli_usage_error("curate: %s takes a number in [%g, %g], not '%s'", flag, lo, hi, text);
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, curate_opts *o, int *done) {
    memset(o, 0, sizeof *o);
    mmt_curate_options_default(&o->c);
    o->batch = 32;
    *done = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(HELP, stdout);
            *done = 1;
            return 0;
        }
        if (!strcmp(a, "--overwrite")) { o->overwrite = 1; continue; }
        if (!strcmp(a, "--skip-bad")) { o->skip_bad = 1; continue; }
        if (!strcmp(a, "--drop-mismatched")) { o->c.drop_mismatched = 1; continue; }
        static const char *const TAKES_VALUE[] = {"--model", "--adapter", "--data", "--out", "--image-root",
                                                  "--dup-threshold", "--text-threshold", "--keep",
                                                  "--mismatch-threshold", "--batch-size"};
        int known = 0;
        for (size_t k = 0; k < sizeof TAKES_VALUE / sizeof *TAKES_VALUE; k++) known |= !strcmp(a, TAKES_VALUE[k]);
        if (!known) return cli_usage_error("curate: unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("curate: %s needs a value", a);
        const char *v = argv[++i];
        double x = 0;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--adapter")) o->adapter = v;
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--image-root")) o->image_root = v;
        else if (!strcmp(a, "--keep")) {
            if (!strcmp(v, "first")) o->c.keep = MMT_CURATE_KEEP_FIRST;
            else if (!strcmp(v, "best")) o->c.keep = MMT_CURATE_KEEP_BEST;
            else return cli_usage_error("curate: --keep takes first or best, not '%s'", v);
        } else if (!strcmp(a, "--batch-size")) {
            if (parse_number(a, v, 1, 4096, &x)) return 2;
            if (x != floor(x)) return cli_usage_error("curate: --batch-size takes a whole number, not '%s'", v);
            o->batch = (int64_t)x;
        } else {
            if (parse_number(a, v, -1, 1, &x)) return 2;
            if (!strcmp(a, "--dup-threshold")) o->c.dup_threshold = x;
            else if (!strcmp(a, "--text-threshold")) o->c.text_threshold = x;
            else {
                o->c.mismatch_threshold = x;
                o->c.fixed_mismatch = 1;
            }
        }
    }
    if (!o->model) return cli_usage_error("curate: --model is required");
    if (!o->data) return cli_usage_error("curate: --data is required");
    if (!o->out) return cli_usage_error("curate: --out is required");
    return 0;
}

/* ---- progress on stderr: a rewritten line on a terminal, else a line every few seconds -- */

typedef struct progress {
    int tty;
    const char *what, *unit;
    double start, last;
    int64_t total;
} progress;

static void progress_start(progress *p, const char *what, const char *unit, int64_t total) {
    *p = (progress){isatty(2), what, unit, mmt_now_seconds(), 0, total};
    p->last = p->start;
}

static void progress_show(progress *p, int64_t done) {
    double now = mmt_now_seconds(), elapsed = now - p->start;
    int final = done >= p->total;
    if (!final && now - p->last < (p->tty ? 0.2 : 5.0)) return;
    if (final && !p->tty && elapsed < 5.0) return; /* a short phase needs no log line */
    p->last = now;
    double rate = elapsed > 0 ? (double)done / elapsed : 0, eta = rate > 0 ? (double)(p->total - done) / rate : 0;
    if (p->tty) {
        fprintf(stderr, "\rcurate: %s %lld/%lld %s, %.1f %s/s, ETA %d:%02d   ", p->what, (long long)done,
                (long long)p->total, p->unit, rate, p->unit, (int)(eta / 60), (int)eta % 60);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "mmtune: info: curate: %s %lld/%lld %s, %.1f %s/s, ETA %.0fs\n", p->what, (long long)done,
                (long long)p->total, p->unit, rate, p->unit, eta);
    }
    fflush(stderr);
}

static void on_compare(void *user, int64_t done, int64_t total) {
    progress *p = user;
    p->total = total;
    progress_show(p, done);
}

/* ---- embedding ------------------------------------------------------------------------- */

static const mmt_pairs *sort_pairs; /* qsort has no context argument */

static int cmp_by_path(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int c = strcmp(sort_pairs->items[x].image_path, sort_pairs->items[y].image_path);
    return c ? c : (x > y) - (x < y);
}

/* Every pair's image embedding into image (n, D), each distinct file embedded once (COCO
 * gives one image several captions), batch files per call; then the texts into text. */
static mmt_status embed_pairs(cli_encoder *enc, const mmt_pairs *p, int64_t batch, float *image, float *text) {
    int64_t n = p->n, D = cli_encoder_dim(enc), n_unique = 0;
    int64_t *by_path = mmt_malloc((size_t)n * sizeof *by_path), *unique = mmt_malloc((size_t)n * sizeof *unique);
    int64_t *slot = mmt_malloc((size_t)n * sizeof *slot);
    const char **paths = mmt_malloc((size_t)batch * sizeof *paths), **texts = mmt_malloc((size_t)batch * sizeof *texts);
    float *rows = mmt_malloc((size_t)(batch * D) * sizeof(float));
    mmt_status s = by_path && unique && slot && paths && texts && rows ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        for (int64_t i = 0; i < n; i++) by_path[i] = i;
        sort_pairs = p;
        qsort(by_path, (size_t)n, sizeof *by_path, cmp_by_path);
        for (int64_t k = 0; k < n; k++) {
            int64_t i = by_path[k];
            if (k == 0 || strcmp(p->items[i].image_path, p->items[by_path[k - 1]].image_path)) unique[n_unique++] = i;
            slot[i] = n_unique - 1;
        }
    }
    progress pr;
    progress_start(&pr, "embedding", "inputs", n_unique + n);
    /* the distinct files in their first pair's order, so errors come in file order */
    int64_t *first = unique; /* reused: first[u] = the pair whose path is distinct file u */
    for (int64_t at = 0; s == MMT_OK && at < n_unique; at += batch) {
        int64_t b = n_unique - at < batch ? n_unique - at : batch;
        for (int64_t i = 0; i < b; i++) paths[i] = p->items[first[at + i]].image_path;
        s = cli_encoder_images(enc, paths, b, rows);
        for (int64_t i = 0; s == MMT_OK && i < n; i++)
            if (slot[i] >= at && slot[i] < at + b) memcpy(image + i * D, rows + (slot[i] - at) * D, (size_t)D * sizeof(float));
        if (s == MMT_OK) progress_show(&pr, at + b);
    }
    for (int64_t at = 0; s == MMT_OK && at < n; at += batch) {
        int64_t b = n - at < batch ? n - at : batch;
        for (int64_t i = 0; i < b; i++) texts[i] = p->items[at + i].text;
        s = cli_encoder_texts(enc, texts, b, 1, text + at * D);
        if (s != MMT_OK) s = mmt_error_prefix(s, "%s (pairs %lld..%lld): ", p->source, (long long)at + 1, (long long)(at + b));
        else progress_show(&pr, n_unique + at + b);
    }
    mmt_free(by_path);
    mmt_free(unique);
    mmt_free(slot);
    mmt_free(paths);
    mmt_free(texts);
    mmt_free(rows);
    return s;
}

/* ---- the output folder ----------------------------------------------------------------- */

/* path relative to the folder dir (both absolute and normalised, dir without a trailing
 * '/'): "/d/images/a.png" from "/d/out" is "../images/a.png". */
static char *relative_to(const char *path, const char *dir) {
    size_t common = 0, i = 0, dl = strlen(dir);
    for (; path[i] && dir[i] && path[i] == dir[i]; i++)
        if (path[i] == '/') common = i + 1;
    if (i == dl && path[i] == '/') common = dl + 1; /* path is inside dir */
    int ups = 0;
    if (common < dl) {
        ups = 1;
        for (size_t k = common; k < dl; k++) ups += dir[k] == '/';
    }
    mmt_strbuf b = {0};
    for (int k = 0; k < ups; k++) mmt_strbuf_append(&b, "../", 3);
    mmt_strbuf_printf(&b, "%s", path + common);
    if (b.failed) {
        mmt_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

/* The absolute form of the output folder: its parent resolved, its name appended. */
static char *absolute_out(const char *out) {
    char *a = mmt_strdup(out), *b = mmt_strdup(out), parent[PATH_MAX];
    mmt_strbuf r = {0};
    if (a && b && realpath(dirname(a), parent)) mmt_strbuf_printf(&r, "%s/%s", strcmp(parent, "/") ? parent : "", basename(b));
    mmt_free(a);
    mmt_free(b);
    if (r.failed) mmt_strbuf_free(&r);
    return r.data;
}

static mmt_status write_pairs(const mmt_pairs *p, const mmt_curate_result *r, const char *tmp, const char *out) {
    char *out_abs = absolute_out(out), *path = mmt_path_join(tmp, "pairs.jsonl");
    mmt_strbuf b = {0};
    mmt_status s = out_abs && path ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < p->n; i++) {
        if (r->records[i].removed) continue;
        char resolved[PATH_MAX];
        if (!realpath(p->items[i].image_path, resolved)) {
            s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: pair %lld: image not found: %s", p->source, (long long)i + 1,
                         p->items[i].image_path);
            break;
        }
        char *rel = relative_to(resolved, out_abs);
        if (!rel) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        mmt_strbuf_append(&b, "{\"image_path\": ", 15);
        mmt_strbuf_json_string(&b, rel, strlen(rel));
        mmt_strbuf_append(&b, ", \"text\": ", 10);
        mmt_strbuf_json_string(&b, p->items[i].text, strlen(p->items[i].text));
        if (p->items[i].label) {
            mmt_strbuf_append(&b, ", \"label\": ", 11);
            mmt_strbuf_json_string(&b, p->items[i].label, strlen(p->items[i].label));
        }
        mmt_strbuf_append(&b, "}\n", 2);
        mmt_free(rel);
    }
    if (s == MMT_OK && b.failed) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_file_write_atomic(path, b.data ? b.data : "", b.len);
    mmt_strbuf_free(&b);
    mmt_free(out_abs);
    mmt_free(path);
    return s;
}

static void json_key_string(mmt_strbuf *b, const char *key, const char *v) {
    mmt_strbuf_printf(b, "\"%s\": ", key);
    if (v) mmt_strbuf_json_string(b, v, strlen(v));
    else mmt_strbuf_append(b, "null", 4);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Percentiles 50, 90, 99 and 100 of the pairs' nearest-image cosines (those that took part),
 * into q; 0 when none did. */
static int nearest_percentiles(const mmt_curate_result *r, double q[4]) {
    float *v = mmt_malloc((size_t)r->n * sizeof *v);
    int64_t m = 0;
    for (int64_t i = 0; v && i < r->n; i++)
        if (r->records[i].nearest_image > -2.0f) v[m++] = r->records[i].nearest_image;
    if (m > 0) {
        qsort(v, (size_t)m, sizeof *v, cmp_float);
        static const double at[4] = {0.5, 0.9, 0.99, 1.0};
        for (int k = 0; k < 4; k++) q[k] = v[(int64_t)ceil(at[k] * (double)m) - 1 > 0 ? (int64_t)ceil(at[k] * (double)m) - 1 : 0];
    }
    mmt_free(v);
    return m > 0;
}

/* The settings, counts and statistics (the top of report.json). */
static void report_head(mmt_strbuf *b, const curate_opts *o, const mmt_pairs *p, const mmt_curate_result *r) {
    mmt_strbuf_append(b, "{\n  ", 4);
    json_key_string(b, "data", o->data);
    mmt_strbuf_append(b, ",\n  ", 4);
    json_key_string(b, "model", o->model);
    mmt_strbuf_append(b, ",\n  ", 4);
    json_key_string(b, "adapter", o->adapter);
    mmt_strbuf_printf(b, ",\n  \"records\": %lld,\n  \"skipped_bad\": %lld,\n  \"kept\": %lld,\n  \"removed\": %lld,\n"
                         "  \"duplicates_removed\": %lld,\n  \"mismatched_flagged\": %lld,\n  \"mismatched_removed\": %lld,\n",
                      (long long)r->n, (long long)p->skipped, (long long)r->kept, (long long)(r->n - r->kept),
                      (long long)r->duplicates, (long long)r->mismatched, (long long)r->removed_mismatched);
    mmt_strbuf_printf(b, "  \"settings\": {\"dup_threshold\": %.9g, \"text_threshold\": %.9g, \"keep\": \"%s\", "
                         "\"mismatch_threshold\": %.9g, \"mismatch_rule\": ",
                      o->c.dup_threshold, o->c.text_threshold, o->c.keep == MMT_CURATE_KEEP_BEST ? "best" : "first",
                      r->mismatch_threshold);
    if (o->c.fixed_mismatch) mmt_strbuf_printf(b, "\"given\"");
    else mmt_strbuf_printf(b, "\"median - %g x 1.4826 x MAD\"", o->c.mismatch_mads);
    mmt_strbuf_printf(b, ", \"drop_mismatched\": %s},\n", o->c.drop_mismatched ? "true" : "false");
    mmt_strbuf_printf(b, "  \"scores\": {\"median\": %.9g, \"mad\": %.9g, \"min\": %.9g, \"max\": %.9g},\n", r->median, r->mad,
                      r->min_score, r->max_score);
    double q[4];
    if (nearest_percentiles(r, q))
        mmt_strbuf_printf(b, "  \"nearest_image\": {\"p50\": %.6f, \"p90\": %.6f, \"p99\": %.6f, \"max\": %.6f},\n", q[0], q[1],
                          q[2], q[3]);
}

static mmt_status write_report_json(const curate_opts *o, const mmt_pairs *p, const mmt_curate_result *r, const char *tmp) {
    mmt_strbuf b = {0};
    report_head(&b, o, p, r);
    mmt_strbuf_append(&b, "  \"duplicates\": [", 17);
    int first = 1;
    for (int64_t i = 0; i < r->n; i++) {
        const mmt_curate_record *c = &r->records[i];
        if (c->duplicate_of < 0) continue;
        const mmt_pair *x = &p->items[i], *k = &p->items[c->duplicate_of];
        mmt_strbuf_printf(&b, "%s\n    {\"record\": %lld, ", first ? "" : ",", (long long)i + 1);
        json_key_string(&b, "image_path", x->image_path);
        mmt_strbuf_append(&b, ", ", 2);
        json_key_string(&b, "text", x->text);
        mmt_strbuf_printf(&b, ", \"duplicate_of\": %lld, ", (long long)c->duplicate_of + 1);
        json_key_string(&b, "kept_image_path", k->image_path);
        mmt_strbuf_append(&b, ", ", 2);
        json_key_string(&b, "kept_text", k->text);
        mmt_strbuf_printf(&b, ", \"image_similarity\": %.6f, \"text_similarity\": %.6f, \"score\": %.6f, "
                              "\"kept_score\": %.6f}",
                          c->image_similarity, c->text_similarity, c->score, r->records[c->duplicate_of].score);
        first = 0;
    }
    mmt_strbuf_printf(&b, "%s],\n  \"mismatched\": [", first ? "" : "\n  ");
    first = 1;
    for (int64_t i = 0; i < r->n; i++) {
        const mmt_curate_record *c = &r->records[i];
        if (!c->mismatched) continue;
        mmt_strbuf_printf(&b, "%s\n    {\"record\": %lld, ", first ? "" : ",", (long long)i + 1);
        json_key_string(&b, "image_path", p->items[i].image_path);
        mmt_strbuf_append(&b, ", ", 2);
        json_key_string(&b, "text", p->items[i].text);
        mmt_strbuf_printf(&b, ", \"score\": %.6f, \"robust_z\": %.3f, \"removed\": %s}", c->score,
                          r->mad > 0 ? ((double)c->score - r->median) / (1.4826 * r->mad) : 0.0,
                          c->removed ? "true" : "false");
        first = 0;
    }
    mmt_strbuf_printf(&b, "%s]\n}\n", first ? "" : "\n  ");
    char *path = mmt_path_join(tmp, "report.json");
    mmt_status s = b.failed || !path ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(path, b.data, b.len);
    mmt_free(path);
    mmt_strbuf_free(&b);
    return s;
}

/* A text for a Markdown table cell: '|' and line breaks would end the cell or row. */
static void md_cell(mmt_strbuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '|') mmt_strbuf_append(b, "\\|", 2);
        else if (*s == '\n' || *s == '\r') mmt_strbuf_append(b, " ", 1);
        else mmt_strbuf_append(b, s, 1);
    }
}

static mmt_status write_report_md(const curate_opts *o, const mmt_pairs *p, const mmt_curate_result *r, const char *tmp) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "# Curation report\n\nData `%s`, model `%s`%s%s%s.\n\n", o->data, o->model,
                      o->adapter ? " with adapter `" : "", o->adapter ? o->adapter : "", o->adapter ? "`" : "");
    mmt_strbuf_printf(&b, "| | pairs |\n|---|---:|\n| read | %lld |\n| kept (pairs.jsonl) | %lld |\n"
                          "| removed as near-duplicates | %lld |\n| flagged as mismatched | %lld |\n"
                          "| removed as mismatched | %lld |\n\n",
                      (long long)r->n, (long long)r->kept, (long long)r->duplicates, (long long)r->mismatched,
                      (long long)r->removed_mismatched);
    mmt_strbuf_printf(&b, "Near-duplicate: image cosine >= %g and text cosine >= %g with a pair kept before it (keep %s: %s).\n",
                      o->c.dup_threshold, o->c.text_threshold, o->c.keep == MMT_CURATE_KEEP_BEST ? "best" : "first",
                      o->c.keep == MMT_CURATE_KEEP_BEST ? "of a group of copies the one whose image and text agree best stays"
                                                        : "of a group of copies the first in file order stays");
    mmt_strbuf_printf(&b, "Mismatched: image-text cosine below %.4f (%s; the set's median %.4f, MAD %.4f)%s.\n\n",
                      r->mismatch_threshold, o->c.fixed_mismatch ? "given" : "median - 4 x 1.4826 x MAD", r->median, r->mad,
                      o->c.drop_mismatched ? ", removed" : ", flagged only (--drop-mismatched removes them)");
    double q[4];
    if (nearest_percentiles(r, q))
        mmt_strbuf_printf(&b, "Each pair's highest image cosine with another pair: median %.4f, 90th percentile %.4f, 99th "
                              "%.4f, max %.4f (copies of one image score near 1; a threshold between the bulk and them "
                              "suits this model and data).\n\n", q[0], q[1], q[2], q[3]);
    mmt_strbuf_printf(&b, "## Near-duplicates removed (%lld)\n\n", (long long)r->duplicates);
    int64_t shown = 0;
    if (r->duplicates) mmt_strbuf_printf(&b, "| # | text | duplicate of # | its text | image cos | text cos |\n|---:|---|---:|---|---:|---:|\n");
    for (int64_t i = 0; i < r->n && shown < REPORT_MD_ROWS; i++) {
        const mmt_curate_record *c = &r->records[i];
        if (c->duplicate_of < 0) continue;
        mmt_strbuf_printf(&b, "| %lld | ", (long long)i + 1);
        md_cell(&b, p->items[i].text);
        mmt_strbuf_printf(&b, " | %lld | ", (long long)c->duplicate_of + 1);
        md_cell(&b, p->items[c->duplicate_of].text);
        mmt_strbuf_printf(&b, " | %.4f | %.4f |\n", c->image_similarity, c->text_similarity);
        shown++;
    }
    if (r->duplicates > shown) mmt_strbuf_printf(&b, "\n... and %lld more (report.json lists all).\n", (long long)(r->duplicates - shown));
    mmt_strbuf_printf(&b, "\n## Mismatched (%lld)\n\n", (long long)r->mismatched);
    shown = 0;
    if (r->mismatched) mmt_strbuf_printf(&b, "| # | image | text | cosine | removed |\n|---:|---|---|---:|---|\n");
    for (int64_t i = 0; i < r->n && shown < REPORT_MD_ROWS; i++) {
        const mmt_curate_record *c = &r->records[i];
        if (!c->mismatched) continue;
        mmt_strbuf_printf(&b, "| %lld | ", (long long)i + 1);
        md_cell(&b, p->items[i].image_path);
        mmt_strbuf_append(&b, " | ", 3);
        md_cell(&b, p->items[i].text);
        mmt_strbuf_printf(&b, " | %.4f | %s |\n", c->score, c->removed ? "yes" : "no");
        shown++;
    }
    if (r->mismatched > shown) mmt_strbuf_printf(&b, "\n... and %lld more (report.json lists all).\n", (long long)(r->mismatched - shown));
    char *path = mmt_path_join(tmp, "report.md");
    mmt_status s = b.failed || !path ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(path, b.data, b.len);
    mmt_free(path);
    mmt_strbuf_free(&b);
    return s;
}

/* ---- the command ----------------------------------------------------------------------- */

static int curate_run(const curate_opts *o, const mmt_pairs *p, const char *tmp, double t0) {
    cli_encoder enc;
    if (cli_encoder_open(o->model, o->adapter, &enc) != MMT_OK) return cli_runtime_error();
    int64_t n = p->n, D = cli_encoder_dim(&enc);
    float *image = mmt_malloc((size_t)(n * D) * sizeof(float)), *text = mmt_malloc((size_t)(n * D) * sizeof(float));
    mmt_curate_result r = {0};
    progress compare;
    mmt_curate_options co = o->c;
    co.progress = on_compare;
    co.user = &compare;
    mmt_status s = image && text ? embed_pairs(&enc, p, o->batch, image, text) : MMT_STATUS_OUT_OF_MEMORY;
    cli_encoder_close(&enc);
    double t1 = mmt_now_seconds();
    progress_start(&compare, "comparing", "pairs", n);
    if (s == MMT_OK) s = mmt_curate(image, text, n, D, &co, &r);
    mmt_free(image);
    mmt_free(text);
    if (s == MMT_OK) s = write_pairs(p, &r, tmp, o->out);
    if (s == MMT_OK) s = write_report_json(o, p, &r, tmp);
    if (s == MMT_OK) s = write_report_md(o, p, &r, tmp);
    if (s == MMT_OK) {
        mmt_strbuf b = {0};
        mmt_strbuf_append(&b, "{\"out\": ", 8);
        mmt_strbuf_json_string(&b, o->out, strlen(o->out));
        mmt_strbuf_printf(&b, ", \"records\": %lld, \"kept\": %lld, \"duplicates_removed\": %lld, \"mismatched_flagged\": %lld, "
                              "\"mismatched_removed\": %lld, \"embed_s\": %.2f, \"compare_s\": %.2f}\n",
                          (long long)n, (long long)r.kept, (long long)r.duplicates, (long long)r.mismatched,
                          (long long)r.removed_mismatched, t1 - t0, mmt_now_seconds() - t1);
        if (!b.failed) fputs(b.data, stdout);
        mmt_strbuf_free(&b);
    }
    mmt_curate_result_free(&r);
    return s == MMT_OK ? 0 : cli_runtime_error();
}

int cmd_curate(int argc, char **argv) {
    curate_opts o;
    int done = 0, rc = parse_opts(argc, argv, &o, &done);
    if (rc || done) return rc;
    double t0 = mmt_now_seconds();
    mmt_pairs_options po;
    mmt_pairs_options_default(&po);
    po.skip_bad = o.skip_bad;
    po.image_root = o.image_root;
    mmt_pairs *p = NULL;
    if (mmt_pairs_load(o.data, &po, &p) != MMT_OK) return cli_runtime_error();
    char *tmp = NULL;
    rc = cli_out_begin("curate", o.out, o.overwrite, &tmp);
    if (rc == 0) rc = curate_run(&o, p, tmp, t0);
    rc = cli_out_finish(tmp, o.out, rc);
    mmt_pairs_free(p);
    return rc;
}
