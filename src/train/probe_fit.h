/*
 * probe_fit.h — the linear probe as CLIP's paper fits it (Radford et al. 2021, appendix A.3):
 * L2-regularised multinomial logistic regression on the frozen image embeddings, solved to
 * convergence with L-BFGS (train/lbfgs.h), the regularisation strength chosen on a held-out
 * split of the training data, then refitted on all of it.
 *
 * The objective is scikit-learn's LogisticRegression(C=C, solver="lbfgs") for K >= 3 classes
 * (sklearn/linear_model/_logistic.py, _linear_loss.py: l2_reg_strength = 1 / (C n)):
 *
 *     J(W, b) = (1/n) sum_i [ logsumexp_k(z_ik) - z_i,y_i ]  +  ||W||_F^2 / (2 C n),
 *     z_ik = W_k . e_i + b_k,
 *
 * e_i the normalised image embedding (P floats, used as doubles), W (K, P), b (K); the bias is
 * not penalised. Equivalently (lambda / 2) ||W||^2 on the mean loss with lambda = 1 / (C n).
 * J only depends on b up to a common shift; every fit returns b centred (sum_k b_k = 0),
 * where L-BFGS from b = 0 stays anyway. For K = 2 this is the symmetric two-row form, not
 * scikit-learn's one-row binary model (which equals it at twice the C).
 *
 * The sweep: the examples of each class are shuffled (seeded) and round(heldout_fraction x
 * count) of them, at most count - 1, held out. C runs over the decades c_min .. c_max, each fit
 * warm-started from the previous (more regularised) solution, as sklearn's regularisation
 * path does; then refine_steps rounds try the best C times 10^(+-h) for h = 1/2, 1/4, ...
 * (a parametric binary search in log C). The best C has the highest held-out accuracy, then
 * the lowest held-out cross-entropy. With nothing to hold out (every class has one example,
 * or the fraction is 0) no sweep runs and C = fallback_C. The head is then refitted on all
 * examples at that C (C multiplies a summed loss, so the same C regularises the larger set
 * relatively less, as in a scikit-learn refit).
 */
#ifndef MMT_TRAIN_PROBE_FIT_H
#define MMT_TRAIN_PROBE_FIT_H

#include <stdint.h>

#include "core/status.h"
#include "train/lbfgs.h"
#include "train/probe_task.h"

/* ---- the objective ------------------------------------------------------------------------ */

typedef struct mmt_probe_logreg mmt_probe_logreg;

/* The problem on embeddings emb (n, P) with labels in 0..K-1 (n); both stay borrowed. */
mmt_status mmt_probe_logreg_create(const float *emb, const int32_t *labels, int64_t n, int64_t P, int64_t K,
                                   mmt_probe_logreg **out);
void mmt_probe_logreg_free(mmt_probe_logreg *lr);

/* Parameters theta: W (K, P) row-major, then b (K); K (P + 1) doubles. */
int64_t mmt_probe_logreg_size(const mmt_probe_logreg *lr);

/* J at theta for this C (> 0), and its gradient into grad (K (P + 1)) unless NULL; *mean_ce
 * (may be NULL) gets the loss without the penalty. */
double mmt_probe_logreg_objective(mmt_probe_logreg *lr, double C, const double *theta, double *grad, double *mean_ce);

/* Minimises J at C from theta (the start; zeros, or a warm start) and centres b. */
mmt_status mmt_probe_logreg_fit(mmt_probe_logreg *lr, double C, const mmt_lbfgs_params *p, double *theta,
                                mmt_lbfgs_result *result);

/* Top-1 predictions (ties to the lower class, as argmax) of theta on emb (n, P): pred (n) when
 * not NULL; with labels (n), the hits into *correct and the mean cross-entropy into *mean_ce
 * (each may be NULL). */
mmt_status mmt_probe_predict(const double *theta, int64_t K, int64_t P, const float *emb, const int32_t *labels,
                             int64_t n, int32_t *pred, int64_t *correct, double *mean_ce);

/* ---- the sweep and the refit -------------------------------------------------------------- */

typedef struct mmt_probe_fit_params {
    double heldout_fraction; /* of each class, to choose C: 0.2 */
    uint64_t seed;           /* which examples are held out: 0 */
    double c_min, c_max;     /* the sweep's decades: 1e-6 .. 1e6 (CLIP's range) */
    int64_t refine_steps;    /* halvings of the log10 step around the best: 3 */
    double fallback_C;       /* when nothing can be held out: 1 (scikit-learn's default) */
    double C;                /* > 0: fit at this C, no sweep; 0 (default): sweep */
    mmt_lbfgs_params lbfgs;  /* every fit: defaults (max_iterations 1000, gtol 1e-6). The sweep
                                needs them as tight as the final fit: a warm start from a
                                neighbouring C is within ~|W| / (C n) of stationary, which a
                                looser test (scikit-learn's tol 1e-4) would accept as it is */
} mmt_probe_fit_params;

void mmt_probe_fit_params_default(mmt_probe_fit_params *p);

typedef struct mmt_probe_sweep_point {
    double C;
    double heldout_accuracy, heldout_loss;
    int64_t iterations;
} mmt_probe_sweep_point;

typedef struct mmt_probe_fit_result {
    double C;                      /* chosen (or given) */
    double heldout_accuracy;       /* at C on the held-out split; NAN without one */
    double heldout_loss;
    int64_t n_fit, n_heldout;      /* the split's sizes (n_heldout 0: no sweep) */
    mmt_probe_sweep_point *sweep;  /* owned, in the order tried */
    int64_t n_sweep;
    int64_t iterations;            /* of the final fit on all examples */
    mmt_lbfgs_stop stop;           /* why the final fit stopped */
    double train_loss;             /* mean cross-entropy of the final head on all examples */
    double objective;              /* J there */
    double seconds;
} mmt_probe_fit_result;

void mmt_probe_fit_result_free(mmt_probe_fit_result *r);

/* Fits the head (its K, P; weights and bias overwritten) to embeddings emb (n, P) and labels
 * (n) as above, logging each fit of the sweep as one line. */
mmt_status mmt_probe_fit(const float *emb, const int32_t *labels, int64_t n, const mmt_probe_fit_params *p,
                         mmt_probe_head *head, mmt_probe_fit_result *result);

/* The fit as head_config.json's "fit" member: JSON object text (caller frees), NULL when out
 * of memory. */
char *mmt_probe_fit_json(const mmt_probe_fit_result *r, const mmt_probe_fit_params *p);

/* Fits a probe task's head to its cached embeddings and labels. */
mmt_status mmt_probe_task_fit(mmt_probe_task *t, const mmt_probe_fit_params *p, mmt_probe_fit_result *result);

/* Writes a head, with the fit recorded in head_config.json (r may be NULL), as
 * run_dir/adapter, whole or not at all (core/dir.h: built under a temporary name, then
 * renamed into place); run_dir is created when missing. */
mmt_status mmt_probe_head_publish(const mmt_probe_head *h, const char *base_model, const mmt_probe_fit_result *r,
                                  const mmt_probe_fit_params *p, const char *run_dir);

#endif
