/*
 * test_serve_caption.c — `mmtune serve --captioner` (serve/caption_service.h) on a loopback
 * port, called over real sockets (http_client.h), on the tiny captioner
 * tests/fixtures/git/tiny-cap with a LoRA adapter (text decoder and vision tower) and a
 * prefix-tuning adapter made for it here:
 *   - POST /v1/caption gives, string for string, the captions of the library path of
 *     `mmtune caption` (mmt_git_run + mmt_generate, all of a request's images in one batch)
 *     for greedy search, beam search and seeded sampling, with and without a prompt and an
 *     adapter; and once those of the real `mmtune caption` binary;
 *   - many clients at once with staggered arrivals, mixed adapters and settings: each gets
 *     its own correct captions, and GET /v1/caption/status shows requests joining a batch
 *     that was mid-decoding (continuous batching) and steps of several rows;
 *   - adapters load (POST), list (GET) and unload (DELETE) under /v1/caption/adapters;
 *   - bad requests (no images, bad base64, a corrupt image, max_new_tokens out of range,
 *     unknown adapters and fields, malformed JSON, bad settings, wrong method) get their
 *     4xx JSON error; a server without --captioner answers 404;
 *   - a stop with caption requests in flight answers every one of them correctly.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "data/wordpiece.h"
#include "gen/generate.h"
#include "gen/words.h"
#include "http_client.h"
#include "models/git.h"
#include "nn/decoder.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/peft_config.h"
#include "serve/caption_request.h"
#include "peft/prompt.h"
#include "serve/server.h"

#define CAP MMT_FIXTURE_DIR "/git/tiny-cap"
#define CLIP MMT_FIXTURE_DIR "/clip/tiny-a"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char root[] = "/tmp/mmt_serve_cap_XXXXXX";
static char lora_dir[300], prefix_dir[300];
static const char *image_names[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "rocket_rgba.png"};
static char *image_b64[4];

/* A number field of a JSON answer (-1 when absent). */
static double json_field(const char *body, const char *key) {
    mmt_json_doc *doc = NULL;
    if (!body || mmt_json_parse(body, strlen(body), "answer", &doc) != MMT_OK) return -1;
    const mmt_json *v = mmt_json_get(mmt_json_root(doc), key);
    double x = v && v->type == MMT_JSON_NUMBER ? v->number : -1;
    mmt_json_free(doc);
    return x;
}

/* ---- the captions of the library (the path of `mmtune caption`) --------------------------- */

/* One caption request: images (indices into image_names), adapter (0 base, 1 LoRA, 2 prefix),
 * prompt and settings. */
typedef struct cap_case {
    int images[4], n_images, adapter;
    const char *prompt;
    mmt_gen_settings gen;
    const char *const *words; /* allowed_words (words_allowed) or bad_words, n_words of them */
    int n_words, words_allowed;
    char *want[4]; /* owned: the library's captions */
    char body[65536 * 4];
    response got;
} cap_case;

static mmt_git *git;

static void library_captions(cap_case *c) {
    const mmt_git_config *g = mmt_git_config_of(git);
    const mmt_wordpiece *tok = mmt_git_tokenizer(git);
    mmt_git_run *r = NULL;
    mmt_adapter *ad = NULL;
    mmt_prompt *pr = NULL;
    CHECK_OK(mmt_git_run_create(git, &r));
    if (!r) return;
    if (c->adapter) CHECK_OK(mmt_adapter_folders_load(mmt_git_run_iface(r), c->adapter == 1 ? lora_dir : prefix_dir, 0, &ad, &pr));
    int64_t n = c->n_images, S = g->vision.image_size, Ni = mmt_git_image_tokens(git), L = 0;
    float *pixels = malloc((size_t)(n * 3 * S * S) * sizeof(float)), *feats = malloc((size_t)(n * Ni * g->hidden_size) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s", IMAGES, image_names[c->images[i]]);
        mmt_image img = {0};
        CHECK_OK(mmt_image_decode_file(path, &img));
        CHECK_OK(mmt_image_preprocess(&img, mmt_git_processor(git), pixels + i * 3 * S * S));
        mmt_image_free(&img);
    }
    int32_t prompt[64 * 4], one[64];
    if (c->prompt) {
        int64_t total = 0;
        CHECK_OK(mmt_wordpiece_encode(tok, c->prompt, strlen(c->prompt), 0, one + 1, 60, &total));
        one[0] = (int32_t)g->bos_token_id;
        L = total + 1;
        for (int64_t i = 0; i < n; i++) memcpy(prompt + i * L, one, (size_t)L * sizeof(int32_t));
    }
    mmt_gen_settings s = c->gen;
    s.bos_token_id = (int32_t)g->bos_token_id, s.eos_token_id = (int32_t)g->eos_token_id, s.pad_token_id = (int32_t)g->pad_token_id;
    int32_t *word_ids = NULL;
    int64_t *word_len = NULL, n_seqs = 0;
    mmt_gen_words *allowed = NULL;
    if (c->n_words) { /* as `mmtune caption --allowed-words / --bad-words` makes them */
        CHECK_OK(mmt_wordpiece_word_sequences(tok, c->words, c->n_words, &word_ids, &word_len, &n_seqs));
        mmt_gen_sequences seqs = {word_ids, word_len, n_seqs};
        if (c->words_allowed) {
            CHECK_OK(mmt_gen_words_create(&seqs, g->vocab_size, &allowed));
            s.allowed_words = allowed;
        } else {
            s.bad_words = seqs;
        }
    }
    CHECK_OK(mmt_git_run_image_features(r, pixels, n, feats));
    mmt_decoder dec;
    mmt_git_run_decoder(r, feats, n, &dec);
    mmt_gen_output out = {0};
    CHECK_OK(mmt_generate(&dec, L ? prompt : NULL, n, L, &s, &out));
    for (int64_t i = 0; i < out.n_rows; i++) {
        int32_t all[128];
        int64_t k = 0;
        all[k++] = (int32_t)g->bos_token_id;
        for (int64_t j = 1; j < L; j++) all[k++] = one[j];
        for (int64_t j = 0; j < out.lengths[i]; j++) all[k++] = out.tokens[i * out.width + j];
        char text[4096];
        size_t len;
        CHECK_OK(mmt_wordpiece_decode(tok, all, k, 1, text, sizeof text, &len));
        c->want[i] = strdup(text);
    }
    mmt_gen_output_free(&out);
    mmt_gen_words_free(allowed);
    mmt_free(word_ids);
    mmt_free(word_len);
    free(pixels), free(feats);
    mmt_prompt_free(pr);
    mmt_adapter_free(ad);
    mmt_git_run_free(r);
}

static void case_body(cap_case *c) {
    static const char *names[3] = {"base", "lora", "prefix"};
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"images\": [");
    for (int i = 0; i < c->n_images; i++) {
        const char *form = i % 2 ? "{\"image\": \"%s\"}" : "\"%s\"";
        if (i) mmt_strbuf_append(&b, ", ", 2);
        mmt_strbuf_printf(&b, form, image_b64[c->images[i]]);
    }
    mmt_strbuf_printf(&b, "], \"model\": \"%s\", \"max_new_tokens\": %lld, \"min_new_tokens\": %lld", names[c->adapter],
                      (long long)c->gen.max_new_tokens, (long long)c->gen.min_new_tokens);
    if (c->prompt) mmt_strbuf_printf(&b, ", \"prompt\": \"%s\"", c->prompt);
    if (c->gen.num_beams > 1) mmt_strbuf_printf(&b, ", \"num_beams\": %lld, \"length_penalty\": %g", (long long)c->gen.num_beams, c->gen.length_penalty);
    if (c->gen.do_sample)
        mmt_strbuf_printf(&b, ", \"do_sample\": true, \"seed\": %llu, \"temperature\": %g, \"top_k\": %lld, \"top_p\": %g",
                          (unsigned long long)c->gen.seed, c->gen.temperature, (long long)c->gen.top_k, c->gen.top_p);
    if (c->gen.early_stopping != mmt_gen_settings_default().early_stopping)
        mmt_strbuf_printf(&b, ", \"early_stopping\": %s", c->gen.early_stopping == MMT_GEN_EARLY_STOPPING_TRUE ? "true"
                                                           : c->gen.early_stopping == MMT_GEN_EARLY_STOPPING_NEVER ? "\"never\""
                                                                                                                  : "false");
    if (c->gen.no_repeat_ngram_size) mmt_strbuf_printf(&b, ", \"no_repeat_ngram_size\": %lld", (long long)c->gen.no_repeat_ngram_size);
    if (c->gen.repetition_penalty != 1) mmt_strbuf_printf(&b, ", \"repetition_penalty\": %g", c->gen.repetition_penalty);
    for (int w = 0; w < c->n_words; w++)
        mmt_strbuf_printf(&b, "%s\"%s\"", w ? ", " : c->words_allowed ? ", \"allowed_words\": [" : ", \"bad_words\": [",
                          c->words[w]);
    if (c->n_words) mmt_strbuf_printf(&b, "]");
    mmt_strbuf_printf(&b, "}");
    snprintf(c->body, sizeof c->body, "%s", b.data);
    mmt_strbuf_free(&b);
}

/* The case's answer against the library's captions. */
static int case_check(const cap_case *c, const char *what) {
    int ok = c->got.status == 200;
    CHECK_MSG(ok, "%s: status %d: %s", what, c->got.status, c->got.body ? c->got.body : "");
    mmt_json_doc *doc = NULL;
    if (!ok || mmt_json_parse(c->got.body, strlen(c->got.body), "answer", &doc) != MMT_OK) return 0;
    const mmt_json *data = mmt_json_get(mmt_json_root(doc), "data");
    CHECK(data && (int)data->len == c->n_images);
    for (int i = 0; data && i < c->n_images && i < (int)data->len; i++) {
        const mmt_json *cap = mmt_json_get(&data->items[i], "caption");
        int same = cap && c->want[i] && !strcmp(cap->string, c->want[i]);
        CHECK_MSG(same, "%s image %d: '%s', the library '%s'", what, i, cap ? cap->string : "?", c->want[i] ? c->want[i] : "?");
        ok &= same;
    }
    const mmt_json *usage = mmt_json_get(mmt_json_get(mmt_json_root(doc), "usage"), "generated_tokens");
    CHECK(usage && usage->number >= c->n_images);
    mmt_json_free(doc);
    return ok;
}

static void case_init(cap_case *c, int adapter, int n_images, int first_image) {
    memset(c, 0, sizeof *c);
    c->adapter = adapter, c->n_images = n_images;
    for (int i = 0; i < n_images; i++) c->images[i] = (first_image + i) % 4;
    c->gen = mmt_gen_settings_default();
    c->gen.max_new_tokens = 12;
}

static void case_free(cap_case *c) {
    for (int i = 0; i < 4; i++) free(c->want[i]);
    response_free(&c->got);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static void make_adapters(void) {
    mmt_git_run *r = NULL;
    CHECK_OK(mmt_git_run_create(git, &r));
    /* LoRA on the decoder's query/value and the vision tower's q_proj, B moved off zero */
    mmt_peft_config cfg;
    const char *targets[] = {"query", "value", "q_proj"};
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    cfg.r = 4;
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, targets, 3));
    mmt_adapter *ad = NULL;
    CHECK_OK(mmt_adapter_from_config(mmt_git_run_iface(r), &cfg, 3, 0, &ad));
    for (int64_t i = 0; ad && i < ad->n; i++)
        for (int64_t j = 0; j < ad->entries[i].linear->out * ad->entries[i].lora.r; j++)
            ad->entries[i].lora.b[j] = 0.3f * (float)(j % 7 - 3) / 3.0f;
    snprintf(lora_dir, sizeof lora_dir, "%s/lora", root);
    CHECK_OK(mmt_mkdirs(lora_dir));
    char w[400];
    snprintf(w, sizeof w, "%s/adapter_model.safetensors", lora_dir);
    CHECK_OK(mmt_peft_config_save(&cfg, lora_dir));
    if (ad) CHECK_OK(mmt_adapter_save_tensors(ad, w));
    mmt_adapter_free(ad);
    mmt_peft_config_free(&cfg);
    mmt_git_run_free(r);
    /* prefix tuning: 3 prefixes per layer, randomly initialised */
    r = NULL;
    CHECK_OK(mmt_git_run_create(git, &r));
    mmt_prompt_settings ps;
    memset(&ps, 0, sizeof ps);
    ps.prefix_tokens = 3, ps.seed = 9;
    mmt_prompt *p = NULL;
    mmt_peft_config pc;
    memset(&pc, 0, sizeof pc);
    snprintf(prefix_dir, sizeof prefix_dir, "%s/prefix", root);
    snprintf(w, sizeof w, "%s/adapter_model.safetensors", prefix_dir);
    CHECK_OK(mmt_mkdirs(prefix_dir));
    if (r) CHECK_OK(mmt_prompt_attach(mmt_git_run_iface(r), &ps, &p));
    if (p) {
        CHECK_OK(mmt_prompt_peft_config(&ps, &mmt_git_run_iface(r)->dims, NULL, &pc));
        CHECK_OK(mmt_peft_config_save(&pc, prefix_dir));
        CHECK_OK(mmt_prompt_save_tensors(p, w));
        mmt_peft_config_free(&pc);
    }
    mmt_prompt_free(p);
    mmt_git_run_free(r);
}

static mmt_server *start_server(int with_captioner, int64_t max_batch) {
    static const char *names[1] = {"lora"};
    static const char *dirs[1];
    dirs[0] = lora_dir;
    mmt_server_options o;
    mmt_server_options_default(&o);
    o.model_dir = CLIP;
    o.port = 0;
    o.max_batch = max_batch;
    o.max_new_tokens = 40;
    if (with_captioner) {
        o.captioner_dir = CAP;
        o.caption_adapter_names = names, o.caption_adapter_dirs = dirs, o.n_caption_adapters = 1;
    }
    return http_server_start(&o);
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void run_case(cap_case *c, const char *what) {
    library_captions(c);
    case_body(c);
    c->got = call("POST", "/v1/caption", c->body);
    if (case_check(c, what)) printf("     %s: '%s'\n", what, c->want[0]);
}

static void test_equals_library(void) {
    cap_case c;
    case_init(&c, 0, 3, 0);
    run_case(&c, "greedy, base, 3 images");
    case_free(&c);
    case_init(&c, 1, 2, 1);
    c.prompt = "a blue";
    run_case(&c, "greedy, LoRA, a prompt");
    case_free(&c);
    case_init(&c, 2, 2, 2);
    c.gen.no_repeat_ngram_size = 2, c.gen.repetition_penalty = 1.3;
    run_case(&c, "greedy, prefix, no-repeat 2, repetition 1.3");
    case_free(&c);
    case_init(&c, 1, 2, 0);
    c.gen.num_beams = 3, c.gen.length_penalty = 0.8;
    run_case(&c, "beams 3, LoRA");
    case_free(&c);
    case_init(&c, 2, 1, 3);
    c.gen.num_beams = 2, c.prompt = "rocket";
    run_case(&c, "beams 2, prefix, a prompt");
    case_free(&c);
    /* early_stopping as --early-stopping: parsed into generate()'s three values (the tiny
     * captioner rarely ends a beam, so its captions here are the same under each), and
     * end to end equal to the library with the same setting */
    {
        const char *forms[] = {"true", "false", "\"never\"", "null"};
        const mmt_gen_early_stopping want_es[] = {MMT_GEN_EARLY_STOPPING_TRUE, MMT_GEN_EARLY_STOPPING_HEURISTIC,
                                                  MMT_GEN_EARLY_STOPPING_NEVER, mmt_gen_settings_default().early_stopping};
        for (int f = 0; f < 4; f++) {
            char body[200], err[400];
            snprintf(body, sizeof body, "{\"images\": [\"aGVsbG8=\"], \"num_beams\": 2, \"early_stopping\": %s}", forms[f]);
            mmt_caption_request req;
            CHECK_MSG(mmt_serve_parse_caption(body, strlen(body), 4, 40, &req, err, sizeof err) == 0, "%s: %s", forms[f], err);
            CHECK_MSG(req.gen.early_stopping == want_es[f], "early_stopping %s parsed as %d", forms[f], (int)req.gen.early_stopping);
            mmt_caption_request_free(&req);
        }
    }
    for (int e = 0; e < 2; e++) {
        case_init(&c, 1, 2, 1);
        c.gen.num_beams = 4, c.gen.max_new_tokens = 20;
        c.gen.early_stopping = e ? MMT_GEN_EARLY_STOPPING_NEVER : MMT_GEN_EARLY_STOPPING_TRUE;
        run_case(&c, e ? "beams 4, LoRA, early_stopping never" : "beams 4, LoRA, early_stopping true");
        case_free(&c);
    }
    case_init(&c, 0, 3, 1);
    c.gen.do_sample = 1, c.gen.seed = 42, c.gen.temperature = 0.9, c.gen.top_k = 10, c.gen.top_p = 0.95;
    run_case(&c, "sampling, seed 42, base");
    case_free(&c);
    case_init(&c, 1, 2, 2);
    c.gen.do_sample = 1, c.gen.seed = 5, c.gen.max_new_tokens = 20, c.gen.min_new_tokens = 8;
    run_case(&c, "sampling, seed 5, LoRA, min 8");
    case_free(&c);
    /* word lists, as `caption --allowed-words / --bad-words` files give them */
    static const char *const lexicon[] = {"a", "cat", "of", "the", "red", "photo", "blue circle"};
    case_init(&c, 0, 3, 0);
    c.words = lexicon, c.n_words = 7, c.words_allowed = 1;
    run_case(&c, "greedy, base, allowed words");
    for (int i = 0; i < 3; i++) { /* and the captions are made of them */
        char copy[4096], *save = NULL;
        snprintf(copy, sizeof copy, "%s", c.want[i] ? c.want[i] : "");
        for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
        {
            char bar[80];
            snprintf(bar, sizeof bar, "|%s|", w);
            CHECK_MSG(strstr("|a|cat|of|the|red|photo|blue|circle|", bar), "'%s' is not an allowed word", w);
        }
    }
    case_free(&c);
    case_init(&c, 1, 2, 1);
    c.words = lexicon, c.n_words = 3, c.words_allowed = 1, c.gen.num_beams = 2;
    run_case(&c, "beams 2, LoRA, allowed words");
    case_free(&c);
    static const char *const banned[] = {"a", "the"};
    case_init(&c, 2, 2, 0);
    c.words = banned, c.n_words = 2, c.gen.do_sample = 1, c.gen.seed = 9;
    run_case(&c, "sampling, prefix, bad words");
    case_free(&c);
}

/* The real binary once: `mmtune caption --adapter lora --json` equals /v1/caption. */
static void test_equals_cli(void) {
    if (access(MMT_BINARY, X_OK) != 0) {
        printf("     (no %s: skipped)\n", MMT_BINARY);
        return;
    }
    cap_case c;
    case_init(&c, 1, 2, 0);
    c.prompt = "a";
    case_body(&c);
    c.got = call("POST", "/v1/caption", c.body);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s caption --model %s --adapter %s --image %s/%s --image %s/%s --prompt a --max-new-tokens 12 --json",
             MMT_BINARY, CAP, lora_dir, IMAGES, image_names[0], IMAGES, image_names[1]);
    FILE *f = popen(cmd, "r");
    char line[4096];
    for (int i = 0; f && i < 2 && fgets(line, sizeof line, f); i++) {
        mmt_json_doc *doc = NULL;
        CHECK_OK(mmt_json_parse(line, strlen(line), "cli", &doc));
        const mmt_json *cap = doc ? mmt_json_get(mmt_json_root(doc), "caption") : NULL;
        if (cap) c.want[i] = strdup(cap->string);
        mmt_json_free(doc);
    }
    if (f) CHECK(pclose(f) == 0);
    if (case_check(&c, "the CLI")) printf("     /v1/caption = mmtune caption: '%s' / '%s'\n", c.want[0], c.want[1]);
    case_free(&c);
}

#define N_CLIENTS 18

typedef struct client {
    cap_case *c;
    int delay_us;
} client;

static void *client_main(void *arg) {
    client *cl = arg;
    usleep((useconds_t)cl->delay_us);
    cl->c->got = call("POST", "/v1/caption", cl->c->body);
    return NULL;
}

/* N_CLIENTS cases of every kind, their expected captions made once. */
static cap_case *make_mixed_cases(int long_first) {
    cap_case *cases = calloc(N_CLIENTS, sizeof *cases);
    for (int k = 0; k < N_CLIENTS; k++) {
        cap_case *c = &cases[k];
        case_init(c, k % 3, 1 + k % 3, k);
        c->gen.max_new_tokens = 6 + (k * 7) % 28;
        c->gen.min_new_tokens = c->gen.max_new_tokens / 2;
        if (k % 4 == 1) c->prompt = "a";
        if (k % 4 == 2) c->gen.do_sample = 1, c->gen.seed = (uint64_t)k, c->gen.top_k = 20;
        if (k % 6 == 5) c->gen.num_beams = 2;
        if (k == 0 && long_first) c->n_images = 4, c->gen.max_new_tokens = c->gen.min_new_tokens = 36;
        library_captions(c);
        case_body(c);
    }
    return cases;
}

static void fire(cap_case *cases, int stagger_us) {
    pthread_t th[N_CLIENTS];
    client cl[N_CLIENTS];
    for (int k = 0; k < N_CLIENTS; k++) {
        response_free(&cases[k].got);
        cases[k].got = (response){0};
        cl[k] = (client){&cases[k], k * stagger_us};
        pthread_create(&th[k], NULL, client_main, &cl[k]);
    }
    for (int k = 0; k < N_CLIENTS; k++) pthread_join(th[k], NULL);
}

static void test_concurrent_clients(void) {
    cap_case *cases = make_mixed_cases(1);
    double joins_running = 0, most = 0;
    int round = 0, all_ok = 1;
    for (; round < 20 && joins_running <= 0; round++) {
        fire(cases, round % 2 ? 150 : 40);
        for (int k = 0; k < N_CLIENTS; k++) {
            char what[64];
            snprintf(what, sizeof what, "round %d client %d", round, k);
            all_ok &= case_check(&cases[k], what);
        }
        response st = call("GET", "/v1/caption/status", NULL);
        joins_running = json_field(st.body, "joins_running");
        most = json_field(st.body, "most_rows_per_step");
        CHECK(json_field(st.body, "running_rows") == 0);
        response_free(&st);
    }
    CHECK_MSG(joins_running > 0, "no request joined a running decoding in %d rounds", round);
    CHECK(most > 1);
    printf("     %d rounds of %d clients, all correct: %s; requests joined mid-decoding %.0f times, up to %.0f rows "
           "per step\n", round, N_CLIENTS, all_ok ? "yes" : "no", joins_running, most);
    response m = call("GET", "/metrics", NULL);
    CHECK(m.body && strstr(m.body, "endpoint=\"/v1/caption\""));
    CHECK(m.body && strstr(m.body, "mmtune_generated_tokens_total"));
    response_free(&m);
    for (int k = 0; k < N_CLIENTS; k++) case_free(&cases[k]);
    free(cases);
}

static void expect_error(const char *method, const char *path, const char *body, int status, const char *needle) {
    response r = call(method, path, body);
    CHECK_MSG(r.status == status && r.body && strstr(r.body, needle) && strstr(r.body, "\"error\""),
              "%s %s %.60s: %d %s (wanted %d with '%s')", method, path, body ? body : "", r.status, r.body ? r.body : "",
              status, needle);
    CHECK(!r.body || !strchr(r.body, '\n') || strchr(r.body, '\n') == r.body + strlen(r.body) - 1); /* one line */
    response_free(&r);
}

static void test_bad_requests(void) {
    static char body[1 << 18];
    expect_error("POST", "/v1/caption", "{\"images\": []}", 400, "one or more images");
    expect_error("POST", "/v1/caption", "{\"prompt\": \"a\"}", 400, "images");
    expect_error("POST", "/v1/caption", "{\"images\": [\"@@@@\"]}", 400, "base64");
    expect_error("POST", "/v1/caption", "{\"images\": [{\"text\": \"a\"}]}", 400, "expected an image");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8gd29ybGQ=\"]}", 400, "not an image");
    snprintf(body, sizeof body, "{\"images\": [\"%.64s\"]}", image_b64[0]); /* a truncated JPEG */
    expect_error("POST", "/v1/caption", body, 400, "image 0");
    snprintf(body, sizeof body, "{\"images\": [\"aGVsbG8=\"], \"max_new_tokens\": 0}");
    expect_error("POST", "/v1/caption", body, 400, "max_new_tokens");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"max_new_tokens\": 41}", 400, "1..40");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"max_new_tokens\": 2.5}", 400, "whole number");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"model\": \"nope\"}", 404, "nope");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"max_tokens\": 5}", 400, "unknown field");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"", 400, "request body");
    expect_error("POST", "/v1/caption", "[1, 2]", 400, "JSON object");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"do_sample\": 1}", 400, "true or false");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"early_stopping\": \"maybe\"}", 400,
                 "true, false or \\\"never\\\"");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"prompt\": 5}", 400, "\\\"prompt\\\" must be a string");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"seed\": 9223372036854775808}", 400,
                 "\\\"seed\\\" is out of range; it must be 0..9223372036854775807");
    expect_error("POST", "/v1/caption", "{\"images\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"https://x/c.jpg\"}}]}",
                 400, "only data: URIs");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"nmu_beams\": null}", 400, "unknown field");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"num_beams\": 17}", 400, "num_beams");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"allowed_words\": \"a\"}", 400, "list of 1..10000 words");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"allowed_words\": []}", 400, "allowed_words");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"bad_words\": [\"a\", 3]}", 400, "item 1");
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"bad_words\": [\"a\"], \"allowed_words\": [\"b\"]}", 400,
                 "exclude each other");
    snprintf(body, sizeof body, "{\"images\": [\"%s\"], \"allowed_words\": [\"  \", \" \"]}", image_b64[1]);
    expect_error("POST", "/v1/caption", body, 400, "allowed_words: no words");
    /* settings checked against the model once the images are in */
    snprintf(body, sizeof body, "{\"images\": [\"%s\"], \"do_sample\": true, \"top_p\": 1.5}", image_b64[1]);
    expect_error("POST", "/v1/caption", body, 400, "top_p");
    snprintf(body, sizeof body, "{\"images\": [\"%s\"], \"temperature\": -1}", image_b64[1]);
    expect_error("POST", "/v1/caption", body, 400, "temperature");
    /* the prefix adapter leaves 45 text positions: a prompt of 9 and 40 new tokens do not fit */
    snprintf(body, sizeof body, "{\"images\": [\"%s\"], \"model\": \"prefix\", \"prompt\": \"a blue rocket with a red "
             "star and a cat\", \"max_new_tokens\": 40}", image_b64[1]);
    expect_error("POST", "/v1/caption", body, 400, "text positions");
    mmt_strbuf many = {0};
    mmt_strbuf_printf(&many, "{\"images\": [");
    for (int i = 0; i < 300; i++) mmt_strbuf_printf(&many, "%s\"aGVsbG8=\"", i ? ", " : "");
    mmt_strbuf_printf(&many, "]}");
    expect_error("POST", "/v1/caption", many.data, 413, "over the limit");
    mmt_strbuf_free(&many);
    expect_error("GET", "/v1/caption", NULL, 405, "POST");
    expect_error("GET", "/v1/caption/nothing", NULL, 404, "no endpoint");
    expect_error("DELETE", "/v1/caption/adapters/nope", NULL, 404, "nope");
    expect_error("POST", "/v1/caption/adapters", "{\"name\": \"x\", \"path\": \"/nonexistent\"}", 400, "nonexistent");
    expect_error("POST", "/v1/caption/adapters", "{\"name\": \"lora\", \"path\": \"/nonexistent\"}", 400, "nonexistent");
    /* and the server still captions */
    cap_case c;
    case_init(&c, 0, 1, 2);
    run_case(&c, "after the bad requests");
    case_free(&c);
}

static void test_adapters_while_serving(void) {
    char body[600];
    snprintf(body, sizeof body, "{\"name\": \"prefix\", \"path\": \"%s\"}", prefix_dir);
    response r = call("POST", "/v1/caption/adapters", body);
    CHECK_MSG(r.status == 201, "load: %d %s", r.status, r.body ? r.body : "");
    response_free(&r);
    r = call("POST", "/v1/caption/adapters", body);
    CHECK(r.status == 409);
    response_free(&r);
    /* the captioner folder's name means the base in requests: an adapter cannot take it */
    snprintf(body, sizeof body, "{\"name\": \"tiny-cap\", \"path\": \"%s\"}", prefix_dir);
    r = call("POST", "/v1/caption/adapters", body);
    CHECK_MSG(r.status == 409 && r.body && strstr(r.body, "already the captioner's name"), "%d %s", r.status, r.body);
    response_free(&r);
    r = call("GET", "/v1/caption/adapters", NULL);
    CHECK(r.status == 200 && r.body && strstr(r.body, "\"prefix\"") && strstr(r.body, "\"lora\"") &&
          strstr(r.body, "\"kind\": \"captioner\""));
    response_free(&r);
    /* the CLIP registry does not list them */
    r = call("GET", "/v1/adapters", NULL);
    CHECK(r.status == 200 && r.body && !strstr(r.body, "prefix"));
    response_free(&r);
}

static void test_unload(void) {
    response r = call("DELETE", "/v1/caption/adapters/prefix", NULL);
    CHECK(r.status == 200);
    response_free(&r);
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"], \"model\": \"prefix\"}", 404, "prefix");
    r = call("POST", "/v1/caption/adapters", "{\"name\": \"prefix\", \"path\": \"/x\"}");
    CHECK(r.status == 400);
    response_free(&r);
}

static void test_no_captioner(void) {
    mmt_server *s = start_server(0, 8);
    expect_error("POST", "/v1/caption", "{\"images\": [\"aGVsbG8=\"]}", 404, "no captioner loaded (--captioner)");
    mmt_server_stop(s, 5);
}

/* A stop while requests decode: every accepted request is answered, correctly. */
static void test_stop_in_flight(void) {
    mmt_server *s = start_server(1, 4);
    if (!s) return;
    char body[600];
    snprintf(body, sizeof body, "{\"name\": \"prefix\", \"path\": \"%s\"}", prefix_dir);
    response r = call("POST", "/v1/caption/adapters", body);
    CHECK(r.status == 201);
    response_free(&r);
    cap_case *cases = make_mixed_cases(1);
    pthread_t th[N_CLIENTS];
    client cl[N_CLIENTS];
    for (int k = 0; k < N_CLIENTS; k++) {
        cl[k] = (client){&cases[k], 0};
        pthread_create(&th[k], NULL, client_main, &cl[k]);
    }
    /* wait until every request is in (answered or in flight), then stop */
    for (int i = 0; i < 5000; i++) {
        response st = call("GET", "/v1/caption/status", NULL);
        double in = json_field(st.body, "requests_in_flight"), done = json_field(st.body, "requests");
        response_free(&st);
        if (in + done >= N_CLIENTS + 0.5) break;
        usleep(200);
    }
    mmt_server_stop(s, 30);
    int answered = 0;
    for (int k = 0; k < N_CLIENTS; k++) {
        pthread_join(th[k], NULL);
        char what[64];
        snprintf(what, sizeof what, "stop: client %d", k);
        answered += case_check(&cases[k], what);
        case_free(&cases[k]);
    }
    printf("     stopped with requests in flight: %d of %d answered correctly\n", answered, N_CLIENTS);
    free(cases);
}

/* The web page: /?image=DATA_URI&action=caption loads the image as a drop would and presses
 * Caption; the caption it shows is the library's (headless Chromium, the DOM checked). */
static void test_page_caption(void) {
    if (system("command -v chromium >/dev/null 2>&1") != 0) {
        printf("     chromium is not installed: the page is not driven\n");
        return;
    }
    cap_case c;
    case_init(&c, 0, 1, 2); /* camera_gray.png, the base captioner, the page's settings: */
    c.gen.max_new_tokens = 30; /* the service's defaults */
    library_captions(&c);
    char *cmd = malloc(65536), dom[400];
    mmt_strbuf uri = {0}; /* the data URI, percent-encoded for the query string */
    for (const char *p = image_b64[2]; *p; p++) {
        if (*p == '+' || *p == '/' || *p == '=') mmt_strbuf_printf(&uri, "%%%02X", (unsigned char)*p);
        else mmt_strbuf_append(&uri, p, 1);
    }
    snprintf(dom, sizeof dom, "%s/page.html", root);
    snprintf(cmd, 65536,
             "cd %s && HOME=%s timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run "
             "--user-data-dir=%s/profile --virtual-time-budget=20000 --dump-dom "
             "'http://127.0.0.1:%d/?action=caption&image=data:image/png;base64,%s' >%s 2>/dev/null",
             root, root, root, http_port, uri.data, dom);
    mmt_strbuf_free(&uri);
    char want[600];
    snprintf(want, sizeof want, "<p id=\"captext\">%s</p>", c.want[0] ? c.want[0] : "?");
    /* Chromium's virtual time does not wait for the network: on a loaded machine the DOM can
     * be dumped before the caption arrives (an empty result), so up to three tries */
    char *html = NULL;
    for (int attempt = 0; attempt < 3; attempt++) {
        free(html);
        CHECK_MSG(system(cmd) == 0, "chromium failed");
        html = check_read_file(dom, NULL);
        const char *result = html ? strstr(html, "id=\"result\"></div>") : NULL;
        if (!result) break; /* something is shown: checked below */
        fprintf(stderr, "     the page had no answer yet (try %d)\n", attempt + 1);
    }
    const char *shown = html ? strstr(html, "id=\"result\"") : NULL;
    CHECK_MSG(html && strstr(html, want), "the page does not show %s; it shows %.300s", want, shown ? shown : "(nothing)");
    if (html && strstr(html, want)) printf("     the page captions camera_gray.png: '%s'\n", c.want[0]);
    free(html);
    free(cmd);
    case_free(&c);
}

int main(void) {
    CHECK(mkdtemp(root) != NULL);
    CHECK_OK(mmt_git_load(CAP, &git));
    if (!git) return check_summary();
    http_timeout_s = 120; /* a caption can take longer to answer than an embedding */
    for (int i = 0; i < 4; i++) image_b64[i] = fixture_image_base64(image_names[i]);
    make_adapters();
    mmt_server *s = start_server(1, 8);
    if (s) {
        RUN(test_adapters_while_serving);
        RUN(test_equals_library);
        RUN(test_equals_cli);
        RUN(test_concurrent_clients);
        RUN(test_bad_requests);
        RUN(test_unload);
        RUN(test_page_caption);
        mmt_server_stop(s, 10);
    }
    RUN(test_no_captioner);
    RUN(test_stop_in_flight);
    for (int i = 0; i < 4; i++) mmt_free(image_b64[i]);
    mmt_git_free(git);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    return check_summary();
}
