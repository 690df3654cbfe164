/*
 * test_optimizer.c — AdamW, lr schedules and gradient clipping against PyTorch itself.
 *
 * Fixtures: tests/fixtures/optimizer/, made by tools/fixtures/make_optimizer_fixtures.py with
 * torch.optim.AdamW (foreach=False: _single_tensor_adam), transformers'
 * get_cosine_schedule_with_warmup / get_cosine_with_min_lr_schedule_with_warmup and
 * torch.nn.utils.clip_grad_norm_ (versions in versions.json). Each scenario runs two param
 * groups (different lr and weight decay, a zero-size and a 0-d parameter among them).
 *
 * Each scenario runs twice. End to end, with our clip_grad_norm; and with the gradients
 * clipped by torch's own recorded norm, which isolates AdamW from the norm's summation order.
 *
 * Tolerances, and why:
 *   learning rates per step and schedule multipliers: 1e-12 relative (they come out
 *     bit-identical: the same double expressions in the same order on the same libm);
 *   clip norms: 2 float32 ulps (torch sums squares in float32 vector lanes, we sum in
 *     double; observed: equal or 1 ulp apart);
 *   moments with torch's norm: bitwise (0 ulps): the same float32 ops, fused where torch's
 *     kernels fuse them;
 *   moments end to end: 1e-6 of the tensor's largest magnitude (observed <= 7.3e-7): a
 *     one-ulp norm moves the clip coefficient and every clipped gradient by ~6e-8, and an
 *     exp_avg element can be a small difference of larger terms, so the bound is per tensor;
 *   parameters: 1e-6 relative plus 1e-9 absolute (observed bitwise with torch's norm, <= 3
 *     ulps end to end): torch's CPU sqrt (MKL) is off by an ulp on some inputs where ours is
 *     correctly rounded; that moves an update of ~1e-2 by ~1e-9, usually below one ulp of
 *     the parameter; the absolute term covers parameters near zero.
 * The resume test is bitwise: a state saved after 2 steps and loaded into a fresh optimizer
 * gives exactly the parameters and moments of an uninterrupted 5-step run.
 */
#include <stdarg.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/safetensors.h"
#include "train/optimizer.h"
#include "train/schedule.h"

#define N_PARAMS 5
#define RTOL_PARAM 1e-6
#define ATOL_PARAM 1e-9
#define RTOL_MOMENT 1e-6
#define ULPS_NORM 2
#define RTOL_LR 1e-12

static const char *const PARAM_NAMES[N_PARAMS] = {
    "text_model.encoder.layers.0.mlp.fc1.weight", "prompt.embedding",
    "text_model.encoder.layers.0.mlp.fc1.bias", "text_model.final_layer_norm.weight",
    "logit_scale",
};

static char tmp_path[256];

/* ---- fixture scenario -------------------------------------------------------------- */

enum { CFG_LR0, CFG_LR1, CFG_WD0, CFG_WD1, CFG_BETA1, CFG_BETA2, CFG_EPS, CFG_MAX_NORM,
       CFG_WARMUP, CFG_TOTAL, CFG_AMSGRAD, CFG_MIN_LR_RATE, CFG_N_STEPS, CFG_COUNT };

typedef struct scenario {
    mmt_safetensors *st;
    double cfg[CFG_COUNT];
    mmt_param params[N_PARAMS];      /* in PARAM_NAMES order; data/grad malloc'd here */
    mmt_param sorted[N_PARAMS];
    mmt_param_group groups[2];
    int64_t n_groups;
    mmt_adamw_config config;
    mmt_schedule schedule;
} scenario;

static const mmt_st_tensor *need(const mmt_safetensors *st, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const mmt_st_tensor *t = mmt_safetensors_find(st, name);
    CHECK_MSG(t != NULL, "fixture tensor %s missing", name);
    return t;
}

/* Opens the fixture, sets parameters to their initial values and builds the two groups the
 * script used, through mmt_param_groups_by_decay (so the decay rule is checked against the
 * script's split too). Returns 0 on failure. */
static int scenario_open(scenario *sc, const char *file) {
    memset(sc, 0, sizeof *sc);
    if (mmt_safetensors_open(fixture(file), &sc->st) != MMT_OK) {
        fprintf(stderr, "cannot open fixture %s: %s\n", file, mmt_last_error());
        check_current_failed_ = 1;
        return 0;
    }
    const mmt_st_tensor *cfg = need(sc->st, "config");
    if (!cfg || cfg->dtype != MMT_DTYPE_F64 || cfg->numel != CFG_COUNT) return 0;
    memcpy(sc->cfg, cfg->data, sizeof sc->cfg);
    for (int i = 0; i < N_PARAMS; i++) {
        const mmt_st_tensor *t = need(sc->st, "init.%s", PARAM_NAMES[i]);
        if (!t) return 0;
        mmt_param *p = &sc->params[i];
        p->name = PARAM_NAMES[i];
        p->ndim = t->ndim;
        memcpy(p->shape, t->shape, sizeof p->shape);
        p->numel = t->numel;
        p->data = calloc((size_t)t->numel + 1, sizeof(float));
        p->grad = calloc((size_t)t->numel + 1, sizeof(float));
        CHECK_OK(mmt_st_tensor_to_f32(t, p->data));
    }
    mmt_param_groups_by_decay(sc->params, N_PARAMS, sc->cfg[CFG_WD0], 1.0, sc->sorted,
                              sc->groups, &sc->n_groups);
    CHECK(sc->n_groups == 2);
    CHECK(sc->groups[0].n_params == 2 && sc->groups[1].n_params == 3);
    for (int i = 0; i < N_PARAMS; i++) CHECK(strcmp(sc->sorted[i].name, PARAM_NAMES[i]) == 0);
    CHECK(sc->groups[1].weight_decay == sc->cfg[CFG_WD1]);
    sc->groups[1].lr_scale = sc->cfg[CFG_LR1] / sc->cfg[CFG_LR0];
    sc->config = mmt_adamw_config_default();
    sc->config.lr = sc->cfg[CFG_LR0];
    sc->config.beta1 = sc->cfg[CFG_BETA1];
    sc->config.beta2 = sc->cfg[CFG_BETA2];
    sc->config.eps = sc->cfg[CFG_EPS];
    sc->config.amsgrad = sc->cfg[CFG_AMSGRAD] != 0.0;
    sc->schedule = mmt_schedule_make(MMT_SCHEDULE_COSINE, (int64_t)sc->cfg[CFG_WARMUP],
                                     (int64_t)sc->cfg[CFG_TOTAL]);
    sc->schedule.min_lr_rate = sc->cfg[CFG_MIN_LR_RATE];
    CHECK_OK(mmt_schedule_check(&sc->schedule));
    return 1;
}

static void scenario_close(scenario *sc) {
    for (int i = 0; i < N_PARAMS; i++) {
        free(sc->params[i].data);
        free(sc->params[i].grad);
    }
    mmt_safetensors_close(sc->st);
}

/* Copies the fixture's raw gradients of step s (1-based) into the gradient buffers. */
static void load_grads(scenario *sc, int64_t s) {
    for (int i = 0; i < N_PARAMS; i++) {
        const mmt_st_tensor *t = need(sc->st, "grad.%lld.%s", (long long)s, PARAM_NAMES[i]);
        if (t) CHECK_OK(mmt_st_tensor_to_f32(t, sc->params[i].grad));
    }
}

/* Fixture value i of a 1-D F64 or F32 tensor. */
static double fixture_value(const mmt_st_tensor *t, int64_t i) {
    if (t->dtype == MMT_DTYPE_F64) {
        double x;
        memcpy(&x, (const char *)t->data + 8 * i, 8);
        return x;
    }
    float x;
    memcpy(&x, (const char *)t->data + 4 * i, 4);
    return x;
}

/* Distance in float32 ulps (same-sign values; 2^31 for a sign change). */
static int64_t ulps(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if ((ia < 0) != (ib < 0)) return a == b ? 0 : INT64_C(1) << 31;
    int64_t d = (int64_t)ia - ib;
    return d < 0 ? -d : d;
}

/* How a tensor is compared with torch's. */
typedef struct tolerance {
    int64_t max_ulps;   /* >= 0: per element, in float32 ulps */
    double rtol, atol;  /* else per element: |got - want| <= rtol * scale + atol, where */
    int tensor_scale;   /* scale is |want| or, when set, max |want| over the tensor */
} tolerance;

typedef struct diff_stats {
    int64_t n, n_exact, max_ulps;
    double max_rel;     /* max |got - want| / scale */
} diff_stats;

static void compare(const char *what, const float *got, const mmt_st_tensor *want,
                    tolerance tol, diff_stats *stats) {
    if (!want) return;
    float *w = malloc((size_t)want->numel * sizeof(float) + 4);
    CHECK_OK(mmt_st_tensor_to_f32(want, w));
    double max_abs = 0;
    for (int64_t i = 0; i < want->numel; i++)
        if (fabs((double)w[i]) > max_abs) max_abs = fabs((double)w[i]);
    int reported = 0;
    for (int64_t i = 0; i < want->numel; i++) {
        int64_t u = ulps(got[i], w[i]);
        double diff = fabs((double)got[i] - w[i]);
        double scale = tol.tensor_scale ? max_abs : fabs((double)w[i]);
        int ok = tol.max_ulps >= 0 ? u <= tol.max_ulps : diff <= tol.rtol * scale + tol.atol;
        if (!ok && !reported) {
            CHECK_MSG(ok, "%s[%lld]: got %.9g, torch %.9g (%lld ulps)", what, (long long)i,
                      (double)got[i], (double)w[i], (long long)u);
            reported = 1;
        }
        stats->n++;
        stats->n_exact += u == 0;
        if (u > stats->max_ulps) stats->max_ulps = u;
        if (scale > 0 && diff / scale > stats->max_rel) stats->max_rel = diff / scale;
    }
    free(w);
}

/* Clips the gradients with torch's own total norm from the fixture instead of ours:
 * clip_coef = (1 / (norm + 1e-6f)) * max_norm, clamped to 1, as clip_grad_norm_ does. */
static void clip_with_norm(scenario *sc, float norm) {
    float coefficient = (1.0f / (norm + 1e-6f)) * (float)sc->cfg[CFG_MAX_NORM];
    if (coefficient < 1.0f) mmt_grad_scale(sc->groups, sc->n_groups, coefficient);
}

/*
 * Runs a fixture scenario step by step, comparing everything torch recorded. With
 * torch_norm, gradients are clipped with torch's norm (isolating AdamW: the moments must
 * then be bitwise); without, our own clip_grad_norm runs (end to end: a one-ulp difference
 * in the norm moves the clipped gradients, so moments are compared relative to the tensor's
 * largest value, since an exp_avg element can be the small difference of larger terms).
 */
static void run_fixture(const char *file, int torch_norm) {
    scenario sc;
    if (!scenario_open(&sc, file)) {
        scenario_close(&sc);
        return;
    }
    const tolerance param_tol = {-1, RTOL_PARAM, ATOL_PARAM, 0};
    const tolerance moment_tol = torch_norm ? (tolerance){0, 0, 0, 0}
                                            : (tolerance){-1, RTOL_MOMENT, 0, 1};
    mmt_adamw *opt = NULL;
    CHECK_OK(mmt_adamw_create(&sc.config, sc.groups, sc.n_groups, &opt));
    const mmt_st_tensor *norms = need(sc.st, "norm");
    const mmt_st_tensor *lrs[2] = {need(sc.st, "lr.0"), need(sc.st, "lr.1")};
    diff_stats param_stats = {0}, moment_stats = {0}, norm_stats = {0};
    int64_t n_steps = (int64_t)sc.cfg[CFG_N_STEPS];
    for (int64_t s = 1; opt && norms && lrs[0] && lrs[1] && s <= n_steps; s++) {
        load_grads(&sc, s);
        float want_norm = (float)fixture_value(norms, s - 1), norm = 0;
        if (torch_norm) {
            norm = mmt_grad_global_norm(sc.groups, sc.n_groups);
            clip_with_norm(&sc, want_norm);
        } else {
            CHECK_OK(mmt_grad_clip_norm(sc.groups, sc.n_groups, sc.cfg[CFG_MAX_NORM], &norm));
        }
        int64_t u = ulps(norm, want_norm);
        CHECK_MSG(u <= ULPS_NORM, "%s step %lld: norm %.9g, torch %.9g", file, (long long)s,
                  (double)norm, (double)want_norm);
        norm_stats.n++;
        norm_stats.n_exact += u == 0;
        if (u > norm_stats.max_ulps) norm_stats.max_ulps = u;

        double multiplier = mmt_schedule_multiplier(&sc.schedule, opt->step);
        for (int g = 0; g < 2; g++) {
            double lr = mmt_adamw_group_lr(opt, g, multiplier);
            double want = fixture_value(lrs[g], s - 1);
            CHECK_MSG(fabs(lr - want) <= RTOL_LR * fabs(want), "%s step %lld group %d: lr %.17g, "
                      "torch %.17g", file, (long long)s, g, lr, want);
        }
        CHECK_OK(mmt_adamw_step(opt, multiplier));
        CHECK(opt->step == s);
        for (int64_t k = 0; k < opt->n_params; k++) {
            const mmt_param *p = &opt->params[k];
            char what[256];
            snprintf(what, sizeof what, "%s step %lld %s", file, (long long)s, p->name);
            compare(what, p->data, need(sc.st, "param.%lld.%s", (long long)s, p->name),
                    param_tol, &param_stats);
            compare(what, opt->exp_avg[k], need(sc.st, "exp_avg.%lld.%s", (long long)s, p->name),
                    moment_tol, &moment_stats);
            compare(what, opt->exp_avg_sq[k],
                    need(sc.st, "exp_avg_sq.%lld.%s", (long long)s, p->name), moment_tol,
                    &moment_stats);
            if (sc.config.amsgrad)
                compare(what, opt->max_exp_avg_sq[k],
                        need(sc.st, "max_exp_avg_sq.%lld.%s", (long long)s, p->name),
                        moment_tol, &moment_stats);
        }
    }
    printf("     %s%s: params %lld/%lld bitwise, max %lld ulps, max rel %.2g; moments "
           "%lld/%lld bitwise, max rel to tensor max %.2g; norms %lld/%lld bitwise, max %lld "
           "ulps\n",
           file, torch_norm ? " (torch's norm)" : "", (long long)param_stats.n_exact,
           (long long)param_stats.n, (long long)param_stats.max_ulps, param_stats.max_rel,
           (long long)moment_stats.n_exact, (long long)moment_stats.n, moment_stats.max_rel,
           (long long)norm_stats.n_exact, (long long)norm_stats.n,
           (long long)norm_stats.max_ulps);
    mmt_adamw_free(opt);
    scenario_close(&sc);
}

static void test_one_step(void) {
    run_fixture("optimizer/one_step.safetensors", 0);
}
static void test_five_steps_warmup_cosine(void) {
    run_fixture("optimizer/five_steps.safetensors", 0);
    run_fixture("optimizer/five_steps.safetensors", 1);
}
static void test_amsgrad_min_lr(void) {
    run_fixture("optimizer/amsgrad.safetensors", 0);
    run_fixture("optimizer/amsgrad.safetensors", 1);
}
static void test_low_beta1_other_lerp_branch(void) {
    run_fixture("optimizer/low_beta1.safetensors", 0);
    run_fixture("optimizer/low_beta1.safetensors", 1);
}

/* ---- schedules ----------------------------------------------------------------------- */

/* Parses "<kind>[.m<rate%>].w<warmup>.t<total>[.c<cycles%>]". */
static int parse_schedule_name(const char *name, mmt_schedule *out) {
    char kind[64];
    size_t len = strcspn(name, ".");
    if (len >= sizeof kind) return 0;
    memcpy(kind, name, len);
    kind[len] = '\0';
    mmt_schedule_kind k;
    if (mmt_schedule_kind_parse(kind, &k) != MMT_OK) return 0;
    *out = mmt_schedule_make(k, -1, -1);
    for (const char *c = name + len; *c == '.'; c += strcspn(c + 1, ".") + 1) {
        long long v = strtoll(c + 2, NULL, 10);
        switch (c[1]) {
        case 'w': out->warmup_steps = v; break;
        case 't': out->total_steps = v; break;
        case 'm': out->min_lr_rate = (double)v / 100.0; break;
        case 'c': out->num_cycles = (double)v / 100.0; break;
        default: return 0;
        }
    }
    return out->warmup_steps >= 0 && out->total_steps >= 0;
}

static void test_schedules_match_transformers(void) {
    mmt_safetensors *st = NULL;
    CHECK_OK(mmt_safetensors_open(fixture("optimizer/schedules.safetensors"), &st));
    if (!st) return;
    int64_t n_values = 0, n_exact = 0;
    double max_diff = 0;
    CHECK(st->n_tensors >= 40);
    for (int64_t i = 0; i < st->n_tensors; i++) {
        const mmt_st_tensor *t = &st->tensors[i];
        mmt_schedule s;
        CHECK_MSG(parse_schedule_name(t->name, &s), "cannot parse schedule name %s", t->name);
        CHECK_OK(mmt_schedule_check(&s));
        for (int64_t step = 0; step < t->numel; step++) {
            double got = mmt_schedule_multiplier(&s, step);
            double want = fixture_value(t, step);
            double diff = fabs(got - want);
            CHECK_MSG(diff <= 1e-12, "%s step %lld: %.17g, transformers %.17g", t->name,
                      (long long)step, got, want);
            if (diff > max_diff) max_diff = diff;
            n_values++;
            n_exact += got == want;
        }
    }
    printf("     schedules: %lld/%lld values bit-identical, max diff %.3g\n", (long long)n_exact,
           (long long)n_values, max_diff);
    mmt_safetensors_close(st);
}

static void test_schedule_checks(void) {
    mmt_schedule s = mmt_schedule_make(MMT_SCHEDULE_LINEAR, -1, 10);
    CHECK_FAILS(mmt_schedule_check(&s), MMT_STATUS_INVALID_ARGUMENT, "warmup_steps -1");
    s = mmt_schedule_make(MMT_SCHEDULE_COSINE, 0, -5);
    CHECK_FAILS(mmt_schedule_check(&s), MMT_STATUS_INVALID_ARGUMENT, "total_steps -5");
    s = mmt_schedule_make(MMT_SCHEDULE_COSINE, 0, 5);
    s.min_lr_rate = 1.5;
    CHECK_FAILS(mmt_schedule_check(&s), MMT_STATUS_INVALID_ARGUMENT, "min_lr_rate");
    s.min_lr_rate = NAN;
    CHECK_FAILS(mmt_schedule_check(&s), MMT_STATUS_INVALID_ARGUMENT, "min_lr_rate");
    s.min_lr_rate = 0;
    s.num_cycles = INFINITY;
    CHECK_FAILS(mmt_schedule_check(&s), MMT_STATUS_INVALID_ARGUMENT, "num_cycles");
    mmt_schedule_kind k;
    CHECK_FAILS(mmt_schedule_kind_parse("cosine_restarts", &k), MMT_STATUS_INVALID_ARGUMENT,
                "cosine_restarts");
    CHECK_OK(mmt_schedule_kind_parse("constant_with_warmup", &k));
    CHECK(k == MMT_SCHEDULE_CONSTANT);
    CHECK(strcmp(mmt_schedule_kind_name(MMT_SCHEDULE_COSINE), "cosine") == 0);
    /* Warmup reaches 1 at step == warmup; cosine ends at min_lr_rate at step == total. */
    s = mmt_schedule_make(MMT_SCHEDULE_COSINE, 4, 12);
    s.min_lr_rate = 0.25;
    CHECK(mmt_schedule_multiplier(&s, 2) == 0.5);
    CHECK(mmt_schedule_multiplier(&s, 4) == 1.0);
    CHECK_NEAR(mmt_schedule_multiplier(&s, 12), 0.25, 1e-15);
}

/* ---- weight-decay rule ----------------------------------------------------------------- */

static void test_no_decay_rule(void) {
    static const struct {
        const char *name;
        int ndim, no_decay;
    } cases[] = {
        {"logit_scale", 0, 1},
        {"text_model.encoder.layers.0.mlp.fc1.bias", 1, 1},
        {"text_model.encoder.layers.0.mlp.fc1.weight", 2, 0},
        {"text_model.encoder.layers.0.self_attn.q_proj.lora_A.default.weight", 2, 0},
        {"text_model.embeddings.token_embedding.weight", 2, 0},
        {"text_model.embeddings.position_embedding.weight", 2, 1},
        {"vision_model.embeddings.class_embedding", 1, 1},
        {"vision_model.embeddings.patch_embedding.weight", 4, 0},
        {"vision_model.pre_layrnorm.weight", 1, 1},
        {"visual.positional_embedding", 2, 1},
        {"visual.ln_post.weight", 1, 1},
        {"visual.proj", 2, 0},
        {"text_projection.weight", 2, 0},
        {"model.layer_norm1.weight", 2, 1},      /* 2-D only to exercise the name rule */
        {"blocks.0.ln_1.weight", 2, 1},
        {"backbone.bn1.weight", 2, 1},
        {"kiln.weight", 2, 0},                   /* "ln" inside a word is not a LayerNorm */
        {"cabnet.proj.weight", 2, 0},
        {"vit.pos_embed", 3, 1},
        {"vit.cls_token", 3, 1},
        {"prompt.embedding", 2, 0},
        {"rel_pos_bias.table", 2, 1},
        {NULL, 2, 0},
        {NULL, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_MSG(mmt_param_no_decay(cases[i].name, cases[i].ndim) == cases[i].no_decay,
                  "%s (ndim %d): expected %d", cases[i].name ? cases[i].name : "(null)",
                  cases[i].ndim, cases[i].no_decay);
    }
    /* All no-decay or all decay: one group; none: zero groups. */
    mmt_param ps[2] = {{.name = "a.bias", .ndim = 1}, {.name = "b.ln_1.weight", .ndim = 1}};
    mmt_param sorted[2];
    mmt_param_group groups[2];
    int64_t n = -1;
    mmt_param_groups_by_decay(ps, 2, 0.1, 2.0, sorted, groups, &n);
    CHECK(n == 1 && groups[0].n_params == 2 && groups[0].weight_decay == 0.0);
    CHECK(groups[0].lr_scale == 2.0 && strcmp(groups[0].name, "no_decay") == 0);
    mmt_param_groups_by_decay(ps, 0, 0.1, 1.0, sorted, groups, &n);
    CHECK(n == 0);
}

/* ---- gradient helpers -------------------------------------------------------------- */

static void test_grad_accumulate_scale_clip(void) {
    float g0[6], g1[3];
    mmt_param ps[2] = {
        {.name = "w", .data = NULL, .grad = g0, .ndim = 2, .shape = {2, 3}, .numel = 6},
        {.name = "b", .data = NULL, .grad = g1, .ndim = 1, .shape = {3}, .numel = 3},
    };
    mmt_param_group group = {"all", ps, 2, 1.0, 0.0, NULL};
    mmt_grad_zero(&group, 1);
    for (int i = 0; i < 6; i++) CHECK(g0[i] == 0.0f);
    /* Three micro-batches add up, then the mean. */
    for (int k = 1; k <= 3; k++) {
        for (int i = 0; i < 6; i++) g0[i] += (float)(k * (i + 1));
        for (int i = 0; i < 3; i++) g1[i] += (float)(-k * (i + 1));
    }
    mmt_grad_scale(&group, 1, 1.0 / 3);
    for (int i = 0; i < 6; i++) CHECK(g0[i] == (float)(6 * (i + 1)) * (float)(1.0 / 3));
    for (int i = 0; i < 3; i++) CHECK(g1[i] == (float)(-6 * (i + 1)) * (float)(1.0 / 3));
    /* norm = sqrt(4 * (1+4+...+36) + 4 * (1+4+9)) = sqrt(364 + 56) */
    float norm = mmt_grad_global_norm(&group, 1);
    CHECK_NEAR(norm, sqrt(420.0), 1e-5);
    /* Below max_norm: untouched, bit for bit. */
    float before0[6], before1[3];
    memcpy(before0, g0, sizeof g0);
    memcpy(before1, g1, sizeof g1);
    float total = 0;
    CHECK_OK(mmt_grad_clip_norm(&group, 1, 100.0, &total));
    CHECK(total == norm);
    CHECK(memcmp(before0, g0, sizeof g0) == 0 && memcmp(before1, g1, sizeof g1) == 0);
    /* Above: scaled to max_norm (1e-6 relative: the epsilon, and float rounding). */
    CHECK_OK(mmt_grad_clip_norm(&group, 1, 2.0, &total));
    CHECK(total == norm);
    CHECK_NEAR(mmt_grad_global_norm(&group, 1), 2.0, 2e-6);
    CHECK_FAILS(mmt_grad_clip_norm(&group, 1, 0.0, &total), MMT_STATUS_INVALID_ARGUMENT,
                "max_norm");
    CHECK_FAILS(mmt_grad_clip_norm(&group, 1, NAN, &total), MMT_STATUS_INVALID_ARGUMENT,
                "max_norm");
    /* No parameters: norm 0, nothing to do. */
    CHECK(mmt_grad_global_norm(NULL, 0) == 0.0f);
}

static void test_nonfinite_gradient_is_named(void) {
    scenario sc;
    if (!scenario_open(&sc, "optimizer/one_step.safetensors")) {
        scenario_close(&sc);
        return;
    }
    load_grads(&sc, 1);
    CHECK_OK(mmt_grad_check_finite(sc.groups, sc.n_groups));
    CHECK(mmt_grad_find_nonfinite(sc.groups, sc.n_groups, NULL, NULL) == 0);
    /* Two bad elements: the one in group 0 is found first. */
    sc.params[3].grad[3] = NAN;
    sc.params[0].grad[7] = INFINITY;
    const mmt_param *bad = NULL;
    int64_t index = -1;
    CHECK(mmt_grad_find_nonfinite(sc.groups, sc.n_groups, &bad, &index) == 1);
    CHECK(bad && strcmp(bad->name, PARAM_NAMES[0]) == 0 && index == 7);
    CHECK_FAILS(mmt_grad_check_finite(sc.groups, sc.n_groups), MMT_STATUS_INVALID_ARGUMENT,
                "text_model.encoder.layers.0.mlp.fc1.weight[7] = inf (shape [6, 5])");
    sc.params[0].grad[7] = 0.5f;
    CHECK_FAILS(mmt_grad_check_finite(sc.groups, sc.n_groups), MMT_STATUS_INVALID_ARGUMENT,
                "non-finite gradient: text_model.final_layer_norm.weight[3] = ");
    CHECK(strstr(mmt_last_error(), "nan") != NULL);
    /* Clipping reports the NaN norm and leaves every gradient as it was. */
    float *copies[N_PARAMS];
    for (int i = 0; i < N_PARAMS; i++) {
        copies[i] = malloc((size_t)sc.params[i].numel * sizeof(float) + 4);
        memcpy(copies[i], sc.params[i].grad, (size_t)sc.params[i].numel * sizeof(float));
    }
    float norm = 0;
    CHECK_OK(mmt_grad_clip_norm(sc.groups, sc.n_groups, 1.0, &norm));
    CHECK(isnan(norm));
    for (int i = 0; i < N_PARAMS; i++) {
        CHECK(memcmp(copies[i], sc.params[i].grad, (size_t)sc.params[i].numel * 4) == 0);
        free(copies[i]);
    }
    scenario_close(&sc);
}

/* ---- state save / load ------------------------------------------------------------- */

/* Runs steps [from, to] of a scenario with clipping and the schedule. */
static void train_steps(scenario *sc, mmt_adamw *opt, int64_t from, int64_t to) {
    for (int64_t s = from; s <= to; s++) {
        load_grads(sc, s);
        float norm;
        CHECK_OK(mmt_grad_clip_norm(sc->groups, sc->n_groups, sc->cfg[CFG_MAX_NORM], &norm));
        CHECK_OK(mmt_adamw_step(opt, mmt_schedule_multiplier(&sc->schedule, opt->step)));
    }
}

static mmt_status save_state(const mmt_adamw *opt, const char *path) {
    int64_t cap = mmt_adamw_state_count(opt), n = 0;
    mmt_st_write_tensor *t = calloc((size_t)cap, sizeof *t);
    mmt_status s = mmt_adamw_state_export(opt, t, cap, &n);
    if (s == MMT_OK) s = mmt_safetensors_write(path, t, n, NULL, 0);
    free(t);
    return s;
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void check_resume_is_bitwise(const char *file) {
    scenario a, b, c;
    int ok = scenario_open(&a, file) & scenario_open(&b, file) & scenario_open(&c, file);
    mmt_adamw *opt_a = NULL, *opt_b = NULL, *opt_c = NULL;
    if (ok) {
        /* a: uninterrupted. b: 2 steps, saved. c: a fresh model and optimizer given b's
         * parameters and saved state, then the remaining steps. */
        int64_t n = (int64_t)a.cfg[CFG_N_STEPS];
        CHECK_OK(mmt_adamw_create(&a.config, a.groups, a.n_groups, &opt_a));
        CHECK_OK(mmt_adamw_create(&b.config, b.groups, b.n_groups, &opt_b));
        CHECK_OK(mmt_adamw_create(&c.config, c.groups, c.n_groups, &opt_c));
        if (opt_a && opt_b && opt_c) {
            train_steps(&a, opt_a, 1, n);
            train_steps(&b, opt_b, 1, 2);
            CHECK_OK(save_state(opt_b, tmp_path));
            for (int i = 0; i < N_PARAMS; i++)
                memcpy(c.params[i].data, b.params[i].data, (size_t)b.params[i].numel * 4);
            mmt_safetensors *st = NULL;
            CHECK_OK(mmt_safetensors_open(tmp_path, &st));
            if (st) CHECK_OK(mmt_adamw_state_import(opt_c, st));
            mmt_safetensors_close(st);
            CHECK(opt_c->step == 2);
            train_steps(&c, opt_c, 3, n);
            CHECK(opt_c->step == opt_a->step);
            for (int64_t k = 0; k < opt_a->n_params; k++) {
                int64_t numel = opt_a->params[k].numel;
                CHECK_MSG(same_bits(opt_a->params[k].data, opt_c->params[k].data, numel),
                          "%s: resumed parameter %s differs", file, opt_a->params[k].name);
                CHECK(same_bits(opt_a->exp_avg[k], opt_c->exp_avg[k], numel));
                CHECK(same_bits(opt_a->exp_avg_sq[k], opt_c->exp_avg_sq[k], numel));
                if (a.config.amsgrad)
                    CHECK(same_bits(opt_a->max_exp_avg_sq[k], opt_c->max_exp_avg_sq[k], numel));
            }
        }
    }
    mmt_adamw_free(opt_a);
    mmt_adamw_free(opt_b);
    mmt_adamw_free(opt_c);
    scenario_close(&a);
    scenario_close(&b);
    scenario_close(&c);
}

/* The step's loop built for FMA CPUs and the baseline one (fmaf from libm) give the same
 * bits: fmaf is exactly rounded either way. */
static void check_fma_build_matches_baseline(const char *file) {
    scenario a, b;
    int ok = scenario_open(&a, file) & scenario_open(&b, file);
    mmt_adamw *with_fma = NULL, *baseline = NULL;
    if (ok) {
        CHECK_OK(mmt_adamw_create(&a.config, a.groups, a.n_groups, &with_fma));
        CHECK_OK(mmt_adamw_create(&b.config, b.groups, b.n_groups, &baseline));
    }
    if (with_fma && baseline && !with_fma->fma) {
        printf("     (this CPU has no FMA: only the baseline loop runs)\n");
    } else if (with_fma && baseline) {
        baseline->fma = 0;
        int64_t n = (int64_t)a.cfg[CFG_N_STEPS];
        train_steps(&a, with_fma, 1, n);
        train_steps(&b, baseline, 1, n);
        for (int64_t k = 0; k < with_fma->n_params; k++) {
            int64_t numel = with_fma->params[k].numel;
            CHECK(same_bits(with_fma->params[k].data, baseline->params[k].data, numel));
            CHECK(same_bits(with_fma->exp_avg[k], baseline->exp_avg[k], numel));
            CHECK(same_bits(with_fma->exp_avg_sq[k], baseline->exp_avg_sq[k], numel));
        }
    }
    mmt_adamw_free(with_fma);
    mmt_adamw_free(baseline);
    scenario_close(&a);
    scenario_close(&b);
}

static void test_fma_build_matches_baseline(void) {
    check_fma_build_matches_baseline("optimizer/five_steps.safetensors");
    check_fma_build_matches_baseline("optimizer/amsgrad.safetensors");
    check_fma_build_matches_baseline("optimizer/low_beta1.safetensors");
}

static void test_resume_is_bitwise(void) {
    check_resume_is_bitwise("optimizer/five_steps.safetensors");
    check_resume_is_bitwise("optimizer/amsgrad.safetensors");
}

static void test_export_layout(void) {
    scenario sc;
    if (!scenario_open(&sc, "optimizer/amsgrad.safetensors")) {
        scenario_close(&sc);
        return;
    }
    mmt_adamw *opt = NULL;
    CHECK_OK(mmt_adamw_create(&sc.config, sc.groups, sc.n_groups, &opt));
    if (opt) {
        CHECK(mmt_adamw_state_count(opt) == 1 + 3 * N_PARAMS);
        mmt_st_write_tensor t[1 + 3 * N_PARAMS];
        int64_t n = 0;
        CHECK_FAILS(mmt_adamw_state_export(opt, t, 3 * N_PARAMS, &n),
                    MMT_STATUS_INVALID_ARGUMENT, "needs 16 entries");
        CHECK_OK(mmt_adamw_state_export(opt, t, 1 + 3 * N_PARAMS, &n));
        CHECK(n == 1 + 3 * N_PARAMS);
        CHECK(strcmp(t[0].name, "optimizer.step") == 0 && t[0].dtype == MMT_DTYPE_I64 &&
              t[0].ndim == 0);
        CHECK(strcmp(t[1].name, "optimizer.exp_avg.text_model.encoder.layers.0.mlp.fc1.weight")
              == 0);
        CHECK(strcmp(t[2].name, "optimizer.exp_avg_sq.text_model.encoder.layers.0.mlp.fc1.weight")
              == 0);
        CHECK(strcmp(t[6].name, "optimizer.max_exp_avg_sq.prompt.embedding") == 0);
        CHECK(t[4].ndim == 2 && t[4].shape[0] == 0 && t[4].shape[1] == 3);
        CHECK(t[15].ndim == 0 && strcmp(t[15].name, "optimizer.max_exp_avg_sq.logit_scale") == 0);
        /* Names and group labels are the optimizer's own copies. */
        CHECK(opt->params[0].name != PARAM_NAMES[0]);
        CHECK(strcmp(opt->groups[1].name, "no_decay") == 0);
    }
    mmt_adamw_free(opt);
    scenario_close(&sc);
}

/* Writes the state of opt to tmp_path with one tensor replaced (by name; NULL data = left
 * out). */
static void write_modified(const mmt_adamw *opt, const char *name, const mmt_st_write_tensor *r) {
    int64_t cap = mmt_adamw_state_count(opt), n = 0;
    mmt_st_write_tensor *t = calloc((size_t)cap, sizeof *t);
    CHECK_OK(mmt_adamw_state_export(opt, t, cap, &n));
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (strcmp(t[i].name, name) != 0) t[k++] = t[i];
        else if (r) t[k++] = *r;
    }
    CHECK_OK(mmt_safetensors_write(tmp_path, t, k, NULL, 0));
    free(t);
}

static void test_import_errors(void) {
    scenario sc;
    if (!scenario_open(&sc, "optimizer/five_steps.safetensors")) {
        scenario_close(&sc);
        return;
    }
    mmt_adamw *opt = NULL, *other = NULL;
    CHECK_OK(mmt_adamw_create(&sc.config, sc.groups, sc.n_groups, &opt));
    if (!opt) {
        scenario_close(&sc);
        return;
    }
    train_steps(&sc, opt, 1, 2);
    /* A snapshot of the state: every failed import must leave it exactly so. */
    int64_t total = 0;
    for (int64_t k = 0; k < opt->n_params; k++) total += opt->params[k].numel;
    float *snapshot = malloc((size_t)total * 2 * sizeof(float));
    memcpy(snapshot, opt->state, (size_t)total * 2 * sizeof(float));

    const char *w_avg = "optimizer.exp_avg.text_model.encoder.layers.0.mlp.fc1.weight";
    const char *w_sq = "optimizer.exp_avg_sq.text_model.encoder.layers.0.mlp.fc1.weight";
    float zeros[30] = {0}, bad_sq[30] = {0};
    bad_sq[29] = -1.0f;
    uint16_t halves[30] = {0};
    int64_t transposed[2] = {5, 6}, shape65[2] = {6, 5};
    int64_t negative = -3;
    double step_f64 = 2;
    struct {
        const char *name;
        mmt_st_write_tensor replacement;
        int drop;
        mmt_status status;
        const char *needle;
    } cases[] = {
        {w_avg, {0}, 1, MMT_STATUS_NOT_FOUND, "\"" "optimizer.exp_avg.text_model.encoder."
                                              "layers.0.mlp.fc1.weight\" is missing"},
        {"optimizer.step", {0}, 1, MMT_STATUS_NOT_FOUND, "\"optimizer.step\" is missing"},
        {w_avg, {w_avg, MMT_DTYPE_F32, 2, transposed, zeros}, 0, MMT_STATUS_BAD_FORMAT,
         "has shape [5, 6], expected [6, 5] (parameter \"text_model.encoder.layers.0.mlp."
         "fc1.weight\")"},
        {w_avg, {w_avg, MMT_DTYPE_F16, 2, shape65, halves}, 0, MMT_STATUS_BAD_FORMAT,
         "has dtype F16, expected F32"},
        {w_sq, {w_sq, MMT_DTYPE_F32, 2, shape65, bad_sq}, 0, MMT_STATUS_BAD_FORMAT,
         "element 29 is -1"},
        {"optimizer.step", {"optimizer.step", MMT_DTYPE_I64, 0, NULL, &negative}, 0,
         MMT_STATUS_BAD_FORMAT, "is -3, expected >= 0"},
        {"optimizer.step", {"optimizer.step", MMT_DTYPE_F64, 0, NULL, &step_f64}, 0,
         MMT_STATUS_BAD_FORMAT, "has dtype F64, expected I64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_modified(opt, cases[i].name, cases[i].drop ? NULL : &cases[i].replacement);
        mmt_safetensors *st = NULL;
        CHECK_OK(mmt_safetensors_open(tmp_path, &st));
        if (!st) continue;
        CHECK_FAILS(mmt_adamw_state_import(opt, st), cases[i].status, cases[i].needle);
        CHECK(strstr(mmt_last_error(), tmp_path) == mmt_last_error());
        mmt_safetensors_close(st);
        CHECK(opt->step == 2);
        CHECK(memcmp(snapshot, opt->state, (size_t)total * 2 * sizeof(float)) == 0);
    }

    /* A state saved for other parameter names: the first missing one is named. */
    CHECK_OK(save_state(opt, tmp_path));
    mmt_param renamed[N_PARAMS];
    memcpy(renamed, sc.sorted, sizeof renamed);
    renamed[3].name = "text_model.final_layernorm.weight";
    mmt_param_group groups[2] = {sc.groups[0], sc.groups[1]};
    groups[0].params = renamed;
    groups[1].params = renamed + 2;
    CHECK_OK(mmt_adamw_create(&sc.config, groups, 2, &other));
    mmt_safetensors *st = NULL;
    CHECK_OK(mmt_safetensors_open(tmp_path, &st));
    if (other && st) {
        CHECK_FAILS(mmt_adamw_state_import(other, st), MMT_STATUS_NOT_FOUND,
                    "optimizer.exp_avg.text_model.final_layernorm.weight\" is missing");
        CHECK(other->step == 0);
    }
    mmt_adamw_free(other);
    other = NULL;
    /* An amsgrad optimizer cannot resume from a state saved without amsgrad. */
    mmt_adamw_config ams = sc.config;
    ams.amsgrad = 1;
    CHECK_OK(mmt_adamw_create(&ams, sc.groups, sc.n_groups, &other));
    if (other && st)
        CHECK_FAILS(mmt_adamw_state_import(other, st), MMT_STATUS_NOT_FOUND,
                    "optimizer.max_exp_avg_sq.text_model.encoder.layers.0.mlp.fc1.weight");
    mmt_safetensors_close(st);
    st = NULL;
    /* The other way round is fine: max_exp_avg_sq is ignored (here a fresh state, step 0). */
    if (other) {
        CHECK_OK(save_state(other, tmp_path));
        CHECK_OK(mmt_safetensors_open(tmp_path, &st));
        if (st) CHECK_OK(mmt_adamw_state_import(opt, st));
        CHECK(opt->step == 0 && opt->exp_avg_sq[0][0] == 0.0f);
        mmt_safetensors_close(st);
    }
    mmt_adamw_free(other);
    free(snapshot);
    mmt_adamw_free(opt);
    scenario_close(&sc);
}

/* ---- argument checks --------------------------------------------------------------- */

static void test_create_and_step_errors(void) {
    float data[6] = {0}, grad[6] = {0}, d2[3] = {0}, g2[3] = {0};
    mmt_param ps[2] = {
        {.name = "w", .data = data, .grad = grad, .ndim = 2, .shape = {2, 3}, .numel = 6},
        {.name = "b", .data = d2, .grad = g2, .ndim = 1, .shape = {3}, .numel = 3},
    };
    mmt_param_group group = {"g", ps, 2, 1.0, 0.01, NULL};
    mmt_adamw_config c = mmt_adamw_config_default();
    mmt_adamw *opt = (mmt_adamw *)&group;   /* must be reset to NULL on failure */

    c.beta1 = 1.0;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT, "beta1 1");
    CHECK(opt == NULL);
    c = mmt_adamw_config_default();
    c.beta2 = -0.1;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT, "beta2");
    c = mmt_adamw_config_default();
    c.lr = NAN;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT, "lr nan");
    c = mmt_adamw_config_default();
    c.eps = -1e-8;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT, "eps");
    c = mmt_adamw_config_default();

    group.weight_decay = -0.1;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT,
                "group 0 \"g\": weight_decay -0.1");
    group.weight_decay = 0.01;
    group.lr_scale = INFINITY;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT, "lr_scale");
    group.lr_scale = 1.0;

    ps[1].name = "w";
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT,
                "\"w\" appears twice");
    ps[1].name = NULL;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT,
                "group 0 parameter 1 has no name");
    ps[1].name = "b";
    ps[0].numel = 5;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT,
                "\"w\": numel 5 does not match shape [2, 3]");
    ps[0].numel = 6;
    ps[0].shape[0] = -2;
    ps[0].numel = 6;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT,
                "negative dimension");
    ps[0].shape[0] = 2;
    ps[1].grad = NULL;
    CHECK_FAILS(mmt_adamw_create(&c, &group, 1, &opt), MMT_STATUS_INVALID_ARGUMENT,
                "\"b\" has no gradient buffer");
    ps[1].grad = g2;
    CHECK_FAILS(mmt_adamw_create(&c, &group, -1, &opt), MMT_STATUS_INVALID_ARGUMENT, "groups");

    CHECK_OK(mmt_adamw_create(&c, &group, 1, &opt));
    if (!opt) return;
    for (int i = 0; i < 6; i++) data[i] = grad[i] = (float)i - 2.5f;
    float before[6];
    memcpy(before, data, sizeof data);
    CHECK_FAILS(mmt_adamw_step(opt, -1.0), MMT_STATUS_INVALID_ARGUMENT, "multiplier -1");
    CHECK_FAILS(mmt_adamw_step(opt, NAN), MMT_STATUS_INVALID_ARGUMENT, "multiplier nan");
    opt->params[1].grad = NULL;
    CHECK_FAILS(mmt_adamw_step(opt, 1.0), MMT_STATUS_INVALID_ARGUMENT,
                "\"b\" has no gradient buffer");
    CHECK(opt->step == 0 && memcmp(before, data, sizeof data) == 0);
    for (int i = 0; i < 6; i++) CHECK(opt->exp_avg[0][i] == 0.0f);
    opt->params[1].grad = g2;
    CHECK_OK(mmt_adamw_step(opt, 1.0));
    CHECK(opt->step == 1 && memcmp(before, data, sizeof data) != 0);
    /* A zero multiplier moves the moments but not the parameters (lr 0, as in warmup). */
    memcpy(before, data, sizeof data);
    CHECK_OK(mmt_adamw_step(opt, 0.0));
    CHECK(opt->step == 2 && memcmp(before, data, sizeof data) == 0);
    mmt_adamw_free(opt);
    mmt_adamw_free(NULL);

    /* No groups at all is a valid, empty optimizer. */
    CHECK_OK(mmt_adamw_create(&c, NULL, 0, &opt));
    if (opt) {
        CHECK_OK(mmt_adamw_step(opt, 1.0));
        CHECK(mmt_adamw_state_count(opt) == 1);
    }
    mmt_adamw_free(opt);
}

/* ---- allocation failures ----------------------------------------------------------- */

static void test_no_leaks_on_allocation_failure(void) {
    scenario sc;
    if (!scenario_open(&sc, "optimizer/amsgrad.safetensors")) {
        scenario_close(&sc);
        return;
    }
    for (int amsgrad = 0; amsgrad <= 1; amsgrad++) {
        mmt_adamw_config c = sc.config;
        c.amsgrad = amsgrad;
        size_t before = mmt_alloc_current_bytes();
        int succeeded = 0;
        /* Fail each allocation of create in turn until one run needs no failure. */
        for (long n = 1; n <= 64 && !succeeded; n++) {
            mmt_adamw *opt = (mmt_adamw *)&sc;
            mmt_alloc_fail_after(n);
            mmt_status s = mmt_adamw_create(&c, sc.groups, sc.n_groups, &opt);
            mmt_alloc_fail_after(0);
            if (s == MMT_OK) {
                succeeded = 1;
                CHECK(n > 5);   /* create makes at least this many allocations */
                /* The step allocates nothing. */
                load_grads(&sc, 1);
                mmt_alloc_fail_after(1);
                CHECK_OK(mmt_adamw_step(opt, 1.0));
                mmt_alloc_fail_after(0);
                mmt_adamw_free(opt);
            } else {
                CHECK(s == MMT_STATUS_OUT_OF_MEMORY);
                CHECK(strstr(mmt_last_error(), "out of memory") != NULL);
                CHECK(opt == NULL);
            }
            CHECK(mmt_alloc_current_bytes() == before);
        }
        CHECK(succeeded);
    }
    scenario_close(&sc);
}

int main(void) {
    snprintf(tmp_path, sizeof tmp_path, "/tmp/mmt_test_optimizer_%d.safetensors", (int)getpid());
    RUN(test_one_step);
    RUN(test_five_steps_warmup_cosine);
    RUN(test_amsgrad_min_lr);
    RUN(test_low_beta1_other_lerp_branch);
    RUN(test_schedules_match_transformers);
    RUN(test_schedule_checks);
    RUN(test_no_decay_rule);
    RUN(test_grad_accumulate_scale_clip);
    RUN(test_nonfinite_gradient_is_named);
    RUN(test_resume_is_bitwise);
    RUN(test_fma_build_matches_baseline);
    RUN(test_export_layout);
    RUN(test_import_errors);
    RUN(test_create_and_step_errors);
    RUN(test_no_leaks_on_allocation_failure);
    unlink(tmp_path);
    return check_summary();
}
