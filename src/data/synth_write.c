/*
 * synth_write.c — a synthetic dataset on disk: images, JSONL pairs, COCO captions, a
 * classification view and synth.json (what was generated and how), for `mmtune synth`.
 *
 * Images are written one by one (each atomically) and the index files last, so an index
 * never names an image that is not there yet.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "data/image_write.h"
#include "data/synth.h"
#include "data/synth_xray.h"

void mmt_synth_params_default(mmt_synth_params *p) {
    memset(p, 0, sizeof *p);
    p->domain = MMT_SYNTH_BASE;
    p->counts[MMT_SYNTH_TRAIN] = 800;
    p->counts[MMT_SYNTH_VAL] = 100;
    p->counts[MMT_SYNTH_TEST] = 100;
    p->size = 64;
    p->jpeg_quality = 95;
    p->captions_per_image = 3;
    p->label_by = MMT_SYNTH_LABEL_SHAPE;
}

/* The classification label of a scene: the shape (or colour) all its objects share, or NULL. */
static const char *scene_label(const mmt_synth_scene *sc, mmt_synth_label_by by) {
    for (int i = 1; i < sc->n_objects; i++)
        if (by == MMT_SYNTH_LABEL_SHAPE ? sc->objects[i].shape != sc->objects[0].shape
                                        : sc->objects[i].colour != sc->objects[0].colour)
            return NULL;
    return by == MMT_SYNTH_LABEL_SHAPE ? mmt_synth_shape_name(sc->objects[0].shape)
                                       : mmt_synth_colour_name(sc->objects[0].colour);
}

static mmt_status write_buffer(const char *dir, const char *name, mmt_strbuf *b) {
    if (b->failed) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "synth: out of memory building %s", name);
    char *path = mmt_path_join(dir, name);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = mmt_file_write_atomic(path, b->data ? b->data : "", b->len);
    mmt_free(path);
    return s;
}

/* One item of a split: its image file (written to `path`), caption wordings and label. The
 * shape scenes and the chest radiographs answer the same questions. */
typedef struct synth_item {
    const mmt_synth_params *p;
    int xray;
    mmt_synth_scene scene;
    mmt_xray_study study;
} synth_item;

static void item_make(synth_item *it, const mmt_synth_params *p, mmt_synth_split split, int64_t i) {
    it->p = p;
    it->xray = p->domain == MMT_SYNTH_XRAY;
    if (it->xray) mmt_xray_study_make(p->seed, split, i, &it->study);
    else mmt_synth_scene_make(p->seed, p->domain, split, i, &it->scene);
}

static void item_caption(const synth_item *it, int variant, char *text, size_t cap) {
    if (it->xray) mmt_xray_report(&it->study, variant, text, cap);
    else mmt_synth_caption(&it->scene, variant, text, cap);
}

static const char *item_label(const synth_item *it) {
    return it->xray ? mmt_xray_finding_name(it->study.finding) : scene_label(&it->scene, it->p->label_by);
}

/* Scratch for the radiographs' pixels, reused across items. */
typedef struct xray_buffers {
    uint16_t *values, *stored;
} xray_buffers;

static mmt_status item_write_image(const synth_item *it, const char *path, const char *patient_id, xray_buffers *xb) {
    const mmt_synth_params *p = it->p;
    if (it->xray) {
        size_t n = (size_t)(p->size * p->size);
        if (!xb->values && (!(xb->values = mmt_malloc(n * sizeof *xb->values)) ||
                            !(xb->stored = mmt_malloc(n * sizeof *xb->stored))))
            return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "synth: out of memory for a %lld-pixel radiograph", (long long)n);
        mmt_dicom_write_spec w;
        mmt_xray_render(&it->study, p->size, xb->values);
        mmt_xray_dicom_spec(&it->study, p->size, xb->values, xb->stored, patient_id, &w);
        return mmt_dicom_write_file(path, &w);
    }
    mmt_image img = {0};
    MMT_TRY(mmt_synth_render(&it->scene, p->size, &img));
    mmt_status s = p->jpeg ? mmt_image_write_jpeg(path, &img, p->jpeg_quality) : mmt_image_write_png(path, &img);
    mmt_image_free(&img);
    return s;
}

static mmt_status write_split(const mmt_synth_params *p, mmt_synth_split split) {
    const char *name = mmt_synth_split_name(split);
    const char *ext = p->domain == MMT_SYNTH_XRAY ? "dcm" : p->jpeg ? "jpg" : "png";
    mmt_strbuf jsonl = {0}, coco = {0}, labels = {0};
    xray_buffers xb = {0};
    char rel[128], file[160], text[MMT_SYNTH_CAPTION_MAX], patient[64];
    char *folder = NULL, *path = NULL;
    mmt_status s = MMT_OK;
    synth_item it;

    snprintf(rel, sizeof rel, "images/%s", name);
    if (!(folder = mmt_path_join(p->out_dir, rel))) return MMT_STATUS_OUT_OF_MEMORY;
    if ((s = mmt_mkdirs(folder)) != MMT_OK) goto done;
    mmt_strbuf_printf(&coco, "{\"info\": {\"description\": \"mmtune synth, domain %s, split %s, seed %llu\"},\n"
                             " \"images\": [",
                      mmt_synth_domain_name(p->domain), name, (unsigned long long)p->seed);
    for (int64_t i = 0; i < p->counts[split]; i++) {
        item_make(&it, p, split, i);
        snprintf(file, sizeof file, "%s/%06lld.%s", rel, (long long)i, ext);
        snprintf(patient, sizeof patient, "SYNTH%s%06lld", name, (long long)i);
        mmt_free(path);
        if (!(path = mmt_path_join(p->out_dir, file))) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            goto done;
        }
        if ((s = item_write_image(&it, path, patient, &xb)) != MMT_OK) goto done;

        item_caption(&it, 0, text, sizeof text);
        mmt_strbuf_printf(&jsonl, "{\"image_path\": \"%s\", \"text\": ", file);
        mmt_strbuf_json_string(&jsonl, text, strlen(text));
        const char *label = item_label(&it);
        mmt_strbuf_printf(&jsonl, ", \"task_type\": \"contrastive\"");
        if (label) mmt_strbuf_printf(&jsonl, ", \"label\": \"%s\"", label);
        mmt_strbuf_printf(&jsonl, "}\n");
        if (label && it.xray)
            mmt_strbuf_printf(&labels, "{\"image_path\": \"%s\", \"text\": \"a chest radiograph: %s.\", "
                                       "\"task_type\": \"classification\", \"label\": \"%s\"}\n",
                              file, label, label);
        else if (label)
            mmt_strbuf_printf(&labels, "{\"image_path\": \"%s\", \"text\": \"a photo of a%s %s.\", "
                                       "\"task_type\": \"classification\", \"label\": \"%s\"}\n",
                              file, strchr("aeiou", label[0]) ? "n" : "", label, label);
        mmt_strbuf_printf(&coco, "%s\n  {\"id\": %lld, \"file_name\": \"%s\", \"width\": %lld, \"height\": %lld}",
                          i ? "," : "", (long long)i, file, (long long)p->size, (long long)p->size);
    }
    mmt_strbuf_printf(&coco, "],\n \"annotations\": [");
    for (int64_t i = 0; i < p->counts[split]; i++) {
        item_make(&it, p, split, i);
        for (int v = 0; v < p->captions_per_image; v++) {
            item_caption(&it, v, text, sizeof text);
            mmt_strbuf_printf(&coco, "%s\n  {\"id\": %lld, \"image_id\": %lld, \"caption\": ", i || v ? "," : "",
                              (long long)(i * p->captions_per_image + v), (long long)i);
            mmt_strbuf_json_string(&coco, text, strlen(text));
            mmt_strbuf_printf(&coco, "}");
        }
    }
    mmt_strbuf_printf(&coco, "]}\n");

    snprintf(file, sizeof file, "%s.jsonl", name);
    if ((s = write_buffer(p->out_dir, file, &jsonl)) != MMT_OK) goto done;
    snprintf(file, sizeof file, "%s_coco.json", name);
    if ((s = write_buffer(p->out_dir, file, &coco)) != MMT_OK) goto done;
    snprintf(file, sizeof file, "%s_labels.jsonl", name);
    s = write_buffer(p->out_dir, file, &labels);
done:
    mmt_free(xb.values);
    mmt_free(xb.stored);
    mmt_free(folder);
    mmt_free(path);
    mmt_strbuf_free(&jsonl);
    mmt_strbuf_free(&coco);
    mmt_strbuf_free(&labels);
    return s;
}

static mmt_status write_manifest(const mmt_synth_params *p) {
    mmt_strbuf b = {0};
    int xray = p->domain == MMT_SYNTH_XRAY;
    mmt_strbuf_printf(&b,
                      "{\"generator\": \"mmtune synth\", \"domain\": \"%s\", \"seed\": %llu, \"size\": %lld,\n"
                      " \"format\": \"%s\", \"captions_per_image\": %d, \"label_by\": \"%s\",\n"
                      " \"counts\": {\"train\": %lld, \"val\": %lld, \"test\": %lld},\n",
                      mmt_synth_domain_name(p->domain), (unsigned long long)p->seed, (long long)p->size,
                      xray ? "dcm" : p->jpeg ? "jpg" : "png", p->captions_per_image,
                      xray ? "finding" : p->label_by == MMT_SYNTH_LABEL_SHAPE ? "shape" : "colour",
                      (long long)p->counts[0], (long long)p->counts[1], (long long)p->counts[2]);
    if (xray) {
        mmt_strbuf b_words = {0};
        mmt_strbuf_printf(&b, " \"findings\": [");
        for (int i = 0; i < MMT_XRAY_FINDING_COUNT; i++)
            mmt_strbuf_printf(&b, "%s\"%s\"", i ? ", " : "", mmt_xray_finding_name((mmt_xray_finding)i));
        mmt_strbuf_printf(&b, "],\n \"vocabulary\": [");
        const char *const *w = mmt_xray_vocabulary();
        for (int i = 0; w[i]; i++) {
            mmt_strbuf_printf(&b, "%s\"%s\"", i ? ", " : "", w[i]);
            mmt_strbuf_printf(&b_words, "%s\n", w[i]);
        }
        mmt_strbuf_printf(&b, "]}\n");
        mmt_status s = write_buffer(p->out_dir, "vocabulary.txt", &b_words);
        mmt_strbuf_free(&b_words);
        if (s == MMT_OK) s = write_buffer(p->out_dir, "synth.json", &b);
        mmt_strbuf_free(&b);
        return s;
    }
    mmt_strbuf_printf(&b, " \"shapes\": [");
    int shapes = p->domain == MMT_SYNTH_SHIFT ? MMT_SYNTH_SHAPE_COUNT : MMT_SYNTH_BASE_SHAPES;
    int colours = p->domain == MMT_SYNTH_SHIFT ? MMT_SYNTH_COLOUR_COUNT : MMT_SYNTH_BASE_COLOURS;
    for (int i = 0; i < shapes; i++) mmt_strbuf_printf(&b, "%s\"%s\"", i ? ", " : "", mmt_synth_shape_name(i));
    mmt_strbuf_printf(&b, "],\n \"colours\": [");
    for (int i = 0; i < colours; i++) mmt_strbuf_printf(&b, "%s\"%s\"", i ? ", " : "", mmt_synth_colour_name(i));
    mmt_strbuf_printf(&b, "],\n \"shift_only_words\": [");
    const char *const *w = mmt_synth_shift_only_words();
    for (int i = 0; w[i]; i++) mmt_strbuf_printf(&b, "%s\"%s\"", i ? ", " : "", w[i]);
    mmt_strbuf_printf(&b, "]}\n");
    mmt_status s = write_buffer(p->out_dir, "synth.json", &b);
    mmt_strbuf_free(&b);
    return s;
}

mmt_status mmt_synth_write(const mmt_synth_params *p) {
    if (!p->out_dir || !p->out_dir[0]) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "synth: no output folder");
    if ((unsigned)p->domain > MMT_SYNTH_XRAY)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "synth: unknown domain %d", (int)p->domain);
    if (p->size < 16 || p->size > 1024)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "synth: image size %lld is outside 16..1024", (long long)p->size);
    if (p->jpeg && (p->jpeg_quality < 1 || p->jpeg_quality > 100))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "synth: JPEG quality %d is outside 1..100", p->jpeg_quality);
    if (p->captions_per_image < 1 || p->captions_per_image > 5)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "synth: captions per image %d is outside 1..5",
                        p->captions_per_image);
    for (int s = 0; s < 3; s++)
        if (p->counts[s] < 0 || p->counts[s] > 10000000)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "synth: %s count %lld is outside 0..10000000",
                            mmt_synth_split_name(s), (long long)p->counts[s]);
    MMT_TRY(mmt_mkdirs(p->out_dir));
    for (int s = 0; s < 3; s++)
        if (p->counts[s] > 0) MMT_TRY(write_split(p, (mmt_synth_split)s));
    return write_manifest(p);
}
