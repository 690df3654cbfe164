/*
 * test_cli.c — the real binary on good and bad input: each failure must be exactly one
 * line on stderr ("mmtune: ..."), a non-zero exit code, and nothing on stdout; successes
 * print well-formed JSON lines. Numbers themselves are checked in test_clip.
 */
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/json.h"
#include "core/safetensors.h"

static char tmp[256];

/* A failure: exit code `code`, one stderr line containing needle, empty stdout. */
#define CHECK_CLI_FAILS(code, needle, ...)                                                 \
    do {                                                                                   \
        int rc_ = run(__VA_ARGS__);                                                        \
        CHECK_MSG(rc_ == (code), "exit %d, want %d; stderr: %s", rc_, (code), err_text);   \
        CHECK_MSG(count_lines(err_text) == 1 && strncmp(err_text, "mmtune: ", 8) == 0,     \
                  "stderr is not one 'mmtune: ' line: [%s]", err_text);                    \
        CHECK_MSG(err_text && strstr(err_text, (needle)), "stderr lacks \"%s\": %s",       \
                  (needle), err_text);                                                     \
        CHECK_MSG(out_text && out_text[0] == '\0', "stdout not empty: %s", out_text);      \
    } while (0)

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static void test_embed_prints_json_lines(void) {
    int rc = run("embed --model %s --image %s/chelsea.jpg --text 'a cat' --text 'a dog'", MODEL, IMAGES);
    CHECK_MSG(rc == 0, "stderr: %s", err_text);
    CHECK(count_lines(out_text) == 3);
    char *line = out_text, *save = NULL;
    const char *types[] = {"image", "text", "text"};
    for (int i = 0; i < 3 && line; i++) {
        char *l = strtok_r(i ? NULL : line, "\n", &save);
        mmt_json_doc *doc = NULL;
        CHECK_OK(mmt_json_parse(l, strlen(l), "stdout", &doc));
        if (!doc) continue;
        const mmt_json *r = mmt_json_root(doc);
        CHECK(strcmp(mmt_json_get(r, "type")->string, types[i]) == 0);
        const mmt_json *e = mmt_json_get(r, "embedding");
        CHECK(e && e->len == 24);
        double ss = 0;
        for (size_t k = 0; e && k < e->len; k++) ss += e->items[k].number * e->items[k].number;
        CHECK_NEAR(ss, 1.0, 1e-5);
        mmt_json_free(doc);
    }
}

/* --no-prepack (the weights packed per call instead of once at load) prints the same
 * embeddings, to the last digit. */
static void test_no_prepack_same_output(void) {
    const char *cmd = "embed --model %s --image %s/chelsea.jpg --image %s/chelsea.jpg --text 'a cat'%s";
    CHECK(run(cmd, MODEL, IMAGES, IMAGES, "") == 0);
    char *packed = out_text ? strdup(out_text) : NULL;
    CHECK(run(cmd, MODEL, IMAGES, IMAGES, " --no-prepack") == 0);
    CHECK(packed && out_text && count_lines(packed) == 3 && strcmp(packed, out_text) == 0);
    free(packed);
}

static void test_classify_probabilities(void) {
    int rc = run("classify --model %s --image %s/chelsea.jpg --image %s/astronaut.png --labels 'cat, dog,car'",
                 MODEL, IMAGES, IMAGES);
    CHECK_MSG(rc == 0, "stderr: %s", err_text);
    CHECK(count_lines(out_text) == 2);
    char *save = NULL;
    for (char *l = strtok_r(out_text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        mmt_json_doc *doc = NULL;
        CHECK_OK(mmt_json_parse(l, strlen(l), "stdout", &doc));
        if (!doc) continue;
        const mmt_json *probs = mmt_json_get(mmt_json_root(doc), "probs");
        CHECK(probs && probs->len == 3);
        double sum = 0;
        for (size_t k = 0; probs && k < probs->len; k++) sum += probs->items[k].number;
        CHECK_NEAR(sum, 1.0, 1e-5);
        CHECK(mmt_json_get(probs, "dog") != NULL);
        mmt_json_free(doc);
    }
}

static void test_inspect(void) {
    int rc = run("inspect --model %s --tensors", MODEL);
    CHECK(rc == 0);
    CHECK(out_text && strstr(out_text, "parameters:") && strstr(out_text, "vision_model.pre_layrnorm.weight"));
    CHECK(out_text && strstr(out_text, "act quick_gelu"));
}

static void test_help_and_usage_errors(void) {
    CHECK(run("--help") == 0 && strstr(out_text, "commands:"));
    CHECK(run("embed --help") == 0 && strstr(out_text, "--truncate"));
    CHECK_CLI_FAILS(2, "unknown command 'frobnicate'", "frobnicate");
    CHECK_CLI_FAILS(2, "unknown option '--bogus'", "embed --model %s --bogus", MODEL);
    CHECK_CLI_FAILS(2, "--model is required", "embed --text hi");
    CHECK_CLI_FAILS(2, "--labels", "classify --model %s --image x.jpg --labels ',,'", MODEL);
    CHECK_CLI_FAILS(2, "--image needs a path", "embed --model %s --image", MODEL);
    /* a template without {} would give every label the same prompt */
    CHECK_CLI_FAILS(2, "--template needs a string with {} where the label goes",
                    "classify --model %s --image x.jpg --labels a,b --template 'a photo'", MODEL);
    /* serve's last word: an option without its value, an unknown option, a stray argument */
    CHECK_CLI_FAILS(2, "serve: --port needs a value", "serve --model %s --port", MODEL);
    CHECK_CLI_FAILS(2, "serve: unknown option '--bogus'", "serve --model %s --bogus", MODEL);
    CHECK_CLI_FAILS(2, "serve: unexpected argument 'extra'", "serve --model %s extra", MODEL);
}

static void test_bad_inputs(void) {
    CHECK_CLI_FAILS(1, "text 1 is empty", "embed --model %s --text ''", MODEL);
    char longtext[1200] = "";
    for (int i = 0; i < 90; i++) strcat(longtext, "word ");
    CHECK_CLI_FAILS(1, "more than the model's 77", "embed --model %s --text '%s'", MODEL, longtext);
    CHECK(run("embed --model %s --text '%s' --truncate", MODEL, longtext) == 0);
    CHECK_CLI_FAILS(1, "/nonexistent/model", "embed --model /nonexistent/model --text hi");
    CHECK_CLI_FAILS(1, "missing.jpg", "embed --model %s --image %s/missing.jpg", MODEL, tmp);
    char path[512];
    snprintf(path, sizeof path, "%s/notanimage.jpg", tmp);
    FILE *f = fopen(path, "w");
    fputs("this is not an image\n", f);
    fclose(f);
    CHECK_CLI_FAILS(1, "notanimage.jpg", "embed --model %s --image %s", MODEL, path);

    /* A truncated checkpoint. */
    char dir[512], cmd[2048];
    snprintf(dir, sizeof dir, "%s/truncated", tmp);
    mkdir(dir, 0755);
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/vocab.json %s/merges.txt %s/ && head -c 20000 %s/model.safetensors > %s/model.safetensors",
             MODEL, MODEL, MODEL, dir, MODEL, dir);
    CHECK(system(cmd) == 0);
    CHECK_CLI_FAILS(1, "truncated file", "embed --model %s --text hi", dir);
    /* An oversized header length. */
    snprintf(cmd, sizeof cmd, "printf '\\377\\377\\377\\377\\377\\377\\377\\177{}' > %s/model.safetensors", dir);
    CHECK(system(cmd) == 0);
    CHECK_CLI_FAILS(1, "exceeds the 100000000-byte limit", "inspect --model %s", dir);
    /* A config with a wrong type. */
    snprintf(cmd, sizeof cmd, "cp %s/model.safetensors %s/ && echo '{\"projection_dim\": \"24\"}' > %s/config.json", MODEL, dir, dir);
    CHECK(system(cmd) == 0);
    CHECK_CLI_FAILS(1, "config.json: projection_dim: expected an integer, got a string", "inspect --model %s", dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Writes 4 bytes (a float's bits) over element 0 of tensor name in the safetensors file path. */
static int poke_tensor(const char *path, const char *name, uint32_t bits) {
    mmt_safetensors *st = NULL;
    if (mmt_safetensors_open(path, &st) != MMT_OK) return 0;
    const mmt_st_tensor *t = mmt_safetensors_find(st, name);
    long at = t ? (long)((const char *)t->data - (const char *)st->map.data) : -1;
    mmt_safetensors_close(st);
    FILE *f = at >= 0 ? fopen(path, "r+b") : NULL;
    int ok = f && fseek(f, at, SEEK_SET) == 0 && fwrite(&bits, 4, 1, f) == 1;
    if (f) fclose(f);
    return ok;
}

/* Weights or results that are not numbers: a NaN in a checkpoint or an adapter is refused when
 * loaded (not carried through a softmax into finite, wrong answers), an adapter whose scale
 * overflows is refused when its output would print "nan" (and merge writes nothing), and
 * adapters PEFT saved against a base it changed (PiSSA) are refused. */
static void test_non_finite_and_foreign(void) {
    const uint32_t nan_bits = 0x7fc00000u;
    CHECK(sh("rm -rf %s/nanmodel && cp -r %s %s/nanmodel", tmp, MODEL, tmp) == 0);
    char path[600];
    snprintf(path, sizeof path, "%s/nanmodel/model.safetensors", tmp);
    CHECK(poke_tensor(path, "vision_model.encoder.layers.0.self_attn.q_proj.weight", nan_bits));
    CHECK_CLI_FAILS(1, "vision_model.encoder.layers.0.self_attn.q_proj.weight\": element 0 is NaN",
                    "embed --model %s/nanmodel --image %s/clip/images/chelsea.jpg", tmp, MMT_FIXTURE_DIR);
    const char *lora = MMT_FIXTURE_DIR "/train/lora_qv";
    CHECK(sh("rm -rf %s/nanlora && cp -r %s %s/nanlora", tmp, lora, tmp) == 0);
    snprintf(path, sizeof path, "%s/nanlora/adapter_model.safetensors", tmp);
    CHECK(poke_tensor(path, "base_model.model.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", nan_bits));
    CHECK_CLI_FAILS(1, "element 0 is NaN", "embed --model %s --adapter %s/nanlora --text hi", MODEL, tmp);
    CHECK(sh("rm -rf %s/hugealpha && cp -r %s %s/hugealpha && sed -i 's/\"lora_alpha\": 8/\"lora_alpha\": 1e308/' "
             "%s/hugealpha/adapter_config.json", tmp, lora, tmp, tmp) == 0);
    CHECK_CLI_FAILS(1, "the embedding of text 1 is not finite", "embed --model %s --adapter %s/hugealpha --text hi", MODEL, tmp);
    CHECK_CLI_FAILS(1, "merging the adapter", "merge --model %s --adapter %s/hugealpha --out %s/merged_nan", MODEL, tmp, tmp);
    CHECK(!exists("%s/merged_nan", tmp));
    CHECK(sh("rm -rf %s/pissa && cp -r %s %s/pissa && sed -i 's/\"init_lora_weights\": false/\"init_lora_weights\": \"pissa\"/' "
             "%s/pissa/adapter_config.json && grep -q pissa %s/pissa/adapter_config.json", tmp, lora, tmp, tmp, tmp) == 0);
    CHECK_CLI_FAILS(1, "init_lora_weights \"pissa\": this adapter was saved without conversion",
                    "embed --model %s --adapter %s/pissa --text hi", MODEL, tmp);
    /* merge into a quantized snapshot or a captioner: said as such */
    CHECK(run("quantize --model %s --to int8 --out %s/q8", MODEL, tmp) == 0);
    CHECK_CLI_FAILS(1, "is a quantized snapshot", "merge --model %s/q8 --adapter %s --out %s/q8m", tmp, lora, tmp);
    CHECK_CLI_FAILS(1, "merge takes a CLIP snapshot", "merge --model %s/git/tiny-cap --adapter %s --out %s/gm", MMT_FIXTURE_DIR,
                    lora, tmp);
    /* a FIFO named as an image: refused, not waited on for ever */
    CHECK(sh("rm -f %s/fifo.png && mkfifo %s/fifo.png", tmp, tmp) == 0);
    CHECK_CLI_FAILS(1, "fifo.png: not a regular file", "embed --model %s --image %s/fifo.png", MODEL, tmp);
    /* the same label twice would be the same JSON key twice */
    CHECK_CLI_FAILS(2, "distinct, non-empty names", "classify --model %s --image %s/clip/images/chelsea.jpg --labels a,b,a",
                    MODEL, MMT_FIXTURE_DIR);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_test_cli_%d", (int)getpid());
    mkdir(tmp, 0755);
    cli_run_setup(tmp);
    RUN(test_embed_prints_json_lines);
    RUN(test_no_prepack_same_output);
    RUN(test_classify_probabilities);
    RUN(test_inspect);
    RUN(test_help_and_usage_errors);
    RUN(test_bad_inputs);
    RUN(test_non_finite_and_foreign);
    cli_run_cleanup();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", tmp);
    return check_summary();
}
