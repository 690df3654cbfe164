/*
 * test_train_api.c — training through the public API (mmtune.h: mmt_clip_train_adapter,
 * mmt_clip_train_adapter_on_pairs), on the embedded default model models/mmtune-clip-tiny and
 * ten pairs of the fixture photos. The reference is the real `mmtune train` binary
 * (tests/cli_run.h) with the same settings:
 *   - for LoRA (with DoRA and prompts, layers, warmup, accumulation, flips), IA3, bottleneck,
 *     prompt, prefix, visual prompt, full fine-tuning and the linear probe, the API's adapter
 *     folder equals the CLI's file for file, byte for byte (tolerance: none), and run.json
 *     records the same identity, so `mmtune train --resume` continues a run the API began;
 *   - pairs given in memory give the same adapter as the same pairs read from a file;
 *   - the adapter opens with mmt_clip_adapter_open and moves the embeddings; on_step sees
 *     every step once, in order; the summary counts steps, pairs and parameters;
 *   - the library prints nothing (stdout and stderr stay empty through a run);
 *   - two threads training over one base while a third embeds with it: each thread gets the
 *     adapter of a run alone, and the base's embeddings stay the same (ThreadSanitizer: the
 *     TSan build runs this file too);
 *   - every allocation of a short run failing in turn gives an error and leaks nothing;
 *   - bad input (NULL or empty paths, an unknown method, steps < 0, bad names, NaN, empty
 *     pairs, ...) is MMT_STATUS_INVALID_ARGUMENT with one line, and nothing is written;
 *     a missing image or data file names it; a used run folder is refused without overwrite.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/alloc.h"

#define MODEL MMT_SOURCE_DIR "/models/mmtune-clip-tiny"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"
#define N_PAIRS 10

/* a tmpfs where there is one: the runs fsync every file they write, slow on a busy disk */
static char tmp[64];
static char data[320];
static const char *image_paths[N_PAIRS], *texts[N_PAIRS];
static char image_store[N_PAIRS][300];
static mmt_clip *base;

static void make_data(void) {
    static const char *imgs[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg", "rocket_rgba.png"};
    static const char *caps[] = {"a cat on a chair", "an astronaut smiling", "a man with a camera", "a cup of coffee",
                                 "a rocket on the pad"};
    snprintf(data, sizeof data, "%s/pairs.jsonl", tmp);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < N_PAIRS; i++) {
        snprintf(image_store[i], sizeof image_store[i], "%s/%s", IMAGES, imgs[i % 5]);
        image_paths[i] = image_store[i];
        texts[i] = caps[i % 5];
        fprintf(f, "{\"image_path\": \"%s\", \"text\": \"%s\"}\n", image_paths[i], texts[i]);
    }
    fclose(f);
}

/* Whether folders a and b hold the same files (recursively) with the same bytes; *n counts
 * the files compared. Differences are reported. */
static int same_tree(const char *a, const char *b, int *n) {
    DIR *d = opendir(a);
    if (!d) return fprintf(stderr, "cannot open %s\n", a), 0;
    int same = 1, entries_a = 0, entries_b = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        entries_a++;
        char pa[1024], pb[1024];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        struct stat st;
        if (stat(pa, &st) == 0 && S_ISDIR(st.st_mode)) {
            same &= same_tree(pa, pb, n);
            continue;
        }
        size_t la = 0, lb = 0;
        char *x = check_read_file(pa, &la), *y = check_read_file(pb, &lb);
        if (!x || !y || la != lb || memcmp(x, y, la) != 0) {
            fprintf(stderr, "%s and %s differ\n", pa, pb);
            same = 0;
        }
        (*n)++;
        free(x);
        free(y);
    }
    closedir(d);
    if ((d = opendir(b))) {
        while ((e = readdir(d))) entries_b += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        closedir(d);
    }
    if (entries_a != entries_b) {
        fprintf(stderr, "%s has %d entries, %s %d\n", a, entries_a, b, entries_b);
        same = 0;
    }
    return same;
}

/* run.json from "identity" on (the run_id before it differs between runs). */
static char *identity_of(const char *run) {
    char path[400];
    snprintf(path, sizeof path, "%s/run.json", run);
    char *text = check_read_file(path, NULL), *id = text ? strstr(text, "\"identity\"") : NULL;
    char *copy = id ? strdup(id) : NULL;
    free(text);
    return copy;
}

/* The settings every case shares, as flags and as options. */
#define COMMON "--quiet --steps 3 --batch-size 4 --lr 1e-2 --seed 3 --lora-r 2 "
static void common(mmt_train_options *o) {
    mmt_train_options_default(o);
    o->steps = 3;
    o->batch_size = 4;
    o->lr = 1e-2;
    o->seed = 3;
    o->lora_r = 2;
}

static void set_lora(mmt_train_options *o) {
    o->target_modules = "q_proj,k_proj,v_proj";
    o->lora_alpha = 4;
    o->lora_dropout = 0.1;
    o->layers_to_transform = "0,1";
    o->grad_accum = 2;
    o->warmup_steps = 1;
    o->schedule = "linear";
    o->augment_flip = 1;
}
static void set_dora_prompts(mmt_train_options *o) {
    o->use_dora = 1;
    o->prompt_tokens = 2;
}
static void set_ia3(mmt_train_options *o) { o->method = "ia3"; }
static void set_bottleneck(mmt_train_options *o) {
    o->method = "adapter";
    o->adapter_reduction = 8;
    o->scope = "vision";
}
static void set_prompt(mmt_train_options *o) {
    o->method = "prompt";
    o->num_virtual_tokens = 4;
    o->visual_prompt_tokens = 2;
}
static void set_prefix(mmt_train_options *o) {
    o->method = "prefix";
    o->prefix_projection = 1;
    o->encoder_hidden_size = 16;
}
static void set_visual_prompt(mmt_train_options *o) {
    o->method = "visual-prompt";
    o->vpt_deep = 1;
}
static void set_full(mmt_train_options *o) {
    o->method = "full";
    o->steps = 2;
}
static void set_probe(mmt_train_options *o) { /* the loop settings do not apply (it would warn) */
    o->method = "linear-probe";
    o->steps = 0;
    o->lr = 1e-4;
}

typedef struct method_case {
    const char *name, *flags;
    void (*set)(mmt_train_options *o);
} method_case;

static const method_case cases[] = {
    {"lora", "--targets q_proj,k_proj,v_proj --lora-alpha 4 --lora-dropout 0.1 --layers 0,1 --grad-accum 2 "
             "--warmup-steps 1 --schedule linear --augment-flip", set_lora},
    {"dora-prompts", "--dora --prompt-tokens 2", set_dora_prompts},
    {"ia3", "--method ia3", set_ia3},
    {"adapter", "--method adapter --adapter-reduction 8 --scope vision", set_bottleneck},
    {"prompt", "--method prompt --num-virtual-tokens 4 --visual-prompt-tokens 2", set_prompt},
    {"prefix", "--method prefix --prefix-projection --prefix-hidden 16", set_prefix},
    {"visual-prompt", "--method visual-prompt --vpt-deep", set_visual_prompt},
    {"full", "--method full --steps 2", set_full},
    {"linear-probe", "--method linear-probe --steps 0 --lr 1e-4", set_probe},
};

static void test_same_adapter_as_cli(void) {
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const method_case *m = &cases[k];
        int rc = run("train --model %s --data %s --out %s/cli-%s " COMMON "%s", MODEL, data, tmp, m->name, m->flags);
        CHECK_MSG(rc == 0, "%s: mmtune train: %s", m->name, err_text ? err_text : "");
        mmt_train_options o;
        common(&o);
        m->set(&o);
        char out[400], cli_run[400], cli_adapter[420], api_adapter[420];
        snprintf(out, sizeof out, "%s/api-%s", tmp, m->name);
        snprintf(cli_run, sizeof cli_run, "%s/cli-%s", tmp, m->name);
        snprintf(cli_adapter, sizeof cli_adapter, "%s/adapter", cli_run);
        snprintf(api_adapter, sizeof api_adapter, "%s/adapter", out);
        mmt_train_summary sum;
        mmt_status s = mmt_clip_train_adapter(base, data, &o, out, &sum);
        CHECK_MSG(s == MMT_OK, "%s: %s", m->name, mmt_last_error());
        if (rc != 0 || s != MMT_OK) continue;
        int n = 0;
        if (!strcmp(m->name, "linear-probe")) {
            /* head_config.json records the fit's wall time; the head itself must agree */
            char a[500], b[500];
            snprintf(a, sizeof a, "%s/head.safetensors", cli_adapter);
            snprintf(b, sizeof b, "%s/head.safetensors", api_adapter);
            size_t la = 0, lb = 0;
            char *x = check_read_file(a, &la), *y = check_read_file(b, &lb);
            CHECK_MSG(x && y && la == lb && memcmp(x, y, la) == 0, "linear-probe: the heads differ");
            free(x);
            free(y);
        } else {
            CHECK_MSG(same_tree(cli_adapter, api_adapter, &n) && n >= 2, "%s: the adapters differ (%d files)", m->name, n);
        }
        char *ia = identity_of(cli_run), *ib = identity_of(out);
        CHECK_MSG(ia && ib && !strcmp(ia, ib), "%s: run.json identities differ:\n%s\n%s", m->name, ia ? ia : "", ib ? ib : "");
        free(ia);
        free(ib);
    }
}

static void test_cli_resumes_an_api_run(void) {
    /* the LoRA case's API run: same identity, so the CLI takes it up (it is complete: 0 steps) */
    int rc = run("train --model %s --data %s --out %s/api-lora --resume %s/api-lora " COMMON "%s", MODEL, data, tmp, tmp,
                 cases[0].flags);
    CHECK_MSG(rc == 0, "%s", err_text ? err_text : "");
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/cli-lora/adapter", tmp);
    snprintf(b, sizeof b, "%s/api-lora/adapter", tmp);
    int n = 0;
    CHECK_MSG(same_tree(a, b, &n), "the resumed run rewrote another adapter");
    /* and the API takes up the CLI's run */
    mmt_train_options o;
    common(&o);
    set_lora(&o);
    char out[400];
    snprintf(out, sizeof out, "%s/cli-lora", tmp);
    o.resume = out;
    mmt_train_summary sum;
    CHECK_OK(mmt_clip_train_adapter(base, data, &o, out, &sum));
    CHECK(sum.steps_done == 3 && sum.steps_run == 0);
}

static void test_pairs_in_memory(void) {
    mmt_train_options o;
    common(&o);
    char out[400], from_file[400];
    snprintf(out, sizeof out, "%s/memory", tmp);
    snprintf(from_file, sizeof from_file, "%s/cli-dora-prompts/adapter", tmp);
    set_dora_prompts(&o);
    mmt_train_summary sum;
    CHECK_OK(mmt_clip_train_adapter_on_pairs(base, image_paths, texts, N_PAIRS, &o, out, &sum));
    strcat(out, "/adapter");
    int n = 0;
    CHECK_MSG(same_tree(from_file, out, &n) && n >= 2, "pairs in memory train another adapter than the file (%d files)", n);
    CHECK(sum.pairs == N_PAIRS && sum.skipped == 0 && sum.steps_done == 3);
}

typedef struct step_log {
    int64_t calls, last_step, total;
    int in_order;
} step_log;

static void count_step(void *user, const mmt_train_step_info *info) {
    step_log *l = user;
    l->in_order &= info->step == l->last_step + 1 && isfinite(info->loss) && info->lr > 0;
    l->last_step = info->step;
    l->total = info->total_steps;
    l->calls++;
}

static void test_adapter_opens_and_reports(void) {
    mmt_train_options o;
    common(&o);
    o.steps = 5;
    step_log log = {0, 0, 0, 1};
    o.on_step = count_step;
    o.user = &log;
    char out[400], adapter[420];
    snprintf(out, sizeof out, "%s/opened", tmp);
    snprintf(adapter, sizeof adapter, "%s/adapter", out);
    mmt_train_summary sum;
    /* the library prints nothing: stdout and stderr go to a file meanwhile */
    char quiet_path[400];
    snprintf(quiet_path, sizeof quiet_path, "%s/printed", tmp);
    fflush(stdout);
    fflush(stderr);
    int fd = open(quiet_path, O_WRONLY | O_CREAT | O_TRUNC, 0644), saved_out = dup(1), saved_err = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    mmt_status s = mmt_clip_train_adapter(base, data, &o, out, &sum);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(fd);
    close(saved_out);
    close(saved_err);
    CHECK_MSG(s == MMT_OK, "%s", mmt_last_error());
    size_t printed = 0;
    char *text = check_read_file(quiet_path, &printed);
    CHECK_MSG(text && printed == 0, "the library printed: %s", text ? text : "");
    free(text);
    CHECK(log.calls == 5 && log.last_step == 5 && log.total == 5 && log.in_order);
    CHECK(sum.steps_done == 5 && sum.steps_run == 5 && isfinite(sum.final_loss) && sum.seconds > 0);
    CHECK(sum.trainable_params > 0 && sum.total_params > sum.trainable_params && sum.pairs == N_PAIRS);
    mmt_clip_adapter *a = NULL;
    CHECK_OK(mmt_clip_adapter_open(base, adapter, &a));
    mmt_clip_run *r = NULL;
    CHECK_OK(mmt_clip_run_create(base, &r));
    if (!a || !r) return;
    const char *t[2] = {"a cat on a chair", "a cat on a chair"};
    mmt_clip_adapter *rows[2] = {a, NULL};
    int64_t P = mmt_clip_embed_dim(base);
    float *e = malloc((size_t)(2 * P) * sizeof(float));
    CHECK_OK(mmt_clip_run_embed_texts(r, t, rows, 2, e));
    CHECK(memcmp(e, e + P, (size_t)P * sizeof(float)) != 0);
    free(e);
    mmt_clip_run_free(r);
    mmt_clip_adapter_close(a);
}

/* fn fails with status and a one-line message holding needle, and out stays absent. */
#define CHECK_REFUSED(call, status, needle, out)                                                             \
    do {                                                                                                     \
        CHECK_FAILS(call, status, needle);                                                                   \
        CHECK_MSG(mmt_last_error()[0] && !strchr(mmt_last_error(), '\n'), "not one line: %s", mmt_last_error()); \
        CHECK_MSG(!exists("%s", out), "%s was created", out);                                                \
    } while (0)

static void test_bad_input(void) {
    char out[400];
    snprintf(out, sizeof out, "%s/bad", tmp);
    mmt_train_options o;
    common(&o);
    const mmt_status INVALID = MMT_STATUS_INVALID_ARGUMENT;
    CHECK_REFUSED(mmt_clip_train_adapter(NULL, data, &o, out, NULL), INVALID, "no base model", out);
    CHECK_REFUSED(mmt_clip_train_adapter(base, NULL, &o, out, NULL), INVALID, "no data file", out);
    CHECK_REFUSED(mmt_clip_train_adapter(base, "", &o, out, NULL), INVALID, "no data file", out);
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, NULL, NULL), INVALID, "no run folder", out);
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, "", NULL), INVALID, "no run folder", out);
    o.method = "bogus";
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "--method takes lora", out);
    common(&o);
    o.steps = -1;
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "counts must be positive", out);
    common(&o);
    o.batch_size = 0;
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "counts must be positive", out);
    common(&o);
    o.seed = -3;
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "counts must be positive", out);
    common(&o);
    o.schedule = "wavy";
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "not 'wavy'", out);
    common(&o);
    o.scope = "audio";
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "not 'audio'", out);
    common(&o);
    o.layers_to_transform = "0,x";
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "got '0,x'", out);
    common(&o);
    o.method = "adapter";
    o.adapter_act = "tanh";
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "not 'tanh'", out);
    common(&o);
    o.lr = NAN;
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "--lr needs a number", out);
    common(&o);
    o.save_every = -1;
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "--save-every", out);
    common(&o);
    o.num_virtual_tokens = 0;
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "prompt token counts", out);
    common(&o);
    o.overwrite = 1;
    o.resume = out;
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "cannot go with --resume", out);
    common(&o);
    o.method = "linear-probe";
    o.resume = out;
    CHECK_REFUSED(mmt_clip_train_adapter(base, data, &o, out, NULL), INVALID, "nothing to --resume", out);
    /* pairs in memory */
    common(&o);
    const char *no_text[2] = {"a cat", NULL}, *empty_text[2] = {"a cat", ""};
    const char *missing[2] = {image_paths[0], "/nonexistent/cat.png"};
    CHECK_REFUSED(mmt_clip_train_adapter_on_pairs(base, image_paths, texts, 0, &o, out, NULL), INVALID, "no pairs", out);
    CHECK_REFUSED(mmt_clip_train_adapter_on_pairs(base, NULL, texts, 2, &o, out, NULL), INVALID, "no pairs", out);
    CHECK_REFUSED(mmt_clip_train_adapter_on_pairs(base, image_paths, no_text, 2, &o, out, NULL), INVALID, "pair 2", out);
    CHECK_REFUSED(mmt_clip_train_adapter_on_pairs(base, image_paths, empty_text, 2, &o, out, NULL), INVALID, "empty text", out);
    CHECK_REFUSED(mmt_clip_train_adapter_on_pairs(base, missing, texts, 2, &o, out, NULL), MMT_STATUS_NOT_FOUND,
                  "/nonexistent/cat.png", out);
    CHECK_REFUSED(mmt_clip_train_adapter_on_pairs(base, image_paths, texts, 2, &o, "", NULL), INVALID, "no run folder", out);
    /* a missing data file is named */
    char nowhere[400];
    snprintf(nowhere, sizeof nowhere, "%s/nowhere.jsonl", tmp);
    mmt_status s = mmt_clip_train_adapter(base, nowhere, &o, out, NULL);
    CHECK_MSG(s != MMT_OK && strstr(mmt_last_error(), nowhere), "%s", mmt_last_error());
    /* a used run folder needs overwrite */
    snprintf(out, sizeof out, "%s/api-ia3", tmp);
    s = mmt_clip_train_adapter(base, data, &o, out, NULL);
    CHECK_MSG(s != MMT_OK && strstr(mmt_last_error(), "not empty"), "%s", mmt_last_error());
    o.overwrite = 1;
    o.steps = 1;
    CHECK_OK(mmt_clip_train_adapter(base, data, &o, out, NULL));
}

typedef struct train_thread {
    char out[400];
    mmt_status status;
    char error[256];
} train_thread;

static void *train_in_thread(void *arg) {
    train_thread *t = arg;
    mmt_train_options o;
    common(&o);
    set_dora_prompts(&o);
    t->status = mmt_clip_train_adapter_on_pairs(base, image_paths, texts, N_PAIRS, &o, t->out, NULL);
    if (t->status != MMT_OK) snprintf(t->error, sizeof t->error, "%s", mmt_last_error());
    return NULL;
}

/* Two threads train over the one base while a third embeds with it: each gets the adapter a
 * run alone gets (the CLI's, byte for byte), and the base's embeddings do not change. */
static void test_threads_share_the_base(void) {
    train_thread t[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        snprintf(t[i].out, sizeof t[i].out, "%s/thread-%d", tmp, i);
        t[i].status = MMT_STATUS_INTERNAL;
        t[i].error[0] = '\0';
    }
    int64_t P = mmt_clip_embed_dim(base);
    float *first = malloc((size_t)P * sizeof(float)), *again = malloc((size_t)P * sizeof(float));
    const char *cat[1] = {"a cat on a chair"};
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(base, &run));
    CHECK_OK(mmt_clip_run_embed_texts(run, cat, NULL, 1, first));
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, train_in_thread, &t[i]);
    int same = 1;
    for (int k = 0; k < 20; k++) {
        CHECK_OK(mmt_clip_run_embed_texts(run, cat, NULL, 1, again));
        same &= memcmp(first, again, (size_t)P * sizeof(float)) == 0;
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK_MSG(same, "the base's embeddings changed while adapters trained");
    char ref[400];
    snprintf(ref, sizeof ref, "%s/cli-dora-prompts/adapter", tmp);
    for (int i = 0; i < 2; i++) {
        CHECK_MSG(t[i].status == MMT_OK, "thread %d: %s", i, t[i].error);
        char got[1400]; /* (GCC cannot bound t[i].out) */
        snprintf(got, sizeof got, "%s/adapter", t[i].out);
        int n = 0;
        CHECK_MSG(t[i].status != MMT_OK || (same_tree(ref, got, &n) && n >= 2), "thread %d trained another adapter", i);
    }
    mmt_clip_run_free(run);
    free(first);
    free(again);
}

/* Every allocation of a short run failing in turn: each run fails cleanly with a message and
 * gives back all it took (mmt_alloc_current_bytes as before; ASan's leak check in make test). */
static void test_out_of_memory(void) {
    mmt_train_options o;
    common(&o);
    o.steps = 1;
    o.batch_size = 2;
    o.loader_workers = 0; /* which allocation is the n-th must not depend on threads */
    o.overwrite = 1;
    char out[400];
    snprintf(out, sizeof out, "%s/oom", tmp);
    mmt_clip *small = NULL; /* the fixture model: less to hash and write per run than the default's */
    CHECK_OK(mmt_clip_load(MMT_FIXTURE_DIR "/clip/tiny-a", &small));
    if (!small) return;
    CHECK_OK(mmt_clip_train_adapter_on_pairs(small, image_paths, texts, 2, &o, out, NULL)); /* warm: one-time tables */
    size_t before = mmt_alloc_current_bytes();
    int64_t failures = 0, ok = 0;
    for (long n = 1; n < 100000 && !ok; n = n < 400 ? n + 1 : n + n / 8) {
        mmt_alloc_fail_after(n);
        mmt_status s = mmt_clip_train_adapter_on_pairs(small, image_paths, texts, 2, &o, out, NULL);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            ok = 1;
            break;
        }
        failures++;
        CHECK_MSG(mmt_last_error()[0] && !strchr(mmt_last_error(), '\n'), "allocation %ld: no one-line message", n);
        CHECK_MSG(mmt_alloc_current_bytes() == before, "allocation %ld failing leaks %lld bytes", n,
                  (long long)(mmt_alloc_current_bytes() - before));
    }
    CHECK(ok && failures > 100);
    CHECK(mmt_alloc_current_bytes() == before);
    mmt_clip_free(small);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/dev/shm/mmt_train_api_XXXXXX");
    if (!mkdtemp(tmp)) {
        snprintf(tmp, sizeof tmp, "/tmp/mmt_train_api_XXXXXX");
        if (!mkdtemp(tmp)) return 1;
    }
    cli_run_setup(tmp);
    cli_print_failures = 0;
    make_data();
    if (mmt_clip_load(MODEL, &base) != MMT_OK) {
        fprintf(stderr, "%s\n", mmt_last_error());
        return 1;
    }
    RUN(test_same_adapter_as_cli);
    RUN(test_cli_resumes_an_api_run);
    RUN(test_pairs_in_memory);
    RUN(test_adapter_opens_and_reports);
    RUN(test_threads_share_the_base);
    RUN(test_bad_input);
    RUN(test_out_of_memory);
    mmt_clip_free(base);
    cli_run_cleanup();
    sh("rm -rf %s", tmp);
    return check_summary();
}
