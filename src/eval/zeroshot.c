/* zeroshot.c — prompt templates, class lists and zero-shot accuracy (see zeroshot.h). */
#include "eval/zeroshot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"

/* A few of CLIP's ImageNet templates that suit any object class (openai/CLIP notebooks). */
static const char *const DEFAULT_TEMPLATES[] = {
    "a photo of a {}.", "a picture of a {}.", "a photo of the {}.", "a good photo of a {}.",
    "a close-up photo of a {}.", "a photo of a small {}.", "a photo of a large {}.",
};

static mmt_status oom(void) { return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory"); }

static mmt_status templates_push(mmt_zeroshot_templates *t, const char *s, size_t len) {
    char **items = mmt_realloc(t->items, (size_t)(t->n + 1) * sizeof *items);
    if (!items) return oom();
    t->items = items;
    if (!(t->items[t->n] = mmt_strndup(s, len))) return oom();
    t->n++;
    return MMT_OK;
}

mmt_status mmt_zeroshot_templates_default(mmt_zeroshot_templates *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof DEFAULT_TEMPLATES / sizeof *DEFAULT_TEMPLATES; i++) {
        mmt_status s = templates_push(out, DEFAULT_TEMPLATES[i], strlen(DEFAULT_TEMPLATES[i]));
        if (s != MMT_OK) {
            mmt_zeroshot_templates_free(out);
            return s;
        }
    }
    return MMT_OK;
}

mmt_status mmt_zeroshot_templates_load(const char *path, mmt_zeroshot_templates *out) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    mmt_status s = mmt_file_read_all(path, (size_t)1 << 24, &text, &len);
    int64_t line = 0;
    for (size_t at = 0; s == MMT_OK && at < len;) {
        size_t end = at;
        while (end < len && text[end] != '\n') end++;
        size_t stop = end;
        if (stop > at && text[stop - 1] == '\r') stop--;
        line++;
        const char *l = text + at;
        size_t n = stop - at;
        int blank = 1;
        for (size_t i = 0; i < n; i++) blank &= l[i] == ' ' || l[i] == '\t';
        if (!blank && l[0] != '#') {
            int has = 0;
            for (size_t i = 0; i + 1 < n; i++) has |= l[i] == '{' && l[i + 1] == '}';
            if (!has) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: a template needs \"{}\" where the class name goes", path, (long long)line);
            else s = templates_push(out, l, n);
        }
        at = end + 1;
    }
    if (s == MMT_OK && out->n == 0) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no templates", path);
    mmt_free(text);
    if (s != MMT_OK) mmt_zeroshot_templates_free(out);
    return s;
}

void mmt_zeroshot_templates_free(mmt_zeroshot_templates *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n; i++) mmt_free(t->items[i]);
    mmt_free(t->items);
    t->items = NULL;
    t->n = 0;
}

char *mmt_zeroshot_prompt(const char *template_text, const char *name) {
    const char *hole = strstr(template_text, "{}");
    if (!hole) return mmt_strdup(template_text);
    size_t a = (size_t)(hole - template_text), b = strlen(name), c = strlen(hole + 2);
    char *s = mmt_malloc(a + b + c + 1);
    if (!s) return NULL;
    memcpy(s, template_text, a);
    memcpy(s + a, name, b);
    memcpy(s + a + b, hole + 2, c + 1);
    return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static mmt_status names_push(mmt_zeroshot_classes *c, const char *s, size_t len) {
    char **names = mmt_realloc(c->names, (size_t)(c->k + 1) * sizeof *names);
    if (!names) return oom();
    c->names = names;
    if (!(c->names[c->k] = mmt_strndup(s, len))) return oom();
    c->k++;
    return MMT_OK;
}

static int64_t find_name(const mmt_zeroshot_classes *c, const char *name) {
    for (int64_t i = 0; i < c->k; i++)
        if (!strcmp(c->names[i], name)) return i;
    return -1;
}

mmt_status mmt_zeroshot_classes_from_pairs(const mmt_pairs *pairs, const char *names_csv,
                                           mmt_zeroshot_classes *out) {
    memset(out, 0, sizeof *out);
    mmt_status s = MMT_OK;
    const char *src = pairs->source ? pairs->source : "pairs";
    for (int64_t i = 0; i < pairs->n && s == MMT_OK; i++)
        if (!pairs->items[i].label)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: pair %lld (%s) has no \"label\"; zero-shot needs labelled pairs", src,
                         (long long)i + 1, pairs->items[i].image_path);
    if (s == MMT_OK && names_csv) {
        for (const char *p = names_csv; s == MMT_OK;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            if (n == 0) s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "classes \"%s\": an empty class name", names_csv);
            else s = names_push(out, p, n);
            if (s == MMT_OK && find_name(out, out->names[out->k - 1]) != out->k - 1)
                s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "classes: \"%s\" is listed twice", out->names[out->k - 1]);
            if (!comma) break;
            p = comma + 1;
        }
    } else {
        for (int64_t i = 0; i < pairs->n && s == MMT_OK; i++)
            if (find_name(out, pairs->items[i].label) < 0) s = names_push(out, pairs->items[i].label, strlen(pairs->items[i].label));
        if (s == MMT_OK) qsort(out->names, (size_t)out->k, sizeof *out->names, cmp_str);
    }
    if (s == MMT_OK && !(out->labels = mmt_malloc((size_t)(pairs->n ? pairs->n : 1) * sizeof *out->labels))) s = oom();
    for (int64_t i = 0; i < pairs->n && s == MMT_OK; i++) {
        out->labels[i] = find_name(out, pairs->items[i].label);
        if (out->labels[i] < 0)
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: pair %lld has label \"%s\", which is not among the classes", src,
                         (long long)i + 1, pairs->items[i].label);
    }
    out->n = pairs->n;
    if (s != MMT_OK) mmt_zeroshot_classes_free(out);
    return s;
}

void mmt_zeroshot_classes_free(mmt_zeroshot_classes *c) {
    if (!c) return;
    for (int64_t i = 0; i < c->k; i++) mmt_free(c->names[i]);
    mmt_free(c->names);
    mmt_free(c->labels);
    memset(c, 0, sizeof *c);
}

mmt_status mmt_zeroshot_class_embeddings(const float *prompt_emb, int64_t k, int64_t t, int64_t p,
                                         float *out) {
    double *sum = mmt_malloc((size_t)(p > 0 ? p : 1) * sizeof(double));
    if (!sum) return oom();
    for (int64_t c = 0; c < k; c++) {
        /* the mean of the normalised prompt embeddings; the 1/T factor cancels in the final
         * normalisation, so only the sum is kept */
        for (int64_t d = 0; d < p; d++) sum[d] = 0;
        for (int64_t j = 0; j < t; j++) {
            const float *e = prompt_emb + (c * t + j) * p;
            double n2 = 0;
            for (int64_t d = 0; d < p; d++) n2 += (double)e[d] * e[d];
            if (n2 == 0) continue;
            double inv = 1.0 / sqrt(n2);
            for (int64_t d = 0; d < p; d++) sum[d] += (double)e[d] * inv;
        }
        double n2 = 0;
        for (int64_t d = 0; d < p; d++) n2 += sum[d] * sum[d];
        double inv = n2 > 0 ? 1.0 / sqrt(n2) : 0.0;
        for (int64_t d = 0; d < p; d++) out[c * p + d] = (float)(sum[d] * inv);
    }
    mmt_free(sum);
    return MMT_OK;
}

mmt_status mmt_zeroshot_evaluate(const float *img, const int64_t *labels, int64_t n,
                                 const float *class_emb, int64_t k, int64_t p,
                                 mmt_zeroshot_metrics *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || k < 1 || p < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "zero-shot: needs images (%lld) and classes (%lld)", (long long)n,
                        (long long)k);
    out->n = n;
    out->k = k;
    out->predicted = mmt_malloc((size_t)n * sizeof(int64_t));
    out->class_total = mmt_calloc((size_t)k, sizeof(int64_t));
    out->class_correct = mmt_calloc((size_t)k, sizeof(int64_t));
    out->class_accuracy = mmt_malloc((size_t)k * sizeof(double));
    if (!out->predicted || !out->class_total || !out->class_correct || !out->class_accuracy) {
        mmt_zeroshot_metrics_free(out);
        return oom();
    }
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k) {
            mmt_zeroshot_metrics_free(out);
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "zero-shot: image %lld has class %lld of %lld", (long long)i,
                            (long long)labels[i], (long long)k);
        }
        int64_t best = 0;
        double best_sim = -INFINITY;
        for (int64_t c = 0; c < k; c++) {
            double sim = 0;
            for (int64_t d = 0; d < p; d++) sim += (double)img[i * p + d] * class_emb[c * p + d];
            if (sim > best_sim) best_sim = sim, best = c;
        }
        out->predicted[i] = best;
        out->class_total[labels[i]]++;
        if (best == labels[i]) out->class_correct[labels[i]]++, out->correct++;
    }
    out->accuracy = (double)out->correct / (double)n;
    for (int64_t c = 0; c < k; c++)
        out->class_accuracy[c] = out->class_total[c] ? (double)out->class_correct[c] / (double)out->class_total[c] : NAN;
    return MMT_OK;
}

void mmt_zeroshot_metrics_free(mmt_zeroshot_metrics *m) {
    if (!m) return;
    mmt_free(m->predicted);
    mmt_free(m->class_total);
    mmt_free(m->class_correct);
    mmt_free(m->class_accuracy);
    memset(m, 0, sizeof *m);
}
