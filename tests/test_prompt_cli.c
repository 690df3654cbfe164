/*
 * test_prompt_cli.c — `mmtune train --method prompt|visual-prompt|prefix` and LoRA + prompts
 * as a user runs them, on the tiny fixture CLIP and the fixture photos:
 *   - --help lists the prompt / prefix settings;
 *   - each run writes the adapter folder (adapter_config.json with PEFT's peft_type, the
 *     tensors of docs/peft_format.md with their shapes), eval --adapter reads it back;
 *   - resuming from the middle checkpoint ends with exactly the same adapter bytes as the
 *     uninterrupted run (text + deep visual prompts; prefixes with the projection MLP, set
 *     through the --config JSON keys);
 *   - LoRA + prompts keeps the prompt part in adapter/prompt/; merge refuses prompts.
 */
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/safetensors.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char tmp[256], data[320];

/* The shape of tensor name in a safetensors file, as "d0,d1" (empty when absent). */
static void shape_of(const char *path, const char *name, char *out, size_t cap) {
    out[0] = 0;
    mmt_safetensors *st = NULL;
    if (mmt_safetensors_open(path, &st) != MMT_OK) return;
    const mmt_st_tensor *t = mmt_safetensors_find(st, name);
    for (int d = 0; t && d < t->ndim; d++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%lld", d ? "," : "", (long long)t->shape[d]);
    mmt_safetensors_close(st);
}

static int same_file(const char *a, const char *b) {
    size_t la = 0, lb = 0;
    char *x = check_read_file(a, &la), *y = check_read_file(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x), free(y);
    return same;
}

static void setup(void) {
    snprintf(tmp, sizeof tmp, "%s/prompt_cli", MMT_BUILD_DIR);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", tmp, tmp);
    CHECK(system(cmd) == 0);
    snprintf(data, sizeof data, "%s/pairs.jsonl", tmp);
    cli_run_setup(tmp);
    cli_print_failures = 1; /* most runs here must succeed: show why one did not */
    FILE *f = fopen(data, "w");
    static const char *imgs[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg", "rocket_rgba.png"};
    static const char *texts[] = {"a cat", "an astronaut", "a man with a camera", "a cup of coffee", "a rocket"};
    for (int i = 0; f && i < 5; i++) fprintf(f, "{\"image_path\": \"%s/%s\", \"text\": \"%s\"}\n", IMAGES, imgs[i], texts[i]);
    if (f) fclose(f);
}

static void test_help_lists_prompt_settings(void) {
    CHECK(run("train --help") == 0);
    const char *want[] = {"--num-virtual-tokens", "--prompt-tokens", "--visual-prompt-tokens", "--vpt-deep",
                          "--prefix-projection", "--prefix-vision", "--prompt-init-text", "prefix_projection"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        CHECK_MSG(out_text && strstr(out_text, want[i]), "--help lacks %s", want[i]);
    CHECK(run("train --model %s --data %s --method prefix --prompt-tokens 2 --out %s/x", MODEL, data, tmp) == 2);
}

/* Runs to 4 steps, then resumes a copy of the step-2 checkpoint: same adapter bytes. */
static void train_and_resume(const char *name, const char *flags) {
    char a[512], b[512], pa[600], pb[600], cmd[1700];
    snprintf(a, sizeof a, "%s/%s_a", tmp, name);
    snprintf(b, sizeof b, "%s/%s_b", tmp, name);
    CHECK(run("train --model %s --data %s %s --steps 4 --batch-size 5 --save-every 2 --keep-checkpoints 0 --lr 1e-2 "
              "--out %s --quiet",
              MODEL, data, flags, a) == 0);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp -r %s/ckpt-2 %s/", b, a, b);
    CHECK(system(cmd) == 0);
    CHECK(run("train --model %s --data %s %s --steps 4 --batch-size 5 --save-every 2 --keep-checkpoints 0 --lr 1e-2 "
              "--out %s --resume %s --quiet",
              MODEL, data, flags, b, b) == 0);
    snprintf(pa, sizeof pa, "%s/adapter/adapter_model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/adapter/adapter_model.safetensors", b);
    CHECK_MSG(same_file(pa, pb), "%s: the resumed run's adapter differs", name);
    char ev[600];
    snprintf(ev, sizeof ev, "%s/adapter", a);
    CHECK(run("eval --model %s --data %s --adapter %s", MODEL, data, ev) == 0);
    CHECK(out_text && strstr(out_text, "i2t_recall_at_1"));
    /* embed reads the same folder: the prompts change the text embedding */
    CHECK(run("embed --model %s --text 'a cat' --adapter %s", MODEL, ev) == 0);
    char *with = out_text ? strdup(out_text) : NULL;
    CHECK(run("embed --model %s --text 'a cat'", MODEL) == 0);
    CHECK(with && out_text && strcmp(with, out_text) != 0);
    free(with);
}

static void test_prompt_method(void) {
    train_and_resume("prompt", "--method prompt --num-virtual-tokens 4 --visual-prompt-tokens 2 --vpt-deep "
                               "--prompt-init-text 'a photo of'");
    char p[600], shape[64];
    snprintf(p, sizeof p, "%s/prompt_a/adapter/adapter_config.json", tmp);
    char *cfg = check_read_file(p, NULL);
    CHECK(cfg && strstr(cfg, "\"PROMPT_TUNING\"") && strstr(cfg, "\"num_virtual_tokens\": 4") &&
          strstr(cfg, "\"prompt_tuning_init\": \"TEXT\"") && strstr(cfg, "\"token_dim\": 32"));
    free(cfg);
    snprintf(p, sizeof p, "%s/prompt_a/adapter/adapter_model.safetensors", tmp);
    shape_of(p, "prompt_embeddings", shape, sizeof shape);
    CHECK_MSG(!strcmp(shape, "4,32"), "prompt_embeddings %s", shape);
    shape_of(p, "mmtune.visual_prompt.shallow", shape, sizeof shape);
    CHECK_MSG(!strcmp(shape, "2,48"), "shallow %s", shape);
    shape_of(p, "mmtune.visual_prompt.deep.1", shape, sizeof shape);
    CHECK_MSG(!strcmp(shape, "2,48"), "deep.1 %s", shape);
}

static void test_visual_prompt_method(void) {
    CHECK(run("train --model %s --data %s --method visual-prompt --num-virtual-tokens 3 --steps 2 --batch-size 5 "
              "--out %s/vpt --quiet",
              MODEL, data, tmp) == 0);
    char p[600], shape[64];
    snprintf(p, sizeof p, "%s/vpt/adapter/adapter_model.safetensors", tmp);
    shape_of(p, "mmtune.visual_prompt.shallow", shape, sizeof shape);
    CHECK_MSG(!strcmp(shape, "3,48"), "shallow %s", shape);
    shape_of(p, "prompt_embeddings", shape, sizeof shape);
    CHECK(shape[0] == 0);
    snprintf(p, sizeof p, "%s/vpt/adapter", tmp);
    CHECK(run("eval --model %s --data %s --adapter %s", MODEL, data, p) == 0);
}

static void test_prefix_method_from_config(void) {
    char conf[512];
    snprintf(conf, sizeof conf, "%s/prefix.json", tmp);
    FILE *f = fopen(conf, "w");
    if (f) {
        fputs("{\"method\": \"prefix\", \"num_virtual_tokens\": 3, \"prefix_projection\": true, "
              "\"encoder_hidden_size\": 16, \"prefix_vision\": true}\n", f);
        fclose(f);
    }
    char flags[600];
    snprintf(flags, sizeof flags, "--config %s", conf);
    train_and_resume("prefix", flags);
    char p[600], shape[64];
    snprintf(p, sizeof p, "%s/prefix_a/adapter/adapter_config.json", tmp);
    char *cfg = check_read_file(p, NULL);
    CHECK(cfg && strstr(cfg, "\"PREFIX_TUNING\"") && strstr(cfg, "\"prefix_projection\": true") &&
          strstr(cfg, "\"encoder_hidden_size\": 16") && strstr(cfg, "\"num_layers\": 2"));
    free(cfg);
    snprintf(p, sizeof p, "%s/prefix_a/adapter/adapter_model.safetensors", tmp);
    shape_of(p, "prompt_embeddings", shape, sizeof shape);
    CHECK_MSG(!strcmp(shape, "3,128"), "prompt_embeddings %s", shape); /* 2 layers * 2 * 32 */
    shape_of(p, "mmtune.prefix.vision", shape, sizeof shape);
    CHECK_MSG(!strcmp(shape, "3,192"), "vision prefix %s", shape);
    shape_of(p, "mmtune.prefix_encoder.text.transform.2.weight", shape, sizeof shape);
    CHECK_MSG(!strcmp(shape, "128,16"), "encoder %s", shape);
}

static void test_lora_with_prompts(void) {
    CHECK(run("train --model %s --data %s --method lora --prompt-tokens 2 --visual-prompt-tokens 2 --steps 2 "
              "--batch-size 5 --out %s/lp --quiet",
              MODEL, data, tmp) == 0);
    char p[600];
    snprintf(p, sizeof p, "%s/lp/adapter/prompt/adapter_config.json", tmp);
    CHECK(exists("%s", p));
    snprintf(p, sizeof p, "%s/lp/adapter/adapter_config.json", tmp);
    char *cfg = check_read_file(p, NULL);
    CHECK(cfg && strstr(cfg, "\"LORA\""));
    free(cfg);
    snprintf(p, sizeof p, "%s/lp/adapter", tmp);
    CHECK(run("eval --model %s --data %s --adapter %s", MODEL, data, p) == 0);
    CHECK(run("merge --model %s --adapter %s --out %s/merged", MODEL, p, tmp) != 0);
    CHECK(err_text && strstr(err_text, "cannot be merged"));
}

int main(void) {
    setup();
    RUN(test_help_lists_prompt_settings);
    RUN(test_prompt_method);
    RUN(test_visual_prompt_method);
    RUN(test_prefix_method_from_config);
    RUN(test_lora_with_prompts);
    cli_run_cleanup();
    return check_summary();
}
