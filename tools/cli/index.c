/*
 * index.c — `mmtune index` (embed a catalogue into a search index) and `mmtune search` (query
 * one), over data/catalog.h and serve/index.h; the embeddings come from cli/encoder.h, so an
 * adapter folder works as in `mmtune embed`.
 *
 * Under mpirun `index` splits the catalogue over the ranks in whole batches (cli/shard.h):
 * each rank embeds its share, rank 0 gathers the vectors in item order and alone checks and
 * writes the folder and prints; the calls into the encoder are those of one process, so the
 * index is byte for byte the one a single process writes.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/encoder.h"
#include "cli/shard.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/json.h"
#include "data/catalog.h"
#include "ops/ops.h"
#include "serve/index.h"
#include "train/fingerprint.h"

static const char *INDEX_HELP =
    "usage: mmtune index --model DIR [--adapter DIR] --catalog FILE --out DIR\n"
    "                    [--append [--replace] | --overwrite] [--embed image|title|both] [--batch-size N]\n"
    "\n"
    "Embeds every item of a catalogue with a CLIP (and adapter) and writes a search index\n"
    "folder for `mmtune search` and `mmtune serve --index` (docs/search.md).\n"
    "  --model DIR       Hugging Face CLIP snapshot\n"
    "  --adapter DIR     a PEFT adapter folder: embed through the adapted model\n"
    "  --catalog FILE    JSONL (one object per line: \"id\", \"title\", \"image\" or \"image_path\",\n"
    "                    other keys = metadata) or CSV with a header (.csv: columns id, title,\n"
    "                    image or image_path, the others metadata); images relative to the file\n"
    "  --out DIR         the index folder (created)\n"
    "  --append          add the catalogue's items to the index in DIR (made with the same model,\n"
    "                    adapter and --embed); an id already there is an error, unless\n"
    "  --replace         ... which replaces such items (they keep their row)\n"
    "  --overwrite       rebuild an existing index in DIR from this catalogue alone\n"
    "  --embed MODE      image (default): an item's image, its title when it has no image;\n"
    "                    title: its title, its image when it has no title; both: the normalised\n"
    "                    mean of the two where it has both. Titles longer than the model's\n"
    "                    context are cut.\n"
    "  --batch-size N    items embedded per forward pass (default 32)\n"
    "\n"
    "The index is replaced atomically: a failure or kill midway leaves the previous one readable.\n"
    "Progress (items/s, ETA) goes to stderr; the result is one JSON line on stdout.\n"
    "Under mpirun -np N each rank embeds a share of the batches and rank 0 writes the index\n"
    "(the same files as one process writes; progress is rank 0's share; docs/distributed.md).\n";

static const char *SEARCH_HELP =
    "usage: mmtune search --index DIR --model DIR [--adapter DIR] (--text T | --image FILE)\n"
    "                     [--top-k K] [--filter EXPR]... [--int8 [--rescore N]] [--timing]\n"
    "\n"
    "Exact top-k search of an index by cosine similarity. One JSON line per result, best first:\n"
    "  {\"rank\":1,\"id\":\"..\",\"title\":..,\"image_path\":..,\"score\":0.31,\"metadata\":{..}}\n"
    "  --index DIR      a folder written by mmtune index\n"
    "  --model DIR      the CLIP snapshot the index was built with (checked by fingerprint)\n"
    "  --adapter DIR    the adapter it was built with, if any\n"
    "  --text T         a text query\n"
    "  --image FILE     an image query (JPEG, PNG or DICOM)\n"
    "  --top-k K        results to return (default 10)\n"
    "  --filter EXPR    FIELD OP VALUE on the items' metadata, OP one of = != < <= > >=;\n"
    "                   a JSON number compares as a number, true/false with booleans, other text\n"
    "                   (or \"quoted\") as a string; a missing field never matches; FIELD of\n"
    "                   letters, digits, '_' and '.' (nested: dims.width>30; so a key holding\n"
    "                   a dot cannot be filtered). Repeat to AND.\n"
    "  --int8           scan the int8 copy, then rescore the best candidates in float32\n"
    "  --rescore N      int8 candidates rescored (default 4096)\n"
    "  --timing         print where the time went to stderr\n";

#define MAX_FILTERS 64

/* ---- shared ------------------------------------------------------------------------- */

/* A whole number >= min from text, or -1 after printing a usage error. */
static int64_t parse_count(const char *cmd, const char *flag, const char *text, int64_t min) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min) {
        cli_usage_error("%s: %s '%s' is not a whole number >= %lld", cmd, flag, text, (long long)min);
        return -1;
    }
    return v;
}

/* realpath of path into a fresh string (the path itself when it cannot be resolved). */
static char *absolute(const char *path) {
    char buf[PATH_MAX];
    return mmt_strdup(realpath(path, buf) ? buf : path);
}

/* ---- mmtune index ------------------------------------------------------------------- */

typedef struct index_opts {
    const char *model, *adapter, *catalog, *out, *embed;
    int append, replace, overwrite;
    int64_t batch;
} index_opts;

static int parse_index_opts(int argc, char **argv, index_opts *o, int *done) {
    *o = (index_opts){.embed = "image", .batch = 32};
    *done = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(INDEX_HELP, stdout);
            *done = 1;
            return 0;
        }
        if (!strcmp(a, "--append")) o->append = 1;
        else if (!strcmp(a, "--replace")) o->replace = 1;
        else if (!strcmp(a, "--overwrite")) o->overwrite = 1;
        else if (!strcmp(a, "--model") || !strcmp(a, "--adapter") || !strcmp(a, "--catalog") || !strcmp(a, "--out") ||
                 !strcmp(a, "--embed") || !strcmp(a, "--batch-size")) {
            if (i + 1 >= argc) return cli_usage_error("index: %s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--model")) o->model = v;
            else if (!strcmp(a, "--adapter")) o->adapter = v;
            else if (!strcmp(a, "--catalog")) o->catalog = v;
            else if (!strcmp(a, "--out")) o->out = v;
            else if (!strcmp(a, "--embed")) o->embed = v;
            else if ((o->batch = parse_count("index", a, v, 1)) < 0) return 2;
        } else {
            return cli_usage_error("index: unknown option '%s'", a);
        }
    }
    if (!o->model) return cli_usage_error("index: --model is required");
    if (!o->catalog) return cli_usage_error("index: --catalog is required");
    if (!o->out) return cli_usage_error("index: --out is required");
    if (strcmp(o->embed, "image") && strcmp(o->embed, "title") && strcmp(o->embed, "both"))
        return cli_usage_error("index: --embed must be image, title or both, not '%s'", o->embed);
    if (o->replace && !o->append) return cli_usage_error("index: --replace goes with --append");
    if (o->append && o->overwrite) return cli_usage_error("index: --append and --overwrite exclude each other");
    return 0;
}

/* Progress on stderr: one rewritten line on a terminal, else a line every few seconds. In a
 * job of several ranks rank 0 shows its own share (the others run alongside). */
typedef struct progress {
    int tty;
    double start, last;
    int64_t total;
    int ranks; /* > 1: total is rank 0's share */
} progress;

static void progress_show(progress *p, int64_t done) {
    double now = mmt_now_seconds(), elapsed = now - p->start;
    int final = done == p->total;
    if (!final && now - p->last < (p->tty ? 0.2 : 5.0)) return;
    p->last = now;
    double rate = elapsed > 0 ? (double)done / elapsed : 0, eta = rate > 0 ? (double)(p->total - done) / rate : 0;
    char share[64] = "";
    if (p->ranks > 1) snprintf(share, sizeof share, " (rank 0's share, %d ranks)", p->ranks);
    if (p->tty) {
        fprintf(stderr, "\rindex %lld/%lld items%s %.1f items/s ETA %d:%02d   ", (long long)done, (long long)p->total,
                share, rate, (int)(eta / 60), (int)eta % 60);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "mmtune: info: index %lld/%lld items%s %.1f items/s ETA %.0fs\n", (long long)done,
                (long long)p->total, share, rate, eta);
    }
    fflush(stderr);
}

/* Which input of an item embeds it: 'i' its image, 't' its title, 'b' both. */
static char item_source(const mmt_catalog_item *it, const char *embed) {
    if (!strcmp(embed, "image")) return it->image_path ? 'i' : 't';
    if (!strcmp(embed, "title")) return it->title ? 't' : 'i';
    return it->image_path && it->title ? 'b' : it->image_path ? 'i' : 't';
}

/* Embeds items [at, at + b) into out (b, D): images and titles each in one call, then the
 * items that use both get the normalised mean of the two. */
static mmt_status embed_batch(cli_encoder *enc, const mmt_catalog *c, const char *embed, int64_t at, int64_t b,
                              const char **paths, const char **texts, float *img, float *txt, float *out) {
    int64_t D = cli_encoder_dim(enc), n_img = 0, n_txt = 0;
    const mmt_ops *ops = mmt_ops_cpu();
    for (int64_t i = 0; i < b; i++) {
        const mmt_catalog_item *it = &c->items[at + i];
        char src = item_source(it, embed);
        if (src != 't') paths[n_img++] = it->image_path;
        if (src != 'i') texts[n_txt++] = it->title;
    }
    if (n_img) MMT_TRY(cli_encoder_images(enc, paths, n_img, img));
    if (n_txt) MMT_TRY(cli_encoder_texts(enc, texts, n_txt, 1, txt));
    int64_t ki = 0, kt = 0;
    for (int64_t i = 0; i < b; i++) {
        char src = item_source(&c->items[at + i], embed);
        float *row = out + i * D;
        if (src == 'i') memcpy(row, img + ki++ * D, (size_t)D * sizeof(float));
        else if (src == 't') memcpy(row, txt + kt++ * D, (size_t)D * sizeof(float));
        else {
            ops->add_fwd(row, img + ki++ * D, txt + kt++ * D, D);
            ops->l2_normalize_fwd(row, NULL, row, 1, D);
        }
    }
    return MMT_OK;
}

/* Embeds this rank's items [sh->begin, sh->end) batch by batch into vectors (share, D);
 * rank 0 shows progress. */
static mmt_status embed_share(cli_encoder *enc, const index_opts *o, const mmt_catalog *c, const cli_shard *sh,
                              float *vectors) {
    int64_t D = cli_encoder_dim(enc), B = o->batch, mine = sh->end - sh->begin;
    const char **paths = mmt_malloc((size_t)B * sizeof *paths), **texts = mmt_malloc((size_t)B * sizeof *texts);
    float *img = mmt_malloc((size_t)(B * D) * sizeof(float)), *txt = mmt_malloc((size_t)(B * D) * sizeof(float));
    mmt_status s = paths && texts && img && txt ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    progress p = {.tty = isatty(2), .start = mmt_now_seconds(), .total = mine, .ranks = sh->size};
    p.last = p.start;
    for (int64_t at = sh->begin; at < sh->end && s == MMT_OK; at += B) {
        int64_t b = sh->end - at < B ? sh->end - at : B;
        s = embed_batch(enc, c, o->embed, at, b, paths, texts, img, txt, vectors + (at - sh->begin) * D);
        /* which item: the batch again one item at a time (only on this error path), so the
         * message names its line as every other catalogue error does */
        int named = 0;
        for (int64_t i = 0; s != MMT_OK && s != MMT_STATUS_OUT_OF_MEMORY && !named && i < b; i++) {
            mmt_status one = embed_batch(enc, c, o->embed, at + i, 1, paths, texts, img, txt, vectors + (at + i - sh->begin) * D);
            if (one != MMT_OK) {
                const mmt_catalog_item *it = &c->items[at + i];
                s = mmt_error_prefix(one, "%s:%lld (id \"%.100s\"): ", c->source, (long long)it->line, it->id);
                named = 1;
            }
        }
        if (s != MMT_OK && !named)
            s = mmt_error_prefix(s, "%s (items %lld..%lld): ", c->source, (long long)at + 1, (long long)(at + b));
        else if (s == MMT_OK && cli_shard_is_root(sh) && mine >= 2 * B) progress_show(&p, at + b - sh->begin);
    }
    mmt_free(paths);
    mmt_free(texts);
    mmt_free(img);
    mmt_free(txt);
    return s;
}

/* This rank's share embedded and gathered: every item's vector on rank 0 (*vectors, (n, D)),
 * NULL on the others. */
static mmt_status embed_all(cli_encoder *enc, const index_opts *o, const mmt_catalog *c, float **vectors) {
    cli_shard sh;
    int64_t D = cli_encoder_dim(enc);
    MMT_TRY(cli_shard_open(c->n, o->batch, &sh));
    int64_t mine_n = sh.end - sh.begin;
    float *mine = mmt_malloc((size_t)((mine_n > 0 ? mine_n : 1) * D) * sizeof(float));
    mmt_status s = mine ? embed_share(enc, o, c, &sh, mine) : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = cli_shard_gather(&sh, mine, D * (int64_t)sizeof(float), (void **)vectors);
    mmt_free(mine);
    return s;
}

/* The result line: {"index": OUT, "items": .., "count": .., ...}. */
static void print_index_result(const char *out_dir, const mmt_catalog *c, const mmt_index *ix, double t0) {
    const mmt_index_info *in = mmt_index_info_of(ix);
    printf("{\"index\":");
    mmt_strbuf out = {0};
    mmt_strbuf_json_string(&out, out_dir, strlen(out_dir));
    fputs(out.data ? out.data : "null", stdout);
    mmt_strbuf_free(&out);
    printf(",\"items\":%lld,\"count\":%lld,\"dim\":%lld,\"generation\":%lld,\"embed\":\"%s\",\"seconds\":%.2f}\n",
           (long long)c->n, (long long)in->count, (long long)in->dim, (long long)in->generation, in->embed,
           mmt_now_seconds() - t0);
}

int cmd_index(int argc, char **argv) {
    index_opts o;
    int done = 0, rc = parse_index_opts(argc, argv, &o, &done);
    if (rc || done) return rc;
    double t0 = mmt_now_seconds();
    mmt_catalog *c = NULL;
    mmt_index_item *items = NULL;
    float *vectors = NULL;
    char *model_abs = absolute(o.model), *adapter_abs = o.adapter ? absolute(o.adapter) : NULL;
    char model_fp[17] = "", adapter_fp[17] = "";
    int64_t files = 0, dim = 0;
    cli_encoder enc = {0};
    int enc_open = 0;
    mmt_index_build b = {.mode = o.append ? (o.replace ? MMT_INDEX_APPEND_REPLACE : MMT_INDEX_APPEND)
                                 : o.overwrite ? MMT_INDEX_OVERWRITE : MMT_INDEX_CREATE,
                         .model_dir = model_abs, .model_fingerprint = model_fp, .adapter_dir = adapter_abs,
                         .adapter_fingerprint = o.adapter ? adapter_fp : NULL, .embed = o.embed};
    mmt_comm *world = NULL;
    mmt_status s = model_abs && (!o.adapter || adapter_abs) ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_comm_world(&world);
    int root = s == MMT_OK && mmt_comm_rank(world) == 0; /* the one rank that writes */
    if (s == MMT_OK) s = mmt_catalog_load(o.catalog, NULL, &c);
    if (s == MMT_OK && root) s = mmt_fingerprint_model(o.model, model_fp, &files);
    if (s == MMT_OK && root && o.adapter) s = mmt_fingerprint_model(o.adapter, adapter_fp, &files);
    if (s == MMT_OK && (s = cli_encoder_open(o.model, o.adapter, &enc)) == MMT_OK) {
        enc_open = 1;
        dim = cli_encoder_dim(&enc);
    }
    b.dim = dim;
    if (s == MMT_OK && !(items = mmt_calloc((size_t)c->n, sizeof *items))) s = MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < c->n; i++) {
        mmt_catalog_item *it = &c->items[i];
        if (it->image_path) {
            char *abs = absolute(it->image_path);
            if (!abs) {
                s = MMT_STATUS_OUT_OF_MEMORY;
                break;
            }
            mmt_free(it->image_path);
            it->image_path = abs;
        }
        items[i] = (mmt_index_item){.id = it->id, .title = it->title, .image_path = it->image_path, .meta = it->meta};
    }
    /* refuse what the write would refuse before the slow part (a refusal on rank 0 ends the
     * job: main aborts it, so the others do not wait for the gather) */
    if (s == MMT_OK && root) s = mmt_index_check_write(o.out, &b, items, c->n);
    if (s == MMT_OK) s = embed_all(&enc, &o, c, &vectors);
    if (s == MMT_OK && root) s = mmt_index_write(o.out, &b, items, vectors, c->n);
    mmt_index *ix = NULL;
    if (s == MMT_OK && root) s = mmt_index_open(o.out, &ix);
    if (s == MMT_OK && root) print_index_result(o.out, c, ix, t0);
    rc = s == MMT_OK ? 0 : cli_runtime_error();
    mmt_index_close(ix);
    if (enc_open) cli_encoder_close(&enc);
    mmt_free(vectors);
    mmt_free(items);
    mmt_catalog_free(c);
    mmt_free(model_abs);
    mmt_free(adapter_abs);
    return rc;
}

/* ---- mmtune search ------------------------------------------------------------------ */

typedef struct search_opts {
    const char *index, *model, *adapter, *text, *image;
    int timing, rescore_given;
    mmt_search_options so;
    mmt_search_filter filters[MAX_FILTERS];
} search_opts;

static int parse_search_opts(int argc, char **argv, search_opts *o, int *done) {
    *done = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(SEARCH_HELP, stdout);
            *done = 1;
            return 0;
        }
        if (!strcmp(a, "--int8")) {
            o->so.int8 = 1;
            continue;
        }
        if (!strcmp(a, "--timing")) {
            o->timing = 1;
            continue;
        }
        if (strcmp(a, "--index") && strcmp(a, "--model") && strcmp(a, "--adapter") && strcmp(a, "--text") &&
            strcmp(a, "--image") && strcmp(a, "--top-k") && strcmp(a, "--filter") && strcmp(a, "--rescore"))
            return cli_usage_error("search: unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("search: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--index")) o->index = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--adapter")) o->adapter = v;
        else if (!strcmp(a, "--text")) o->text = v;
        else if (!strcmp(a, "--image")) o->image = v;
        else if (!strcmp(a, "--top-k")) {
            if ((o->so.top_k = parse_count("search", a, v, 1)) < 0) return 2;
        } else if (!strcmp(a, "--rescore")) {
            if ((o->so.rescore = parse_count("search", a, v, 1)) < 0) return 2;
            o->rescore_given = 1;
        } else {
            if (o->so.n_filters == MAX_FILTERS) return cli_usage_error("search: more than %d --filter", MAX_FILTERS);
            if (mmt_search_filter_parse(v, &o->filters[o->so.n_filters]) != MMT_OK)
                return cli_usage_error("search: %s", mmt_last_error());
            o->so.n_filters++;
        }
    }
    if (!o->index) return cli_usage_error("search: --index is required");
    if (!o->model) return cli_usage_error("search: --model is required");
    if (!o->text == !o->image) return cli_usage_error("search: give one --text or one --image");
    if (o->rescore_given && !o->so.int8) return cli_usage_error("search: --rescore goes with --int8");
    return 0;
}

int cmd_search(int argc, char **argv) {
    search_opts o = {0};
    mmt_search_options_default(&o.so);
    int done = 0, rc = parse_search_opts(argc, argv, &o, &done);
    o.so.filters = o.filters;
    mmt_index *ix = NULL;
    cli_encoder enc = {0};
    int enc_open = 0;
    float *query = NULL;
    mmt_search_result r = {0};
    mmt_status s = MMT_OK;
    double t0 = mmt_now_seconds(), t_open = 0, t_embed = 0;
    if (rc == 0 && !done) {
        s = mmt_index_open(o.index, &ix);
        if (s == MMT_OK) s = mmt_index_check_model(ix, o.model, o.adapter);
        t_open = mmt_now_seconds();
        if (s == MMT_OK && (s = cli_encoder_open(o.model, o.adapter, &enc)) == MMT_OK) enc_open = 1;
        if (s == MMT_OK && cli_encoder_dim(&enc) != mmt_index_info_of(ix)->dim)
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s holds %lld-wide vectors, the model embeds %lld", o.index,
                         (long long)mmt_index_info_of(ix)->dim, (long long)cli_encoder_dim(&enc));
        if (s == MMT_OK && !(query = mmt_malloc((size_t)cli_encoder_dim(&enc) * sizeof(float))))
            s = MMT_STATUS_OUT_OF_MEMORY;
        if (s == MMT_OK && o.text) s = cli_encoder_texts(&enc, &o.text, 1, 1, query);
        if (s == MMT_OK && o.image) s = cli_encoder_images(&enc, &o.image, 1, query);
        t_embed = mmt_now_seconds();
        if (s == MMT_OK) s = mmt_index_search(ix, query, &o.so, &r);
        for (int64_t i = 0; s == MMT_OK && i < r.n; i++) {
            mmt_strbuf b = {0};
            mmt_search_hit_json(&b, &r.hits[i], i + 1);
            mmt_strbuf_append(&b, "\n", 1);
            if (b.failed) s = MMT_STATUS_OUT_OF_MEMORY;
            else fputs(b.data, stdout);
            mmt_strbuf_free(&b);
        }
        if (s == MMT_OK && o.timing)
            fprintf(stderr, "mmtune: info: open + model check %.3f s, embed %.3f s, filter %.3f ms, scan %.3f ms "
                    "(%lld rows, %s), fetch %.3f ms\n", t_open - t0, t_embed - t_open, r.filter_s * 1e3, r.scan_s * 1e3,
                    (long long)r.scanned, o.so.int8 ? "int8 + rescore" : "float32", r.fetch_s * 1e3);
        rc = s == MMT_OK ? 0 : cli_runtime_error();
    }
    mmt_search_result_free(&r);
    mmt_free(query);
    if (enc_open) cli_encoder_close(&enc);
    mmt_index_close(ix);
    for (int64_t i = 0; i < o.so.n_filters; i++) mmt_search_filter_free(&o.filters[i]);
    return rc;
}
