/* caption.c — `mmtune caption`: captions images with a GIT captioner (models/git.h) and text
 * generation (gen/generate.h), optionally through a PEFT adapter. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "data/image.h"
#include "data/pairs.h"
#include "data/preprocess.h"
#include "data/wordpiece.h"
#include "gen/generate.h"
#include "gen/words.h"
#include "models/git.h"
#include "nn/decoder.h"
#include "nn/model.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/prompt.h"

static const char *HELP =
    "usage: mmtune caption --model GIT_DIR [--adapter DIR] --image PATH... [--data FILE]\n"
    "                      [--prompt TEXT] [--max-new-tokens N] [--min-new-tokens N]\n"
    "                      [--beams N [--length-penalty X] [--early-stopping true|false|never]]\n"
    "                      [--sample [--temperature X] [--top-k N] [--top-p X] [--seed N]]\n"
    "                      [--no-repeat-ngram N] [--repetition-penalty X]\n"
    "                      [--bad-words FILE | --allowed-words FILE] [--batch N] [--json]\n"
    "\n"
    "Captions each image as transformers' GitForCausalLM.generate() does (greedy and beam search\n"
    "give its tokens exactly; sampling draws from mmtune's own seeded generator) and prints\n"
    "one line per image: PATH<TAB>caption, or with --json {\"image\": ..., \"caption\": ...}.\n"
    "  --model DIR         Hugging Face GIT snapshot (config.json, weights, tokenizer.json)\n"
    "  --adapter DIR       a PEFT adapter folder for it (LoRA, IA3 or prefix tuning)\n"
    "  --image PATH        a JPEG, PNG or DICOM image (repeatable)\n"
    "  --data FILE         also every image_path of a JSONL pairs file\n"
    "  --prompt TEXT       the caption starts with this text ([CLS] + its tokens), as GIT's\n"
    "                      question answering is prompted; printed as part of the caption\n"
    "  --max-new-tokens N  tokens generated after the prompt at most (default 30)\n"
    "  --min-new-tokens N  no end of caption before N tokens (default 0)\n"
    "  --beams N           beam search with N beams (default 1: greedy)\n"
    "  --length-penalty X  beams: score / length^X (default 1)\n"
    "  --early-stopping E  beams: true, false (default) or never, as transformers\n"
    "  --sample            draw tokens instead (temperature, top-k 50, top-p)\n"
    "  --temperature X, --top-k N, --top-p X, --seed N   sampling settings\n"
    "  --no-repeat-ngram N an n-gram appears at most once in a caption\n"
    "  --repetition-penalty X  transformers' repetition penalty (1: off)\n"
    "  --bad-words FILE    words or phrases (one per line) the caption must not contain\n"
    "  --allowed-words FILE  captions made only of these words (one per line): a constrained\n"
    "                      vocabulary, e.g. a report lexicon\n"
    "  --batch N           images per generation batch (default 8)\n"
    "  --json              JSON lines instead of PATH<TAB>caption\n";

#define MAX_IMAGES 100000

typedef struct caption_args {
    const char *model, *adapter, *prompt, *data, *bad_words, *allowed_words;
    const char **images;
    int64_t n_images, batch;
    int json;
    mmt_gen_settings gen;
} caption_args;

static int parse_double(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return *s && !*end;
}

static int parse_int(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    *out = v;
    return *s && !*end && errno != ERANGE; /* 2^64 is not read as 2^63 - 1 */
}

/* 0: parsed; -1: --help printed; else the exit code. */
static int parse(int argc, char **argv, caption_args *a) {
    a->gen = mmt_gen_settings_default();
    a->gen.max_new_tokens = 30;
    a->batch = 8;
    a->images = mmt_calloc((size_t)argc + 1, sizeof *a->images);
    if (!a->images) return cli_runtime_error();
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        double x;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(HELP, stdout);
            return -1;
        }
        if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(o, "--sample")) {
            a->gen.do_sample = 1;
            continue;
        }
        if (!v) return cli_usage_error("caption: %s needs a value", o);
        i++;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--adapter")) a->adapter = v;
        else if (!strcmp(o, "--image")) a->images[a->n_images++] = v;
        else if (!strcmp(o, "--data")) a->data = v;
        else if (!strcmp(o, "--prompt")) a->prompt = v;
        else if (!strcmp(o, "--bad-words")) a->bad_words = v;
        else if (!strcmp(o, "--allowed-words")) a->allowed_words = v;
        else if (!strcmp(o, "--early-stopping")) {
            if (!strcmp(v, "true")) a->gen.early_stopping = MMT_GEN_EARLY_STOPPING_TRUE;
            else if (!strcmp(v, "false")) a->gen.early_stopping = MMT_GEN_EARLY_STOPPING_HEURISTIC;
            else if (!strcmp(v, "never")) a->gen.early_stopping = MMT_GEN_EARLY_STOPPING_NEVER;
            else return cli_usage_error("caption: --early-stopping takes true, false or never, not '%s'", v);
        } else if (!strcmp(o, "--max-new-tokens") || !strcmp(o, "--min-new-tokens") || !strcmp(o, "--beams") ||
                   !strcmp(o, "--top-k") || !strcmp(o, "--seed") || !strcmp(o, "--no-repeat-ngram") ||
                   !strcmp(o, "--batch")) {
            if (!parse_int(v, &n) || n < 0) return cli_usage_error("caption: %s needs a whole number >= 0, not '%s'", o, v);
            if (!strcmp(o, "--max-new-tokens")) a->gen.max_new_tokens = n;
            else if (!strcmp(o, "--min-new-tokens")) a->gen.min_new_tokens = n;
            else if (!strcmp(o, "--beams")) a->gen.num_beams = n;
            else if (!strcmp(o, "--top-k")) a->gen.top_k = n;
            else if (!strcmp(o, "--seed")) a->gen.seed = (uint64_t)n;
            else if (!strcmp(o, "--no-repeat-ngram")) a->gen.no_repeat_ngram_size = n;
            else a->batch = n;
        } else if (!strcmp(o, "--length-penalty") || !strcmp(o, "--temperature") || !strcmp(o, "--top-p") ||
                   !strcmp(o, "--repetition-penalty")) {
            if (!parse_double(v, &x)) return cli_usage_error("caption: %s needs a number, not '%s'", o, v);
            if (!strcmp(o, "--length-penalty")) a->gen.length_penalty = x;
            else if (!strcmp(o, "--temperature")) a->gen.temperature = x;
            else if (!strcmp(o, "--top-p")) a->gen.top_p = x;
            else a->gen.repetition_penalty = x;
        } else {
            return cli_usage_error("caption: unknown option '%s'", o);
        }
    }
    if (!a->model) return cli_usage_error("caption: --model is required");
    if (a->n_images == 0 && !a->data) return cli_usage_error("caption: give --image PATH (or --data FILE)");
    size_t dl = a->data ? strlen(a->data) : 0;
    if (dl >= 4 && !strcasecmp(a->data + dl - 4, ".csv")) /* read as JSONL, it would fail at byte 0 */
        return cli_usage_error("caption: --data takes a JSONL file ({\"image_path\": ...} per line), not CSV (eval --data "
                               "reads CSV)");
    if (a->batch < 1) return cli_usage_error("caption: --batch must be at least 1");
    if (a->bad_words && a->allowed_words) return cli_usage_error("caption: --bad-words and --allowed-words exclude each other");
    return 0;
}

/* The words of a file, one per line, as token sequences (mmt_wordpiece_word_sequences). */
static mmt_status read_words(const char *path, const mmt_wordpiece *tok, int32_t **ids, int64_t **lengths, int64_t *n) {
    char *text = NULL;
    size_t size = 0;
    MMT_TRY(mmt_file_read_all(path, (size_t)16 << 20, &text, &size));
    int64_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += text[i] == '\n';
    const char **words = mmt_malloc((size_t)lines * sizeof *words);
    mmt_status s = words ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    int64_t k = 0;
    for (char *line = text, *next; s == MMT_OK && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        words[k++] = line;
    }
    if (s == MMT_OK) s = mmt_wordpiece_word_sequences(tok, words, k, ids, lengths, n);
    if (s != MMT_OK) s = mmt_error_prefix(s, "%s: ", path);
    mmt_free(words);
    mmt_free(text);
    return s;
}

static void print_json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

/* ---- the captioner: a model, an adapter, and generation over image files ------------------ */

struct cli_captioner {
    mmt_git *m;
    mmt_git_run *r;
    mmt_adapter *ad;
    mmt_prompt *pr;
    mmt_gen_words *allowed;
    int32_t *words;
    int64_t *word_len, n_words;
};

mmt_status cli_captioner_open(const char *model, const char *adapter, cli_captioner **out) {
    *out = NULL;
    cli_captioner *c = mmt_calloc(1, sizeof *c);
    if (!c) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = cli_git_load_inference(model, &c->m);
    if (s == MMT_OK && !mmt_git_tokenizer(c->m))
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: the captioner has no tokenizer.json", model);
    if (s == MMT_OK) s = mmt_git_run_create(c->m, &c->r);
    if (s == MMT_OK && adapter) s = mmt_adapter_folders_load(mmt_git_run_iface(c->r), adapter, 0, &c->ad, &c->pr);
    if (s != MMT_OK) {
        cli_captioner_close(c);
        return s;
    }
    *out = c;
    return MMT_OK;
}

void cli_captioner_close(cli_captioner *c) {
    if (!c) return;
    mmt_gen_words_free(c->allowed);
    mmt_free(c->words);
    mmt_free(c->word_len);
    mmt_prompt_free(c->pr);
    mmt_adapter_free(c->ad);
    mmt_git_run_free(c->r);
    mmt_git_free(c->m);
    mmt_free(c);
}

mmt_status cli_captioner_defaults(const cli_captioner *c, mmt_gen_settings *s) {
    const mmt_git_config *g = mmt_git_config_of(c->m);
    s->bos_token_id = (int32_t)g->bos_token_id;
    s->eos_token_id = (int32_t)g->eos_token_id;
    s->pad_token_id = (int32_t)g->pad_token_id;
    return MMT_OK;
}

mmt_status cli_captioner_words(cli_captioner *c, const char *path, int allowed, mmt_gen_settings *s) {
    const mmt_git_config *g = mmt_git_config_of(c->m);
    MMT_TRY(read_words(path, mmt_git_tokenizer(c->m), &c->words, &c->word_len, &c->n_words));
    mmt_gen_sequences seqs = {c->words, c->word_len, c->n_words};
    if (!allowed) {
        s->bad_words = seqs;
        return MMT_OK;
    }
    mmt_status w = mmt_wordpiece_check_writable(mmt_git_tokenizer(c->m), c->words, c->word_len, c->n_words);
    if (w != MMT_OK) return mmt_error_prefix(w, "%s: ", path);
    MMT_TRY(mmt_gen_words_create(&seqs, g->vocab_size, &c->allowed));
    s->allowed_words = c->allowed;
    return MMT_OK;
}

mmt_status cli_captioner_run(cli_captioner *c, const char *const *paths, int64_t n, const mmt_gen_settings *gs,
                             const char *prompt_text, int64_t batch, cli_caption_fn fn, void *user) {
    const mmt_git_config *g = mmt_git_config_of(c->m);
    const mmt_wordpiece *tok = mmt_git_tokenizer(c->m);
    int32_t *prompt = NULL, *all = NULL;
    float *pixels = NULL, *feats = NULL;
    char *text = NULL;
    int64_t L = 0, S = g->vision.image_size, Ni = mmt_git_image_tokens(c->m);
    mmt_gen_output out = {0};
    mmt_status s = mmt_gen_settings_check(gs, g->vocab_size);
    if (s == MMT_OK && batch < 1) s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption: a batch of %lld images", (long long)batch);
    if (batch > n) batch = n > 0 ? n : 1; /* buffers for the images there are, not for --batch */
    /* the prompt: [CLS] + the text's tokens, the same for every image */
    if (s == MMT_OK && prompt_text && prompt_text[0]) {
        int64_t total = 0;
        s = mmt_wordpiece_encode(tok, prompt_text, strlen(prompt_text), 0, NULL, 0, &total);
        if (s == MMT_OK && !(prompt = mmt_malloc((size_t)(total + 1) * (size_t)batch * sizeof(int32_t))))
            s = MMT_STATUS_OUT_OF_MEMORY;
        if (s == MMT_OK) {
            prompt[0] = (int32_t)g->bos_token_id;
            s = mmt_wordpiece_encode(tok, prompt_text, strlen(prompt_text), 0, prompt + 1, total, &total);
            L = total + 1;
            for (int64_t b = 1; b < batch; b++) memcpy(prompt + b * L, prompt, (size_t)L * sizeof(int32_t));
        }
    }
    size_t text_cap = (size_t)(L + gs->max_new_tokens + 1) * 64 + 64;
    if (s == MMT_OK) {
        pixels = mmt_malloc((size_t)(batch * 3 * S * S) * sizeof(float));
        feats = mmt_malloc((size_t)(batch * Ni * g->hidden_size) * sizeof(float));
        all = mmt_malloc((size_t)(L + gs->max_new_tokens + 1) * sizeof(int32_t));
        text = mmt_malloc(text_cap);
        if (!pixels || !feats || !all || !text) s = MMT_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t at = 0; at < n && s == MMT_OK; at += batch) {
        int64_t b = n - at < batch ? n - at : batch;
        for (int64_t i = 0; i < b && s == MMT_OK; i++) {
            mmt_image img = {0};
            s = mmt_image_decode_file_ex(paths[at + i], mmt_git_dicom_options(c->m), &img);
            if (s == MMT_OK) s = mmt_image_preprocess(&img, mmt_git_processor(c->m), pixels + i * 3 * S * S);
            mmt_image_free(&img);
        }
        if (s == MMT_OK) s = mmt_git_run_image_features(c->r, pixels, b, feats);
        mmt_decoder dec;
        mmt_git_run_decoder(c->r, feats, b, &dec);
        if (s == MMT_OK) s = mmt_generate(&dec, prompt, b, L, gs, &out);
        for (int64_t i = 0; i < b && s == MMT_OK; i++) { /* decode(prompt + generated, skip_special_tokens) */
            int64_t k = 0;
            all[k++] = L > 0 ? prompt[0] : (int32_t)g->bos_token_id;
            for (int64_t j = 1; j < L; j++) all[k++] = prompt[j];
            for (int64_t j = 0; j < out.lengths[i]; j++) all[k++] = out.tokens[i * out.width + j];
            size_t len;
            s = mmt_wordpiece_decode(tok, all, k, 1, text, text_cap, &len);
            if (s == MMT_OK) s = fn(user, at + i, text);
        }
        mmt_gen_output_free(&out);
    }
    mmt_gen_output_free(&out);
    mmt_free(prompt);
    mmt_free(all);
    mmt_free(text);
    mmt_free(pixels);
    mmt_free(feats);
    return s;
}

/* ---- the command -------------------------------------------------------------------------- */

typedef struct printer {
    const char *const *paths;
    int json;
} printer;

static mmt_status print_caption(void *user, int64_t i, const char *caption) {
    const printer *p = user;
    if (p->json) {
        fputs("{\"image\": ", stdout);
        print_json_string(p->paths[i]);
        fputs(", \"caption\": ", stdout);
        print_json_string(caption);
        fputs("}\n", stdout);
    } else {
        printf("%s\t%s\n", p->paths[i], caption);
    }
    fflush(stdout);
    return MMT_OK;
}

int cmd_caption(int argc, char **argv) {
    caption_args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc != 0) {
        mmt_free(a.images);
        return rc < 0 ? 0 : rc;
    }
    cli_captioner *c = NULL;
    mmt_pairs *pairs = NULL;
    const char **paths = NULL;
    mmt_status s = cli_captioner_open(a.model, a.adapter, &c);
    if (s == MMT_OK && a.data) s = mmt_pairs_load_jsonl(a.data, 0, &pairs);
    if (s == MMT_OK) s = cli_captioner_defaults(c, &a.gen);
    if (s == MMT_OK && (a.bad_words || a.allowed_words))
        s = cli_captioner_words(c, a.bad_words ? a.bad_words : a.allowed_words, a.allowed_words != NULL, &a.gen);
    int64_t n = a.n_images + (pairs ? pairs->n : 0);
    if (s == MMT_OK && !(paths = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *paths))) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        for (int64_t i = 0; i < a.n_images; i++) paths[i] = a.images[i];
        for (int64_t i = 0; pairs && i < pairs->n; i++) paths[a.n_images + i] = pairs->items[i].image_path;
        printer p = {paths, a.json};
        s = cli_captioner_run(c, paths, n, &a.gen, a.prompt, a.batch, print_caption, &p);
    }
    if (s != MMT_OK) rc = cli_runtime_error();
    mmt_free(paths);
    mmt_pairs_free(pairs);
    cli_captioner_close(c);
    mmt_free(a.images);
    return rc;
}
