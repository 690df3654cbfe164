/*
 * synth.c — synthetic scenes and their captions (the rendering is in synth_render.c, the
 * files on disk in synth_write.c).
 *
 * A scene is drawn from its own splitmix64 stream, seeded from (seed, domain, split, index),
 * so it is a pure function of those four values. Captions take a second stream (the scene's
 * caption_seed plus the variant), so several wordings of one scene can be asked for without
 * changing the scene. The word tables keep base and shift wording apart: every phrase the
 * shift domain adds is listed in SHIFT_ONLY_WORDS, which tests check in both directions.
 */
#include "data/synth.h"

#include <string.h>

#include "data/synth_rng.h"

static const char *const SHAPE_NAMES[MMT_SYNTH_SHAPE_COUNT] = {
    "circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "ring"};
static const char *const SHAPE_PLURALS[MMT_SYNTH_SHAPE_COUNT] = {
    "circles", "squares", "triangles", "stars", "diamonds", "hexagons", "crosses", "rings"};
/* Second names used in captions (NULL: none). */
static const char *const SHAPE_SYNONYMS[MMT_SYNTH_SHAPE_COUNT] = {
    "disc", NULL, NULL, NULL, "rhombus", NULL, "plus sign", "donut"};
static const char *const SHAPE_SYNONYM_PLURALS[MMT_SYNTH_SHAPE_COUNT] = {
    "discs", NULL, NULL, NULL, "rhombuses", NULL, "plus signs", "donuts"};

static const char *const COLOUR_NAMES[MMT_SYNTH_COLOUR_COUNT] = {
    "red", "green", "blue", "yellow", "orange", "purple", "white", "black", "pink", "brown", "cyan"};
static const uint8_t COLOUR_RGB[MMT_SYNTH_COLOUR_COUNT][3] = {
    {220, 30, 30},  {30, 170, 50},   {30, 60, 220},  {240, 220, 30}, {250, 140, 20}, {140, 40, 180},
    {245, 245, 245}, {15, 15, 15},   {250, 130, 190}, {130, 80, 30}, {30, 220, 230}};

/* Wording, per domain [base, shift]. */
static const char *const SIZE_WORDS[2][2][2] = {
    {{"small", "little"}, {"large", "big"}},
    {{"tiny", "small"}, {"huge", "large"}}};
static const char *const FRAMES[2][5] = {
    {"%s", "a picture of %s", "a photo of %s", "an image of %s", "a scene with %s"},
    {"%s pictured", "a drawing of %s", "%s shown here", "a sketch showing %s", "%s, as drawn"}};
static const char *const RELATION_WORDS[2][4][2] = {
    {{"left of", "to the left of"}, {"right of", "to the right of"}, {"above", "over"}, {"below", "under"}},
    {{"on the left side of", "to the left of"}, {"on the right side of", "to the right of"},
     {"higher than", "above"}, {"beneath", "lower than"}}};
static const char *const POSITION_WORDS[2][9] = {
    {"in the top left corner", "at the top", "in the top right corner", "on the left", "in the center",
     "on the right", "in the bottom left corner", "at the bottom", "in the bottom right corner"},
    {"in the upper left", "along the upper edge", "in the upper right", "along the left edge", "in the middle",
     "along the right edge", "in the lower left", "along the lower edge", "in the lower right"}};
static const char *const BACKGROUND_WORDS[2][4] = {
    {"on a plain background", "on a noisy background", "on a striped background", "on a gradient background"},
    {"against a plain backdrop", "against a speckled backdrop", "against a striped backdrop",
     "against a fading backdrop"}};
static const char *const TRIO_JOIN[2] = {" and ", " as well as "};
static const char *const COUNT_WORDS[4] = {"", "one", "two", "three"};

static const char *const SHIFT_ONLY_WORDS[] = {
    "against", "along", "as", "backdrop", "beneath", "brown", "cross", "crosses", "cyan", "donut", "donuts",
    "drawing", "drawn", "edge", "fading", "here", "hexagon", "hexagons", "higher", "huge", "lower", "middle",
    "pictured", "pink", "plus", "ring", "rings", "shown", "showing", "side", "sign", "signs", "sketch",
    "speckled", "than", "tiny", "upper", "well", NULL};

const char *mmt_synth_shape_name(mmt_synth_shape s) {
    return (unsigned)s < MMT_SYNTH_SHAPE_COUNT ? SHAPE_NAMES[s] : "?";
}
const char *mmt_synth_shape_plural(mmt_synth_shape s) {
    return (unsigned)s < MMT_SYNTH_SHAPE_COUNT ? SHAPE_PLURALS[s] : "?";
}
const char *mmt_synth_colour_name(mmt_synth_colour c) {
    return (unsigned)c < MMT_SYNTH_COLOUR_COUNT ? COLOUR_NAMES[c] : "?";
}
const char *mmt_synth_domain_name(mmt_synth_domain d) {
    return d == MMT_SYNTH_SHIFT ? "shift" : d == MMT_SYNTH_XRAY ? "xray" : "base";
}
const char *mmt_synth_split_name(mmt_synth_split s) {
    return s == MMT_SYNTH_VAL ? "val" : s == MMT_SYNTH_TEST ? "test" : "train";
}
const char *const *mmt_synth_shift_only_words(void) { return SHIFT_ONLY_WORDS; }

/* ---- scenes ---- */

static int is_shift_only(const mmt_synth_object *o) {
    return o->shape >= MMT_SYNTH_BASE_SHAPES || o->colour >= MMT_SYNTH_BASE_COLOURS;
}

/* A shape and colour for the domain: base draws from the base sets; shift from all of them,
 * redrawing until the shape or the colour is one the base never shows. */
static void pick_look(synth_rng *r, mmt_synth_domain domain, mmt_synth_object *o) {
    do {
        o->shape = (mmt_synth_shape)synth_below(r, domain == MMT_SYNTH_SHIFT ? MMT_SYNTH_SHAPE_COUNT : MMT_SYNTH_BASE_SHAPES);
        o->colour = (mmt_synth_colour)synth_below(r, domain == MMT_SYNTH_SHIFT ? MMT_SYNTH_COLOUR_COUNT : MMT_SYNTH_BASE_COLOURS);
    } while (domain == MMT_SYNTH_SHIFT && !is_shift_only(o));
}

static int same_look(const mmt_synth_object *a, const mmt_synth_object *b) {
    return a->shape == b->shape && a->colour == b->colour;
}

static void finish_object(synth_rng *r, mmt_synth_object *o) {
    /* Small objects can wander further inside their cell than large ones. */
    int reach = o->large ? 60 : 150;
    o->jitter_x = (int)synth_range(r, -reach, reach);
    o->jitter_y = (int)synth_range(r, -reach, reach);
    for (int c = 0; c < 3; c++) {
        int v = COLOUR_RGB[o->colour][c] + (int)synth_range(r, -10, 10);
        o->rgb[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

void mmt_synth_scene_make(uint64_t seed, mmt_synth_domain domain, mmt_synth_split split, int64_t index,
                          mmt_synth_scene *out) {
    memset(out, 0, sizeof *out);
    synth_rng r = {synth_mix(seed ^ synth_mix(((uint64_t)domain << 8 | (uint64_t)split) + 1) ^
                             synth_mix((uint64_t)index + UINT64_C(0x5eed)))};
    out->domain = domain;
    int64_t k = synth_below(&r, 100);
    out->kind = k < 35 ? MMT_SYNTH_SINGLE : k < 55 ? MMT_SYNTH_COUNT : k < 85 ? MMT_SYNTH_RELATION : MMT_SYNTH_TRIO;
    out->n_objects = out->kind == MMT_SYNTH_SINGLE ? 1 : out->kind == MMT_SYNTH_RELATION ? 2
                   : out->kind == MMT_SYNTH_TRIO ? 3 : (int)synth_range(&r, 2, 3);
    mmt_synth_object *o = out->objects;

    /* Looks: count scenes repeat one look and size; the others use distinct looks so that
     * every object the caption names is unambiguous. */
    pick_look(&r, domain, &o[0]);
    o[0].large = (int)synth_below(&r, 2);
    for (int i = 1; i < out->n_objects; i++) {
        if (out->kind == MMT_SYNTH_COUNT) {
            o[i] = o[0];
            continue;
        }
        int clash;
        do {
            pick_look(&r, domain, &o[i]);
            clash = 0;
            for (int j = 0; j < i; j++) clash |= same_look(&o[i], &o[j]);
        } while (clash);
        o[i].large = (int)synth_below(&r, 2);
    }

    /* Cells: a relation puts both objects on one row (left/right) or one column (above/below)
     * in the stated order; the other kinds take distinct random cells. */
    if (out->kind == MMT_SYNTH_RELATION) {
        out->relation = (mmt_synth_relation)synth_below(&r, 4);
        int line = (int)synth_below(&r, 3);
        int first = (int)synth_below(&r, 2), second = (int)synth_range(&r, first + 1, 2);
        int a = first, b = second; /* a < b along the axis */
        if (out->relation == MMT_SYNTH_RIGHT_OF || out->relation == MMT_SYNTH_BELOW) a = second, b = first;
        if (out->relation == MMT_SYNTH_LEFT_OF || out->relation == MMT_SYNTH_RIGHT_OF) {
            o[0].row = o[1].row = line;
            o[0].col = a, o[1].col = b;
        } else {
            o[0].col = o[1].col = line;
            o[0].row = a, o[1].row = b;
        }
    } else {
        int cells[9];
        for (int i = 0; i < 9; i++) cells[i] = i;
        for (int i = 0; i < out->n_objects; i++) {
            int j = (int)synth_range(&r, i, 8), t = cells[i];
            cells[i] = cells[j], cells[j] = t;
            o[i].row = cells[i] / 3, o[i].col = cells[i] % 3;
        }
    }
    for (int i = 0; i < out->n_objects; i++) finish_object(&r, &o[i]);

    /* Backgrounds stay in mid tones so white and black objects, and the saturated colours,
     * all stand out. */
    out->background = (mmt_synth_background)synth_below(&r, 4);
    for (int b = 0; b < 2; b++)
        for (int c = 0; c < 3; c++) out->bg_rgb[b][c] = (uint8_t)synth_range(&r, 90, 170);
    out->bg_param = out->background == MMT_SYNTH_STRIPES ? (int)(synth_range(&r, 4, 12) * 4 + synth_below(&r, 3))
                  : out->background == MMT_SYNTH_GRADIENT ? (int)synth_below(&r, 3) : 0;
    out->texture_seed = synth_next(&r);
    out->caption_seed = synth_next(&r);
}

/* ---- captions ---- */

typedef struct caption_buf {
    char *s;
    size_t len, cap;
} caption_buf;

static void put(caption_buf *b, const char *t) {
    for (; *t && b->len + 1 < b->cap; t++) b->s[b->len++] = *t;
    b->s[b->len] = '\0';
}

static int starts_with_vowel(const char *w) { return strchr("aeiou", w[0]) != NULL; }

/* One caption in three uses the second names throughout, so a caption never calls the same
 * shape by two names (which would read as two shapes). */
static const char *shape_word(int synonyms, mmt_synth_shape s, int plural) {
    const char *syn = plural ? SHAPE_SYNONYM_PLURALS[s] : SHAPE_SYNONYMS[s];
    if (syn && synonyms) return syn;
    return plural ? SHAPE_PLURALS[s] : SHAPE_NAMES[s];
}

/* "a small red circle", "an orange star" */
static void put_object(caption_buf *b, synth_rng *r, int synonyms, const mmt_synth_scene *sc,
                       const mmt_synth_object *o) {
    int d = sc->domain;
    const char *size = synth_below(r, 2) ? SIZE_WORDS[d][o->large][synth_below(r, 2)] : NULL;
    const char *colour = COLOUR_NAMES[o->colour];
    put(b, starts_with_vowel(size ? size : colour) ? "an " : "a ");
    if (size) put(b, size), put(b, " ");
    put(b, colour);
    put(b, " ");
    put(b, shape_word(synonyms, o->shape, 0));
}

size_t mmt_synth_caption(const mmt_synth_scene *sc, int variant, char *out, size_t cap) {
    if (cap == 0) return 0;
    synth_rng r = {synth_mix(sc->caption_seed + (uint64_t)variant * UINT64_C(0x9e3779b97f4a7c15))};
    int d = sc->domain;
    char body_text[MMT_SYNTH_CAPTION_MAX];
    caption_buf body = {body_text, 0, sizeof body_text};
    body_text[0] = '\0';
    const mmt_synth_object *o = sc->objects;
    int synonyms = synth_below(&r, 3) == 0;
    switch (sc->kind) {
    case MMT_SYNTH_SINGLE:
        put_object(&body, &r, synonyms, sc, &o[0]);
        if (synth_below(&r, 2)) put(&body, " "), put(&body, POSITION_WORDS[d][o[0].row * 3 + o[0].col]);
        break;
    case MMT_SYNTH_COUNT:
        put(&body, COUNT_WORDS[sc->n_objects]);
        put(&body, " ");
        if (synth_below(&r, 2)) put(&body, SIZE_WORDS[d][o[0].large][synth_below(&r, 2)]), put(&body, " ");
        put(&body, COLOUR_NAMES[o[0].colour]);
        put(&body, " ");
        put(&body, shape_word(synonyms, o[0].shape, 1));
        break;
    case MMT_SYNTH_RELATION:
        put_object(&body, &r, synonyms, sc, &o[0]);
        put(&body, " ");
        put(&body, RELATION_WORDS[d][sc->relation][synth_below(&r, 2)]);
        put(&body, " ");
        put_object(&body, &r, synonyms, sc, &o[1]);
        break;
    case MMT_SYNTH_TRIO:
        put_object(&body, &r, synonyms, sc, &o[0]);
        put(&body, ", ");
        put_object(&body, &r, synonyms, sc, &o[1]);
        put(&body, TRIO_JOIN[d]);
        put_object(&body, &r, synonyms, sc, &o[2]);
        break;
    }
    if (synth_below(&r, 3) == 0) put(&body, " "), put(&body, BACKGROUND_WORDS[d][sc->background]);

    /* The frame: "%s" somewhere in a fixed sentence. */
    const char *frame = FRAMES[d][synth_below(&r, 5)];
    const char *hole = strstr(frame, "%s");
    caption_buf b = {out, 0, cap};
    out[0] = '\0';
    char head[64];
    size_t head_len = (size_t)(hole - frame);
    memcpy(head, frame, head_len);
    head[head_len] = '\0';
    put(&b, head);
    put(&b, body_text);
    put(&b, hole + 2);
    /* Half the captions are written as a sentence: capital first letter, full stop. */
    if (synth_below(&r, 2)) {
        if (out[0] >= 'a' && out[0] <= 'z') out[0] = (char)(out[0] - 'a' + 'A');
        put(&b, ".");
    }
    return b.len;
}
