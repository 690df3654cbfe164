/*
 * zeroshot.h — CLIP-style zero-shot classification from embeddings.
 *
 * Each class is described by prompts made from templates ("a photo of a {}.") with the
 * class name in place of "{}". As in CLIP's prompt ensembling (Radford et al. 2021, §3.1.4;
 * the notebook "Prompt_Engineering_for_ImageNet.ipynb"), the class's text embedding is the
 * mean of the L2-normalised embeddings of its prompts, normalised again. An image is given
 * the class whose embedding has the largest dot product with its (normalised) embedding;
 * ties go to the lower class index. All sums are in double.
 *
 * Usage:
 *     mmt_zeroshot_templates t;
 *     MMT_TRY(mmt_zeroshot_templates_load("templates.txt", &t));  // or _default(&t)
 *     char *prompt = mmt_zeroshot_prompt(t.items[0], "ankle boot");
 *     ... embed the K*T prompts (class-major) into te (K, T, P) ...
 *     MMT_TRY(mmt_zeroshot_class_embeddings(te, K, T, P, classes)); // classes (K, P)
 *     mmt_zeroshot_metrics m;
 *     MMT_TRY(mmt_zeroshot_evaluate(img, labels, N, classes, K, P, &m));
 *     mmt_zeroshot_metrics_free(&m);
 *     mmt_zeroshot_templates_free(&t);
 */
#ifndef MMT_EVAL_ZEROSHOT_H
#define MMT_EVAL_ZEROSHOT_H

#include <stdint.h>

#include "core/status.h"
#include "data/pairs.h"

typedef struct mmt_zeroshot_templates {
    char **items; /* owned; each contains "{}" */
    int64_t n;
} mmt_zeroshot_templates;

/* The built-in ensemble: a few of CLIP's generic ImageNet templates. */
mmt_status mmt_zeroshot_templates_default(mmt_zeroshot_templates *out);
/* One template per line; blank lines and lines starting with '#' are skipped; a line without
 * "{}" is an error "FILE:LINE: ...". At least one template is required. */
mmt_status mmt_zeroshot_templates_load(const char *path, mmt_zeroshot_templates *out);
void mmt_zeroshot_templates_free(mmt_zeroshot_templates *t);

/* The template with its first "{}" replaced by name (mmt_malloc'd; NULL when out of memory). */
char *mmt_zeroshot_prompt(const char *template_text, const char *name);

/* The classes of a labelled pairs set: the distinct "label" values in byte order, and each
 * pair's class index. A pair without a label is an error naming it. */
typedef struct mmt_zeroshot_classes {
    char **names;    /* owned, K of them */
    int64_t k;
    int64_t *labels; /* owned, one per pair */
    int64_t n;
} mmt_zeroshot_classes;

/* names_csv: NULL for the distinct labels, else a comma-separated list fixing the classes and
 * their order (a pair whose label is not in it is an error). */
mmt_status mmt_zeroshot_classes_from_pairs(const mmt_pairs *pairs, const char *names_csv,
                                           mmt_zeroshot_classes *out);
void mmt_zeroshot_classes_free(mmt_zeroshot_classes *c);

/* prompt_emb (K, T, P): the embeddings of class k's T prompts; out (K, P), unit length
 * (a class whose mean is zero stays zero). */
mmt_status mmt_zeroshot_class_embeddings(const float *prompt_emb, int64_t k, int64_t t, int64_t p,
                                         float *out);

typedef struct mmt_zeroshot_metrics {
    int64_t n, k, correct;
    double accuracy;            /* correct / n */
    int64_t *predicted;         /* owned, (n): each image's class */
    int64_t *class_total;       /* owned, (k): images of each class */
    int64_t *class_correct;     /* owned, (k) */
    double *class_accuracy;     /* owned, (k): correct / total, NAN for a class with no image */
} mmt_zeroshot_metrics;

/* img (N, P) unit-length image embeddings, labels (N) class indices in [0, K),
 * class_emb (K, P). */
mmt_status mmt_zeroshot_evaluate(const float *img, const int64_t *labels, int64_t n,
                                 const float *class_emb, int64_t k, int64_t p,
                                 mmt_zeroshot_metrics *out);
void mmt_zeroshot_metrics_free(mmt_zeroshot_metrics *m);

#endif
