/* test_peft_config.c — adapter_config.json reading and writing.
 *
 * References: the files PEFT 0.21's save_pretrained wrote (tests/fixtures/peft/configs/, made
 * by tools/fixtures/make_peft_fixtures.py) must read with the values PEFT put there; PEFT's
 * dataclass defaults for absent keys; round trips config -> JSON -> config are exact (and
 * the second JSON text is byte-identical); wrong types give a one-line error naming the file
 * and key; unknown keys are ignored; PEFT's __post_init__ refusals are refused.
 *
 * The test also writes a set of configs with the module names mmtune selects for them into
 * <build>/peft_written/; `python3 tools/fixtures/make_peft_fixtures.py --check-written
 * <build>/peft_written` then confirms PEFT loads each without a warning and wraps exactly
 * those modules (run by hand where PEFT is installed; docs/peft_format.md).
 */
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "models/clip_config.h"
#include "models/clip_modules.h"
#include "peft/peft_config.h"
#include "peft/target.h"

/* mmt_peft_config_fill_from_model with the CLIP config's dimensions. */
static mmt_status fill_from_clip(mmt_peft_config *cfg, const mmt_clip_config *clip) {
    mmt_model_dims dims;
    mmt_clip_model_dims(clip, &dims);
    return mmt_peft_config_fill_from_model(cfg, &dims);
}

static mmt_status from_text(const char *json, mmt_peft_config *cfg) {
    mmt_json_doc *doc = NULL;
    memset(cfg, 0, sizeof *cfg);
    MMT_TRY(mmt_json_parse(json, strlen(json), "adapter_config.json", &doc));
    mmt_status s = mmt_peft_config_from_json(mmt_json_root(doc), "adapter_config.json", cfg);
    mmt_json_free(doc);
    return s;
}

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static int names_eq(const mmt_peft_names *a, const mmt_peft_names *b) {
    if (a->kind != b->kind) return 0;
    if (a->kind == MMT_PEFT_NAMES_REGEX) return strcmp(a->regex, b->regex) == 0;
    if (a->n != b->n) return 0;
    for (int64_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i], b->items[i]) != 0) return 0;
    return 1;
}

static int patterns_eq(const mmt_peft_pattern *a, int64_t na, const mmt_peft_pattern *b, int64_t nb) {
    if (na != nb) return 0;
    for (int64_t i = 0; i < na; i++)
        if (strcmp(a[i].key, b[i].key) != 0 || a[i].value != b[i].value) return 0;
    return 1;
}

/* Field-by-field equality; names the first field that differs. */
static const char *config_diff(const mmt_peft_config *a, const mmt_peft_config *b) {
#define SAME(cond, field) \
    if (!(cond)) return field
    SAME(a->peft_type == b->peft_type, "peft_type");
    SAME(str_eq(a->task_type, b->task_type), "task_type");
    SAME(str_eq(a->base_model_name_or_path, b->base_model_name_or_path), "base_model_name_or_path");
    SAME(str_eq(a->revision, b->revision), "revision");
    SAME(a->inference_mode == b->inference_mode, "inference_mode");
    SAME(str_eq(a->base_model_class, b->base_model_class), "base_model_class");
    SAME(names_eq(&a->target_modules, &b->target_modules), "target_modules");
    /* with a scope, an exclude list is written (and read back) as the equivalent regex */
    SAME(names_eq(&a->exclude_modules, &b->exclude_modules) ||
             (a->scope != MMT_SCOPE_BOTH && a->exclude_modules.kind == MMT_PEFT_NAMES_LIST &&
              b->exclude_modules.kind == MMT_PEFT_NAMES_REGEX),
         "exclude_modules");
    SAME(a->fan_in_fan_out == b->fan_in_fan_out, "fan_in_fan_out");
    SAME(a->scope == b->scope, "scope");
    SAME(names_eq(&a->modules_to_save, &b->modules_to_save), "modules_to_save");
    if (a->peft_type == MMT_PEFT_LORA) {
        SAME(a->r == b->r, "r");
        SAME(a->lora_alpha == b->lora_alpha, "lora_alpha");
        SAME(a->lora_dropout == b->lora_dropout, "lora_dropout");
        SAME(a->use_rslora == b->use_rslora && a->use_dora == b->use_dora, "use_rslora/use_dora");
        SAME(a->bias == b->bias, "bias");
        SAME(a->init_lora_weights == b->init_lora_weights, "init_lora_weights");
        SAME(str_eq(a->init_lora_weights_str, b->init_lora_weights_str), "init_lora_weights (string)");
        SAME(a->layers_to_transform_kind == b->layers_to_transform_kind &&
                 a->n_layers_to_transform == b->n_layers_to_transform,
             "layers_to_transform");
        for (int64_t i = 0; i < a->n_layers_to_transform; i++)
            SAME(a->layers_to_transform[i] == b->layers_to_transform[i], "layers_to_transform[i]");
        SAME(names_eq(&a->layers_pattern, &b->layers_pattern), "layers_pattern");
        SAME(patterns_eq(a->rank_pattern, a->n_rank_pattern, b->rank_pattern, b->n_rank_pattern), "rank_pattern");
        SAME(patterns_eq(a->alpha_pattern, a->n_alpha_pattern, b->alpha_pattern, b->n_alpha_pattern),
             "alpha_pattern");
    }
    if (a->peft_type == MMT_PEFT_IA3) {
        SAME(names_eq(&a->feedforward_modules, &b->feedforward_modules), "feedforward_modules");
        SAME(a->init_ia3_weights == b->init_ia3_weights, "init_ia3_weights");
    }
    SAME(a->num_virtual_tokens == b->num_virtual_tokens && a->token_dim == b->token_dim &&
             a->num_transformer_submodules == b->num_transformer_submodules &&
             a->num_attention_heads == b->num_attention_heads && a->num_layers == b->num_layers,
         "prompt sizes");
    if (a->peft_type == MMT_PEFT_PROMPT_TUNING) {
        SAME(str_eq(a->prompt_tuning_init, b->prompt_tuning_init), "prompt_tuning_init");
        SAME(str_eq(a->prompt_tuning_init_text, b->prompt_tuning_init_text), "prompt_tuning_init_text");
        SAME(str_eq(a->tokenizer_name_or_path, b->tokenizer_name_or_path), "tokenizer_name_or_path");
    }
    if (a->peft_type == MMT_PEFT_PREFIX_TUNING) {
        SAME(a->encoder_hidden_size == b->encoder_hidden_size, "encoder_hidden_size");
        SAME(a->prefix_projection == b->prefix_projection, "prefix_projection");
        SAME(str_eq(a->prefix_init_weights, b->prefix_init_weights), "init_weights");
    }
#undef SAME
    return NULL;
}

/* cfg -> JSON -> cfg2 == cfg, and cfg2 -> JSON is the same text. */
static void check_round_trip(const mmt_peft_config *cfg, const char *label) {
    char *text = NULL, *text2 = NULL;
    size_t len = 0, len2 = 0;
    mmt_peft_config back;
    memset(&back, 0, sizeof back);
    CHECK_OK(mmt_peft_config_to_json(cfg, &text, &len));
    if (!text) return;
    CHECK_MSG(from_text(text, &back) == MMT_OK, "%s: %s\n%s", label, mmt_last_error(), text);
    const char *diff = config_diff(cfg, &back);
    CHECK_MSG(!diff, "%s: %s differs after a round trip:\n%s", label, diff ? diff : "", text);
    CHECK_OK(mmt_peft_config_to_json(&back, &text2, &len2));
    CHECK_MSG(text2 && len == len2 && strcmp(text, text2) == 0, "%s: second write differs", label);
    mmt_free(text);
    mmt_free(text2);
    mmt_peft_config_free(&back);
}

/* ---------------------------------------------------------------------------------- */

static void test_reads_peft_written_configs(void) {
    mmt_peft_config cfg;
    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/lora_rank_alpha_pattern.json"), &cfg));
    CHECK(cfg.peft_type == MMT_PEFT_LORA && cfg.r == 4 && cfg.lora_alpha == 8 && cfg.lora_dropout == 0);
    CHECK(cfg.inference_mode && cfg.init_lora_weights && !cfg.init_lora_weights_str && cfg.bias == MMT_LORA_BIAS_NONE);
    CHECK(!cfg.use_rslora && !cfg.use_dora && cfg.task_type == NULL && cfg.scope == MMT_SCOPE_BOTH);
    CHECK(str_eq(cfg.base_model_class, "CLIPModel") && str_eq(cfg.base_model_name_or_path, "tests/fixtures/clip/tiny-a"));
    CHECK(cfg.target_modules.kind == MMT_PEFT_NAMES_LIST && cfg.target_modules.n == 3);
    CHECK(cfg.exclude_modules.kind == MMT_PEFT_NAMES_NONE && cfg.modules_to_save.kind == MMT_PEFT_NAMES_NONE);
    /* file order (PEFT wrote them sorted) */
    CHECK(cfg.n_rank_pattern == 3 && strcmp(cfg.rank_pattern[0].key, "^vision_model.*fc1") == 0 &&
          cfg.rank_pattern[0].value == 6 && strcmp(cfg.rank_pattern[2].key, "q_proj") == 0);
    CHECK(cfg.n_alpha_pattern == 2 && cfg.alpha_pattern[0].value == 2.5 && cfg.alpha_pattern[1].value == 16);
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/lora_layers_int_pattern.json"), &cfg));
    CHECK(cfg.layers_to_transform_kind == 1 && cfg.n_layers_to_transform == 1 && cfg.layers_to_transform[0] == 0);
    CHECK(cfg.layers_pattern.kind == MMT_PEFT_NAMES_REGEX && strcmp(cfg.layers_pattern.regex, "layers") == 0);
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/lora_conv_dora.json"), &cfg));
    CHECK(cfg.use_dora && cfg.r == 2);
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/lora_modules_to_save.json"), &cfg));
    CHECK(cfg.bias == MMT_LORA_BIAS_LORA_ONLY && cfg.modules_to_save.kind == MMT_PEFT_NAMES_LIST &&
          cfg.modules_to_save.n == 2);
    mmt_peft_config_free(&cfg);

    /* the regex PEFT was given for scope text + exclude ["q_proj"] reads back as that scope */
    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/lora_scope_exclude.json"), &cfg));
    CHECK(cfg.scope == MMT_SCOPE_TEXT && cfg.exclude_modules.kind == MMT_PEFT_NAMES_REGEX &&
          strcmp(cfg.exclude_modules.regex, "(?:.*\\.)?(?:q_proj)") == 0);
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/ia3_feedforward.json"), &cfg));
    CHECK(cfg.peft_type == MMT_PEFT_IA3 && cfg.init_ia3_weights && cfg.feedforward_modules.n == 2 &&
          cfg.target_modules.n == 4);
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/ia3_regex.json"), &cfg));
    CHECK(cfg.feedforward_modules.kind == MMT_PEFT_NAMES_REGEX && strcmp(cfg.feedforward_modules.regex, ".*fc1") == 0);
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/prompt_tuning.json"), &cfg));
    CHECK(cfg.peft_type == MMT_PEFT_PROMPT_TUNING && cfg.num_virtual_tokens == 3 && cfg.token_dim == 32 &&
          cfg.num_layers == 2 && cfg.num_attention_heads == 4 && cfg.num_transformer_submodules == 1 &&
          str_eq(cfg.task_type, "FEATURE_EXTRACTION") && str_eq(cfg.prompt_tuning_init, "RANDOM"));
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_load(fixture("peft/configs/prefix_tuning_projection.json"), &cfg));
    CHECK(cfg.peft_type == MMT_PEFT_PREFIX_TUNING && cfg.prefix_projection && cfg.encoder_hidden_size == 16 &&
          cfg.num_virtual_tokens == 2 && cfg.prefix_init_weights == NULL);
    mmt_peft_config_free(&cfg);

    /* every PEFT-written file survives mmtune's round trip */
    const char *all[] = {"lora_list_qv", "lora_all_linear", "lora_rank_alpha_pattern", "lora_pattern_order",
                         "lora_layers_int_pattern", "lora_many_names", "lora_modules_to_save", "lora_conv_dora",
                         "lora_scope_exclude", "lora_text_tower", "ia3_feedforward", "ia3_regex", "prompt_tuning",
                         "prefix_tuning_projection"};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        char path[128];
        snprintf(path, sizeof path, "peft/configs/%s.json", all[i]);
        if (mmt_peft_config_load(fixture(path), &cfg) != MMT_OK) {
            CHECK_MSG(0, "%s: %s", all[i], mmt_last_error());
            continue;
        }
        check_round_trip(&cfg, all[i]);
        mmt_peft_config_free(&cfg);
    }
}

static void test_defaults_and_unknown_keys(void) {
    mmt_peft_config cfg;
    CHECK_OK(from_text("{\"peft_type\": \"LORA\"}", &cfg));
    CHECK(cfg.r == 8 && cfg.lora_alpha == 8 && cfg.lora_dropout == 0 && cfg.bias == MMT_LORA_BIAS_NONE);
    CHECK(cfg.init_lora_weights == 1 && !cfg.inference_mode && cfg.target_modules.kind == MMT_PEFT_NAMES_NONE);
    CHECK(cfg.layers_to_transform_kind == 0 && cfg.n_rank_pattern == 0 && cfg.scope == MMT_SCOPE_BOTH);
    mmt_peft_config_free(&cfg);
    CHECK_OK(from_text("{\"peft_type\": \"IA3\"}", &cfg));
    CHECK(cfg.init_ia3_weights == 1 && cfg.feedforward_modules.kind == MMT_PEFT_NAMES_NONE);
    mmt_peft_config_free(&cfg);
    CHECK_OK(from_text("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 4}", &cfg));
    CHECK(str_eq(cfg.prompt_tuning_init, "RANDOM") && cfg.token_dim == 0);
    mmt_peft_config_free(&cfg);
    /* keys PEFT (or a newer PEFT) writes that mmtune does not use are ignored, whatever their type */
    CHECK_OK(from_text("{\"peft_type\": \"LORA\", \"r\": 16, \"peft_version\": \"0.21.2\", \"megatron_core\": "
                       "\"megatron.core\", \"loftq_config\": {}, \"eva_config\": null, \"some_future_key\": "
                       "{\"x\": [1, 2, {\"y\": null}]}, \"qalora_group_size\": 16, \"lora_bias\": false, "
                       "\"target_parameters\": []}",
                       &cfg));
    CHECK(cfg.r == 16);
    mmt_peft_config_free(&cfg);
    /* mmt_peft_config_default is what PEFT needs for CLIP */
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_IA3));
    CHECK(cfg.feedforward_modules.kind == MMT_PEFT_NAMES_LIST && cfg.feedforward_modules.n == 0 && cfg.inference_mode);
    mmt_peft_config_free(&cfg);
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_PREFIX_TUNING));
    CHECK(str_eq(cfg.task_type, "FEATURE_EXTRACTION"));
    mmt_peft_config_free(&cfg);
}

static void test_wrong_types_name_the_key(void) {
    static const char *const cases[][2] = {
        {"{\"peft_type\": \"LORA\", \"r\": \"8\"}", "adapter_config.json: r: expected an integer, got a string"},
        {"{\"peft_type\": \"LORA\", \"r\": 8.5}", "adapter_config.json: r: expected an integer, got a non-integer number"},
        {"{\"peft_type\": \"LORA\", \"lora_alpha\": true}", "adapter_config.json: lora_alpha: expected a number, got a boolean"},
        {"{\"peft_type\": \"LORA\", \"use_dora\": 1}", "adapter_config.json: use_dora: expected a boolean, got a number"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\", 3]}",
         "adapter_config.json: target_modules[1]: expected a string, got a number"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": {\"q\": 1}}",
         "adapter_config.json: target_modules: expected a string, a list of strings or null, got an object"},
        {"{\"peft_type\": \"LORA\", \"modules_to_save\": \"classifier\"}",
         "adapter_config.json: modules_to_save: expected a list of strings or null, got a string"},
        {"{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q_proj\": 2.5}}",
         "adapter_config.json: rank_pattern.q_proj: expected an integer, got a non-integer number"},
        {"{\"peft_type\": \"LORA\", \"alpha_pattern\": [1]}",
         "adapter_config.json: alpha_pattern: expected an object or null, got an array"},
        {"{\"peft_type\": \"LORA\", \"layers_to_transform\": \"0\"}",
         "adapter_config.json: layers_to_transform: expected an integer, a list of integers or null, got a string"},
        {"{\"peft_type\": \"LORA\", \"layers_to_transform\": [0, true]}",
         "adapter_config.json: layers_to_transform[1]: expected an integer, got a boolean"},
        {"{\"peft_type\": \"LORA\", \"init_lora_weights\": 1}",
         "adapter_config.json: init_lora_weights: expected a boolean or a string, got a number"},
        {"{\"peft_type\": \"LORA\", \"task_type\": 3}", "adapter_config.json: task_type: expected a string, got a number"},
        {"{\"peft_type\": \"LORA\", \"auto_mapping\": {\"base_model_class\": 1}}",
         "adapter_config.json: auto_mapping.base_model_class: expected a string, got a number"},
        {"{\"peft_type\": \"IA3\", \"feedforward_modules\": 5}",
         "adapter_config.json: feedforward_modules: expected a string, a list of strings or null, got a number"},
        {"{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 2, \"prefix_projection\": \"yes\"}",
         "adapter_config.json: prefix_projection: expected a boolean, got a string"},
        {"{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": [2]}",
         "adapter_config.json: num_virtual_tokens: expected an integer, got an array"},
        {"{\"peft_type\": 7}", "adapter_config.json: peft_type: expected a string, got a number"},
        {"[1]", "adapter_config.json: expected a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mmt_peft_config cfg;
        mmt_status s = from_text(cases[i][0], &cfg);
        CHECK_MSG(s == MMT_STATUS_BAD_FORMAT && strcmp(mmt_last_error(), cases[i][1]) == 0,
                  "%s: got \"%s\"", cases[i][0], mmt_last_error());
        CHECK(!strchr(mmt_last_error(), '\n'));
        if (s == MMT_OK) mmt_peft_config_free(&cfg);
    }
}

static void test_refusals(void) {
    static const struct {
        const char *json;
        mmt_status status;
        const char *needle;
    } cases[] = {
        {"{}", MMT_STATUS_BAD_FORMAT, "peft_type is missing"},
        {"{\"peft_type\": \"LOHA\"}", MMT_STATUS_UNSUPPORTED, "peft_type \"LOHA\" is not supported by mmtune"},
        {"{\"peft_type\": \"LORA\", \"lora_bias\": true}", MMT_STATUS_UNSUPPORTED, "adapter_config.json: lora_bias:"},
        {"{\"peft_type\": \"LORA\", \"target_parameters\": [\"experts.w\"]}", MMT_STATUS_UNSUPPORTED,
         "target_parameters"},
        {"{\"peft_type\": \"LORA\", \"layer_replication\": [[0, 2]]}", MMT_STATUS_UNSUPPORTED, "layer_replication"},
        {"{\"peft_type\": \"LORA\", \"use_qalora\": true}", MMT_STATUS_UNSUPPORTED, "use_qalora"},
        {"{\"peft_type\": \"LORA\", \"bias\": \"some\"}", MMT_STATUS_BAD_FORMAT,
         "bias: \"some\" is not one of none, all, lora_only"},
        {"{\"peft_type\": \"LORA\", \"task_type\": \"CLIP\"}", MMT_STATUS_BAD_FORMAT, "task_type: \"CLIP\""},
        {"{\"peft_type\": \"LORA\", \"r\": 0}", MMT_STATUS_BAD_FORMAT, "r: 0 is not a positive integer"},
        {"{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q\": 0}}", MMT_STATUS_BAD_FORMAT, "rank_pattern.q: 0"},
        {"{\"peft_type\": \"LORA\", \"lora_dropout\": 1.5}", MMT_STATUS_BAD_FORMAT, "lora_dropout: 1.5 is outside"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": \".*q_proj\", \"layers_to_transform\": [0]}",
         MMT_STATUS_BAD_FORMAT, "layers_to_transform cannot be used when target_modules is a string"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": \"all-linear\", \"layers_pattern\": \"layers\"}",
         MMT_STATUS_BAD_FORMAT, "layers_pattern cannot be used when target_modules is a string"},
        {"{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\"], \"layers_pattern\": \"layers\"}",
         MMT_STATUS_BAD_FORMAT, "layers_pattern is set, so layers_to_transform must be too"},
        {"{\"peft_type\": \"IA3\", \"target_modules\": [\"k_proj\"], \"feedforward_modules\": [\"fc2\"]}",
         MMT_STATUS_BAD_FORMAT, "feedforward_modules: \"fc2\" is not in target_modules"},
        {"{\"peft_type\": \"PROMPT_TUNING\"}", MMT_STATUS_BAD_FORMAT, "num_virtual_tokens: must be set"},
        {"{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 2, \"init_weights\": \"one\"}",
         MMT_STATUS_BAD_FORMAT, "init_weights: \"one\""},
        {"{\"peft_type\": \"LORA\", \"target_modules\": \"a\\u0000b\"}", MMT_STATUS_BAD_FORMAT, "NUL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mmt_peft_config cfg;
        mmt_status s = from_text(cases[i].json, &cfg);
        CHECK_MSG(s == cases[i].status && strstr(mmt_last_error(), cases[i].needle), "%s: got %s \"%s\"",
                  cases[i].json, mmt_status_name(s), mmt_last_error());
        if (s == MMT_OK) mmt_peft_config_free(&cfg);
    }
    mmt_peft_config cfg;
    CHECK_FAILS(mmt_peft_config_load("/nonexistent/adapter_config.json", &cfg), MMT_STATUS_NOT_FOUND,
                "/nonexistent/adapter_config.json");
}

/* A LoRA config with every field away from its default. */
static void make_full_lora(mmt_peft_config *cfg) {
    CHECK_OK(mmt_peft_config_default(cfg, MMT_PEFT_LORA));
    const char *targets[] = {"q_proj", "self_attn.v_proj", "fc1"}, *save[] = {"text_projection"};
    const char *exclude[] = {"vision_model.encoder.layers.1.mlp.fc1", "a+b"}, *patterns[] = {"blocks", "layers"};
    CHECK_OK(mmt_peft_names_set_list(&cfg->target_modules, targets, 3));
    CHECK_OK(mmt_peft_names_set_list(&cfg->exclude_modules, exclude, 2));
    CHECK_OK(mmt_peft_names_set_list(&cfg->modules_to_save, save, 1));
    CHECK_OK(mmt_peft_names_set_list(&cfg->layers_pattern, patterns, 2));
    cfg->r = 12;
    cfg->lora_alpha = 24.5;
    cfg->lora_dropout = 0.05;
    cfg->use_rslora = cfg->use_dora = 1;
    cfg->bias = MMT_LORA_BIAS_LORA_ONLY;
    cfg->init_lora_weights_str = mmt_strdup("gaussian");
    cfg->layers_to_transform_kind = 2;
    cfg->layers_to_transform = mmt_malloc(2 * sizeof(int64_t));
    cfg->layers_to_transform[0] = 1;
    cfg->layers_to_transform[1] = 0;
    cfg->n_layers_to_transform = 2;
    CHECK_OK(mmt_peft_config_add_rank_pattern(cfg, "self_attn.q_proj", 2));
    CHECK_OK(mmt_peft_config_add_rank_pattern(cfg, "q_proj", 6)); /* order matters: kept */
    CHECK_OK(mmt_peft_config_add_alpha_pattern(cfg, "^vision_model.*fc1", 0.1));
    cfg->task_type = mmt_strdup("FEATURE_EXTRACTION");
    cfg->base_model_name_or_path = mmt_strdup("openai/clip-vit-base-patch32");
    cfg->revision = mmt_strdup("main");
    cfg->base_model_class = mmt_strdup("CLIPModel");
    cfg->scope = MMT_SCOPE_VISION;
}

static void test_round_trips(void) {
    mmt_peft_config cfg, copy;
    make_full_lora(&cfg);
    check_round_trip(&cfg, "full lora");
    /* the list became "x in list or endswith('.' + x)" as a regex, names escaped */
    char *text = NULL;
    size_t len = 0;
    mmt_peft_config back;
    CHECK_OK(mmt_peft_config_to_json(&cfg, &text, &len));
    if (text && from_text(text, &back) == MMT_OK) {
        CHECK(back.scope == MMT_SCOPE_VISION && back.exclude_modules.kind == MMT_PEFT_NAMES_REGEX &&
              strcmp(back.exclude_modules.regex, "(?:.*\\.)?(?:vision_model\\.encoder\\.layers\\.1\\.mlp\\.fc1|a\\+b)") == 0);
        mmt_peft_config_free(&back);
    }
    mmt_free(text);
    CHECK_OK(mmt_peft_config_copy(&copy, &cfg));
    CHECK(config_diff(&cfg, &copy) == NULL);
    mmt_peft_config_free(&copy);
    /* a regex exclude with a scope, and a scope alone */
    CHECK_OK(mmt_peft_names_set_regex(&cfg.exclude_modules, ".*\\.layers\\.1\\..*|text_projection"));
    cfg.scope = MMT_SCOPE_TEXT;
    check_round_trip(&cfg, "regex exclude + scope");
    mmt_peft_names_clear(&cfg.exclude_modules);
    check_round_trip(&cfg, "scope only");
    cfg.layers_to_transform_kind = 1;
    cfg.n_layers_to_transform = 1;
    check_round_trip(&cfg, "one layer");
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_IA3));
    CHECK_OK(mmt_peft_names_set_regex(&cfg.target_modules, ".*\\.(k_proj|v_proj|fc2)"));
    CHECK_OK(mmt_peft_names_set_regex(&cfg.feedforward_modules, ".*fc2"));
    cfg.init_ia3_weights = 0;
    cfg.fan_in_fan_out = 1;
    check_round_trip(&cfg, "ia3");
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_PROMPT_TUNING));
    cfg.num_virtual_tokens = 8;
    cfg.token_dim = 512;
    cfg.num_layers = 12;
    cfg.prompt_tuning_init_text = mmt_strdup("a photo of \"quoted\" text\n");
    cfg.tokenizer_name_or_path = mmt_strdup("openai/clip-vit-base-patch32");
    mmt_free(cfg.prompt_tuning_init);
    cfg.prompt_tuning_init = mmt_strdup("TEXT");
    check_round_trip(&cfg, "prompt tuning");
    mmt_peft_config_free(&cfg);

    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_PREFIX_TUNING));
    cfg.num_virtual_tokens = 10;
    cfg.prefix_projection = 1;
    cfg.encoder_hidden_size = 128;
    cfg.prefix_init_weights = mmt_strdup("zero");
    check_round_trip(&cfg, "prefix tuning");
    mmt_peft_config_free(&cfg);
}

/* The exact text, in PEFT's layout (json.dumps(indent=2, sort_keys=True)). */
static void test_written_layout(void) {
    mmt_peft_config cfg;
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    const char *targets[] = {"q_proj", "v_proj"}, *exclude[] = {"fc1"};
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, targets, 2));
    CHECK_OK(mmt_peft_names_set_list(&cfg.exclude_modules, exclude, 1));
    cfg.scope = MMT_SCOPE_TEXT;
    cfg.r = 4;
    cfg.lora_alpha = 16;
    cfg.lora_dropout = 0.1;
    CHECK_OK(mmt_peft_config_add_rank_pattern(&cfg, "fc2", 2));
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(mmt_peft_config_to_json(&cfg, &text, &len));
    const char *want = "{\n"
                       "  \"alpha_pattern\": {},\n"
                       "  \"auto_mapping\": null,\n"
                       "  \"base_model_name_or_path\": null,\n"
                       "  \"bias\": \"none\",\n"
                       "  \"exclude_modules\": \"(?:(?:.*\\\\.)?(?:fc1))|(?:vision_model|visual_projection)(?:\\\\..*)?\",\n"
                       "  \"fan_in_fan_out\": false,\n"
                       "  \"inference_mode\": true,\n"
                       "  \"init_lora_weights\": true,\n"
                       "  \"layers_pattern\": null,\n"
                       "  \"layers_to_transform\": null,\n"
                       "  \"lora_alpha\": 16,\n"
                       "  \"lora_dropout\": 0.1,\n"
                       "  \"modules_to_save\": null,\n"
                       "  \"peft_type\": \"LORA\",\n"
                       "  \"r\": 4,\n"
                       "  \"rank_pattern\": {\n"
                       "    \"fc2\": 2\n"
                       "  },\n"
                       "  \"revision\": null,\n"
                       "  \"target_modules\": [\n"
                       "    \"q_proj\",\n"
                       "    \"v_proj\"\n"
                       "  ],\n"
                       "  \"task_type\": null,\n"
                       "  \"use_dora\": false,\n"
                       "  \"use_rslora\": false\n"
                       "}";
    CHECK_MSG(text && strcmp(text, want) == 0, "got:\n%s", text ? text : "");
    CHECK(text && len == strlen(text));
    mmt_free(text);
    /* invalid configs are not written */
    cfg.r = 0;
    CHECK_FAILS(mmt_peft_config_to_json(&cfg, &text, &len), MMT_STATUS_BAD_FORMAT, "r: 0");
    mmt_peft_config_free(&cfg);
}

static void test_save_is_atomic_and_loads_back(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/peft_config_test", MMT_BUILD_DIR);
    mkdir(dir, 0755);
    mmt_peft_config cfg, back;
    make_full_lora(&cfg);
    CHECK_OK(mmt_peft_config_save(&cfg, dir)); /* a folder: adapter_config.json inside */
    char file[600];
    snprintf(file, sizeof file, "%s/adapter_config.json", dir);
    CHECK(mmt_file_exists(file));
    CHECK_OK(mmt_peft_config_load(dir, &back));
    CHECK(config_diff(&cfg, &back) == NULL);
    mmt_peft_config_free(&back);
    /* a failed write leaves the old file alone */
    CHECK_FAILS(mmt_peft_config_save(&cfg, "/nonexistent-dir/adapter_config.json"), MMT_STATUS_IO, "nonexistent-dir");
    cfg.r = -1;
    CHECK_FAILS(mmt_peft_config_save(&cfg, dir), MMT_STATUS_BAD_FORMAT, "r: -1");
    CHECK_OK(mmt_peft_config_load(file, &back));
    CHECK(back.r == 12);
    mmt_peft_config_free(&back);
    mmt_peft_config_free(&cfg);
}

static void test_allocation_failures(void) {
    mmt_peft_config cfg;
    make_full_lora(&cfg);
    char *text = NULL;
    size_t len;
    CHECK_OK(mmt_peft_config_to_json(&cfg, &text, &len));
    for (long k = 1; k < 5000 && text; k++) {
        mmt_peft_config back, copy;
        char *again = NULL;
        mmt_alloc_fail_after(k);
        mmt_status s = from_text(text, &back);
        if (s == MMT_OK) {
            s = mmt_peft_config_copy(&copy, &back);
            if (s == MMT_OK) {
                s = mmt_peft_config_to_json(&copy, &again, &len);
                mmt_peft_config_free(&copy);
            }
            mmt_peft_config_free(&back);
        }
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            CHECK(again && strcmp(again, text) == 0);
            mmt_free(again);
            break;
        }
        CHECK_MSG(s == MMT_STATUS_OUT_OF_MEMORY, "k=%ld: %s %s", k, mmt_status_name(s), mmt_last_error());
    }
    mmt_free(text);
    mmt_peft_config_free(&cfg);
}

static void test_fill_from_model(void) {
    mmt_clip_config clip;
    CHECK_OK(mmt_clip_config_load(fixture("clip/tiny-a/config.json"), &clip));
    mmt_peft_config cfg;
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_PREFIX_TUNING));
    cfg.num_virtual_tokens = 3;
    CHECK_OK(fill_from_clip(&cfg, &clip));
    /* the values PEFT put in configs/prefix_tuning*.json for this model */
    CHECK(cfg.token_dim == 32 && cfg.num_layers == 2 && cfg.num_attention_heads == 4 &&
          cfg.num_transformer_submodules == 1 && cfg.encoder_hidden_size == 32);
    mmt_peft_config_free(&cfg);
    CHECK_OK(mmt_clip_config_load(fixture("clip/tiny-a-vision/config.json"), &clip));
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_PROMPT_TUNING));
    cfg.num_virtual_tokens = 3;
    CHECK_FAILS(fill_from_clip(&cfg, &clip), MMT_STATUS_INVALID_ARGUMENT, "needs a text tower");
    cfg.scope = MMT_SCOPE_VISION;
    char *text = NULL;
    size_t len;
    CHECK_FAILS(mmt_peft_config_to_json(&cfg, &text, &len), MMT_STATUS_INVALID_ARGUMENT, "scope \"vision\"");
    mmt_peft_config_free(&cfg);
}

/* ---------------------------------------------------------------------------------- */
/* Configs for PEFT to load (make_peft_fixtures.py --check-written)                   */

static void write_for_peft(const char *root, const char *id, const char *model, mmt_peft_config *cfg) {
    char dir[700], path[800];
    snprintf(dir, sizeof dir, "%s/%s", root, id);
    mkdir(dir, 0755);
    mmt_clip_config clip;
    mmt_module_info *mods = NULL;
    int64_t n = 0;
    snprintf(path, sizeof path, "clip/%s/config.json", model);
    CHECK_OK(mmt_clip_config_load(fixture(path), &clip));
    CHECK_OK(mmt_clip_modules(&clip, &mods, &n));
    CHECK_OK(fill_from_clip(cfg, &clip));
    mmt_peft_targets t = {0};
    if (mmt_peft_select(cfg, mods, n, &t) != MMT_OK) {
        CHECK_MSG(0, "%s: %s", id, mmt_last_error());
    } else {
        CHECK_OK(mmt_peft_config_save(cfg, dir));
        mmt_strbuf b = {0};
        mmt_strbuf_printf(&b, "{\"model\": \"%s\", \"wrapped\": [", model);
        for (int64_t i = 0; i < t.n; i++) mmt_strbuf_printf(&b, "%s\"%s\"", i ? ", " : "", mods[t.items[i].module].name);
        mmt_strbuf_printf(&b, "], \"r\": [");
        for (int64_t i = 0; i < t.n; i++) mmt_strbuf_printf(&b, "%s%lld", i ? ", " : "", (long long)t.items[i].r);
        mmt_strbuf_printf(&b, "], \"alpha\": [");
        for (int64_t i = 0; i < t.n; i++) mmt_strbuf_printf(&b, "%s%.17g", i ? ", " : "", t.items[i].alpha);
        mmt_strbuf_printf(&b, "], \"modules_to_save\": [");
        for (int64_t i = 0; i < t.n_saved; i++) mmt_strbuf_printf(&b, "%s\"%s\"", i ? ", " : "", mods[t.saved[i]].name);
        mmt_strbuf_printf(&b, "]}\n");
        snprintf(path, sizeof path, "%s/expected.json", dir);
        CHECK(!b.failed);
        if (!b.failed) CHECK_OK(mmt_file_write_atomic(path, b.data, b.len));
        mmt_strbuf_free(&b);
    }
    mmt_peft_targets_free(&t);
    mmt_modules_free(mods, n);
    mmt_peft_config_free(cfg);
}

static void test_write_configs_for_peft(void) {
    char root[512];
    snprintf(root, sizeof root, "%s/peft_written", MMT_BUILD_DIR);
    CHECK(mkdir(root, 0755) == 0 || errno == EEXIST);
    mmt_peft_config cfg;

    make_full_lora(&cfg); /* scope vision, exclude list, layers + patterns, rank/alpha order, DoRA, rsLoRA */
    mmt_free(cfg.task_type);
    cfg.task_type = NULL; /* a task type makes PEFT wrap CLIPModel's forward wrongly (peft#2291) */
    write_for_peft(root, "lora_full_scope_vision", "tiny-a", &cfg);

    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    CHECK_OK(mmt_peft_names_set_regex(&cfg.target_modules, "all-linear"));
    const char *exclude[] = {"out_proj"};
    CHECK_OK(mmt_peft_names_set_list(&cfg.exclude_modules, exclude, 1));
    CHECK_OK(mmt_peft_config_add_rank_pattern(&cfg, "layers.1.self_attn.q_proj", 3));
    CHECK_OK(mmt_peft_config_add_rank_pattern(&cfg, "q_proj", 5));
    CHECK_OK(mmt_peft_config_add_alpha_pattern(&cfg, "text_projection", 4));
    cfg.scope = MMT_SCOPE_TEXT;
    cfg.base_model_class = mmt_strdup("CLIPModel");
    write_for_peft(root, "lora_all_linear_scope_text", "tiny-a", &cfg);

    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    CHECK_OK(mmt_peft_names_set_regex(&cfg.target_modules, "vision_model\\.encoder\\.layers\\.\\d+\\.mlp\\.fc\\d"));
    CHECK_OK(mmt_peft_names_set_regex(&cfg.exclude_modules, ".*layers\\.0\\..*"));
    const char *save[] = {"visual_projection"};
    CHECK_OK(mmt_peft_names_set_list(&cfg.modules_to_save, save, 1));
    cfg.bias = MMT_LORA_BIAS_ALL;
    cfg.scope = MMT_SCOPE_VISION;
    write_for_peft(root, "lora_regex_scope_vision", "tiny-a-vision", &cfg);

    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_IA3));
    const char *targets[] = {"k_proj", "v_proj", "fc2", "patch_embedding"}, *ff[] = {"fc2"};
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, targets, 4));
    CHECK_OK(mmt_peft_names_set_list(&cfg.feedforward_modules, ff, 1));
    cfg.scope = MMT_SCOPE_VISION;
    write_for_peft(root, "ia3_scope_vision", "tiny-a", &cfg);

    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_PROMPT_TUNING));
    cfg.num_virtual_tokens = 4;
    write_for_peft(root, "prompt_tuning", "tiny-a", &cfg);

    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_PREFIX_TUNING));
    cfg.num_virtual_tokens = 3;
    cfg.prefix_projection = 1;
    cfg.encoder_hidden_size = 16;
    write_for_peft(root, "prefix_tuning", "tiny-a", &cfg);
}

int main(void) {
    RUN(test_reads_peft_written_configs);
    RUN(test_defaults_and_unknown_keys);
    RUN(test_wrong_types_name_the_key);
    RUN(test_refusals);
    RUN(test_round_trips);
    RUN(test_written_layout);
    RUN(test_save_is_atomic_and_loads_back);
    RUN(test_allocation_failures);
    RUN(test_fill_from_model);
    RUN(test_write_configs_for_peft);
    return check_summary();
}
