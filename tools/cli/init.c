/*
 * init.c — `mmtune init`: writes a fresh, randomly initialised CLIP snapshot
 * (src/models/clip_init.h) that mmtune and transformers' CLIPModel.from_pretrained load, or
 * with --family git a GIT captioner (src/models/git_init.h) that GitForCausalLM loads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "models/clip_init.h"
#include "models/git_init.h"

static const char *HELP =
    "usage: mmtune init [--family clip] --out DIR --tokenizer DIR [--vision-width N]\n"
    "                   [--vision-layers N] [--vision-heads N] [--patch N] [--image-size N]\n"
    "                   [--text-width N] [--text-layers N] [--text-heads N] [--projection-dim N]\n"
    "                   [--context N] [--act quick_gelu|gelu] [--seed N]\n"
    "\n"
    "Writes a randomly initialised CLIPModel as a Hugging Face snapshot: config.json,\n"
    "model.safetensors (F32, initialised as transformers' CLIPPreTrainedModel._init_weights),\n"
    "the tokenizer files and a preprocessor_config.json. The same seed gives the same bytes.\n"
    "  --out DIR            output folder (written whole under a temporary name, then renamed;\n"
    "                       an existing non-empty one is refused without --overwrite)\n"
    "  --overwrite          replace an existing --out folder\n"
    "  --tokenizer DIR      folder with vocab.json + merges.txt (and tokenizer_config.json,\n"
    "                       special_tokens_map.json if present): copied; sets vocab_size and\n"
    "                       the bos/eos/pad ids\n"
    "  --vision-width N     vision hidden size (default 128; MLP is 4x)\n"
    "  --vision-layers N    vision encoder layers (default 4)\n"
    "  --vision-heads N     vision attention heads (default 4)\n"
    "  --patch N            patch side in pixels (default 8)\n"
    "  --image-size N       image side in pixels, a multiple of the patch (default 64)\n"
    "  --text-width N       text hidden size (default 128; MLP is 4x)\n"
    "  --text-layers N      text encoder layers (default 4)\n"
    "  --text-heads N       text attention heads (default 4)\n"
    "  --projection-dim N   shared embedding size (default 128)\n"
    "  --context N          text context, max_position_embeddings (default 32)\n"
    "  --act A              quick_gelu (default) or gelu, both towers\n"
    "  --seed N             random seed (default 0)\n"
    "\n"
    "       mmtune init --family git --out DIR --tokenizer DIR [--vision-width N] [--vision-layers N]\n"
    "                   [--vision-heads N] [--patch N] [--image-size N] [--decoder-width N]\n"
    "                   [--decoder-layers N] [--decoder-heads N] [--heads N] [--context N]\n"
    "                   [--act quick_gelu|gelu] [--seed N]\n"
    "\n"
    "Writes a randomly initialised GIT captioner (GitForCausalLM) the same way: config.json as\n"
    "transformers writes it, model.safetensors (F32, GitPreTrainedModel._init_weights), the\n"
    "tokenizer files and a CLIP preprocessor_config.json. Sizes not given: vision width 128,\n"
    "4 layers, 4 heads, 32 px images in 4 px patches; decoder width 128, 4 layers, 4 heads.\n"
    "  --tokenizer DIR      folder with a WordPiece tokenizer.json (+ tokenizer_config.json), as\n"
    "                       `mmtune wordpiece` writes: copied; sets vocab_size, bos = [CLS],\n"
    "                       eos = [SEP], pad = [PAD]\n"
    "  --decoder-width N    decoder hidden size (MLP is 4x)\n"
    "  --decoder-layers N   decoder layers\n"
    "  --decoder-heads N    decoder attention heads\n"
    "  --heads N            attention heads of both the vision tower and the decoder\n"
    "                       (--vision-heads and --decoder-heads win over it)\n"
    "  --context N          text positions, max_position_embeddings (default 32)\n"
    "  --act A              the vision tower's: quick_gelu (default) or gelu (the decoder's is gelu)\n";

/* Flags of one family that the other does not take, for a clearer message than "unknown". */
static const char *const GIT_ONLY[] = {"--decoder-width", "--decoder-layers", "--decoder-heads", "--heads"};
static const char *const CLIP_ONLY[] = {"--text-width", "--text-layers", "--text-heads", "--projection-dim"};

static int in_list(const char *a, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(a, list[i])) return 1;
    return 0;
}

static int parse_seed(const char *val, uint64_t *seed) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end || val[0] == '-')
        return cli_usage_error("init: --seed '%s' is not a whole number >= 0", val);
    *seed = v;
    return 0;
}

/* --family git: the flags map onto mmt_git_init_params. */
static int init_git(int argc, char **argv) {
    mmt_git_init_params p;
    mmt_git_init_params_default(&p);
    mmt_git_config *c = &p.config;
    int64_t heads = 0, vision_heads = 0, decoder_heads = 0;
    struct {
        const char *flag;
        int64_t *field;
    } sizes[] = {{"--vision-width", &c->vision.hidden_size}, {"--vision-layers", &c->vision.num_layers},
                 {"--vision-heads", &vision_heads},          {"--patch", &c->vision.patch_size},
                 {"--image-size", &c->vision.image_size},    {"--decoder-width", &c->hidden_size},
                 {"--decoder-layers", &c->num_layers},       {"--decoder-heads", &decoder_heads},
                 {"--heads", &heads},                        {"--context", &c->max_positions}};
    const size_t n_sizes = sizeof sizes / sizeof sizes[0];
    int overwrite = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--overwrite")) {
            overwrite = 1;
            continue;
        }
        if (strncmp(a, "--", 2)) return cli_usage_error("init: unexpected argument '%s'", a);
        if (in_list(a, CLIP_ONLY, sizeof CLIP_ONLY / sizeof CLIP_ONLY[0]))
            return cli_usage_error("init: %s is for --family clip", a);
        size_t k = 0;
        while (k < n_sizes && strcmp(a, sizes[k].flag)) k++;
        int known = k < n_sizes || !strcmp(a, "--out") || !strcmp(a, "--tokenizer") || !strcmp(a, "--act") ||
                    !strcmp(a, "--seed") || !strcmp(a, "--family");
        if (!known) return cli_usage_error("init: unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("init: %s needs a value", a);
        const char *val = argv[++i];
        if (k < n_sizes) {
            char *end;
            errno = 0;
            long long v = strtoll(val, &end, 10);
            if (errno || end == val || *end || v < 1 || v > 65536)
                return cli_usage_error("init: %s '%s' is not a whole number in 1..65536", a, val);
            *sizes[k].field = v;
        } else if (!strcmp(a, "--out")) {
            if (!val[0]) return cli_usage_error("init: --out is empty");
            p.out_dir = val;
        } else if (!strcmp(a, "--tokenizer")) {
            p.tokenizer_dir = val;
        } else if (!strcmp(a, "--act")) {
            if (!strcmp(val, "quick_gelu")) c->vision.act = MMT_ACT_QUICK_GELU;
            else if (!strcmp(val, "gelu")) c->vision.act = MMT_ACT_GELU;
            else return cli_usage_error("init: --act takes quick_gelu or gelu, not '%s'", val);
        } else if (!strcmp(a, "--seed")) {
            int rc = parse_seed(val, &p.seed);
            if (rc) return rc;
        }
    }
    if (!p.out_dir) return cli_usage_error("init: --out is required");
    if (!p.tokenizer_dir) return cli_usage_error("init: --tokenizer is required");
    c->vision.num_heads = vision_heads ? vision_heads : heads ? heads : c->vision.num_heads;
    c->num_heads = decoder_heads ? decoder_heads : heads ? heads : c->num_heads;
    c->intermediate_size = 4 * c->hidden_size;
    c->vision.intermediate_size = 4 * c->vision.hidden_size;
    const char *out = p.out_dir;
    char *tmp = NULL;
    int rc = cli_out_begin("init", out, overwrite, &tmp);
    if (rc) return rc;
    p.out_dir = tmp;
    if (mmt_git_init_snapshot(&p) != MMT_OK) rc = cli_runtime_error();
    rc = cli_out_finish(tmp, out, rc);
    if (rc == 0) printf("wrote %s (seed %llu)\n", out, (unsigned long long)p.seed);
    return rc;
}

int cmd_init(int argc, char **argv) {
    const char *family = "clip";
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--family")) family = argv[++i];
    if (!strcmp(family, "git")) return init_git(argc, argv);
    if (strcmp(family, "clip")) return cli_usage_error("init: --family takes clip or git, not '%s'", family);
    mmt_clip_init_params p;
    mmt_clip_init_params_default(&p);
    mmt_clip_config *c = &p.config;
    struct {
        const char *flag;
        int64_t *field;
    } sizes[] = {{"--vision-width", &c->vision.hidden_size}, {"--vision-layers", &c->vision.num_layers},
                 {"--vision-heads", &c->vision.num_heads},   {"--patch", &c->vision.patch_size},
                 {"--image-size", &c->vision.image_size},    {"--text-width", &c->text.hidden_size},
                 {"--text-layers", &c->text.num_layers},     {"--text-heads", &c->text.num_heads},
                 {"--projection-dim", &c->projection_dim},   {"--context", &c->text.max_positions}};
    const size_t n_sizes = sizeof sizes / sizeof sizes[0];
    int overwrite = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--overwrite")) {
            overwrite = 1;
            continue;
        }
        if (strncmp(a, "--", 2)) return cli_usage_error("init: unexpected argument '%s'", a);
        if (in_list(a, GIT_ONLY, sizeof GIT_ONLY / sizeof GIT_ONLY[0]))
            return cli_usage_error("init: %s is for --family git", a);
        size_t k = 0;
        while (k < n_sizes && strcmp(a, sizes[k].flag)) k++;
        int known = k < n_sizes || !strcmp(a, "--out") || !strcmp(a, "--tokenizer") || !strcmp(a, "--act") ||
                    !strcmp(a, "--seed") || !strcmp(a, "--family");
        if (!known) return cli_usage_error("init: unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("init: %s needs a value", a);
        const char *val = argv[++i];
        char *end;
        errno = 0;
        if (k < n_sizes) {
            long long v = strtoll(val, &end, 10);
            if (errno || end == val || *end || v < 1 || v > 65536)
                return cli_usage_error("init: %s '%s' is not a whole number in 1..65536", a, val);
            *sizes[k].field = v;
        } else if (!strcmp(a, "--out")) {
            if (!val[0]) return cli_usage_error("init: --out is empty");
            p.out_dir = val;
        } else if (!strcmp(a, "--tokenizer")) {
            p.tokenizer_dir = val;
        } else if (!strcmp(a, "--family")) {
            continue; /* "clip", read above */
        } else if (!strcmp(a, "--act")) {
            if (!strcmp(val, "quick_gelu")) c->text.act = c->vision.act = MMT_ACT_QUICK_GELU;
            else if (!strcmp(val, "gelu")) c->text.act = c->vision.act = MMT_ACT_GELU;
            else return cli_usage_error("init: --act takes quick_gelu or gelu, not '%s'", val);
        } else {
            unsigned long long seed = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-')
                return cli_usage_error("init: --seed '%s' is not a whole number >= 0", val);
            p.seed = seed;
        }
    }
    if (!p.out_dir) return cli_usage_error("init: --out is required");
    if (!p.tokenizer_dir) return cli_usage_error("init: --tokenizer is required");
    c->text.intermediate_size = 4 * c->text.hidden_size;
    c->vision.intermediate_size = 4 * c->vision.hidden_size;
    const char *out = p.out_dir;
    char *tmp = NULL;
    int rc = cli_out_begin("init", out, overwrite, &tmp);
    if (rc) return rc;
    p.out_dir = tmp;
    if (mmt_clip_init_snapshot(&p) != MMT_OK) rc = cli_runtime_error();
    rc = cli_out_finish(tmp, out, rc);
    if (rc == 0) printf("wrote %s (seed %llu)\n", out, (unsigned long long)p.seed);
    return rc;
}
