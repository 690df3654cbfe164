/*
 * train.c — `mmtune train`, `mmtune eval` and `mmtune merge`.
 *
 * train's settings are one table: each has a flag, a key in the --config JSON file and a
 * default, and --help is printed from the table, so the three cannot drift apart. Values are
 * applied in order: defaults, then the config file, then flags. The resolved settings are
 * recorded in each checkpoint's trainer_state.json.
 */
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/encoder.h"
#include "cli/zero_shot.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/datasets.h"
#include "data/pairs.h"
#include "data/preprocess.h"
#include "eval/retrieval.h"
#include "eval/zeroshot.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "core/weights.h"
#include "peft/adapter.h"
#include "peft/merge.h"
#include "peft/peft_config.h"
#include "train/clip_task.h"
#include "train/probe_fit.h"
#include "train/fingerprint.h"
#include "train/probe_task.h"
#include "train/run_dir.h"
#include "train/trainer.h"

/* ---- the settings table ---------------------------------------------------------------- */

typedef enum opt_type { OPT_STRING, OPT_INT, OPT_DOUBLE, OPT_BOOL } opt_type;

typedef struct train_cfg {
    const char *model, *data, *method, *out, *resume, *config, *image_root;
    int64_t steps, epochs, batch_size, grad_accum, save_every, keep_checkpoints, warmup_steps, seed, cache_mb;
    double lr, weight_decay, warmup_ratio, min_lr_rate, max_grad_norm;
    const char *schedule, *lr_scales;
    int64_t lora_r;
    double lora_alpha, lora_dropout;
    int rslora, dora;
    int64_t adapter_reduction;
    const char *adapter_placement, *adapter_act;
    const char *targets, *targets_regex, *scope, *layers, *feedforward, *modules_to_save;
    int checkpointing, learn_logit_scale, skip_bad;
    int64_t max_text_bytes, max_file_bytes; /* data file limits (data/datasets.h) */
    double temperature, distill;
    const char *progress;
    int quiet, overwrite;
    /* prompt and prefix tuning */
    int64_t virtual_tokens, prompt_tokens, visual_prompt_tokens, prefix_hidden;
    int vpt_deep, prefix_projection, prefix_vision;
    const char *prompt_init_text;
    /* data loading and augmentation */
    int64_t loader_workers, prefetch;
    int augment_crop, augment_flip;
    double augment_jitter;
} train_cfg;

typedef struct train_opt {
    const char *flag, *key;
    opt_type type;
    size_t offset;
    const char *metavar, *help;
} train_opt;

#define F(field) offsetof(train_cfg, field)
static const train_opt TRAIN_OPTS[] = {
    {"--model", "model", OPT_STRING, F(model), "DIR", "Hugging Face CLIP snapshot (required)"},
    {"--data", "data", OPT_STRING, F(data), "FILE", "pairs: .jsonl, COCO captions .json, .csv or a class-per-folder directory (required)"},
    {"--image-root", "image_root", OPT_STRING, F(image_root), "DIR", "COCO: folder the file_name entries are relative to"},
    {"--method", "method", OPT_STRING, F(method), "M", "lora, ia3, prompt, visual-prompt, prefix, adapter, full or linear-probe"},
    {"--out", "out", OPT_STRING, F(out), "DIR", "run folder: adapter/, ckpt-STEP/, metrics.jsonl"},
    {"--resume", "resume", OPT_STRING, F(resume), "DIR", "continue the run in DIR from its newest intact checkpoint (or from DIR/ckpt-STEP); the settings, model and data must be the run's"},
    {"--overwrite", NULL, OPT_BOOL, F(overwrite), NULL, "delete what a non-empty --out holds and start afresh (otherwise refused)"},
    {"--config", NULL, OPT_STRING, F(config), "FILE", "JSON object with any of these settings by key"},
    {"--steps", "steps", OPT_INT, F(steps), "N", "optimizer steps (0: from --epochs)"},
    {"--epochs", "epochs", OPT_INT, F(epochs), "N", "passes over the data when --steps is 0"},
    {"--batch-size", "batch_size", OPT_INT, F(batch_size), "N", "pairs per micro-batch (the contrastive batch)"},
    {"--grad-accum", "grad_accum", OPT_INT, F(grad_accum), "N", "micro-batches per optimizer step"},
    {"--lr", "lr", OPT_DOUBLE, F(lr), "X", "peak learning rate (AdamW)"},
    {"--lr-scales", "lr_scales", OPT_STRING, F(lr_scales), "LIST", "per-group rates: PATTERN=FACTOR,... (tensor names containing PATTERN)"},
    {"--weight-decay", "weight_decay", OPT_DOUBLE, F(weight_decay), "X", "decoupled weight decay (not on biases, norms, embeddings)"},
    {"--schedule", "schedule", OPT_STRING, F(schedule), "S", "cosine, linear or constant (after linear warmup)"},
    {"--warmup-ratio", "warmup_ratio", OPT_DOUBLE, F(warmup_ratio), "X", "warmup as a fraction of the steps"},
    {"--warmup-steps", "warmup_steps", OPT_INT, F(warmup_steps), "N", "warmup steps (overrides the ratio when >= 0)"},
    {"--min-lr-rate", "min_lr_rate", OPT_DOUBLE, F(min_lr_rate), "X", "cosine floor as a fraction of the peak"},
    {"--max-grad-norm", "max_grad_norm", OPT_DOUBLE, F(max_grad_norm), "X", "global gradient-norm clipping (0: off)"},
    {"--seed", "seed", OPT_INT, F(seed), "N", "data order, dropout and adapter initialisation"},
    {"--save-every", "save_every", OPT_INT, F(save_every), "N", "checkpoint every N steps (and at the end; 0: only at the end)"},
    {"--keep-checkpoints", "keep_checkpoints", OPT_INT, F(keep_checkpoints), "N", "newest checkpoints to keep (0: all)"},
    {"--lora-r", "lora_r", OPT_INT, F(lora_r), "N", "LoRA rank"},
    {"--lora-alpha", "lora_alpha", OPT_DOUBLE, F(lora_alpha), "X", "LoRA alpha (scaling alpha/r)"},
    {"--lora-dropout", "lora_dropout", OPT_DOUBLE, F(lora_dropout), "X", "dropout on the LoRA input"},
    {"--rslora", "use_rslora", OPT_BOOL, F(rslora), NULL, "rank-stabilised scaling alpha/sqrt(r)"},
    {"--dora", "use_dora", OPT_BOOL, F(dora), NULL, "DoRA: LoRA plus a learned magnitude per output row"},
    {"--adapter-reduction", "adapter_reduction", OPT_INT, F(adapter_reduction), "N", "--method adapter: bottleneck width hidden/N"},
    {"--adapter-placement", "adapter_placement", OPT_STRING, F(adapter_placement), "P", "--method adapter: after attn, mlp or both"},
    {"--adapter-act", "adapter_act", OPT_STRING, F(adapter_act), "A", "--method adapter: relu or gelu"},
    {"--targets", "target_modules", OPT_STRING, F(targets), "LIST", "modules by name or dotted suffix, comma-separated, or all-linear (default: q_proj,v_proj; ia3: k_proj,v_proj,fc2 as PEFT)"},
    {"--targets-regex", "target_regex", OPT_STRING, F(targets_regex), "RE", "modules whose full name matches RE (instead of --targets)"},
    {"--scope", "scope", OPT_STRING, F(scope), "S", "towers to adapt: both, text or vision"},
    {"--layers", "layers_to_transform", OPT_STRING, F(layers), "LIST", "encoder layer indices to adapt, comma-separated (default all)"},
    {"--modules-to-save", "modules_to_save", OPT_STRING, F(modules_to_save), "LIST", "modules trained in full and saved with the adapter (PEFT's modules_to_save)"},
    {"--ia3-feedforward", "feedforward_modules", OPT_STRING, F(feedforward), "LIST", "IA3 modules whose input is scaled (default: fc2 when it is a target)"},
    {"--num-virtual-tokens", "num_virtual_tokens", OPT_INT, F(virtual_tokens), "N", "prompt, visual-prompt, prefix: learned tokens (per layer for prefix)"},
    {"--prompt-tokens", "prompt_tokens", OPT_INT, F(prompt_tokens), "N", "also learn N CoOp text prompts (with lora, ia3, visual-prompt)"},
    {"--visual-prompt-tokens", "visual_prompt_tokens", OPT_INT, F(visual_prompt_tokens), "N", "also learn N VPT tokens (with lora, ia3, prompt, prefix)"},
    {"--vpt-deep", "vpt_deep", OPT_BOOL, F(vpt_deep), NULL, "visual prompts in every vision layer (VPT-deep)"},
    {"--prompt-init-text", "prompt_tuning_init_text", OPT_STRING, F(prompt_init_text), "TEXT", "initialise text prompts from this text's token embeddings"},
    {"--prefix-projection", "prefix_projection", OPT_BOOL, F(prefix_projection), NULL, "prefix: train PEFT's MLP reparameterisation"},
    {"--prefix-hidden", "encoder_hidden_size", OPT_INT, F(prefix_hidden), "N", "prefix projection width (0: the hidden size)"},
    {"--prefix-vision", "prefix_vision", OPT_BOOL, F(prefix_vision), NULL, "prefix: the vision tower's layers too"},
    {"--checkpointing", "gradient_checkpointing", OPT_BOOL, F(checkpointing), NULL, "recompute encoder blocks in backward (less memory)"},
    {"--learn-logit-scale", "learn_logit_scale", OPT_BOOL, F(learn_logit_scale), NULL, "train CLIP's temperature too (clamped at 100)"},
    {"--temperature", "temperature", OPT_DOUBLE, F(temperature), "X", "fixed softmax temperature instead of the model's (0: model's)"},
    {"--distill", "distill_weight", OPT_DOUBLE, F(distill), "X", "weight of the KL term to the frozen base model's logits"},
    {"--cache-mb", "cache_mb", OPT_INT, F(cache_mb), "N", "keep decoded images when the set fits in N MiB"},
    {"--skip-bad", "skip_bad", OPT_BOOL, F(skip_bad), NULL, "skip bad records of the data file (counted)"},
    {"--max-text-bytes", "max_text_bytes", OPT_INT, F(max_text_bytes), "N", "a caption (text) over N bytes makes its record bad"},
    {"--max-file-bytes", "max_file_bytes", OPT_INT, F(max_file_bytes), "N", "a data file over N bytes is refused"},
    {"--loader-workers", "loader_workers", OPT_INT, F(loader_workers), "N", "threads decoding batches ahead (0: on the training thread)"},
    {"--prefetch", "prefetch", OPT_INT, F(prefetch), "N", "micro-batches prepared ahead"},
    {"--augment-crop", "augment_crop", OPT_BOOL, F(augment_crop), NULL, "random resized crop (scale 0.08-1, ratio 3/4-4/3)"},
    {"--augment-flip", "augment_flip", OPT_BOOL, F(augment_flip), NULL, "random horizontal flip (p 0.5)"},
    {"--augment-jitter", "augment_jitter", OPT_DOUBLE, F(augment_jitter), "X", "colour jitter: brightness, contrast, saturation factors in [1-X, 1+X] (0: off)"},
    {"--progress", "progress", OPT_STRING, F(progress), "P", "auto, bar or log"},
    {"--quiet", "quiet", OPT_BOOL, F(quiet), NULL, "no progress output"},
};
#define N_TRAIN_OPTS (sizeof TRAIN_OPTS / sizeof TRAIN_OPTS[0])

static void train_defaults(train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->method = "lora";
    c->out = "runs/train";
    c->epochs = 1;
    c->batch_size = 32;
    c->grad_accum = 1;
    c->lr = 1e-4;
    c->weight_decay = 0.01;
    c->schedule = "cosine";
    c->warmup_ratio = 0.05;
    c->warmup_steps = -1;
    c->max_grad_norm = 1.0;
    c->seed = 42;
    c->keep_checkpoints = 2;
    c->lora_r = 8;
    c->lora_alpha = 16;
    c->adapter_reduction = 16;
    c->adapter_placement = "both";
    c->adapter_act = "relu";
    c->scope = "both";
    c->virtual_tokens = 8;
    c->cache_mb = 1024;
    c->max_text_bytes = (int64_t)MMT_PAIRS_DEFAULT_MAX_TEXT_BYTES;
    c->max_file_bytes = (int64_t)MMT_PAIRS_DEFAULT_MAX_FILE_BYTES;
    c->progress = "auto";
    mmt_loader_options lo;
    mmt_loader_options_default(&lo);
    c->loader_workers = lo.workers;
    c->prefetch = lo.depth;
}

static void format_value(const train_cfg *c, const train_opt *o, char *buf, size_t cap) {
    const char *p = (const char *)c + o->offset;
    switch (o->type) {
    case OPT_STRING: snprintf(buf, cap, "%s", *(const char *const *)p ? *(const char *const *)p : ""); break;
    case OPT_INT: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)p); break;
    case OPT_DOUBLE: snprintf(buf, cap, "%g", *(const double *)p); break;
    case OPT_BOOL: snprintf(buf, cap, "%s", *(const int *)p ? "on" : "off"); break;
    }
}

static void print_train_help(void) {
    train_cfg d;
    train_defaults(&d);
    printf("usage: mmtune train --model DIR --data pairs.jsonl [--method M]\n"
           "                   [--out DIR] [options]\n\n"
           "Fine-tunes a CLIP on image-text pairs with the symmetric contrastive loss. The adapter\n"
           "(PEFT format: adapter_config.json + adapter_model.safetensors) lands in OUT/adapter/,\n"
           "checkpoints in OUT/ckpt-STEP/, one line per step in OUT/metrics.jsonl.\n"
           "--method linear-probe instead fits a linear head on the frozen image embeddings as CLIP's\n"
           "paper does: L-BFGS logistic regression to convergence, its L2 strength C chosen on 20%% of\n"
           "the data held out (--seed), then refitted on all of it; --steps, --epochs and --lr do not\n"
           "apply. Classes are each pair's \"label\", or its text. It writes head.safetensors +\n"
           "head_config.json to OUT/adapter/ (score with: mmtune eval --head OUT/adapter).\n"
           "--method prompt (CoOp text context vectors), visual-prompt (VPT) and prefix (per-layer\n"
           "key/value prefixes) train learned tokens; docs/peft_format.md lists their files.\n\n"
           "options (JSON config key in brackets; flags override the config file):\n");
    for (size_t i = 0; i < N_TRAIN_OPTS; i++) {
        const train_opt *o = &TRAIN_OPTS[i];
        char flag[64], def[64];
        snprintf(flag, sizeof flag, "%s%s%s", o->flag, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        format_value(&d, o, def, sizeof def);
        printf("  %-24s %s", flag, o->help);
        if (o->key) printf(" [%s]", o->key);
        if (def[0] && strcmp(o->flag, "--config") != 0) printf(" (default: %s)", def);
        putchar('\n');
    }
}

/* Sets option o from text v; 0 on success, else prints a usage error and returns 2. */
static int set_from_text(train_cfg *c, const train_opt *o, const char *v, const char *origin) {
    char *p = (char *)c + o->offset, *end;
    errno = 0;
    switch (o->type) {
    case OPT_STRING: *(const char **)p = v; return 0;
    case OPT_INT: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) return cli_usage_error("%s: %s needs an integer, got '%s'", origin, o->flag, v);
        *(int64_t *)p = x;
        return 0;
    }
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x)) return cli_usage_error("%s: %s needs a number, got '%s'", origin, o->flag, v);
        *(double *)p = x;
        return 0;
    }
    case OPT_BOOL: *(int *)p = 1; return 0;
    }
    return 0;
}

/* Applies a JSON config file: every key must be known and of the right type. */
static int apply_config(train_cfg *c, const char *path, mmt_json_doc **doc_out) {
    mmt_json_doc *doc = NULL;
    if (mmt_json_parse_file(path, &doc) != MMT_OK) return cli_runtime_error();
    *doc_out = doc;
    const mmt_json *root = mmt_json_root(doc);
    if (root->type != MMT_JSON_OBJECT) return fprintf(stderr, "mmtune: error: %s: expected a JSON object\n", path), 1;
    for (size_t k = 0; k < root->len; k++) {
        const char *key = root->keys[k];
        const train_opt *o = NULL;
        for (size_t i = 0; i < N_TRAIN_OPTS && !o; i++)
            if (TRAIN_OPTS[i].key && strcmp(TRAIN_OPTS[i].key, key) == 0) o = &TRAIN_OPTS[i];
        if (!o) return fprintf(stderr, "mmtune: error: %s: unknown setting \"%s\" (see mmtune train --help)\n", path, key), 1;
        char *p = (char *)c + o->offset;
        mmt_status s = MMT_OK;
        const char *sv;
        int64_t iv;
        double dv;
        int bv;
        switch (o->type) {
        case OPT_STRING:
            if ((s = mmt_json_get_string(root, key, NULL, &sv, path, "")) == MMT_OK && sv) *(const char **)p = sv;
            break;
        case OPT_INT:
            if ((s = mmt_json_get_int(root, key, *(int64_t *)p, &iv, path, "")) == MMT_OK) *(int64_t *)p = iv;
            break;
        case OPT_DOUBLE:
            if ((s = mmt_json_get_double(root, key, *(double *)p, &dv, path, "")) == MMT_OK) *(double *)p = dv;
            break;
        case OPT_BOOL:
            if ((s = mmt_json_get_bool(root, key, *(int *)p, &bv, path, "")) == MMT_OK) *(int *)p = bv;
            break;
        }
        if (s != MMT_OK) return cli_runtime_error();
    }
    return 0;
}

/* Settings that do not change what a run computes: a resumed run may differ in these. The
 * model and data are compared by fingerprint, not by path. */
static int outside_identity(const char *key) {
    static const char *const keys[] = {"model", "data", "image_root", "out", "resume", "cache_mb", "skip_bad",
                                       "loader_workers", "prefetch", "progress", "quiet", "save_every", "keep_checkpoints",
                                       "max_text_bytes", "max_file_bytes", NULL};
    for (const char *const *k = keys; *k; k++)
        if (!strcmp(*k, key)) return 1;
    return 0;
}

/* The settings as one JSON object; identity_only leaves out what outside_identity names. */
static char *settings_json(const train_cfg *c, int identity_only) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{");
    int first = 1;
    for (size_t i = 0; i < N_TRAIN_OPTS; i++) {
        const train_opt *o = &TRAIN_OPTS[i];
        if (!o->key || (identity_only && outside_identity(o->key))) continue;
        const char *p = (const char *)c + o->offset;
        mmt_strbuf_printf(&b, "%s\"%s\": ", first ? "" : ", ", o->key);
        first = 0;
        switch (o->type) {
        case OPT_STRING: {
            const char *v = *(const char *const *)p;
            if (v) mmt_strbuf_json_string(&b, v, strlen(v));
            else mmt_strbuf_printf(&b, "null");
            break;
        }
        case OPT_INT: mmt_strbuf_printf(&b, "%lld", (long long)*(const int64_t *)p); break;
        case OPT_DOUBLE: mmt_strbuf_printf(&b, "%.17g", *(const double *)p); break;
        case OPT_BOOL: mmt_strbuf_printf(&b, "%s", *(const int *)p ? "true" : "false"); break;
        }
    }
    mmt_strbuf_printf(&b, "}");
    return b.data;
}

/* run.json's identity: the base model's and the data's fingerprints and the settings. */
static char *identity_json(const train_cfg *c, const mmt_pairs *pairs) {
    char model_fp[17], data_fp[17];
    int64_t files = 0;
    if (mmt_fingerprint_model(c->model, model_fp, &files) != MMT_OK || mmt_fingerprint_pairs(pairs, data_fp) != MMT_OK)
        return NULL;
    char *settings = settings_json(c, 1);
    if (!settings) return NULL;
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"model\": {\"fingerprint\": \"%s\", \"files\": %lld}, \"data\": {\"fingerprint\": \"%s\", "
                          "\"pairs\": %lld}, \"settings\": %s}",
                      model_fp, (long long)files, data_fp, (long long)pairs->n, settings);
    mmt_free(settings);
    if (b.failed) {
        mmt_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

/* Splits "a,b,c" into a malloc'd array of pointers into a copy; n items. */
static char **split_list(const char *list, char **copy, int64_t *n) {
    *copy = mmt_strdup(list);
    *n = 0;
    if (!*copy) return NULL;
    int64_t cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    char **items = mmt_calloc((size_t)cap, sizeof *items);
    if (!items) return NULL;
    for (char *tok = strtok(*copy, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        if (*tok) items[(*n)++] = tok;
    }
    return items;
}

/* The PEFT config the settings describe (LoRA or IA3). Returns 0 or an exit code. */
static int build_peft_config(const train_cfg *c, const char *model_dir, mmt_peft_config *pc) {
    mmt_peft_type type = strcmp(c->method, "ia3") == 0 ? MMT_PEFT_IA3 : MMT_PEFT_LORA;
    if (mmt_peft_config_default(pc, type) != MMT_OK) return cli_runtime_error();
    mmt_status s = MMT_OK;
    char *copy = NULL;
    int64_t n = 0;
    char **items = NULL;
    free(pc->base_model_name_or_path);
    pc->base_model_name_or_path = NULL;
    if (!(pc->base_model_name_or_path = mmt_strdup(model_dir))) s = MMT_STATUS_OUT_OF_MEMORY;
    if (type == MMT_PEFT_LORA) {
        pc->r = c->lora_r;
        pc->lora_alpha = c->lora_alpha;
        pc->lora_dropout = c->lora_dropout;
        pc->use_rslora = c->rslora;
        pc->use_dora = c->dora;
    }
    if (s == MMT_OK) {
        if (c->targets_regex) {
            s = mmt_peft_names_set_regex(&pc->target_modules, c->targets_regex);
        } else if (strcmp(c->targets, "all-linear") == 0) {
            s = mmt_peft_names_set_regex(&pc->target_modules, "all-linear");
        } else {
            items = split_list(c->targets, &copy, &n);
            s = items ? mmt_peft_names_set_list(&pc->target_modules, (const char *const *)items, n) : MMT_STATUS_OUT_OF_MEMORY;
            mmt_free(items);
            mmt_free(copy);
        }
    }
    if (s == MMT_OK && c->modules_to_save && c->modules_to_save[0]) {
        items = split_list(c->modules_to_save, &copy, &n);
        s = items ? mmt_peft_names_set_list(&pc->modules_to_save, (const char *const *)items, n) : MMT_STATUS_OUT_OF_MEMORY;
        mmt_free(items);
        mmt_free(copy);
    }
    if (s == MMT_OK && type == MMT_PEFT_IA3) {
        items = split_list(c->feedforward, &copy, &n);
        s = items ? mmt_peft_names_set_list(&pc->feedforward_modules, (const char *const *)items, n) : MMT_STATUS_OUT_OF_MEMORY;
        mmt_free(items);
        mmt_free(copy);
    }
    if (s == MMT_OK && !mmt_peft_scope_parse(c->scope, &pc->scope)) {
        mmt_peft_config_free(pc);
        return cli_usage_error("--scope takes both, text or vision, not '%s'", c->scope);
    }
    if (s == MMT_OK && c->layers && c->layers[0]) {
        items = split_list(c->layers, &copy, &n);
        pc->layers_to_transform = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t));
        if (!items || !pc->layers_to_transform) s = MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t i = 0; s == MMT_OK && i < n; i++) {
            char *end;
            long long v = strtoll(items[i], &end, 10);
            if (*end || v < 0) {
                mmt_free(items);
                mmt_free(copy);
                mmt_peft_config_free(pc);
                return cli_usage_error("--layers needs comma-separated layer indices, got '%s'", c->layers);
            }
            pc->layers_to_transform[i] = v;
        }
        pc->n_layers_to_transform = n;
        pc->layers_to_transform_kind = 2;
        mmt_free(items);
        mmt_free(copy);
    }
    if (s == MMT_OK) s = mmt_peft_config_validate(pc, "the training settings");
    if (s != MMT_OK) {
        mmt_peft_config_free(pc);
        return cli_runtime_error();
    }
    return 0;
}

/* The prompt / prefix tokens the settings ask for (any method but full and linear-probe).
 * Returns 0 or an exit code; *have is 0 when there are none. */
static int build_prompt_settings(const train_cfg *c, int is_prompt, mmt_prompt_settings *ps, int *have) {
    memset(ps, 0, sizeof *ps);
    *have = 0;
    if (c->virtual_tokens < 1 || c->prompt_tokens < 0 || c->visual_prompt_tokens < 0 || c->prefix_hidden < 0)
        return cli_usage_error("train: prompt token counts must be positive");
    int full = !strcmp(c->method, "full");
    ps->text_tokens = c->prompt_tokens;
    ps->visual_tokens = c->visual_prompt_tokens;
    if (!strcmp(c->method, "prompt")) ps->text_tokens = c->virtual_tokens;
    if (!strcmp(c->method, "visual-prompt")) ps->visual_tokens = c->virtual_tokens;
    if (!strcmp(c->method, "prefix")) {
        if (c->prompt_tokens > 0)
            return cli_usage_error("train: --prompt-tokens cannot go with --method prefix (both are PEFT's prompt_embeddings)");
        ps->prefix_tokens = c->virtual_tokens;
        ps->prefix_projection = c->prefix_projection;
        ps->encoder_hidden_size = c->prefix_hidden;
        ps->prefix_vision = c->prefix_vision;
    }
    ps->visual_deep = c->vpt_deep;
    if (ps->text_tokens == 0 && ps->visual_tokens == 0 && ps->prefix_tokens == 0) return 0;
    if (full) return cli_usage_error("train: prompt tokens cannot go with --method full");
    *have = 1;
    (void)is_prompt;
    return 0;
}

/* Bottleneck adapter settings (--method adapter; --scope and --layers choose where). Returns
 * 0 or an exit code. */
static int build_bottleneck_config(const train_cfg *c, mmt_bottleneck_config *bc) {
    mmt_bottleneck_config_default(bc);
    snprintf(bc->base_model, sizeof bc->base_model, "%s", c->model);
    if (c->adapter_reduction < 1) return cli_usage_error("--adapter-reduction must be at least 1");
    bc->reduction_factor = c->adapter_reduction;
    if (!mmt_bottleneck_placement_parse(c->adapter_placement, &bc->placement))
        return cli_usage_error("--adapter-placement takes attn, mlp or both, not '%s'", c->adapter_placement);
    if (!mmt_bottleneck_act_parse(c->adapter_act, &bc->act))
        return cli_usage_error("--adapter-act takes relu or gelu, not '%s'", c->adapter_act);
    if (!mmt_peft_scope_parse(c->scope, &bc->towers))
        return cli_usage_error("--scope takes both, text or vision, not '%s'", c->scope);
    if (!c->layers || !c->layers[0]) return 0;
    char *copy = NULL;
    int64_t n = 0;
    char **items = split_list(c->layers, &copy, &n);
    int rc = items ? 0 : cli_runtime_error();
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        char *end;
        long long v = strtoll(items[i], &end, 10);
        if (*end || v < 0 || bc->n_layers >= MMT_BOTTLENECK_MAX_LAYERS)
            rc = cli_usage_error("--layers needs comma-separated layer indices, got '%s'", c->layers);
        else
            bc->layers[bc->n_layers++] = v;
    }
    mmt_free(items);
    mmt_free(copy);
    return rc;
}

/* Reads --data in any layout data/datasets.h knows; a skip count goes to stderr. */
static mmt_status cli_pairs_load(const char *data, const mmt_pairs_options *o, mmt_pairs **out) {
    mmt_status s = mmt_pairs_load(data, o, out);
    if (s == MMT_OK && (*out)->skipped)
        fprintf(stderr, "mmtune: skipped %lld bad records of %s\n", (long long)(*out)->skipped, data);
    return s;
}

/* JSON number, or null for NaN (no held-out split). */
static void print_json_number(double v) {
    if (isfinite(v)) printf("%.6g", v);
    else fputs("null", stdout);
}

/* Progress of a training run on stderr (the library reports, the CLI draws): a bar that
 * rewrites one line on a terminal, or about twenty log lines per run. */
typedef struct progress_view {
    int bar;
} progress_view;

static void show_progress(void *user, const mmt_train_progress *p) {
    const progress_view *v = user;
    int64_t total = p->total_steps > 0 ? p->total_steps : 1;
    if (v->bar) {
        char cells[31];
        int filled = (int)(30 * p->step / total);
        for (int i = 0; i < 30; i++) cells[i] = i < filled ? '#' : '.';
        cells[30] = '\0';
        fprintf(stderr, "\rstep %lld/%lld [%s] loss %.4f lr %.2e %.1f img/s ETA %d:%02d   ", (long long)p->step,
                (long long)p->total_steps, cells, p->loss, p->lr, p->images_per_s, (int)(p->eta_s / 60),
                (int)p->eta_s % 60);
        if (p->step == p->total_steps) fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    int64_t every = p->total_steps / 20 > 0 ? p->total_steps / 20 : 1;
    if ((p->step - p->start_step) % every != 0 && p->step != p->total_steps && p->step != p->start_step + 1) return;
    fprintf(stderr, "mmtune: info: step %lld/%lld loss %.4f lr %.3g %.1f img/s ETA %.0fs\n", (long long)p->step,
            (long long)p->total_steps, p->loss, p->lr, p->images_per_s, p->eta_s);
}

/* train --method linear-probe: CLIP's linear probe (train/probe_fit.h). The image embeddings
 * are computed once; L-BFGS logistic regression is fitted to convergence at each C of the
 * sweep on a held-out split of the data (--seed picks it), then on all of it. The trainer's
 * loop settings (steps, epochs, lr, schedule) do not apply. Returns the exit code. */
static int train_linear_probe(const train_cfg *c, mmt_clip *model, const mmt_pairs *pairs) {
    if (c->resume) return cli_usage_error("train: --method linear-probe fits in one go; there is nothing to --resume");
    /* the run folder is held and recorded as a training run's is (train/run_dir.h) */
    char *ij = identity_json(c, pairs);
    if (!ij) return cli_runtime_error();
    mmt_run_dir rd;
    char *nothing = NULL;
    mmt_run_dir_options ro = {ij, c->overwrite, NULL};
    mmt_status os = mmt_run_dir_open(c->out, &ro, &rd, &nothing);
    mmt_free(ij);
    if (os != MMT_OK) return cli_runtime_error();
    train_cfg d;
    train_defaults(&d);
    if (c->steps != d.steps || c->epochs != d.epochs || c->lr != d.lr)
        mmt_log_warn("linear probe: fitted to convergence by L-BFGS with C chosen on held-out data; "
                     "--steps, --epochs and --lr do not apply");
    mmt_probe_task *probe = NULL;
    mmt_probe_fit_params fp;
    mmt_probe_fit_params_default(&fp);
    fp.seed = (uint64_t)c->seed;
    mmt_probe_fit_result r;
    memset(&r, 0, sizeof r);
    int rc = 0;
    const char *base = mmt_clip_weights(model)->dir;
    if (mmt_probe_task_create(model, pairs, &probe) != MMT_OK) {
        mmt_run_dir_close(&rd);
        return cli_runtime_error();
    }
    const mmt_probe_head *h = mmt_probe_task_head(probe);
    int64_t n = h->K * (h->P + 1), total = mmt_weights_param_count(mmt_clip_weights(model));
    if (!c->quiet)
        fprintf(stderr, "mmtune: linear-probe on %lld pairs: %lld trainable parameters (%.3f%% of %lld)\n",
                (long long)pairs->n, (long long)n, total > 0 ? 100.0 * (double)n / (double)total : 0, (long long)total);
    if (mmt_probe_task_fit(probe, &fp, &r) != MMT_OK || mmt_probe_head_publish(h, base, &r, &fp, c->out) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    /* steps: the final fit's L-BFGS iterations; s_per_step: over every fit of the sweep too */
    int64_t all_iterations = r.iterations;
    for (int64_t i = 0; i < r.n_sweep; i++) all_iterations += r.sweep[i].iterations;
    struct rusage ru;
    double peak_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0; /* Linux: KiB */
    printf("{\"steps\": %lld, \"final_loss\": %.6g, \"seconds\": %.2f, \"s_per_step\": %.4f, \"trainable_params\": %lld, "
           "\"total_params\": %lld, \"peak_rss_mb\": %.1f, \"adapter\": \"%s/adapter\", \"C\": %.6g, \"heldout_accuracy\": ",
           (long long)r.iterations, r.train_loss, r.seconds, all_iterations > 0 ? r.seconds / (double)all_iterations : 0,
           (long long)n, (long long)total, peak_mb, c->out, r.C);
    print_json_number(r.heldout_accuracy);
    fputs("}\n", stdout);
done:
    mmt_probe_fit_result_free(&r);
    mmt_probe_task_free(probe);
    mmt_run_dir_close(&rd);
    return rc;
}

int cmd_train(int argc, char **argv) {
    train_cfg c;
    train_defaults(&c);
    /* pass 1: --help and --config; pass 2: every flag over the config */
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_train_help();
            return 0;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return cli_usage_error("--config needs a file");
            c.config = argv[i + 1];
        }
    }
    mmt_json_doc *doc = NULL;
    int rc = 0;
    if (c.config && (rc = apply_config(&c, c.config, &doc)) != 0) {
        mmt_json_free(doc);
        return rc;
    }
    for (int i = 0; i < argc && rc == 0; i++) {
        const train_opt *o = NULL;
        for (size_t k = 0; k < N_TRAIN_OPTS && !o; k++)
            if (!strcmp(argv[i], TRAIN_OPTS[k].flag)) o = &TRAIN_OPTS[k];
        if (!o) {
            rc = cli_usage_error("train: unknown option '%s'", argv[i]);
            break;
        }
        if (o->type == OPT_BOOL) {
            rc = set_from_text(&c, o, "", "command line");
        } else if (i + 1 >= argc) {
            rc = cli_usage_error("%s needs a value", o->flag);
        } else {
            rc = set_from_text(&c, o, argv[++i], "command line");
        }
    }
    if (rc == 0 && !c.model) rc = cli_usage_error("train: --model is required");
    if (rc == 0 && !c.data) rc = cli_usage_error("train: --data is required");
    int is_full = c.method && strcmp(c.method, "full") == 0;
    int is_bottleneck = c.method && strcmp(c.method, "adapter") == 0;
    int is_probe = c.method && strcmp(c.method, "linear-probe") == 0; /* frozen tower + a linear head */
    int is_prompt = c.method && (!strcmp(c.method, "prompt") || !strcmp(c.method, "visual-prompt") || !strcmp(c.method, "prefix"));
    if (rc == 0 && !is_full && !is_probe && !is_prompt && strcmp(c.method, "lora") != 0 && strcmp(c.method, "ia3") != 0 &&
        !is_bottleneck)
        rc = cli_usage_error("train: --method takes lora, ia3, adapter, full, linear-probe, prompt, visual-prompt or prefix, not '%s'",
                             c.method);
    mmt_prompt_settings ps;
    int have_ps = 0;
    if (rc == 0 && !is_probe) rc = build_prompt_settings(&c, is_prompt, &ps, &have_ps);
    mmt_schedule_kind sk = MMT_SCHEDULE_COSINE;
    if (rc == 0 && mmt_schedule_kind_parse(c.schedule, &sk) != MMT_OK)
        rc = cli_usage_error("--schedule takes cosine, linear or constant, not '%s'", c.schedule);
    if (rc == 0 && (c.steps < 0 || c.epochs < 0 || c.batch_size < 1 || c.grad_accum < 1 || c.seed < 0 || c.cache_mb < 0))
        rc = cli_usage_error("train: counts must be positive (steps, epochs, batch size, grad accumulation, seed)");
    if (rc == 0 && c.save_every < 0) rc = cli_usage_error("--save-every must be >= 0 (0: only at the end), got %lld", (long long)c.save_every);
    if (rc == 0 && c.keep_checkpoints < 0)
        rc = cli_usage_error("--keep-checkpoints must be >= 0 (0: keep all), got %lld", (long long)c.keep_checkpoints);
    if (rc == 0 && c.overwrite && c.resume) rc = cli_usage_error("train: --overwrite starts afresh; it cannot go with --resume");
    /* per-method defaults: IA3 as PEFT sets it up for CLIP-style models (keys, values and the
     * second MLP linear, which is feed-forward: its input is scaled) */
    int is_ia3 = c.method && !strcmp(c.method, "ia3");
    if (!c.targets) c.targets = is_ia3 ? "k_proj,v_proj,fc2" : "q_proj,v_proj";
    if (!c.feedforward) {
        int fc2 = !strcmp(c.targets, "all-linear") || c.targets_regex != NULL;
        for (const char *p = c.targets; !fc2 && (p = strstr(p, "fc2")); p += 3)
            fc2 = (p == c.targets || p[-1] == ',' || p[-1] == ' ' || p[-1] == '.') && (p[3] == '\0' || p[3] == ',');
        c.feedforward = fc2 ? "fc2" : "";
    }
    if (rc == 0 && strcmp(c.progress, "auto") && strcmp(c.progress, "bar") && strcmp(c.progress, "log"))
        rc = cli_usage_error("--progress takes auto, bar or log");
    if (rc == 0 && (c.max_text_bytes < 1 || c.max_file_bytes < 1))
        rc = cli_usage_error("train: --max-text-bytes and --max-file-bytes must be at least 1");
    mmt_pairs_options po;
    mmt_pairs_options_default(&po);
    po.skip_bad = c.skip_bad;
    po.image_root = c.image_root;
    po.max_text_bytes = (size_t)c.max_text_bytes;
    po.max_file_bytes = (size_t)c.max_file_bytes;
    if (rc != 0) {
        mmt_json_free(doc);
        return rc;
    }

    if (!c.quiet) mmt_log_set_level(MMT_LOG_INFO);
    mmt_clip *model = NULL;
    mmt_pairs *pairs = NULL;
    mmt_clip_task *task = NULL;
    mmt_peft_config pc;
    int have_pc = 0;
    mmt_bottleneck_config bc;
    char *sj = NULL, *ij = NULL;
    if (mmt_clip_load(c.model, &model) != MMT_OK || cli_pairs_load(c.data, &po, &pairs) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if (is_bottleneck && (rc = build_bottleneck_config(&c, &bc)) != 0) goto done;
    if (!is_full && !is_bottleneck && !is_probe && !is_prompt) {
        if ((rc = build_peft_config(&c, c.model, &pc)) != 0) goto done;
        have_pc = 1;
    }
    mmt_clip_task_options to;
    memset(&to, 0, sizeof to);
    to.peft = have_pc ? &pc : NULL;
    to.bottleneck = is_bottleneck ? &bc : NULL;
    to.prompt = have_ps ? &ps : NULL;
    to.prompt_init_text = c.prompt_init_text;
    mmt_clip_train_options_default(&to.train);
    to.train.checkpointing = c.checkpointing;
    to.train.train_logit_scale = c.learn_logit_scale || (is_full && c.temperature <= 0);
    to.train.fixed_temperature = (float)c.temperature;
    to.train.distill_weight = (float)c.distill;
    to.seed = (uint64_t)c.seed;
    to.cache_bytes = (size_t)c.cache_mb << 20;
    to.loader_workers = c.loader_workers;
    to.prefetch_batches = c.prefetch;
    mmt_augment_default(&to.augment);
    to.augment.crop = c.augment_crop;
    to.augment.flip = c.augment_flip;
    to.augment.brightness = to.augment.contrast = to.augment.saturation = c.augment_jitter;
    if (is_probe) { /* CLIP's linear probe: an L-BFGS fit, not the trainer's loop */
        rc = train_linear_probe(&c, model, pairs);
        goto done;
    }
    if (mmt_clip_task_create(model, pairs, &to, &task) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    mmt_train_task tt;
    mmt_clip_task_bind(task, &tt);
    mmt_train_settings ts;
    mmt_train_settings_default(&ts);
    ts.out = c.out;
    ts.resume = c.resume;
    ts.steps = c.steps;
    ts.epochs = c.epochs;
    ts.batch_size = c.batch_size;
    ts.grad_accum = c.grad_accum;
    ts.lr = c.lr;
    ts.lr_scales = c.lr_scales;
    ts.weight_decay = c.weight_decay;
    ts.max_grad_norm = c.max_grad_norm;
    ts.schedule = sk;
    ts.warmup_ratio = c.warmup_ratio;
    ts.warmup_steps = c.warmup_steps;
    ts.min_lr_rate = c.min_lr_rate;
    ts.seed = (uint64_t)c.seed;
    ts.save_every = c.save_every;
    ts.keep_checkpoints = c.keep_checkpoints;
    progress_view pv = {!strcmp(c.progress, "bar") || (!strcmp(c.progress, "auto") && isatty(2))};
    if (!c.quiet) {
        ts.on_step = show_progress;
        ts.on_step_user = &pv;
    }
    ts.quiet = c.quiet;
    ts.settings_json = sj = settings_json(&c, 0);
    ts.identity_json = ij = identity_json(&c, pairs);
    ts.overwrite = c.overwrite;
    if (!sj || !ij) {
        rc = cli_runtime_error();
        goto done;
    }
    int64_t n = mmt_clip_task_trainable_numel(task), total = mmt_weights_param_count(mmt_clip_weights(model));
    if (!c.quiet) {
        fprintf(stderr, "mmtune: %s on %lld pairs: %lld trainable parameters (%.3f%% of %lld)\n", c.method,
                (long long)pairs->n, (long long)n, total > 0 ? 100.0 * (double)n / (double)total : 0, (long long)total);
    }
    mmt_train_result res;
    if (mmt_train_run(&tt, &ts, &res) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    struct rusage ru;
    double peak_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0; /* Linux: KiB */
    printf("{\"steps\": %lld, \"final_loss\": %.6g, \"seconds\": %.2f, \"s_per_step\": %.4f, \"trainable_params\": %lld, "
           "\"total_params\": %lld, \"peak_rss_mb\": %.1f, \"adapter\": \"%s/adapter\"}\n",
           (long long)res.steps_done, res.final_loss, res.seconds, res.steps_run > 0 ? res.seconds / (double)res.steps_run : 0,
           (long long)n, (long long)total, peak_mb, c.out);
done:
    mmt_free(sj);
    mmt_free(ij);
    if (have_pc) mmt_peft_config_free(&pc);
    mmt_clip_task_free(task);
    mmt_pairs_free(pairs);
    mmt_clip_free(model);
    mmt_json_free(doc);
    return rc;
}

/* ---- eval ------------------------------------------------------------------------------ */

static const char *EVAL_HELP =
    "usage: mmtune eval --model DIR --data pairs.jsonl [--adapter DIR] [--batch-size N] [--out FILE]\n"
    "                   [--match pair|label] [--zero-shot [--templates FILE] [--classes A,B,...]]\n"
    "       mmtune eval --model DIR --data labelled.jsonl --head DIR [--out FILE]\n"
    "\n"
    "Embeds every pair's image and text (through the adapter when given) and prints one JSON\n"
    "object: image->text and text->image recall@1/5/10 and median rank, and the mean\n"
    "contrastive loss over batches. --out also writes it to FILE.\n"
    "With --head (a folder written by train --method linear-probe) it instead classifies each\n"
    "image with the linear head on the base model's embeddings and prints the accuracy and the\n"
    "mean cross-entropy; a pair's class is its \"label\", or its text.\n"
    "  --batch-size N   pairs per batch for embedding and for the loss (default 32)\n"
    "  --match M        what counts as a correct retrieval: pair (default; only the item's own\n"
    "                   pair) or label (any item with the same \"label\": class-level recall@K,\n"
    "                   as in metric learning; the rank is that of the best same-class item)\n"
    "  --skip-bad       skip bad records of the data file (counted)\n"
    "  --image-root DIR COCO: folder the file_name entries are relative to\n"
    "  --max-text-bytes N\n"
    "                   a caption over N bytes makes its record bad (default 65536)\n"
    "  --max-file-bytes N\n"
    "                   a data file over N bytes is refused (default 2147483648)\n"
    "  --zero-shot      also classify each image among the pairs' distinct labels by prompt\n"
    "                   ensembling as CLIP does (mean of the normalised prompt embeddings) and\n"
    "                   add zero_shot_accuracy and zero_shot_per_class\n"
    "  --templates FILE one prompt template per line with {} for the class name (default: a\n"
    "                   built-in set such as \"a photo of a {}.\")\n"
    "  --classes LIST   comma-separated class names, in this order (default: the labels)\n";

/* eval --head: the linear probe's top-1 accuracy on a labelled set. */
static int eval_head(const char *model_dir, const char *data, const char *head_dir, const mmt_pairs_options *po,
                     const char *out) {
    cli_encoder enc = {0};
    mmt_pairs *pairs = NULL;
    mmt_probe_head *head = NULL;
    const char **paths = NULL;
    float *emb = NULL;
    mmt_probe_metrics m;
    int rc = 0;
    if (mmt_probe_head_load(head_dir, &head) != MMT_OK || cli_pairs_load(data, po, &pairs) != MMT_OK ||
        cli_encoder_open(model_dir, NULL, &enc) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if (cli_encoder_dim(&enc) != head->P) {
        fprintf(stderr, "mmtune: error: %s: the head takes %lld-dim embeddings, %s gives %lld\n", head_dir,
                (long long)head->P, model_dir, (long long)cli_encoder_dim(&enc));
        rc = 1;
        goto done;
    }
    paths = mmt_malloc((size_t)pairs->n * sizeof *paths);
    emb = mmt_malloc((size_t)(pairs->n * head->P) * sizeof(float));
    for (int64_t i = 0; paths && i < pairs->n; i++) paths[i] = pairs->items[i].image_path;
    if (!paths || !emb || cli_encoder_images(&enc, paths, pairs->n, emb) != MMT_OK ||
        mmt_probe_evaluate(head, pairs, emb, &m) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    char line[256];
    snprintf(line, sizeof line, "{\"examples\": %lld, \"classes\": %lld, \"correct\": %lld, \"accuracy\": %.6f, \"loss\": %.6f}\n",
             (long long)m.n, (long long)head->K, (long long)m.correct, m.accuracy, m.loss);
    fputs(line, stdout);
    if (out && mmt_file_write_atomic(out, line, strlen(line)) != MMT_OK) rc = cli_runtime_error();
done:
    mmt_free(paths);
    mmt_free(emb);
    mmt_probe_head_free(head);
    mmt_pairs_free(pairs);
    cli_encoder_close(&enc);
    return rc;
}

/* Embeds all pairs' images and texts through the view (adapter applied when attached). */
static mmt_status embed_pairs(mmt_clip *model, mmt_clip_train *view, const mmt_pairs *pairs, int64_t bs,
                              float *img, float *txt, double *mean_loss) {
    const mmt_clip_config *c = mmt_clip_config_of(model);
    int64_t S = c->vision.image_size, L = c->text.max_positions, P = c->projection_dim;
    size_t per = (size_t)(3 * S * S);
    float *px = mmt_malloc((size_t)bs * per * sizeof(float));
    int32_t *ids = mmt_malloc((size_t)(bs * L) * sizeof(int32_t));
    mmt_status s = px && ids ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    double loss_sum = 0;
    int64_t batches = 0;
    for (int64_t at = 0; s == MMT_OK && at < pairs->n; at += bs) {
        int64_t b = pairs->n - at < bs ? pairs->n - at : bs;
        for (int64_t i = 0; i < b && s == MMT_OK; i++) {
            s = mmt_clip_image_file_pixels(model, pairs->items[at + i].image_path, px + (size_t)i * per);
            const char *t = pairs->items[at + i].text;
            if (s == MMT_OK) s = mmt_clip_tokenize(model, &t, 1, 1, ids + i * L);
        }
        double loss = 0;
        if (s == MMT_OK) s = mmt_clip_train_forward_loss(view, px, ids, b, L, 0, &loss);
        if (s == MMT_OK) {
            memcpy(img + at * P, mmt_clip_train_image_embeds(view), (size_t)(b * P) * sizeof(float));
            memcpy(txt + at * P, mmt_clip_train_text_embeds(view), (size_t)(b * P) * sizeof(float));
            loss_sum += loss;
            batches++;
        }
    }
    *mean_loss = batches ? loss_sum / (double)batches : NAN;
    mmt_free(px);
    mmt_free(ids);
    return s;
}

int cmd_eval(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *adapter_dir = NULL, *out = NULL, *head_dir = NULL;
    const char *templates = NULL, *classes = NULL, *match = "pair";
    int64_t bs = 32;
    int zero_shot = 0;
    mmt_pairs_options po;
    mmt_pairs_options_default(&po);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(EVAL_HELP, stdout), 0;
        if (!strcmp(a, "--skip-bad")) {
            po.skip_bad = 1;
            continue;
        }
        if (!strcmp(a, "--zero-shot")) {
            zero_shot = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("eval: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--adapter")) adapter_dir = v;
        else if (!strcmp(a, "--head")) head_dir = v;
        else if (!strcmp(a, "--image-root")) po.image_root = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--templates")) templates = v;
        else if (!strcmp(a, "--classes")) classes = v;
        else if (!strcmp(a, "--match")) match = v;
        else if (!strcmp(a, "--batch-size")) {
            char *end;
            bs = strtoll(v, &end, 10);
            if (*end || bs < 1 || bs > 65536) return cli_usage_error("--batch-size needs a number from 1 to 65536");
        } else if (!strcmp(a, "--max-text-bytes") || !strcmp(a, "--max-file-bytes")) {
            char *end;
            errno = 0;
            long long n = strtoll(v, &end, 10);
            if (!*v || *end || errno || n < 1) return cli_usage_error("eval: %s needs a positive number of bytes, got '%s'", a, v);
            if (!strcmp(a, "--max-text-bytes")) po.max_text_bytes = (size_t)n;
            else po.max_file_bytes = (size_t)n;
        } else return cli_usage_error("eval: unknown option '%s'", a);
    }
    if (!model_dir || !data) return cli_usage_error("eval: --model and --data are required");
    if (head_dir && adapter_dir)
        return cli_usage_error("eval: --head scores the base model's image embeddings; drop --adapter");
    if ((templates || classes) && !zero_shot) return cli_usage_error("eval: --templates and --classes go with --zero-shot");
    if (head_dir && zero_shot) return cli_usage_error("eval: --zero-shot and --head are separate evaluations");
    if (strcmp(match, "pair") && strcmp(match, "label"))
        return cli_usage_error("eval: --match takes pair or label, not '%s'", match);
    int by_label = !strcmp(match, "label");
    if (head_dir) return eval_head(model_dir, data, head_dir, &po, out);
    mmt_clip *model = NULL;
    mmt_pairs *pairs = NULL;
    mmt_clip_train *view = NULL;
    mmt_adapter *ad = NULL;
    mmt_prompt *prompt = NULL;
    float *img = NULL, *txt = NULL;
    int rc = 0;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_retrieval_metrics m;
    mmt_zeroshot_classes groups = {0}; /* --match label: each pair's class */
    double loss = NAN;
    if (mmt_clip_load(model_dir, &model) != MMT_OK || cli_pairs_load(data, &po, &pairs) != MMT_OK ||
        mmt_clip_train_create(model, &o, &view) != MMT_OK ||
        (adapter_dir && mmt_adapter_folders_load(mmt_clip_train_iface(view), adapter_dir, 0, &ad, &prompt) != MMT_OK)) {
        rc = cli_runtime_error();
        goto done;
    }
    mmt_clip_train_set_eval(view, 1); /* no dropout in evaluation */
    int64_t P = mmt_clip_embed_dim(model);
    img = mmt_malloc((size_t)(pairs->n * P) * sizeof(float));
    txt = mmt_malloc((size_t)(pairs->n * P) * sizeof(float));
    if (!img || !txt || (by_label && mmt_zeroshot_classes_from_pairs(pairs, NULL, &groups) != MMT_OK) ||
        embed_pairs(model, view, pairs, bs, img, txt, &loss) != MMT_OK ||
        mmt_retrieval_eval_grouped(img, txt, by_label ? groups.labels : NULL, pairs->n, P, &m) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    mmt_strbuf line = {0};
    mmt_strbuf_printf(&line,
             "{\"pairs\": %lld, \"match\": \"%s\", \"loss\": %.6f, \"i2t_recall_at_1\": %.6f, \"i2t_recall_at_5\": %.6f, \"i2t_recall_at_10\": %.6f, "
             "\"i2t_median_rank\": %g, \"t2i_recall_at_1\": %.6f, \"t2i_recall_at_5\": %.6f, \"t2i_recall_at_10\": %.6f, "
             "\"t2i_median_rank\": %g",
             (long long)m.n, match, loss, m.i2t_r1, m.i2t_r5, m.i2t_r10, m.i2t_median_rank, m.t2i_r1, m.t2i_r5, m.t2i_r10,
             m.t2i_median_rank);
    if (zero_shot && cli_zero_shot(model, view, pairs, img, templates, classes, &line) != MMT_OK) {
        mmt_strbuf_free(&line);
        rc = cli_runtime_error();
        goto done;
    }
    mmt_strbuf_append(&line, "}\n", 2);
    if (line.failed) rc = cli_runtime_error();
    else fputs(line.data, stdout);
    if (rc == 0 && out && mmt_file_write_atomic(out, line.data, line.len) != MMT_OK) rc = cli_runtime_error();
    mmt_strbuf_free(&line);
done:
    mmt_free(img);
    mmt_free(txt);
    mmt_zeroshot_classes_free(&groups);
    mmt_adapter_free(ad);
    mmt_prompt_free(prompt);
    mmt_clip_train_free(view);
    mmt_pairs_free(pairs);
    mmt_clip_free(model);
    return rc;
}

/* ---- merge ------------------------------------------------------------------------------ */

static const char *MERGE_HELP =
    "usage: mmtune merge --model DIR --adapter DIR --out DIR [--overwrite]\n"
    "\n"
    "Folds a LoRA or IA3 adapter into the base weights and writes a Hugging Face snapshot\n"
    "(model.safetensors in float32, config, tokenizer and preprocessor files copied) that\n"
    "transformers' CLIPModel.from_pretrained and mmtune load without the adapter.\n"
    "The snapshot is written under a temporary name and renamed when complete, so OUT is\n"
    "whole or absent. An existing non-empty OUT is refused unless --overwrite replaces it.\n";

int cmd_merge(int argc, char **argv) {
    const char *model_dir = NULL, *adapter_dir = NULL, *out = NULL;
    int overwrite = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(MERGE_HELP, stdout), 0;
        if (!strcmp(a, "--overwrite")) {
            overwrite = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("merge: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--adapter")) adapter_dir = v;
        else if (!strcmp(a, "--out")) out = v;
        else return cli_usage_error("merge: unknown option '%s'", a);
    }
    if (!model_dir || !adapter_dir || !out) return cli_usage_error("merge: --model, --adapter and --out are required");
    char *prompt_dir = mmt_adapter_prompt_dir(adapter_dir);
    int has_prompt = prompt_dir != NULL;
    mmt_free(prompt_dir);
    if (has_prompt)
        return fprintf(stderr, "mmtune: error: %s: prompt and prefix tuning add tokens and cannot be merged into the weights\n",
                       adapter_dir), 1;
    mmt_clip *model = NULL;
    mmt_clip_train *view = NULL;
    mmt_adapter *ad = NULL;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    char *tmp = NULL;
    int rc = cli_out_begin("merge", out, overwrite, &tmp);
    if (rc == 0 && (mmt_clip_load(model_dir, &model) != MMT_OK || mmt_clip_train_create(model, &o, &view) != MMT_OK ||
                    mmt_adapter_folder_load(mmt_clip_train_iface(view), adapter_dir, 0, &ad) != MMT_OK ||
                    mmt_adapter_merge_write(mmt_clip_weights(model), ad, tmp) != MMT_OK))
        rc = cli_runtime_error();
    rc = cli_out_finish(tmp, out, rc);
    if (rc == 0) printf("{\"merged\": \"%s\"}\n", out);
    mmt_adapter_free(ad);
    mmt_clip_train_free(view);
    mmt_clip_free(model);
    return rc;
}
