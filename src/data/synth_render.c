/*
 * synth_render.c — drawing a synthetic scene into RGB8 pixels.
 *
 * Integer arithmetic throughout, so pixels are bitwise the same on every machine: geometry in
 * 1/16-pixel units, shapes as exact integer inside-tests (circle and ring by squared distance,
 * polygons by the even-odd crossing rule on vertex tables scaled by 1024), anti-aliasing by
 * 4x4 supersampling (coverage 0..16 blended with rounding). Each object sits in its grid cell:
 * a large one has a radius of 0.42 cell, a small one 0.26 cell.
 */
#include <string.h>

#include "data/synth.h"
#include "data/synth_rng.h"

#define SUB 16    /* geometry units per pixel */
#define SAMPLES 4 /* supersamples per pixel side */

typedef struct vertex {
    int x, y; /* unit vectors scaled by 1024, y down */
} vertex;

static const vertex TRIANGLE[] = {{0, -768}, {887, 768}, {-887, 768}};
static const vertex STAR[] = {{0, -1024}, {253, -348}, {974, -316}, {409, 133}, {602, 828},
                              {0, 430},   {-602, 828}, {-409, 133}, {-974, -316}, {-253, -348}};
static const vertex HEXAGON[] = {{1024, 0}, {512, 887}, {-512, 887}, {-1024, 0}, {-512, -887}, {512, -887}};

/* Even-odd rule: does the ray from (px, py) towards +x cross the polygon an odd number of times? */
static int inside_polygon(const vertex *v, int n, int64_t r, int64_t px, int64_t py) {
    int inside = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        int64_t xi = v[i].x * r / 1024, yi = v[i].y * r / 1024;
        int64_t xj = v[j].x * r / 1024, yj = v[j].y * r / 1024;
        if ((yi > py) == (yj > py)) continue;
        /* px < xi + (py - yi) * (xj - xi) / (yj - yi), without division. */
        int64_t lhs = (px - xi) * (yj - yi), rhs = (py - yi) * (xj - xi);
        if (yj > yi ? lhs < rhs : lhs > rhs) inside = !inside;
    }
    return inside;
}

static int64_t abs64(int64_t v) { return v < 0 ? -v : v; }

/* Is the point (dx, dy) from the centre inside a shape of radius r? All in SUB units. */
static int inside_shape(mmt_synth_shape shape, int64_t r, int64_t dx, int64_t dy) {
    switch (shape) {
    case MMT_SYNTH_CIRCLE: return dx * dx + dy * dy <= r * r;
    case MMT_SYNTH_SQUARE: return abs64(dx) <= r * 80 / 100 && abs64(dy) <= r * 80 / 100;
    case MMT_SYNTH_TRIANGLE: return inside_polygon(TRIANGLE, 3, r, dx, dy);
    case MMT_SYNTH_STAR: return inside_polygon(STAR, 10, r, dx, dy);
    case MMT_SYNTH_DIAMOND: return abs64(dx) + abs64(dy) <= r;
    case MMT_SYNTH_HEXAGON: return inside_polygon(HEXAGON, 6, r, dx, dy);
    case MMT_SYNTH_CROSS: {
        int64_t arm = r * 85 / 100, half = r * 30 / 100;
        return (abs64(dx) <= half && abs64(dy) <= arm) || (abs64(dy) <= half && abs64(dx) <= arm);
    }
    case MMT_SYNTH_RING: {
        int64_t d2 = dx * dx + dy * dy, inner = r * 55 / 100;
        return d2 <= r * r && d2 >= inner * inner;
    }
    default: return 0;
    }
}

static void paint_background(const mmt_synth_scene *sc, int64_t size, uint8_t *px) {
    synth_rng noise = {sc->texture_seed};
    const uint8_t *a = sc->bg_rgb[0], *b = sc->bg_rgb[1];
    /* Stripe periods are given for a 64-pixel image and scale with the size. */
    int64_t period = (sc->bg_param / 4) * size / 64, dir = sc->bg_param % 4;
    if (period < 2) period = 2;
    for (int64_t y = 0; y < size; y++)
        for (int64_t x = 0; x < size; x++) {
            uint8_t *p = px + (y * size + x) * 3;
            switch (sc->background) {
            case MMT_SYNTH_PLAIN: memcpy(p, a, 3); break;
            case MMT_SYNTH_NOISE: {
                int64_t n = synth_range(&noise, -24, 24);
                for (int c = 0; c < 3; c++) p[c] = (uint8_t)(a[c] + n); /* a in 90..170: no wrap */
                break;
            }
            case MMT_SYNTH_STRIPES: {
                int64_t t = dir == 0 ? x : dir == 1 ? y : x + y;
                memcpy(p, (t / (period / 2 > 0 ? period / 2 : 1)) % 2 ? b : a, 3);
                break;
            }
            case MMT_SYNTH_GRADIENT: {
                int64_t g = sc->bg_param;
                int64_t t = g == 0 ? x : g == 1 ? y : x + y, span = g == 2 ? 2 * (size - 1) : size - 1;
                for (int c = 0; c < 3; c++) p[c] = (uint8_t)(a[c] + ((int64_t)b[c] - a[c]) * t / span);
                break;
            }
            }
        }
}

static void paint_object(const mmt_synth_object *o, int64_t size, uint8_t *px) {
    int64_t cell = size * SUB / 3;
    int64_t cx = o->col * cell + cell / 2 + o->jitter_x * cell / 1000;
    int64_t cy = o->row * cell + cell / 2 + o->jitter_y * cell / 1000;
    int64_t r = cell * (o->large ? 42 : 26) / 100;
    int64_t x0 = (cx - r) / SUB - 1, x1 = (cx + r) / SUB + 1, y0 = (cy - r) / SUB - 1, y1 = (cy + r) / SUB + 1;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > size - 1) x1 = size - 1;
    if (y1 > size - 1) y1 = size - 1;
    const int64_t step = SUB / SAMPLES, full = SAMPLES * SAMPLES;
    for (int64_t y = y0; y <= y1; y++)
        for (int64_t x = x0; x <= x1; x++) {
            int64_t cover = 0;
            for (int64_t sy = 0; sy < SAMPLES; sy++)
                for (int64_t sx = 0; sx < SAMPLES; sx++)
                    cover += inside_shape(o->shape, r, x * SUB + sx * step + step / 2 - cx,
                                          y * SUB + sy * step + step / 2 - cy);
            if (!cover) continue;
            uint8_t *p = px + (y * size + x) * 3;
            for (int c = 0; c < 3; c++) p[c] = (uint8_t)((p[c] * (full - cover) + o->rgb[c] * cover + full / 2) / full);
        }
}

mmt_status mmt_synth_render(const mmt_synth_scene *sc, int64_t size, mmt_image *out) {
    if (size < 16 || size > 1024)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "synth: image size %lld is outside 16..1024", (long long)size);
    MMT_TRY(mmt_image_alloc(size, size, out));
    paint_background(sc, size, out->pixels);
    for (int i = 0; i < sc->n_objects; i++) paint_object(&sc->objects[i], size, out->pixels);
    return MMT_OK;
}
