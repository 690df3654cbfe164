/*
 * synth_xray.c — synthetic chest radiographs and their reports (synth_xray.h).
 *
 * Geometry is in thousandths of the image side ("milli"), pixel centres at (2x+1)*500/size,
 * so a study looks the same at any size. All integer.
 */
#include <stdio.h>
#include <string.h>

#include "data/synth_rng.h"
#include "data/synth_xray.h"

static const char *const FINDING_NAMES[MMT_XRAY_FINDING_COUNT] = {"normal", "nodule", "effusion", "cardiomegaly"};
static const char *const SIDES[2] = {"right", "left"};
static const char *const ZONES[3] = {"upper", "middle", "lower"};
static const char *const SIZES[2] = {"small", "large"};

static const char *const VOCABULARY[] = {
    "no", "acute", "findings", "the", "lungs", "are", "clear", "normal", "chest", "small", "large", "nodule", "in",
    "right", "left", "upper", "middle", "lower", "zone", "lung", "a", "pleural", "effusion", "on", "heart", "is",
    "enlarged", "cardiomegaly", NULL};

const char *const *mmt_xray_vocabulary(void) { return VOCABULARY; }

const char *mmt_xray_finding_name(mmt_xray_finding f) {
    return (unsigned)f < MMT_XRAY_FINDING_COUNT ? FINDING_NAMES[f] : "unknown";
}

void mmt_xray_study_make(uint64_t seed, mmt_synth_split split, int64_t index, mmt_xray_study *out) {
    /* domain 2 in the stream key: never the stream of a base or shift scene */
    synth_rng r = {synth_mix(seed ^ synth_mix(((uint64_t)2 << 8 | (uint64_t)split) + 1) ^
                             synth_mix((uint64_t)index + UINT64_C(0x5eed)))};
    memset(out, 0, sizeof *out);
    int64_t f = synth_below(&r, 100); /* 25% normal, 45% nodule, 20% effusion, 10% cardiomegaly */
    out->finding = f < 25 ? MMT_XRAY_NORMAL : f < 70 ? MMT_XRAY_NODULE : f < 90 ? MMT_XRAY_EFFUSION : MMT_XRAY_CARDIOMEGALY;
    out->side = (int)synth_below(&r, 2);
    out->zone = (int)synth_below(&r, 3);
    out->large = (int)synth_below(&r, 2);
    out->jitter_x = (int)synth_range(&r, -50, 50);
    out->jitter_y = (int)synth_range(&r, -30, 30);
    out->body_dx = (int)synth_range(&r, -25, 25);
    out->lung_scale = (int)synth_range(&r, 920, 1080);
    out->exposure = (int)synth_range(&r, 920, 1080);
    out->encoding = (int)synth_below(&r, 4);
    out->window_center = (int)synth_range(&r, 1900, 2200);
    out->window_width = (int)synth_range(&r, 3600, 4400);
    out->noise_seed = synth_next(&r);
    out->caption_seed = synth_next(&r);
    if (out->finding == MMT_XRAY_NORMAL || out->finding == MMT_XRAY_CARDIOMEGALY) out->side = out->zone = out->large = 0;
    if (out->finding == MMT_XRAY_EFFUSION) out->zone = 0;
}

size_t mmt_xray_report(const mmt_xray_study *st, int variant, char *buf, size_t cap) {
    const char *size = SIZES[st->large], *side = SIDES[st->side], *zone = ZONES[st->zone];
    int v = ((variant % 3) + 3) % 3;
    int n = 0;
    switch (st->finding) {
    case MMT_XRAY_NODULE:
        n = v == 0   ? snprintf(buf, cap, "%s nodule in the %s %s zone", size, side, zone)
            : v == 1 ? snprintf(buf, cap, "%s %s %s zone lung nodule", size, side, zone)
                     : snprintf(buf, cap, "a %s nodule in the %s %s lung", size, zone, side);
        break;
    case MMT_XRAY_EFFUSION:
        n = v == 0   ? snprintf(buf, cap, "%s %s pleural effusion", size, side)
            : v == 1 ? snprintf(buf, cap, "%s effusion on the %s", size, side)
                     : snprintf(buf, cap, "a %s pleural effusion on the %s", size, side);
        break;
    case MMT_XRAY_CARDIOMEGALY:
        n = snprintf(buf, cap, "%s", v == 0 ? "enlarged heart" : v == 1 ? "the heart is enlarged" : "cardiomegaly");
        break;
    default:
        n = snprintf(buf, cap, "%s", v == 0 ? "no acute findings" : v == 1 ? "the lungs are clear" : "normal chest");
        break;
    }
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap ? cap - 1 : 0;
}

/* Inside the ellipse centred (cx, cy) with semi-axes a, b (milli units)? */
static int in_ellipse(int64_t x, int64_t y, int64_t cx, int64_t cy, int64_t a, int64_t b) {
    int64_t dx = x - cx, dy = y - cy;
    return dx * dx * b * b + dy * dy * a * a <= a * a * b * b;
}

void mmt_xray_render(const mmt_xray_study *st, int64_t size, uint16_t *values) {
    synth_rng noise = {synth_mix(st->noise_seed)};
    const int64_t cx = 500 + st->body_dx, k = st->lung_scale, e = st->exposure;
    const int64_t lung_cy = 450, lung_a = 135 * k / 1000, lung_b = 300 * k / 1000;
    const int64_t lung_top = lung_cy - lung_b, lung_h = 2 * lung_b;
    const int64_t lung_cx[2] = {cx - 190, cx + 190}; /* the patient's right lung is on the image's left */
    const int cardio = st->finding == MMT_XRAY_CARDIOMEGALY;
    const int64_t heart_cx = cx + 45, heart_cy = 700, heart_a = cardio ? 235 : 150, heart_b = cardio ? 170 : 120;
    /* the finding's place */
    const int64_t nod_x = lung_cx[st->side] + st->jitter_x;
    const int64_t nod_y = lung_top + (2 * st->zone + 1) * lung_h / 6 + st->jitter_y;
    const int64_t nod_r = st->large ? 60 : 38;
    const int64_t fluid_h = st->large ? 270 : 140; /* from the lung's bottom up */

    for (int64_t py = 0; py < size; py++) {
        const int64_t y = (2 * py + 1) * 500 / size;
        for (int64_t px = 0; px < size; px++) {
            const int64_t x = (2 * px + 1) * 500 / size;
            int64_t v = 150; /* air around the patient */
            if (in_ellipse(x, y, cx, 560, 460, 480)) {
                v = 1500; /* soft tissue */
                int lung = -1;
                for (int s = 0; s < 2; s++)
                    if (in_ellipse(x, y, lung_cx[s], lung_cy, lung_a, lung_b)) lung = s;
                if (lung >= 0) {
                    v = 600;
                    int64_t dx = x - cx, bend = dx * dx / 2500; /* ribs curve down away from the spine */
                    if ((y + bend) % 90 < 18) v += 280;
                    if (st->finding == MMT_XRAY_EFFUSION && lung == st->side) {
                        /* the meniscus climbs the lateral wall */
                        int64_t lateral = lung == 0 ? lung_cx[0] - x : x - lung_cx[1];
                        int64_t level = lung_cy + lung_b - fluid_h - (lateral > 0 ? lateral * 2 / 5 : 0);
                        if (y > level) v = 1800;
                    }
                    if (st->finding == MMT_XRAY_NODULE && lung == st->side) {
                        int64_t dx2 = x - nod_x, dy2 = y - nod_y, d2 = dx2 * dx2 + dy2 * dy2;
                        int64_t r_out = nod_r + 16;
                        if (d2 <= nod_r * nod_r) v += 1400;
                        else if (d2 < r_out * r_out) {
                            /* soft edge: linear in the squared distance */
                            v += 1400 * (r_out * r_out - d2) / (r_out * r_out - nod_r * nod_r);
                        }
                    }
                }
                if (x > cx - 55 && x < cx + 55 && y > 120 && y < 900) v = 2100; /* mediastinum and spine */
                if (in_ellipse(x, y, heart_cx, heart_cy, heart_a, heart_b)) v = v > 1900 ? v : 1900;
                v = 150 + (v - 150) * e / 1000;
            }
            v += synth_range(&noise, -40, 40);
            values[py * size + px] = (uint16_t)(v < 0 ? 0 : v > 4095 ? 4095 : v);
        }
    }
}

void mmt_xray_dicom_spec(const mmt_xray_study *st, int64_t size, const uint16_t *values, uint16_t *stored,
                         const char *patient_id, mmt_dicom_write_spec *w) {
    mmt_dicom_write_spec_default(w);
    w->rows = w->cols = size;
    w->pixels = stored;
    w->patient_id = patient_id;
    w->description = "CHEST PA (synthetic)";
    w->uid_seed = st->noise_seed;
    w->has_window = 1;
    w->window_center = st->window_center;
    w->window_width = st->window_width;
    int64_t n = size * size;
    switch (st->encoding) {
    case 1: /* MONOCHROME1: the window is on the stored values, then the display is inverted */
        w->modality = "CR";
        w->explicit_vr = 0;
        w->monochrome1 = 1;
        w->bits_stored = 12;
        w->window_center = 4095 - st->window_center;
        for (int64_t i = 0; i < n; i++) stored[i] = (uint16_t)(4095 - values[i]);
        break;
    case 2:
        w->modality = "DX";
        w->is_signed = 1;
        w->intercept = 2048;
        for (int64_t i = 0; i < n; i++) stored[i] = (uint16_t)(int16_t)((int)values[i] - 2048);
        break;
    case 3:
        w->modality = "DX";
        w->bits_stored = 14;
        w->slope = 0.25;
        for (int64_t i = 0; i < n; i++) stored[i] = (uint16_t)(values[i] * 4);
        break;
    default:
        w->modality = "CR";
        w->bits_stored = 12;
        for (int64_t i = 0; i < n; i++) stored[i] = values[i];
        break;
    }
}
