/* train_config.c — the training settings table, its defaults, checks and records (see
 * train_config.h). The public mmt_train_options_default (mmtune.h) is here too: its defaults
 * are the table's. The messages are the CLI's usage messages, flags and all: `mmtune train`
 * prints them as they are, and a program finds the same names in --help and docs/api.md. */
#include "train/train_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "data/loader.h"
#include "models/git_config.h"
#include "peft/bottleneck_config.h"
#include "peft/peft_config.h"
#include "train/fingerprint.h"
#include "train/schedule.h"

#define S MMT_TRAIN_SETTING_STRING
#define I MMT_TRAIN_SETTING_INT
#define D MMT_TRAIN_SETTING_DOUBLE
#define B MMT_TRAIN_SETTING_BOOL
#define F(field) offsetof(mmt_train_config, field)
const mmt_train_setting mmt_train_settings_table[] = {
    {"--model", "model", S, F(model), "DIR", "Hugging Face CLIP or GIT snapshot (required; a GIT captioner trains on captions)"},
    {"--data", "data", S, F(data), "FILE", "pairs: .jsonl, COCO captions .json, .csv or a class-per-folder directory (required)"},
    {"--image-root", "image_root", S, F(o.image_root), "DIR", "COCO: folder the file_name entries are relative to"},
    {"--method", "method", S, F(o.method), "M", "lora, ia3, prompt, visual-prompt, prefix, adapter, full or linear-probe (a GIT captioner: lora, ia3, prompt, prefix or full)"},
    {"--out", "out", S, F(out), "DIR", "run folder: adapter/, ckpt-STEP/, metrics.jsonl"},
    {"--resume", "resume", S, F(o.resume), "DIR", "continue the run in DIR from its newest intact checkpoint (or from DIR/ckpt-STEP); the settings, model and data must be the run's"},
    {"--overwrite", NULL, B, F(o.overwrite), NULL, "delete what a non-empty --out holds and start afresh (otherwise refused)"},
    {"--config", NULL, S, F(config), "FILE", "JSON object with any of these settings by key"},
    {"--steps", "steps", I, F(o.steps), "N", "optimizer steps (0: from --epochs)"},
    {"--epochs", "epochs", I, F(o.epochs), "N", "passes over the data when --steps is 0"},
    {"--batch-size", "batch_size", I, F(o.batch_size), "N", "pairs per micro-batch (the contrastive batch)"},
    {"--grad-accum", "grad_accum", I, F(o.grad_accum), "N", "micro-batches per optimizer step"},
    {"--lr", "lr", D, F(o.lr), "X", "peak learning rate (AdamW)"},
    {"--optim", "optim", S, F(o.optim), "O", "adamw, or adamw8bit: bitsandbytes' 8-bit AdamW states (~2 bytes per parameter instead of 8)"},
    {"--quantize", "quantize", S, F(o.quantize), "Q", "none, nf4 (QLoRA: the frozen base in 4-bit NF4) or int8: the base's linear weights kept quantized"},
    {"--lr-scales", "lr_scales", S, F(o.lr_scales), "LIST", "per-group rates: PATTERN=FACTOR,... (tensor names containing PATTERN)"},
    {"--weight-decay", "weight_decay", D, F(o.weight_decay), "X", "decoupled weight decay (not on biases, norms, embeddings)"},
    {"--schedule", "schedule", S, F(o.schedule), "S", "cosine, linear or constant (after linear warmup)"},
    {"--warmup-ratio", "warmup_ratio", D, F(o.warmup_ratio), "X", "warmup as a fraction of the steps"},
    {"--warmup-steps", "warmup_steps", I, F(o.warmup_steps), "N", "warmup steps (overrides the ratio when >= 0)"},
    {"--min-lr-rate", "min_lr_rate", D, F(o.min_lr_rate), "X", "cosine floor as a fraction of the peak"},
    {"--max-grad-norm", "max_grad_norm", D, F(o.max_grad_norm), "X", "global gradient-norm clipping (0: off)"},
    {"--seed", "seed", I, F(o.seed), "N", "data order, dropout and adapter initialisation"},
    {"--save-every", "save_every", I, F(o.save_every), "N", "checkpoint every N steps (and at the end; 0: only at the end)"},
    {"--keep-checkpoints", "keep_checkpoints", I, F(o.keep_checkpoints), "N", "newest checkpoints to keep (0: all)"},
    {"--lora-r", "lora_r", I, F(o.lora_r), "N", "LoRA rank"},
    {"--lora-alpha", "lora_alpha", D, F(o.lora_alpha), "X", "LoRA alpha (scaling alpha/r)"},
    {"--lora-dropout", "lora_dropout", D, F(o.lora_dropout), "X", "dropout on the LoRA input"},
    {"--rslora", "use_rslora", B, F(o.use_rslora), NULL, "rank-stabilised scaling alpha/sqrt(r)"},
    {"--dora", "use_dora", B, F(o.use_dora), NULL, "DoRA: LoRA plus a learned magnitude per output row"},
    {"--adapter-reduction", "adapter_reduction", I, F(o.adapter_reduction), "N", "--method adapter: bottleneck width hidden/N"},
    {"--adapter-placement", "adapter_placement", S, F(o.adapter_placement), "P", "--method adapter: after attn, mlp or both"},
    {"--adapter-act", "adapter_act", S, F(o.adapter_act), "A", "--method adapter: relu or gelu"},
    {"--targets", "target_modules", S, F(o.target_modules), "LIST", "modules by name or dotted suffix, comma-separated, or all-linear (default: q_proj,v_proj; ia3: k_proj,v_proj,fc2 as PEFT; GIT: query,value; ia3: key,value,output.dense)"},
    {"--targets-regex", "target_regex", S, F(o.target_regex), "RE", "modules whose full name matches RE (instead of --targets)"},
    {"--scope", "scope", S, F(o.scope), "S", "towers to adapt: both, text or vision"},
    {"--layers", "layers_to_transform", S, F(o.layers_to_transform), "LIST", "encoder layer indices to adapt, comma-separated (default all)"},
    {"--modules-to-save", "modules_to_save", S, F(o.modules_to_save), "LIST", "modules trained in full and saved with the adapter (PEFT's modules_to_save)"},
    {"--ia3-feedforward", "feedforward_modules", S, F(o.feedforward_modules), "LIST", "IA3 modules whose input is scaled (default: fc2 when it is a target)"},
    {"--num-virtual-tokens", "num_virtual_tokens", I, F(o.num_virtual_tokens), "N", "prompt, visual-prompt, prefix: learned tokens (per layer for prefix)"},
    {"--prompt-tokens", "prompt_tokens", I, F(o.prompt_tokens), "N", "also learn N CoOp text prompts (with lora, ia3, visual-prompt)"},
    {"--visual-prompt-tokens", "visual_prompt_tokens", I, F(o.visual_prompt_tokens), "N", "also learn N VPT tokens (with lora, ia3, prompt, prefix)"},
    {"--vpt-deep", "vpt_deep", B, F(o.vpt_deep), NULL, "visual prompts in every vision layer (VPT-deep)"},
    {"--prompt-init-text", "prompt_tuning_init_text", S, F(o.prompt_tuning_init_text), "TEXT", "initialise text prompts from this text's token embeddings"},
    {"--prefix-projection", "prefix_projection", B, F(o.prefix_projection), NULL, "prefix: train PEFT's MLP reparameterisation"},
    {"--prefix-hidden", "encoder_hidden_size", I, F(o.encoder_hidden_size), "N", "prefix projection width (0: the hidden size)"},
    {"--prefix-vision", "prefix_vision", B, F(o.prefix_vision), NULL, "prefix: the vision tower's layers too"},
    {"--checkpointing", "gradient_checkpointing", B, F(o.gradient_checkpointing), NULL, "recompute encoder blocks in backward (less memory)"},
    {"--recompute", "recompute", B, F(o.recompute), NULL, "keep neither attention probabilities nor a frozen MLP's pre-activation; recompute them in backward (less memory, same results)"},
    {"--learn-logit-scale", "learn_logit_scale", B, F(o.learn_logit_scale), NULL, "train CLIP's temperature too (clamped at 100)"},
    {"--temperature", "temperature", D, F(o.temperature), "X", "fixed softmax temperature instead of the model's (0: model's)"},
    {"--distill", "distill_weight", D, F(o.distill_weight), "X", "weight of the KL term to the frozen base model's logits (with --distill-from: to the teacher's)"},
    {"--distill-from", "distill_from", S, F(o.distill_from), "DIR", "a teacher CLIP snapshot distilled into --model, frozen, forward only (--distill: KL weight, --distill-cosine; docs/distillation.md)"},
    {"--teacher-adapter", "teacher_adapter", S, F(o.teacher_adapter), "DIR", "--distill-from: an adapter folder applied to the teacher"},
    {"--distill-temperature", "distill_temperature", D, F(o.distill_temperature), "T", "--distill-from: temperature of the KL term (which is scaled by T^2)"},
    {"--distill-cosine", "distill_cosine", D, F(o.distill_cosine), "X", "--distill-from: weight of the embeddings' cosine distance 1 - cos(student, teacher)"},
    {"--task-weight", "task_weight", D, F(o.task_weight), "X", "--distill-from: weight of the contrastive loss on the pairs"},
    {"--max-caption-tokens", "max_caption_tokens", I, F(o.max_caption_tokens), "N", "captioners: caption length with [CLS] and [SEP] (longer ones are cut)"},
    {"--label-smoothing", "label_smoothing", D, F(o.label_smoothing), "X", "captioners: label smoothing of the language-model loss"},
    {"--cache-mb", "cache_mb", I, F(o.cache_mb), "N", "keep decoded images when the set fits in N MiB"},
    {"--skip-bad", "skip_bad", B, F(o.skip_bad), NULL, "skip bad records of the data file (counted)"},
    {"--max-text-bytes", "max_text_bytes", I, F(o.max_text_bytes), "N", "a caption (text) over N bytes makes its record bad"},
    {"--max-file-bytes", "max_file_bytes", I, F(o.max_file_bytes), "N", "a data file over N bytes is refused"},
    {"--loader-workers", "loader_workers", I, F(o.loader_workers), "N", "threads decoding batches ahead (0: on the training thread)"},
    {"--prefetch", "prefetch", I, F(o.prefetch), "N", "micro-batches prepared ahead"},
    {"--augment-crop", "augment_crop", B, F(o.augment_crop), NULL, "random resized crop (scale 0.08-1, ratio 3/4-4/3)"},
    {"--augment-flip", "augment_flip", B, F(o.augment_flip), NULL, "random horizontal flip (p 0.5)"},
    {"--window", "dicom_window", S, F(o.window), "C,W", "DICOM images: render with this linear window (rescaled units, e.g. 40,400) instead of each file's own"},
    {"--augment-jitter", "augment_jitter", D, F(o.augment_jitter), "X", "colour jitter: brightness, contrast, saturation factors in [1-X, 1+X] (0: off)"},
    {"--sampling", "sampling", S, F(o.sampling), "S", "plain (the seeded order) or hard: each epoch, batches of near neighbours under the current model (contrastive; docs/curation.md)"},
    {"--hard-ratio", "hard_ratio", D, F(o.hard_ratio), "R", "--sampling hard: share of a batch that is a seed pair and its nearest neighbours, in (0, 1]"},
    {"--init-adapter", "init_adapter", S, F(o.init_adapter), "DIR", "continual learning: start from this adapter's weights (an earlier task's OUT/adapter; same method and settings)"},
    {"--ewc", "ewc_lambda", D, F(o.ewc_lambda), "LAMBDA", "Elastic Weight Consolidation: add (LAMBDA/2) sum F (w - w*)^2 to keep the earlier task's weights w* (0: off)"},
    {"--ewc-from", "ewc_from", S, F(o.ewc_from), "DIR", "--ewc: the folder with ewc_fisher.safetensors (default: --init-adapter)"},
    {"--save-fisher", "save_fisher", B, F(o.save_fisher), NULL, "at the end, estimate the Fisher on --data and write OUT/adapter/ewc_fisher.safetensors (summed with --ewc-from's)"},
    {"--replay", "replay", S, F(o.replay), "FILE", "pairs of earlier tasks mixed into every batch (experience replay)"},
    {"--replay-ratio", "replay_ratio", D, F(o.replay_ratio), "R", "--replay: round(R x batch size) of each batch come from it, in [0, 1)"},
    {"--distill-from-previous", "distill_from_previous", B, F(o.distill_from_previous), NULL, "--distill's teacher is the base with --init-adapter (the model before this task), not the bare base"},
    {"--zero", "zero", I, F(o.zero), "N", "under mpirun: 1 shards the optimizer state over the ranks (ZeRO-1; 0: every rank keeps it all)"},
    {"--overlap-comm", "overlap_comm", B, F(o.overlap_comm), NULL, "under mpirun: all-reduce the text tower's gradients while the vision tower runs backward (same numbers; pays where the network is slow and cores are spare)"},
    {"--gather-with-grad", "gather_with_grad", B, F(o.gather_with_grad), NULL, "under mpirun: the contrastive loss over every rank's batch (negatives from the global batch)"},
    {"--as-ranks", "as_ranks", I, F(o.as_ranks), "N", "one process that trains exactly as an N-rank mpirun job would (to reproduce or check one)"},
    {"--progress", "progress", S, F(progress), "P", "auto, bar or log"},
    {"--quiet", "quiet", B, F(quiet), NULL, "no progress output"},
};
const size_t mmt_train_settings_count = sizeof mmt_train_settings_table / sizeof mmt_train_settings_table[0];
#undef S
#undef I
#undef D
#undef B
#undef F

void mmt_train_options_default(mmt_train_options *o) {
    memset(o, 0, sizeof *o);
    o->method = "lora";
    o->epochs = 1;
    o->batch_size = 32;
    o->grad_accum = 1;
    o->lr = 1e-4;
    o->optim = "adamw";
    o->quantize = "none";
    o->weight_decay = 0.01;
    o->schedule = "cosine";
    o->warmup_ratio = 0.05;
    o->warmup_steps = -1;
    o->max_grad_norm = 1.0;
    o->seed = 42;
    o->distill_temperature = 1;
    o->task_weight = 1;
    o->keep_checkpoints = 2;
    o->lora_r = 8;
    o->lora_alpha = 16;
    o->adapter_reduction = 16;
    o->adapter_placement = "both";
    o->adapter_act = "relu";
    o->scope = "both";
    o->num_virtual_tokens = 8;
    o->cache_mb = 1024;
    o->sampling = "plain";
    o->hard_ratio = 0.5;
    o->max_text_bytes = (int64_t)MMT_PAIRS_DEFAULT_MAX_TEXT_BYTES;
    o->max_file_bytes = (int64_t)MMT_PAIRS_DEFAULT_MAX_FILE_BYTES;
    mmt_loader_options lo;
    mmt_loader_options_default(&lo);
    o->loader_workers = lo.workers;
    o->prefetch = lo.depth;
}

void mmt_train_config_default(mmt_train_config *c) {
    memset(c, 0, sizeof *c);
    mmt_train_options_default(&c->o);
    c->out = "runs/train";
    c->progress = "auto";
}

char **mmt_train_split_list(const char *list, char **copy, int64_t *n) {
    *copy = mmt_strdup(list);
    *n = 0;
    if (!*copy) return NULL;
    int64_t cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    char **items = mmt_calloc((size_t)cap, sizeof *items);
    if (!items) return NULL;
    char *rest = NULL; /* strtok_r: programs may train on several threads at once */
    for (char *tok = strtok_r(*copy, ",", &rest); tok; tok = strtok_r(NULL, ",", &rest)) {
        while (*tok == ' ') tok++;
        if (*tok) items[(*n)++] = tok;
    }
    return items;
}

mmt_status mmt_train_parse_layers(const char *list, int64_t cap, int64_t **layers, int64_t *n) {
    char *copy = NULL;
    *layers = NULL;
    *n = 0;
    char **items = mmt_train_split_list(list, &copy, n);
    int64_t *v = items ? mmt_calloc((size_t)(*n > 0 ? *n : 1), sizeof *v) : NULL;
    mmt_status s = v ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < *n; i++) {
        char *end;
        long long x = strtoll(items[i], &end, 10);
        if (*end || x < 0 || (cap >= 0 && i >= cap))
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--layers needs comma-separated layer indices, got '%s'", list);
        else
            v[i] = x;
    }
    mmt_free(items);
    mmt_free(copy);
    if (s != MMT_OK) {
        mmt_free(v);
        *n = 0;
        return s;
    }
    *layers = v;
    return MMT_OK;
}

static int is_method(const mmt_train_options *o, const char *name) { return strcmp(o->method, name) == 0; }

/* The prompt-token settings (any method but full and linear-probe). */
static mmt_status check_prompt_tokens(const mmt_train_options *o) {
    if (o->num_virtual_tokens < 1 || o->prompt_tokens < 0 || o->visual_prompt_tokens < 0 || o->encoder_hidden_size < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: prompt token counts must be positive");
    int is_prompt = is_method(o, "prompt"), is_visual = is_method(o, "visual-prompt"), is_prefix = is_method(o, "prefix");
    if (is_prefix && o->prompt_tokens > 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "train: --prompt-tokens cannot go with --method prefix (both are PEFT's prompt_embeddings)");
    int any = o->prompt_tokens > 0 || o->visual_prompt_tokens > 0 || is_prompt || is_visual || is_prefix;
    if (any && is_method(o, "full")) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: prompt tokens cannot go with --method full");
    return MMT_OK;
}

mmt_status mmt_train_config_bottleneck(const mmt_train_config *c, mmt_bottleneck_config *bc) {
    const mmt_train_options *o = &c->o;
    mmt_bottleneck_config_default(bc);
    snprintf(bc->base_model, sizeof bc->base_model, "%s", c->model ? c->model : "");
    if (o->adapter_reduction < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--adapter-reduction must be at least 1");
    bc->reduction_factor = o->adapter_reduction;
    if (!mmt_bottleneck_placement_parse(o->adapter_placement, &bc->placement))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--adapter-placement takes attn, mlp or both, not '%s'", o->adapter_placement);
    if (!mmt_bottleneck_act_parse(o->adapter_act, &bc->act))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--adapter-act takes relu or gelu, not '%s'", o->adapter_act);
    if (!mmt_peft_scope_parse(o->scope, &bc->towers))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--scope takes both, text or vision, not '%s'", o->scope);
    if (!o->layers_to_transform || !o->layers_to_transform[0]) return MMT_OK;
    int64_t *layers = NULL, n = 0;
    mmt_status s = mmt_train_parse_layers(o->layers_to_transform, MMT_BOTTLENECK_MAX_LAYERS, &layers, &n);
    if (s == MMT_OK) {
        memcpy(bc->layers, layers, (size_t)n * sizeof *layers);
        bc->n_layers = n;
    }
    mmt_free(layers);
    return s;
}

/* Where LoRA, IA3 and bottleneck adapters go (--scope, --layers) and the bottleneck's shape. */
static mmt_status check_placement(const mmt_train_config *c) {
    const mmt_train_options *o = &c->o;
    if (is_method(o, "adapter")) {
        mmt_bottleneck_config bc;
        return mmt_train_config_bottleneck(c, &bc);
    }
    if (!is_method(o, "lora") && !is_method(o, "ia3")) return MMT_OK;
    mmt_peft_scope scope;
    if (!mmt_peft_scope_parse(o->scope, &scope))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--scope takes both, text or vision, not '%s'", o->scope);
    if (!o->layers_to_transform || !o->layers_to_transform[0]) return MMT_OK;
    int64_t *layers = NULL, n = 0;
    mmt_status s = mmt_train_parse_layers(o->layers_to_transform, -1, &layers, &n);
    mmt_free(layers);
    return s;
}

/* The per-method defaults: IA3 as PEFT sets it up for CLIP-style models (keys, values and
 * the second MLP linear, which is feed-forward: its input is scaled). */
static void fill_method_defaults(mmt_train_options *o, int captioner) {
    if (captioner) { /* GIT's decoder is BERT's: PEFT's defaults for BERT */
        if (!o->target_modules) o->target_modules = is_method(o, "ia3") ? "key,value,output.dense" : "query,value";
        if (!o->feedforward_modules) o->feedforward_modules = strstr(o->target_modules, "output.dense") ? "output.dense" : "";
    }
    if (!o->target_modules) o->target_modules = is_method(o, "ia3") ? "k_proj,v_proj,fc2" : "q_proj,v_proj";
    if (!o->feedforward_modules) {
        const char *t = o->target_modules;
        int fc2 = !strcmp(t, "all-linear") || o->target_regex != NULL;
        for (const char *p = t; !fc2 && (p = strstr(p, "fc2")); p += 3)
            fc2 = (p == t || p[-1] == ',' || p[-1] == ' ' || p[-1] == '.') && (p[3] == '\0' || p[3] == ',');
        o->feedforward_modules = fc2 ? "fc2" : "";
    }
}

/* Continual learning (docs/continual.md): --init-adapter, --ewc, --replay, --save-fisher,
 * --distill-from-previous. The files are read later (train/continual.h). */
static mmt_status check_continual(const mmt_train_config *c, int captioner) {
    const mmt_train_options *o = &c->o;
    int probe = is_method(o, "linear-probe"), full = is_method(o, "full");
    int any = o->init_adapter || o->ewc_lambda != 0 || o->ewc_from || o->save_fisher || o->replay ||
              o->replay_ratio != 0 || o->distill_from_previous;
    if (any && probe)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --method linear-probe has no continual-learning settings "
                        "(--init-adapter, --ewc, --save-fisher, --replay, --distill-from-previous)");
    if (o->init_adapter && full)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --method full starts from --model; give the earlier run's "
                        "snapshot (OUT/adapter) as --model instead of --init-adapter");
    if (!(o->ewc_lambda >= 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--ewc takes a strength >= 0, not %g", o->ewc_lambda);
    if (o->ewc_lambda > 0 && !o->ewc_from && !o->init_adapter)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--ewc needs the earlier task's Fisher: --ewc-from DIR (or --init-adapter DIR)");
    if (o->ewc_from && o->ewc_lambda == 0 && !o->save_fisher)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--ewc-from goes with --ewc LAMBDA (or with --save-fisher, to add to its Fisher)");
    if (!(o->replay_ratio >= 0 && o->replay_ratio < 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--replay-ratio must be in [0, 1), got %g", o->replay_ratio);
    if (o->replay && !(o->replay_ratio > 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--replay needs --replay-ratio R > 0 (the share of each batch it gives)");
    if (!o->replay && o->replay_ratio > 0) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--replay-ratio goes with --replay FILE");
    if (o->replay) {
        int64_t k = (int64_t)llround(o->replay_ratio * (double)o->batch_size);
        if (k < 1 || k >= o->batch_size)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--replay-ratio %g x --batch-size %lld rounds to %lld replay pairs per "
                            "batch; it must leave at least one of each", o->replay_ratio, (long long)o->batch_size, (long long)k);
        if (o->sampling && strcmp(o->sampling, "plain") != 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --replay cannot go with --sampling %s", o->sampling);
    }
    if (o->distill_from_previous && (!o->init_adapter || !(o->distill_weight > 0)))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-from-previous needs --init-adapter DIR (the teacher) and --distill W > 0");
    if (o->distill_from_previous && o->distill_from)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-from-previous and --distill-from name two teachers; give one "
                        "(--distill-from BASE --teacher-adapter DIR is the same teacher as a second model)");
    if (o->distill_from_previous && captioner)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --distill is for the contrastive loss; a GIT captioner has none");
    if ((o->save_fisher || o->ewc_lambda > 0) && o->gather_with_grad)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --ewc and --save-fisher cannot go with --gather-with-grad (the "
                        "Fisher is estimated per micro-batch on each rank)");
    return MMT_OK;
}

/* Distillation from another model (--distill-from; docs/distillation.md). The teacher is
 * read later (train_job.c), where its sizes are checked against the student's. */
static mmt_status check_distill(const mmt_train_config *c, int captioner) {
    const mmt_train_options *o = &c->o;
    if (!(o->distill_weight >= 0)) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill takes a weight >= 0, not %g", o->distill_weight);
    if (!(o->distill_temperature > 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-temperature must be > 0, got %g", o->distill_temperature);
    if (!(o->distill_cosine >= 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-cosine takes a weight >= 0, not %g", o->distill_cosine);
    if (!(o->task_weight >= 0)) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--task-weight takes a weight >= 0, not %g", o->task_weight);
    if (!o->distill_from || !o->distill_from[0]) {
        if (o->teacher_adapter) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--teacher-adapter goes with --distill-from DIR");
        if (o->distill_cosine != 0 || o->distill_temperature != 1 || o->task_weight != 1)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-cosine, --distill-temperature and --task-weight go with "
                            "--distill-from DIR (the teacher)");
        return MMT_OK;
    }
    if (captioner)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --distill-from distils a CLIP's contrastive logits and embeddings; "
                        "%s is a GIT captioner", c->model);
    if (is_method(o, "linear-probe"))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --distill-from does not apply to --method linear-probe");
    if (!(o->distill_weight > 0) && !(o->distill_cosine > 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-from needs --distill W (the KL term to the teacher's logits) "
                        "and/or --distill-cosine W (its embeddings)");
    if (o->gather_with_grad)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --distill-from cannot go with --gather-with-grad");
    return MMT_OK;
}

mmt_status mmt_train_config_check(mmt_train_config *c) {
    mmt_train_options *o = &c->o;
    /* a program may leave the named choices NULL: the defaults */
    if (!o->method) o->method = "lora";
    if (!o->schedule) o->schedule = "cosine";
    if (!o->optim) o->optim = "adamw";
    if (!o->quantize) o->quantize = "none";
    if (!o->scope) o->scope = "both";
    if (!o->adapter_placement) o->adapter_placement = "both";
    if (!o->adapter_act) o->adapter_act = "relu";
    if (!c->progress) c->progress = "auto";
    if (!o->sampling) o->sampling = "plain";
    static const char *const methods[] = {"lora", "ia3", "adapter", "full", "linear-probe", "prompt", "visual-prompt", "prefix", NULL};
    int known = 0;
    for (const char *const *m = methods; *m && !known; m++) known = is_method(o, *m);
    if (!known)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "train: --method takes lora, ia3, adapter, full, linear-probe, prompt, visual-prompt or prefix, not '%s'",
                        o->method);
    int is_probe = is_method(o, "linear-probe");
    mmt_status s;
    if (!is_probe && (s = check_prompt_tokens(o)) != MMT_OK) return s;
    if (strcmp(o->optim, "adamw") != 0 && strcmp(o->optim, "adamw8bit") != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--optim takes adamw or adamw8bit, not '%s'", o->optim);
    if (strcmp(o->quantize, "none") != 0 && strcmp(o->quantize, "nf4") != 0 && strcmp(o->quantize, "int8") != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--quantize takes none, nf4 or int8, not '%s'", o->quantize);
    mmt_schedule_kind sk;
    if (mmt_schedule_kind_parse(o->schedule, &sk) != MMT_OK)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--schedule takes cosine, linear or constant, not '%s'", o->schedule);
    if (o->zero < 0 || o->zero > 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--zero takes 0 or 1 (ZeRO stage 1), not %lld", (long long)o->zero);
    if (o->as_ranks < 0 || o->as_ranks > 4096)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--as-ranks takes 0..4096, not %lld", (long long)o->as_ranks);
    if (o->steps < 0 || o->epochs < 0 || o->batch_size < 1 || o->grad_accum < 1 || o->seed < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: counts must be positive (steps, epochs, batch size, grad accumulation, seed)");
    if (o->cache_mb < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--cache-mb must be >= 0, not %lld", (long long)o->cache_mb);
    if (o->steps == 0 && o->epochs == 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --epochs 0 with --steps 0 trains nothing: give --epochs N or --steps N");
    if (o->epochs > 1000000 || o->steps > INT64_C(1000000000000))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --epochs (up to 1,000,000) or --steps (up to 10^12) is beyond any run");
    if (o->warmup_ratio < 0 || o->warmup_ratio > 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--warmup-ratio is a fraction of the steps: 0..1, not %g", o->warmup_ratio);
    if (o->max_grad_norm < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--max-grad-norm must be >= 0 (0: no clipping), not %g", o->max_grad_norm);
    if (o->temperature < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--temperature must be > 0 (0: the model's), not %g", o->temperature);
    if (o->save_every < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--save-every must be >= 0 (0: only at the end), got %lld", (long long)o->save_every);
    if (o->keep_checkpoints < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--keep-checkpoints must be >= 0 (0: keep all), got %lld",
                        (long long)o->keep_checkpoints);
    if (o->overwrite && o->resume)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --overwrite starts afresh; it cannot go with --resume");
    if (o->overwrite && c->out) { /* clearing --out must not delete what the run reads */
        const char *flags[] = {"--model", "--data", "--init-adapter", "--distill-from", "--teacher-adapter", "--ewc-from",
                               "--replay", "--image-root"};
        const char *inputs[] = {c->model, c->data, o->init_adapter, o->distill_from, o->teacher_adapter, o->ewc_from,
                                o->replay, o->image_root};
        for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
            if (inputs[i] && mmt_path_within(inputs[i], c->out))
                return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --overwrite would delete %s %s, which is inside --out %s: "
                                "choose another --out", flags[i], inputs[i], c->out);
    }
    if (o->max_text_bytes < 1 || o->max_file_bytes < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --max-text-bytes and --max-file-bytes must be at least 1");
    /* the CLI's parser refuses these already; a program's struct may hold anything */
    for (size_t i = 0; i < mmt_train_settings_count; i++) {
        const mmt_train_setting *t = &mmt_train_settings_table[i];
        if (t->type == MMT_TRAIN_SETTING_DOUBLE && !isfinite(*(const double *)((const char *)c + t->offset)))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s needs a number, got %g", t->flag,
                            *(const double *)((const char *)c + t->offset));
    }
    if (is_probe && o->resume)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --method linear-probe fits in one go; there is nothing to --resume");
    int captioner = 0;
    if (c->model) MMT_TRY(mmt_snapshot_is_git(c->model, &captioner));
    if (captioner && !is_method(o, "lora") && !is_method(o, "ia3") && !is_method(o, "prompt") && !is_method(o, "prefix") &&
        !is_method(o, "full"))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: %s is a GIT captioner: --method takes lora, ia3, prompt, prefix "
                        "or full for it, not '%s'", c->model, o->method);
    MMT_TRY(check_distill(c, captioner));
    if (captioner && (o->prompt_tokens > 0 || o->visual_prompt_tokens > 0 || o->prefix_vision))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --prompt-tokens, visual prompts and vision prefixes are not "
                        "implemented for GIT captioners (--method prompt is PEFT's prompt tuning)");
    if (strcmp(o->sampling, "plain") != 0 && strcmp(o->sampling, "hard") != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--sampling takes plain or hard, not '%s'", o->sampling);
    int hard = strcmp(o->sampling, "hard") == 0;
    if (hard && !(o->hard_ratio > 0 && o->hard_ratio <= 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--hard-ratio must be in (0, 1], got %g", o->hard_ratio);
    if (hard && captioner)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --sampling hard mines negatives for the contrastive loss; %s is "
                        "a GIT captioner, whose loss has none", c->model);
    if (hard && is_probe)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --sampling hard does not apply to --method linear-probe (it fits "
                        "on every embedding at once)");
    if (o->max_caption_tokens < 0 || o->max_caption_tokens == 1 || o->max_caption_tokens == 2)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--max-caption-tokens must be at least 3 ([CLS], a token, [SEP])");
    if (!(o->label_smoothing >= 0 && o->label_smoothing < 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--label-smoothing must be in [0, 1), got %g", o->label_smoothing);
    MMT_TRY(check_continual(c, captioner));
    fill_method_defaults(o, captioner);
    return check_placement(c);
}

void mmt_train_config_pairs_options(const mmt_train_config *c, mmt_pairs_options *po) {
    mmt_pairs_options_default(po);
    po->skip_bad = c->o.skip_bad;
    po->image_root = c->o.image_root;
    po->max_text_bytes = (size_t)c->o.max_text_bytes;
    po->max_file_bytes = (size_t)c->o.max_file_bytes;
}

/* Settings that do not change what a run computes: a resumed run may differ in these. The
 * model and data are compared by fingerprint, not by path. */
static int outside_identity(const char *key) {
    static const char *const keys[] = {"model", "data", "image_root", "out", "resume", "cache_mb", "skip_bad",
                                       "loader_workers", "prefetch", "progress", "quiet", "save_every", "keep_checkpoints",
                                       "max_text_bytes", "max_file_bytes", "zero", "as_ranks", "overlap_comm",
                                       /* distillation: the teacher by content, in "distill" (identity_json) */
                                       "distill_from", "teacher_adapter", "distill_temperature", "distill_cosine",
                                       "task_weight", NULL};
    for (const char *const *k = keys; *k; k++)
        if (!strcmp(*k, key)) return 1;
    return 0;
}

/* The continual-learning keys: the folders and files are identified by content
 * (train/continual.c adds their fingerprints), not by path; the rest only when set, so that
 * runs begun before the settings existed resume as they are. */
static int continual_key_out(const mmt_train_config *c, const char *key) {
    const mmt_train_options *o = &c->o;
    if (!strcmp(key, "init_adapter") || !strcmp(key, "ewc_from") || !strcmp(key, "replay")) return 1;
    if (!strcmp(key, "ewc_lambda")) return o->ewc_lambda == 0;
    if (!strcmp(key, "save_fisher")) return 1; /* written after training: changes no number of it */
    if (!strcmp(key, "replay_ratio")) return o->replay_ratio == 0;
    if (!strcmp(key, "distill_from_previous")) return !o->distill_from_previous;
    return 0;
}

/* The DICOM window is part of what a run computes when set; unset, it stays out, so that runs
 * begun before the setting existed resume as they are. */
static int unset_window_key(const mmt_train_config *c, const char *key) {
    return !strcmp(key, "dicom_window") && !c->o.window;
}

/* Plain sampling leaves its two keys out of the identity, so that runs begun before the
 * settings existed resume as they are; hard sampling is part of what a run computes. */
static int plain_sampling_key(const mmt_train_config *c, const char *key) {
    return (!strcmp(key, "sampling") || !strcmp(key, "hard_ratio")) && (!c->o.sampling || !strcmp(c->o.sampling, "plain"));
}

char *mmt_train_config_settings_json(const mmt_train_config *c, int identity_only) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{");
    int first = 1;
    for (size_t i = 0; i < mmt_train_settings_count; i++) {
        const mmt_train_setting *t = &mmt_train_settings_table[i];
        if (!t->key || (identity_only && (outside_identity(t->key) || plain_sampling_key(c, t->key) ||
                                        continual_key_out(c, t->key) || unset_window_key(c, t->key)))) continue;
        const char *p = (const char *)c + t->offset;
        mmt_strbuf_printf(&b, "%s\"%s\": ", first ? "" : ", ", t->key);
        first = 0;
        switch (t->type) {
        case MMT_TRAIN_SETTING_STRING: {
            const char *v = *(const char *const *)p;
            if (v) mmt_strbuf_json_string(&b, v, strlen(v));
            else mmt_strbuf_printf(&b, "null");
            break;
        }
        case MMT_TRAIN_SETTING_INT: mmt_strbuf_printf(&b, "%lld", (long long)*(const int64_t *)p); break;
        case MMT_TRAIN_SETTING_DOUBLE: mmt_strbuf_printf(&b, "%.17g", *(const double *)p); break;
        case MMT_TRAIN_SETTING_BOOL: mmt_strbuf_printf(&b, "%s", *(const int *)p ? "true" : "false"); break;
        }
    }
    mmt_strbuf_printf(&b, "}");
    if (b.failed) {
        mmt_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

mmt_status mmt_train_config_identity_json(const mmt_train_config *c, const mmt_pairs *pairs, char **out) {
    *out = NULL;
    char model_fp[17], data_fp[17];
    int64_t files = 0;
    mmt_status s = mmt_fingerprint_model(c->model, model_fp, &files);
    if (s == MMT_OK) s = mmt_fingerprint_pairs(pairs, data_fp);
    if (s != MMT_OK) return s;
    char *settings = mmt_train_config_settings_json(c, 1);
    if (!settings) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"model\": {\"fingerprint\": \"%s\", \"files\": %lld}, \"data\": {\"fingerprint\": \"%s\", "
                          "\"pairs\": %lld}, \"settings\": %s",
                      model_fp, (long long)files, data_fp, (long long)pairs->n, settings);
    mmt_free(settings);
    /* --distill-from: the teacher (and its adapter) by content, and the loss weights; absent
     * without one, so runs begun before these settings existed resume as they are */
    const mmt_train_options *o = &c->o;
    if (o->distill_from && o->distill_from[0]) {
        char teacher_fp[17], adapter_fp[17] = "none";
        int64_t n = 0;
        s = mmt_fingerprint_model(o->distill_from, teacher_fp, &n);
        if (s == MMT_OK && o->teacher_adapter) s = mmt_fingerprint_model(o->teacher_adapter, adapter_fp, &n);
        if (s != MMT_OK) {
            mmt_strbuf_free(&b);
            return s;
        }
        mmt_strbuf_printf(&b, ", \"distill\": {\"teacher\": \"%s\", \"teacher_adapter\": \"%s\", \"temperature\": %.17g, "
                              "\"cosine\": %.17g, \"task_weight\": %.17g}",
                          teacher_fp, adapter_fp, o->distill_temperature, o->distill_cosine, o->task_weight);
    }
    mmt_strbuf_printf(&b, "}");
    if (b.failed) {
        mmt_strbuf_free(&b);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    *out = b.data;
    return MMT_OK;
}
