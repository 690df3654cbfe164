/* encoder.c — base model or model + adapter, behind one embedding call (see encoder.h). */
#include "cli/encoder.h"

#include "cli/cli.h"

#include <string.h>

#include "core/alloc.h"
#include "core/safetensors.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "peft/prompt.h"
#include "train/clip_task.h"

/* Inputs per forward through the view: bounds the activation arena, as the base model does. */
#define ENCODER_CHUNK 32

mmt_status cli_encoder_open(const char *model_dir, const char *adapter_dir, cli_encoder *e) {
    memset(e, 0, sizeof *e);
    mmt_status s = cli_clip_load_inference(model_dir, &e->model);
    if (s == MMT_OK && adapter_dir) {
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        s = mmt_clip_train_create(e->model, &o, &e->view);
        if (s == MMT_OK) s = mmt_adapter_folders_load(mmt_clip_train_iface(e->view), adapter_dir, 0, &e->adapter, &e->prompt);
    }
    if (s != MMT_OK) cli_encoder_close(e);
    return s;
}

void cli_encoder_close(cli_encoder *e) {
    mmt_prompt_free(e->prompt);   /* both detach from the view first */
    mmt_adapter_free(e->adapter);
    mmt_clip_train_free(e->view);
    mmt_clip_free(e->model);
    memset(e, 0, sizeof *e);
}

int64_t cli_encoder_dim(const cli_encoder *e) { return mmt_clip_embed_dim(e->model); }

mmt_status cli_finite_embeddings(const float *out, int64_t n, int64_t dim, const char *what) {
    int64_t bad = mmt_f32_first_nonfinite(out, n * dim);
    if (bad < 0) return MMT_OK;
    return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the embedding of %s %lld is not finite (NaN or infinity): the model or "
                    "the adapter overflows (e.g. a huge lora_alpha)", what, (long long)(bad / dim) + 1);
}

static mmt_status images_raw(cli_encoder *e, const char *const *paths, int64_t n, float *out);

mmt_status cli_encoder_images(cli_encoder *e, const char *const *paths, int64_t n, float *out) {
    MMT_TRY(images_raw(e, paths, n, out));
    return cli_finite_embeddings(out, n, cli_encoder_dim(e), "image");
}

static mmt_status images_raw(cli_encoder *e, const char *const *paths, int64_t n, float *out) {
    if (!e->view) return mmt_clip_embed_image_files(e->model, paths, n, out);
    const mmt_clip_config *c = mmt_clip_config_of(e->model);
    if (!c->has_vision)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no vision tower", mmt_clip_weights(e->model)->dir);
    int64_t S = c->vision.image_size, P = c->projection_dim;
    size_t per = (size_t)(3 * S * S);
    float *pixels = mmt_malloc(ENCODER_CHUNK * per * sizeof(float));
    if (!pixels) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    for (int64_t at = 0; at < n && s == MMT_OK; at += ENCODER_CHUNK) {
        int64_t b = n - at < ENCODER_CHUNK ? n - at : ENCODER_CHUNK;
        for (int64_t i = 0; i < b && s == MMT_OK; i++) {
            s = mmt_clip_image_file_pixels(e->model, paths[at + i], pixels + (size_t)i * per);
        }
        if (s == MMT_OK) s = mmt_clip_train_encode_pixels(e->view, pixels, b, out + at * P);
    }
    mmt_free(pixels);
    return s;
}

static mmt_status texts_raw(cli_encoder *e, const char *const *texts, int64_t n, int truncate, float *out);

mmt_status cli_encoder_texts(cli_encoder *e, const char *const *texts, int64_t n, int truncate,
                             float *out) {
    MMT_TRY(texts_raw(e, texts, n, truncate, out));
    return cli_finite_embeddings(out, n, cli_encoder_dim(e), "text");
}

static mmt_status texts_raw(cli_encoder *e, const char *const *texts, int64_t n, int truncate, float *out) {
    if (!e->view) return mmt_clip_embed_texts_ex(e->model, texts, n, truncate, out);
    const mmt_clip_config *c = mmt_clip_config_of(e->model);
    int64_t L = c->text.max_positions, P = c->projection_dim;
    int32_t *ids = mmt_malloc((size_t)(ENCODER_CHUNK * L) * sizeof(int32_t));
    if (!ids) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    for (int64_t at = 0; at < n && s == MMT_OK; at += ENCODER_CHUNK) {
        int64_t b = n - at < ENCODER_CHUNK ? n - at : ENCODER_CHUNK;
        s = mmt_clip_tokenize(e->model, texts + at, b, truncate, ids);
        if (s != MMT_OK && at > 0) s = mmt_error_prefix(s, "(batch from text %lld) ", (long long)at + 1);
        if (s == MMT_OK) s = mmt_clip_train_encode_ids(e->view, ids, b, L, out + at * P);
    }
    mmt_free(ids);
    return s;
}
