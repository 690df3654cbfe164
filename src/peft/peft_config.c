/* peft_config.c — adapter_config.json <-> mmt_peft_config, with PEFT 0.21's keys and defaults.
 *
 * Reading: peft/config.py PeftConfigMixin.from_pretrained (unknown keys dropped) and the
 * method config classes' defaults and __post_init__ checks. Writing: PeftConfigMixin.
 * save_pretrained (json.dumps(indent=2, sort_keys=True)). See peft_config.h for the rules.
 */
#include "peft/peft_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "peft/target_regex.h"

/* The scope, as an exclude_modules regex that removes the other tower's modules. */
#define SCOPE_TEXT_REGEX "(?:vision_model|visual_projection)(?:\\..*)?"
#define SCOPE_VISION_REGEX "(?:text_model|text_projection)(?:\\..*)?"

static const char *const TASK_TYPES[] = {"SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS",
                                         "QUESTION_ANS", "FEATURE_EXTRACTION"};

/* LoRA keys whose non-default values change what the adapter computes in ways mmtune does
 * not implement: a file that sets one is refused rather than misread. */
static const char *const LORA_UNSUPPORTED_KEYS[] = {
    "lora_bias", "use_qalora", "target_parameters", "layer_replication",
    "alora_invocation_tokens", "trainable_token_indices", "use_bdlora", "arrow_config",
    "kasa_config", "monteclora_config", "megatron_config"};

/* ---------------------------------------------------------------------------------- */
/* Names, strings, patterns                                                           */

static char *dup_or_null(const char *s, int *failed) {
    if (!s) return NULL;
    char *d = mmt_strdup(s);
    if (!d) *failed = 1;
    return d;
}

void mmt_peft_names_clear(mmt_peft_names *names) {
    mmt_free(names->regex);
    for (int64_t i = 0; i < names->n; i++) mmt_free(names->items[i]);
    mmt_free(names->items);
    memset(names, 0, sizeof *names);
}

mmt_status mmt_peft_names_set_list(mmt_peft_names *names, const char *const *items, int64_t n) {
    mmt_peft_names fresh = {.kind = MMT_PEFT_NAMES_LIST};
    if (n > 0) {
        fresh.items = mmt_calloc((size_t)n, sizeof(char *));
        if (!fresh.items) return MMT_STATUS_OUT_OF_MEMORY;
        for (; fresh.n < n; fresh.n++) {
            if (!(fresh.items[fresh.n] = mmt_strdup(items[fresh.n]))) {
                mmt_peft_names_clear(&fresh);
                return MMT_STATUS_OUT_OF_MEMORY;
            }
        }
    }
    mmt_peft_names_clear(names);
    *names = fresh;
    return MMT_OK;
}

mmt_status mmt_peft_names_set_regex(mmt_peft_names *names, const char *regex) {
    char *copy = mmt_strdup(regex);
    if (!copy) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_peft_names_clear(names);
    names->kind = MMT_PEFT_NAMES_REGEX;
    names->regex = copy;
    return MMT_OK;
}

static mmt_status names_copy(mmt_peft_names *dst, const mmt_peft_names *src) {
    memset(dst, 0, sizeof *dst);
    if (src->kind == MMT_PEFT_NAMES_REGEX) return mmt_peft_names_set_regex(dst, src->regex);
    if (src->kind == MMT_PEFT_NAMES_LIST)
        return mmt_peft_names_set_list(dst, (const char *const *)src->items, src->n);
    return MMT_OK;
}

static mmt_status add_pattern(mmt_peft_pattern **list, int64_t *n, const char *key, double value) {
    mmt_peft_pattern *grown = mmt_realloc(*list, (size_t)(*n + 1) * sizeof **list);
    if (!grown) return MMT_STATUS_OUT_OF_MEMORY;
    *list = grown;
    if (!(grown[*n].key = mmt_strdup(key))) return MMT_STATUS_OUT_OF_MEMORY;
    grown[*n].value = value;
    (*n)++;
    return MMT_OK;
}

static void patterns_free(mmt_peft_pattern *list, int64_t n) {
    for (int64_t i = 0; i < n; i++) mmt_free(list[i].key);
    mmt_free(list);
}

mmt_status mmt_peft_config_add_rank_pattern(mmt_peft_config *cfg, const char *key, int64_t r) {
    return add_pattern(&cfg->rank_pattern, &cfg->n_rank_pattern, key, (double)r);
}

mmt_status mmt_peft_config_add_alpha_pattern(mmt_peft_config *cfg, const char *key, double alpha) {
    return add_pattern(&cfg->alpha_pattern, &cfg->n_alpha_pattern, key, alpha);
}

/* ---------------------------------------------------------------------------------- */
/* Names of things                                                                    */

const char *mmt_peft_type_name(mmt_peft_type type) {
    switch (type) {
    case MMT_PEFT_LORA: return "LORA";
    case MMT_PEFT_IA3: return "IA3";
    case MMT_PEFT_PROMPT_TUNING: return "PROMPT_TUNING";
    case MMT_PEFT_PREFIX_TUNING: return "PREFIX_TUNING";
    }
    return "?";
}

static int peft_type_parse(const char *s, mmt_peft_type *type) {
    for (int t = MMT_PEFT_LORA; t <= MMT_PEFT_PREFIX_TUNING; t++)
        if (strcmp(s, mmt_peft_type_name((mmt_peft_type)t)) == 0) {
            *type = (mmt_peft_type)t;
            return 1;
        }
    return 0;
}

const char *mmt_peft_scope_name(mmt_peft_scope scope) {
    return scope == MMT_SCOPE_TEXT ? "text" : scope == MMT_SCOPE_VISION ? "vision" : "both";
}

int mmt_peft_scope_parse(const char *name, mmt_peft_scope *scope) {
    for (int s = MMT_SCOPE_BOTH; s <= MMT_SCOPE_VISION; s++)
        if (strcmp(name, mmt_peft_scope_name((mmt_peft_scope)s)) == 0) {
            *scope = (mmt_peft_scope)s;
            return 1;
        }
    return 0;
}

const char *mmt_peft_scope_regex(mmt_peft_scope scope) {
    return scope == MMT_SCOPE_TEXT ? SCOPE_TEXT_REGEX : scope == MMT_SCOPE_VISION ? SCOPE_VISION_REGEX : NULL;
}

static const char *bias_name(mmt_lora_bias bias) {
    return bias == MMT_LORA_BIAS_ALL ? "all" : bias == MMT_LORA_BIAS_LORA_ONLY ? "lora_only" : "none";
}

/* ---------------------------------------------------------------------------------- */
/* Life cycle                                                                         */

void mmt_peft_config_free(mmt_peft_config *cfg) {
    if (!cfg) return;
    mmt_free(cfg->source);
    mmt_free(cfg->task_type);
    mmt_free(cfg->base_model_name_or_path);
    mmt_free(cfg->revision);
    mmt_free(cfg->base_model_class);
    mmt_free(cfg->parent_library);
    mmt_peft_names_clear(&cfg->target_modules);
    mmt_peft_names_clear(&cfg->exclude_modules);
    mmt_peft_names_clear(&cfg->modules_to_save);
    mmt_free(cfg->init_lora_weights_str);
    mmt_free(cfg->layers_to_transform);
    mmt_peft_names_clear(&cfg->layers_pattern);
    patterns_free(cfg->rank_pattern, cfg->n_rank_pattern);
    patterns_free(cfg->alpha_pattern, cfg->n_alpha_pattern);
    mmt_peft_names_clear(&cfg->feedforward_modules);
    mmt_free(cfg->prompt_tuning_init);
    mmt_free(cfg->prompt_tuning_init_text);
    mmt_free(cfg->tokenizer_name_or_path);
    mmt_free(cfg->prefix_init_weights);
    memset(cfg, 0, sizeof *cfg);
}

/* Defaults of the dataclass fields, without the mmtune-side conveniences. */
static mmt_status peft_defaults(mmt_peft_config *cfg, mmt_peft_type type) {
    memset(cfg, 0, sizeof *cfg);
    cfg->peft_type = type;
    cfg->r = 8;
    cfg->lora_alpha = 8;
    cfg->init_lora_weights = 1;
    cfg->init_ia3_weights = 1;
    if (type == MMT_PEFT_PROMPT_TUNING && !(cfg->prompt_tuning_init = mmt_strdup("RANDOM")))
        return MMT_STATUS_OUT_OF_MEMORY;
    return MMT_OK;
}

mmt_status mmt_peft_config_default(mmt_peft_config *cfg, mmt_peft_type type) {
    mmt_status s = peft_defaults(cfg, type);
    cfg->inference_mode = 1; /* what save_pretrained writes */
    if (s == MMT_OK && type == MMT_PEFT_IA3)
        s = mmt_peft_names_set_list(&cfg->feedforward_modules, NULL, 0);
    if (s == MMT_OK && (type == MMT_PEFT_PROMPT_TUNING || type == MMT_PEFT_PREFIX_TUNING) &&
        !(cfg->task_type = mmt_strdup("FEATURE_EXTRACTION")))
        s = MMT_STATUS_OUT_OF_MEMORY;
    if (s != MMT_OK) mmt_peft_config_free(cfg);
    return s;
}

mmt_status mmt_peft_config_copy(mmt_peft_config *dst, const mmt_peft_config *src) {
    *dst = *src;
    /* drop every borrowed pointer before deep-copying, so a failure frees only copies */
    dst->source = dst->task_type = dst->base_model_name_or_path = dst->revision = NULL;
    dst->base_model_class = dst->parent_library = NULL;
    dst->init_lora_weights_str = dst->prompt_tuning_init = dst->prompt_tuning_init_text = NULL;
    dst->tokenizer_name_or_path = dst->prefix_init_weights = NULL;
    memset(&dst->target_modules, 0, sizeof dst->target_modules);
    memset(&dst->exclude_modules, 0, sizeof dst->exclude_modules);
    memset(&dst->modules_to_save, 0, sizeof dst->modules_to_save);
    memset(&dst->layers_pattern, 0, sizeof dst->layers_pattern);
    memset(&dst->feedforward_modules, 0, sizeof dst->feedforward_modules);
    dst->layers_to_transform = NULL;
    dst->rank_pattern = dst->alpha_pattern = NULL;
    dst->n_rank_pattern = dst->n_alpha_pattern = 0;

    int failed = 0;
    dst->source = dup_or_null(src->source, &failed);
    dst->task_type = dup_or_null(src->task_type, &failed);
    dst->base_model_name_or_path = dup_or_null(src->base_model_name_or_path, &failed);
    dst->revision = dup_or_null(src->revision, &failed);
    dst->base_model_class = dup_or_null(src->base_model_class, &failed);
    dst->parent_library = dup_or_null(src->parent_library, &failed);
    dst->init_lora_weights_str = dup_or_null(src->init_lora_weights_str, &failed);
    dst->prompt_tuning_init = dup_or_null(src->prompt_tuning_init, &failed);
    dst->prompt_tuning_init_text = dup_or_null(src->prompt_tuning_init_text, &failed);
    dst->tokenizer_name_or_path = dup_or_null(src->tokenizer_name_or_path, &failed);
    dst->prefix_init_weights = dup_or_null(src->prefix_init_weights, &failed);
    mmt_status s = failed ? MMT_STATUS_OUT_OF_MEMORY : MMT_OK;
    if (s == MMT_OK) s = names_copy(&dst->target_modules, &src->target_modules);
    if (s == MMT_OK) s = names_copy(&dst->exclude_modules, &src->exclude_modules);
    if (s == MMT_OK) s = names_copy(&dst->modules_to_save, &src->modules_to_save);
    if (s == MMT_OK) s = names_copy(&dst->layers_pattern, &src->layers_pattern);
    if (s == MMT_OK) s = names_copy(&dst->feedforward_modules, &src->feedforward_modules);
    if (s == MMT_OK && src->n_layers_to_transform > 0) {
        size_t bytes = (size_t)src->n_layers_to_transform * sizeof(int64_t);
        if ((dst->layers_to_transform = mmt_malloc(bytes)))
            memcpy(dst->layers_to_transform, src->layers_to_transform, bytes);
        else
            s = MMT_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; s == MMT_OK && i < src->n_rank_pattern; i++)
        s = add_pattern(&dst->rank_pattern, &dst->n_rank_pattern, src->rank_pattern[i].key,
                        src->rank_pattern[i].value);
    for (int64_t i = 0; s == MMT_OK && i < src->n_alpha_pattern; i++)
        s = add_pattern(&dst->alpha_pattern, &dst->n_alpha_pattern, src->alpha_pattern[i].key,
                        src->alpha_pattern[i].value);
    if (s != MMT_OK) mmt_peft_config_free(dst);
    return s;
}

/* ---------------------------------------------------------------------------------- */
/* Reading                                                                            */

typedef struct reader {
    const mmt_json *obj;
    const char *what;
} reader;

static mmt_status type_error(reader *r, const char *key, const char *expected, const mmt_json *v) {
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected %s, got %s", r->what, key, expected,
                    mmt_json_type_name(v->type));
}

/* A string (or null -> NULL) copied into *out, which must be NULL or owned. */
static mmt_status read_string(reader *r, const char *key, char **out) {
    const char *v = NULL;
    MMT_TRY(mmt_json_get_string(r->obj, key, NULL, &v, r->what, ""));
    if (!v) return MMT_OK;
    const mmt_json *j = mmt_json_get(r->obj, key);
    if (strlen(v) != j->len)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: contains a NUL character", r->what, key);
    char *copy = mmt_strdup(v);
    if (!copy) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(*out);
    *out = copy;
    return MMT_OK;
}

static mmt_status list_item_string(reader *r, const char *key, const mmt_json *item, size_t i) {
    if (item->type != MMT_JSON_STRING)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s[%zu]: expected a string, got %s", r->what,
                        key, i, mmt_json_type_name(item->type));
    if (strlen(item->string) != item->len)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s[%zu]: contains a NUL character", r->what, key, i);
    return MMT_OK;
}

/* null, a string (if allow_string) or a list of strings. */
static mmt_status read_names(reader *r, const char *key, int allow_string, mmt_peft_names *names) {
    const mmt_json *v = mmt_json_get(r->obj, key);
    if (!v || v->type == MMT_JSON_NULL) {
        mmt_peft_names_clear(names);
        return MMT_OK;
    }
    if (v->type == MMT_JSON_STRING && allow_string) {
        if (strlen(v->string) != v->len)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: contains a NUL character", r->what, key);
        return mmt_peft_names_set_regex(names, v->string);
    }
    if (v->type != MMT_JSON_ARRAY)
        return type_error(r, key, allow_string ? "a string, a list of strings or null" : "a list of strings or null", v);
    const char **items = mmt_calloc(v->len + 1, sizeof(char *));
    if (!items) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    for (size_t i = 0; i < v->len && s == MMT_OK; i++) {
        s = list_item_string(r, key, &v->items[i], i);
        items[i] = v->items[i].string;
    }
    if (s == MMT_OK) s = mmt_peft_names_set_list(names, items, (int64_t)v->len);
    mmt_free(items);
    return s;
}

static mmt_status read_layers_to_transform(reader *r, mmt_peft_config *cfg) {
    const char *key = "layers_to_transform";
    const mmt_json *v = mmt_json_get(r->obj, key);
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type == MMT_JSON_NUMBER && v->is_integer) {
        if (!(cfg->layers_to_transform = mmt_malloc(sizeof(int64_t)))) return MMT_STATUS_OUT_OF_MEMORY;
        cfg->layers_to_transform[0] = v->integer;
        cfg->n_layers_to_transform = 1;
        cfg->layers_to_transform_kind = 1;
        return MMT_OK;
    }
    if (v->type != MMT_JSON_ARRAY) return type_error(r, key, "an integer, a list of integers or null", v);
    cfg->layers_to_transform_kind = 2;
    if (v->len == 0) return MMT_OK;
    if (!(cfg->layers_to_transform = mmt_malloc(v->len * sizeof(int64_t)))) return MMT_STATUS_OUT_OF_MEMORY;
    for (size_t i = 0; i < v->len; i++) {
        const mmt_json *item = &v->items[i];
        if (item->type != MMT_JSON_NUMBER || !item->is_integer)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s[%zu]: expected an integer, got %s", r->what,
                            key, i, item->type == MMT_JSON_NUMBER ? "a non-integer number" : mmt_json_type_name(item->type));
        cfg->layers_to_transform[cfg->n_layers_to_transform++] = item->integer;
    }
    return MMT_OK;
}

/* rank_pattern (integer values) or alpha_pattern (numbers), in file order. */
static mmt_status read_patterns(reader *r, const char *key, int integers, mmt_peft_pattern **list,
                                int64_t *n) {
    const mmt_json *v = mmt_json_get(r->obj, key);
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type != MMT_JSON_OBJECT) return type_error(r, key, "an object or null", v);
    for (size_t i = 0; i < v->len; i++) {
        const mmt_json *item = &v->items[i];
        if (item->type != MMT_JSON_NUMBER || (integers && !item->is_integer))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s.%s: expected %s, got %s", r->what, key,
                            v->keys[i], integers ? "an integer" : "a number",
                            item->type == MMT_JSON_NUMBER ? "a non-integer number" : mmt_json_type_name(item->type));
        if (strlen(v->keys[i]) != v->key_lens[i])
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: a key contains a NUL character", r->what, key);
        MMT_TRY(add_pattern(list, n, v->keys[i], integers ? (double)item->integer : item->number));
    }
    return MMT_OK;
}

/* A key that must hold its default (null, false, [] or {}) for mmtune to compute the same. */
static mmt_status require_default(reader *r, const char *key) {
    const mmt_json *v = mmt_json_get(r->obj, key);
    if (!v || v->type == MMT_JSON_NULL || (v->type == MMT_JSON_BOOL && !v->boolean) ||
        ((v->type == MMT_JSON_ARRAY || v->type == MMT_JSON_OBJECT) && v->len == 0))
        return MMT_OK;
    return mmt_fail(MMT_STATUS_UNSUPPORTED,
                    "%s: %s: mmtune supports only its default (null/false); this adapter needs a "
                    "PEFT feature mmtune does not implement", r->what, key);
}

static mmt_status read_init_lora_weights(reader *r, mmt_peft_config *cfg) {
    const mmt_json *v = mmt_json_get(r->obj, "init_lora_weights");
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type == MMT_JSON_BOOL) {
        cfg->init_lora_weights = v->boolean;
        return MMT_OK;
    }
    if (v->type != MMT_JSON_STRING) return type_error(r, "init_lora_weights", "a boolean or a string", v);
    /* these start from a base PEFT changed (the adapter's principal part subtracted from it);
     * PEFT writes init_lora_weights true when it converts such an adapter to a plain LoRA on
     * save (path_initial_model_for_weight_conversion), so one saved with the name still needs
     * that changed base, which no snapshot here has */
    static const char *const mutating[] = {"pissa", "olora", "corda", "lora_ga", "loftq"};
    for (size_t i = 0; i < sizeof mutating / sizeof *mutating; i++)
        if (!strncmp(v->string, mutating[i], strlen(mutating[i])))
            return mmt_fail(MMT_STATUS_UNSUPPORTED,
                            "%s: init_lora_weights \"%s\": this adapter was saved without conversion, so it works only on "
                            "the base PEFT modified when it initialised it; save it again with PEFT's "
                            "path_initial_model_for_weight_conversion, which makes a plain LoRA", r->what, v->string);
    return read_string(r, "init_lora_weights", &cfg->init_lora_weights_str);
}

/* exclude_modules written by mmtune carries the scope: SCOPE, or "(?:user)|SCOPE". */
static mmt_status split_scope(mmt_peft_config *cfg) {
    if (cfg->exclude_modules.kind != MMT_PEFT_NAMES_REGEX) return MMT_OK;
    const char *s = cfg->exclude_modules.regex;
    for (int scope = MMT_SCOPE_TEXT; scope <= MMT_SCOPE_VISION; scope++) {
        const char *tail = mmt_peft_scope_regex((mmt_peft_scope)scope);
        size_t n = strlen(s), t = strlen(tail);
        if (strcmp(s, tail) == 0) {
            cfg->scope = (mmt_peft_scope)scope;
            mmt_peft_names_clear(&cfg->exclude_modules);
            return MMT_OK;
        }
        if (n > t + 5 && strncmp(s, "(?:", 3) == 0 && strcmp(s + n - t, tail) == 0 &&
            strncmp(s + n - t - 2, ")|", 2) == 0) {
            size_t inner = n - t - 5;
            char *user = mmt_strndup(s + 3, inner);
            if (!user) return MMT_STATUS_OUT_OF_MEMORY;
            /* only when the middle stands on its own: otherwise keep the whole regex */
            mmt_regex *re = NULL;
            if (mmt_regex_compile(user, "exclude_modules", &re) == MMT_OK) {
                mmt_regex_free(re);
                mmt_free(cfg->exclude_modules.regex);
                cfg->exclude_modules.regex = user;
                cfg->scope = (mmt_peft_scope)scope;
            } else {
                mmt_clear_error();
                mmt_free(user);
            }
            return MMT_OK;
        }
    }
    return MMT_OK;
}

static mmt_status read_auto_mapping(reader *r, mmt_peft_config *cfg) {
    const mmt_json *v = mmt_json_get(r->obj, "auto_mapping");
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type != MMT_JSON_OBJECT) return type_error(r, "auto_mapping", "an object or null", v);
    const char *cls = NULL, *lib = NULL;
    MMT_TRY(mmt_json_get_string(v, "base_model_class", NULL, &cls, r->what, "auto_mapping"));
    MMT_TRY(mmt_json_get_string(v, "parent_library", NULL, &lib, r->what, "auto_mapping"));
    int failed = 0;
    cfg->base_model_class = dup_or_null(cls, &failed);
    cfg->parent_library = dup_or_null(lib, &failed);
    return failed ? MMT_STATUS_OUT_OF_MEMORY : MMT_OK;
}

static mmt_status read_common(reader *r, mmt_peft_config *cfg) {
    MMT_TRY(read_string(r, "task_type", &cfg->task_type));
    MMT_TRY(read_string(r, "base_model_name_or_path", &cfg->base_model_name_or_path));
    MMT_TRY(read_string(r, "revision", &cfg->revision));
    MMT_TRY(mmt_json_get_bool(r->obj, "inference_mode", 0, &cfg->inference_mode, r->what, ""));
    MMT_TRY(read_auto_mapping(r, cfg));
    return read_names(r, "modules_to_save", 0, &cfg->modules_to_save);
}

static mmt_status read_lora(reader *r, mmt_peft_config *cfg) {
    MMT_TRY(mmt_json_get_int(r->obj, "r", cfg->r, &cfg->r, r->what, ""));
    MMT_TRY(mmt_json_get_double(r->obj, "lora_alpha", cfg->lora_alpha, &cfg->lora_alpha, r->what, ""));
    MMT_TRY(mmt_json_get_double(r->obj, "lora_dropout", 0, &cfg->lora_dropout, r->what, ""));
    MMT_TRY(mmt_json_get_bool(r->obj, "use_rslora", 0, &cfg->use_rslora, r->what, ""));
    MMT_TRY(mmt_json_get_bool(r->obj, "use_dora", 0, &cfg->use_dora, r->what, ""));
    const char *bias = "none";
    MMT_TRY(mmt_json_get_string(r->obj, "bias", "none", &bias, r->what, ""));
    if (strcmp(bias, "none") == 0) cfg->bias = MMT_LORA_BIAS_NONE;
    else if (strcmp(bias, "all") == 0) cfg->bias = MMT_LORA_BIAS_ALL;
    else if (strcmp(bias, "lora_only") == 0) cfg->bias = MMT_LORA_BIAS_LORA_ONLY;
    else
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: bias: \"%s\" is not one of none, all, lora_only",
                        r->what, bias);
    MMT_TRY(read_init_lora_weights(r, cfg));
    MMT_TRY(read_layers_to_transform(r, cfg));
    MMT_TRY(read_names(r, "layers_pattern", 1, &cfg->layers_pattern));
    MMT_TRY(read_patterns(r, "rank_pattern", 1, &cfg->rank_pattern, &cfg->n_rank_pattern));
    MMT_TRY(read_patterns(r, "alpha_pattern", 0, &cfg->alpha_pattern, &cfg->n_alpha_pattern));
    for (size_t i = 0; i < sizeof LORA_UNSUPPORTED_KEYS / sizeof *LORA_UNSUPPORTED_KEYS; i++)
        MMT_TRY(require_default(r, LORA_UNSUPPORTED_KEYS[i]));
    return MMT_OK;
}

static mmt_status read_prompt(reader *r, mmt_peft_config *cfg) {
    static const char *const keys[] = {"num_virtual_tokens", "token_dim", "num_transformer_submodules",
                                       "num_attention_heads", "num_layers"};
    int64_t *fields[] = {&cfg->num_virtual_tokens, &cfg->token_dim, &cfg->num_transformer_submodules,
                         &cfg->num_attention_heads, &cfg->num_layers};
    for (int i = 0; i < 5; i++) {
        MMT_TRY(mmt_json_get_int(r->obj, keys[i], 0, fields[i], r->what, ""));
        if (*fields[i] < 0)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: %lld is negative", r->what, keys[i],
                            (long long)*fields[i]);
    }
    if (cfg->peft_type == MMT_PEFT_PROMPT_TUNING) {
        MMT_TRY(read_string(r, "prompt_tuning_init", &cfg->prompt_tuning_init));
        MMT_TRY(read_string(r, "prompt_tuning_init_text", &cfg->prompt_tuning_init_text));
        return read_string(r, "tokenizer_name_or_path", &cfg->tokenizer_name_or_path);
    }
    MMT_TRY(mmt_json_get_int(r->obj, "encoder_hidden_size", 0, &cfg->encoder_hidden_size, r->what, ""));
    MMT_TRY(mmt_json_get_bool(r->obj, "prefix_projection", 0, &cfg->prefix_projection, r->what, ""));
    return read_string(r, "init_weights", &cfg->prefix_init_weights);
}

mmt_status mmt_peft_config_from_json(const mmt_json *obj, const char *what, mmt_peft_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (!obj || obj->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object", what);
    const char *type_name = NULL;
    MMT_TRY(mmt_json_get_string(obj, "peft_type", NULL, &type_name, what, ""));
    if (!type_name)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: peft_type is missing (PEFT requires it)", what);
    mmt_peft_type type;
    if (!peft_type_parse(type_name, &type))
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: peft_type \"%s\" is not supported by mmtune (LORA, IA3, PROMPT_TUNING, PREFIX_TUNING)",
                        what, type_name);
    reader r = {obj, what};
    mmt_status s = peft_defaults(cfg, type);
    if (s == MMT_OK && what && !(cfg->source = mmt_strdup(what))) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = read_common(&r, cfg);
    if (s == MMT_OK && (type == MMT_PEFT_LORA || type == MMT_PEFT_IA3)) {
        s = read_names(&r, "target_modules", 1, &cfg->target_modules);
        if (s == MMT_OK) s = read_names(&r, "exclude_modules", 1, &cfg->exclude_modules);
        if (s == MMT_OK) s = mmt_json_get_bool(obj, "fan_in_fan_out", 0, &cfg->fan_in_fan_out, what, "");
        if (s == MMT_OK) s = split_scope(cfg);
    }
    if (s == MMT_OK && type == MMT_PEFT_LORA) s = read_lora(&r, cfg);
    if (s == MMT_OK && type == MMT_PEFT_IA3) {
        s = read_names(&r, "feedforward_modules", 1, &cfg->feedforward_modules);
        if (s == MMT_OK) s = mmt_json_get_bool(obj, "init_ia3_weights", 1, &cfg->init_ia3_weights, what, "");
    }
    if (s == MMT_OK && (type == MMT_PEFT_PROMPT_TUNING || type == MMT_PEFT_PREFIX_TUNING))
        s = read_prompt(&r, cfg);
    if (s == MMT_OK) s = mmt_peft_config_validate(cfg, what);
    if (s != MMT_OK) mmt_peft_config_free(cfg);
    return s;
}

static int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

mmt_status mmt_peft_config_load(const char *path, mmt_peft_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char *file = is_directory(path) ? mmt_path_join(path, "adapter_config.json") : mmt_strdup(path);
    if (!file) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_json_doc *doc = NULL;
    mmt_status s = mmt_json_parse_file(file, &doc);
    if (s == MMT_OK) s = mmt_peft_config_from_json(mmt_json_root(doc), file, cfg);
    mmt_json_free(doc);
    mmt_free(file);
    return s;
}

mmt_status mmt_peft_config_fill_from_model(mmt_peft_config *cfg, const mmt_model_dims *model) {
    if (cfg->peft_type != MMT_PEFT_PROMPT_TUNING && cfg->peft_type != MMT_PEFT_PREFIX_TUNING) return MMT_OK;
    if (!model->text.present)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s needs a text tower; this model has only a vision tower",
                        mmt_peft_type_name(cfg->peft_type));
    if (cfg->num_layers <= 0) cfg->num_layers = model->text.layers;
    if (cfg->token_dim <= 0) cfg->token_dim = model->text.hidden;
    if (cfg->num_attention_heads <= 0) cfg->num_attention_heads = model->text.heads;
    if (cfg->num_transformer_submodules <= 0) cfg->num_transformer_submodules = 1;
    if (cfg->peft_type == MMT_PEFT_PREFIX_TUNING && cfg->encoder_hidden_size <= 0)
        cfg->encoder_hidden_size = cfg->token_dim;
    return MMT_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Checks                                                                             */

static int names_contains(const mmt_peft_names *names, const char *s) {
    for (int64_t i = 0; i < names->n; i++)
        if (strcmp(names->items[i], s) == 0) return 1;
    return 0;
}

mmt_status mmt_peft_config_validate(const mmt_peft_config *cfg, const char *what) {
    int prompt = cfg->peft_type == MMT_PEFT_PROMPT_TUNING || cfg->peft_type == MMT_PEFT_PREFIX_TUNING;
    if (cfg->task_type) {
        int known = 0;
        for (size_t i = 0; i < sizeof TASK_TYPES / sizeof *TASK_TYPES; i++)
            known |= strcmp(cfg->task_type, TASK_TYPES[i]) == 0;
        if (!known)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: task_type: \"%s\" is not a PEFT task type", what,
                            cfg->task_type);
    }
    if (cfg->modules_to_save.kind == MMT_PEFT_NAMES_REGEX)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: modules_to_save: must be a list of names", what);
    if (prompt) {
        if (cfg->num_virtual_tokens <= 0)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: num_virtual_tokens: must be set to a positive number", what);
        if (cfg->scope == MMT_SCOPE_VISION)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "%s: %s works on the text tower only (PEFT prepends to the text embeddings); "
                            "scope \"vision\" is not possible", what, mmt_peft_type_name(cfg->peft_type));
        if (cfg->prefix_init_weights && strcmp(cfg->prefix_init_weights, "zero") != 0)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: init_weights: \"%s\" is not null or \"zero\"", what,
                            cfg->prefix_init_weights);
        return MMT_OK;
    }
    if (cfg->peft_type == MMT_PEFT_LORA) {
        if (cfg->r <= 0)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: r: %lld is not a positive integer", what, (long long)cfg->r);
        if (!isfinite(cfg->lora_alpha))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: lora_alpha: not a finite number", what);
        if (!(cfg->lora_dropout >= 0 && cfg->lora_dropout <= 1))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: lora_dropout: %g is outside [0, 1]", what, cfg->lora_dropout);
        /* the values become int64_t ranks: 2^63 (INT64_MAX read as a double) would not fit */
        for (int64_t i = 0; i < cfg->n_rank_pattern; i++)
            if (!(cfg->rank_pattern[i].value >= 1 && cfg->rank_pattern[i].value < 9223372036854775808.0) ||
                cfg->rank_pattern[i].value != floor(cfg->rank_pattern[i].value))
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: rank_pattern.%s: %g is not a positive integer below 2^63", what,
                                cfg->rank_pattern[i].key, cfg->rank_pattern[i].value);
        for (int64_t i = 0; i < cfg->n_alpha_pattern; i++)
            if (!isfinite(cfg->alpha_pattern[i].value))
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: alpha_pattern.%s: not a finite number", what,
                                cfg->alpha_pattern[i].key);
        /* LoraConfig.__post_init__ */
        if (cfg->target_modules.kind == MMT_PEFT_NAMES_REGEX && cfg->layers_to_transform_kind)
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: layers_to_transform cannot be used when target_modules is a string (a regex "
                            "or \"all-linear\"); PEFT refuses this", what);
        if (cfg->target_modules.kind == MMT_PEFT_NAMES_REGEX && cfg->layers_pattern.kind != MMT_PEFT_NAMES_NONE)
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: layers_pattern cannot be used when target_modules is a string; PEFT refuses this", what);
        int pattern_set = (cfg->layers_pattern.kind == MMT_PEFT_NAMES_REGEX && cfg->layers_pattern.regex[0]) ||
                          (cfg->layers_pattern.kind == MMT_PEFT_NAMES_LIST && cfg->layers_pattern.n > 0);
        if (pattern_set && !cfg->layers_to_transform_kind)
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: layers_pattern is set, so layers_to_transform must be too (PEFT refuses this)", what);
    }
    if (cfg->peft_type == MMT_PEFT_IA3 && cfg->feedforward_modules.kind == MMT_PEFT_NAMES_LIST &&
        cfg->target_modules.kind == MMT_PEFT_NAMES_LIST) {
        for (int64_t i = 0; i < cfg->feedforward_modules.n; i++)
            if (!names_contains(&cfg->target_modules, cfg->feedforward_modules.items[i]))
                return mmt_fail(MMT_STATUS_BAD_FORMAT,
                                "%s: feedforward_modules: \"%s\" is not in target_modules (PEFT requires a subset)",
                                what, cfg->feedforward_modules.items[i]);
    }
    return MMT_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Writing                                                                            */

static void append(mmt_strbuf *b, const char *s) { mmt_strbuf_append(b, s, strlen(s)); }

/* Shortest text that reads back as the same double (Python's repr); float_style adds ".0"
 * to integral values, as Python writes a float. */
static void format_number(char *buf, size_t size, double v, int float_style) {
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, size, "%.*g", precision, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (float_style && !strpbrk(buf, ".eEn")) strncat(buf, ".0", size - strlen(buf) - 1);
}

typedef struct entry {
    const char *key;
    char *value; /* owned JSON text */
} entry;

typedef struct writer {
    entry items[64];
    int n;
    int failed;
} writer;

/* Takes the text out of b (which must not have failed) as the value of key. */
static void put(writer *w, const char *key, mmt_strbuf *b) {
    if (b->failed || w->n == (int)(sizeof w->items / sizeof *w->items)) {
        w->failed = 1;
        mmt_strbuf_free(b);
        return;
    }
    w->items[w->n].key = key;
    w->items[w->n].value = b->data ? b->data : mmt_strdup("");
    if (!w->items[w->n].value) w->failed = 1;
    w->n++;
    memset(b, 0, sizeof *b);
}

static void put_raw(writer *w, const char *key, const char *text) {
    mmt_strbuf b = {0};
    append(&b, text);
    put(w, key, &b);
}

static void put_string(writer *w, const char *key, const char *s) {
    if (!s) {
        put_raw(w, key, "null");
        return;
    }
    mmt_strbuf b = {0};
    mmt_strbuf_json_string(&b, s, strlen(s));
    put(w, key, &b);
}

static void put_bool(writer *w, const char *key, int v) { put_raw(w, key, v ? "true" : "false"); }

static void put_int_or_null(writer *w, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    put_raw(w, key, v > 0 ? buf : "null");
}

static void put_number(writer *w, const char *key, double v, int float_style) {
    char buf[40];
    format_number(buf, sizeof buf, v, float_style);
    put_raw(w, key, buf);
}

/* A list of strings in json.dumps(indent=2) layout at nesting depth 1. */
static void append_string_list(mmt_strbuf *b, char *const *items, int64_t n) {
    if (n == 0) {
        append(b, "[]");
        return;
    }
    append(b, "[\n");
    for (int64_t i = 0; i < n; i++) {
        append(b, "    ");
        mmt_strbuf_json_string(b, items[i], strlen(items[i]));
        append(b, i + 1 < n ? ",\n" : "\n");
    }
    append(b, "  ]");
}

static void put_names(writer *w, const char *key, const mmt_peft_names *names) {
    if (names->kind == MMT_PEFT_NAMES_NONE) {
        put_raw(w, key, "null");
        return;
    }
    if (names->kind == MMT_PEFT_NAMES_REGEX) {
        put_string(w, key, names->regex);
        return;
    }
    mmt_strbuf b = {0};
    append_string_list(&b, names->items, names->n);
    put(w, key, &b);
}

static void put_patterns(writer *w, const char *key, const mmt_peft_pattern *list, int64_t n) {
    mmt_strbuf b = {0};
    if (n == 0) {
        append(&b, "{}");
    } else {
        append(&b, "{\n");
        for (int64_t i = 0; i < n; i++) {
            char num[40];
            format_number(num, sizeof num, list[i].value, 0);
            append(&b, "    ");
            mmt_strbuf_json_string(&b, list[i].key, strlen(list[i].key));
            mmt_strbuf_printf(&b, ": %s%s", num, i + 1 < n ? ",\n" : "\n");
        }
        append(&b, "  }");
    }
    put(w, key, &b);
}

/* Python's re.escape for the ASCII names PEFT configs hold. */
static void append_escaped(mmt_strbuf *b, const char *s) {
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              (unsigned char)*s >= 128))
            append(b, "\\");
        mmt_strbuf_append(b, s, 1);
    }
}

/* exclude_modules with the scope folded in (see peft_config.h). */
static void put_exclude(writer *w, const mmt_peft_config *cfg) {
    const char *scope = mmt_peft_scope_regex(cfg->scope);
    const mmt_peft_names *user = &cfg->exclude_modules;
    if (!scope) {
        put_names(w, "exclude_modules", user);
        return;
    }
    mmt_strbuf b = {0};
    if (user->kind == MMT_PEFT_NAMES_REGEX) {
        mmt_strbuf_printf(&b, "(?:%s)|", user->regex);
    } else if (user->kind == MMT_PEFT_NAMES_LIST && user->n > 0) {
        /* "x in list or key.endswith('.' + x)" == fullmatch("(?:.*\.)?(?:x|y)") */
        append(&b, "(?:(?:.*\\.)?(?:");
        for (int64_t i = 0; i < user->n; i++) {
            if (i) append(&b, "|");
            append_escaped(&b, user->items[i]);
        }
        append(&b, "))|");
    }
    append(&b, scope);
    if (b.failed) {
        w->failed = 1;
        mmt_strbuf_free(&b);
        return;
    }
    put_string(w, "exclude_modules", b.data);
    mmt_strbuf_free(&b);
}

static void put_layers_to_transform(writer *w, const mmt_peft_config *cfg) {
    mmt_strbuf b = {0};
    if (cfg->layers_to_transform_kind == 0) {
        append(&b, "null");
    } else if (cfg->layers_to_transform_kind == 1) {
        mmt_strbuf_printf(&b, "%lld", (long long)cfg->layers_to_transform[0]);
    } else if (cfg->n_layers_to_transform == 0) {
        append(&b, "[]");
    } else {
        append(&b, "[\n");
        for (int64_t i = 0; i < cfg->n_layers_to_transform; i++)
            mmt_strbuf_printf(&b, "    %lld%s", (long long)cfg->layers_to_transform[i],
                              i + 1 < cfg->n_layers_to_transform ? ",\n" : "\n");
        append(&b, "  ]");
    }
    put(w, "layers_to_transform", &b);
}

static void put_auto_mapping(writer *w, const mmt_peft_config *cfg) {
    if (!cfg->base_model_class) {
        put_raw(w, "auto_mapping", "null");
        return;
    }
    const char *lib = cfg->parent_library ? cfg->parent_library : "transformers.models.clip.modeling_clip";
    mmt_strbuf b = {0};
    append(&b, "{\n    \"base_model_class\": ");
    mmt_strbuf_json_string(&b, cfg->base_model_class, strlen(cfg->base_model_class));
    append(&b, ",\n    \"parent_library\": ");
    mmt_strbuf_json_string(&b, lib, strlen(lib));
    append(&b, "\n  }");
    put(w, "auto_mapping", &b);
}

static void put_fields(writer *w, const mmt_peft_config *cfg) {
    put_string(w, "peft_type", mmt_peft_type_name(cfg->peft_type));
    put_string(w, "task_type", cfg->task_type);
    put_string(w, "base_model_name_or_path", cfg->base_model_name_or_path);
    put_string(w, "revision", cfg->revision);
    put_bool(w, "inference_mode", cfg->inference_mode);
    put_auto_mapping(w, cfg);
    put_names(w, "modules_to_save", &cfg->modules_to_save);
    if (cfg->peft_type == MMT_PEFT_LORA || cfg->peft_type == MMT_PEFT_IA3) {
        put_names(w, "target_modules", &cfg->target_modules);
        put_exclude(w, cfg);
        put_bool(w, "fan_in_fan_out", cfg->fan_in_fan_out);
    }
    if (cfg->peft_type == MMT_PEFT_LORA) {
        put_int_or_null(w, "r", cfg->r);
        put_number(w, "lora_alpha", cfg->lora_alpha, 0);
        put_number(w, "lora_dropout", cfg->lora_dropout, 1);
        put_bool(w, "use_rslora", cfg->use_rslora);
        put_bool(w, "use_dora", cfg->use_dora);
        put_string(w, "bias", bias_name(cfg->bias));
        if (cfg->init_lora_weights_str) put_string(w, "init_lora_weights", cfg->init_lora_weights_str);
        else put_bool(w, "init_lora_weights", cfg->init_lora_weights);
        put_layers_to_transform(w, cfg);
        put_names(w, "layers_pattern", &cfg->layers_pattern);
        put_patterns(w, "rank_pattern", cfg->rank_pattern, cfg->n_rank_pattern);
        put_patterns(w, "alpha_pattern", cfg->alpha_pattern, cfg->n_alpha_pattern);
    }
    if (cfg->peft_type == MMT_PEFT_IA3) {
        put_names(w, "feedforward_modules", &cfg->feedforward_modules);
        put_bool(w, "init_ia3_weights", cfg->init_ia3_weights);
    }
    if (cfg->peft_type == MMT_PEFT_PROMPT_TUNING || cfg->peft_type == MMT_PEFT_PREFIX_TUNING) {
        put_int_or_null(w, "num_virtual_tokens", cfg->num_virtual_tokens);
        put_int_or_null(w, "token_dim", cfg->token_dim);
        put_int_or_null(w, "num_transformer_submodules", cfg->num_transformer_submodules);
        put_int_or_null(w, "num_attention_heads", cfg->num_attention_heads);
        put_int_or_null(w, "num_layers", cfg->num_layers);
    }
    if (cfg->peft_type == MMT_PEFT_PROMPT_TUNING) {
        put_string(w, "prompt_tuning_init", cfg->prompt_tuning_init ? cfg->prompt_tuning_init : "RANDOM");
        put_string(w, "prompt_tuning_init_text", cfg->prompt_tuning_init_text);
        put_string(w, "tokenizer_name_or_path", cfg->tokenizer_name_or_path);
    }
    if (cfg->peft_type == MMT_PEFT_PREFIX_TUNING) {
        put_int_or_null(w, "encoder_hidden_size", cfg->encoder_hidden_size);
        put_bool(w, "prefix_projection", cfg->prefix_projection);
        put_string(w, "init_weights", cfg->prefix_init_weights);
    }
}

static int entry_compare(const void *a, const void *b) {
    return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

mmt_status mmt_peft_config_to_json(const mmt_peft_config *cfg, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    MMT_TRY(mmt_peft_config_validate(cfg, "adapter config"));
    /* PEFT's IA3Config has no such key: the file would silently adapt every layer. Callers
     * name the chosen modules in target_modules instead (clip_task.c ia3_pin_layers). */
    if (cfg->peft_type == MMT_PEFT_IA3 && cfg->layers_to_transform_kind != 0)
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "adapter config: IA3 cannot be saved with layers_to_transform (PEFT's IA3Config "
                        "has no such key); list the adapted modules in target_modules instead");
    writer w = {0};
    put_fields(&w, cfg);
    mmt_strbuf b = {0};
    if (!w.failed) {
        qsort(w.items, (size_t)w.n, sizeof *w.items, entry_compare); /* sort_keys=True */
        append(&b, "{\n");
        for (int i = 0; i < w.n; i++) {
            append(&b, "  ");
            mmt_strbuf_json_string(&b, w.items[i].key, strlen(w.items[i].key));
            mmt_strbuf_printf(&b, ": %s%s", w.items[i].value, i + 1 < w.n ? ",\n" : "\n");
        }
        append(&b, "}");
    }
    for (int i = 0; i < w.n; i++) mmt_free(w.items[i].value);
    if (w.failed || b.failed) {
        mmt_strbuf_free(&b);
        return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "out of memory writing an adapter config");
    }
    *out = b.data;
    *len = b.len;
    return MMT_OK;
}

mmt_status mmt_peft_config_save(const mmt_peft_config *cfg, const char *path) {
    char *text = NULL;
    size_t len = 0;
    MMT_TRY(mmt_peft_config_to_json(cfg, &text, &len));
    char *file = is_directory(path) ? mmt_path_join(path, "adapter_config.json") : mmt_strdup(path);
    mmt_status s = file ? mmt_file_write_atomic(file, text, len) : MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(file);
    mmt_free(text);
    return s;
}
