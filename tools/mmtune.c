/*
 * mmtune.c — the command-line interface. The only code that prints errors and picks exit
 * codes: 0 success, 1 a failure while working (the library's one-line message is printed
 * as "mmtune: error: ..."), 2 a usage error.
 *
 *   mmtune embed    --model DIR [--adapter DIR] [--image PATH]... [--text STR]... [--truncate]
 *   mmtune classify --model DIR [--adapter DIR] --image PATH... --labels "a,b,c" [--template T]
 *   mmtune inspect  --model DIR [--tensors]
 *   mmtune bench embed [--batch 1,32] [--iters N] [--model DIR] [--tower image|text|both]
 *   mmtune train / eval / merge   (tools/cli/train.c)
 *   mmtune synth                  (tools/cli/synth.c)
 *   mmtune bpe                    (tools/cli/bpe.c)
 *   mmtune init                   (tools/cli/init.c)
 *   mmtune wordpiece              (tools/cli/wordpiece.c)
 *   mmtune report                 (tools/cli/report.c)
 *   mmtune index / search         (tools/cli/index.c)
 *   mmtune serve                  (tools/cli/serve.c)
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/json.h"
#include "dist/comm.h"
#include "eval/zeroshot.h"
#include "data/tokenizer.h"
#include "mmtune.h"
#include "models/clip.h"
#include "ops/ops.h"
#include "cli/cli.h"
#include "cli/encoder.h"

#define MAX_INPUTS 4096

static const char *USAGE =
    "usage: mmtune <command> [options]\n"
    "\n"
    "commands:\n"
    "  embed      print normalised projected embeddings of images and texts (JSON lines)\n"
    "  classify   zero-shot classify images against text labels (JSON lines)\n"
    "  inspect    show a model's config, tensors, dtypes and parameter count\n"
    "  train      fine-tune a CLIP on image-text pairs, or a GIT captioner on captions\n"
    "  caption    caption images with a GIT captioner (+ adapter): greedy, beams, sampling\n"
    "  eval       retrieval recall@K and loss of a model (+ adapter) on pairs; a GIT\n"
    "             captioner: CIDEr-D, BLEU-1..4, ROUGE-L of its captions\n"
    "  merge      fold an adapter into the base and write a Hugging Face snapshot\n"
    "  quantize   write a snapshot with int8 or NF4 linear weights (bitsandbytes' layout)\n"
    "  prune      remove a CLIP's least important MLP neurons and layers (Taylor scores on data)\n"
    "  bench      measure throughput (bench embed|train|adapters|caption|search|serve --help)\n"
    "  fashion-mnist  write Fashion-MNIST as PNG images + captioned JSONL pairs\n"
    "  synth      write a synthetic image-caption dataset (PNG/JPEG, JSONL, COCO)\n"
    "  bpe        train a CLIP byte-level BPE vocabulary on captions\n"
    "  init       write a fresh randomly initialised CLIP snapshot (Hugging Face layout)\n"
    "             (--family git: a GIT captioner)\n"
    "  wordpiece  build a BERT WordPiece vocabulary (tokenizer.json) from captions\n"
    "  report     write a run's self-contained HTML report (curves, metrics, examples)\n"
    "  curate     find near-duplicate and mismatched pairs with a CLIP; write the set without them\n"
    "  index      embed a catalogue (JSONL or CSV) into a search index folder\n"
    "  search     exact top-k search of an index by text or image, with metadata filters\n"
    "  serve      an HTTP service: embeddings, classification, search, captions, adapters, metrics\n"
    "  version    print the version\n"
    "\n"
    "Every command that loads a model (but train: --quantize there) also takes:\n"
    "  --int8     keep the linear weights in int8 (per output row, bitsandbytes' LLM.int8 layout)\n"
    "             and run them with int8 activations (per token) in integer kernels\n"
    "  --quantize-base int8|nf4   the same, or NF4 4-bit (QLoRA's base; computed in fp32)\n"
    "             (search's own --int8 scans the index's int8 copy; --quantize-base applies)\n"
    "  --window CENTER,WIDTH   render DICOM images with this linear window (rescaled units,\n"
    "             e.g. 40,400 for CT soft tissue) instead of the file's own (docs/data.md);\n"
    "             serve applies it to uploaded images too; train has its own --window\n"
    "  --no-prepack   inference normally packs the fp32 weights for the GEMM once at load (a\n"
    "             second copy in memory, same results); this packs them on every call instead\n"
    "\n"
    "Run 'mmtune <command> --help' for the options of a command.\n";

static const char *EMBED_HELP =
    "usage: mmtune embed --model DIR [--adapter DIR] [--image PATH]... [--text STR]... [--truncate]\n"
    "       mmtune embed --model DIR --adapter NAME=DIR... [--use NAME] [--image PATH]... [--text STR]...\n"
    "\n"
    "  --model DIR    Hugging Face CLIP snapshot (config.json, model.safetensors, vocab.json,\n"
    "                 merges.txt, optional preprocessor_config.json)\n"
    "  --adapter DIR  a PEFT adapter folder (adapter_config.json + adapter_model.safetensors,\n"
    "                 LoRA or IA3, e.g. runs/x/adapter): embed through the adapted model\n"
    "  --image PATH   a JPEG or PNG image (repeatable)\n"
    "  --text STR     a text (repeatable); empty texts are refused\n"
    "  --truncate     cut texts longer than the model's context instead of refusing them\n"
    "  --adapter NAME=DIR  (repeatable) several adapters over the one base model; then\n"
    "  --use NAME     the adapter of the inputs after it (base: none; the default before any\n"
    "                 --use); all inputs are computed in one call, rows of an adapter together,\n"
    "                 and each line gets an \"adapter\" key\n"
    "\n"
    "Prints one JSON object per input, images first, in the order given:\n"
    "  {\"type\":\"image\",\"input\":\"a.jpg\",\"embedding\":[...]}\n";

static const char *CLASSIFY_HELP =
    "usage: mmtune classify --model DIR [--adapter DIR] --image PATH... --labels \"cat,dog,car\"\n"
    "                       [--template T]\n"
    "\n"
    "  --model DIR      Hugging Face CLIP snapshot\n"
    "  --adapter DIR    a PEFT adapter folder (LoRA or IA3): classify with the adapted model\n"
    "  --image PATH     a JPEG or PNG image (repeatable)\n"
    "  --labels LIST    comma-separated class names (at least one)\n"
    "  --template T     prompt with {} where the label goes (default \"a photo of a {}.\")\n"
    "  --adapter NAME=DIR, --use NAME   several adapters over one base, as in embed: each\n"
    "                   image is classified with the adapter chosen before it (labels embedded\n"
    "                   with that adapter too); each line gets an \"adapter\" key\n"
    "\n"
    "Probabilities are softmax(exp(logit_scale) * cosine) over the labels, as transformers'\n"
    "CLIPModel logits_per_image.softmax(-1). One JSON object per image, labels best first.\n";

static const char *INSPECT_HELP =
    "usage: mmtune inspect --model DIR [--tensors]\n"
    "\n"
    "  --model DIR    Hugging Face CLIP snapshot\n"
    "  --tensors      also list every tensor with dtype and shape\n";

static const char *BENCH_HELP =
    "usage: mmtune bench embed [--batch LIST] [--iters N] [--warmup N] [--tower image|text|both]\n"
    "                          [--model DIR] [--json]\n"
    "\n"
    "Measures images/s and texts/s. Without --model it uses random weights with the exact\n"
    "configuration of openai/clip-vit-base-patch32.\n"
    "  --batch LIST   comma-separated batch sizes (default 1,32)\n"
    "  --iters N      timed iterations per batch size (default 5)\n"
    "  --warmup N     untimed iterations first (default 1)\n"
    "  --tower T      image, text or both (default both)\n"
    "  --json         print one JSON object per measurement instead of a table\n"
    "  --int8         (global) the model's linears int8: integer kernels, int8 activations per token\n"
    "\n"
    "Also: mmtune bench caption --help (GIT caption tokens/s, greedy and beams, with and without\n"
    "the KV cache, and a LoRA training step).\n"
    "Also: mmtune bench train --help (a training step), mmtune bench adapters --help (many\n"
    "adapters over one base: merged, single, mixed and grouped batches).\n"
    "Also: mmtune bench search --help (search index scan time against catalogue size).\n"
    "Also: mmtune bench serve --help (HTTP load on /v1/embeddings: requests/s, p50/p99 latency).\n"
    "Also: mpirun -np R mmtune bench allreduce --help (the communicator's all-reduce bandwidth).\n";

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mmtune: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return 2;
}

int cli_runtime_error(void) {
    fprintf(stderr, "mmtune: error: %s\n", mmt_last_error());
    return 1;
}

#define usage_error cli_usage_error
#define runtime_error cli_runtime_error

/* Simple option scanner: --name VALUE pairs and --flag switches. */
typedef struct args {
    int argc, i;
    char **argv;
} args;

static int is_opt(args *a, const char *name) { return strcmp(a->argv[a->i], name) == 0; }

static const char *value(args *a) {
    if (a->i + 1 >= a->argc) return NULL;
    return a->argv[++a->i];
}

/* Options several commands share: --help, --model DIR, --adapter DIR, --image PATH
 * (repeatable). */
#define MAX_NAMED 16

typedef struct common_opts {
    const char *help;
    const char *model_dir;
    const char *adapter_dir;
    const char *images[MAX_INPUTS];
    int64_t n_images;
    /* --adapter NAME=DIR (several) and --use NAME: the adapter of each input after it */
    char *names[MAX_NAMED];
    const char *named_dirs[MAX_NAMED];
    int64_t n_named;
    int64_t use;              /* index into names, -1: the base model */
    int64_t image_use[MAX_INPUTS];
} common_opts;

/* NAME=DIR with a NAME of letters, digits, '-', '_' or '.': 1 and the split, else 0. */
static int named_adapter(const char *v, char *name, size_t cap, const char **dir) {
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || (size_t)(eq - v) >= cap || !eq[1]) return 0;
    for (const char *p = v; p < eq; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') return 0;
    memcpy(name, v, (size_t)(eq - v));
    name[eq - v] = '\0';
    *dir = eq + 1;
    return 1;
}

enum { OPT_OTHER, OPT_TAKEN, OPT_EXIT };

/* OPT_TAKEN when argv[a->i] was a shared option, OPT_OTHER when it is not one, OPT_EXIT
 * when the command must return *rc now (help printed, or a usage error). */
static int common_option(args *a, common_opts *o, int *rc) {
    const char *v;
    if (is_opt(a, "--help") || is_opt(a, "-h")) {
        fputs(o->help, stdout);
        *rc = 0;
        return OPT_EXIT;
    }
    if (is_opt(a, "--model")) {
        if (!(o->model_dir = value(a))) return *rc = usage_error("--model needs a folder"), OPT_EXIT;
        return OPT_TAKEN;
    }
    if (is_opt(a, "--adapter")) {
        if (!(v = value(a))) return *rc = usage_error("--adapter needs a folder (or NAME=DIR)"), OPT_EXIT;
        char name[64];
        const char *dir;
        if (!named_adapter(v, name, sizeof name, &dir)) {
            if (o->adapter_dir || o->n_named) return *rc = usage_error("give one --adapter DIR, or several --adapter NAME=DIR"), OPT_EXIT;
            o->adapter_dir = v;
            return OPT_TAKEN;
        }
        if (o->adapter_dir) return *rc = usage_error("give one --adapter DIR, or several --adapter NAME=DIR"), OPT_EXIT;
        if (o->n_named == MAX_NAMED) return *rc = usage_error("more than %d named adapters", MAX_NAMED), OPT_EXIT;
        if (!strcmp(name, "base")) return *rc = usage_error("--adapter: the name 'base' means no adapter"), OPT_EXIT;
        for (int64_t k = 0; k < o->n_named; k++)
            if (!strcmp(o->names[k], name)) return *rc = usage_error("--adapter: the name '%s' is given twice", name), OPT_EXIT;
        if (!(o->names[o->n_named] = mmt_strdup(name))) return *rc = usage_error("out of memory"), OPT_EXIT;
        o->named_dirs[o->n_named++] = dir;
        return OPT_TAKEN;
    }
    if (is_opt(a, "--use")) {
        if (!(v = value(a))) return *rc = usage_error("--use needs an adapter name (or base)"), OPT_EXIT;
        o->use = -2;
        if (!strcmp(v, "base")) o->use = -1;
        for (int64_t k = 0; k < o->n_named && o->use == -2; k++)
            if (!strcmp(o->names[k], v)) o->use = k;
        if (o->use == -2)
            return *rc = usage_error("--use %s: no --adapter %s=DIR before it (or use 'base')", v, v), OPT_EXIT;
        return OPT_TAKEN;
    }
    if (is_opt(a, "--image")) {
        if (!(v = value(a))) return *rc = usage_error("--image needs a path"), OPT_EXIT;
        if (o->n_images == MAX_INPUTS) return *rc = usage_error("more than %d images", MAX_INPUTS), OPT_EXIT;
        o->image_use[o->n_images] = o->use;
        o->images[o->n_images++] = v;
        return OPT_TAKEN;
    }
    return OPT_OTHER;
}

static void common_opts_free(common_opts *o) {
    for (int64_t k = 0; k < o->n_named; k++) mmt_free(o->names[k]);
    o->n_named = 0;
}

/* adapter NULL: the line has no "adapter" key (a single adapter or none) */
static void print_embedding(const char *type, const char *input, const char *adapter, const float *e, int64_t dim) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"type\":\"%s\",\"input\":", type);
    mmt_strbuf_json_string(&b, input, strlen(input));
    if (adapter) {
        mmt_strbuf_append(&b, ",\"adapter\":", 11);
        mmt_strbuf_json_string(&b, adapter, strlen(adapter));
    }
    mmt_strbuf_append(&b, ",\"embedding\":[", 14);
    for (int64_t j = 0; j < dim; j++) mmt_strbuf_printf(&b, "%s%.9g", j ? "," : "", e[j]);
    mmt_strbuf_append(&b, "]}\n", 3);
    if (!b.failed) fputs(b.data, stdout);
    mmt_strbuf_free(&b);
}

/* The adapters of --adapter NAME=DIR opened over one base, and the run context that uses
 * them (embed and classify). */
typedef struct named_adapters {
    mmt_clip_adapter *opened[MAX_NAMED];
    mmt_clip_run *run;
} named_adapters;

/* Opens them all; 0 or an exit code (what was opened is closed by named_close either way). */
static int named_open(const common_opts *o, mmt_clip *base, named_adapters *n) {
    memset(n, 0, sizeof *n);
    for (int64_t k = 0; k < o->n_named; k++)
        if (mmt_clip_adapter_open(base, o->named_dirs[k], &n->opened[k]) != MMT_OK) return runtime_error();
    return mmt_clip_run_create(base, &n->run) == MMT_OK ? 0 : runtime_error();
}

static void named_close(const common_opts *o, named_adapters *n) {
    mmt_clip_run_free(n->run);
    for (int64_t k = 0; k < o->n_named; k++) mmt_clip_adapter_close(n->opened[k]);
}

/* rows[i] = the adapter input i uses (use[i]; -1: none). */
static void named_rows(const named_adapters *n, const int64_t *use, int64_t count, mmt_clip_adapter **rows) {
    for (int64_t i = 0; i < count; i++) rows[i] = use[i] >= 0 ? n->opened[use[i]] : NULL;
}

/* embed with named adapters (--adapter NAME=DIR ... --use NAME): every input with the adapter
 * chosen before it, all through one run context (mmtune.h), rows of an adapter together. */
static int embed_named(const common_opts *o, const char *const *texts, const int64_t *text_use, int64_t n_texts) {
    mmt_clip *base = NULL;
    named_adapters na;
    mmt_clip_adapter **rows = NULL;
    float *out = NULL;
    int64_t n_max = o->n_images > n_texts ? o->n_images : n_texts;
    if (cli_clip_load_inference(o->model_dir, &base) != MMT_OK) return runtime_error();
    int rc = named_open(o, base, &na);
    int64_t dim = mmt_clip_embed_dim(base);
    if (rc == 0 && (!(rows = mmt_calloc((size_t)n_max, sizeof *rows)) || !(out = mmt_malloc((size_t)(n_max * dim) * sizeof(float)))))
        rc = runtime_error();
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        int64_t n = pass ? n_texts : o->n_images;
        const int64_t *use = pass ? text_use : o->image_use;
        if (n == 0) continue;
        named_rows(&na, use, n, rows);
        mmt_status s = pass ? mmt_clip_run_embed_texts(na.run, texts, rows, n, out)
                            : mmt_clip_run_embed_image_files(na.run, o->images, rows, n, out);
        if (s == MMT_OK) s = cli_finite_embeddings(out, n, dim, pass ? "text" : "image");
        if (s != MMT_OK) {
            rc = runtime_error();
            break;
        }
        for (int64_t i = 0; i < n; i++)
            print_embedding(pass ? "text" : "image", pass ? texts[i] : o->images[i], use[i] >= 0 ? o->names[use[i]] : "base",
                            out + i * dim, dim);
    }
    named_close(o, &na);
    mmt_free(rows);
    mmt_free(out);
    mmt_clip_free(base);
    return rc;
}

static int cmd_embed(int argc, char **argv) {
    common_opts o = {.help = EMBED_HELP, .use = -1};
    const char *texts[MAX_INPUTS];
    int64_t n_texts = 0, text_use[MAX_INPUTS];
    int truncate = 0, rc = 0, stop = 0;
    args a = {argc, 0, argv};
    for (a.i = 0; a.i < argc && rc == 0; a.i++) {
        const char *v;
        int kind = common_option(&a, &o, &rc);
        if (kind == OPT_EXIT) {
            stop = 1;
            break;
        }
        if (kind == OPT_TAKEN) continue;
        if (is_opt(&a, "--text")) {
            if (!(v = value(&a))) rc = usage_error("--text needs a string");
            else if (n_texts == MAX_INPUTS) rc = usage_error("more than %d texts", MAX_INPUTS);
            else {
                text_use[n_texts] = o.use;
                texts[n_texts++] = v;
            }
        } else if (is_opt(&a, "--truncate")) {
            truncate = 1;
        } else {
            rc = usage_error("embed: unknown option '%s'", argv[a.i]);
        }
    }
    if (rc != 0 || stop) {
        common_opts_free(&o);
        return rc;
    }
    const char *model_dir = o.model_dir, **images = o.images;
    int64_t n_images = o.n_images;
    if (!model_dir) rc = usage_error("embed: --model is required");
    else if (n_images + n_texts == 0) rc = usage_error("embed: give at least one --image or --text");
    else if (o.n_named && truncate) rc = usage_error("embed: --truncate does not go with named adapters (texts over the context are refused)");
    if (rc != 0 || o.n_named) {
        if (rc == 0) rc = embed_named(&o, texts, text_use, n_texts);
        common_opts_free(&o);
        return rc;
    }
    cli_encoder enc;
    if (cli_encoder_open(model_dir, o.adapter_dir, &enc) != MMT_OK) return runtime_error();
    int64_t dim = cli_encoder_dim(&enc);
    float *out = mmt_malloc((size_t)((n_images > n_texts ? n_images : n_texts) * dim) * sizeof(float));
    if (!out) {
        rc = runtime_error();
    } else if (n_images && cli_encoder_images(&enc, images, n_images, out) != MMT_OK) {
        rc = runtime_error();
    } else {
        for (int64_t i = 0; i < n_images; i++) print_embedding("image", images[i], NULL, out + i * dim, dim);
        if (n_texts && cli_encoder_texts(&enc, texts, n_texts, truncate, out) != MMT_OK) {
            rc = runtime_error();
        } else {
            for (int64_t i = 0; i < n_texts; i++) print_embedding("text", texts[i], NULL, out + i * dim, dim);
        }
    }
    mmt_free(out);
    cli_encoder_close(&enc);
    return rc;
}

/* Splits a comma-separated list in place; empty items are an error. */
static int split_labels(char *list, char **labels, int64_t *n) {
    *n = 0;
    char *save = NULL;
    for (char *p = list;; p = NULL) {
        char *tok = strtok_r(p, ",", &save);
        if (!tok) break;
        while (*tok == ' ') tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ') tok[--len] = '\0';
        if (!len) return -1;
        if (*n == MAX_INPUTS) return -1;
        for (int64_t i = 0; i < *n; i++)
            if (!strcmp(labels[i], tok)) return -1; /* "probs" would hold the key twice */
        labels[(*n)++] = tok;
    }
    return *n ? 0 : -1;
}

typedef struct scored {
    int64_t index;
    double prob;
} scored;

static int by_prob_desc(const void *a, const void *b) {
    double x = ((const scored *)a)->prob, y = ((const scored *)b)->prob;
    return (x < y) - (x > y);
}

/* Named adapters (--adapter NAME=DIR ... --use NAME) for classify: each image's embedding
 * with its adapter, and the label prompts' embeddings once per adapter in use, txt holding
 * (n_named + 1) blocks of (n_labels, dim), block 0 the base's. */
static int classify_named(const common_opts *o, mmt_clip *base, const char *const *prompts, int64_t n_labels, float *img,
                          float *txt, double *scale) {
    named_adapters na;
    mmt_clip_adapter **rows = NULL;
    int64_t dim = mmt_clip_embed_dim(base), n_rows = o->n_images > n_labels ? o->n_images : n_labels;
    *scale = mmt_clip_logit_scale(base);
    int rc = named_open(o, base, &na);
    if (rc == 0 && !(rows = mmt_calloc((size_t)n_rows, sizeof *rows))) rc = runtime_error();
    if (rc == 0) named_rows(&na, o->image_use, o->n_images, rows);
    if (rc == 0 && (mmt_clip_run_embed_image_files(na.run, o->images, rows, o->n_images, img) != MMT_OK ||
                    cli_finite_embeddings(img, o->n_images, dim, "image") != MMT_OK))
        rc = runtime_error();
    for (int64_t k = -1; rc == 0 && k < o->n_named; k++) {
        int used = 0;
        for (int64_t i = 0; i < o->n_images; i++) used |= o->image_use[i] == k;
        if (!used) continue;
        for (int64_t c = 0; c < n_labels; c++) rows[c] = k >= 0 ? na.opened[k] : NULL;
        if (mmt_clip_run_embed_texts(na.run, prompts, rows, n_labels, txt + (k + 1) * n_labels * dim) != MMT_OK ||
            cli_finite_embeddings(txt + (k + 1) * n_labels * dim, n_labels, dim, "label") != MMT_OK)
            rc = runtime_error();
    }
    named_close(o, &na);
    mmt_free(rows);
    return rc;
}

static int cmd_classify(int argc, char **argv) {
    common_opts o = {.help = CLASSIFY_HELP, .use = -1};
    const char *template = "a photo of a {}.";
    char *label_list = NULL, *labels[MAX_INPUTS];
    int64_t n_labels = 0;
    int rc = 0, stop = 0;
    args a = {argc, 0, argv};
    for (a.i = 0; a.i < argc && rc == 0; a.i++) {
        const char *v;
        int kind = common_option(&a, &o, &rc);
        if (kind == OPT_EXIT) {
            stop = 1;
            break;
        }
        if (kind == OPT_TAKEN) continue;
        if (is_opt(&a, "--labels")) {
            if (!(v = value(&a))) rc = usage_error("--labels needs a comma-separated list");
            else label_list = (char *)v;
        } else if (is_opt(&a, "--template")) {
            if (!(template = value(&a)) || !strstr(template, "{}"))
                rc = usage_error("--template needs a string with {} where the label goes");
        } else {
            rc = usage_error("classify: unknown option '%s'", argv[a.i]);
        }
    }
    const char *model_dir = o.model_dir, **images = o.images;
    int64_t n_images = o.n_images;
    if (rc == 0 && !stop) {
        if (!model_dir) rc = usage_error("classify: --model is required");
        else if (!n_images) rc = usage_error("classify: give at least one --image");
        else if (!label_list || split_labels(label_list, labels, &n_labels) != 0)
            rc = usage_error("classify: --labels needs a comma-separated list of distinct, non-empty names");
    }
    if (rc != 0 || stop) {
        common_opts_free(&o);
        return rc;
    }
    int named = o.n_named > 0;
    cli_encoder enc = {0};
    if (!named && cli_encoder_open(model_dir, o.adapter_dir, &enc) != MMT_OK) return runtime_error();
    mmt_clip *base = NULL; /* named adapters: the base they share */
    if (named && cli_clip_load_inference(model_dir, &base) != MMT_OK) {
        common_opts_free(&o);
        return runtime_error();
    }
    int64_t dim = named ? mmt_clip_embed_dim(base) : cli_encoder_dim(&enc);
    char **prompts = mmt_calloc((size_t)n_labels, sizeof(char *));
    float *img = mmt_malloc((size_t)(n_images * dim) * sizeof(float));
    float *txt = mmt_malloc((size_t)((named ? o.n_named + 1 : 1) * n_labels * dim) * sizeof(float));
    scored *s = mmt_malloc((size_t)n_labels * sizeof(scored));
    if (!prompts || !img || !txt || !s) {
        rc = runtime_error();
        goto done;
    }
    for (int64_t i = 0; i < n_labels; i++)
        if (!(prompts[i] = mmt_zeroshot_prompt(template, labels[i]))) {
            rc = runtime_error();
            goto done;
        }
    double scale = 0;
    if (named) {
        if ((rc = classify_named(&o, base, (const char *const *)prompts, n_labels, img, txt, &scale)) != 0) goto done;
    } else if (cli_encoder_texts(&enc, (const char *const *)prompts, n_labels, 0, txt) != MMT_OK ||
               cli_encoder_images(&enc, images, n_images, img) != MMT_OK) {
        rc = runtime_error();
        goto done;
    } else {
        scale = mmt_clip_logit_scale(enc.model); /* LoRA / IA3 leave the temperature alone */
    }
    for (int64_t i = 0; i < n_images; i++) {
        double max = -INFINITY, sum = 0;
        const float *labels_emb = named ? txt + (o.image_use[i] + 1) * n_labels * dim : txt;
        for (int64_t c = 0; c < n_labels; c++) {
            double dot = 0;
            for (int64_t j = 0; j < dim; j++) dot += (double)img[i * dim + j] * labels_emb[c * dim + j];
            s[c].index = c;
            s[c].prob = scale * dot;
            if (s[c].prob > max) max = s[c].prob;
        }
        for (int64_t c = 0; c < n_labels; c++) sum += (s[c].prob = exp(s[c].prob - max));
        for (int64_t c = 0; c < n_labels; c++) s[c].prob /= sum;
        qsort(s, (size_t)n_labels, sizeof *s, by_prob_desc);
        mmt_strbuf b = {0};
        mmt_strbuf_append(&b, "{\"image\":", 9);
        mmt_strbuf_json_string(&b, images[i], strlen(images[i]));
        if (named) {
            const char *who = o.image_use[i] >= 0 ? o.names[o.image_use[i]] : "base";
            mmt_strbuf_append(&b, ",\"adapter\":", 11);
            mmt_strbuf_json_string(&b, who, strlen(who));
        }
        mmt_strbuf_append(&b, ",\"label\":", 9);
        mmt_strbuf_json_string(&b, labels[s[0].index], strlen(labels[s[0].index]));
        mmt_strbuf_append(&b, ",\"probs\":{", 10);
        for (int64_t c = 0; c < n_labels; c++) {
            if (c) mmt_strbuf_append(&b, ",", 1);
            mmt_strbuf_json_string(&b, labels[s[c].index], strlen(labels[s[c].index]));
            mmt_strbuf_printf(&b, ":%.6f", s[c].prob);
        }
        mmt_strbuf_append(&b, "}}\n", 3);
        if (!b.failed) fputs(b.data, stdout);
        mmt_strbuf_free(&b);
    }
done:
    if (prompts)
        for (int64_t i = 0; i < n_labels; i++) mmt_free(prompts[i]);
    mmt_free(prompts);
    mmt_free(img);
    mmt_free(txt);
    mmt_free(s);
    cli_encoder_close(&enc);
    mmt_clip_free(base);
    common_opts_free(&o);
    return rc;
}

static void print_tower(const char *name, const mmt_clip_tower_config *t, int is_text) {
    printf("%s tower: hidden %lld, intermediate %lld, layers %lld, heads %lld, act %s, eps %g\n",
           name, (long long)t->hidden_size, (long long)t->intermediate_size,
           (long long)t->num_layers, (long long)t->num_heads, mmt_activation_name(t->act),
           t->layer_norm_eps);
    if (is_text)
        printf("  vocab %lld, context %lld, eos_token_id %lld%s\n", (long long)t->vocab_size,
               (long long)t->max_positions, (long long)t->eos_token_id,
               t->eos_token_id == 2 ? " (legacy: pools at argmax of ids)" : "");
    else
        printf("  image %lldx%lld, patch %lld, channels %lld, tokens %lld\n", (long long)t->image_size,
               (long long)t->image_size, (long long)t->patch_size, (long long)t->num_channels,
               (long long)((t->image_size / t->patch_size) * (t->image_size / t->patch_size) + 1));
}

static int cmd_inspect(int argc, char **argv) {
    const char *model_dir = NULL;
    int tensors = 0;
    args a = {argc, 0, argv};
    for (a.i = 0; a.i < argc; a.i++) {
        if (is_opt(&a, "--help") || is_opt(&a, "-h")) {
            fputs(INSPECT_HELP, stdout);
            return 0;
        } else if (is_opt(&a, "--model")) {
            if (!(model_dir = value(&a))) return usage_error("--model needs a folder");
        } else if (is_opt(&a, "--tensors")) {
            tensors = 1;
        } else {
            return usage_error("inspect: unknown option '%s'", argv[a.i]);
        }
    }
    if (!model_dir) return usage_error("inspect: --model is required");
    mmt_clip *model;
    if (mmt_clip_load(model_dir, &model) != MMT_OK) return runtime_error();
    const mmt_clip_config *cfg = mmt_clip_config_of(model);
    const mmt_weights *w = mmt_clip_weights(model);
    printf("model: %s\n", model_dir);
    printf("architecture: %s\n", cfg->has_text && cfg->has_vision ? "CLIPModel"
                                 : cfg->has_text ? "CLIPTextModelWithProjection"
                                                 : "CLIPVisionModelWithProjection");
    printf("projection_dim: %lld, logit_scale: %.4f (temperature x%.2f)\n", (long long)cfg->projection_dim,
           log(mmt_clip_logit_scale(model)), mmt_clip_logit_scale(model));
    if (cfg->has_text) print_tower("text", &cfg->text, 1);
    if (cfg->has_vision) print_tower("vision", &cfg->vision, 0);
    int64_t n_tensors = 0, by_dtype[MMT_DTYPE_COUNT] = {0};
    for (int64_t f = 0; f < w->n_files; f++)
        for (int64_t i = 0; i < w->files[f]->n_tensors; i++) {
            n_tensors++;
            by_dtype[w->files[f]->tensors[i].dtype] += w->files[f]->tensors[i].numel;
        }
    printf("files: %lld, tensors: %lld, parameters: %lld\n", (long long)w->n_files,
           (long long)n_tensors, (long long)mmt_weights_param_count(w));
    printf("dtypes:");
    for (int d = 0; d < MMT_DTYPE_COUNT; d++)
        if (by_dtype[d]) printf(" %s %lld", mmt_dtype_name((mmt_dtype)d), (long long)by_dtype[d]);
    printf("\ntokenizer: %s\n", mmt_clip_tokenizer(model) ? "yes" : "none");
    if (tensors)
        for (int64_t f = 0; f < w->n_files; f++)
            for (int64_t i = 0; i < w->files[f]->n_tensors; i++) {
                const mmt_st_tensor *t = &w->files[f]->tensors[i];
                char shape[128];
                printf("  %-70s %-5s %s\n", t->name, mmt_dtype_name(t->dtype),
                       mmt_shape_str(t->shape, t->ndim, shape, sizeof shape));
            }
    mmt_clip_free(model);
    return 0;
}

static double process_cpu_seconds(void) {
    struct timespec ts;
    return clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0 ? (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 : 0.0;
}

static int cmd_bench(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "train") == 0) return cmd_bench_train(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "adapters") == 0) return cmd_bench_adapters(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "caption") == 0) return cmd_bench_caption(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "search") == 0) return cmd_bench_search(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "serve") == 0) return cmd_bench_serve(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "allreduce") == 0) return cmd_bench_allreduce(argc - 1, argv + 1);
    if (argc < 1 || strcmp(argv[0], "embed") != 0) {
        if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
            fputs(BENCH_HELP, stdout);
            return 0;
        }
        return usage_error("bench: the benchmarks are 'bench embed', 'bench train' and 'bench adapters'");
    }
    const char *model_dir = NULL, *tower = "both";
    char batch_list[256] = "1,32";
    long iters = 5, warmup = 1;
    int json = 0;
    args a = {argc, 1, argv};
    for (; a.i < argc; a.i++) {
        const char *v;
        if (is_opt(&a, "--help") || is_opt(&a, "-h")) {
            fputs(BENCH_HELP, stdout);
            return 0;
        } else if (is_opt(&a, "--model")) {
            if (!(model_dir = value(&a))) return usage_error("--model needs a folder");
        } else if (is_opt(&a, "--batch")) {
            if (!(v = value(&a)) || strlen(v) >= sizeof batch_list) return usage_error("--batch needs a list");
            strcpy(batch_list, v);
        } else if (is_opt(&a, "--iters") || is_opt(&a, "--warmup")) {
            int is_iters = is_opt(&a, "--iters");
            char *end;
            if (!(v = value(&a))) return usage_error("%s needs a number", argv[a.i - 1]);
            long n = strtol(v, &end, 10);
            if (*end || n < (is_iters ? 1 : 0) || n > 100000) return usage_error("bad count '%s'", v);
            *(is_iters ? &iters : &warmup) = n;
        } else if (is_opt(&a, "--tower")) {
            if (!(tower = value(&a)) || (strcmp(tower, "image") && strcmp(tower, "text") && strcmp(tower, "both")))
                return usage_error("--tower takes image, text or both");
        } else if (is_opt(&a, "--json")) {
            json = 1;
        } else {
            return usage_error("bench embed: unknown option '%s'", argv[a.i]);
        }
    }
    mmt_clip *model;
    if (model_dir) {
        if (cli_clip_load_inference(model_dir, &model) != MMT_OK) return runtime_error();
    } else {
        mmt_clip_config cfg;
        mmt_clip_config_default(&cfg); /* the class defaults are exactly ViT-B/32 */
        if (cli_clip_random(&cfg, 42, cli_load_quant(), &model) != MMT_OK ||
            (cli_load_prepack() && mmt_clip_prepack(model) != MMT_OK))
            return runtime_error();
    }
    const mmt_clip_config *cfg = mmt_clip_config_of(model);
    const char *kernels = mmt_ops_cpu()->name;
    const char *quant_name = cli_load_quant() == MMT_QUANT_INT8 ? "int8" : cli_load_quant() == MMT_QUANT_NF4 ? "nf4" : "none";
    if (!json)
        printf("%-6s %6s %10s %12s %10s   (kernels: %s, model: %s)\n", "tower", "batch",
               "ms/batch", "items/s", "best ms", kernels, model_dir ? model_dir : "random ViT-B/32");
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(batch_list, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        long B = strtol(tok, NULL, 10);
        if (B <= 0 || B > 4096) {
            rc = usage_error("bad batch size '%s'", tok);
            break;
        }
        for (int which = 0; which < 2 && !rc; which++) {
            int is_image = which == 0;
            if ((is_image && (!strcmp(tower, "text") || !cfg->has_vision)) ||
                (!is_image && (!strcmp(tower, "image") || !cfg->has_text)))
                continue;
            int64_t S = cfg->vision.image_size, L = cfg->text.max_positions;
            float *pixels = NULL, *out = mmt_malloc((size_t)(B * cfg->projection_dim) * 4);
            int32_t *ids = NULL;
            if (is_image) {
                pixels = mmt_malloc((size_t)(B * 3 * S * S) * 4);
                for (int64_t i = 0; pixels && i < B * 3 * S * S; i++) pixels[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
            } else {
                /* Prompt-like lengths: 10 tokens then EOS padding (texts are trimmed). */
                ids = mmt_malloc((size_t)(B * L) * 4);
                for (int64_t i = 0; ids && i < B * L; i++) {
                    int64_t pos = i % L;
                    ids[i] = pos == 0 ? (int32_t)cfg->text.bos_token_id
                           : pos < 9 ? (int32_t)(300 + (i * 31) % 1000)
                                     : (int32_t)cfg->text.eos_token_id;
                }
            }
            if (!out || (is_image ? !pixels : !ids)) {
                rc = runtime_error();
            } else {
                double total = 0, best = 1e30, cpu = 0;
                for (long it = 0; it < warmup + iters && !rc; it++) {
                    double t0 = mmt_now_seconds(), c0 = process_cpu_seconds();
                    mmt_status s = is_image ? mmt_clip_encode_pixels(model, pixels, B, out)
                                            : mmt_clip_encode_ids(model, ids, B, L, out);
                    double dt = mmt_now_seconds() - t0;
                    if (s != MMT_OK) rc = runtime_error();
                    if (it >= warmup) {
                        total += dt;
                        cpu += process_cpu_seconds() - c0;
                        if (dt < best) best = dt;
                    }
                }
                double mean = total / (double)iters;
                /* cpu_s: the process's CPU time per call, all threads (less swayed by other
                 * work on a shared machine than the wall time) */
                if (!rc && json)
                    printf("{\"tower\":\"%s\",\"batch\":%ld,\"mean_s\":%.6f,\"best_s\":%.6f,\"cpu_s\":%.6f,\"items_per_s\":%.3f,\"kernels\":\"%s\",\"quantize\":\"%s\"}\n",
                           is_image ? "image" : "text", B, mean, best, cpu / (double)iters, (double)B / mean, kernels, quant_name);
                else if (!rc)
                    printf("%-6s %6ld %10.2f %12.2f %10.2f\n", is_image ? "image" : "text", B,
                           mean * 1e3, (double)B / mean, best * 1e3);
            }
            mmt_free(pixels);
            mmt_free(ids);
            mmt_free(out);
        }
    }
    mmt_clip_free(model);
    return rc;
}

static int run_command(int argc, char **argv);

/* A rank of a multi-rank job that the launcher ends (another rank has failed): say so, and
 * where the run can go on from, instead of vanishing. Only async-signal-safe calls. */
static char stop_message[256];
static void on_launcher_stop(int sig) {
    ssize_t w = write(2, stop_message, strlen(stop_message));
    (void)w;
    _exit(128 + sig);
}

/* Commands that split their work over ranks, and `bench allreduce`, which times the
 * communicator; the others refuse to run on several. */
static int runs_on_ranks(int argc, char **argv) {
    const char *cmd = argc >= 2 ? argv[1] : "";
    return !strcmp(cmd, "train") || !strcmp(cmd, "eval") || !strcmp(cmd, "index") ||
           (!strcmp(cmd, "bench") && argc >= 3 && !strcmp(argv[2], "allreduce"));
}

int main(int argc, char **argv) {
    mmt_comm *world = NULL;
    if (mmt_comm_world(&world) != MMT_OK) {
        fprintf(stderr, "mmtune: error: %s\n", mmt_last_error());
        return 1;
    }
    int rank = mmt_comm_rank(world), size = mmt_comm_size(world);
    if (size > 1) {
        const char *cmd = argc >= 2 ? argv[1] : "";
        if (!runs_on_ranks(argc, argv)) {
            if (rank == 0)
                fprintf(stderr, "mmtune: error: '%s' runs in one process; of the commands only train, eval and index "
                                "split their work over %d ranks (start it without mpirun)\n", cmd, size);
            mmt_comm_finalize();
            return 2;
        }
        snprintf(stop_message, sizeof stop_message,
                 "mmtune: rank %d of %d: stopped by the launcher: another rank of the job has failed (the launcher's "
                 "message names it)%s\n", rank, size,
                 !strcmp(cmd, "train") ? "; a run goes on from its last checkpoint with --resume" : "");
        signal(SIGTERM, on_launcher_stop);
        if (rank != 0) mmt_log_set_level(MMT_LOG_WARN); /* rank 0 speaks for the job */
    }
    int code = run_command(argc, argv);
    if (size > 1 && code != 0) {
        fprintf(stderr, "mmtune: rank %d of %d failed (exit code %d); ending the job\n", rank, size, code);
        mmt_comm_abort(world, code);
    }
    mmt_comm_finalize();
    return code;
}

static int run_command(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("mmtune %s (kernels: %s)\n", MMT_VERSION_STRING, mmt_ops_cpu()->name);
        return 0;
    }
    int rest = argc - 2; /* train records its --quantize in the run; search's --int8 is its own */
    if (strcmp(cmd, "train") != 0 && cli_load_flags(&rest, argv + 2, !strcmp(cmd, "search")) != 0) return 2;
    argc = rest + 2;
    if (!strcmp(cmd, "embed")) return cmd_embed(argc - 2, argv + 2);
    if (!strcmp(cmd, "classify")) return cmd_classify(argc - 2, argv + 2);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(cmd, "caption")) return cmd_caption(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval")) return cmd_eval_clip(argc - 2, argv + 2);
    if (!strcmp(cmd, "merge")) return cmd_merge(argc - 2, argv + 2);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 2, argv + 2);
    if (!strcmp(cmd, "prune")) return cmd_prune(argc - 2, argv + 2);
    if (!strcmp(cmd, "fashion-mnist")) return cmd_fashion_mnist(argc - 2, argv + 2);
    if (!strcmp(cmd, "synth")) return cmd_synth(argc - 2, argv + 2);
    if (!strcmp(cmd, "bpe")) return cmd_bpe(argc - 2, argv + 2);
    if (!strcmp(cmd, "init")) return cmd_init(argc - 2, argv + 2);
    if (!strcmp(cmd, "wordpiece")) return cmd_wordpiece(argc - 2, argv + 2);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 2, argv + 2);
    if (!strcmp(cmd, "curate")) return cmd_curate(argc - 2, argv + 2);
    if (!strcmp(cmd, "index")) return cmd_index(argc - 2, argv + 2);
    if (!strcmp(cmd, "search")) return cmd_search(argc - 2, argv + 2);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", cmd);
}
