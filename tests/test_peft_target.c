/* test_peft_target.c — CLIP module names, PEFT's module matching and adapter tensor names,
 * checked against what torch / transformers / PEFT 0.21 actually did on the tiny CLIPs
 * (tests/fixtures/peft/, made by tools/fixtures/make_peft_fixtures.py):
 *   - mmt_clip_modules == named_modules() (names, order, classes, weight shapes, biases);
 *   - the regex dialect == Python re's verdicts (regex.json);
 *   - for 45 configs, the modules mmtune selects == the modules PEFT wrapped (exact sets),
 *     r / alpha exact, scaling within 1e-12, IA3 feedforward flags, modules_to_save, and the
 *     tensor names + shapes == those in PEFT's adapter_model.safetensors; configs PEFT
 *     refused are refused here too, with mmtune's own message;
 *   - the adapter_config.json PEFT wrote for a case selects what PEFT selected reloading it.
 */
#include <stdint.h>

#include "check.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "models/clip_config.h"
#include "models/clip_modules.h"
#include "peft/peft_config.h"
#include "peft/peft_keys.h"
#include "peft/target.h"
#include "peft/target_regex.h"

/* mmt_peft_config_fill_from_model with the CLIP config's dimensions. */
static mmt_status fill_from_clip(mmt_peft_config *cfg, const mmt_clip_config *clip) {
    mmt_model_dims dims;
    mmt_clip_model_dims(clip, &dims);
    return mmt_peft_config_fill_from_model(cfg, &dims);
}

static mmt_json_doc *load_json(const char *name) {
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(fixture(name), &doc));
    return doc;
}

/* The module list of tests/fixtures/clip/<model>. */
static int load_modules(const char *model, mmt_clip_config *cfg, mmt_module_info **mods, int64_t *n) {
    char path[256];
    snprintf(path, sizeof path, "clip/%s/config.json", model);
    *mods = NULL;
    *n = 0;
    mmt_status s = mmt_clip_config_load(fixture(path), cfg);
    if (s == MMT_OK) s = mmt_clip_modules(cfg, mods, n);
    CHECK_MSG(s == MMT_OK, "%s: %s", model, mmt_last_error());
    return s == MMT_OK;
}

/* ---------------------------------------------------------------------------------- */

static void check_module(const mmt_module_info *m, const mmt_json *want, const char *model) {
    const mmt_json *name = mmt_json_get(want, "name"), *type = mmt_json_get(want, "type");
    const mmt_json *weight = mmt_json_get(want, "weight"), *bias = mmt_json_get(want, "bias");
    CHECK_MSG(strcmp(m->name, name->string) == 0, "%s: %s != %s", model, m->name, name->string);
    CHECK_MSG(strcmp(m->type_name, type->string) == 0, "%s: %s: %s != %s", model, m->name, m->type_name,
              type->string);
    CHECK_MSG(m->has_bias == bias->boolean, "%s: %s bias", model, m->name);
    int64_t got[4] = {0};
    size_t ndim = 0;
    switch (m->kind) {
    case MMT_MODULE_LINEAR: got[0] = m->out_features, got[1] = m->in_features, ndim = 2; break;
    case MMT_MODULE_CONV2D:
        got[0] = m->out_features, got[1] = m->in_channels, got[2] = got[3] = m->kernel_size, ndim = 4;
        CHECK(m->in_features == m->in_channels * m->kernel_size * m->kernel_size);
        break;
    case MMT_MODULE_EMBEDDING: got[0] = m->in_features, got[1] = m->out_features, ndim = 2; break;
    case MMT_MODULE_LAYERNORM: got[0] = m->out_features, ndim = 1; break;
    default: break;
    }
    if (weight->type == MMT_JSON_NULL) {
        CHECK_MSG(ndim == 0, "%s: %s has no weight in torch", model, m->name);
        return;
    }
    CHECK_MSG(weight->len == ndim, "%s: %s: weight rank %zu != %zu", model, m->name, ndim, weight->len);
    for (size_t d = 0; d < ndim && d < weight->len; d++)
        CHECK_MSG(got[d] == weight->items[d].integer, "%s: %s dim %zu", model, m->name, d);
}

static void test_modules_match_named_modules(void) {
    mmt_json_doc *doc = load_json("peft/modules.json");
    if (!doc) return;
    const char *models[] = {"tiny-a", "tiny-a-text", "tiny-a-vision"};
    for (int k = 0; k < 3; k++) {
        mmt_clip_config cfg;
        mmt_module_info *mods;
        int64_t n;
        if (!load_modules(models[k], &cfg, &mods, &n)) continue;
        const mmt_json *want = mmt_json_get(mmt_json_root(doc), models[k]);
        CHECK_MSG((size_t)n == want->len, "%s: %lld modules, torch has %zu", models[k], (long long)n, want->len);
        for (int64_t i = 0; i < n && (size_t)i < want->len; i++) check_module(&mods[i], &want->items[i], models[k]);
        /* towers and layer indices follow the names */
        for (int64_t i = 0; i < n; i++) {
            const char *s = mods[i].name;
            mmt_tower tower = strncmp(s, "text_", 5) == 0 ? MMT_TOWER_TEXT
                              : strncmp(s, "vision_", 7) == 0 || strncmp(s, "visual_", 7) == 0 ? MMT_TOWER_VISION
                                                                                              : MMT_TOWER_NONE;
            CHECK_MSG(mods[i].tower == tower, "%s tower", s);
            const char *l = strstr(s, "layers.");
            CHECK_MSG(mods[i].layer == (l ? atoll(l + 7) : -1), "%s layer", s);
        }
        CHECK(mmt_module_find(mods, n, "visual_projection") == (cfg.has_vision ? n - (cfg.has_text ? 2 : 1) : -1));
        mmt_modules_free(mods, n);
    }
    mmt_json_free(doc);
}

static void test_modules_gelu_and_failure(void) {
    mmt_clip_config cfg;
    mmt_module_info *mods;
    int64_t n;
    if (!load_modules("tiny-b", &cfg, &mods, &n)) return;
    int64_t act = mmt_module_find(mods, n, "text_model.encoder.layers.0.mlp.activation_fn");
    CHECK(act >= 0 && strcmp(mods[act].type_name, cfg.text.act == MMT_ACT_GELU ? "GELUActivation"
                                                                                : "QuickGELUActivation") == 0);
    mmt_modules_free(mods, n);
    /* every allocation failure is reported, and nothing leaks (ASan build) */
    for (long k = 1; k < 1000; k++) {
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_clip_modules(&cfg, &mods, &n);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            mmt_modules_free(mods, n);
            break;
        }
        CHECK(s == MMT_STATUS_OUT_OF_MEMORY && mods == NULL && n == 0);
    }
    cfg.has_text = cfg.has_vision = 0;
    CHECK_FAILS(mmt_clip_modules(&cfg, &mods, &n), MMT_STATUS_INVALID_ARGUMENT, "neither");
}

/* ---------------------------------------------------------------------------------- */

/* Patterns Python accepts that mmtune refuses on purpose (target_regex.h). */
static int refused_by_mmtune(const char *p) {
    static const char *const list[] = {"(?i)AAA", "(?=a)aaa", "(?!b)aaa", "(?<=a)aa", "(a)\\1",
                                       "\\bq_proj", "a++", "(?>a)", "\\u0061aa"};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++)
        if (strcmp(p, list[i]) == 0) return 1;
    return 0;
}

static int listed(const mmt_json *arr, const char *s) {
    for (size_t i = 0; i < arr->len; i++)
        if (strcmp(arr->items[i].string, s) == 0) return 1;
    return 0;
}

static void test_regex_matches_python(void) {
    mmt_json_doc *doc = load_json("peft/regex.json");
    if (!doc) return;
    const mmt_json *subjects = mmt_json_get(mmt_json_root(doc), "subjects");
    const mmt_json *cases = mmt_json_get(mmt_json_root(doc), "cases");
    int compared = 0;
    for (size_t i = 0; i < cases->len; i++) {
        const mmt_json *c = &cases->items[i];
        const char *pattern = mmt_json_get(c, "pattern")->string;
        mmt_regex *re = NULL;
        mmt_status s = mmt_regex_compile(pattern, "regex.json", &re);
        if (mmt_json_get(c, "error")) {
            CHECK_MSG(s == MMT_STATUS_BAD_FORMAT, "\"%s\": Python refuses it (%s), mmtune: %s", pattern,
                      mmt_json_get(c, "error")->string, s == MMT_OK ? "accepted" : mmt_last_error());
        } else if (refused_by_mmtune(pattern)) {
            CHECK_MSG(s == MMT_STATUS_UNSUPPORTED, "\"%s\": expected unsupported, got %s", pattern,
                      s == MMT_OK ? "accepted" : mmt_last_error());
        } else {
            CHECK_MSG(s == MMT_OK, "\"%s\": %s", pattern, mmt_last_error());
            const mmt_json *full = mmt_json_get(c, "fullmatch"), *match = mmt_json_get(c, "match");
            for (size_t k = 0; re && k < subjects->len; k++) {
                const char *subject = subjects->items[k].string;
                CHECK_MSG(mmt_regex_fullmatch(re, subject) == listed(full, subject), "fullmatch(\"%s\", \"%s\")",
                          pattern, subject);
                CHECK_MSG(mmt_regex_match(re, subject) == listed(match, subject), "match(\"%s\", \"%s\")", pattern,
                          subject);
                compared++;
            }
        }
        mmt_regex_free(re);
    }
    CHECK(compared > 500);
    mmt_json_free(doc);
}

static void test_regex_limits(void) {
    mmt_regex *re = NULL;
    /* linear time: a pattern that makes backtracking engines explode */
    CHECK_OK(mmt_regex_compile("(a*)*(a|b)*(a*)*c", "t", &re));
    char subject[4001];
    memset(subject, 'a', 4000);
    subject[4000] = '\0';
    if (re) CHECK(!mmt_regex_fullmatch(re, subject));
    mmt_regex_free(re);
    CHECK_FAILS(mmt_regex_compile("a{1000}{1}", "t", &re), MMT_STATUS_BAD_FORMAT, "multiple repeat");
    CHECK_FAILS(mmt_regex_compile("(a{1000}){1000}", "cfg.json: target_modules", &re), MMT_STATUS_UNSUPPORTED,
                "cfg.json: target_modules: regex");
    CHECK_FAILS(mmt_regex_compile("caf\xc3\xa9", "t", &re), MMT_STATUS_UNSUPPORTED, "non-ASCII");
    CHECK_FAILS(mmt_regex_compile("x(", "t", &re), MMT_STATUS_BAD_FORMAT, "t: regex \"x(\": missing )");
    for (long k = 1; k < 100; k++) {
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_regex_compile("(?:text|vision)_model\\..*\\.[qkv]_proj", "t", &re);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            CHECK(mmt_regex_fullmatch(re, "text_model.encoder.layers.0.self_attn.k_proj"));
            mmt_regex_free(re);
            break;
        }
        CHECK(s == MMT_STATUS_OUT_OF_MEMORY && re == NULL);
    }
}

/* ---------------------------------------------------------------------------------- */

/* mmtune's message for each config PEFT refused must say why. */
static const char *expected_error(const char *id) {
    static const char *const table[][2] = {
        {"error_nothing", "matched no module of the model. LORA can adapt modules named"},
        {"error_regex_nothing", "target_modules \"q_proj\" matched no module"},
        {"error_layernorm", "text_model.encoder.layers.0.layer_norm1, a LayerNorm"},
        {"error_container", "text_model.encoder.layers.0.mlp, a container (CLIPMLP)"},
        {"error_all_excluded", "selected nothing"},
        {"error_no_targets", "target_modules is not set"},
        {"error_only_saved", "selected nothing: every module it matched (such as text_projection)"},
        {"error_layers_none", "layers_to_transform is [5]"},
        {"error_ia3_embedding", "a Embedding (Embedding); IA3 can adapt only Linear and Conv2d"},
        {"error_ia3_no_feedforward", "feedforward_modules is not set"},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (strcmp(id, table[i][0]) == 0) return table[i][1];
    return NULL;
}

/* The selection equals PEFT's list of wrapped modules (names in order, r, alpha, scaling). */
static void check_selection(const char *id, const mmt_peft_config *cfg, const mmt_module_info *mods,
                            const mmt_peft_targets *t, const mmt_json *wrapped, const mmt_json *saved) {
    CHECK_MSG((size_t)t->n == wrapped->len, "%s: mmtune selects %lld modules, PEFT wrapped %zu", id,
              (long long)t->n, wrapped->len);
    for (int64_t i = 0; i < t->n && (size_t)i < wrapped->len; i++) {
        const mmt_json *w = &wrapped->items[i];
        const char *name = mods[t->items[i].module].name;
        CHECK_MSG(strcmp(name, mmt_json_get(w, "name")->string) == 0, "%s: #%lld %s != %s", id, (long long)i, name,
                  mmt_json_get(w, "name")->string);
        if (cfg->peft_type == MMT_PEFT_LORA) {
            CHECK_MSG(t->items[i].r == mmt_json_get(w, "r")->integer, "%s: %s r %lld", id, name,
                      (long long)t->items[i].r);
            CHECK_MSG(t->items[i].alpha == mmt_json_get(w, "alpha")->number, "%s: %s alpha %g", id, name,
                      t->items[i].alpha);
            CHECK_NEAR(t->items[i].scaling, mmt_json_get(w, "scaling")->number, 1e-12);
        } else {
            CHECK_MSG(t->items[i].feedforward == mmt_json_get(w, "feedforward")->boolean, "%s: %s feedforward", id,
                      name);
        }
    }
    CHECK_MSG((size_t)t->n_saved == saved->len, "%s: modules_to_save %lld != %zu", id, (long long)t->n_saved,
              saved->len);
    for (int64_t i = 0; i < t->n_saved && (size_t)i < saved->len; i++)
        CHECK_MSG(strcmp(mods[t->saved[i]].name, saved->items[i].string) == 0, "%s: saved %s", id,
                  mods[t->saved[i]].name);
}

static int tensor_compare(const void *a, const void *b) {
    return strcmp(((const mmt_peft_tensor *)a)->key, ((const mmt_peft_tensor *)b)->key);
}

/* The tensor list equals the keys and shapes of PEFT's adapter_model.safetensors. */
static void check_tensors(const char *id, const mmt_peft_config *cfg, const mmt_module_info *mods, int64_t n,
                          const mmt_peft_targets *t, const mmt_json *want) {
    mmt_peft_tensor *tensors = NULL;
    int64_t count = 0;
    CHECK_OK(mmt_peft_tensors(cfg, mods, n, t, &tensors, &count));
    if (!tensors) return;
    qsort(tensors, (size_t)count, sizeof *tensors, tensor_compare);
    CHECK_MSG((size_t)count == want->len, "%s: %lld tensors, PEFT saved %zu", id, (long long)count, want->len);
    for (int64_t i = 0; i < count && (size_t)i < want->len; i++) {
        const mmt_json *key = &want->items[i].items[0], *shape = &want->items[i].items[1];
        CHECK_MSG(strcmp(tensors[i].key, key->string) == 0, "%s: %s != %s", id, tensors[i].key, key->string);
        int same = (size_t)tensors[i].ndim == shape->len;
        for (int d = 0; same && d < tensors[i].ndim; d++) same = tensors[i].shape[d] == shape->items[d].integer;
        CHECK_MSG(same, "%s: %s shape", id, tensors[i].key);
        /* and the key parses back to its module */
        char *module = NULL;
        mmt_peft_tensor_kind kind;
        if (tensors[i].kind != MMT_PEFT_TENSOR_SAVED && mmt_peft_key_parse(tensors[i].key, &module, &kind) == MMT_OK) {
            CHECK_MSG(kind == tensors[i].kind, "%s: parse kind", tensors[i].key);
            if (module) CHECK_MSG(strcmp(module, mods[tensors[i].module].name) == 0, "%s: parse module", tensors[i].key);
        }
        mmt_free(module);
    }
    mmt_peft_tensors_free(tensors, count);
}

/* The config PEFT saved for the case, read back: PEFT's reload chose reloaded_wrapped (or,
 * when absent, the same as wrapped). */
static void check_saved_config(const char *id, const mmt_module_info *mods, int64_t n, const mmt_json *c) {
    char path[256];
    snprintf(path, sizeof path, "peft/configs/%s.json", id);
    if (!mmt_file_exists(fixture(path))) return;
    mmt_peft_config cfg;
    CHECK_OK(mmt_peft_config_load(fixture(path), &cfg));
    mmt_peft_targets t;
    if (mmt_peft_select(&cfg, mods, n, &t) != MMT_OK) {
        CHECK_MSG(0, "%s: saved config: %s", id, mmt_last_error());
        mmt_peft_config_free(&cfg);
        return;
    }
    if (mmt_json_get(c, "reload_error")) {
        /* PEFT sorted rank_pattern when saving and then could not load its own weights: the
         * file means r = 6 for every q_proj, and mmtune reads the file as PEFT does. */
        for (int64_t i = 0; i < t.n; i++) CHECK_MSG(t.items[i].r == 6, "%s: r %lld", id, (long long)t.items[i].r);
    } else {
        const mmt_json *wrapped = mmt_json_get(c, "reloaded_wrapped");
        const mmt_json *saved = mmt_json_get(c, "reloaded_modules_to_save");
        check_selection(id, &cfg, mods, &t, wrapped ? wrapped : mmt_json_get(c, "wrapped"),
                        saved ? saved : mmt_json_get(c, "modules_to_save"));
    }
    mmt_peft_targets_free(&t);
    mmt_peft_config_free(&cfg);
}

static void run_case(const mmt_json *c) {
    const char *id = mmt_json_get(c, "id")->string, *model = mmt_json_get(c, "model")->string;
    mmt_clip_config clip;
    mmt_module_info *mods;
    int64_t n;
    if (!load_modules(model, &clip, &mods, &n)) return;
    char what[128];
    snprintf(what, sizeof what, "cases.json: %s", id);
    mmt_peft_config cfg;
    mmt_peft_targets t = {0};
    mmt_status s = mmt_peft_config_from_json(mmt_json_get(c, "config"), what, &cfg);
    if (s == MMT_OK) s = fill_from_clip(&cfg, &clip);
    if (s == MMT_OK) s = mmt_peft_select(&cfg, mods, n, &t);
    if (mmt_json_get(c, "error")) {
        const char *needle = expected_error(id);
        CHECK_MSG(s != MMT_OK, "%s: PEFT refused it (%s), mmtune accepted it", id,
                  mmt_json_get(mmt_json_get(c, "error"), "message")->string);
        CHECK_MSG(s == MMT_OK || (needle && strstr(mmt_last_error(), needle)), "%s: message \"%s\" lacks \"%s\"", id,
                  mmt_last_error(), needle ? needle : "(no expectation)");
    } else {
        CHECK_MSG(s == MMT_OK, "%s: %s", id, mmt_last_error());
        if (s == MMT_OK) {
            check_selection(id, &cfg, mods, &t, mmt_json_get(c, "wrapped"), mmt_json_get(c, "modules_to_save"));
            check_tensors(id, &cfg, mods, n, &t, mmt_json_get(c, "tensors"));
            check_saved_config(id, mods, n, c);
        }
    }
    mmt_peft_targets_free(&t);
    mmt_peft_config_free(&cfg);
    mmt_modules_free(mods, n);
}

static void test_selection_matches_peft(void) {
    mmt_json_doc *doc = load_json("peft/cases.json");
    if (!doc) return;
    const mmt_json *cases = mmt_json_get(mmt_json_root(doc), "cases");
    CHECK(cases && cases->len >= 30);
    for (size_t i = 0; cases && i < cases->len; i++) run_case(&cases->items[i]);
    mmt_json_free(doc);
}

/* ---------------------------------------------------------------------------------- */

static mmt_status select_json(const char *json, mmt_peft_targets *t, const mmt_module_info *mods, int64_t n) {
    mmt_json_doc *doc = NULL;
    mmt_peft_config cfg;
    memset(t, 0, sizeof *t);
    MMT_TRY(mmt_json_parse(json, strlen(json), "t.json", &doc));
    mmt_status s = mmt_peft_config_from_json(mmt_json_root(doc), "t.json", &cfg);
    if (s == MMT_OK) s = mmt_peft_select(&cfg, mods, n, t);
    mmt_peft_config_free(&cfg);
    mmt_json_free(doc);
    return s;
}

static void test_nothing_matched_lists_names(void) {
    mmt_clip_config clip;
    mmt_module_info *mods;
    int64_t n;
    if (!load_modules("tiny-a", &clip, &mods, &n)) return;
    mmt_peft_targets t;
    CHECK_FAILS(select_json("{\"peft_type\": \"LORA\", \"target_modules\": [\"qproj\"]}", &t, mods, n),
                MMT_STATUS_INVALID_ARGUMENT,
                "target_modules [\"qproj\"] matched no module of the model. LORA can adapt modules named "
                "token_embedding, position_embedding, k_proj, v_proj, q_proj, out_proj, fc1, fc2, patch_embedding, "
                "visual_projection, text_projection (full names look like text_model.encoder.layers.0.self_attn.k_proj)");
    CHECK(!strstr(mmt_last_error(), "layer_norm")); /* not adaptable, so not offered */
    CHECK_FAILS(select_json("{\"peft_type\": \"IA3\", \"target_modules\": \".*attention\", \"feedforward_modules\": []}",
                            &t, mods, n),
                MMT_STATUS_INVALID_ARGUMENT, "IA3 can adapt modules named k_proj, v_proj, q_proj, out_proj, fc1");
    CHECK(!strstr(mmt_last_error(), "token_embedding")); /* IA3 has no Embedding layer */
    CHECK_FAILS(select_json("{\"peft_type\": \"LORA\", \"target_modules\": \"[\"}", &t, mods, n),
                MMT_STATUS_BAD_FORMAT, "target_modules: regex \"[\": unterminated character set");
    mmt_modules_free(mods, n);
}

static void test_scope(void) {
    mmt_clip_config clip;
    mmt_module_info *mods;
    int64_t n;
    if (!load_modules("tiny-a", &clip, &mods, &n)) return;
    mmt_peft_config cfg;
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    CHECK_OK(mmt_peft_names_set_regex(&cfg.target_modules, "all-linear"));
    const mmt_peft_scope scopes[] = {MMT_SCOPE_BOTH, MMT_SCOPE_TEXT, MMT_SCOPE_VISION};
    const int64_t expect[] = {26, 13, 13};
    for (int k = 0; k < 3; k++) {
        cfg.scope = scopes[k];
        mmt_peft_targets t;
        CHECK_OK(mmt_peft_select(&cfg, mods, n, &t));
        CHECK_MSG(t.n == expect[k], "scope %s: %lld", mmt_peft_scope_name(scopes[k]), (long long)t.n);
        for (int64_t i = 0; i < t.n; i++)
            CHECK(scopes[k] == MMT_SCOPE_BOTH || mods[t.items[i].module].tower == (mmt_tower)scopes[k]);
        mmt_peft_targets_free(&t);
    }
    /* a scope that leaves nothing says so */
    const char *text_only[] = {"text_projection"};
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, text_only, 1));
    cfg.scope = MMT_SCOPE_VISION;
    mmt_peft_targets t;
    CHECK_FAILS(mmt_peft_select(&cfg, mods, n, &t), MMT_STATUS_INVALID_ARGUMENT,
                "selected nothing: every module it matched (such as text_projection) is removed by exclude_modules, "
                "modules_to_save or the tower scope (scope \"vision\")");
    mmt_peft_config_free(&cfg);
    mmt_modules_free(mods, n);
}

static void test_conflicts_and_oom(void) {
    mmt_clip_config clip;
    mmt_module_info *mods;
    int64_t n;
    if (!load_modules("tiny-a", &clip, &mods, &n)) return;
    mmt_peft_targets t;
    /* modules_to_save "t_proj" wraps out_proj by plain endswith while out_proj is a target */
    CHECK_FAILS(select_json("{\"peft_type\": \"LORA\", \"target_modules\": [\"out_proj\"], \"modules_to_save\": "
                            "[\"t_proj\"]}", &t, mods, n),
                MMT_STATUS_UNSUPPORTED, "text_model.encoder.layers.0.self_attn.out_proj is both a target");
    CHECK_FAILS(select_json("{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\"], \"modules_to_save\": "
                            "[\"mlp\", \"fc1\"]}", &t, mods, n),
                MMT_STATUS_UNSUPPORTED, "modules_to_save selects both text_model.encoder.layers.0.mlp and");
    CHECK_FAILS(select_json("{\"peft_type\": \"LORA\", \"target_modules\": \"dummy-target-modules\", "
                            "\"modules_to_save\": [\"\"]}", &t, mods, n),
                MMT_STATUS_INVALID_ARGUMENT, "modules_to_save[0]: an empty name");
    CHECK_OK(select_json("{\"peft_type\": \"LORA\", \"target_modules\": \"dummy-target-modules\"}", &t, mods, n));
    CHECK(t.n == 0);
    mmt_peft_targets_free(&t);
    /* every allocation failure on the way is reported and frees what was made */
    const char *json = "{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\", \"fc1\"], \"bias\": \"all\", "
                       "\"rank_pattern\": {\"fc1\": 2}, \"alpha_pattern\": {\"q_proj\": 3}, \"layers_to_transform\": "
                       "[0], \"layers_pattern\": \"layers\", \"modules_to_save\": [\"embeddings\"]}";
    for (long k = 1; k < 2000; k++) {
        mmt_alloc_fail_after(k);
        mmt_status s = select_json(json, &t, mods, n);
        mmt_peft_tensor *tensors = NULL;
        int64_t count = 0;
        if (s == MMT_OK) {
            mmt_peft_config cfg;
            mmt_json_doc *doc = NULL;
            s = mmt_json_parse(json, strlen(json), "t.json", &doc);
            if (s == MMT_OK) s = mmt_peft_config_from_json(mmt_json_root(doc), "t.json", &cfg);
            if (s == MMT_OK) {
                s = mmt_peft_tensors(&cfg, mods, n, &t, &tensors, &count);
                mmt_peft_config_free(&cfg);
            }
            mmt_json_free(doc);
        }
        mmt_alloc_fail_after(0);
        mmt_peft_targets_free(&t);
        mmt_peft_tensors_free(tensors, count);
        if (s == MMT_OK) {
            CHECK(count == 8 /* lora A, B */ + 35 /* biases */ + 5 /* saved embeddings */);
            break;
        }
        CHECK_MSG(s == MMT_STATUS_OUT_OF_MEMORY, "k=%ld: %s", k, mmt_last_error());
    }
    mmt_modules_free(mods, n);
}

static void test_key_helpers(void) {
    char *key = mmt_peft_key("text_model.encoder.layers.0.self_attn.q_proj", MMT_PEFT_TENSOR_LORA_A);
    CHECK(key && strcmp(key, "base_model.model.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight") == 0);
    mmt_free(key);
    CHECK(mmt_peft_key("x", MMT_PEFT_TENSOR_SAVED) == NULL);
    char *module = NULL;
    mmt_peft_tensor_kind kind;
    CHECK_OK(mmt_peft_key_parse("base_model.model.vision_model.embeddings.patch_embedding.lora_magnitude_vector",
                                &module, &kind));
    CHECK(kind == MMT_PEFT_TENSOR_LORA_MAGNITUDE && module &&
          strcmp(module, "vision_model.embeddings.patch_embedding") == 0);
    mmt_free(module);
    CHECK_OK(mmt_peft_key_parse("prompt_embeddings", &module, &kind));
    CHECK(kind == MMT_PEFT_TENSOR_PROMPT && module == NULL);
    CHECK_OK(mmt_peft_key_parse("base_model.model.text_projection.weight", &module, &kind));
    CHECK(kind == MMT_PEFT_TENSOR_SAVED && module && strcmp(module, "text_projection") == 0);
    mmt_free(module);
    CHECK(mmt_peft_key_parse("text_projection.lora_A.weight", &module, &kind) == MMT_STATUS_NOT_FOUND);
    CHECK(mmt_peft_key_parse("base_model.model.x.lora_A.default", &module, &kind) == MMT_STATUS_NOT_FOUND);
}

int main(void) {
    RUN(test_modules_match_named_modules);
    RUN(test_modules_gelu_and_failure);
    RUN(test_regex_matches_python);
    RUN(test_regex_limits);
    RUN(test_selection_matches_peft);
    RUN(test_nothing_matched_lists_names);
    RUN(test_scope);
    RUN(test_conflicts_and_oom);
    RUN(test_key_helpers);
    return check_summary();
}
