/*
 * test_default_model.c — the embedded default model, models/mmtune-clip-tiny (`make
 * pretrain`, docs/default_model.md), is what it says it is.
 *
 * Reference: tests/fixtures/default_model/expected.json from
 * tools/fixtures/make_default_model_fixtures.py — transformers' CLIPModel.from_pretrained on
 * the committed folder (no missing or unexpected keys), its CLIPTokenizer ids, and its
 * normalised image and text embeddings of a few inputs. Tolerance: ids exact, embeddings
 * 1e-4 absolute (float32 on both sides, different summation order), logit scale 1e-5
 * relative. Also: the folder is at most 10 MB (the budget) and holds the files a
 * Hugging Face CLIP snapshot needs.
 */
#include <math.h>
#include <sys/stat.h>

#include "check.h"
#include "core/alloc.h"
#include "core/json.h"
#include "models/clip.h"
#include "mmtune.h"

#define MODEL MMT_SOURCE_DIR "/models/mmtune-clip-tiny"

static void test_files_and_size(void) {
    static const char *files[] = {"config.json", "model.safetensors", "vocab.json", "merges.txt",
                                  "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"};
    long long total = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[600];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", MODEL, files[i]);
        CHECK_MSG(stat(path, &st) == 0, "missing %s", path);
        total += stat(path, &st) == 0 ? (long long)st.st_size : 0;
    }
    CHECK_MSG(total <= 10 * 1000 * 1000, "snapshot is %lld bytes, over 10 MB", total);
}

static void test_matches_transformers(void) {
    mmt_json_doc *doc = NULL;
    mmt_clip *m = NULL;
    CHECK_OK(mmt_json_parse_file(fixture("default_model/expected.json"), &doc));
    CHECK_OK(mmt_clip_load(MODEL, &m));
    if (!doc || !m) goto done;
    const mmt_json *root = mmt_json_root(doc);
    const mmt_json *images = mmt_json_get(root, "images"), *texts = mmt_json_get(root, "texts");
    const mmt_json *want_img = mmt_json_get(root, "image_embeds"), *want_txt = mmt_json_get(root, "text_embeds");
    const mmt_json *want_ids = mmt_json_get(root, "input_ids");
    const mmt_clip_config *cfg = mmt_clip_config_of(m);
    int64_t P = mmt_clip_embed_dim(m), S = cfg->vision.image_size, L = cfg->text.max_positions;
    double want_scale = mmt_json_get(root, "logit_scale")->number;
    CHECK_MSG(fabs(mmt_clip_logit_scale(m) / want_scale - 1) < 1e-5, "logit scale %g, transformers %g",
              mmt_clip_logit_scale(m), want_scale);

    float *pix = mmt_malloc((size_t)(3 * S * S) * sizeof(float)), emb[1024];
    CHECK(P <= 1024);
    for (size_t i = 0; i < images->len && P <= 1024; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", MMT_FIXTURE_DIR, images->items[i].string);
        CHECK_OK(mmt_clip_image_file_pixels(m, path, pix));
        CHECK_OK(mmt_clip_encode_pixels(m, pix, 1, emb));
        double worst = 0;
        for (int64_t k = 0; k < P; k++) worst = fmax(worst, fabs(emb[k] - want_img->items[i].items[k].number));
        CHECK_MSG(worst < 1e-4, "image %s: differs from transformers by %g", path, worst);
    }
    mmt_free(pix);
    int32_t *ids = mmt_malloc((size_t)L * sizeof(int32_t));
    for (size_t i = 0; i < texts->len && ids; i++) {
        const char *t = texts->items[i].string;
        CHECK_OK(mmt_clip_tokenize(m, &t, 1, 0, ids));
        int same = (int64_t)want_ids->items[i].len == L;
        for (int64_t k = 0; same && k < L; k++) same = ids[k] == want_ids->items[i].items[k].integer;
        CHECK_MSG(same, "ids of \"%s\" differ from CLIPTokenizer's", t);
        CHECK_OK(mmt_clip_encode_ids(m, ids, 1, L, emb));
        double worst = 0;
        for (int64_t k = 0; k < P; k++) worst = fmax(worst, fabs(emb[k] - want_txt->items[i].items[k].number));
        CHECK_MSG(worst < 1e-4, "text \"%s\": differs from transformers by %g", t, worst);
    }
    mmt_free(ids);
done:
    mmt_clip_free(m);
    mmt_json_free(doc);
}

int main(void) {
    RUN(test_files_and_size);
    RUN(test_matches_transformers);
    return check_summary();
}
