/*
 * lbfgs.h — limited-memory BFGS for smooth unconstrained minimisation in double precision.
 *
 * The caller supplies f and its gradient through one callback; mmt_lbfgs_minimize moves x
 * from the given start to a minimiser. Each iteration takes the two-loop-recursion direction
 * from the last `memory` (s, y) pairs, scaled by s'y / y'y (Nocedal & Wright, Numerical
 * Optimization, 2nd ed., Algorithm 7.4 and eq. 7.20), and a step satisfying the strong Wolfe
 * conditions
 *     f(x + a d) <= f(x) + c1 a g'd,      |g(x + a d)'d| <= c2 |g'd|
 * found by bracketing and zooming with safeguarded cubic interpolation (Algorithms 3.5 and
 * 3.6). The first step is 1 / ||g||_2 (capped at 1), later ones start at 1.
 *
 * It stops when max_i |g_i| <= gtol, when the relative decrease of f over one iteration is
 * at most ftol (scipy's L-BFGS-B tests), after max_iterations, or when no step along the
 * direction (and then along -g, with the memory cleared) lowers f: the minimum as far as
 * double precision can tell. None of these is an error; result->stop says which. Errors
 * are the callback's own, a non-finite f or gradient at the start, and out of memory.
 *
 * Usage:
 *     mmt_lbfgs_params p;
 *     mmt_lbfgs_params_default(&p);
 *     mmt_lbfgs_result r;
 *     MMT_TRY(mmt_lbfgs_minimize(my_f_and_grad, ctx, n, x, &p, &r));
 */
#ifndef MMT_TRAIN_LBFGS_H
#define MMT_TRAIN_LBFGS_H

#include <stdint.h>

#include "core/status.h"

/* f(x) into *f and its gradient (n) into grad. A non-finite f during a line search counts
 * as +infinity (the step is shortened). */
typedef mmt_status (*mmt_lbfgs_fn)(void *ctx, const double *x, double *f, double *grad);

typedef struct mmt_lbfgs_params {
    int64_t memory;          /* (s, y) pairs kept: 10 (scipy's maxcor) */
    int64_t max_iterations;  /* 1000 */
    int64_t max_line_search; /* evaluations per line search: 50 (scikit-learn's maxls) */
    double gtol;             /* stop at max_i |g_i| <= gtol: 1e-6 */
    double ftol;             /* stop at (f_prev - f) <= ftol max(|f_prev|, |f|, 1): 64 eps */
    double c1, c2;           /* Wolfe constants: 1e-4, 0.9 */
} mmt_lbfgs_params;

void mmt_lbfgs_params_default(mmt_lbfgs_params *p);

typedef enum mmt_lbfgs_stop {
    MMT_LBFGS_STOP_GRADIENT,       /* max |g_i| <= gtol */
    MMT_LBFGS_STOP_FUNCTION,       /* relative decrease <= ftol */
    MMT_LBFGS_STOP_MAX_ITERATIONS,
    MMT_LBFGS_STOP_LINE_SEARCH,    /* no lower point along d or -g */
} mmt_lbfgs_stop;

typedef struct mmt_lbfgs_result {
    int64_t iterations;   /* accepted steps */
    int64_t evaluations;  /* callback calls */
    double f;             /* f at the returned x */
    double gnorm;         /* max_i |g_i| there */
    mmt_lbfgs_stop stop;
} mmt_lbfgs_result;

/* Minimises from x (n, overwritten with the best point found). */
mmt_status mmt_lbfgs_minimize(mmt_lbfgs_fn fn, void *ctx, int64_t n, double *x, const mmt_lbfgs_params *p,
                              mmt_lbfgs_result *result);

/* "gradient", "function", "max_iterations" or "line_search". */
const char *mmt_lbfgs_stop_name(mmt_lbfgs_stop stop);

#endif
