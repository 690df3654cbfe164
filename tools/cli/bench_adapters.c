/*
 * bench_adapters.c — `mmtune bench adapters`: image embedding throughput with many adapters
 * over one base (issue 10's benchmark), through the public run-context API.
 *
 * On a random CLIP with openai/clip-vit-base-patch32's configuration (or --model), N LoRA
 * adapters (r 8 on q_proj and v_proj of both towers, PEFT's initialisation) are written to a
 * temporary folder and opened. One batch of B preprocessed images is embedded, the variants
 * interleaved in every round:
 *     merged   no adapter on any row: what a checkpoint with the adapter merged in costs
 *              (same shapes as the base, so the same work);
 *     single   one adapter on every row (unmerged LoRA);
 *     mixed    the N adapters spread over the rows, one call (one base product per layer);
 *     grouped  the same rows as N separate calls, one per adapter (what serving did before
 *              mixed batches).
 * Prints images/s (best round) and the ratios mixed/single and single/merged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/dir.h"
#include "core/file.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/adapter.h"
#include "peft/peft_config.h"
#include "train/clip_task.h"

static const char *HELP =
    "usage: mmtune bench adapters [--adapters N] [--batch B] [--rounds R] [--iters I] [--model DIR] [--json]\n"
    "\n"
    "Image embedding throughput with LoRA adapters (r 8, q/v) over one base, through the run-\n"
    "context API: merged (no adapter), single (one adapter on every row), mixed (N adapters\n"
    "spread over the rows in one call) and grouped (one call per adapter). Without --model a\n"
    "random CLIP with openai/clip-vit-base-patch32's configuration.\n"
    "  --adapters N   adapters in the mixed batch (default 8)\n"
    "  --batch B      images per batch (default 32)\n"
    "  --rounds R     interleaved rounds; the best is reported (default 3)\n"
    "  --iters I      timed calls per variant and round (default 2)\n"
    "  --json         one JSON object per variant instead of a table\n";

/* A LoRA adapter with PEFT's initialisation, saved in dir. */
static mmt_status write_adapter(mmt_clip *base, const char *dir, uint64_t seed) {
    mmt_peft_config pc;
    const char *qv[] = {"q_proj", "v_proj"};
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *view = NULL;
    mmt_adapter *ad = NULL;
    char *w = mmt_path_join(dir, "adapter_model.safetensors");
    mmt_status s = mmt_peft_config_default(&pc, MMT_PEFT_LORA);
    if (s != MMT_OK) {
        mmt_free(w);
        return s;
    }
    pc.r = 8;
    if (!w) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_peft_names_set_list(&pc.target_modules, qv, 2);
    if (s == MMT_OK) s = mmt_mkdirs(dir);
    if (s == MMT_OK) s = mmt_clip_train_create(base, &o, &view);
    if (s == MMT_OK) s = mmt_adapter_from_config(mmt_clip_train_iface(view), &pc, seed, 0, &ad);
    if (s == MMT_OK) s = mmt_peft_config_save(&pc, dir);
    if (s == MMT_OK) s = mmt_adapter_save_tensors(ad, w);
    mmt_adapter_free(ad);
    mmt_clip_train_free(view);
    mmt_peft_config_free(&pc);
    mmt_free(w);
    return s;
}

enum { MERGED, SINGLE, MIXED, GROUPED, N_VARIANTS };
static const char *const NAMES[N_VARIANTS] = {"merged", "single", "mixed", "grouped"};

int cmd_bench_adapters(int argc, char **argv) {
    long n_adapters = 8, batch = 32, rounds = 3, iters = 2;
    const char *model_dir = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("bench adapters: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) {
            model_dir = v;
            continue;
        }
        char *end;
        long x = strtol(v, &end, 10);
        if (*end || x < 1 || x > 4096) return cli_usage_error("bench adapters: %s needs a number from 1 to 4096", a);
        if (!strcmp(a, "--adapters")) n_adapters = x;
        else if (!strcmp(a, "--batch")) batch = x;
        else if (!strcmp(a, "--rounds")) rounds = x;
        else if (!strcmp(a, "--iters")) iters = x;
        else return cli_usage_error("bench adapters: unknown option '%s'", a);
    }
    if (n_adapters > batch) return cli_usage_error("bench adapters: --adapters must not exceed --batch");
    mmt_clip *base = NULL;
    mmt_status ls;
    if (model_dir) {
        ls = cli_clip_load(model_dir, &base);
    } else {
        mmt_clip_config defaults; /* the class defaults are exactly ViT-B/32 */
        mmt_clip_config_default(&defaults);
        ls = cli_clip_random(&defaults, 42, cli_load_quant(), &base); /* --int8 / --quantize-base too */
    }
    if (ls != MMT_OK) return cli_runtime_error();
    const mmt_clip_config *cfg = mmt_clip_config_of(base);
    int64_t S = cfg->vision.image_size, P = cfg->projection_dim;
    char root[] = "/tmp/mmtune_bench_adapters_XXXXXX";
    int rc = 0;
    mmt_clip_adapter **opened = mmt_calloc((size_t)n_adapters, sizeof *opened);
    mmt_clip_adapter **rows = mmt_calloc((size_t)batch, sizeof *rows);
    float *pixels = mmt_malloc((size_t)(batch * 3 * S * S) * sizeof(float));
    float *out = mmt_malloc((size_t)(batch * P) * sizeof(float));
    mmt_clip_run *run = NULL;
    if (!opened || !rows || !pixels || !out || !mkdtemp(root) || mmt_clip_run_create(base, &run) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    for (int64_t i = 0; i < batch * 3 * S * S; i++) pixels[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    for (long k = 0; k < n_adapters && rc == 0; k++) {
        char dir[128];
        snprintf(dir, sizeof dir, "%s/a%ld", root, k);
        if (write_adapter(base, dir, (uint64_t)k + 1) != MMT_OK || mmt_clip_adapter_open(base, dir, &opened[k]) != MMT_OK)
            rc = cli_runtime_error();
    }
    double best[N_VARIANTS] = {0};
    for (long round = 0; round < rounds && rc == 0; round++) {
        for (int v = 0; v < N_VARIANTS && rc == 0; v++) {
            for (long b = 0; b < batch; b++)
                rows[b] = v == MERGED ? NULL : v == SINGLE ? opened[0] : opened[b % n_adapters];
            /* one untimed call first (views, arenas), then the timed ones */
            for (long it = 0; it <= iters && rc == 0; it++) {
                double t0 = mmt_now_seconds();
                mmt_status s = MMT_OK;
                if (v == GROUPED) {
                    /* one call per adapter with its rows (b % N): a server without mixed batches */
                    for (long k = 0; k < n_adapters && s == MMT_OK; k++) {
                        long m = 0;
                        for (long b = k; b < batch; b += n_adapters) m++;
                        mmt_clip_adapter **same = mmt_malloc((size_t)m * sizeof *same);
                        if (!same) s = MMT_STATUS_OUT_OF_MEMORY;
                        for (long j = 0; same && j < m; j++) same[j] = opened[k];
                        if (same) s = mmt_clip_run_embed_pixels(run, pixels, same, m, out);
                        mmt_free(same);
                    }
                } else {
                    s = mmt_clip_run_embed_pixels(run, pixels, rows, batch, out);
                }
                double dt = mmt_now_seconds() - t0;
                if (s != MMT_OK) rc = cli_runtime_error();
                if (it > 0 && (double)batch / dt > best[v]) best[v] = (double)batch / dt;
            }
        }
    }
    if (rc == 0) {
        if (json) {
            for (int v = 0; v < N_VARIANTS; v++)
                printf("{\"variant\": \"%s\", \"adapters\": %ld, \"batch\": %ld, \"images_per_s\": %.3f}\n", NAMES[v],
                       v == MERGED ? 0 : v == SINGLE ? 1 : n_adapters, batch, best[v]);
        } else {
            printf("%-8s %9s %6s %10s   (%s, best of %ld rounds)\n", "variant", "adapters", "batch", "images/s",
                   model_dir ? model_dir : "random ViT-B/32", rounds);
            for (int v = 0; v < N_VARIANTS; v++)
                printf("%-8s %9ld %6ld %10.2f\n", NAMES[v], v == MERGED ? 0L : v == SINGLE ? 1L : n_adapters, batch, best[v]);
            printf("mixed / single %.3f, single (unmerged) / merged %.3f, mixed / grouped %.3f\n", best[MIXED] / best[SINGLE],
                   best[SINGLE] / best[MERGED], best[MIXED] / best[GROUPED]);
        }
    }
done:
    mmt_clip_run_free(run);
    for (long k = 0; opened && k < n_adapters; k++) mmt_clip_adapter_close(opened[k]);
    mmt_free(opened);
    mmt_free(rows);
    mmt_free(pixels);
    mmt_free(out);
    mmt_clip_free(base);
    if (root[strlen(root) - 1] != 'X') mmt_dir_remove_tree(root);
    return rc;
}
