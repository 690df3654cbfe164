/* zero_shot.c — eval --zero-shot (see zero_shot.h). */
#include "cli/zero_shot.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "eval/zeroshot.h"

#define PROMPT_CHUNK 32

/* Normalised embeddings of n texts through the view, out (n, P). */
static mmt_status embed_texts(mmt_clip *model, mmt_clip_train *view, char *const *texts, int64_t n, float *out) {
    const mmt_clip_config *c = mmt_clip_config_of(model);
    int64_t L = c->text.max_positions, P = c->projection_dim;
    int32_t *ids = mmt_malloc((size_t)(PROMPT_CHUNK * L) * sizeof(int32_t));
    if (!ids) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory");
    mmt_status s = MMT_OK;
    for (int64_t at = 0; at < n && s == MMT_OK; at += PROMPT_CHUNK) {
        int64_t b = n - at < PROMPT_CHUNK ? n - at : PROMPT_CHUNK;
        s = mmt_clip_tokenize(model, (const char *const *)texts + at, b, 1, ids);
        if (s == MMT_OK) s = mmt_clip_train_encode_ids(view, ids, b, L, out + at * P);
    }
    mmt_free(ids);
    return s;
}

mmt_status cli_zero_shot(mmt_clip *model, mmt_clip_train *view, const mmt_pairs *pairs, const float *img,
                         const char *templates_path, const char *classes_csv, mmt_strbuf *json) {
    mmt_zeroshot_templates t = {0};
    mmt_zeroshot_classes cl = {0};
    mmt_zeroshot_metrics m = {0};
    char **prompts = NULL;
    float *prompt_emb = NULL, *class_emb = NULL;
    int64_t P = mmt_clip_config_of(model)->projection_dim, n_prompts = 0;
    mmt_status s = templates_path ? mmt_zeroshot_templates_load(templates_path, &t) : mmt_zeroshot_templates_default(&t);
    if (s == MMT_OK) s = mmt_zeroshot_classes_from_pairs(pairs, classes_csv, &cl);
    if (s == MMT_OK) {
        n_prompts = cl.k * t.n;
        prompts = mmt_calloc((size_t)n_prompts, sizeof *prompts);
        prompt_emb = mmt_malloc((size_t)(n_prompts * P) * sizeof(float));
        class_emb = mmt_malloc((size_t)(cl.k * P) * sizeof(float));
        if (!prompts || !prompt_emb || !class_emb) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory");
    }
    /* class-major: prompt (c, j) is template j filled with class c's name */
    for (int64_t c = 0; c < cl.k && s == MMT_OK; c++)
        for (int64_t j = 0; j < t.n && s == MMT_OK; j++)
            if (!(prompts[c * t.n + j] = mmt_zeroshot_prompt(t.items[j], cl.names[c])))
                s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory");
    if (s == MMT_OK) s = embed_texts(model, view, prompts, n_prompts, prompt_emb);
    if (s == MMT_OK) s = mmt_zeroshot_class_embeddings(prompt_emb, cl.k, t.n, P, class_emb);
    if (s == MMT_OK) s = mmt_zeroshot_evaluate(img, cl.labels, cl.n, class_emb, cl.k, P, &m);
    if (s == MMT_OK) {
        mmt_strbuf_printf(json, ", \"zero_shot_accuracy\": %.6f, \"zero_shot_classes\": %lld, \"zero_shot_templates\": %lld, "
                                "\"zero_shot_per_class\": {", m.accuracy, (long long)cl.k, (long long)t.n);
        for (int64_t c = 0; c < cl.k; c++) {
            if (c) mmt_strbuf_append(json, ", ", 2);
            mmt_strbuf_json_string(json, cl.names[c], strlen(cl.names[c]));
            if (isnan(m.class_accuracy[c])) mmt_strbuf_printf(json, ": null");
            else mmt_strbuf_printf(json, ": %.6f", m.class_accuracy[c]);
        }
        mmt_strbuf_append(json, "}", 1);
        if (json->failed) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory");
    }
    for (int64_t i = 0; prompts && i < n_prompts; i++) mmt_free(prompts[i]);
    mmt_free(prompts);
    mmt_free(prompt_emb);
    mmt_free(class_emb);
    mmt_zeroshot_metrics_free(&m);
    mmt_zeroshot_classes_free(&cl);
    mmt_zeroshot_templates_free(&t);
    return s;
}
