/*
 * test_adapter_memory.c — 100 LoRA adapters over one ViT-B/32-sized base cost the base once
 * plus about the adapters' own bytes (issue 10).
 *
 * The base is a random CLIP with openai/clip-vit-base-patch32's configuration (151 M
 * parameters, built in memory); four LoRA adapters (r 8 on q_proj and v_proj of both towers,
 * 491,520 floats = 1.97 MB each) are written to folders and opened 100 times in turn through
 * mmtune.h. The allocator's byte counter (mmt_alloc_current_bytes) must grow by at most 1.10
 * times the adapters' tensor bytes: what an open adapter keeps beyond its tensors (its
 * config, the table of its modules, an unused view of the base) is small, and the base is
 * never copied. A run context embedding with all 100 in one call must then add nothing per
 * adapter but its small link table (under 8 KB each).
 */
#include <stdlib.h>
#include <string.h>

#include "adapter_fixture.h"
#include "check.h"
#include "mmtune.h"
#include "models/clip.h"

#define N_OPEN 100

static void test_hundred_adapters(void) {
    mmt_clip_config cfg;
    mmt_clip_config_default(&cfg);
    mmt_clip *base = NULL;
    CHECK_OK(mmt_clip_create_random(&cfg, 1, &base));
    if (!base) return;
    char root[] = "/tmp/mmt_adapter_memory_XXXXXX", dirs[4][300];
    CHECK(mkdtemp(root) != NULL);
    const char *qv[] = {"q_proj", "v_proj"};
    for (int k = 0; k < 4; k++) {
        mmt_peft_config pc;
        snprintf(dirs[k], sizeof dirs[k], "%s/a%d", root, k);
        CHECK_OK(mmt_peft_config_default(&pc, MMT_PEFT_LORA));
        pc.r = 8;
        CHECK_OK(mmt_peft_names_set_list(&pc.target_modules, qv, 2));
        adapter_fixture_save(base, &pc, dirs[k], 0.01f * (float)(k + 1));
        mmt_peft_config_free(&pc);
    }
    int64_t floats = 0; /* r (in + out) per adapted linear */
    floats += cfg.text.num_layers * 2 * 8 * (2 * cfg.text.hidden_size);
    floats += cfg.vision.num_layers * 2 * 8 * (2 * cfg.vision.hidden_size);
    double adapter_bytes = (double)floats * 4.0;
    size_t before = mmt_alloc_current_bytes();
    mmt_clip_adapter **opened = calloc(N_OPEN, sizeof *opened);
    for (int i = 0; i < N_OPEN; i++) CHECK_OK(mmt_clip_adapter_open(base, dirs[i % 4], &opened[i]));
    size_t after = mmt_alloc_current_bytes();
    double per = (double)(after - before) / N_OPEN;
    printf("     base %.1f MB; %d adapters: %.3f MB each for %.3f MB of tensors (%.3fx)\n", (double)before / 1e6, N_OPEN,
           per / 1e6, adapter_bytes / 1e6, per / adapter_bytes);
    CHECK_MSG(per <= 1.10 * adapter_bytes, "an open adapter costs %.0f bytes for %.0f bytes of tensors", per, adapter_bytes);
    /* one call with every adapter: the run reads the tensors in place. First a call with one
     * adapter on every row (activations, the view), then one with all 100: the second may
     * add only each adapter's small table of where its modules sit. */
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(base, &run));
    const char **images = calloc(N_OPEN, sizeof *images);
    mmt_clip_adapter **same = calloc(N_OPEN, sizeof *same);
    float *out = malloc((size_t)N_OPEN * (size_t)cfg.projection_dim * sizeof(float));
    size_t run_first = 0, run_all = 0;
    if (run && images && same && out) {
        for (int i = 0; i < N_OPEN; i++) { /* the random base has no tokenizer: images */
            images[i] = MMT_FIXTURE_DIR "/clip/images/chelsea.jpg";
            same[i] = opened[0];
        }
        CHECK_OK(mmt_clip_run_embed_image_files(run, images, same, 32, out)); /* one full chunk */
        run_first = mmt_alloc_current_bytes();
        CHECK_OK(mmt_clip_run_embed_image_files(run, images, opened, N_OPEN, out));
        run_all = mmt_alloc_current_bytes();
    }
    printf("     a run context, then all %d adapters in one call: %.1f KB more\n", N_OPEN,
           (double)(run_all - run_first) / 1e3);
    CHECK_MSG(run_all - run_first < (size_t)N_OPEN * 8192, "the run context keeps %zu more bytes: copies of the adapters?",
              run_all - run_first);
    free(images);
    free(same);
    free(out);
    mmt_clip_run_free(run);
    for (int i = 0; i < N_OPEN; i++) mmt_clip_adapter_close(opened[i]);
    free(opened);
    CHECK(mmt_alloc_current_bytes() <= before + 4096);
    mmt_clip_free(base);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
}

int main(void) {
    RUN(test_hundred_adapters);
    return check_summary();
}
