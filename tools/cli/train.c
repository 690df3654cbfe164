/*
 * train.c — `mmtune train` and `mmtune merge` (eval is eval.c).
 *
 * train's settings are one table (train/train_config.h): each has a flag, a key in the
 * --config JSON file and a default, and --help is printed from the table, so the three cannot
 * drift apart. Values are applied in order: defaults, then the config file, then flags. The
 * resolved settings are recorded in each checkpoint's trainer_state.json. The run itself is
 * train/train_job.h, the code path mmt_clip_train_adapter (mmtune.h) takes too; what is left
 * here is parsing, printing and exit codes.
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
#include "models/git_config.h"
#include "core/alloc.h"
#include "models/clip_train.h"
#include "core/json.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "data/datasets.h"
#include "data/pairs.h"
#include "models/clip.h"
#include "models/git.h"
#include "core/weights.h"
#include "dist/comm.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/merge.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"
#include "train/train_config.h"
#include "train/train_job.h"
#include "train/trainer.h"

/* ---- train: --help, flags and the config file over the settings table ------------------ */

static void format_value(const mmt_train_config *c, const mmt_train_setting *o, char *buf, size_t cap) {
    const char *p = (const char *)c + o->offset;
    switch (o->type) {
    case MMT_TRAIN_SETTING_STRING: snprintf(buf, cap, "%s", *(const char *const *)p ? *(const char *const *)p : ""); break;
    case MMT_TRAIN_SETTING_INT: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)p); break;
    case MMT_TRAIN_SETTING_DOUBLE: snprintf(buf, cap, "%g", *(const double *)p); break;
    case MMT_TRAIN_SETTING_BOOL: snprintf(buf, cap, "%s", *(const int *)p ? "on" : "off"); break;
    }
}

static void print_train_help(void) {
    mmt_train_config d;
    mmt_train_config_default(&d);
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
    for (size_t i = 0; i < mmt_train_settings_count; i++) {
        const mmt_train_setting *o = &mmt_train_settings_table[i];
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
static int set_from_text(mmt_train_config *c, const mmt_train_setting *o, const char *v, const char *origin) {
    char *p = (char *)c + o->offset, *end;
    errno = 0;
    switch (o->type) {
    case MMT_TRAIN_SETTING_STRING: *(const char **)p = v; return 0;
    case MMT_TRAIN_SETTING_INT: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) return cli_usage_error("%s: %s needs an integer, got '%s'", origin, o->flag, v);
        *(int64_t *)p = x;
        return 0;
    }
    case MMT_TRAIN_SETTING_DOUBLE: {
        double x = strtod(v, &end);
        /* decimal only: strtod also reads hex ("0x10" is 16) and "inf" */
        if (!*v || *end || errno || !isfinite(x) || strpbrk(v, "xXpP"))
            return cli_usage_error("%s: %s needs a number, got '%s'", origin, o->flag, v);
        *(double *)p = x;
        return 0;
    }
    case MMT_TRAIN_SETTING_BOOL: *(int *)p = 1; return 0;
    }
    return 0;
}

/* Applies a JSON config file: every key must be known and of the right type. */
static int apply_config(mmt_train_config *c, const char *path, mmt_json_doc **doc_out) {
    mmt_json_doc *doc = NULL;
    if (mmt_json_parse_file(path, &doc) != MMT_OK) return cli_runtime_error();
    *doc_out = doc;
    const mmt_json *root = mmt_json_root(doc);
    if (root->type != MMT_JSON_OBJECT) return fprintf(stderr, "mmtune: error: %s: expected a JSON object\n", path), 1;
    for (size_t k = 0; k < root->len; k++) {
        const char *key = root->keys[k];
        const mmt_train_setting *o = NULL;
        for (size_t i = 0; i < mmt_train_settings_count && !o; i++) {
            const mmt_train_setting *t = &mmt_train_settings_table[i];
            if (t->key && strcmp(t->key, key) == 0) o = t;
        }
        if (!o) return fprintf(stderr, "mmtune: error: %s: unknown setting \"%s\" (see mmtune train --help)\n", path, key), 1;
        char *p = (char *)c + o->offset;
        mmt_status s = MMT_OK;
        const char *sv;
        int64_t iv;
        double dv;
        int bv;
        switch (o->type) {
        case MMT_TRAIN_SETTING_STRING:
            if ((s = mmt_json_get_string(root, key, NULL, &sv, path, "")) == MMT_OK && sv) *(const char **)p = sv;
            break;
        case MMT_TRAIN_SETTING_INT:
            if ((s = mmt_json_get_int(root, key, *(int64_t *)p, &iv, path, "")) == MMT_OK) *(int64_t *)p = iv;
            break;
        case MMT_TRAIN_SETTING_DOUBLE:
            if ((s = mmt_json_get_double(root, key, *(double *)p, &dv, path, "")) == MMT_OK) *(double *)p = dv;
            break;
        case MMT_TRAIN_SETTING_BOOL:
            if ((s = mmt_json_get_bool(root, key, *(int *)p, &bv, path, "")) == MMT_OK) *(int *)p = bv;
            break;
        }
        if (s != MMT_OK) return cli_runtime_error();
    }
    return 0;
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

/* The result line on stdout: what the run did, its cost and where the adapter is. */
static void print_result(const mmt_train_config *c, const mmt_train_job *job, const mmt_train_job_result *r) {
    struct rusage ru;
    double peak_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0; /* Linux: KiB */
    int is_probe = !strcmp(c->o.method, "linear-probe");
    /* s_per_step: a probe's over every fit of the sweep too */
    int64_t per = is_probe ? r->probe_iterations : r->train.steps_run;
    printf("{\"steps\": %lld, \"final_loss\": ", (long long)r->train.steps_done);
    print_json_number(r->train.final_loss); /* null when this run computed none (a finished run resumed) */
    printf(", \"seconds\": %.2f, \"s_per_step\": %.4f, \"trainable_params\": %lld, "
           "\"total_params\": %lld, \"peak_rss_mb\": %.1f, \"adapter\": \"%s/adapter\"",
           r->train.seconds, per > 0 ? r->train.seconds / (double)per : 0,
           (long long)mmt_train_job_trainable_params(job), (long long)mmt_train_job_total_params(job), peak_mb, c->out);
    if (is_probe) {
        printf(", \"C\": %.6g, \"heldout_accuracy\": ", r->probe_C);
        print_json_number(r->probe_heldout_accuracy);
    }
    fputs("}\n", stdout);
}

/* Flags over the defaults and the --config file; 0 or an exit code. */
static int parse_train_args(int argc, char **argv, mmt_train_config *c, mmt_json_doc **doc) {
    /* pass 1: --help and --config; pass 2: every flag over the config */
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_train_help();
            return -1;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return cli_usage_error("--config needs a file");
            c->config = argv[i + 1];
        }
    }
    int rc = 0;
    if (c->config && (rc = apply_config(c, c->config, doc)) != 0) return rc;
    for (int i = 0; i < argc && rc == 0; i++) {
        const mmt_train_setting *o = NULL;
        for (size_t k = 0; k < mmt_train_settings_count && !o; k++)
            if (!strcmp(argv[i], mmt_train_settings_table[k].flag)) o = &mmt_train_settings_table[k];
        if (!o) return cli_usage_error("train: unknown option '%s'", argv[i]);
        if (o->type == MMT_TRAIN_SETTING_BOOL) rc = set_from_text(c, o, "", "command line");
        else if (i + 1 >= argc) rc = cli_usage_error("%s needs a value", o->flag);
        else rc = set_from_text(c, o, argv[++i], "command line");
    }
    if (rc == 0 && !c->model) rc = cli_usage_error("train: --model is required");
    if (rc == 0 && !c->data) rc = cli_usage_error("train: --data is required");
    if (rc == 0 && mmt_train_config_check(c) != MMT_OK) rc = cli_usage_error("%s", mmt_last_error());
    if (rc == 0 && strcmp(c->progress, "auto") && strcmp(c->progress, "bar") && strcmp(c->progress, "log"))
        rc = cli_usage_error("--progress takes auto, bar or log");
    return rc;
}

int cmd_train(int argc, char **argv) {
    mmt_train_config c;
    mmt_train_config_default(&c);
    mmt_json_doc *doc = NULL; /* the --config file: c points into it */
    int rc = parse_train_args(argc, argv, &c, &doc);
    if (rc != 0) {
        mmt_json_free(doc);
        return rc < 0 ? 0 : rc;
    }
    mmt_comm *world = NULL;
    if (mmt_comm_world(&world) != MMT_OK) {
        mmt_json_free(doc);
        return cli_runtime_error();
    }
    if (mmt_comm_rank(world) != 0) c.quiet = 1; /* rank 0 reports for the job */
    if (!c.quiet) mmt_log_set_level(MMT_LOG_INFO);
    mmt_pairs_options po;
    mmt_train_config_pairs_options(&c, &po);
    mmt_clip *model = NULL;
    mmt_git *git = NULL;
    mmt_pairs *pairs = NULL;
    mmt_train_job *job = NULL;
    mmt_train_job_result res;
    progress_view pv = {!strcmp(c.progress, "bar") || (!strcmp(c.progress, "auto") && isatty(2))};
    int captioner = 0;
    /* --quantize applied while the weights are read (the job's own pass then finds them done),
     * so the float32 model is never whole in memory */
    mmt_quant_type quant = MMT_QUANT_NONE;
    if (strcmp(c.o.quantize, "none") != 0 && mmt_quant_type_parse(c.o.quantize, &quant) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if (mmt_snapshot_is_git(c.model, &captioner) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if (captioner) { /* a captioner trains on the captions */
        if (cli_git_load(c.model, &git) != MMT_OK || cli_pairs_load(c.data, &po, &pairs) != MMT_OK ||
            mmt_train_job_create_caption(git, pairs, &c, &job) != MMT_OK) {
            rc = cli_runtime_error();
            goto done;
        }
    } else if (cli_clip_load_as(c.model, quant, &model) != MMT_OK || cli_pairs_load(c.data, &po, &pairs) != MMT_OK ||
               mmt_train_job_create(model, pairs, &c, &job) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if (!c.quiet) {
        int64_t n = mmt_train_job_trainable_params(job), total = mmt_train_job_total_params(job);
        fprintf(stderr, "mmtune: %s on %lld pairs: %lld trainable parameters (%.3f%% of %lld)\n", c.o.method,
                (long long)pairs->n, (long long)n, total > 0 ? 100.0 * (double)n / (double)total : 0, (long long)total);
    }
    if (mmt_train_job_run(job, c.quiet ? NULL : show_progress, &pv, &res) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if (mmt_comm_rank(world) == 0) print_result(&c, job, &res);
done:
    mmt_train_job_free(job);
    mmt_pairs_free(pairs);
    mmt_clip_free(model);
    mmt_git_free(git);
    mmt_json_free(doc);
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
    int is_git = 0; /* a GIT captioner: its adapters are applied at run time, not merged */
    mmt_status ls = rc == 0 ? mmt_snapshot_is_git(model_dir, &is_git) : MMT_OK;
    if (ls == MMT_OK && is_git)
        ls = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s is a GIT captioner: merge takes a CLIP snapshot (a captioner's adapter is "
                      "applied as it is: caption --adapter, serve --caption-adapter)", model_dir);
    if (rc == 0 && ls == MMT_OK) ls = cli_clip_load(model_dir, &model);
    if (rc == 0 && (ls != MMT_OK || mmt_clip_train_create(model, &o, &view) != MMT_OK ||
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
