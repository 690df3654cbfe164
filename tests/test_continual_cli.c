/*
 * test_continual_cli.c — continual learning through the real binary (docs/continual.md), on
 * the tiny fixture CLIP and the fixture photos: task A (5 captions), then task B (the same
 * photos under other captions).
 *   - --init-adapter: a run with a learning rate of 1e-30 ends with A's adapter bytes (it
 *     starts from them); other settings (rank, alpha, method) and a missing folder are one
 *     error line naming the difference;
 *   - --save-fisher writes OUT/adapter/ewc_fisher.safetensors (tasks 1; theta* = the adapter's
 *     tensors bit for bit); B with --ewc and --save-fisher records the penalty in
 *     metrics.jsonl (0 at step 1, where the weights are theta*, then > 0) and sums the
 *     Fishers (tasks 2, every value >= A's);
 *   - --distill-from-previous: at step 1 the student is the teacher, so the loss equals a run
 *     without distillation (1e-6), while distilling to the bare base adds to it;
 *   - resume with --ewc, --replay and --distill-from-previous: resumed from the middle, the
 *     adapter bytes and every step's loss and penalty equal the uninterrupted run's; another
 *     replay file or EWC file is refused, naming continual.replay / continual.ewc;
 *   - settings errors (usage, exit 2): --ewc without a Fisher, a replay ratio that rounds to
 *     nothing or to everything, --replay-ratio alone, --distill-from-previous without
 *     --init-adapter, continual settings with the linear probe;
 *   - eval over several tasks: --data a --data b prints {"tasks": {"a": ..., "b": ...},
 *     "mean": ...}, each task's object byte for byte the single --data output, the mean their
 *     average; --tasks names them; duplicate names and --tasks with --data are usage errors;
 *   - under mpirun -np 2 (when built with MPI), --ewc with --replay and --save-fisher equals one
 *     process training as 2 ranks (--as-ranks 2): the adapter bit for bit, the Fisher within
 *     1e-6 (its sums over ranks run in another order); eval over two tasks prints one
 *     process's bytes.
 */
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/json.h"
#include "core/safetensors.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char tmp[256], data_a[320], data_b[320], data_c[320];

static void make_data(void) {
    static const char *imgs[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg", "rocket_rgba.png"};
    static const char *a[] = {"a cat on a chair", "an astronaut smiling", "a man with a camera", "a cup of coffee",
                              "a rocket on the pad"};
    static const char *b[] = {"tabby", "space suit", "photographer", "espresso", "launch"};
    snprintf(data_a, sizeof data_a, "%s/a.jsonl", tmp);
    snprintf(data_b, sizeof data_b, "%s/b.jsonl", tmp);
    snprintf(data_c, sizeof data_c, "%s/c.jsonl", tmp);
    FILE *fa = fopen(data_a, "w"), *fb = fopen(data_b, "w"), *fc = fopen(data_c, "w");
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < 5; i++) {
            fprintf(fa, "{\"image_path\": \"%s/%s\", \"text\": \"%s\", \"label\": \"%s\"}\n", IMAGES, imgs[i], a[i], b[i]);
            fprintf(fb, "{\"image_path\": \"%s/%s\", \"text\": \"a photo of %s\", \"label\": \"%s\"}\n", IMAGES, imgs[i], b[i],
                    b[i]);
        }
    for (int i = 0; i < 4; i++) fprintf(fc, "{\"image_path\": \"%s/%s\", \"text\": \"%s\"}\n", IMAGES, imgs[i], a[4 - i]);
    fclose(fa);
    fclose(fb);
    fclose(fc);
}

#define TRAIN "train --model " MODEL " --quiet --batch-size 4 --lr 1e-2 --seed 3 --lora-r 2 "

/* The value after "key": in the n-th (0-based) line of text that has it; NAN when absent. */
static double field(const char *text, const char *key, int n) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n'), *hit = strstr(p, pat);
        if (hit && (!nl || hit < nl)) {
            if (n-- == 0) return strtod(hit + strlen(pat), NULL);
        }
        p = nl ? nl + 1 : NULL;
    }
    return NAN;
}

static char *file_text(const char *fmt, ...) {
    char p[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    return check_read_file(p, NULL);
}

static void test_init_adapter_and_fisher(void) {
    int rc = run(TRAIN "--data %s --out %s/A --steps 6 --save-fisher", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    char path[512];
    snprintf(path, sizeof path, "%s/A/adapter/ewc_fisher.safetensors", tmp);
    mmt_safetensors *f = NULL, *ad = NULL;
    char apath[512];
    snprintf(apath, sizeof apath, "%s/A/adapter/adapter_model.safetensors", tmp);
    CHECK_OK(mmt_safetensors_open(path, &f));
    CHECK_OK(mmt_safetensors_open(apath, &ad));
    if (f && ad) {
        CHECK(!strcmp(mmt_safetensors_metadata(f, "tasks"), "1") && !strcmp(mmt_safetensors_metadata(f, "mmtune"), "ewc"));
        CHECK(f->n_tensors == 2 * ad->n_tensors);
        for (int64_t i = 0; i < ad->n_tensors; i++) { /* theta* is the adapter */
            char key[512];
            snprintf(key, sizeof key, "theta.%s", ad->tensors[i].name);
            const mmt_st_tensor *t = mmt_safetensors_find(f, key);
            CHECK_MSG(t && t->numel == ad->tensors[i].numel &&
                          memcmp(t->data, ad->tensors[i].data, (size_t)t->numel * sizeof(float)) == 0,
                      "%s", key);
        }
    }
    mmt_safetensors_close(f);
    mmt_safetensors_close(ad);
    /* a vanishing learning rate keeps A's weights: the run started from them */
    rc = run(TRAIN "--data %s --out %s/B0 --steps 1 --lr 1e-30 --warmup-steps 0 --init-adapter %s/A/adapter", data_b, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    char b0[512];
    snprintf(b0, sizeof b0, "%s/B0/adapter/adapter_model.safetensors", tmp);
    CHECK_MSG(check_same_file(apath, NULL, b0), "the run did not start from the initial adapter");
    /* without it the same run ends elsewhere (LoRA's B starts at 0) */
    rc = run(TRAIN "--data %s --out %s/B1 --steps 1 --lr 1e-30 --warmup-steps 0", data_b, tmp);
    snprintf(b0, sizeof b0, "%s/B1/adapter/adapter_model.safetensors", tmp);
    CHECK(rc == 0 && !check_same_file(apath, NULL, b0));
    /* other settings */
    rc = run(TRAIN "--data %s --out %s/bad --steps 1 --lora-r 4 --init-adapter %s/A/adapter", data_b, tmp, tmp);
    CHECK_MSG(rc == 1 && count_lines(err_text) == 1 && strstr(err_text, "r (it has 2, this run 4)"), "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/bad --steps 1 --lora-alpha 4 --init-adapter %s/A/adapter", data_b, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "lora_alpha"), "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/bad --steps 1 --method ia3 --init-adapter %s/A/adapter", data_b, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "peft_type"), "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/bad --steps 1 --init-adapter %s/nowhere", data_b, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "nowhere: not a folder"), "%s", err_text);
    CHECK(!exists("%s/bad/run.json", tmp));
}

static void test_ewc_penalty_and_fisher_sum(void) {
    int rc = run(TRAIN "--data %s --out %s/B --steps 6 --init-adapter %s/A/adapter --ewc 50 --save-fisher", data_b, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    char *m = file_text("%s/B/metrics.jsonl", tmp);
    CHECK(m && field(m, "penalty", 0) == 0 && field(m, "penalty", 5) > 0);
    free(m);
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/A/adapter/ewc_fisher.safetensors", tmp);
    snprintf(pb, sizeof pb, "%s/B/adapter/ewc_fisher.safetensors", tmp);
    mmt_safetensors *a = NULL, *b = NULL;
    CHECK_OK(mmt_safetensors_open(pa, &a));
    CHECK_OK(mmt_safetensors_open(pb, &b));
    if (a && b) {
        CHECK(!strcmp(mmt_safetensors_metadata(b, "tasks"), "2"));
        int grew = 0;
        for (int64_t i = 0; i < a->n_tensors; i++) {
            if (strncmp(a->tensors[i].name, "fisher.", 7) != 0) continue;
            const mmt_st_tensor *tb = mmt_safetensors_find(b, a->tensors[i].name);
            CHECK(tb && tb->numel == a->tensors[i].numel);
            if (!tb || tb->numel != a->tensors[i].numel) continue;
            const float *x = a->tensors[i].data, *y = tb->data;
            for (int64_t j = 0; j < tb->numel; j++) {
                CHECK(y[j] >= x[j]);
                grew |= y[j] > x[j];
            }
        }
        CHECK(grew);
    }
    mmt_safetensors_close(a);
    mmt_safetensors_close(b);
    /* --ewc-from names the state explicitly; a state from other settings is refused */
    rc = run(TRAIN "--data %s --out %s/B2 --steps 2 --ewc 50 --ewc-from %s/B/adapter", data_b, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/bad --steps 2 --targets q_proj --ewc 5 --ewc-from %s/A/adapter", data_b, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "which this run does not train"), "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/bad --steps 2 --ewc 5 --ewc-from %s", data_b, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "--save-fisher"), "%s", err_text);
}

static void test_distill_from_previous(void) {
    const char *common = "--steps 2 --init-adapter";
    int rc = run(TRAIN "--data %s --out %s/D0 %s %s/A/adapter", data_b, tmp, common, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/D1 %s %s/A/adapter --distill 2 --distill-from-previous", data_b, tmp, common, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/D2 %s %s/A/adapter --distill 2", data_b, tmp, common, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    char *m0 = file_text("%s/D0/metrics.jsonl", tmp), *m1 = file_text("%s/D1/metrics.jsonl", tmp),
         *m2 = file_text("%s/D2/metrics.jsonl", tmp);
    double l0 = field(m0, "loss", 0), l1 = field(m1, "loss", 0), l2 = field(m2, "loss", 0);
    CHECK_MSG(fabs(l1 - l0) <= 1e-6 * fabs(l0), "step 1: %.9g with the previous model as teacher, %.9g without", l1, l0);
    CHECK_MSG(l2 > l0 + 1e-4, "step 1: %.9g distilling to the base, %.9g without", l2, l0);
    CHECK(field(m1, "loss", 1) != field(m0, "loss", 1)); /* the term acts once the student moves */
    free(m0);
    free(m1);
    free(m2);
}

/* A run folder copied and cut back to its checkpoint at `step`, to be resumed. */
static void cut_copy(const char *from, const char *to, int last) {
    CHECK(sh("rm -rf %s/%s && cp -r %s/%s %s/%s && rm -rf %s/%s/ckpt-%d %s/%s/adapter", tmp, to, tmp, from, tmp, to, tmp, to,
             last, tmp, to) == 0);
}

static void test_resume_is_exact(void) {
    char args[2048];
    snprintf(args, sizeof args,
             TRAIN "--data %s --steps 12 --save-every 6 --init-adapter %s/A/adapter --ewc 50 --replay %s --replay-ratio 0.25 "
                   "--distill 1 --distill-from-previous --lora-dropout 0.1",
             data_b, tmp, data_a);
    int rc = run("%s --out %s/R", args, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    cut_copy("R", "R2", 12);
    rc = run("%s --out %s/R2 --resume %s/R2", args, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/R/adapter/adapter_model.safetensors", tmp);
    snprintf(b, sizeof b, "%s/R2/adapter/adapter_model.safetensors", tmp);
    CHECK_MSG(check_same_file(a, NULL, b), "the resumed adapter differs from the uninterrupted run's");
    char *ma = file_text("%s/R/metrics.jsonl", tmp), *mb = file_text("%s/R2/metrics.jsonl", tmp);
    CHECK(count_lines(ma) == 12 && count_lines(mb) == 12);
    for (int i = 0; i < 12; i++) {
        CHECK(field(ma, "loss", i) == field(mb, "loss", i));
        CHECK(field(ma, "penalty", i) == field(mb, "penalty", i));
    }
    CHECK(field(ma, "penalty", 11) > 0);
    free(ma);
    free(mb);
    /* other files are another run */
    cut_copy("R", "R3", 12);
    char other[2048];
    snprintf(other, sizeof other,
             TRAIN "--data %s --steps 12 --save-every 6 --init-adapter %s/A/adapter --ewc 50 --replay %s --replay-ratio 0.25 "
                   "--distill 1 --distill-from-previous --lora-dropout 0.1",
             data_b, tmp, data_c);
    rc = run("%s --out %s/R3 --resume %s/R3", other, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "continual.replay"), "%s", err_text);
    snprintf(other, sizeof other,
             TRAIN "--data %s --steps 12 --save-every 6 --init-adapter %s/A/adapter --ewc 50 --ewc-from %s/B/adapter "
                   "--replay %s --replay-ratio 0.25 --distill 1 --distill-from-previous --lora-dropout 0.1",
             data_b, tmp, tmp, data_a);
    rc = run("%s --out %s/R3 --resume %s/R3", other, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "continual.ewc"), "%s", err_text);
    rc = run("%s --out %s/R3 --resume %s/R3 --ewc 40", args, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "ewc_lambda"), "%s", err_text);
}

static void test_settings_errors(void) {
    static const char *const bad[] = {
        "--ewc 5",                                  /* no Fisher */
        "--replay %s --replay-ratio 0.1",           /* 0.4 of a batch of 4: none */
        "--replay %s --replay-ratio 0.9",           /* all of it */
        "--replay-ratio 0.5",                       /* no replay set */
        "--replay %s",                              /* no ratio */
        "--distill 1 --distill-from-previous",      /* no teacher */
        "--method linear-probe --replay %s --replay-ratio 0.5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char extra[512];
        snprintf(extra, sizeof extra, bad[i], data_a);
        int rc = run(TRAIN "--data %s --out %s/bad %s", data_b, tmp, extra);
        CHECK_MSG(rc == 2 && count_lines(err_text) == 1, "%s: exit %d: %s", extra, rc, err_text);
    }
    int rc = run(TRAIN "--data %s --out %s/bad --replay %s/none.jsonl --replay-ratio 0.5", data_b, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "none.jsonl"), "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/RP --steps 3 --replay %s --replay-ratio 0.5", data_b, tmp, data_a);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run("train --help");
    CHECK(rc == 0 && out_text && strstr(out_text, "--init-adapter") && strstr(out_text, "--ewc LAMBDA") &&
          strstr(out_text, "--replay-ratio") && strstr(out_text, "--save-fisher") && strstr(out_text, "--distill-from-previous"));
}

static void test_eval_several_tasks(void) {
    char single_a[4096] = "", single_b[4096] = "";
    const char *flags = "--zero-shot --adapter";
    int rc = run("eval --model " MODEL " --data %s %s %s/B/adapter", data_a, flags, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    if (out_text) snprintf(single_a, sizeof single_a, "%s", out_text);
    rc = run("eval --model " MODEL " --data %s %s %s/B/adapter", data_b, flags, tmp);
    if (out_text) snprintf(single_b, sizeof single_b, "%s", out_text);
    char outfile[512];
    snprintf(outfile, sizeof outfile, "%s/tasks.json", tmp);
    rc = run("eval --model " MODEL " --data %s --data %s %s %s/B/adapter --out %s", data_a, data_b, flags, tmp, outfile);
    CHECK_MSG(rc == 0 && count_lines(out_text) == 1, "%s", err_text);
    char *written = check_read_file(outfile, NULL);
    CHECK(written && out_text && !strcmp(written, out_text));
    free(written);
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse(out_text ? out_text : "", out_text ? strlen(out_text) : 0, "eval", &doc));
    if (doc) {
        const mmt_json *tasks = mmt_json_get(mmt_json_root(doc), "tasks"), *mean = mmt_json_get(mmt_json_root(doc), "mean");
        CHECK(tasks && tasks->len == 2 && !strcmp(tasks->keys[0], "a") && !strcmp(tasks->keys[1], "b"));
        const mmt_json *za = mmt_json_get(mmt_json_get(tasks, "a"), "zero_shot_accuracy");
        const mmt_json *zb = mmt_json_get(mmt_json_get(tasks, "b"), "zero_shot_accuracy");
        const mmt_json *zm = mmt_json_get(mean, "zero_shot_accuracy"), *rm = mmt_json_get(mean, "i2t_recall_at_1");
        CHECK(za && zb && zm && rm && fabs(zm->number - (za->number + zb->number) / 2) < 1e-6);
        CHECK(!mmt_json_get(mean, "pairs") && !mmt_json_get(mean, "zero_shot_per_class"));
    }
    mmt_json_free(doc);
    /* each task's object is the single --data output */
    single_a[strcspn(single_a, "\n")] = '\0';
    single_b[strcspn(single_b, "\n")] = '\0';
    CHECK(out_text && single_a[0] && strstr(out_text, single_a) && single_b[0] && strstr(out_text, single_b));
    /* names from --tasks */
    rc = run("eval --model " MODEL " --tasks first=%s,second=%s", data_a, data_b);
    CHECK_MSG(rc == 0 && strstr(out_text, "{\"tasks\": {\"first\": {") && strstr(out_text, "\"second\": {"), "%s", err_text);
    rc = run("eval --model " MODEL " --data %s --data %s/../%s/a.jsonl", data_a, tmp, strrchr(tmp, '/') + 1);
    CHECK_MSG(rc == 2 && strstr(err_text, "two tasks are named 'a'"), "%s", err_text);
    rc = run("eval --model " MODEL " --data %s --tasks x=%s", data_a, data_b);
    CHECK(rc == 2 && strstr(err_text, "not both"));
    rc = run("eval --model " MODEL " --tasks x%s", data_b);
    CHECK(rc == 2 && strstr(err_text, "NAME=FILE"));
}

static void test_data_parallel(void) {
    if (!MMT_MPIRUN[0]) {
        fprintf(stderr, "note: no mpirun at build time: the data-parallel check is skipped\n");
        return;
    }
    char args[2048];
    snprintf(args, sizeof args,
             "train --model " MODEL " --quiet --batch-size 2 --lr 1e-2 --seed 3 --lora-r 2 --data %s --steps 5 "
             "--init-adapter %s/A/adapter --ewc 50 --replay %s --replay-ratio 0.5 --save-fisher --loader-workers 0",
             data_b, tmp, data_a);
    int rc = sh("cd %s && OMP_NUM_THREADS=1 %s --allow-run-as-root --oversubscribe -np 2 %s %s --out %s/P2 >%s/mpi.out 2>&1",
                tmp, MMT_MPIRUN, MMT_BINARY, args, tmp, tmp);
    char *log = file_text("%s/mpi.out", tmp);
    CHECK_MSG(rc == 0, "mpirun: %s", log ? log : "");
    free(log);
    rc = sh("cd %s && OMP_NUM_THREADS=1 %s %s --as-ranks 2 --out %s/P1 >%s/one.out 2>&1", tmp, MMT_BINARY, args, tmp, tmp);
    CHECK(rc == 0);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/P2/adapter/adapter_model.safetensors", tmp);
    snprintf(b, sizeof b, "%s/P1/adapter/adapter_model.safetensors", tmp);
    CHECK_MSG(check_same_file(a, NULL, b), "2 ranks and --as-ranks 2 ended with different adapters");
    char *m2 = file_text("%s/P2/metrics.jsonl", tmp), *m1 = file_text("%s/P1/metrics.jsonl", tmp);
    for (int i = 0; i < 5; i++) CHECK(field(m2, "penalty", i) == field(m1, "penalty", i) && field(m2, "loss", i) == field(m1, "loss", i));
    free(m1);
    free(m2);
    snprintf(a, sizeof a, "%s/P2/adapter/ewc_fisher.safetensors", tmp);
    snprintf(b, sizeof b, "%s/P1/adapter/ewc_fisher.safetensors", tmp);
    mmt_safetensors *fa = NULL, *fb = NULL;
    CHECK_OK(mmt_safetensors_open(a, &fa));
    CHECK_OK(mmt_safetensors_open(b, &fb));
    double worst = 0;
    for (int64_t i = 0; fa && fb && i < fa->n_tensors; i++) {
        const mmt_st_tensor *x = &fa->tensors[i], *y = mmt_safetensors_find(fb, x->name);
        CHECK(y && y->numel == x->numel);
        for (int64_t j = 0; y && j < x->numel && y->numel == x->numel; j++) {
            double u = ((const float *)x->data)[j], v = ((const float *)y->data)[j];
            double rel = fabs(u - v) / fmax(1e-12, fabs(v));
            if (rel > worst) worst = rel;
        }
    }
    CHECK_MSG(fa && fb && worst <= 1e-6, "Fisher on 2 ranks vs one process: worst relative difference %g", worst);
    mmt_safetensors_close(fa);
    mmt_safetensors_close(fb);
    /* eval over two tasks: the ranks share each task's batches, rank 0 prints one process's bytes */
    rc = sh("cd %s && %s eval --model " MODEL " --data %s --data %s --zero-shot --batch-size 3 --adapter P1/adapter >one.json "
            "2>/dev/null", tmp, MMT_BINARY, data_a, data_b);
    CHECK(rc == 0);
    rc = sh("cd %s && OMP_NUM_THREADS=1 %s --allow-run-as-root --oversubscribe -np 2 %s eval --model " MODEL " --data %s --data %s "
            "--zero-shot --batch-size 3 --adapter P1/adapter >two.json 2>/dev/null", tmp, MMT_MPIRUN, MMT_BINARY, data_a, data_b);
    CHECK(rc == 0);
    char one[512], two[512];
    snprintf(one, sizeof one, "%s/one.json", tmp);
    snprintf(two, sizeof two, "%s/two.json", tmp);
    CHECK_MSG(check_same_file(one, NULL, two), "eval over two tasks under mpirun -np 2 differs from one process");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_continual_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    make_data();
    RUN(test_init_adapter_and_fisher);
    RUN(test_ewc_penalty_and_fisher_sum);
    RUN(test_distill_from_previous);
    RUN(test_resume_is_exact);
    RUN(test_settings_errors);
    RUN(test_eval_several_tasks);
    RUN(test_data_parallel);
    cli_run_cleanup();
    int failed = check_summary();
    if (!failed) sh("rm -rf %s", tmp);
    return failed;
}
