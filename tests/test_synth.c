/*
 * test_synth.c — the synthetic dataset generator (src/data/synth*.c, src/data/image_write.c).
 *   - determinism: the same seed writes byte-identical files, another seed different ones;
 *     golden pixel and caption hashes pin the output across machines and compilers;
 *   - captions name what the scene metadata says was drawn (colours, shapes, counts,
 *     relations), and relations agree with the drawn positions;
 *   - a written PNG decodes (src/data/image.h) to exactly the rendered pixels; a JPEG to
 *     within a mean absolute error of 3 levels;
 *   - the JSONL, labels and COCO files parse and name files that exist;
 *   - shift captions always use a word no base caption uses, and base captions never do;
 *   - bad sizes and unwritable folders fail with one clear message; allocation failures do
 *     not leak (run under ASan).
 */
#include <ctype.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/json.h"
#include "data/image.h"
#include "data/image_write.h"
#include "data/pairs.h"
#include "data/synth.h"

/* FNV-1a of test_golden_hashes' pixels and captions, as first generated on x86-64. */
#define GOLDEN_PIXELS UINT64_C(0x401d1a54d74030f9)
#define GOLDEN_CAPTIONS UINT64_C(0x38a9efc317aea415)

static char tmp[256];

static uint64_t fnv1a(const void *data, size_t n, uint64_t h) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

static mmt_synth_params small_params(const char *sub, uint64_t seed, mmt_synth_domain domain) {
    static char dirs[8][320];
    static int next;
    char *dir = dirs[next++ % 8];
    snprintf(dir, 320, "%s/%s", tmp, sub);
    mmt_synth_params p;
    mmt_synth_params_default(&p);
    p.out_dir = dir;
    p.seed = seed;
    p.domain = domain;
    p.counts[0] = 6, p.counts[1] = 2, p.counts[2] = 2;
    p.size = 32;
    return p;
}

static void test_same_seed_same_bytes(void) {
    mmt_synth_params a = small_params("seed_a", 7, MMT_SYNTH_BASE), b = small_params("seed_b", 7, MMT_SYNTH_BASE);
    mmt_synth_params c = small_params("seed_c", 8, MMT_SYNTH_BASE);
    CHECK_OK(mmt_synth_write(&a));
    CHECK_OK(mmt_synth_write(&b));
    CHECK_OK(mmt_synth_write(&c));
    static const char *files[] = {"train.jsonl", "val.jsonl", "test.jsonl", "train_coco.json", "train_labels.jsonl",
                                  "synth.json", "images/train/000000.png", "images/train/000005.png",
                                  "images/test/000001.png"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) CHECK_MSG(check_same_file(a.out_dir, b.out_dir, files[i]), "%s", files[i]);
    CHECK(!check_same_file(a.out_dir, c.out_dir, "train.jsonl"));
    CHECK(!check_same_file(a.out_dir, c.out_dir, "images/train/000000.png"));
    /* JPEG too. */
    a.jpeg = b.jpeg = 1;
    CHECK_OK(mmt_synth_write(&a));
    CHECK_OK(mmt_synth_write(&b));
    CHECK(check_same_file(a.out_dir, b.out_dir, "images/val/000001.jpg"));
}

/* Pixels and captions are integer-only: these hashes must hold on every machine. If a change
 * to the generator is intended, update them (and say so: datasets made before differ). */
static void test_golden_hashes(void) {
    uint64_t pixels = UINT64_C(0xcbf29ce484222325), captions = UINT64_C(0xcbf29ce484222325);
    for (int d = 0; d < 2; d++)
        for (int64_t i = 0; i < 20; i++) {
            mmt_synth_scene sc;
            mmt_synth_scene_make(42, (mmt_synth_domain)d, MMT_SYNTH_TRAIN, i, &sc);
            mmt_image img = {0};
            CHECK_OK(mmt_synth_render(&sc, 48, &img));
            if (img.pixels) pixels = fnv1a(img.pixels, 48 * 48 * 3, pixels);
            mmt_image_free(&img);
            char text[MMT_SYNTH_CAPTION_MAX];
            size_t n = mmt_synth_caption(&sc, (int)(i % 3), text, sizeof text);
            captions = fnv1a(text, n, captions);
        }
    CHECK_MSG(pixels == GOLDEN_PIXELS, "pixels hash 0x%016llx", (unsigned long long)pixels);
    CHECK_MSG(captions == GOLDEN_CAPTIONS, "captions hash 0x%016llx", (unsigned long long)captions);
}

static int has_word(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = text; (p = strstr(p, word)); p++) {
        int start = p == text || !isalpha((unsigned char)p[-1]);
        int end = !isalpha((unsigned char)p[n]);
        if (start && end) return 1;
    }
    return 0;
}

/* Lower-cased copy of a caption. */
static void lower(const char *in, char *out) {
    while ((*out++ = (char)tolower((unsigned char)*in++))) {}
}

static const char *SYNONYMS[][2] = {{"circle", "disc"}, {"diamond", "rhombus"}, {"cross", "plus sign"}, {"ring", "donut"}};

static int names_shape(const char *text, mmt_synth_shape s, int plural) {
    const char *name = plural ? mmt_synth_shape_plural(s) : mmt_synth_shape_name(s);
    if (has_word(text, name)) return 1;
    for (size_t i = 0; i < sizeof SYNONYMS / sizeof *SYNONYMS; i++)
        if (!strcmp(SYNONYMS[i][0], mmt_synth_shape_name(s))) {
            char syn[64];
            snprintf(syn, sizeof syn, "%s%s", SYNONYMS[i][1], plural ? (s == MMT_SYNTH_DIAMOND ? "es" : "s") : "");
            if (has_word(text, syn)) return 1;
        }
    return 0;
}

static void test_captions_match_scenes(void) {
    static const char *counts[] = {"", "", "two", "three"};
    int kinds[4] = {0};
    for (int d = 0; d < 2; d++)
        for (int64_t i = 0; i < 600; i++) {
            mmt_synth_scene sc;
            mmt_synth_scene_make(3, (mmt_synth_domain)d, (mmt_synth_split)(i % 3), i, &sc);
            kinds[sc.kind]++;
            CHECK(sc.n_objects >= 1 && sc.n_objects <= 3);
            for (int v = 0; v < 3; v++) {
                char raw[MMT_SYNTH_CAPTION_MAX], text[MMT_SYNTH_CAPTION_MAX];
                size_t n = mmt_synth_caption(&sc, v, raw, sizeof raw);
                CHECK(n == strlen(raw) && n > 5);
                lower(raw, text);
                for (int k = 0; k < sc.n_objects; k++) {
                    const mmt_synth_object *o = &sc.objects[k];
                    CHECK_MSG(has_word(text, mmt_synth_colour_name(o->colour)), "'%s' lacks %s", raw,
                              mmt_synth_colour_name(o->colour));
                    CHECK_MSG(names_shape(text, o->shape, sc.kind == MMT_SYNTH_COUNT), "'%s' lacks %s", raw,
                              mmt_synth_shape_name(o->shape));
                }
                if (sc.kind == MMT_SYNTH_COUNT) CHECK_MSG(has_word(text, counts[sc.n_objects]), "'%s'", raw);
                if (sc.kind == MMT_SYNTH_RELATION) {
                    static const char *words[2][4][2] = {
                        {{"left", NULL}, {"right", NULL}, {"above", "over"}, {"below", "under"}},
                        {{"left", NULL}, {"right", NULL}, {"above", "higher"}, {"beneath", "lower"}}};
                    const char *const *w = words[d][sc.relation];
                    CHECK_MSG(has_word(text, w[0]) || (w[1] && has_word(text, w[1])), "'%s' relation %d", raw,
                              sc.relation);
                }
            }
            /* Geometry agrees with the stated relation, and objects never share a cell. */
            const mmt_synth_object *o = sc.objects;
            if (sc.kind == MMT_SYNTH_RELATION) {
                switch (sc.relation) {
                case MMT_SYNTH_LEFT_OF: CHECK(o[0].row == o[1].row && o[0].col < o[1].col); break;
                case MMT_SYNTH_RIGHT_OF: CHECK(o[0].row == o[1].row && o[0].col > o[1].col); break;
                case MMT_SYNTH_ABOVE: CHECK(o[0].col == o[1].col && o[0].row < o[1].row); break;
                case MMT_SYNTH_BELOW: CHECK(o[0].col == o[1].col && o[0].row > o[1].row); break;
                }
            }
            for (int a = 0; a < sc.n_objects; a++)
                for (int b = a + 1; b < sc.n_objects; b++)
                    CHECK(o[a].row != o[b].row || o[a].col != o[b].col);
        }
    for (int k = 0; k < 4; k++) CHECK_MSG(kinds[k] > 60, "kind %d drawn %d times", k, kinds[k]);
}

/* The rendered object is there: the pixel at a large object's centre has its colour. */
static void test_objects_are_drawn(void) {
    int checked = 0;
    for (int64_t i = 0; i < 200; i++) {
        mmt_synth_scene sc;
        mmt_synth_scene_make(11, (mmt_synth_domain)(i % 2), MMT_SYNTH_VAL, i, &sc);
        mmt_image img = {0};
        CHECK_OK(mmt_synth_render(&sc, 96, &img));
        if (!img.pixels) continue;
        for (int k = 0; k < sc.n_objects; k++) {
            const mmt_synth_object *o = &sc.objects[k];
            if (!o->large || o->shape == MMT_SYNTH_RING) continue;
            int64_t x = o->col * 32 + 16 + o->jitter_x * 32 / 1000, y = o->row * 32 + 16 + o->jitter_y * 32 / 1000;
            const uint8_t *p = img.pixels + (y * 96 + x) * 3;
            CHECK_MSG(p[0] == o->rgb[0] && p[1] == o->rgb[1] && p[2] == o->rgb[2], "scene %lld object %d", (long long)i, k);
            checked++;
        }
        mmt_image_free(&img);
    }
    CHECK(checked > 50);
}

static void test_png_round_trip(void) {
    mmt_synth_scene sc;
    mmt_synth_scene_make(5, MMT_SYNTH_SHIFT, MMT_SYNTH_TEST, 9, &sc);
    mmt_image img = {0}, back = {0};
    CHECK_OK(mmt_synth_render(&sc, 40, &img));
    char path[400];
    snprintf(path, sizeof path, "%s/round.png", tmp);
    CHECK_OK(mmt_image_write_png(path, &img));
    CHECK_OK(mmt_image_decode_file(path, &back));
    CHECK(back.width == 40 && back.height == 40);
    CHECK(back.pixels && memcmp(back.pixels, img.pixels, 40 * 40 * 3) == 0);
    mmt_image_free(&back);

    snprintf(path, sizeof path, "%s/round.jpg", tmp);
    CHECK_OK(mmt_image_write_jpeg(path, &img, 95));
    CHECK_OK(mmt_image_decode_file(path, &back));
    CHECK(back.width == 40 && back.height == 40);
    double err = 0;
    for (int i = 0; back.pixels && i < 40 * 40 * 3; i++) err += abs((int)back.pixels[i] - (int)img.pixels[i]);
    CHECK_MSG(back.pixels && err / (40 * 40 * 3) < 3.0, "JPEG mean abs error %.2f", err / (40 * 40 * 3));
    mmt_image_free(&back);
    CHECK_FAILS(mmt_image_write_jpeg(path, &img, 0), MMT_STATUS_INVALID_ARGUMENT, "quality 0");
    mmt_image_free(&img);
}

static void test_files_parse_and_exist(void) {
    mmt_synth_params p = small_params("files", 1, MMT_SYNTH_SHIFT);
    p.counts[0] = 30;
    p.captions_per_image = 2;
    CHECK_OK(mmt_synth_write(&p));
    char path[512];
    snprintf(path, sizeof path, "%s/train.jsonl", p.out_dir);
    mmt_pairs *pairs = NULL;
    CHECK_OK(mmt_pairs_load_jsonl(path, 0, &pairs));
    CHECK(pairs && pairs->n == 30);
    for (int64_t i = 0; pairs && i < pairs->n; i++) {
        struct stat st;
        CHECK_MSG(stat(pairs->items[i].image_path, &st) == 0, "%s", pairs->items[i].image_path);
        CHECK(pairs->items[i].text[0]);
    }
    mmt_pairs_free(pairs);

    snprintf(path, sizeof path, "%s/train_labels.jsonl", p.out_dir);
    pairs = NULL;
    CHECK_OK(mmt_pairs_load_jsonl(path, 0, &pairs));
    CHECK(pairs && pairs->n > 5 && pairs->n < 30);
    for (int64_t i = 0; pairs && i < pairs->n; i++) {
        CHECK(pairs->items[i].label && strstr(pairs->items[i].text, pairs->items[i].label));
        struct stat st;
        CHECK(stat(pairs->items[i].image_path, &st) == 0);
    }
    mmt_pairs_free(pairs);

    snprintf(path, sizeof path, "%s/train_coco.json", p.out_dir);
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(path, &doc));
    const mmt_json *root = doc ? mmt_json_root(doc) : NULL;
    const mmt_json *images = mmt_json_get(root, "images"), *ann = mmt_json_get(root, "annotations");
    CHECK(images && images->type == MMT_JSON_ARRAY && images->len == 30);
    CHECK(ann && ann->type == MMT_JSON_ARRAY && ann->len == 60);
    for (size_t i = 0; images && i < images->len; i++) {
        const mmt_json *name = mmt_json_get(&images->items[i], "file_name"), *id = mmt_json_get(&images->items[i], "id");
        CHECK(id && id->is_integer && id->integer == (int64_t)i);
        char file[600];
        snprintf(file, sizeof file, "%s/%s", p.out_dir, name ? name->string : "");
        struct stat st;
        CHECK_MSG(name && stat(file, &st) == 0, "%s", file);
    }
    for (size_t i = 0; ann && i < ann->len; i++) {
        const mmt_json *img = mmt_json_get(&ann->items[i], "image_id"), *cap = mmt_json_get(&ann->items[i], "caption");
        CHECK(img && img->is_integer && img->integer >= 0 && img->integer < 30);
        CHECK(cap && cap->type == MMT_JSON_STRING && cap->len > 5);
    }
    mmt_json_free(doc);
    snprintf(path, sizeof path, "%s/synth.json", p.out_dir);
    doc = NULL;
    CHECK_OK(mmt_json_parse_file(path, &doc));
    mmt_json_free(doc);
}

static void test_shift_vocabulary(void) {
    const char *const *shift_words = mmt_synth_shift_only_words();
    for (int d = 0; d < 2; d++)
        for (int64_t i = 0; i < 1500; i++) {
            mmt_synth_scene sc;
            mmt_synth_scene_make(99, (mmt_synth_domain)d, MMT_SYNTH_TRAIN, i, &sc);
            char raw[MMT_SYNTH_CAPTION_MAX], text[MMT_SYNTH_CAPTION_MAX];
            mmt_synth_caption(&sc, (int)(i % 4), raw, sizeof raw);
            lower(raw, text);
            int found = 0;
            for (int w = 0; shift_words[w]; w++) found += has_word(text, shift_words[w]);
            if (d == MMT_SYNTH_BASE) CHECK_MSG(found == 0, "base caption '%s' uses a shift word", raw);
            else CHECK_MSG(found > 0, "shift caption '%s' uses no shift word", raw);
            for (int k = 0; k < sc.n_objects; k++) {
                int novel = sc.objects[k].shape >= MMT_SYNTH_BASE_SHAPES || sc.objects[k].colour >= MMT_SYNTH_BASE_COLOURS;
                CHECK(d == MMT_SYNTH_SHIFT ? novel : !novel);
            }
        }
}

static void test_errors(void) {
    mmt_synth_scene sc;
    mmt_synth_scene_make(1, MMT_SYNTH_BASE, MMT_SYNTH_TRAIN, 0, &sc);
    mmt_image img = {0};
    CHECK_FAILS(mmt_synth_render(&sc, 8, &img), MMT_STATUS_INVALID_ARGUMENT, "size 8");
    CHECK(img.pixels == NULL);

    /* An output folder below a regular file. */
    char file[400], below[450];
    snprintf(file, sizeof file, "%s/plain_file", tmp);
    FILE *f = fopen(file, "w");
    if (f) fclose(f);
    snprintf(below, sizeof below, "%s/out", file);
    mmt_synth_params p = small_params("unused", 1, MMT_SYNTH_BASE);
    p.out_dir = below;
    mmt_status s = mmt_synth_write(&p);
    CHECK(s != MMT_OK && strstr(mmt_last_error(), "plain_file") && !strchr(mmt_last_error(), '\n'));
    p = small_params("bad", 1, MMT_SYNTH_BASE);
    p.captions_per_image = 9;
    CHECK_FAILS(mmt_synth_write(&p), MMT_STATUS_INVALID_ARGUMENT, "captions per image 9");

    /* Allocation failures anywhere in a small write return an error and leak nothing (ASan). */
    p = small_params("oom", 2, MMT_SYNTH_SHIFT);
    p.counts[0] = 2, p.counts[1] = 1, p.counts[2] = 0;
    int failures = 0;
    for (long n = 1; n < 400; n++) {
        mmt_alloc_fail_after(n);
        s = mmt_synth_write(&p);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) break;
        failures++;
        CHECK_MSG(s == MMT_STATUS_OUT_OF_MEMORY, "allocation %ld: %s", n, mmt_last_error());
    }
    CHECK(failures > 5);
    mmt_alloc_fail_after(1);
    uint8_t *data = NULL;
    size_t len = 0;
    mmt_image_alloc(16, 16, &img);
    mmt_alloc_fail_after(0);
    CHECK_OK(mmt_image_alloc(16, 16, &img));
    memset(img.pixels, 7, 16 * 16 * 3);
    for (long n = 1; n < 10; n++) {
        mmt_alloc_fail_after(n);
        mmt_status ps = mmt_image_encode_png(&img, &data, &len);
        mmt_alloc_fail_after(0);
        if (ps == MMT_OK) mmt_free(data);
        else CHECK(data == NULL);
    }
    mmt_image_free(&img);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_test_synth_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    RUN(test_same_seed_same_bytes);
    RUN(test_golden_hashes);
    RUN(test_captions_match_scenes);
    RUN(test_objects_are_drawn);
    RUN(test_png_round_trip);
    RUN(test_files_parse_and_exist);
    RUN(test_shift_vocabulary);
    RUN(test_errors);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
