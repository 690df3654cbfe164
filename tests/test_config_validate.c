/*
 * test_config_validate.c — configurations that cannot make nonsense (issue 9).
 *
 * config.json, preprocessor_config.json and the pairing of config.json with the tokenizer
 * are checked once after reading (mmt_clip_config_validate, mmt_image_processor_validate,
 * mmt_clip_config_check_tokenizer). Each bad value must be refused with one line naming the
 * file, the field and the value, where before it loaded a model that computed NaN
 * (layer_norm_eps -1) or pooled another token than <|endoftext|> (eos_token_id outside the
 * vocabulary or not the tokenizer's). Good configurations, ViT-bigG's included, still load.
 *
 * Each model case is tests/fixtures/clip/tiny-a in a temporary folder: weights, tokenizer and
 * preprocessor files linked, one file rewritten with a single textual edit. The last case
 * runs the real binary (MMT_BINARY): `mmtune embed` must exit non-zero with one stderr line.
 * No numeric tolerances: every check is on a status and a message.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/json.h"
#include "data/preprocess.h"
#include "data/tokenizer.h"
#include "models/clip.h"
#include "models/clip_config.h"

#define TINY MMT_FIXTURE_DIR "/clip/tiny-a"

static char dir[256];

static void path_in(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", dir, name); }

static void write_file(const char *name, const char *text) {
    char path[512];
    path_in(path, sizeof path, name);
    unlink(path);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* tiny-a's `name`, with the first occurrence of `find` replaced by `replace`, into dir. */
static void write_edited(const char *name, const char *find, const char *replace) {
    char src[512];
    snprintf(src, sizeof src, "%s/%s", TINY, name);
    char *text = check_read_file(src, NULL);
    char *at = text ? strstr(text, find) : NULL;
    CHECK_MSG(at != NULL, "%s does not contain %s", name, find);
    if (!at) {
        free(text);
        return;
    }
    size_t head = (size_t)(at - text), n = strlen(text) + strlen(replace) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)head, text, replace, at + strlen(find));
    write_file(name, out);
    free(out);
    free(text);
}

/* The temporary copy of tiny-a: links to its files, and config/preprocessor copies. */
static void model_setup(void) {
    snprintf(dir, sizeof dir, "%s/mmt_test_config_validate_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    mkdir(dir, 0755);
    static const char *linked[] = {"model.safetensors", "vocab.json", "merges.txt"};
    for (int i = 0; i < 3; i++) {
        char src[512], dst[512];
        snprintf(src, sizeof src, "%s/%s", TINY, linked[i]);
        path_in(dst, sizeof dst, linked[i]);
        unlink(dst);
        CHECK(symlink(src, dst) == 0);
    }
    write_edited("config.json", "{", "{");
    write_edited("preprocessor_config.json", "{", "{");
}

static void model_cleanup(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* Loading dir must fail with `status` and a message containing the file name and needle. */
static void check_load_fails(mmt_status status, const char *file, const char *needle) {
    mmt_clip *m = (mmt_clip *)1;
    mmt_status s = mmt_clip_load(dir, &m);
    const char *msg = mmt_last_error();
    CHECK_MSG(s == status && strstr(msg, needle) && strstr(msg, file) && !strchr(msg, '\n'),
              "want %s with \"%s: ...%s\", got %s: \"%s\"", mmt_status_name(status), file, needle,
              mmt_status_name(s), msg);
    CHECK(m == NULL);
    if (s == MMT_OK) mmt_clip_free(m);
}

/* One edit of config.json must make the load fail with needle. */
static void check_config_edit(const char *find, const char *replace, mmt_status status, const char *needle) {
    write_edited("config.json", find, replace);
    check_load_fails(status, "config.json: ", needle);
}

/* A config.json of its own (no weights needed) through mmt_clip_config_load. */
static mmt_status load_config_text(const char *json, mmt_clip_config *cfg) {
    char path[512];
    write_file("config.json", json);
    path_in(path, sizeof path, "config.json");
    return mmt_clip_config_load(path, cfg);
}

/* ---- config.json through mmt_clip_load ------------------------------------------------ */

#define TEXT_EPS "\"layer_norm_eps\": 1e-05"
#define VISION_EPS "\"layer_norm_eps\": 1e-05,\n    \"model_type\": \"clip_vision_model\""

static void test_layer_norm_eps(void) {
    model_setup();
    check_config_edit(TEXT_EPS, "\"layer_norm_eps\": -1", MMT_STATUS_BAD_FORMAT,
                      "config.json: text_config.layer_norm_eps: must be > 0 and finite, got -1");
    check_config_edit(VISION_EPS, "\"layer_norm_eps\": 0,\n    \"model_type\": \"clip_vision_model\"",
                      MMT_STATUS_BAD_FORMAT, "vision_config.layer_norm_eps: must be > 0 and finite, got 0");
    check_config_edit(TEXT_EPS, "\"layer_norm_eps\": 1e999", MMT_STATUS_BAD_FORMAT,
                      "text_config.layer_norm_eps: must be > 0 and finite, got inf");
    /* positive as a double but 0 as the float32 the kernels use */
    check_config_edit(TEXT_EPS, "\"layer_norm_eps\": 1e-50", MMT_STATUS_BAD_FORMAT,
                      "text_config.layer_norm_eps: must be a positive float32");
    /* the edit back to the fixture's value loads */
    write_edited("config.json", "{", "{");
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(dir, &m));
    mmt_clip_free(m);
    model_cleanup();
}

static void test_token_ids(void) {
    model_setup();
    /* the fixture's vocabulary is 0..1513; 1514 used to pool position 0 (the BOS token) */
    check_config_edit("\"eos_token_id\": 1513", "\"eos_token_id\": 1514", MMT_STATUS_BAD_FORMAT,
                      "text_config.eos_token_id: 1514 is outside the vocabulary [0, 1514)");
    check_config_edit("\"eos_token_id\": 1513", "\"eos_token_id\": -7", MMT_STATUS_BAD_FORMAT,
                      "text_config.eos_token_id: -7 is outside the vocabulary [0, 1514)");
    check_config_edit("\"bos_token_id\": 1512", "\"bos_token_id\": 99999", MMT_STATUS_BAD_FORMAT,
                      "text_config.bos_token_id: 99999 is outside the vocabulary [0, 1514)");
    /* inside the table, but not the <|endoftext|> that every tokenized text ends with */
    check_config_edit("\"eos_token_id\": 1513", "\"eos_token_id\": 5", MMT_STATUS_BAD_FORMAT,
                      "text_config.eos_token_id: 5 is \"&\" in ");
    CHECK(strstr(mmt_last_error(), "vocab.json, not <|endoftext|> (1513)") != NULL);
    model_cleanup();
}

static void test_activation(void) {
    model_setup();
    check_config_edit("\"hidden_act\": \"quick_gelu\"", "\"hidden_act\": \"foo\"", MMT_STATUS_UNSUPPORTED,
                      "text_config.hidden_act: \"foo\" is not supported (mmtune implements quick_gelu, gelu)");
    model_cleanup();
}

static void test_sizes(void) {
    model_setup();
    check_config_edit("\"num_attention_heads\": 3", "\"num_attention_heads\": 5", MMT_STATUS_BAD_FORMAT,
                      "vision_config.hidden_size: 48 is not divisible by num_attention_heads 5");
    check_config_edit("\"num_attention_heads\": 4", "\"num_attention_heads\": 0", MMT_STATUS_BAD_FORMAT,
                      "text_config.num_attention_heads: 0 is out of range [1, 65536]");
    check_config_edit("\"patch_size\": 8", "\"patch_size\": 5", MMT_STATUS_BAD_FORMAT,
                      "vision_config.image_size: 32 is not a multiple of patch_size 5");
    check_config_edit("\"patch_size\": 8", "\"patch_size\": 64", MMT_STATUS_BAD_FORMAT,
                      "vision_config.patch_size: 64 is out of range [1, 32]");
    check_config_edit("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 0", MMT_STATUS_BAD_FORMAT,
                      "text_config.num_hidden_layers: 0 is out of range [1, 1024]");
    check_config_edit("\"intermediate_size\": 64", "\"intermediate_size\": -64", MMT_STATUS_BAD_FORMAT,
                      "text_config.intermediate_size: -64 is out of range [1, 262144]");
    check_config_edit("\"max_position_embeddings\": 77", "\"max_position_embeddings\": 0", MMT_STATUS_BAD_FORMAT,
                      "text_config.max_position_embeddings: 0 is out of range [1, 65536]");
    check_config_edit("\"vocab_size\": 1514", "\"vocab_size\": 100000000", MMT_STATUS_BAD_FORMAT,
                      "text_config.vocab_size: 100000000 is out of range [1, 16777216]");
    check_config_edit("\"num_channels\": 3", "\"num_channels\": 0", MMT_STATUS_BAD_FORMAT,
                      "vision_config.num_channels: 0 is out of range [1, 64]");
    check_config_edit("\"logit_scale_init_value\": 2.6592", "\"logit_scale_init_value\": 1000",
                      MMT_STATUS_BAD_FORMAT, "logit_scale_init_value: must be finite and at most 88");
    model_cleanup();
}

/* ---- config.json alone ----------------------------------------------------------------- */

static void test_config_alone(void) {
    model_setup();
    mmt_clip_config cfg;
    /* each field within its bound, the product not: 2^45 parameters */
    CHECK_FAILS(load_config_text("{\"text_config\": {\"hidden_size\": 65536, \"num_attention_heads\": 64, "
                                 "\"intermediate_size\": 262144, \"num_hidden_layers\": 1024}}", &cfg),
                MMT_STATUS_BAD_FORMAT, "text_config: the text tower would hold");
    CHECK_FAILS(load_config_text("{\"vision_config\": {\"hidden_size\": 16777216}}", &cfg), MMT_STATUS_BAD_FORMAT,
                "config.json: vision_config.hidden_size: 16777216 is out of range [1, 65536]");
    /* a lone tower's keys are at the top level, and so is the field in the message */
    CHECK_FAILS(load_config_text("{\"model_type\": \"clip_text_model\", \"layer_norm_eps\": -1}", &cfg),
                MMT_STATUS_BAD_FORMAT, "config.json: layer_norm_eps: must be > 0 and finite, got -1");
    /* validation looks at the result of the overrides, not at each block on its own:
     * text_config alone (30 / 8 heads) would be refused, text_config_dict repairs it */
    CHECK_OK(load_config_text("{\"text_config\": {\"hidden_size\": 30}, \"text_config_dict\": {\"hidden_size\": 32}}",
                              &cfg));
    CHECK(cfg.text.hidden_size == 32);
    CHECK_FAILS(load_config_text("{\"text_config\": {\"hidden_size\": 32}, \"text_config_dict\": {\"hidden_size\": 30}}",
                                 &cfg),
                MMT_STATUS_BAD_FORMAT, "text_config.hidden_size: 30 is not divisible by num_attention_heads 8");
    /* laion/CLIP-ViT-bigG-14-laion2B-39B-b160k, the largest common CLIP: well inside */
    CHECK_OK(load_config_text(
        "{\"model_type\": \"clip\", \"projection_dim\": 1280,"
        " \"text_config\": {\"hidden_act\": \"gelu\", \"hidden_size\": 1280, \"intermediate_size\": 5120,"
        " \"num_attention_heads\": 20, \"num_hidden_layers\": 32, \"vocab_size\": 49408, \"bos_token_id\": 0,"
        " \"eos_token_id\": 2, \"pad_token_id\": 1, \"max_position_embeddings\": 77, \"layer_norm_eps\": 1e-05},"
        " \"vision_config\": {\"hidden_act\": \"gelu\", \"hidden_size\": 1664, \"intermediate_size\": 8192,"
        " \"num_attention_heads\": 16, \"num_hidden_layers\": 48, \"image_size\": 224, \"patch_size\": 14,"
        " \"layer_norm_eps\": 1e-05}}",
        &cfg));
    /* the class defaults (ViT-B/32) are valid */
    mmt_clip_config_default(&cfg);
    CHECK_OK(mmt_clip_config_validate(&cfg, "defaults"));
    model_cleanup();
}

/* ---- config.json against the tokenizer ------------------------------------------------- */

static void test_tokenizer_agreement(void) {
    mmt_tokenizer *tok = NULL;
    CHECK_OK(mmt_tokenizer_load(TINY "/vocab.json", TINY "/merges.txt", &tok));
    if (!tok) return;
    mmt_clip_config cfg;
    mmt_clip_config_default(&cfg);
    cfg.text.vocab_size = 1514;
    cfg.text.eos_token_id = 1513;
    CHECK_OK(mmt_clip_config_check_tokenizer(&cfg, "config.json", tok, "vocab.json"));
    cfg.text.eos_token_id = 2; /* legacy: argmax(ids), and <|endoftext|> is the largest id */
    CHECK_OK(mmt_clip_config_check_tokenizer(&cfg, "config.json", tok, "vocab.json"));
    /* an embedding table larger than the vocabulary is fine, an id missing from it is not */
    cfg.text.vocab_size = 1600;
    cfg.text.eos_token_id = 1550;
    CHECK_FAILS(mmt_clip_config_check_tokenizer(&cfg, "config.json", tok, "vocab.json"), MMT_STATUS_BAD_FORMAT,
                "config.json: text_config.eos_token_id: 1550 is not an id in vocab.json");
    /* the tokenizer makes ids the embedding table does not have */
    cfg.text.vocab_size = 1000;
    cfg.text.eos_token_id = 999;
    CHECK_FAILS(mmt_clip_config_check_tokenizer(&cfg, "config.json", tok, "vocab.json"), MMT_STATUS_BAD_FORMAT,
                "config.json: text_config.vocab_size: 1000 is smaller than the ids of vocab.json (up to 1513)");
    mmt_tokenizer_free(tok);
}

/* ---- preprocessor_config.json ---------------------------------------------------------- */

static void test_preprocessor(void) {
    model_setup();
    write_edited("preprocessor_config.json", "\"image_std\": [\n    0.26862954", "\"image_std\": [\n    -0.26862954");
    check_load_fails(MMT_STATUS_BAD_FORMAT, "preprocessor_config.json: ",
                     "image_std[0]: must be > 0 and finite, got -0.26863");
    write_edited("preprocessor_config.json", "\"rescale_factor\": 0.00392156862745098", "\"rescale_factor\": 0");
    check_load_fails(MMT_STATUS_BAD_FORMAT, "preprocessor_config.json: ", "rescale_factor: must be > 0 and finite, got 0");
    write_edited("preprocessor_config.json", "\"image_mean\": [\n    0.48145466", "\"image_mean\": [\n    1e39");
    check_load_fails(MMT_STATUS_BAD_FORMAT, "preprocessor_config.json: ", "image_mean[0]: must be finite, got inf");
    write_edited("preprocessor_config.json", "{", "{");

    /* steps that are off are not checked (HF does not use them either) */
    mmt_image_processor p;
    char path[512];
    path_in(path, sizeof path, "preprocessor_config.json");
    write_file("preprocessor_config.json", "{\"do_rescale\": false, \"rescale_factor\": -1}");
    CHECK_OK(mmt_image_processor_load(path, &p));
    write_file("preprocessor_config.json", "{\"crop_size\": {\"height\": 100000, \"width\": 100000}}");
    CHECK_FAILS(mmt_image_processor_load(path, &p), MMT_STATUS_BAD_FORMAT,
                "preprocessor_config.json: crop_size: 100000 x 100000 is more than");
    write_file("preprocessor_config.json", "{\"size\": {\"height\": 20000, \"width\": 20000}}");
    CHECK_FAILS(mmt_image_processor_load(path, &p), MMT_STATUS_BAD_FORMAT,
                "preprocessor_config.json: size: 20000 x 20000 is more than");
    model_cleanup();
}

/* ---- the CLI --------------------------------------------------------------------------- */

static void test_cli_embed(void) {
    model_setup();
    cli_run_setup(dir);
    write_edited("config.json", TEXT_EPS, "\"layer_norm_eps\": -1");
    int rc = run("embed --model %s --text 'a cat'", dir);
    CHECK_MSG(rc != 0, "exit %d; stdout: %s", rc, out_text);
    CHECK_MSG(count_lines(err_text) == 1 && strncmp(err_text, "mmtune: ", 8) == 0, "stderr: [%s]", err_text);
    CHECK_MSG(err_text && strstr(err_text, "config.json: text_config.layer_norm_eps: must be > 0 and finite, got -1"),
              "stderr: %s", err_text);
    CHECK_MSG(out_text && out_text[0] == '\0', "stdout: %s", out_text);
    cli_run_cleanup();
    model_cleanup();
}

int main(void) {
    RUN(test_layer_norm_eps);
    RUN(test_token_ids);
    RUN(test_activation);
    RUN(test_sizes);
    RUN(test_config_alone);
    RUN(test_tokenizer_agreement);
    RUN(test_preprocessor);
    RUN(test_cli_embed);
    return check_summary();
}
