/*
 * target.h — which modules a PEFT config adapts, by PEFT 0.21's own rules.
 *
 * Given a config and a model's module list (nn/module.h), returns the modules
 * PEFT's get_peft_model() would wrap, with the rank / alpha PEFT would give each, and the
 * modules it would wrap for modules_to_save. The rules (peft/tuners/tuners_utils.py
 * check_target_module_exists and inject_adapter, lora/model.py _create_and_replace, ia3/
 * model.py, utils/other.py get_pattern_key and _set_trainable):
 *
 *  - the root module ("") is never a target;
 *  - exclude_modules first: a string is re.fullmatch'ed, a list item matches the name exactly
 *    or as a dotted suffix ("q_proj" matches "...self_attn.q_proj", not "...xq_proj");
 *  - a module at or under a modules_to_save entry m (re.match("(^|.*\.)m($|\..*)")) is never
 *    a target;
 *  - target_modules: a string is re.fullmatch'ed ("all-linear", any case, first becomes the
 *    set of every nn.Linear — for CLIP that includes both projections, since CLIPModel has no
 *    output embedding); a list item matches exactly or as a dotted suffix; for a suffix
 *    match (not an exact one) layers_to_transform then needs the layer index taken from the
 *    first ".<layers_pattern>.<N>." of the name (no pattern: the first "<segment>.<N>."),
 *    which in CLIP hits both towers' encoder layers N;
 *  - LoRA rank / alpha: the first rank_pattern / alpha_pattern key (in file order) with
 *    re.match("(.*\.)?(key)$", name) gives the value, else r / lora_alpha; scaling =
 *    alpha / r, or alpha / sqrt(r) with use_rslora;
 *  - IA3 feedforward: feedforward_modules as a string is re.fullmatch'ed; a list item
 *    matches when the name merely ends with it (no dot needed: PEFT uses endswith here);
 *  - modules_to_save wraps every module whose name ends with an entry (plain endswith);
 *  - the mmtune-only scope drops the other tower's modules; on disk it is part of
 *    exclude_modules, so it is applied where exclude_modules is;
 *  - a target that is not Linear / Conv2d / Embedding (LoRA) or Linear / Conv2d (IA3) is an
 *    error, as in PEFT ("Target module LayerNorm(...) is not supported");
 *  - nothing selected is an error whose message lists the module names one could use.
 *
 * Checked against what PEFT actually wrapped: tests/fixtures/peft/cases.json.
 * Error messages start with the config's source (cfg->source: the adapter_config.json it was
 * read from) when it has one, so that an error about an adapter names its folder.
 */
#ifndef MMT_PEFT_TARGET_H
#define MMT_PEFT_TARGET_H

#include <stdint.h>

#include "core/status.h"
#include "nn/module.h"
#include "peft/peft_config.h"

typedef struct mmt_peft_target {
    int64_t module;  /* index into the module list */
    int64_t r;       /* LoRA rank after rank_pattern; 0 for IA3 */
    double alpha;    /* LoRA alpha after alpha_pattern; 0 for IA3 */
    double scaling;  /* LoRA: alpha / r, or alpha / sqrt(r) with use_rslora; 0 for IA3 */
    int feedforward; /* IA3: the vector scales the input ([1, in]) instead of the output */
} mmt_peft_target;

typedef struct mmt_peft_targets {
    mmt_peft_target *items; /* owned; in module-list order */
    int64_t n;
    int64_t *saved;         /* owned; modules wrapped by modules_to_save, in module order */
    int64_t n_saved;
} mmt_peft_targets;

/* Fills *out (free with mmt_peft_targets_free). Prompt and prefix tuning select no module
 * (only modules_to_save). */
mmt_status mmt_peft_select(const mmt_peft_config *cfg, const mmt_module_info *modules,
                           int64_t n_modules, mmt_peft_targets *out);
void mmt_peft_targets_free(mmt_peft_targets *targets);

/* The target for module index m, or NULL. */
const mmt_peft_target *mmt_peft_targets_find(const mmt_peft_targets *targets, int64_t m);

#endif
