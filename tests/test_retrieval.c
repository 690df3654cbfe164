/*
 * test_retrieval.c — recall@K and median rank (src/eval/retrieval.h), pair-level and
 * class-level.
 *
 * Reference: a second, independent implementation in this file that sorts every query's
 * scores (the definition: the rank of the first correct item in the sorted list, ties broken
 * in the correct item's favour), run on random embeddings with deliberate ties; plus a small
 * case worked by hand. Tolerance: exact (the same double sums in both).
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "eval/retrieval.h"
#include "rng.h"

/* 3 pairs in 2 dims. Scores img x txt:
 *   img0=(1,0):  txt0 .6, txt1 .8, txt2 -1      img1=(0,1): txt0 .8, txt1 .6, txt2 0
 *   img2=(-1,0): txt0 -.6, txt1 -.8, txt2 1     (txt0=(.6,.8), txt1=(.8,.6), txt2=(-1,0))
 * Pairs: img0 ranks txt0 second, img1 ranks txt1 second, img2 first -> i2t R@1 = 1/3.
 * Classes {0, 0, 1}: img0 and img1 find a class-0 text first -> i2t R@1 = 1. */
static void test_by_hand(void) {
    const float img[] = {1, 0, 0, 1, -1, 0};
    const float t[] = {0.6f, 0.8f, 0.8f, 0.6f, -1, 0};
    mmt_retrieval_metrics m;
    CHECK_OK(mmt_retrieval_eval(img, t, 3, 2, &m));
    CHECK(fabs(m.i2t_r1 - 1.0 / 3) < 1e-12 && m.i2t_r5 == 1 && m.i2t_median_rank == 2);
    const int64_t groups[] = {0, 0, 1};
    CHECK_OK(mmt_retrieval_eval_grouped(img, t, groups, 3, 2, &m));
    CHECK(m.i2t_r1 == 1 && m.t2i_r1 == 1 && m.i2t_median_rank == 1);
    const int64_t apart[] = {0, 1, 2}; /* distinct groups: the same as pairs */
    mmt_retrieval_metrics p;
    CHECK_OK(mmt_retrieval_eval_grouped(img, t, apart, 3, 2, &p));
    CHECK(fabs(p.i2t_r1 - 1.0 / 3) < 1e-12 && p.i2t_median_rank == 2);
    CHECK(mmt_retrieval_eval(img, t, 0, 2, &m) != MMT_OK);
}

static double dotd(const float *a, const float *b, int d) {
    double s = 0;
    for (int k = 0; k < d; k++) s += (double)a[k] * b[k];
    return s;
}

typedef struct scored {
    double s;
    int correct;
} scored;

static int by_score_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    return y->correct - x->correct; /* ties: correct items first */
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* recall@1/5/10 and median by sorting; dir 0: image queries, 1: text queries */
static void sorted_ref(const float *img, const float *txt, const int64_t *g, int n, int d, int dir, double out[4]) {
    scored *row = malloc((size_t)n * sizeof *row);
    int *ranks = malloc((size_t)n * sizeof *ranks);
    for (int q = 0; q < n; q++) {
        for (int k = 0; k < n; k++) {
            row[k].s = dir == 0 ? dotd(img + q * d, txt + k * d, d) : dotd(txt + q * d, img + k * d, d);
            row[k].correct = g ? g[k] == g[q] : k == q;
        }
        qsort(row, (size_t)n, sizeof *row, by_score_desc);
        int r = 0;
        while (!row[r].correct) r++;
        ranks[q] = r + 1;
    }
    int c1 = 0, c5 = 0, c10 = 0;
    for (int q = 0; q < n; q++) c1 += ranks[q] <= 1, c5 += ranks[q] <= 5, c10 += ranks[q] <= 10;
    qsort(ranks, (size_t)n, sizeof *ranks, cmp_int);
    out[0] = (double)c1 / n, out[1] = (double)c5 / n, out[2] = (double)c10 / n, out[3] = ranks[(n - 1) / 2];
    free(row);
    free(ranks);
}

static void test_against_sorting(void) {
    rng_state = 12345;
    enum { N = 200, D = 8 };
    static float img[N * D], txt[N * D];
    static int64_t g[N];
    for (int i = 0; i < N * D; i++) {
        img[i] = rng_uniform();
        /* coarse values make exact ties common */
        txt[i] = (float)((int)(rng_unit() * 4) - 2) * 0.5f + 0.25f * img[i];
    }
    for (int i = 0; i < N; i++) g[i] = (int64_t)(rng_unit() * 7);
    for (int grouped = 0; grouped < 2; grouped++) {
        mmt_retrieval_metrics m;
        CHECK_OK(mmt_retrieval_eval_grouped(img, txt, grouped ? g : NULL, N, D, &m));
        double i2t[4], t2i[4];
        sorted_ref(img, txt, grouped ? g : NULL, N, D, 0, i2t);
        sorted_ref(img, txt, grouped ? g : NULL, N, D, 1, t2i);
        CHECK_MSG(m.i2t_r1 == i2t[0] && m.i2t_r5 == i2t[1] && m.i2t_r10 == i2t[2] && m.i2t_median_rank == i2t[3],
                  "grouped %d i2t: %g %g %g %g vs %g %g %g %g", grouped, m.i2t_r1, m.i2t_r5, m.i2t_r10,
                  m.i2t_median_rank, i2t[0], i2t[1], i2t[2], i2t[3]);
        CHECK_MSG(m.t2i_r1 == t2i[0] && m.t2i_r5 == t2i[1] && m.t2i_r10 == t2i[2] && m.t2i_median_rank == t2i[3],
                  "grouped %d t2i", grouped);
        if (grouped) CHECK(m.i2t_r1 > 0.1); /* 7 classes: far more hits than pair-level */
    }
}

int main(void) {
    RUN(test_by_hand);
    RUN(test_against_sorting);
    return check_summary();
}
