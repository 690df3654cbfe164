/* target.c — PEFT's module matching (see target.h for the rules and their sources).
 *
 * Every regex PEFT builds by pasting a config value into a larger pattern is built here the
 * same way (string concatenation, no escaping), so odd values behave as they do in PEFT.
 */
#include "peft/target.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/json.h"
#include "peft/target_regex.h"

typedef struct matcher {
    const mmt_peft_config *cfg;
    int all_linear, dummy;
    mmt_regex *target;         /* target_modules as a regex (not all-linear) */
    mmt_regex *exclude;        /* exclude_modules as a regex */
    mmt_regex *scope;          /* the scope's exclude regex */
    mmt_regex *feedforward;    /* IA3 feedforward_modules as a regex */
    mmt_regex **saved;         /* "(^|.*\.)m($|\..*)" per modules_to_save entry */
    mmt_regex **rank, **alpha; /* "(.*\.)?(key)$" per pattern key */
    mmt_regex **layers;        /* each layers_pattern entry alone */
    int64_t n_saved, n_layers;
} matcher;

static void free_array(mmt_regex **list, int64_t n) {
    if (!list) return;
    for (int64_t i = 0; i < n; i++) mmt_regex_free(list[i]);
    mmt_free(list);
}

static void matcher_free(matcher *m) {
    mmt_regex_free(m->target);
    mmt_regex_free(m->exclude);
    mmt_regex_free(m->scope);
    mmt_regex_free(m->feedforward);
    free_array(m->saved, m->n_saved);
    free_array(m->rank, m->cfg ? m->cfg->n_rank_pattern : 0);
    free_array(m->alpha, m->cfg ? m->cfg->n_alpha_pattern : 0);
    free_array(m->layers, m->n_layers);
    memset(m, 0, sizeof *m);
}

/* prefix + middle + suffix, compiled; `what` names the config key in errors. */
static mmt_status compile_wrapped(const char *prefix, const char *middle, const char *suffix,
                                  const char *what, mmt_regex **out) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "%s%s%s", prefix, middle, suffix);
    if (b.failed) {
        mmt_strbuf_free(&b);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    mmt_status s = mmt_regex_compile(b.data, what, out);
    mmt_strbuf_free(&b);
    return s;
}

static mmt_status compile_each(const char *prefix, const char *suffix, const char *what,
                               const char *const *keys, size_t stride, int64_t n, mmt_regex ***out) {
    *out = NULL;
    if (n == 0) return MMT_OK;
    mmt_regex **list = mmt_calloc((size_t)n, sizeof *list);
    if (!list) return MMT_STATUS_OUT_OF_MEMORY;
    *out = list;
    for (int64_t i = 0; i < n; i++) {
        const char *key = *(const char *const *)((const char *)keys + (size_t)i * stride);
        MMT_TRY(compile_wrapped(prefix, key, suffix, what, &list[i]));
    }
    return MMT_OK;
}

static mmt_status matcher_init(matcher *m, const mmt_peft_config *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    const mmt_peft_names *t = &cfg->target_modules;
    if (t->kind == MMT_PEFT_NAMES_REGEX) {
        if (strcasecmp(t->regex, "all-linear") == 0) m->all_linear = 1;
        else if (strcmp(t->regex, "dummy-target-modules") == 0) m->dummy = 1;
        else MMT_TRY(mmt_regex_compile(t->regex, "target_modules", &m->target));
    }
    if (cfg->exclude_modules.kind == MMT_PEFT_NAMES_REGEX)
        MMT_TRY(mmt_regex_compile(cfg->exclude_modules.regex, "exclude_modules", &m->exclude));
    if (cfg->scope != MMT_SCOPE_BOTH)
        MMT_TRY(mmt_regex_compile(mmt_peft_scope_regex(cfg->scope), "scope", &m->scope));
    if (cfg->peft_type == MMT_PEFT_IA3 && cfg->feedforward_modules.kind == MMT_PEFT_NAMES_REGEX)
        MMT_TRY(mmt_regex_compile(cfg->feedforward_modules.regex, "feedforward_modules", &m->feedforward));
    if (cfg->modules_to_save.kind == MMT_PEFT_NAMES_LIST) {
        m->n_saved = cfg->modules_to_save.n;
        MMT_TRY(compile_each("(^|.*\\.)", "($|\\..*)", "modules_to_save",
                             (const char *const *)cfg->modules_to_save.items, sizeof(char *), m->n_saved, &m->saved));
    }
    if (cfg->peft_type == MMT_PEFT_LORA) {
        if (cfg->n_rank_pattern > 0)
            MMT_TRY(compile_each("(.*\\.)?(", ")$", "rank_pattern", (const char *const *)&cfg->rank_pattern[0].key,
                                 sizeof(mmt_peft_pattern), cfg->n_rank_pattern, &m->rank));
        if (cfg->n_alpha_pattern > 0)
            MMT_TRY(compile_each("(.*\\.)?(", ")$", "alpha_pattern", (const char *const *)&cfg->alpha_pattern[0].key,
                                 sizeof(mmt_peft_pattern), cfg->n_alpha_pattern, &m->alpha));
        /* an empty layers_pattern ("" or []) means "any", as in PEFT */
        const mmt_peft_names *lp = &cfg->layers_pattern;
        if (lp->kind == MMT_PEFT_NAMES_REGEX && lp->regex[0]) {
            m->n_layers = 1;
            MMT_TRY(compile_each("", "", "layers_pattern", (const char *const *)&lp->regex, sizeof(char *), 1,
                                 &m->layers));
        } else if (lp->kind == MMT_PEFT_NAMES_LIST) {
            m->n_layers = lp->n;
            MMT_TRY(compile_each("", "", "layers_pattern", (const char *const *)lp->items, sizeof(char *), lp->n,
                                 &m->layers));
        }
    }
    return MMT_OK;
}

/* ---------------------------------------------------------------------------------- */
/* The individual rules                                                               */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return k <= n && memcmp(s + n - k, suffix, k) == 0;
}

/* `key in list or any(key.endswith("." + item))` */
static int list_matches(const mmt_peft_names *names, const char *key) {
    size_t n = strlen(key);
    for (int64_t i = 0; i < names->n; i++) {
        const char *item = names->items[i];
        size_t k = strlen(item);
        if (strcmp(key, item) == 0) return 1;
        if (k < n && key[n - k - 1] == '.' && memcmp(key + n - k, item, k) == 0) return 1;
    }
    return 0;
}

static int list_exact(const mmt_peft_names *names, const char *key) {
    for (int64_t i = 0; i < names->n; i++)
        if (strcmp(key, names->items[i]) == 0) return 1;
    return 0;
}

/* Digits at s followed by '.', as PEFT's "(?P<idx>\d+)\." reads them; -1 if not there. */
static int64_t index_at(const char *s) {
    int64_t v = 0;
    const char *p = s;
    while (isdigit((unsigned char)*p)) {
        if (v < (int64_t)1 << 40) v = v * 10 + (*p - '0');
        p++;
    }
    return p > s && *p == '.' ? v : -1;
}

/* The layer index PEFT finds in key for layers_to_transform, or -1.
 * No layers_pattern: re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key) — the first dot that is
 * followed by one segment and then digits and a dot.
 * With patterns (tried in order, the first that matches wins): re.match(
 * rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key) — the first start (0 or just after a dot)
 * where the pattern fullmatches up to a dot followed by digits and a dot. A pattern that can
 * match different lengths from one start is resolved shortest-first (Python would follow
 * its own backtracking order; no real layers_pattern does this). */
static int64_t layer_index(matcher *m, const char *key) {
    size_t len = strlen(key);
    if (m->n_layers == 0) {
        for (const char *dot = strchr(key, '.'); dot; dot = strchr(dot + 1, '.')) {
            const char *next = strchr(dot + 1, '.');
            if (!next) return -1;
            int64_t idx = index_at(next + 1);
            if (idx >= 0) return idx;
        }
        return -1;
    }
    char buf[1024];
    if (len >= sizeof buf) return -1;
    for (int64_t p = 0; p < m->n_layers; p++) {
        for (size_t start = 0; start <= len; start++) {
            if (start > 0 && key[start - 1] != '.') continue;
            for (size_t end = start; end < len; end++) {
                if (key[end] != '.') continue;
                int64_t idx = index_at(key + end + 1);
                if (idx < 0) continue;
                memcpy(buf, key + start, end - start);
                buf[end - start] = '\0';
                if (mmt_regex_fullmatch(m->layers[p], buf)) return idx;
            }
        }
    }
    return -1;
}

static int in_layers(const mmt_peft_config *cfg, int64_t idx) {
    for (int64_t i = 0; i < cfg->n_layers_to_transform; i++)
        if (cfg->layers_to_transform[i] == idx) return 1;
    return 0;
}

/* check_target_module_exists' target part (after the exclusions). */
static int target_matches(matcher *m, const mmt_module_info *mod) {
    const mmt_peft_config *cfg = m->cfg;
    if (m->all_linear) return mod->kind == MMT_MODULE_LINEAR && !mod->output_head; /* a set of full names: exact */
    if (m->target) return mmt_regex_fullmatch(m->target, mod->name);
    if (list_exact(&cfg->target_modules, mod->name)) return 1; /* skips layers_to_transform */
    if (!list_matches(&cfg->target_modules, mod->name)) return 0;
    int using_layers = cfg->layers_to_transform_kind == 1 ||
                       (cfg->layers_to_transform_kind == 2 && cfg->n_layers_to_transform > 0);
    if (!using_layers) return 1;
    int64_t idx = layer_index(m, mod->name);
    return idx >= 0 && in_layers(cfg, idx);
}

typedef enum verdict { V_UNMATCHED, V_EXCLUDED, V_SCOPED_OUT, V_SAVED, V_TARGET } verdict;

static verdict check_module(matcher *m, const mmt_module_info *mod) {
    const mmt_peft_config *cfg = m->cfg;
    if (m->exclude ? mmt_regex_fullmatch(m->exclude, mod->name)
                   : cfg->exclude_modules.kind == MMT_PEFT_NAMES_LIST && list_matches(&cfg->exclude_modules, mod->name))
        return V_EXCLUDED;
    if (m->scope && mmt_regex_fullmatch(m->scope, mod->name)) return V_SCOPED_OUT;
    for (int64_t i = 0; i < m->n_saved; i++)
        if (mmt_regex_match(m->saved[i], mod->name)) return V_SAVED;
    return target_matches(m, mod) ? V_TARGET : V_UNMATCHED;
}

/* get_pattern_key: the first key in file order whose regex matches, else -1. */
static int64_t pattern_index(mmt_regex **list, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++)
        if (mmt_regex_match(list[i], name)) return i;
    return -1;
}

static int is_feedforward(matcher *m, const char *name) {
    const mmt_peft_names *ff = &m->cfg->feedforward_modules;
    if (m->feedforward) return mmt_regex_fullmatch(m->feedforward, name);
    for (int64_t i = 0; i < ff->n; i++)
        if (ends_with(name, ff->items[i])) return 1;
    return 0;
}

static int kind_supported(mmt_peft_type type, mmt_module_kind kind) {
    if (kind == MMT_MODULE_LINEAR || kind == MMT_MODULE_CONV2D) return 1;
    return type == MMT_PEFT_LORA && kind == MMT_MODULE_EMBEDDING;
}

/* ---------------------------------------------------------------------------------- */
/* Messages                                                                           */

static void append(mmt_strbuf *b, const char *s) { mmt_strbuf_append(b, s, strlen(s)); }

/* target_modules as written: "all-linear", a "regex" or ["a", "b"]. */
static void describe_targets(mmt_strbuf *b, const mmt_peft_names *t) {
    if (t->kind == MMT_PEFT_NAMES_REGEX) {
        mmt_strbuf_json_string(b, t->regex, strlen(t->regex));
        return;
    }
    append(b, "[");
    for (int64_t i = 0; i < t->n; i++) {
        if (i) append(b, ", ");
        mmt_strbuf_json_string(b, t->items[i], strlen(t->items[i]));
    }
    append(b, "]");
}

static const char *last_segment(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

/* The distinct last name segments of the modules this method can adapt, in model order
 * ("k_proj, v_proj, q_proj, out_proj, fc1, fc2, ..."), and one full name as an example. */
static void describe_available(mmt_strbuf *b, mmt_peft_type type, const mmt_module_info *mods, int64_t n) {
    int first = 1;
    const char *example = NULL;
    for (int64_t i = 0; i < n; i++) {
        if (!kind_supported(type, mods[i].kind)) continue;
        const char *seg = last_segment(mods[i].name);
        int seen = 0;
        for (int64_t j = 0; j < i && !seen; j++)
            seen = kind_supported(type, mods[j].kind) && strcmp(last_segment(mods[j].name), seg) == 0;
        if (seen) continue;
        mmt_strbuf_printf(b, "%s%s", first ? "" : ", ", seg);
        first = 0;
        if (!example && mods[i].layer >= 0) example = mods[i].name;
    }
    if (example) mmt_strbuf_printf(b, " (full names look like %s)", example);
}

static void describe_layers(mmt_strbuf *b, const mmt_peft_config *cfg) {
    if (!cfg->layers_to_transform_kind) return;
    append(b, "; layers_to_transform is [");
    for (int64_t i = 0; i < cfg->n_layers_to_transform; i++)
        mmt_strbuf_printf(b, "%s%lld", i ? ", " : "", (long long)cfg->layers_to_transform[i]);
    append(b, "]");
}

static mmt_status fail_with(mmt_strbuf *b, mmt_status code) {
    mmt_status s = b->failed ? mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "out of memory describing a PEFT error")
                             : mmt_fail(code, "%s", b->data);
    mmt_strbuf_free(b);
    return s;
}

/* No module selected: say why, in the terms of PEFT's three cases (inject_adapter). */
static mmt_status nothing_selected(const mmt_peft_config *cfg, const mmt_module_info *mods, int64_t n,
                                   const int64_t counts[5], const char *removed) {
    mmt_strbuf b = {0};
    append(&b, "target_modules ");
    describe_targets(&b, &cfg->target_modules);
    if (counts[V_EXCLUDED] + counts[V_SCOPED_OUT] + counts[V_SAVED] == 0 || !removed) {
        append(&b, " matched no module of the model");
        describe_layers(&b, cfg);
        mmt_strbuf_printf(&b, ". %s can adapt modules named ", mmt_peft_type_name(cfg->peft_type));
        describe_available(&b, cfg->peft_type, mods, n);
    } else {
        mmt_strbuf_printf(&b, " selected nothing: every module it matched (such as %s) is removed by ", removed);
        append(&b, "exclude_modules, modules_to_save or the tower scope");
        if (cfg->scope != MMT_SCOPE_BOTH) mmt_strbuf_printf(&b, " (scope \"%s\")", mmt_peft_scope_name(cfg->scope));
        describe_layers(&b, cfg);
    }
    return fail_with(&b, MMT_STATUS_INVALID_ARGUMENT);
}

/* ---------------------------------------------------------------------------------- */
/* Selection                                                                          */

void mmt_peft_targets_free(mmt_peft_targets *targets) {
    if (!targets) return;
    mmt_free(targets->items);
    mmt_free(targets->saved);
    memset(targets, 0, sizeof *targets);
}

const mmt_peft_target *mmt_peft_targets_find(const mmt_peft_targets *targets, int64_t m) {
    for (int64_t i = 0; i < targets->n; i++)
        if (targets->items[i].module == m) return &targets->items[i];
    return NULL;
}

/* _set_trainable: every module whose name ends with an entry (plain endswith). */
static mmt_status select_saved(const mmt_peft_config *cfg, const mmt_module_info *mods, int64_t n,
                               mmt_peft_targets *out) {
    const mmt_peft_names *save = &cfg->modules_to_save;
    if (save->kind != MMT_PEFT_NAMES_LIST || save->n == 0) return MMT_OK;
    for (int64_t i = 0; i < save->n; i++)
        if (!save->items[i][0])
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "modules_to_save[%lld]: an empty name matches every module",
                            (long long)i);
    if (!(out->saved = mmt_malloc((size_t)n * sizeof *out->saved))) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t m = 1; m < n; m++) { /* the root "" ends with no non-empty name */
        int hit = 0;
        for (int64_t i = 0; i < save->n && !hit; i++) hit = ends_with(mods[m].name, save->items[i]);
        if (!hit) continue;
        for (int64_t k = 0; k < out->n_saved; k++) {
            const char *outer = mods[out->saved[k]].name;
            size_t len = strlen(outer);
            if (strncmp(mods[m].name, outer, len) == 0 && mods[m].name[len] == '.')
                return mmt_fail(MMT_STATUS_UNSUPPORTED,
                                "modules_to_save selects both %s and %s inside it; name only the outer one",
                                outer, mods[m].name);
        }
        out->saved[out->n_saved++] = m;
    }
    return MMT_OK;
}

static mmt_status select_targets(matcher *m, const mmt_module_info *mods, int64_t n, mmt_peft_targets *out) {
    const mmt_peft_config *cfg = m->cfg;
    if (!(out->items = mmt_malloc((size_t)n * sizeof *out->items))) return MMT_STATUS_OUT_OF_MEMORY;
    int64_t counts[5] = {0};
    const char *removed = NULL; /* a module the targets matched but an exclusion removed */
    for (int64_t i = 1; i < n; i++) { /* inject_adapter skips the root ("") */
        const mmt_module_info *mod = &mods[i];
        verdict v = check_module(m, mod);
        if (v != V_TARGET && v != V_UNMATCHED && !removed && target_matches(m, mod)) removed = mod->name;
        counts[v]++;
        if (v != V_TARGET) continue;
        if (!kind_supported(cfg->peft_type, mod->kind))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "target_modules selects %s, a %s (%s); %s can adapt only %s modules", mod->name,
                            mmt_module_kind_name(mod->kind), mod->type_name, mmt_peft_type_name(cfg->peft_type),
                            cfg->peft_type == MMT_PEFT_LORA ? "Linear, Conv2d and Embedding" : "Linear and Conv2d");
        for (int64_t k = 0; k < out->n_saved; k++)
            if (out->saved[k] == i)
                return mmt_fail(MMT_STATUS_UNSUPPORTED,
                                "%s is both a target and matched by modules_to_save (which PEFT tests with a plain "
                                "endswith); rename the modules_to_save entry", mod->name);
        mmt_peft_target *t = &out->items[out->n++];
        memset(t, 0, sizeof *t);
        t->module = i;
        if (cfg->peft_type == MMT_PEFT_LORA) {
            int64_t ri = pattern_index(m->rank, cfg->n_rank_pattern, mod->name);
            int64_t ai = pattern_index(m->alpha, cfg->n_alpha_pattern, mod->name);
            t->r = ri >= 0 ? (int64_t)cfg->rank_pattern[ri].value : cfg->r;
            t->alpha = ai >= 0 ? cfg->alpha_pattern[ai].value : cfg->lora_alpha;
            t->scaling = cfg->use_rslora ? t->alpha / sqrt((double)t->r) : t->alpha / (double)t->r;
        } else {
            t->feedforward = is_feedforward(m, mod->name);
        }
    }
    if (out->n == 0) return nothing_selected(cfg, mods, n, counts, removed);
    return MMT_OK;
}

/* The selection proper; messages without the config's source (mmt_peft_select adds it). */
static mmt_status select_all(const mmt_peft_config *cfg, const mmt_module_info *modules, int64_t n_modules,
                             mmt_peft_targets *out) {
    int tuner = cfg->peft_type == MMT_PEFT_LORA || cfg->peft_type == MMT_PEFT_IA3;
    if (tuner && cfg->target_modules.kind == MMT_PEFT_NAMES_NONE) {
        mmt_strbuf b = {0};
        append(&b, "target_modules is not set, and PEFT has no default target modules for CLIP; "
                   "name them (a list of name suffixes, a regex, or \"all-linear\"): ");
        describe_available(&b, cfg->peft_type, modules, n_modules);
        return fail_with(&b, MMT_STATUS_INVALID_ARGUMENT);
    }
    if (cfg->peft_type == MMT_PEFT_IA3 && cfg->feedforward_modules.kind == MMT_PEFT_NAMES_NONE)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "feedforward_modules is not set, and PEFT has no default for CLIP; give a list "
                        "(possibly empty) of the targets whose input IA3 scales");
    matcher m;
    mmt_status s = matcher_init(&m, cfg);
    if (s == MMT_OK) s = select_saved(cfg, modules, n_modules, out);
    if (s == MMT_OK && tuner && !m.dummy) s = select_targets(&m, modules, n_modules, out);
    matcher_free(&m);
    return s;
}

mmt_status mmt_peft_select(const mmt_peft_config *cfg, const mmt_module_info *modules, int64_t n_modules,
                           mmt_peft_targets *out) {
    memset(out, 0, sizeof *out);
    MMT_TRY(mmt_peft_config_validate(cfg, cfg->source ? cfg->source : "PEFT config"));
    mmt_status s = select_all(cfg, modules, n_modules, out);
    if (s != MMT_OK) {
        mmt_peft_targets_free(out);
        if (cfg->source) s = mmt_error_prefix(s, "%s: ", cfg->source);
    }
    return s;
}
