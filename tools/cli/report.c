/*
 * report.c — `mmtune report`: gathers a run's curves (metrics.jsonl), settings (the newest
 * checkpoint's trainer_state.json), eval JSON before and after, and retrieval examples, and
 * writes them as one self-contained HTML file with eval/report.h.
 *
 * Retrieval examples: the first --examples distinct texts of --queries are the queries and
 * every pair's image is the gallery; each query's top images are found with the base model
 * ("before") and with the run's adapter ("after"), and shown as 64x64 PNG thumbnails.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/encoder.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/file.h"
#include "core/json.h"
#include "data/datasets.h"
#include "data/image.h"
#include "data/image_write.h"
#include "eval/report.h"

#define THUMB 64

static const char *REPORT_HELP =
    "usage: mmtune report --run DIR [--before FILE] [--after FILE] [--out FILE]\n"
    "                     [--queries PAIRS --model DIR [--adapter DIR] [--examples N]]\n"
    "                     [--caption-run DIR] [--caption-before FILE] [--caption-after FILE]\n"
    "\n"
    "Writes a single self-contained HTML file (default DIR/report.html): the loss and\n"
    "learning-rate curves of DIR/metrics.jsonl, the before/after metrics of two `mmtune eval`\n"
    "JSON files, the settings in the newest checkpoint's trainer_state.json, and with\n"
    "--queries a few test queries with their top images before and after fine-tuning.\n"
    "A captioning part is added with any of:\n"
    "  --caption-run DIR     a captioner's training run: its loss curve\n"
    "  --caption-before FILE, --caption-after FILE\n"
    "                        `mmtune eval` JSON of a captioner before and after fine-tuning: the\n"
    "                        caption metrics, and the sample images (eval --samples N) with the\n"
    "                        captions generated before and after beside their references\n"
    "  --queries PAIRS  pairs file: its first distinct texts are the queries (with a \"label\" on\n"
    "                   every pair: the first text of each class, and a hit of the same class\n"
    "                   counts as correct), its images the gallery\n"
    "  --model DIR      the base model (before)\n"
    "  --adapter DIR    the fine-tuned adapter (after; default DIR/adapter of the run)\n"
    "  --examples N     how many queries (default 3)\n"
    "  --max-text-bytes N, --max-file-bytes N\n"
    "                   limits on the queries file, as in mmtune eval (default 65536, 2147483648)\n";

typedef struct report_data {
    double *steps, *loss, *lr;
    int64_t n_points;
    double *cap_steps, *cap_loss, *cap_lr; /* the captioner's run */
    int64_t cap_points;
    mmt_json_doc *cap_before, *cap_after;  /* owned */
    mmt_report_metric *cap_metrics;
    int64_t n_cap_metrics;
    mmt_report_caption *captions;
    const char ***cap_refs; /* per caption: its references (pointers into the JSON) */
    uint8_t **cap_thumbs;   /* owned PNGs */
    size_t *cap_thumb_lens;
    int64_t n_captions;
    mmt_json_doc *state, *before, *after; /* owned */
    mmt_report_setting *settings;
    char **setting_values; /* owned texts of settings[i].value */
    int64_t n_settings;
    mmt_report_metric *metrics;
    int64_t n_metrics;
    mmt_report_example *examples;
    int64_t n_examples;
    uint8_t **thumbs; /* owned PNGs, one per gallery image (NULL where not needed) */
    size_t *thumb_lens;
    int64_t n_thumbs;
} report_data;

static mmt_status read_curves(const char *run, double **steps, double **loss, double **lrs, int64_t *n_points) {
    char *path = mmt_path_join(run, "metrics.jsonl"), *text = NULL;
    size_t len = 0;
    if (!path) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
    mmt_status s = mmt_file_read_all(path, (size_t)1 << 30, &text, &len);
    int64_t cap = 0, line = 0;
    for (size_t at = 0; s == MMT_OK && at < len;) {
        size_t end = at;
        while (end < len && text[end] != '\n') end++;
        line++;
        if (end > at) {
            mmt_json_doc *doc = NULL;
            char where[600];
            snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
            s = mmt_json_parse(text + at, end - at, where, &doc);
            if (s != MMT_OK && end == len) { /* the last line, cut short by a run killed while writing it */
                mmt_log_warn("report: %s: the last line is cut short (a run stopped while writing it); left out", where);
                mmt_clear_error();
                s = MMT_OK;
                break;
            }
            double st = NAN, lo = NAN, lr = NAN;
            if (s == MMT_OK) s = mmt_json_get_double(mmt_json_root(doc), "step", NAN, &st, where, "");
            if (s == MMT_OK) s = mmt_json_get_double(mmt_json_root(doc), "loss", NAN, &lo, where, "");
            if (s == MMT_OK) s = mmt_json_get_double(mmt_json_root(doc), "lr", NAN, &lr, where, "");
            mmt_json_free(doc);
            if (s == MMT_OK && *n_points == cap) {
                cap = cap ? cap * 2 : 256;
                double *a = mmt_realloc(*steps, (size_t)cap * sizeof(double));
                if (a) *steps = a;
                double *b = mmt_realloc(*loss, (size_t)cap * sizeof(double));
                if (b) *loss = b;
                double *c = mmt_realloc(*lrs, (size_t)cap * sizeof(double));
                if (c) *lrs = c;
                if (!a || !b || !c) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
            }
            if (s == MMT_OK) {
                (*steps)[*n_points] = st, (*loss)[*n_points] = lo, (*lrs)[*n_points] = lr;
                (*n_points)++;
            }
        }
        at = end + 1;
    }
    mmt_free(text);
    mmt_free(path);
    return s;
}

/* The settings object of the newest DIR/ckpt-N/trainer_state.json; none is not an error. */
static mmt_status read_settings(const char *run, report_data *d) {
    DIR *dir = opendir(run);
    if (!dir) return mmt_fail(MMT_STATUS_IO, "%s: cannot open the run folder", run);
    long long best = -1;
    for (struct dirent *e; (e = readdir(dir));) {
        char *end;
        if (strncmp(e->d_name, "ckpt-", 5) != 0) continue;
        long long n = strtoll(e->d_name + 5, &end, 10);
        if (*end == '\0' && end != e->d_name + 5 && n > best) best = n;
    }
    closedir(dir);
    if (best < 0) return MMT_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/ckpt-%lld/trainer_state.json", run, best);
    MMT_TRY(mmt_json_parse_file(path, &d->state));
    const mmt_json *set = mmt_json_get(mmt_json_root(d->state), "settings");
    if (!set || set->type != MMT_JSON_OBJECT || !set->len) return MMT_OK;
    d->settings = mmt_calloc(set->len, sizeof *d->settings);
    d->setting_values = mmt_calloc(set->len, sizeof *d->setting_values);
    if (!d->settings || !d->setting_values) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
    for (size_t i = 0; i < set->len; i++) {
        const mmt_json *v = &set->items[i];
        char buf[64];
        const char *text = buf;
        if (v->type == MMT_JSON_STRING) text = v->string;
        else if (v->type == MMT_JSON_NUMBER && v->is_integer) snprintf(buf, sizeof buf, "%lld", (long long)v->integer);
        else if (v->type == MMT_JSON_NUMBER) snprintf(buf, sizeof buf, "%.6g", v->number);
        else if (v->type == MMT_JSON_BOOL) text = v->boolean ? "true" : "false";
        else if (v->type == MMT_JSON_NULL) text = "(none)";
        else text = "(structured)";
        if (!(d->setting_values[i] = mmt_strdup(text))) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
        d->settings[i].key = set->keys[i];
        d->settings[i].value = d->setting_values[i];
        d->n_settings++;
    }
    return MMT_OK;
}

static mmt_status add_metric(mmt_report_metric **metrics, int64_t *n, const char *name, double value, int after) {
    for (int64_t i = 0; i < *n; i++)
        if (!strcmp((*metrics)[i].name, name)) {
            if (after) (*metrics)[i].after = value;
            else (*metrics)[i].before = value;
            return MMT_OK;
        }
    mmt_report_metric *m = mmt_realloc(*metrics, (size_t)(*n + 1) * sizeof *m);
    if (!m) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
    *metrics = m;
    m[*n].name = name;
    m[*n].before = after ? NAN : value;
    m[*n].after = after ? value : NAN;
    (*n)++;
    return MMT_OK;
}

/* Every number at the top level of an eval JSON file. */
static mmt_status read_eval(const char *path, int after, mmt_json_doc **doc, mmt_report_metric **metrics, int64_t *n) {
    MMT_TRY(mmt_json_parse_file(path, doc));
    const mmt_json *root = mmt_json_root(*doc);
    if (root->type != MMT_JSON_OBJECT) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object (mmtune eval --out)", path);
    for (size_t i = 0; i < root->len; i++)
        if (root->items[i].type == MMT_JSON_NUMBER) MMT_TRY(add_metric(metrics, n, root->keys[i], root->items[i].number, after));
    return MMT_OK;
}

static mmt_status thumbnail(const char *path, uint8_t **png, size_t *len) {
    mmt_image img = {0}, small = {0};
    mmt_status s = mmt_image_decode_file(path, &img);
    if (s == MMT_OK) s = mmt_image_resize(&img, THUMB, THUMB, MMT_RESAMPLE_BICUBIC, &small);
    if (s == MMT_OK) s = mmt_image_encode_png(&small, png, len);
    mmt_image_free(&img);
    mmt_image_free(&small);
    return s;
}

/* Fills one side of every example: the top images of each query under one encoder. */
static mmt_status rank_side(const char *model, const char *adapter, const mmt_pairs *pairs, const int64_t *query_pair,
                            int after, report_data *d) {
    cli_encoder enc = {0};
    const char **paths = NULL, **texts = NULL;
    float *img = NULL, *txt = NULL;
    char *repeat = NULL; /* repeat[i]: image i is listed earlier too (several captions) */
    mmt_status s = cli_encoder_open(model, adapter, &enc);
    int64_t P = s == MMT_OK ? cli_encoder_dim(&enc) : 0, n = pairs->n, q = d->n_examples;
    if (s == MMT_OK) {
        paths = mmt_malloc((size_t)n * sizeof *paths);
        texts = mmt_malloc((size_t)q * sizeof *texts);
        img = mmt_malloc((size_t)(n * P) * sizeof(float));
        txt = mmt_malloc((size_t)(q * P) * sizeof(float));
        repeat = mmt_calloc((size_t)(n ? n : 1), 1);
        if (!paths || !texts || !img || !txt || !repeat) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
    }
    for (int64_t i = 0; s == MMT_OK && i < n; i++) paths[i] = pairs->items[i].image_path;
    for (int64_t i = 0; s == MMT_OK && i < n; i++)
        for (int64_t j = 0; j < i && !repeat[i]; j++) repeat[i] = !strcmp(paths[j], paths[i]);
    for (int64_t i = 0; s == MMT_OK && i < q; i++) texts[i] = pairs->items[query_pair[i]].text;
    if (s == MMT_OK) s = cli_encoder_images(&enc, paths, n, img);
    if (s == MMT_OK) s = cli_encoder_texts(&enc, texts, q, 1, txt);
    for (int64_t e = 0; s == MMT_OK && e < q; e++) {
        int64_t top[MMT_REPORT_TOP];
        double top_sim[MMT_REPORT_TOP];
        int64_t k = 0;
        for (int64_t i = 0; i < n; i++) {
            if (repeat[i]) continue; /* an image listed twice is shown once */
            double sim = 0;
            for (int64_t c = 0; c < P; c++) sim += (double)txt[e * P + c] * img[i * P + c];
            if (k < MMT_REPORT_TOP) k++;
            else if (!(sim > top_sim[k - 1])) continue;
            top[k - 1] = i, top_sim[k - 1] = sim;
            for (int64_t j = k - 1; j > 0 && top_sim[j] > top_sim[j - 1]; j--) { /* keep best first */
                int64_t ti = top[j];
                double ts = top_sim[j];
                top[j] = top[j - 1], top_sim[j] = top_sim[j - 1];
                top[j - 1] = ti, top_sim[j - 1] = ts;
            }
        }
        mmt_report_hit *hits = after ? d->examples[e].after : d->examples[e].before;
        for (int64_t j = 0; j < k && s == MMT_OK; j++) {
            int64_t i = top[j];
            if (!d->thumbs[i]) s = thumbnail(paths[i], &d->thumbs[i], &d->thumb_lens[i]);
            hits[j].png = d->thumbs[i];
            hits[j].png_len = d->thumb_lens[i];
            hits[j].caption = pairs->items[i].text;
            const mmt_pair *qp = &pairs->items[query_pair[e]], *hp = &pairs->items[i];
            hits[j].correct = !strcmp(paths[i], qp->image_path) || (qp->label && hp->label && !strcmp(qp->label, hp->label));
        }
        if (after) d->examples[e].n_after = k;
        else d->examples[e].n_before = k;
    }
    mmt_free(paths);
    mmt_free(texts);
    mmt_free(img);
    mmt_free(txt);
    mmt_free(repeat);
    cli_encoder_close(&enc);
    return s;
}

static mmt_status build_examples(const char *queries, const mmt_pairs_options *po, const char *model,
                                 const char *adapter, int64_t want, mmt_pairs **pairs_out, report_data *d) {
    MMT_TRY(mmt_pairs_load(queries, po, pairs_out));
    const mmt_pairs *pairs = *pairs_out;
    int64_t query_pair[64];
    if (want > 64) want = 64;
    /* labelled pairs: one query per class, in file order; otherwise distinct texts */
    int labelled = pairs->n > 0;
    for (int64_t i = 0; i < pairs->n; i++) labelled &= pairs->items[i].label != NULL;
    for (int64_t i = 0; i < pairs->n && d->n_examples < want; i++) {
        int seen = 0;
        for (int64_t j = 0; j < d->n_examples && !seen; j++) {
            const mmt_pair *a = &pairs->items[query_pair[j]], *b = &pairs->items[i];
            seen = labelled ? !strcmp(a->label, b->label) : !strcmp(a->text, b->text);
        }
        if (!seen) query_pair[d->n_examples++] = i;
    }
    d->examples = mmt_calloc((size_t)(d->n_examples ? d->n_examples : 1), sizeof *d->examples);
    d->thumbs = mmt_calloc((size_t)pairs->n, sizeof *d->thumbs);
    d->thumb_lens = mmt_calloc((size_t)pairs->n, sizeof *d->thumb_lens);
    d->n_thumbs = pairs->n;
    if (!d->examples || !d->thumbs || !d->thumb_lens) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
    for (int64_t e = 0; e < d->n_examples; e++) d->examples[e].query = pairs->items[query_pair[e]].text;
    MMT_TRY(rank_side(model, NULL, pairs, query_pair, 0, d));
    if (adapter) MMT_TRY(rank_side(model, adapter, pairs, query_pair, 1, d));
    return MMT_OK;
}

/* The "samples" array of an eval file, or NULL; a present one must be an array of objects. */
static mmt_status eval_samples(const mmt_json_doc *doc, const char *path, const mmt_json **out) {
    *out = NULL;
    if (!doc) return MMT_OK;
    const mmt_json *a = mmt_json_get(mmt_json_root(doc), "samples");
    if (!a) return MMT_OK;
    if (a->type != MMT_JSON_ARRAY) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: samples: expected an array", path);
    for (size_t i = 0; i < a->len; i++) {
        const mmt_json *e = &a->items[i], *img = mmt_json_get(e, "image"), *cap = mmt_json_get(e, "caption");
        if (e->type != MMT_JSON_OBJECT || !img || img->type != MMT_JSON_STRING || !cap || cap->type != MMT_JSON_STRING)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: samples[%zu]: expected {\"image\", \"caption\", \"references\"}", path, i);
    }
    *out = a;
    return MMT_OK;
}

/* The captioned images: the "after" file's samples (or the "before" file's when there is no
 * after), each with the other side's caption of the same image. */
static mmt_status build_captions(const char *before_path, const char *after_path, report_data *d) {
    const mmt_json *bs = NULL, *as = NULL;
    MMT_TRY(eval_samples(d->cap_before, before_path, &bs));
    MMT_TRY(eval_samples(d->cap_after, after_path, &as));
    const mmt_json *primary = as ? as : bs;
    int64_t n = primary ? (int64_t)primary->len : 0;
    if (n > 64) n = 64;
    if (!n) return MMT_OK;
    d->captions = mmt_calloc((size_t)n, sizeof *d->captions);
    d->cap_refs = mmt_calloc((size_t)n, sizeof *d->cap_refs);
    d->cap_thumbs = mmt_calloc((size_t)n, sizeof *d->cap_thumbs);
    d->cap_thumb_lens = mmt_calloc((size_t)n, sizeof *d->cap_thumb_lens);
    if (!d->captions || !d->cap_refs || !d->cap_thumbs || !d->cap_thumb_lens)
        return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
    d->n_captions = n;
    for (int64_t i = 0; i < n; i++) {
        const mmt_json *e = &primary->items[i], *refs = mmt_json_get(e, "references");
        const char *image = mmt_json_get(e, "image")->string, *caption = mmt_json_get(e, "caption")->string;
        mmt_report_caption *c = &d->captions[i];
        if (as) c->after = caption;
        else c->before = caption;
        for (size_t j = 0; as && bs && j < bs->len; j++)
            if (!strcmp(mmt_json_get(&bs->items[j], "image")->string, image)) {
                c->before = mmt_json_get(&bs->items[j], "caption")->string;
                break;
            }
        if (refs && refs->type == MMT_JSON_ARRAY && refs->len) {
            if (!(d->cap_refs[i] = mmt_calloc(refs->len, sizeof *d->cap_refs[i])))
                return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
            for (size_t j = 0; j < refs->len; j++)
                if (refs->items[j].type == MMT_JSON_STRING) d->cap_refs[i][c->n_references++] = refs->items[j].string;
            c->references = d->cap_refs[i];
        }
        mmt_status s = thumbnail(image, &d->cap_thumbs[i], &d->cap_thumb_lens[i]);
        if (s != MMT_OK) return mmt_error_prefix(s, "%s: samples[%lld]: ", as ? after_path : before_path, (long long)i);
        c->png = d->cap_thumbs[i];
        c->png_len = d->cap_thumb_lens[i];
    }
    return MMT_OK;
}

static void report_data_free(report_data *d) {
    mmt_free(d->cap_steps);
    mmt_free(d->cap_loss);
    mmt_free(d->cap_lr);
    mmt_free(d->cap_metrics);
    for (int64_t i = 0; i < d->n_captions; i++) {
        mmt_free((void *)d->cap_refs[i]);
        mmt_free(d->cap_thumbs[i]);
    }
    mmt_free(d->captions);
    mmt_free(d->cap_refs);
    mmt_free(d->cap_thumbs);
    mmt_free(d->cap_thumb_lens);
    mmt_json_free(d->cap_before);
    mmt_json_free(d->cap_after);
    mmt_free(d->steps);
    mmt_free(d->loss);
    mmt_free(d->lr);
    for (int64_t i = 0; d->setting_values && i < d->n_settings; i++) mmt_free(d->setting_values[i]);
    mmt_free(d->setting_values);
    mmt_free(d->settings);
    mmt_free(d->metrics);
    mmt_free(d->examples);
    for (int64_t i = 0; d->thumbs && i < d->n_thumbs; i++) mmt_free(d->thumbs[i]);
    mmt_free(d->thumbs);
    mmt_free(d->thumb_lens);
    mmt_json_free(d->state);
    mmt_json_free(d->before);
    mmt_json_free(d->after);
}

/* The run folder's last path component, for the title. */
static const char *run_name(const char *run) {
    static char name[256];
    size_t n = strlen(run);
    while (n > 1 && run[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && run[b - 1] != '/') b--;
    snprintf(name, sizeof name, "%.*s", (int)(n - b), run + b);
    return name;
}

int cmd_report(int argc, char **argv) {
    const char *run = NULL, *before = NULL, *after = NULL, *out = NULL, *queries = NULL, *model = NULL, *adapter = NULL;
    const char *cap_run = NULL, *cap_before = NULL, *cap_after = NULL;
    int64_t examples = 3;
    mmt_pairs_options po;
    mmt_pairs_options_default(&po);
    int examples_set = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(REPORT_HELP, stdout), 0;
        if (i + 1 >= argc) return cli_usage_error("report: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--run")) run = v;
        else if (!strcmp(a, "--before")) before = v;
        else if (!strcmp(a, "--after")) after = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--queries")) queries = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--adapter")) adapter = v;
        else if (!strcmp(a, "--caption-run")) cap_run = v;
        else if (!strcmp(a, "--caption-before")) cap_before = v;
        else if (!strcmp(a, "--caption-after")) cap_after = v;
        else if (!strcmp(a, "--examples")) {
            char *end;
            examples = strtoll(v, &end, 10);
            if (*end || examples < 1 || examples > 64) return cli_usage_error("--examples needs a number from 1 to 64");
            examples_set = 1;
        } else if (!strcmp(a, "--max-text-bytes") || !strcmp(a, "--max-file-bytes")) {
            char *end;
            long long n = strtoll(v, &end, 10);
            if (!*v || *end || n < 1) return cli_usage_error("report: %s needs a positive number of bytes, got '%s'", a, v);
            if (!strcmp(a, "--max-text-bytes")) po.max_text_bytes = (size_t)n;
            else po.max_file_bytes = (size_t)n;
        } else return cli_usage_error("report: unknown option '%s'", a);
    }
    if (!run) return cli_usage_error("report: --run is required");
    if (queries && !model) return cli_usage_error("report: --queries needs --model");
    if (!queries && (model || adapter || examples_set))
        return cli_usage_error("report: --model, --adapter and --examples choose the retrieval examples; they go with --queries");
    report_data d = {0};
    mmt_pairs *pairs = NULL;
    mmt_strbuf html = {0};
    char *default_out = out ? NULL : mmt_path_join(run, "report.html");
    char *default_adapter = NULL;
    if (queries && !adapter) {
        default_adapter = mmt_path_join(run, "adapter");
        if (default_adapter && mmt_file_exists(default_adapter)) adapter = default_adapter;
    }
    mmt_status s = read_curves(run, &d.steps, &d.loss, &d.lr, &d.n_points);
    if (s == MMT_OK) s = read_settings(run, &d);
    if (s == MMT_OK && before) s = read_eval(before, 0, &d.before, &d.metrics, &d.n_metrics);
    if (s == MMT_OK && after) s = read_eval(after, 1, &d.after, &d.metrics, &d.n_metrics);
    if (s == MMT_OK && queries) s = build_examples(queries, &po, model, adapter, examples, &pairs, &d);
    if (s == MMT_OK && cap_run) s = read_curves(cap_run, &d.cap_steps, &d.cap_loss, &d.cap_lr, &d.cap_points);
    if (s == MMT_OK && cap_before) s = read_eval(cap_before, 0, &d.cap_before, &d.cap_metrics, &d.n_cap_metrics);
    if (s == MMT_OK && cap_after) s = read_eval(cap_after, 1, &d.cap_after, &d.cap_metrics, &d.n_cap_metrics);
    if (s == MMT_OK && (cap_before || cap_after)) s = build_captions(cap_before, cap_after, &d);
    if (s == MMT_OK) {
        mmt_report r = {.title = run_name(run), .steps = d.steps, .loss = d.loss, .lr = d.lr, .n_points = d.n_points,
                        .settings = d.settings, .n_settings = d.n_settings, .metrics = d.metrics, .n_metrics = d.n_metrics,
                        .examples = d.examples, .n_examples = d.n_examples, .caption_steps = d.cap_steps,
                        .caption_loss = d.cap_loss, .caption_points = d.cap_points, .caption_metrics = d.cap_metrics,
                        .n_caption_metrics = d.n_cap_metrics, .captions = d.captions, .n_captions = d.n_captions};
        s = mmt_report_render(&r, &html);
    }
    const char *path = out ? out : default_out;
    if (s == MMT_OK) s = mmt_file_write_atomic(path, html.data, html.len);
    int rc = s == MMT_OK ? 0 : cli_runtime_error();
    if (rc == 0) printf("{\"report\": \"%s\", \"bytes\": %zu}\n", path, html.len);
    mmt_strbuf_free(&html);
    mmt_pairs_free(pairs);
    report_data_free(&d);
    mmt_free(default_out);
    mmt_free(default_adapter);
    return rc;
}
