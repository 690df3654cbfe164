/*
 * report.h — a run's report as one self-contained HTML file: nothing is fetched (no scripts,
 * fonts, stylesheets or images from elsewhere); charts are inline SVG and thumbnails are PNG
 * data URIs.
 *
 * The report shows, each section only when it has data: the loss and learning-rate curves
 * (SVG polylines with axes, ticks and labels), the before/after metrics (a table and a bar
 * chart of the metrics that lie in [0, 1]), a few retrieval examples (a query text and its
 * top images before and after fine-tuning, the correct ones outlined), a captioning part (a
 * second run's loss curve, its caption metrics before and after, and sample images with the
 * captions generated before and after fine-tuning beside their references), and the run's
 * settings. Every piece of text from the caller is HTML-escaped.
 *
 * Usage:
 *     mmt_report r = {0};
 *     r.title = "demo"; r.steps = x; r.loss = y; r.lr = z; r.n_points = n; ...
 *     mmt_strbuf html = {0};
 *     MMT_TRY(mmt_report_render(&r, &html));   // html.data, html.len
 *     mmt_strbuf_free(&html);
 */
#ifndef MMT_EVAL_REPORT_H
#define MMT_EVAL_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "core/status.h"

#define MMT_REPORT_TOP 3 /* images shown per query and side */

typedef struct mmt_report_setting {
    const char *key, *value; /* value as text (JSON scalars as written) */
} mmt_report_setting;

typedef struct mmt_report_metric {
    const char *name;
    double before, after; /* NAN where absent */
} mmt_report_metric;

typedef struct mmt_report_hit {
    const uint8_t *png; /* an encoded PNG thumbnail */
    size_t png_len;
    const char *caption; /* the image's own text */
    int correct;         /* the query's own image, or one of its class (labelled pairs) */
} mmt_report_hit;

typedef struct mmt_report_example {
    const char *query;
    mmt_report_hit before[MMT_REPORT_TOP], after[MMT_REPORT_TOP];
    int64_t n_before, n_after; /* hits filled on each side (0: the side is not shown) */
} mmt_report_example;

/* One captioned image: what the captioner said before and after fine-tuning, and the truth. */
typedef struct mmt_report_caption {
    const uint8_t *png; /* an encoded PNG thumbnail (NULL: none) */
    size_t png_len;
    const char *before, *after;     /* generated captions (NULL: that side is not shown) */
    const char *const *references;  /* (n_references) */
    int64_t n_references;
} mmt_report_caption;

typedef struct mmt_report {
    const char *title;
    const double *steps, *loss, *lr; /* (n_points) each; lr may be NULL */
    int64_t n_points;
    const mmt_report_setting *settings;
    int64_t n_settings;
    const mmt_report_metric *metrics;
    int64_t n_metrics;
    const mmt_report_example *examples;
    int64_t n_examples;
    /* the captioning part (shown when any of it is there) */
    const char *caption_title;                  /* heading (NULL: "Captioning") */
    const double *caption_steps, *caption_loss; /* (caption_points) each */
    int64_t caption_points;
    const mmt_report_metric *caption_metrics;
    int64_t n_caption_metrics;
    const mmt_report_caption *captions;
    int64_t n_captions;
} mmt_report;

/* Appends the whole document to out. Non-finite points are left out of the curves. */
mmt_status mmt_report_render(const mmt_report *r, mmt_strbuf *out);

/* Appends s with & < > " ' escaped, for text and attribute values. */
void mmt_report_html_escape(mmt_strbuf *out, const char *s);
/* Appends the standard base64 (RFC 4648, padded) of n bytes. */
void mmt_report_base64(mmt_strbuf *out, const uint8_t *data, size_t n);

#endif
