/*
 * test_clip_init.c — `mmtune init` (src/models/clip_init.h): a fresh CLIP snapshot.
 *
 * Reference: tests/fixtures/init/ from tools/fixtures/make_init_fixtures.py — for the
 * architecture ARCH below, the config.json transformers' CLIPConfig.save_pretrained writes
 * (less transformers_version), CLIPModel's state_dict names and shapes, and the std of each
 * tensor transformers' own _init_weights drew. Checks: config.json byte-identical; exactly
 * those tensors and shapes, all F32; each drawn tensor's std within 10% of transformers'
 * (independent N(0, std) draws of >= 4096 values: sampling noise is a few %); constants
 * (LayerNorm 1/0, biases 0, logit_scale) exact. Also: same seed, same bytes; another seed,
 * other weights; mmtune loads the result; one-line errors and exit codes for bad settings.
 * tools/check_hf_load.py checks a snapshot against transformers' forward pass.
 */
#include <math.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/alloc.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "models/clip.h"
#include "models/clip_init.h"

#define TOK MMT_FIXTURE_DIR "/bpe/vocab"
/* keep in step with ARCH in tools/fixtures/make_init_fixtures.py */
#define ARCH                                                                                      \
    "--vision-width 64 --vision-layers 3 --vision-heads 2 --patch 4 --image-size 32 "            \
    "--text-width 96 --text-layers 2 --text-heads 3 --projection-dim 48 --context 24 --act gelu"

static char tmp[256];

static void test_matches_transformers(void) {
    CHECK(run("init --out %s/a --tokenizer %s " ARCH " --seed 11", tmp, TOK) == 0);
    char path[400];
    snprintf(path, sizeof path, "%s/a/config.json", tmp);
    size_t n_ours = 0, n_ref = 0;
    char *ours = check_read_file(path, &n_ours);
    char *ref = check_read_file(fixture("init/config.json"), &n_ref);
    CHECK_MSG(ours && ref && n_ours == n_ref && !memcmp(ours, ref, n_ref), "config.json differs from transformers'");
    free(ours);
    free(ref);

    snprintf(path, sizeof path, "%s/a/model.safetensors", tmp);
    mmt_safetensors *st = NULL;
    mmt_json_doc *names = NULL, *stds = NULL;
    CHECK_OK(mmt_safetensors_open(path, &st));
    CHECK_OK(mmt_json_parse_file(fixture("init/tensors.json"), &names));
    CHECK_OK(mmt_json_parse_file(fixture("init/std.json"), &stds));
    if (!st || !names || !stds) goto done;
    const mmt_json *list = mmt_json_root(names), *std_map = mmt_json_root(stds);
    CHECK_MSG((int64_t)list->len == st->n_tensors, "%lld tensors, transformers has %zu", (long long)st->n_tensors,
              list->len);
    int n_std = 0;
    for (size_t i = 0; i < list->len; i++) {
        const char *name = list->items[i].items[0].string;
        const mmt_json *shape = &list->items[i].items[1];
        const mmt_st_tensor *t = mmt_safetensors_find(st, name);
        CHECK_MSG(t != NULL, "missing tensor %s", name);
        if (!t) continue;
        int same = t->dtype == MMT_DTYPE_F32 && t->ndim == (int)shape->len;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == shape->items[d].integer;
        CHECK_MSG(same, "%s: wrong dtype or shape", name);
        if (!same) continue;
        float *w = malloc((size_t)t->numel * sizeof *w);
        CHECK_OK(mmt_st_tensor_to_f32(t, w));
        double sum = 0, sq = 0;
        for (int64_t k = 0; k < t->numel; k++) sum += w[k], sq += (double)w[k] * w[k];
        double mean = sum / (double)t->numel, sd = sqrt(sq / (double)t->numel - mean * mean);
        const mmt_json *want = mmt_json_get(std_map, name);
        if (want) {
            n_std++;
            CHECK_MSG(fabs(sd / want->number - 1) < 0.10, "%s: std %.5f, transformers %.5f", name, sd, want->number);
        } else {
            /* small tensors: the constants are exact; the rest are small draws (class and
             * position embeddings), checked only to be non-degenerate */
            double constant;
            mmt_clip_config cfg;
            char cfg_path[400];
            snprintf(cfg_path, sizeof cfg_path, "%s/a/config.json", tmp);
            CHECK_OK(mmt_clip_config_load(cfg_path, &cfg));
            double s = mmt_clip_init_std(&cfg, 1.0, 0.02, name, &constant);
            if (s == -1) {
                int all = 1;
                for (int64_t k = 0; k < t->numel; k++) all &= w[k] == (float)constant;
                CHECK_MSG(all, "%s: not all %g", name, constant);
            } else {
                CHECK_MSG(s > 0 && sd > 0.5 * s && sd < 2 * s, "%s: std %.5f, want about %.5f", name, sd, s);
            }
        }
        free(w);
    }
    CHECK(n_std == (int)std_map->len);
done:
    mmt_safetensors_close(st);
    mmt_json_free(names);
    mmt_json_free(stds);
}

static void test_deterministic_and_loadable(void) {
    CHECK(run("init --out %s/b --tokenizer %s " ARCH " --seed 11", tmp, TOK) == 0);
    CHECK(run("init --out %s/c --tokenizer %s " ARCH " --seed 12", tmp, TOK) == 0);
    char pa[400], pb[400], pc[400];
    snprintf(pa, sizeof pa, "%s/a/model.safetensors", tmp);
    snprintf(pb, sizeof pb, "%s/b/model.safetensors", tmp);
    snprintf(pc, sizeof pc, "%s/c/model.safetensors", tmp);
    size_t na = 0, nb = 0, nc = 0;
    char *a = check_read_file(pa, &na), *b = check_read_file(pb, &nb), *c = check_read_file(pc, &nc);
    CHECK(a && b && c && na == nb && na == nc);
    CHECK_MSG(a && b && !memcmp(a, b, na), "same seed, different bytes");
    CHECK_MSG(a && c && memcmp(a, c, na) != 0, "different seeds, same bytes");
    free(a);
    free(b);
    free(c);

    char dir[300];
    snprintf(dir, sizeof dir, "%s/a", tmp);
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(dir, &m));
    if (m) {
        const mmt_clip_config *cfg = mmt_clip_config_of(m);
        CHECK(cfg->vision.image_size == 32 && cfg->vision.patch_size == 4 && cfg->text.max_positions == 24);
        CHECK(cfg->text.vocab_size == 700 && cfg->projection_dim == 48 && cfg->text.act == MMT_ACT_GELU);
    }
    mmt_clip_free(m);
    /* the snapshot embeds: the CLI reads its tokenizer and preprocessor files */
    CHECK(run("embed --model %s/a --text \"a red circle\" --image %s/clip/images/chelsea.jpg", tmp, MMT_FIXTURE_DIR) == 0);
    CHECK(out_text && strstr(out_text, "\"type\":\"text\"") && strstr(out_text, "\"type\":\"image\""));
}

static void test_errors(void) {
    CHECK(run("init --out %s/e --tokenizer %s --vision-heads 3", tmp, TOK) == 1);
    CHECK(err_text && strstr(err_text, "not divisible"));
    CHECK(run("init --out %s/e --tokenizer %s --image-size 60 --patch 8", tmp, TOK) == 1);
    CHECK(err_text && strstr(err_text, "multiple"));
    CHECK(run("init --out %s/e --tokenizer %s/nowhere", tmp, tmp) == 1);
    CHECK(err_text && strstr(err_text, "nowhere"));
    CHECK(run("init --out %s/e --tokenizer %s --text-layers 0", tmp, TOK) == 2);
    CHECK(run("init --out %s/e --tokenizer %s --seed -1", tmp, TOK) == 2);
    CHECK(run("init --out %s/e --tokenizer %s --act relu", tmp, TOK) == 2);
    CHECK(run("init --out %s/e --frobnicate 1", tmp) == 2);
    CHECK(run("init --tokenizer %s", TOK) == 2);
    CHECK(err_text && strstr(err_text, "--out"));
    CHECK(run("init --help") == 0 && out_text && strstr(out_text, "usage: mmtune init"));
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/init_test_XXXXXX", MMT_BUILD_DIR);
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    RUN(test_matches_transformers);
    RUN(test_deterministic_and_loadable);
    RUN(test_errors);
    cli_run_cleanup();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
