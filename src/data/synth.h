/*
 * synth.h — a procedural image–caption generator for tests, pretraining and domain-shift
 * experiments (`mmtune synth`).
 *
 * A scene holds one to three anti-aliased objects, each a shape in a named colour, small or
 * large, placed in one cell of a 3x3 grid, on a plain, noisy, striped or gradient background.
 * Four kinds of scene, each with its own caption forms:
 *   single    "a small red circle in the top left"
 *   count     "two red circles", "three large blue stars"      (identical objects)
 *   relation  "a small red circle left of a blue square"        (left of/right of/above/below)
 *   trio      "a red circle, a blue square and a green star"
 * Captions are drawn from several templates and synonyms (scene_caption with a variant).
 *
 * Two domains:
 *   base   shapes circle, square, triangle, star, diamond; colours red, green, blue, yellow,
 *          orange, purple, white, black; the base templates.
 *   shift  adds shapes hexagon, cross, ring and colours pink, brown, cyan; every object in a
 *          shift scene has a shift-only shape or a shift-only colour (or both), and shift
 *          captions use their own templates and words (e.g. "pictured", "beside", "tiny",
 *          "huge"), none of which a base caption contains (mmt_synth_shift_only_words).
 *
 * Determinism: everything is integer arithmetic (a splitmix64 generator, fixed-point
 * geometry with 4x4 supersampling, integer blending), so a seed gives bitwise identical
 * scenes, pixels and captions on every machine and compiler. Image i of a split draws from
 * its own stream (seed, domain, split, i), so images do not depend on the split sizes or
 * on how many images came before.
 *
 * Usage:
 *     mmt_synth_scene sc;
 *     mmt_synth_scene_make(42, MMT_SYNTH_BASE, MMT_SYNTH_TRAIN, 0, &sc);
 *     char text[MMT_SYNTH_CAPTION_MAX];
 *     mmt_synth_caption(&sc, 0, text, sizeof text);
 *     mmt_image img = {0};
 *     MMT_TRY(mmt_synth_render(&sc, 64, &img));
 * or the whole dataset (images + JSONL + COCO JSON + labels), see mmt_synth_write.
 */
#ifndef MMT_DATA_SYNTH_H
#define MMT_DATA_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "data/image.h"

#define MMT_SYNTH_CAPTION_MAX 256
#define MMT_SYNTH_MAX_OBJECTS 3

/* MMT_SYNTH_XRAY is not a scene domain: mmt_synth_write draws chest radiographs for it
 * (data/synth_xray.h) and writes them as DICOM; the scene functions take base and shift. */
typedef enum mmt_synth_domain { MMT_SYNTH_BASE = 0, MMT_SYNTH_SHIFT = 1, MMT_SYNTH_XRAY = 2 } mmt_synth_domain;
typedef enum mmt_synth_split { MMT_SYNTH_TRAIN = 0, MMT_SYNTH_VAL = 1, MMT_SYNTH_TEST = 2 } mmt_synth_split;

typedef enum mmt_synth_shape {
    MMT_SYNTH_CIRCLE, MMT_SYNTH_SQUARE, MMT_SYNTH_TRIANGLE, MMT_SYNTH_STAR, MMT_SYNTH_DIAMOND,
    /* shift only */
    MMT_SYNTH_HEXAGON, MMT_SYNTH_CROSS, MMT_SYNTH_RING,
    MMT_SYNTH_SHAPE_COUNT
} mmt_synth_shape;
#define MMT_SYNTH_BASE_SHAPES 5

typedef enum mmt_synth_colour {
    MMT_SYNTH_RED, MMT_SYNTH_GREEN, MMT_SYNTH_BLUE, MMT_SYNTH_YELLOW, MMT_SYNTH_ORANGE,
    MMT_SYNTH_PURPLE, MMT_SYNTH_WHITE, MMT_SYNTH_BLACK,
    /* shift only */
    MMT_SYNTH_PINK, MMT_SYNTH_BROWN, MMT_SYNTH_CYAN,
    MMT_SYNTH_COLOUR_COUNT
} mmt_synth_colour;
#define MMT_SYNTH_BASE_COLOURS 8

typedef enum mmt_synth_kind {
    MMT_SYNTH_SINGLE, MMT_SYNTH_COUNT, MMT_SYNTH_RELATION, MMT_SYNTH_TRIO
} mmt_synth_kind;

/* Relation of object 0 to object 1 in a relation scene. */
typedef enum mmt_synth_relation {
    MMT_SYNTH_LEFT_OF, MMT_SYNTH_RIGHT_OF, MMT_SYNTH_ABOVE, MMT_SYNTH_BELOW
} mmt_synth_relation;

typedef enum mmt_synth_background {
    MMT_SYNTH_PLAIN, MMT_SYNTH_NOISE, MMT_SYNTH_STRIPES, MMT_SYNTH_GRADIENT
} mmt_synth_background;

typedef struct mmt_synth_object {
    mmt_synth_shape shape;
    mmt_synth_colour colour;
    int large;               /* 0 small, 1 large */
    int row, col;            /* grid cell, 0..2 each (row 0 is the top) */
    int jitter_x, jitter_y;  /* offset from the cell centre, in 1/1000 of a cell */
    uint8_t rgb[3];          /* the colour with its per-object jitter */
} mmt_synth_object;

typedef struct mmt_synth_scene {
    mmt_synth_domain domain;
    mmt_synth_kind kind;
    mmt_synth_relation relation;   /* relation scenes */
    int n_objects;
    mmt_synth_object objects[MMT_SYNTH_MAX_OBJECTS];
    mmt_synth_background background;
    uint8_t bg_rgb[2][3];          /* background colours (stripes and gradients use both) */
    int bg_param;                  /* stripe period / direction, gradient direction */
    uint64_t texture_seed;         /* the noise texture's stream */
    uint64_t caption_seed;         /* the caption wording's stream */
} mmt_synth_scene;

const char *mmt_synth_shape_name(mmt_synth_shape shape);
const char *mmt_synth_shape_plural(mmt_synth_shape shape);
const char *mmt_synth_colour_name(mmt_synth_colour colour);
const char *mmt_synth_domain_name(mmt_synth_domain domain);
const char *mmt_synth_split_name(mmt_synth_split split);

/* The scene for image `index` of a split. Pure function of its arguments. */
void mmt_synth_scene_make(uint64_t seed, mmt_synth_domain domain, mmt_synth_split split, int64_t index,
                          mmt_synth_scene *out);
/* Caption number `variant` (0, 1, 2, ...: different wordings of the same scene). Returns the
 * length written (always < cap; captions fit MMT_SYNTH_CAPTION_MAX). */
size_t mmt_synth_caption(const mmt_synth_scene *scene, int variant, char *buf, size_t cap);
/* Renders a size x size RGB image (size 16..1024); *out is allocated. */
mmt_status mmt_synth_render(const mmt_synth_scene *scene, int64_t size, mmt_image *out);

/* The words only shift captions use (lower case, NULL-terminated, static): no base caption
 * contains any of them and every shift caption contains at least one (its shift-only shape
 * or colour names one). */
const char *const *mmt_synth_shift_only_words(void);

/* ---- the dataset on disk ---- */

typedef enum mmt_synth_label_by { MMT_SYNTH_LABEL_SHAPE, MMT_SYNTH_LABEL_COLOUR } mmt_synth_label_by;

typedef struct mmt_synth_params {
    const char *out_dir;        /* created if missing */
    mmt_synth_domain domain;
    uint64_t seed;
    int64_t counts[3];          /* images per split: train, val, test (0 skips a split) */
    int64_t size;               /* image side in pixels */
    int jpeg;                   /* 0 PNG, 1 JPEG (xray: always DICOM) */
    int jpeg_quality;           /* 1..100 */
    int captions_per_image;     /* COCO captions per image, 1..5 (JSONL holds the first) */
    mmt_synth_label_by label_by;
} mmt_synth_params;

void mmt_synth_params_default(mmt_synth_params *p);

/* Writes, for each split with a count above zero:
 *   images/SPLIT/NNNNNN.png|jpg|dcm   (dcm: the xray domain)
 *   SPLIT.jsonl          {"image_path","text","task_type":"contrastive","label"} per image
 *   SPLIT_coco.json      {"info","images":[{id,file_name,width,height}],"annotations":[{id,image_id,caption}]}
 *   SPLIT_labels.jsonl   classification view: images whose objects share one shape (or
 *                        colour, with label_by), "label" = that name, text "a photo of a LABEL."
 * and synth.json (the settings, counts and vocabulary); for xray the label is the finding
 * (normal, nodule, effusion, cardiomegaly) and vocabulary.txt lists the report words, one
 * per line (`caption --allowed-words`). Paths inside are relative to out_dir.
 * Every file is written atomically. */
mmt_status mmt_synth_write(const mmt_synth_params *p);

#endif
