/*
 * test_dist_eval.c — `mmtune eval` and `mmtune index` split over the ranks of an MPI job
 * (tools/cli/shard.h), run as a user runs them (`mpirun -np N mmtune ...`, OMP_NUM_THREADS=1
 * per rank) on the embedded default models (models/mmtune-clip-tiny, models/mmtune-git-tiny)
 * and `mmtune synth` data, against the same command in one process:
 *   - eval: retrieval with --match label and --zero-shot, through a LoRA adapter, --head, and
 *     a GIT captioner's captions and scores: the JSON line on stdout and the --out file are
 *     byte for byte the single process's with -np 2, with -np 3 (an uneven split), and with a
 *     rank that gets no batch at all. Tolerance: none. Each rank forms exactly the batches one
 *     process forms, so no number can differ (the printed ones carry 6 decimals; the index
 *     below compares the float32 vectors themselves);
 *   - index (--embed both, through the adapter): every file of the folder is byte-identical to
 *     the single process's index, except .lock (the writer's pid);
 *   - only rank 0 prints: one line on stdout; index progress only for rank 0's share;
 *   - bad data ends the job, never hangs it: a missing image (every rank sees it when the data
 *     is read, before any collective) and a corrupt one (only the rank that owns it meets it,
 *     while the others wait in the gather; main aborts the job) give a non-zero exit and a
 *     message naming the file well within the timeout put on mpirun.
 * Skips (exit 77) where mpirun was not found at build time.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/json.h"

#define CLIP MMT_SOURCE_DIR "/models/mmtune-clip-tiny"
#define GIT MMT_SOURCE_DIR "/models/mmtune-git-tiny"
/* far above the few seconds a run takes: a hang fails the test instead of blocking ctest */
#define TIMEOUT_S 120

static char tmp[] = "/tmp/mmt_dist_eval_XXXXXX";

/* tmp/name (four rotating buffers) */
static const char *tp(const char *name) {
    static char bufs[4][512];
    static int at;
    char *b = bufs[at++ % 4];
    snprintf(b, 512, "%s/%s", tmp, name);
    return b;
}

/* Runs `mpirun -np np mmtune <printf(fmt, ...)>` like cli_run.h's run(); returns its exit code
 * (124: killed by the timeout). */
static __attribute__((format(printf, 2, 3))) int run_ranks(int np, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 timeout %d %s --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -np %d %s %s "
             ">%s 2>%s </dev/null",
             TIMEOUT_S, MMT_MPIRUN, np, MMT_BINARY, args, out_path, err_path);
    int status = system(cmd);
    cli_run_cleanup();
    out_text = check_read_file(out_path, NULL);
    err_text = check_read_file(err_path, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Writes tmp/catalog.jsonl (each test pair as an item: id, title, image) and the test pairs
 * again with record 21 pointing at a missing image (missing.jsonl) or a corrupt one
 * (corrupt.jsonl): in the last rank's share, so the other ranks wait in the gather. */
static int derive_files(void) {
    char *text = check_read_file(tp("test.jsonl"), NULL);
    FILE *cat = fopen(tp("catalog.jsonl"), "w"), *missing = fopen(tp("missing.jsonl"), "w"),
         *corrupt = fopen(tp("corrupt.jsonl"), "w"), *bad = fopen(tp("images/test/corrupt.png"), "w");
    int ok = text && cat && missing && corrupt && bad, n = 0;
    if (bad) fputs("not a png\n", bad);
    for (char *line = text, *end; ok && line && (end = strchr(line, '\n')); line = end + 1, n++) {
        mmt_json_doc *doc = NULL;
        ok = mmt_json_parse(line, (size_t)(end - line), "test.jsonl", &doc) == MMT_OK;
        const mmt_json *r = ok ? mmt_json_root(doc) : NULL, *img = r ? mmt_json_get(r, "image_path") : NULL,
                       *txt = r ? mmt_json_get(r, "text") : NULL;
        ok = ok && img && txt && img->type == MMT_JSON_STRING && txt->type == MMT_JSON_STRING;
        mmt_strbuf title = {0};
        if (ok) mmt_strbuf_json_string(&title, txt->string, strlen(txt->string));
        if (ok) fprintf(cat, "{\"id\": \"p%d\", \"title\": %s, \"image\": \"%s\"}\n", n, title.data, img->string);
        mmt_strbuf_free(&title);
        mmt_json_free(doc);
        if (n == 20) {
            fputs("{\"image_path\": \"images/test/none.png\", \"text\": \"a ghost\"}\n", missing);
            fputs("{\"image_path\": \"images/test/corrupt.png\", \"text\": \"a ghost\"}\n", corrupt);
        }
        fwrite(line, 1, (size_t)(end - line + 1), missing);
        fwrite(line, 1, (size_t)(end - line + 1), corrupt);
    }
    FILE *files[] = {cat, missing, corrupt, bad};
    for (int i = 0; i < 4; i++)
        if (files[i]) fclose(files[i]);
    free(text);
    return ok && n == 23;
}

/* The data: 23 test pairs (17 of them labelled) and 24 training pairs drawn by synth, a LoRA
 * adapter and a linear probe trained for a moment, and the files derive_files makes. */
static int make_data(void) {
    return run("synth --out %s --split-sizes 24,0,23 --size 32", tmp) == 0 &&
           run("train --model %s --data %s --steps 2 --batch-size 8 --out %s --quiet", CLIP, tp("train.jsonl"),
               tp("lora")) == 0 &&
           run("train --model %s --data %s --method linear-probe --out %s --quiet", CLIP, tp("train_labels.jsonl"),
               tp("probe")) == 0 &&
           derive_files();
}

/* `mmtune ARGS` in one process and under -np 2 and -np 3 print the same bytes, one line (rank 0
 * alone prints), and write the same --out file; ARGS end where " --out FILE" can be added. */
static void check_same_result(const char *what, const char *args) {
    CHECK_MSG(run("%s --out %s", args, tp("one.json")) == 0, "%s, one process: %s", what, err_text);
    char *want = out_text ? strdup(out_text) : NULL;
    CHECK_MSG(want && count_lines(want) == 1, "%s: %s", what, want);
    for (int np = 2; np <= 3; np++) {
        char out_file[64];
        snprintf(out_file, sizeof out_file, "ranks%d.json", np);
        int rc = run_ranks(np, "%s --out %s", args, tp(out_file));
        CHECK_MSG(rc == 0, "%s, -np %d: exit %d: %s", what, np, rc, err_text);
        CHECK_MSG(want && out_text && !strcmp(out_text, want), "%s, -np %d printed\n%s\nnot\n%s", what, np, out_text,
                  want);
        CHECK_MSG(check_same_file(tp("one.json"), NULL, tp(out_file)), "%s, -np %d: --out differs", what, np);
    }
    free(want);
}

static void test_eval_retrieval_zero_shot(void) {
    char args[1024];
    /* 17 pairs in batches of 5: 4 batches, 2 + 2 on two ranks, 2 + 1 + 1 on three */
    snprintf(args, sizeof args, "eval --model %s --data %s --batch-size 5 --match label --zero-shot", CLIP,
             tp("test_labels.jsonl"));
    check_same_result("eval --zero-shot", args);
    CHECK(out_text && strstr(out_text, "\"zero_shot_accuracy\""));
}

static void test_eval_adapter(void) {
    char args[1024];
    snprintf(args, sizeof args, "eval --model %s --adapter %s/adapter --data %s --batch-size 4", CLIP, tp("lora"),
             tp("test.jsonl"));
    check_same_result("eval --adapter", args);
}

/* 23 pairs in batches of 16: two batches, so the third rank embeds nothing. */
static void test_eval_idle_rank(void) {
    char args[1024];
    snprintf(args, sizeof args, "eval --model %s --data %s --batch-size 16", CLIP, tp("test.jsonl"));
    check_same_result("eval with an idle rank", args);
}

static void test_eval_head(void) {
    char args[1024];
    snprintf(args, sizeof args, "eval --model %s --head %s/adapter --data %s --batch-size 3", CLIP, tp("probe"),
             tp("test_labels.jsonl"));
    check_same_result("eval --head", args);
    CHECK(out_text && strstr(out_text, "\"accuracy\""));
}

/* Every caption is in the output (--samples above the image count). */
static void test_eval_captioner(void) {
    char args[1024];
    snprintf(args, sizeof args, "eval --model %s --data %s --batch-size 4 --beams 2 --samples 100", GIT, tp("test.jsonl"));
    check_same_result("eval on a captioner", args);
    CHECK(out_text && strstr(out_text, "\"cider_d\"") && count_lines(out_text) == 1);
}

/* How often needle is in text. */
static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The files of two index folders, but .lock, hold the same bytes. */
static int same_index(const char *a, const char *b) {
    DIR *d = opendir(a);
    int files = 0, same = d != NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue; /* ., .., .lock */
        files++;
        if (!check_same_file(a, b, e->d_name)) {
            fprintf(stderr, "%s/%s differs from %s/%s\n", a, e->d_name, b, e->d_name);
            same = 0;
        }
    }
    if (d) closedir(d);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq $(ls %s | wc -l)", a, b); /* no extra file in b */
    return same && files >= 4 && sh("%s", cmd) == 0;
}

static void test_index(void) {
    CHECK_MSG(run("index --model %s --adapter %s/adapter --catalog %s --embed both --batch-size 4 --out %s", CLIP,
                  tp("lora"), tp("catalog.jsonl"), tp("index1")) == 0, "%s", err_text);
    for (int np = 2; np <= 3; np++) {
        char dir[64];
        snprintf(dir, sizeof dir, "index%d", np);
        int rc = run_ranks(np, "index --model %s --adapter %s/adapter --catalog %s --embed both --batch-size 4 --out %s",
                           CLIP, tp("lora"), tp("catalog.jsonl"), tp(dir));
        CHECK_MSG(rc == 0, "index -np %d: exit %d: %s", np, rc, err_text);
        CHECK_MSG(out_text && count_lines(out_text) == 1 && strstr(out_text, "\"count\":23"), "%s", out_text);
        /* 23 items in batches of 4 (6 batches): rank 0 has 12 items of two ranks (rank 1: 11),
         * 8 of three (rank 1: 8, rank 2: 7); only rank 0's last line is there */
        const char *mine = np == 2 ? " 12/12 items (rank 0's share, 2 ranks)" : " 8/8 items (rank 0's share, 3 ranks)";
        CHECK_MSG(count(err_text, mine) == 1, "rank 0's progress is not there once: %s", err_text);
        CHECK_MSG(count(err_text, " 11/11 items") + count(err_text, " 7/7 items") + count(err_text, " 8/8 items") ==
                      (np == 3), "another rank shows progress: %s", err_text);
        CHECK(same_index(tp("index1"), tp(dir)));
    }
}

/* A failing job: a non-zero exit, the file named, nothing on stdout, no hang. */
static void check_job_fails(const char *data, const char *needle) {
    for (int np = 2; np <= 3; np++) {
        int rc = run_ranks(np, "eval --model %s --data %s --batch-size 4", CLIP, data);
        CHECK_MSG(rc != 0 && rc != 124, "-np %d on %s: exit %d (124: it hung)", np, data, rc);
        CHECK_MSG(err_text && strstr(err_text, needle), "-np %d: the error does not name %s: %s", np, needle, err_text);
        CHECK_MSG(out_text && !out_text[0], "-np %d printed a result: %s", np, out_text);
    }
}

static void test_missing_image(void) { check_job_fails(tp("missing.jsonl"), "none.png"); }

static void test_corrupt_image(void) { check_job_fails(tp("corrupt.jsonl"), "corrupt.png"); }

int main(void) {
    if (!MMT_MPIRUN[0]) {
        printf("skipped: test_dist_eval: no mpirun at build time (install OpenMPI: scripts/install-deps.sh)\n");
        return 77;
    }
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    if (!make_data()) {
        fprintf(stderr, "test_dist_eval: could not make the data in %s: %s\n", tmp, err_text ? err_text : "");
        return 1;
    }
    RUN(test_eval_retrieval_zero_shot);
    RUN(test_eval_adapter);
    RUN(test_eval_idle_rank);
    RUN(test_eval_head);
    RUN(test_eval_captioner);
    RUN(test_index);
    RUN(test_missing_image);
    RUN(test_corrupt_image);
    cli_run_cleanup();
    sh("rm -rf %s", tmp);
    return check_summary();
}
