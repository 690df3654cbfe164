/*
 * test_probe_fit.c — the linear probe fitted by L-BFGS logistic regression (train/probe_fit.h)
 * against scikit-learn, on tests/fixtures/probe/probe.safetensors (tools/fixtures/
 * make_probe_fixtures.py: 400 + 200 synthetic 48-dim normalised embeddings, 8 classes;
 * LogisticRegression(solver="lbfgs", tol=1e-12) at C = 1 and C = 100, and at C = 10^-6..10^6):
 *   - the objective's gradient against central finite differences (h = 1e-6, float64):
 *     |error| <= 1e-7 + 1e-6 |g| for every one of the K (P + 1) = 392 parameters;
 *   - at fixed C (1 and 100) the fit reaches sklearn's objective value within relative 1e-9
 *     (sklearn's own solution has max |gradient| ~ 4e-8; measured: 1e-14 and 3e-13), the
 *     coefficients and centred intercepts agree within 1e-5 x max |coef| (measured: 2e-7 and
 *     5e-7), and the test-set predictions differ in at most one example (measured: none);
 *   - the full fit (the C sweep on a 20% held-out split of the training data, then the refit)
 *     scores on the test set at least sklearn's best test accuracy over the 13 decades minus
 *     0.03 (an oracle choice on the test set itself), and is bitwise repeatable;
 *   - the held-out split is stratified (round(0.2 x count) per class); with one example per
 *     class nothing is held out and fallback_C is used; fixed C skips the sweep;
 *   - head_config.json records the fit; the adapter folder is published whole (no .tmp left,
 *     an older adapter replaced) and loads; bad labels and parameters are one-line errors.
 */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/safetensors.h"
#include "train/probe_fit.h"

#define NK 8
#define NP 48
#define N_TRAIN 400
#define N_TEST 200
#define N_SWEEP 13

static float train_emb[N_TRAIN * NP], test_emb[N_TEST * NP];
static int32_t train_labels[N_TRAIN], test_labels[N_TEST];
static double fit_C[2], coef[2][NK * NP], intercept[2][NK], objective[2], train_loss[2], sweep_acc[N_SWEEP];
static int32_t test_pred[2][N_TEST];
static int loaded;
static char tmp[256];

/* Copies tensor name (numel elements of size bytes) out of the fixture; 0 when missing. */
static int take(const mmt_safetensors *st, const char *name, void *dst, int64_t numel, size_t size) {
    const mmt_st_tensor *t = mmt_safetensors_find(st, name);
    CHECK_MSG(t && t->numel == numel && t->end - t->begin == (uint64_t)numel * size, "fixture tensor %s", name);
    if (!t || t->numel != numel) return 0;
    memcpy(dst, t->data, (size_t)numel * size);
    return 1;
}

static void load_fixture(void) {
    mmt_safetensors *st = NULL;
    CHECK_OK(mmt_safetensors_open(fixture("probe/probe.safetensors"), &st));
    if (!st) return;
    int ok = take(st, "train.emb", train_emb, N_TRAIN * NP, 4) & take(st, "train.labels", train_labels, N_TRAIN, 4) &
             take(st, "test.emb", test_emb, N_TEST * NP, 4) & take(st, "test.labels", test_labels, N_TEST, 4) &
             take(st, "fit.C", fit_C, 2, 8) & take(st, "sweep.test_accuracy", sweep_acc, N_SWEEP, 8);
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "fit.%d.coef", i);
        ok &= take(st, name, coef[i], NK * NP, 8);
        snprintf(name, sizeof name, "fit.%d.intercept", i);
        ok &= take(st, name, intercept[i], NK, 8);
        snprintf(name, sizeof name, "fit.%d.objective", i);
        ok &= take(st, name, &objective[i], 1, 8);
        snprintf(name, sizeof name, "fit.%d.train_loss", i);
        ok &= take(st, name, &train_loss[i], 1, 8);
        snprintf(name, sizeof name, "fit.%d.test_pred", i);
        ok &= take(st, name, test_pred[i], N_TEST, 4);
    }
    mmt_safetensors_close(st);
    loaded = ok;
}

static uint64_t rng = 99;
static double uniform_pm1(void) {
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(1ull << 53) * 2 - 1;
}

static void test_gradient_matches_finite_differences(void) {
    if (!loaded) return;
    mmt_probe_logreg *lr = NULL;
    CHECK_OK(mmt_probe_logreg_create(train_emb, train_labels, N_TRAIN, NP, NK, &lr));
    if (!lr) return;
    int64_t size = mmt_probe_logreg_size(lr);
    CHECK(size == NK * (NP + 1));
    double theta[NK * (NP + 1)], grad[NK * (NP + 1)], g2[NK * (NP + 1)];
    for (int64_t j = 0; j < size; j++) theta[j] = 3 * uniform_pm1();
    const double C = 0.5, h = 1e-6;
    double ce;
    double f = mmt_probe_logreg_objective(lr, C, theta, grad, &ce);
    double w2 = 0;
    for (int64_t j = 0; j < NK * NP; j++) w2 += theta[j] * theta[j];
    CHECK_NEAR(f, ce + w2 / (2 * C * N_TRAIN), 1e-12 * f);
    int64_t bad = 0;
    for (int64_t j = 0; j < size; j++) {
        double keep = theta[j];
        theta[j] = keep + h;
        double fp = mmt_probe_logreg_objective(lr, C, theta, NULL, NULL);
        theta[j] = keep - h;
        double fm = mmt_probe_logreg_objective(lr, C, theta, NULL, NULL);
        theta[j] = keep;
        double fd = (fp - fm) / (2 * h);
        if (fabs(fd - grad[j]) > 1e-7 + 1e-6 * fabs(grad[j]) && bad++ < 5)
            CHECK_MSG(0, "theta[%lld]: gradient %.10g, finite differences %.10g", (long long)j, grad[j], fd);
    }
    CHECK(bad == 0);
    /* the bias gradient sums to zero (softmax minus one-hot), and repeated calls are bitwise equal */
    double sb = 0;
    for (int64_t k = 0; k < NK; k++) sb += grad[NK * NP + k];
    CHECK_NEAR(sb, 0, 1e-12);
    double f2 = mmt_probe_logreg_objective(lr, C, theta, g2, NULL);
    CHECK(f2 == f && memcmp(g2, grad, sizeof grad) == 0);
    mmt_probe_logreg_free(lr);
}

static void test_fixed_C_matches_sklearn(void) {
    if (!loaded) return;
    mmt_probe_logreg *lr = NULL;
    CHECK_OK(mmt_probe_logreg_create(train_emb, train_labels, N_TRAIN, NP, NK, &lr));
    if (!lr) return;
    for (int i = 0; i < 2; i++) {
        double theta[NK * (NP + 1)] = {0};
        mmt_lbfgs_params lp;
        mmt_lbfgs_params_default(&lp);
        lp.gtol = 1e-10;
        lp.max_iterations = 20000;
        mmt_lbfgs_result r;
        CHECK_OK(mmt_probe_logreg_fit(lr, fit_C[i], &lp, theta, &r));
        double ce, f = mmt_probe_logreg_objective(lr, fit_C[i], theta, NULL, &ce);
        CHECK_MSG(fabs(f - objective[i]) <= 1e-9 * objective[i], "C %g: objective %.15g, sklearn %.15g (%s, %lld iterations)",
                  fit_C[i], f, objective[i], mmt_lbfgs_stop_name(r.stop), (long long)r.iterations);
        CHECK_NEAR(ce, train_loss[i], 1e-6 * train_loss[i]);
        double wmax = 0, dw = 0, bsum = 0;
        for (int64_t j = 0; j < NK * NP; j++) {
            wmax = fmax(wmax, fabs(coef[i][j]));
            dw = fmax(dw, fabs(theta[j] - coef[i][j]));
        }
        for (int64_t k = 0; k < NK; k++) {
            dw = fmax(dw, fabs(theta[NK * NP + k] - intercept[i][k]));
            bsum += theta[NK * NP + k];
        }
        CHECK_MSG(dw <= 1e-5 * wmax, "C %g: max |coef - sklearn| %.3g (max |coef| %.3g)", fit_C[i], dw, wmax);
        CHECK_NEAR(bsum, 0, 1e-12);
        printf("     C %-4g: objective %.15g vs sklearn %.15g (rel %.2g), max coef diff %.2g of %.3g, %lld iterations\n",
               fit_C[i], f, objective[i], fabs(f - objective[i]) / objective[i], dw, wmax, (long long)r.iterations);
        int32_t pred[N_TEST];
        int64_t correct = 0, ref_correct = 0, differ = 0;
        CHECK_OK(mmt_probe_predict(theta, NK, NP, test_emb, test_labels, N_TEST, pred, &correct, NULL));
        for (int64_t t = 0; t < N_TEST; t++) {
            differ += pred[t] != test_pred[i][t];
            ref_correct += test_pred[i][t] == test_labels[t];
        }
        printf("     C %-4g: %lld of %d test predictions differ from sklearn's\n", fit_C[i], (long long)differ, N_TEST);
        CHECK_MSG(differ <= 1, "C %g: %lld test predictions differ from sklearn's", fit_C[i], (long long)differ);
        CHECK(llabs(correct - ref_correct) <= 1);
    }
    mmt_probe_logreg_free(lr);
}

static mmt_probe_head *new_head(void) {
    mmt_probe_head *h = mmt_calloc(1, sizeof *h);
    h->K = NK;
    h->P = NP;
    h->classes = mmt_calloc(NK, sizeof *h->classes);
    h->weight = mmt_calloc(NK * NP, sizeof(float));
    h->bias = mmt_calloc(NK, sizeof(float));
    for (int k = 0; k < NK; k++) {
        char name[32];
        snprintf(name, sizeof name, "class%d", k);
        h->classes[k] = mmt_strdup(name);
    }
    return h;
}

/* Test accuracy of a head (float weights, as eval --head uses them). */
static double head_accuracy(const mmt_probe_head *h) {
    int64_t hits = 0;
    float logits[NK];
    for (int64_t i = 0; i < N_TEST; i++) {
        mmt_probe_head_logits(h, test_emb + i * NP, 1, logits);
        int64_t best = 0;
        for (int64_t k = 1; k < NK; k++)
            if (logits[k] > logits[best]) best = k;
        hits += best == test_labels[i];
    }
    return (double)hits / N_TEST;
}

static void test_sweep_reaches_sklearn_best(void) {
    if (!loaded) return;
    double best = 0;
    for (int i = 0; i < N_SWEEP; i++) best = fmax(best, sweep_acc[i]);
    mmt_probe_head *h = new_head(), *h2 = new_head();
    mmt_probe_fit_params p;
    mmt_probe_fit_params_default(&p);
    mmt_probe_fit_result r, r2;
    CHECK_OK(mmt_probe_fit(train_emb, train_labels, N_TRAIN, &p, h, &r));
    double acc = head_accuracy(h);
    printf("     sweep: C %.3g, held-out accuracy %.4f on %lld, test accuracy %.4f (sklearn's best over the decades %.4f), "
           "%lld fits, %.2f s\n", r.C, r.heldout_accuracy, (long long)r.n_heldout, acc, best, (long long)r.n_sweep, r.seconds);
    CHECK_MSG(acc >= best - 0.03, "test accuracy %.4f, sklearn's best %.4f", acc, best);
    CHECK(r.n_heldout == 80 && r.n_fit == 320 && r.n_sweep == 13 + 2 * 3);
    CHECK(r.C >= 1e-6 && r.C <= 1e6 * pow(10, 0.5) && isfinite(r.heldout_accuracy));
    for (int64_t i = 0; i < r.n_sweep; i++) CHECK(r.sweep[i].heldout_accuracy <= r.heldout_accuracy);
    CHECK(r.sweep[0].C == 1e-6 && r.sweep[12].C == 1e6);
    /* bitwise repeatable */
    CHECK_OK(mmt_probe_fit(train_emb, train_labels, N_TRAIN, &p, h2, &r2));
    CHECK(r2.C == r.C && memcmp(h->weight, h2->weight, NK * NP * sizeof(float)) == 0 &&
          memcmp(h->bias, h2->bias, NK * sizeof(float)) == 0);
    /* the record */
    char *js = mmt_probe_fit_json(&r, &p);
    CHECK(js && strstr(js, "\"solver\": \"lbfgs\"") && strstr(js, "\"heldout_accuracy\"") && strstr(js, "\"sweep\": [") &&
          strstr(js, "\"heldout_examples\": 80"));
    /* published: a fresh folder, then replacing it */
    char run[300], path[512];
    snprintf(run, sizeof run, "%s/run", tmp);
    CHECK_OK(mmt_probe_head_publish(h, "models/x", &r, &p, run));
    CHECK_OK(mmt_probe_head_publish(h2, "models/x", &r2, &p, run));
    snprintf(path, sizeof path, "%s/adapter.tmp", run);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof path, "%s/adapter.old", run);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof path, "%s/adapter/head_config.json", run);
    char *cfg = check_read_file(path, NULL);
    CHECK(cfg && strstr(cfg, "\"fit\": {") && strstr(cfg, "\"C\": ") && strstr(cfg, "\"classes\": ["));
    free(cfg);
    snprintf(path, sizeof path, "%s/adapter", run);
    mmt_probe_head *back = NULL;
    CHECK_OK(mmt_probe_head_load(path, &back));
    if (back) CHECK(memcmp(back->weight, h->weight, NK * NP * sizeof(float)) == 0);
    mmt_probe_head_free(back);
    mmt_free(js);
    mmt_probe_fit_result_free(&r);
    mmt_probe_fit_result_free(&r2);
    mmt_probe_head_free(h);
    mmt_probe_head_free(h2);
}

static void test_split_and_fallbacks(void) {
    if (!loaded) return;
    mmt_probe_head *h = new_head();
    mmt_probe_fit_params p;
    mmt_probe_fit_params_default(&p);
    mmt_probe_fit_result r;
    /* fixed C: no split, no sweep, the same optimum as a plain fit (to float rounding) */
    p.C = 100;
    CHECK_OK(mmt_probe_fit(train_emb, train_labels, N_TRAIN, &p, h, &r));
    CHECK(r.n_sweep == 0 && r.n_heldout == 0 && r.n_fit == N_TRAIN && r.C == 100 && isnan(r.heldout_accuracy));
    double dw = 0, wmax = 0;
    for (int64_t j = 0; j < NK * NP; j++) {
        dw = fmax(dw, fabs(h->weight[j] - coef[1][j]));
        wmax = fmax(wmax, fabs(coef[1][j]));
    }
    CHECK_MSG(dw <= 1e-2 * wmax, "max |W - sklearn| %.3g of %.3g at the default tolerance", dw, wmax);
    CHECK_NEAR(r.train_loss, train_loss[1], 1e-5);
    mmt_probe_fit_result_free(&r);
    /* one example per class: nothing can be held out */
    int32_t one[NK];
    for (int k = 0; k < NK; k++) one[k] = k;
    float emb[NK * NP];
    memcpy(emb, train_emb, sizeof emb);
    p.C = 0;
    CHECK_OK(mmt_probe_fit(emb, one, NK, &p, h, &r));
    CHECK(r.n_heldout == 0 && r.n_sweep == 0 && r.C == p.fallback_C);
    mmt_probe_fit_result_free(&r);
    /* two per class: round(0.4) = 0 held out; five per class: one each */
    int32_t lab[5 * NK];
    for (int i = 0; i < 5 * NK; i++) lab[i] = (int32_t)(i % NK);
    CHECK_OK(mmt_probe_fit(train_emb, lab, 2 * NK, &p, h, &r));
    CHECK(r.n_heldout == 0);
    mmt_probe_fit_result_free(&r);
    CHECK_OK(mmt_probe_fit(train_emb, lab, 5 * NK, &p, h, &r));
    CHECK(r.n_heldout == NK && r.n_fit == 4 * NK && r.n_sweep == 19);
    mmt_probe_fit_result_free(&r);
    /* errors */
    lab[3] = NK;
    CHECK_FAILS(mmt_probe_fit(train_emb, lab, 5 * NK, &p, h, &r), MMT_STATUS_INVALID_ARGUMENT, "example 3: label 8 is not in 0..7");
    lab[3] = 3;
    p.heldout_fraction = 1;
    CHECK_FAILS(mmt_probe_fit(train_emb, lab, 5 * NK, &p, h, &r), MMT_STATUS_INVALID_ARGUMENT, "heldout_fraction");
    mmt_probe_fit_params_default(&p);
    p.C = -1;
    CHECK_FAILS(mmt_probe_fit(train_emb, lab, 5 * NK, &p, h, &r), MMT_STATUS_INVALID_ARGUMENT, "C >= 0");
    mmt_probe_logreg *lr = NULL;
    CHECK_FAILS(mmt_probe_logreg_create(train_emb, lab, 5 * NK, NP, 1, &lr), MMT_STATUS_INVALID_ARGUMENT, "K >= 2");
    CHECK(!lr);
    mmt_probe_head_free(h);
}

/* Every allocation of a small fit failing in turn: an error, nothing leaked (ASan). */
static void test_out_of_memory(void) {
    if (!loaded) return;
    mmt_probe_head *h = new_head();
    mmt_probe_fit_params p;
    mmt_probe_fit_params_default(&p);
    p.refine_steps = 1;
    p.c_min = 1e-1;
    p.c_max = 1e1;
    mmt_probe_fit_result r;
    int failures = 0;
    for (long k = 1; k <= 400; k++) {
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_probe_fit(train_emb, train_labels, 80, &p, h, &r);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            mmt_probe_fit_result_free(&r);
            break;
        }
        CHECK(s == MMT_STATUS_OUT_OF_MEMORY && r.sweep == NULL);
        failures++;
    }
    CHECK(failures > 10);
    mmt_probe_head_free(h);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_probe_fit_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    load_fixture();
    CHECK(loaded);
    RUN(test_gradient_matches_finite_differences);
    RUN(test_fixed_C_matches_sklearn);
    RUN(test_sweep_reaches_sklearn_best);
    RUN(test_split_and_fallbacks);
    RUN(test_out_of_memory);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
