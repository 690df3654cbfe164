/* eval_caption.c — `mmtune eval` for a GIT captioner: captions every image of the data and
 * scores them against the image's captions with CIDEr-D, BLEU-1..4 and ROUGE-L as
 * pycocoevalcap does (eval/caption_metrics.h).
 *
 * Under mpirun the distinct images are split over the ranks in whole generation batches
 * (cli/shard.h): each rank captions its share, rank 0 gathers the captions in image order
 * and alone scores, prints and writes --out. Each batch is generated as one process generates
 * it, so the captions and scores are the single process's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/shard.h"
#include "core/alloc.h"
#include "core/json.h"
#include "data/datasets.h"
#include "eval/caption_metrics.h"
#include "gen/generate.h"

static const char *HELP =
    "usage: mmtune eval --model GIT_DIR --data FILE [--adapter DIR] [--beams N] [--max-new-tokens N]\n"
    "                   [--batch-size N] [--samples N] [--bad-words FILE | --allowed-words FILE]\n"
    "                   [--out FILE]\n"
    "\n"
    "For a GIT captioner (config.json model_type \"git\"): captions each distinct image of the\n"
    "data (a JSONL, COCO captions JSON or CSV; the captions of an image are its references)\n"
    "and prints one JSON object: images, pairs, cider_d, bleu_1..bleu_4, rouge_l (pycocoevalcap's\n"
    "numbers, with its PTB tokenization) and the first --samples captions beside their references.\n"
    "  --adapter DIR       a PEFT adapter folder (LoRA, IA3, prefix)\n"
    "  --beams N           beam search (default 1: greedy)\n"
    "  --max-new-tokens N  caption length in tokens at most (default 20)\n"
    "  --batch-size N      images per generation batch (default 8)\n"
    "  --samples N         example captions in the output (default 5)\n"
    "  --bad-words FILE    never generate these words or phrases (one per line)\n"
    "  --allowed-words FILE  captions made only of these words (one per line), as\n"
    "                      `mmtune caption --allowed-words` makes them (docs/generation.md)\n"
    "  --image-root DIR    COCO: folder the file_name entries are relative to\n"
    "  --skip-bad          skip bad records of the data file (counted)\n"
    "  --out FILE          also write the JSON object to FILE\n"
    "Under mpirun -np N each rank captions a share of the batches; rank 0 prints the result.\n";

typedef struct grouped {
    const char **paths;       /* (n) distinct images, first-appearance order */
    const char ***refs;       /* (n) each image's captions */
    int64_t *n_refs;
    char **captions;          /* (n) owned: generated */
    int64_t n;
} grouped;

/* Where the captions of this rank's images go: g->captions[first + i]. */
typedef struct caption_sink {
    grouped *g;
    int64_t first;
} caption_sink;

static mmt_status store_caption(void *user, int64_t i, const char *caption) {
    caption_sink *k = user;
    return (k->g->captions[k->first + i] = mmt_strdup(caption)) ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
}

/* Images in first-appearance order with their captions (pairs sharing an image_path). */
static mmt_status group_pairs(const mmt_pairs *p, grouped *g) {
    memset(g, 0, sizeof *g);
    int64_t n = p->n > 0 ? p->n : 1;
    int64_t *owner = mmt_malloc((size_t)n * sizeof *owner);
    g->paths = mmt_calloc((size_t)n, sizeof *g->paths);
    g->refs = mmt_calloc((size_t)n, sizeof *g->refs);
    g->n_refs = mmt_calloc((size_t)n, sizeof *g->n_refs);
    g->captions = mmt_calloc((size_t)n, sizeof *g->captions);
    if (!owner || !g->paths || !g->refs || !g->n_refs || !g->captions) {
        mmt_free(owner);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    /* O(pairs x images) lookups are fine at evaluation sizes (thousands of images) */
    for (int64_t i = 0; i < p->n; i++) {
        int64_t k = 0;
        while (k < g->n && strcmp(g->paths[k], p->items[i].image_path) != 0) k++;
        if (k == g->n) g->paths[g->n++] = p->items[i].image_path;
        owner[i] = k;
        g->n_refs[k]++;
    }
    mmt_status s = MMT_OK;
    for (int64_t k = 0; k < g->n && s == MMT_OK; k++) {
        if (!(g->refs[k] = mmt_calloc((size_t)g->n_refs[k], sizeof *g->refs[k]))) s = MMT_STATUS_OUT_OF_MEMORY;
        g->n_refs[k] = 0;
    }
    for (int64_t i = 0; i < p->n && s == MMT_OK; i++) g->refs[owner[i]][g->n_refs[owner[i]]++] = p->items[i].text;
    mmt_free(owner);
    return s;
}

static void grouped_free(grouped *g) {
    for (int64_t k = 0; g->refs && k < g->n; k++) mmt_free((void *)g->refs[k]);
    for (int64_t k = 0; g->captions && k < g->n; k++) mmt_free(g->captions[k]);
    mmt_free(g->paths);
    mmt_free(g->refs);
    mmt_free(g->n_refs);
    mmt_free(g->captions);
}

/* Captions this rank's images [sh->begin, sh->end) and gathers every image's caption on rank 0
 * (g->captions complete there; the others keep their own share only). */
static mmt_status caption_share(cli_captioner *c, const mmt_gen_settings *gs, const cli_shard *sh, grouped *g) {
    caption_sink sink = {g, sh->begin};
    MMT_TRY(cli_captioner_run(c, g->paths + sh->begin, sh->end - sh->begin, gs, NULL, sh->batch, store_caption, &sink));
    if (sh->size == 1) return MMT_OK;
    /* this rank's captions, each with its terminating NUL, in image order */
    mmt_strbuf mine = {0};
    for (int64_t k = sh->begin; k < sh->end; k++) mmt_strbuf_append(&mine, g->captions[k], strlen(g->captions[k]) + 1);
    char *all = NULL;
    int64_t *off = mmt_malloc((size_t)(sh->size + 1) * sizeof *off);
    /* a rank that fails here returns before the gather; main then ends the job */
    mmt_status s = mine.failed || !off ? mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory") : MMT_OK;
    if (s == MMT_OK) s = cli_shard_gather_bytes(sh, mine.data ? mine.data : "", (int64_t)mine.len, (void **)&all, off);
    int64_t k = 0;
    for (int64_t at = 0; s == MMT_OK && cli_shard_is_root(sh) && at < off[sh->size] && k < g->n; k++) {
        size_t len = strnlen(all + at, (size_t)(off[sh->size] - at));
        if (k < sh->begin || k >= sh->end) { /* rank 0 has its own already */
            if (!(g->captions[k] = mmt_malloc(len + 1))) s = MMT_STATUS_OUT_OF_MEMORY;
            else memcpy(g->captions[k], all + at, len), g->captions[k][len] = '\0';
        }
        at += (int64_t)len + 1;
    }
    if (s == MMT_OK && cli_shard_is_root(sh) && k != g->n)
        s = mmt_fail(MMT_STATUS_INTERNAL, "eval: %lld captions from the ranks, expected %lld", (long long)k, (long long)g->n);
    mmt_free(all);
    mmt_free(off);
    mmt_strbuf_free(&mine);
    return s;
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void write_result(FILE *f, const grouped *g, int64_t pairs, const mmt_caption_metrics *m, int64_t samples) {
    fprintf(f, "{\"images\": %lld, \"pairs\": %lld, \"cider_d\": %.6f, \"bleu_1\": %.6f, \"bleu_2\": %.6f, "
               "\"bleu_3\": %.6f, \"bleu_4\": %.6f, \"rouge_l\": %.6f, \"samples\": [",
            (long long)g->n, (long long)pairs, m->cider_d, m->bleu[0], m->bleu[1], m->bleu[2], m->bleu[3], m->rouge_l);
    for (int64_t k = 0; k < g->n && k < samples; k++) {
        fputs(k ? ", {\"image\": " : "{\"image\": ", f);
        json_string(f, g->paths[k]);
        fputs(", \"caption\": ", f);
        json_string(f, g->captions[k]);
        fputs(", \"references\": [", f);
        for (int64_t r = 0; r < g->n_refs[k]; r++) {
            if (r) fputs(", ", f);
            json_string(f, g->refs[k][r]);
        }
        fputs("]}", f);
    }
    fputs("]}\n", f);
}

int cmd_eval_captions(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *adapter = NULL, *out = NULL, *bad_words = NULL, *allowed_words = NULL;
    int64_t batch = 8, samples = 5;
    mmt_gen_settings gs = mmt_gen_settings_default();
    mmt_pairs_options po;
    mmt_pairs_options_default(&po);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--skip-bad")) {
            po.skip_bad = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("eval: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--adapter")) adapter = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--image-root")) po.image_root = v;
        else if (!strcmp(a, "--bad-words")) bad_words = v;
        else if (!strcmp(a, "--allowed-words")) allowed_words = v;
        else if (!strcmp(a, "--beams") || !strcmp(a, "--max-new-tokens") || !strcmp(a, "--batch-size") ||
                 !strcmp(a, "--samples")) {
            char *end;
            errno = 0;
            long long n = strtoll(v, &end, 10);
            if (!*v || *end || errno || n < (strcmp(a, "--samples") ? 1 : 0) || n > 1000000)
                return cli_usage_error("eval: %s needs a whole number from %d to 1000000, got '%s'", a,
                                       strcmp(a, "--samples") ? 1 : 0, v);
            if (!strcmp(a, "--beams")) gs.num_beams = n;
            else if (!strcmp(a, "--max-new-tokens")) gs.max_new_tokens = n;
            else if (!strcmp(a, "--batch-size")) batch = n;
            else samples = n;
        } else {
            return cli_usage_error("eval: unknown option '%s' for a captioner", a);
        }
    }
    if (!model || !data) return cli_usage_error("eval: --model and --data are required");
    if (bad_words && allowed_words) return cli_usage_error("eval: --bad-words and --allowed-words exclude each other");
    cli_captioner *c = NULL;
    mmt_pairs *pairs = NULL;
    grouped g = {0};
    cli_shard sh = {0};
    mmt_caption_item *items = NULL;
    mmt_caption_metrics m;
    mmt_status s = mmt_comm_world(&sh.comm);
    int root = s == MMT_OK && mmt_comm_rank(sh.comm) == 0;
    if (s == MMT_OK) s = cli_captioner_open(model, adapter, &c);
    if (s == MMT_OK) s = mmt_pairs_load(data, &po, &pairs);
    if (s == MMT_OK && root && pairs->skipped)
        fprintf(stderr, "mmtune: skipped %lld bad records of %s\n", (long long)pairs->skipped, data);
    if (s == MMT_OK) s = group_pairs(pairs, &g);
    if (s == MMT_OK) s = cli_captioner_defaults(c, &gs);
    if (s == MMT_OK && (bad_words || allowed_words))
        s = cli_captioner_words(c, allowed_words ? allowed_words : bad_words, allowed_words != NULL, &gs);
    if (s == MMT_OK) s = cli_shard_open(g.n, batch, &sh);
    if (s == MMT_OK) s = caption_share(c, &gs, &sh, &g);
    if (s == MMT_OK && root && !(items = mmt_calloc((size_t)(g.n > 0 ? g.n : 1), sizeof *items))) s = MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t k = 0; s == MMT_OK && root && k < g.n; k++) items[k] = (mmt_caption_item){g.captions[k], g.refs[k], g.n_refs[k]};
    if (s == MMT_OK && root) s = mmt_caption_scores(items, g.n, &m, NULL);
    int rc = 0;
    if (s != MMT_OK) {
        rc = cli_runtime_error();
    } else if (root) {
        write_result(stdout, &g, pairs->n, &m, samples);
        FILE *f = out ? fopen(out, "w") : NULL;
        if (out && !f) rc = cli_usage_error("eval: cannot write %s: %s", out, strerror(errno));
        if (f) {
            write_result(f, &g, pairs->n, &m, samples);
            if (fclose(f) != 0) rc = cli_usage_error("eval: cannot write %s", out);
        }
    }
    mmt_free(items);
    grouped_free(&g);
    mmt_pairs_free(pairs);
    cli_captioner_close(c);
    return rc;
}
