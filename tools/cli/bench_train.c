/*
 * bench_train.c — `mmtune bench train`: seconds per training step on a random-weight CLIP of
 * openai/clip-vit-base-patch32's configuration (the CLIPConfig defaults), the same batch that
 * tools/bench/torch_train.py builds for PyTorch + PEFT: random pixels, and texts of BOS, 8
 * random tokens, then EOS to the context length. One method per process, so the peak RSS
 * printed at the end (getrusage) is that method's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/peft_config.h"
#include "train/clip_task.h"
#include "train/adamw8bit.h"
#include "train/optimizer.h"

static const char *HELP =
    "usage: mmtune bench train [--method lora|ia3|full] [--batch N] [--steps N] [--warmup N]\n"
    "                          [--checkpointing | --recompute] [--text-len N] [--optim adamw|adamw8bit] [--json]\n"
    "\n"
    "Times training steps (forward, contrastive loss, backward, clipping, AdamW) on a\n"
    "random-weight ViT-B/32-sized CLIP. lora: r 8, alpha 16 on q_proj, v_proj; ia3: k_proj,\n"
    "v_proj, fc2 (feed-forward); full: every tensor and logit_scale. The global\n"
    "--quantize-base int8|nf4 (or --int8) keeps the frozen base's linears quantized (LoRA\n"
    "on an int8 base; QLoRA with nf4).\n"
    "  --batch N        image-text pairs per step (default 32)\n"
    "  --steps N        timed steps (default 3)\n"
    "  --warmup N       untimed steps first (default 1)\n"
    "  --text-len N     token positions per text row: BOS, up to 8 tokens, EOS padding to N\n"
    "                   (default 77, padding=\"max_length\"; 10: padded to the longest row)\n"
    "  --optim O        adamw (default) or adamw8bit (bitsandbytes' 8-bit states)\n";

int cmd_bench_train(int argc, char **argv) {
    const char *method = "lora", *optim = "adamw";
    long batch = 32, steps = 3, warmup = 1, text_len = -1;
    int checkpointing = 0, recompute = 0, json = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--checkpointing")) checkpointing = 1;
        else if (!strcmp(a, "--recompute")) recompute = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (i + 1 < argc && !strcmp(a, "--method")) method = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--optim")) optim = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--text-len")) {
            char *end;
            text_len = strtol(argv[++i], &end, 10);
            if (*end || text_len < 3) return cli_usage_error("bad value for --text-len");
        }
        else if (i + 1 < argc && (!strcmp(a, "--batch") || !strcmp(a, "--steps") || !strcmp(a, "--warmup"))) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < (strcmp(a, "--warmup") ? 1 : 0) || v > 4096) return cli_usage_error("bad value for %s", a);
            *(!strcmp(a, "--batch") ? &batch : !strcmp(a, "--steps") ? &steps : &warmup) = v;
        } else return cli_usage_error("bench train: unknown option '%s'", a);
    }
    int full = !strcmp(method, "full"), ia3 = !strcmp(method, "ia3");
    if (!full && !ia3 && strcmp(method, "lora")) return cli_usage_error("bench train: --method takes lora, ia3 or full");
    int eight_bit = !strcmp(optim, "adamw8bit");
    if (!eight_bit && strcmp(optim, "adamw")) return cli_usage_error("bench train: --optim takes adamw or adamw8bit");
    mmt_clip_config cfg;
    mmt_clip_config_default(&cfg);
    mmt_clip *model = NULL;
    mmt_clip_train *view = NULL;
    mmt_adapter *ad = NULL;
    mmt_adamw *opt = NULL;
    mmt_adamw8bit *opt8 = NULL;
    mmt_param *params = NULL;
    mmt_peft_config pc;
    int have_pc = 0, rc = 0;
    if (text_len > cfg.text.max_positions) return cli_usage_error("--text-len is at most %lld", (long long)cfg.text.max_positions);
    int64_t S = cfg.vision.image_size, L = text_len > 0 ? text_len : cfg.text.max_positions, B = batch;
    float *pixels = mmt_malloc((size_t)(B * 3 * S * S) * sizeof(float));
    int32_t *ids = mmt_malloc((size_t)(B * L) * sizeof(int32_t));
    mmt_quant_type quant = cli_load_quant(); /* the global --int8 / --quantize-base (model_load.c) */
    if (!pixels || !ids || cli_clip_random(&cfg, 1, quant, &model) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    uint64_t st = 12345;
    for (int64_t i = 0; i < B * 3 * S * S; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        pixels[i] = (float)((double)(st >> 40) / (double)(1ull << 24) * 4.0 - 2.0);
    }
    for (int64_t b = 0; b < B; b++) {
        ids[b * L] = (int32_t)cfg.text.bos_token_id;
        for (int64_t j = 1; j < L; j++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            ids[b * L + j] = j <= 8 && j < L - 1 ? 300 + (int32_t)((st >> 33) % 1000) : 49407;
        }
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    o.checkpointing = checkpointing;
    o.recompute = recompute;
    o.train_logit_scale = full;
    if (mmt_clip_train_create(model, &o, &view) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if (full) {
        if (mmt_clip_train_make_full(view) != MMT_OK) rc = cli_runtime_error();
    } else {
        const char *lora_t[] = {"q_proj", "v_proj"}, *ia3_t[] = {"k_proj", "v_proj", "fc2"}, *ff[] = {"fc2"};
        if (mmt_peft_config_default(&pc, ia3 ? MMT_PEFT_IA3 : MMT_PEFT_LORA) != MMT_OK) {
            rc = cli_runtime_error();
            goto done;
        }
        have_pc = 1;
        pc.r = 8;
        pc.lora_alpha = 16;
        mmt_status s = ia3 ? mmt_peft_names_set_list(&pc.target_modules, ia3_t, 3) : mmt_peft_names_set_list(&pc.target_modules, lora_t, 2);
        if (s == MMT_OK && ia3) s = mmt_peft_names_set_list(&pc.feedforward_modules, ff, 1);
        if (s == MMT_OK) s = mmt_adapter_from_config(mmt_clip_train_iface(view), &pc, 1, 1, &ad);
        if (s != MMT_OK) rc = cli_runtime_error();
    }
    if (rc) goto done;
    int64_t n, trainable = 0;
    const mmt_nn_param *p = mmt_clip_train_params(view, &n);
    params = mmt_calloc((size_t)n, sizeof *params);
    if (!params) {
        rc = cli_runtime_error();
        goto done;
    }
    mmt_params_from_nn(p, n, params);
    for (int64_t i = 0; i < n; i++) trainable += p[i].numel;
    mmt_param_group g = {"all", params, n, 1.0, 0.01, NULL};
    mmt_adamw_config oc = mmt_adamw_config_default();
    mmt_adamw8bit_config oc8 = mmt_adamw8bit_config_default();
    oc.lr = oc8.lr = 1e-5;
    if ((eight_bit ? mmt_adamw8bit_create(&oc8, &g, 1, &opt8) : mmt_adamw_create(&oc, &g, 1, &opt)) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    double t0 = 0, loss = 0, fwd = 0, bwd = 0;
    for (long step = 0; step < warmup + steps; step++) {
        if (step == warmup) t0 = mmt_now_seconds(), fwd = bwd = 0;
        float norm;
        mmt_clip_train_zero_grad(view);
        double ta = mmt_now_seconds();
        mmt_status fs = mmt_clip_train_forward_loss(view, pixels, ids, B, L, (uint64_t)step, &loss);
        double tb = mmt_now_seconds();
        mmt_status bs = fs == MMT_OK ? mmt_clip_train_backward(view) : fs;
        fwd += tb - ta;
        bwd += mmt_now_seconds() - tb;
        if (fs != MMT_OK || bs != MMT_OK || mmt_grad_clip_norm(&g, 1, 1.0, &norm) != MMT_OK ||
            (eight_bit ? mmt_adamw8bit_step(opt8, 1.0) : mmt_adamw_step(opt, 1.0)) != MMT_OK) {
            rc = cli_runtime_error();
            goto done;
        }
    }
    double per = (mmt_now_seconds() - t0) / (double)steps;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / (1024.0 * 1024.0);
    double act = (double)mmt_clip_train_peak_activation_bytes(view) / (1024.0 * 1024.0 * 1024.0);
    if (json)
        printf("{\"method\": \"%s\", \"batch\": %ld, \"text_len\": %lld, \"quantize\": \"%s\", \"optim\": \"%s\", \"checkpointing\": %s, \"recompute\": %s, \"s_per_step\": %.4f, \"images_per_s\": %.3f, "
               "\"trainable_params\": %lld, \"peak_rss_gib\": %.3f, \"activation_gib\": %.3f, \"forward_s\": %.4f, \"backward_s\": %.4f, \"loss\": %.5f}\n",
               method, batch, (long long)L, quant == MMT_QUANT_INT8 ? "int8" : quant == MMT_QUANT_NF4 ? "nf4" : "none", optim, checkpointing ? "true" : "false", recompute ? "true" : "false", per, (double)B / per, (long long)trainable, rss, act,
               fwd / (double)steps, bwd / (double)steps, loss);
    else
        printf("%s%s: %.3f s/step (forward %.3f, backward %.3f), %.2f images/s, %lld trainable, peak RSS %.2f GiB "
               "(activations %.2f GiB)\n", method, checkpointing ? " +ckpt" : "", per, fwd / (double)steps,
               bwd / (double)steps, (double)B / per, (long long)trainable, rss, act);
done:
    mmt_adamw_free(opt);
    mmt_adamw8bit_free(opt8);
    mmt_free(params);
    mmt_adapter_free(ad);
    if (have_pc) mmt_peft_config_free(&pc);
    mmt_clip_train_free(view);
    mmt_clip_free(model);
    mmt_free(pixels);
    mmt_free(ids);
    return rc;
}
