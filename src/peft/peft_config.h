/*
 * peft_config.h — adapter_config.json as Hugging Face PEFT 0.21 reads and writes it.
 *
 * Four methods: LoRA (with rsLoRA, DoRA, rank/alpha patterns), IA3, prompt tuning and prefix
 * tuning. Keys, types and defaults are PEFT's (peft/config.py, tuners/{lora,ia3,
 * prompt_tuning,prefix_tuning}/config.py); a key absent from the file takes PEFT's default.
 *
 * Reading keeps what mmtune needs and ignores every other key, as PEFT itself drops keys it
 * does not know. A known key of the wrong type is a one-line error naming the file and the
 * key ("adapter_config.json: r: expected an integer, got a string"). Keys that change the
 * adapter's math in ways mmtune does not implement (lora_bias, use_qalora, target_parameters,
 * layer_replication, alora_invocation_tokens, trainable_token_indices, use_bdlora, ...) are
 * refused with MMT_STATUS_UNSUPPORTED when set to anything but their default, rather than
 * silently computing something else. PEFT's own __post_init__ checks are repeated
 * (layers_to_transform needs a list target_modules, feedforward_modules must be a subset of
 * target_modules, ...).
 *
 * Writing produces what PeftConfig.save_pretrained() would (keys sorted, indent 2) and only
 * keys PEFT 0.21 knows, because PEFT warns about unknown keys ("Unexpected keyword arguments
 * ... these are ignored"). The one mmtune-only setting, the tower scope, is therefore
 * written in PEFT terms: it is folded into exclude_modules as a regex that excludes the other
 * tower, which makes PEFT select exactly the modules mmtune selects, and read back from that
 * regex (docs/peft_format.md). rank_pattern / alpha_pattern keep their order (the first
 * matching key wins in PEFT, and PEFT's own writer sorts them, which can change the result).
 * Writes are atomic (temp file, fsync, rename).
 */
#ifndef MMT_PEFT_PEFT_CONFIG_H
#define MMT_PEFT_PEFT_CONFIG_H

#include <stdint.h>

#include "core/json.h"
#include "core/status.h"
#include "nn/module.h"

typedef enum mmt_peft_type {
    MMT_PEFT_LORA,
    MMT_PEFT_IA3,
    MMT_PEFT_PROMPT_TUNING,
    MMT_PEFT_PREFIX_TUNING
} mmt_peft_type;

/* Which tower LoRA / IA3 may touch, applied after PEFT's own matching rules (mmtune only). */
typedef enum mmt_peft_scope { MMT_SCOPE_BOTH, MMT_SCOPE_TEXT, MMT_SCOPE_VISION } mmt_peft_scope;

/* A module selector as PEFT stores one: null, a regex string (re.fullmatch), or a list of
 * names (each matching a module exactly or as a dotted suffix). */
typedef enum mmt_peft_names_kind {
    MMT_PEFT_NAMES_NONE,
    MMT_PEFT_NAMES_REGEX,
    MMT_PEFT_NAMES_LIST
} mmt_peft_names_kind;

typedef struct mmt_peft_names {
    mmt_peft_names_kind kind;
    char *regex;  /* owned; REGEX only ("all-linear" is stored here as written) */
    char **items; /* owned array of owned strings; LIST only (n may be 0) */
    int64_t n;
} mmt_peft_names;

/* One rank_pattern / alpha_pattern entry: a regex key and its value, in file order. */
typedef struct mmt_peft_pattern {
    char *key; /* owned */
    double value;
} mmt_peft_pattern;

typedef enum mmt_lora_bias { MMT_LORA_BIAS_NONE, MMT_LORA_BIAS_ALL, MMT_LORA_BIAS_LORA_ONLY } mmt_lora_bias;

typedef struct mmt_peft_config {
    mmt_peft_type peft_type;
    /* Owned or NULL: where the config was read from (mmt_peft_config_from_json's `what`, the
     * file's path for mmt_peft_config_load). Not written to disk; later errors about the
     * config (mmt_peft_select: targets matching nothing, ...) name it, so that every error
     * about an adapter names its file. NULL for a config made in code. */
    char *source;
    char *task_type;               /* owned or NULL (JSON null); a TaskType value */
    char *base_model_name_or_path; /* owned or NULL */
    char *revision;                /* owned or NULL */
    int inference_mode;
    /* auto_mapping, which AutoPeftModel uses to find the base class when task_type is null:
     * base_model_class "CLIPModel" (or ...WithProjection), parent_library
     * "transformers.models.clip.modeling_clip". Owned or NULL (auto_mapping null). */
    char *base_model_class, *parent_library;

    /* LoRA and IA3 */
    mmt_peft_names target_modules;  /* NONE is an error when matching: PEFT has no CLIP default */
    mmt_peft_names exclude_modules; /* without the scope regex (see scope) */
    int fan_in_fan_out;
    mmt_peft_scope scope;           /* mmtune only; stored in exclude_modules on disk */
    /* every method: modules trained in full and saved whole (list only) */
    mmt_peft_names modules_to_save;

    /* LoRA */
    int64_t r;
    double lora_alpha;
    double lora_dropout;
    int use_rslora, use_dora;
    mmt_lora_bias bias;
    int init_lora_weights;          /* true / false, when init_lora_weights_str is NULL */
    char *init_lora_weights_str;    /* owned; "gaussian", "pissa", ... or NULL for a bool */
    /* layers_to_transform: NULL/absent (kind 0), one int (1) or a list (2) */
    int layers_to_transform_kind;
    int64_t *layers_to_transform;   /* owned */
    int64_t n_layers_to_transform;
    mmt_peft_names layers_pattern;  /* NONE, a single name (REGEX kind) or a list */
    mmt_peft_pattern *rank_pattern; /* owned; values are integers */
    int64_t n_rank_pattern;
    mmt_peft_pattern *alpha_pattern; /* owned */
    int64_t n_alpha_pattern;

    /* IA3 */
    mmt_peft_names feedforward_modules; /* PEFT needs it set (may be an empty list) for CLIP */
    int init_ia3_weights;

    /* prompt tuning and prefix tuning; 0 = null (filled from the model by PEFT) */
    int64_t num_virtual_tokens, token_dim, num_transformer_submodules, num_attention_heads,
        num_layers;
    char *prompt_tuning_init;      /* owned; "RANDOM" (default), "SAMPLE_VOCAB", "TEXT" */
    char *prompt_tuning_init_text; /* owned or NULL */
    char *tokenizer_name_or_path;  /* owned or NULL */
    int64_t encoder_hidden_size;   /* prefix tuning; 0 = null */
    int prefix_projection;
    char *prefix_init_weights;     /* owned; NULL or "zero" (PrefixTuningConfig.init_weights) */
} mmt_peft_config;

/* PEFT's defaults for the type (LoRA: r 8, alpha 8, ...). IA3 gets feedforward_modules = []
 * and prompt methods task_type FEATURE_EXTRACTION, as PEFT needs for a CLIPModel. */
mmt_status mmt_peft_config_default(mmt_peft_config *cfg, mmt_peft_type type);
/* Frees what cfg owns and zeroes it; safe on a zeroed or already freed config. */
void mmt_peft_config_free(mmt_peft_config *cfg);
/* Deep copy into a zeroed or freed dst. */
mmt_status mmt_peft_config_copy(mmt_peft_config *dst, const mmt_peft_config *src);

/* From a parsed JSON object (`what` names its source in errors and becomes cfg->source). */
mmt_status mmt_peft_config_from_json(const mmt_json *obj, const char *what, mmt_peft_config *cfg);
/* Reads a file: an adapter_config.json, or a folder holding one. */
mmt_status mmt_peft_config_load(const char *path, mmt_peft_config *cfg);
/* The JSON text PEFT would write (mmt_malloc'd, NUL-terminated). Checks cfg first. */
mmt_status mmt_peft_config_to_json(const mmt_peft_config *cfg, char **out, size_t *len);
/* Writes path (an adapter_config.json path or a folder) atomically. */
mmt_status mmt_peft_config_save(const mmt_peft_config *cfg, const char *path);
/* The consistency checks PEFT's __post_init__ makes; `what` prefixes the message. */
mmt_status mmt_peft_config_validate(const mmt_peft_config *cfg, const char *what);

/* What PEFT fills from the model for prompt / prefix tuning (_prepare_prompt_learning_config,
 * PeftModel._setup_prompt_encoder): token_dim, num_layers, num_attention_heads from the text
 * tower, num_transformer_submodules 1, and for prefix tuning encoder_hidden_size = token_dim.
 * Values already set are kept; LoRA / IA3 configs are left alone. */
mmt_status mmt_peft_config_fill_from_model(mmt_peft_config *cfg, const mmt_model_dims *model);

/* Setters that copy their arguments (the old value is freed). */
mmt_status mmt_peft_names_set_list(mmt_peft_names *names, const char *const *items, int64_t n);
mmt_status mmt_peft_names_set_regex(mmt_peft_names *names, const char *regex);
void mmt_peft_names_clear(mmt_peft_names *names);
mmt_status mmt_peft_config_add_rank_pattern(mmt_peft_config *cfg, const char *key, int64_t r);
mmt_status mmt_peft_config_add_alpha_pattern(mmt_peft_config *cfg, const char *key, double alpha);

/* "LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING" */
const char *mmt_peft_type_name(mmt_peft_type type);
/* "both", "text", "vision"; and back (0 on an unknown name). */
const char *mmt_peft_scope_name(mmt_peft_scope scope);
int mmt_peft_scope_parse(const char *name, mmt_peft_scope *scope);
/* The exclude_modules regex that stands for a scope on disk (NULL for BOTH). */
const char *mmt_peft_scope_regex(mmt_peft_scope scope);

#endif
