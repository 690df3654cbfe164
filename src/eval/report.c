/* report.c — the self-contained HTML report (see report.h). */
#include "eval/report.h"

#include <math.h>
#include <string.h>

void mmt_report_html_escape(mmt_strbuf *out, const char *s) {
    for (const char *p = s ? s : ""; *p; p++) {
        switch (*p) {
        case '&': mmt_strbuf_append(out, "&amp;", 5); break;
        case '<': mmt_strbuf_append(out, "&lt;", 4); break;
        case '>': mmt_strbuf_append(out, "&gt;", 4); break;
        case '"': mmt_strbuf_append(out, "&quot;", 6); break;
        case '\'': mmt_strbuf_append(out, "&#39;", 5); break;
        default: mmt_strbuf_append(out, p, 1);
        }
    }
}

void mmt_report_base64(mmt_strbuf *out, const uint8_t *data, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < n) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < n) v |= data[i + 2];
        char q[4] = {A[(v >> 18) & 63], A[(v >> 12) & 63], i + 1 < n ? A[(v >> 6) & 63] : '=', i + 2 < n ? A[v & 63] : '='};
        mmt_strbuf_append(out, q, 4);
    }
}

/* ---- charts ---------------------------------------------------------------------------- */

enum { CHART_W = 560, CHART_H = 260, MARGIN_L = 84, MARGIN_R = 16, MARGIN_T = 28, MARGIN_B = 44 };

/* A line chart of (x, y) with finite points only; nothing when fewer than one. */
static void line_chart(mmt_strbuf *o, const char *title, const char *y_label, const char *colour, const double *x,
                       const double *y, int64_t n) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int64_t finite = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        finite++;
        x0 = fmin(x0, x[i]), x1 = fmax(x1, x[i]), y0 = fmin(y0, y[i]), y1 = fmax(y1, y[i]);
    }
    if (!finite) return;
    if (x1 == x0) x0 -= 1, x1 += 1;
    if (y1 == y0) y0 -= fabs(y0) * 0.1 + 1e-12, y1 += fabs(y1) * 0.1 + 1e-12;
    double pad = (y1 - y0) * 0.05;
    int nonneg = y0 >= 0;
    y0 -= pad, y1 += pad;
    if (nonneg && y0 < 0) y0 = 0; /* a rate or loss axis does not dip below zero */
    const double pw = CHART_W - MARGIN_L - MARGIN_R, ph = CHART_H - MARGIN_T - MARGIN_B;
#define PX(v) (MARGIN_L + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (MARGIN_T + (1.0 - ((v) - y0) / (y1 - y0)) * ph)
    mmt_strbuf_printf(o, "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
                      CHART_W, CHART_H, CHART_W, CHART_H);
    mmt_report_html_escape(o, title);
    mmt_strbuf_printf(o, "\">\n<text x=\"%d\" y=\"18\" class=\"title\">", CHART_W / 2);
    mmt_report_html_escape(o, title);
    mmt_strbuf_printf(o, "</text>\n");
    /* axes, grid and tick labels: five even ticks on each axis */
    for (int t = 0; t <= 4; t++) {
        double yv = y0 + (y1 - y0) * t / 4.0, xv = x0 + (x1 - x0) * t / 4.0;
        mmt_strbuf_printf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>", MARGIN_L, PY(yv),
                          CHART_W - MARGIN_R, PY(yv));
        mmt_strbuf_printf(o, "<text x=\"%d\" y=\"%.1f\" class=\"ytick\">%.3g</text>\n", MARGIN_L - 6, PY(yv) + 4, yv);
        mmt_strbuf_printf(o, "<text x=\"%.1f\" y=\"%d\" class=\"xtick\">%.4g</text>\n", PX(xv), CHART_H - MARGIN_B + 16, xv);
    }
    mmt_strbuf_printf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>", MARGIN_L, MARGIN_T, MARGIN_L,
                      CHART_H - MARGIN_B);
    mmt_strbuf_printf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", MARGIN_L, CHART_H - MARGIN_B,
                      CHART_W - MARGIN_R, CHART_H - MARGIN_B);
    mmt_strbuf_printf(o, "<text x=\"%.1f\" y=\"%d\" class=\"xlabel\">step</text>\n", MARGIN_L + pw / 2, CHART_H - 8);
    mmt_strbuf_printf(o, "<text x=\"14\" y=\"%.1f\" class=\"ylabel\" transform=\"rotate(-90 14 %.1f)\">", MARGIN_T + ph / 2,
                      MARGIN_T + ph / 2);
    mmt_report_html_escape(o, y_label);
    mmt_strbuf_printf(o, "</text>\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colour);
    for (int64_t i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i])) mmt_strbuf_printf(o, "%.1f,%.1f ", PX(x[i]), PY(y[i]));
    mmt_strbuf_printf(o, "\"/>\n</svg>\n");
#undef PX
#undef PY
}

static int in_unit(double v) { return isfinite(v) && v >= 0 && v <= 1; }

/* Recalls, accuracies, BLEU and ROUGE are fractions; a rank, a loss or a CIDEr score that
 * happens to lie in [0, 1] is not. */
static int is_fraction(const mmt_report_metric *m) {
    return (strstr(m->name, "recall") || strstr(m->name, "accuracy") || !strncmp(m->name, "bleu", 4) ||
            !strncmp(m->name, "rouge", 5)) &&
           (in_unit(m->before) || in_unit(m->after));
}

/* Horizontal bars, before and after, for the recalls and accuracies. */
static void metrics_chart(mmt_strbuf *o, const mmt_report_metric *m, int64_t n) {
    int64_t rows = 0;
    for (int64_t i = 0; i < n; i++) rows += is_fraction(&m[i]);
    if (!rows) return;
    const int label_w = 170, bar_w = 320, row_h = 34, top = 30;
    int h = top + (int)rows * row_h + 10, w = label_w + bar_w + 70;
    mmt_strbuf_printf(o, "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"metrics before and after\">\n",
                      w, h, w, h);
    mmt_strbuf_printf(o, "<rect x=\"%d\" y=\"6\" width=\"12\" height=\"10\" fill=\"#9aa5b1\"/><text x=\"%d\" y=\"15\" class=\"legend\">before</text>", label_w, label_w + 16);
    mmt_strbuf_printf(o, "<rect x=\"%d\" y=\"6\" width=\"12\" height=\"10\" fill=\"#2b6cb0\"/><text x=\"%d\" y=\"15\" class=\"legend\">after</text>\n", label_w + 80, label_w + 96);
    int64_t r = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!is_fraction(&m[i])) continue;
        int y = top + (int)r * row_h;
        mmt_strbuf_printf(o, "<text x=\"%d\" y=\"%d\" class=\"blabel\">", label_w - 8, y + 18);
        mmt_report_html_escape(o, m[i].name);
        mmt_strbuf_printf(o, "</text>\n");
        const double v[2] = {m[i].before, m[i].after};
        const char *fill[2] = {"#9aa5b1", "#2b6cb0"};
        for (int side = 0; side < 2; side++) {
            if (!in_unit(v[side])) continue;
            int by = y + 3 + side * 14;
            mmt_strbuf_printf(o, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"12\" fill=\"%s\"/>", label_w, by, v[side] * bar_w,
                              fill[side]);
            mmt_strbuf_printf(o, "<text x=\"%.1f\" y=\"%d\" class=\"bvalue\">%.3f</text>\n", label_w + v[side] * bar_w + 4, by + 10,
                              v[side]);
        }
        r++;
    }
    mmt_strbuf_printf(o, "</svg>\n");
}

/* ---- sections -------------------------------------------------------------------------- */

static void number_cell(mmt_strbuf *o, double v) {
    if (isfinite(v)) mmt_strbuf_printf(o, "<td class=\"num\">%.4g</td>", v);
    else mmt_strbuf_printf(o, "<td class=\"num\">&#8212;</td>");
}

static void metrics_table(mmt_strbuf *o, const mmt_report_metric *metrics, int64_t n) {
    mmt_strbuf_printf(o, "<table class=\"metrics\">\n<tr><th>metric</th><th>before</th><th>after</th><th>change</th></tr>\n");
    for (int64_t i = 0; i < n; i++) {
        const mmt_report_metric *m = &metrics[i];
        mmt_strbuf_printf(o, "<tr><td>");
        mmt_report_html_escape(o, m->name);
        mmt_strbuf_printf(o, "</td>");
        number_cell(o, m->before);
        number_cell(o, m->after);
        if (isfinite(m->before) && isfinite(m->after)) mmt_strbuf_printf(o, "<td class=\"num\">%+.4g</td>", m->after - m->before);
        else mmt_strbuf_printf(o, "<td class=\"num\">&#8212;</td>");
        mmt_strbuf_printf(o, "</tr>\n");
    }
    mmt_strbuf_printf(o, "</table>\n");
    metrics_chart(o, metrics, n);
}

static void metrics_section(mmt_strbuf *o, const mmt_report *r) {
    if (!r->n_metrics) return;
    mmt_strbuf_printf(o, "<h2>Metrics before and after fine-tuning</h2>\n");
    metrics_table(o, r->metrics, r->n_metrics);
}

static void caption_line(mmt_strbuf *o, const char *cls, const char *label, const char *text) {
    mmt_strbuf_printf(o, "<div class=\"%s\"><span class=\"sidename\">%s</span> ", cls, label);
    mmt_report_html_escape(o, text);
    mmt_strbuf_printf(o, "</div>");
}

static void caption_section(mmt_strbuf *o, const mmt_report *r) {
    if (!r->caption_points && !r->n_caption_metrics && !r->n_captions) return;
    mmt_strbuf_printf(o, "<h2>");
    mmt_report_html_escape(o, r->caption_title ? r->caption_title : "Captioning");
    mmt_strbuf_printf(o, "</h2>\n");
    if (r->caption_points) {
        mmt_strbuf_printf(o, "<div class=\"curves\">\n");
        line_chart(o, "captioner training loss", "loss", "#c53030", r->caption_steps, r->caption_loss, r->caption_points);
        mmt_strbuf_printf(o, "</div>\n");
    }
    if (r->n_caption_metrics) metrics_table(o, r->caption_metrics, r->n_caption_metrics);
    if (!r->n_captions) return;
    mmt_strbuf_printf(o, "<h3>Test images: generated captions and references</h3>\n");
    for (int64_t i = 0; i < r->n_captions; i++) {
        const mmt_report_caption *c = &r->captions[i];
        mmt_strbuf_printf(o, "<div class=\"capex\">");
        if (c->png) {
            mmt_strbuf_printf(o, "<img alt=\"test image %lld\" src=\"data:image/png;base64,", (long long)i + 1);
            mmt_report_base64(o, c->png, c->png_len);
            mmt_strbuf_printf(o, "\">");
        }
        mmt_strbuf_printf(o, "<div class=\"captexts\">");
        if (c->before) caption_line(o, "cap before", "before", c->before);
        if (c->after) caption_line(o, "cap after", "after", c->after);
        for (int64_t k = 0; k < c->n_references; k++) caption_line(o, "cap ref", k ? "" : "references", c->references[k]);
        mmt_strbuf_printf(o, "</div></div>\n");
    }
}

static void hits_row(mmt_strbuf *o, const char *side, const mmt_report_hit *h, int64_t n) {
    mmt_strbuf_printf(o, "<div class=\"side\"><div class=\"sidename\">%s</div>", side);
    for (int64_t i = 0; i < n; i++) {
        mmt_strbuf_printf(o, "<figure class=\"%s\"><img alt=\"", h[i].correct ? "hit correct" : "hit");
        mmt_report_html_escape(o, h[i].caption);
        mmt_strbuf_printf(o, "\" src=\"data:image/png;base64,");
        mmt_report_base64(o, h[i].png, h[i].png_len);
        mmt_strbuf_printf(o, "\"><figcaption>%lld. ", (long long)i + 1);
        mmt_report_html_escape(o, h[i].caption);
        mmt_strbuf_printf(o, "</figcaption></figure>");
    }
    mmt_strbuf_printf(o, "</div>\n");
}

static void examples_section(mmt_strbuf *o, const mmt_report *r) {
    if (!r->n_examples) return;
    mmt_strbuf_printf(o, "<h2>Test queries: top %d images</h2>\n<p class=\"note\">Correct images (the query's own, or of its class when the pairs are labelled) are outlined in green.</p>\n",
                      MMT_REPORT_TOP);
    for (int64_t i = 0; i < r->n_examples; i++) {
        const mmt_report_example *e = &r->examples[i];
        mmt_strbuf_printf(o, "<div class=\"example\"><div class=\"query\">&#8220;");
        mmt_report_html_escape(o, e->query);
        mmt_strbuf_printf(o, "&#8221;</div>\n");
        if (e->n_before) hits_row(o, "before", e->before, e->n_before);
        if (e->n_after) hits_row(o, "after", e->after, e->n_after);
        mmt_strbuf_printf(o, "</div>\n");
    }
}

static void settings_section(mmt_strbuf *o, const mmt_report *r) {
    if (!r->n_settings) return;
    mmt_strbuf_printf(o, "<h2>Settings</h2>\n<table class=\"settings\">\n");
    for (int64_t i = 0; i < r->n_settings; i++) {
        mmt_strbuf_printf(o, "<tr><td>");
        mmt_report_html_escape(o, r->settings[i].key);
        mmt_strbuf_printf(o, "</td><td>");
        mmt_report_html_escape(o, r->settings[i].value);
        mmt_strbuf_printf(o, "</td></tr>\n");
    }
    mmt_strbuf_printf(o, "</table>\n");
}

static const char STYLE[] =
    "body{font-family:sans-serif;margin:24px auto;max-width:1000px;color:#1a202c}"
    "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #cbd5e0}"
    "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #cbd5e0;padding:3px 8px;text-align:left}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "svg.chart{display:block;margin:8px 0}svg text{font-size:11px;fill:#2d3748}"
    "svg .title{font-size:13px;text-anchor:middle;font-weight:bold}svg .ytick,svg .blabel{text-anchor:end}"
    "svg .xtick,svg .xlabel,svg .ylabel{text-anchor:middle}svg .grid{stroke:#edf2f7}svg .axis{stroke:#4a5568}"
    ".curves{display:flex;flex-wrap:wrap;gap:12px}.example{margin:12px 0;padding:8px;border:1px solid #e2e8f0}"
    ".query{font-weight:bold;margin-bottom:6px}.side{display:flex;align-items:flex-start;gap:8px;margin:4px 0}"
    ".sidename{width:60px;color:#4a5568}figure{margin:0;width:120px}figure img{width:96px;height:96px;"
    "image-rendering:pixelated;border:3px solid transparent}figure.correct img{border-color:#38a169}"
    "figcaption{font-size:.75em}.note{color:#4a5568;font-size:.85em}h3{font-size:1em}"
    ".capex{display:flex;gap:12px;align-items:flex-start;margin:8px 0;padding:8px;border:1px solid #e2e8f0}"
    ".capex img{width:96px;height:96px;image-rendering:pixelated}.cap{font-size:.9em;margin:2px 0}"
    ".cap .sidename{display:inline-block;width:84px}.cap.after{font-weight:bold}.cap.ref{color:#4a5568}";

mmt_status mmt_report_render(const mmt_report *r, mmt_strbuf *o) {
    mmt_strbuf_printf(o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>mmtune report: ");
    mmt_report_html_escape(o, r->title);
    mmt_strbuf_printf(o, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>mmtune report: ", STYLE);
    mmt_report_html_escape(o, r->title);
    mmt_strbuf_printf(o, "</h1>\n");
    if (r->n_points) {
        mmt_strbuf_printf(o, "<h2>Training curves</h2>\n<div class=\"curves\">\n");
        line_chart(o, "training loss", "loss", "#c53030", r->steps, r->loss, r->n_points);
        if (r->lr) line_chart(o, "learning rate", "lr", "#2b6cb0", r->steps, r->lr, r->n_points);
        mmt_strbuf_printf(o, "</div>\n");
    }
    metrics_section(o, r);
    examples_section(o, r);
    caption_section(o, r);
    settings_section(o, r);
    mmt_strbuf_printf(o, "</body>\n</html>\n");
    if (o->failed) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "report: out of memory");
    return MMT_OK;
}
