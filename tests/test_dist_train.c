/*
 * test_dist_train.c — data-parallel training under mpirun (issue 14), on the real binary.
 *
 * Data: 64 synthetic pairs (mmtune synth); model: the embedded default CLIP; LoRA on every
 * attention projection and fc1 with dropout 0.1 (so the per-rank dropout draws matter).
 * Every rank runs with OMP_NUM_THREADS=1.
 *   - mpirun -np 2 equals one process with gradient accumulation over the same two shares
 *     (`--as-ranks 2`): the loss of every step, and the adapter, bit for bit;
 *   - -np 4 (oversubscribed) equals --as-ranks 4 in one process within 1e-6 (norm-wise
 *     relative; it is in fact bitwise, and checked for that too);
 *   - --gather-with-grad on 2 ranks of 4 pairs equals one process with batches of 8 (loss of
 *     step 1 within 1e-6 relative, later steps 1e-4, adapter within 1e-5 norm-wise: the loss
 *     sums run in another order), and differs from the rank-local loss;
 *   - ZeRO-1 (--zero 1) equals plain data parallelism: the adapter and the checkpoint's full
 *     optimizer state, bit for bit;
 *   - a rank killed mid-step (SIGKILL through the crash point train.backward_done, only on
 *     rank 1): mpirun exits non-zero within 60 s, the output names the lost rank and the
 *     other ranks say why they stop; resumed on 4 ranks the run ends bitwise equal to an
 *     uninterrupted one; resumed on 2 ranks (--as-ranks 4, the same shares) within 1e-6;
 *   - refusals: --as-ranks not a multiple of the ranks, the linear probe, commands that run
 *     in one process.
 * Skipped (77) where mpirun was not found at build time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "check.h"
#include "cli_run.h"
#include "core/safetensors.h"

#define MODEL MMT_SOURCE_DIR "/models/mmtune-clip-tiny"

static char tmp[256];
static char args[1024];

static double now_s(void) {
    struct timeval t;
    gettimeofday(&t, NULL);
    return (double)t.tv_sec + 1e-6 * (double)t.tv_usec;
}

/* `mpirun -np N mmtune train ARGS EXTRA` with stdout/stderr in tmp/mpi.out; its exit code. */
static int mpi_train(int np, const char *env, const char *extra) {
    return sh("cd %s && %s %s --allow-run-as-root --oversubscribe -np %d %s train %s %s >mpi.out 2>&1", tmp, env ? env : "",
              MMT_MPIRUN, np, MMT_BINARY, args, extra);
}

static int one_train(const char *extra) {
    return sh("cd %s && %s train %s %s >one.out 2>&1", tmp, MMT_BINARY, args, extra);
}

/* Norm-wise relative difference of two adapters' float tensors (inf: unreadable/mismatched). */
static double adapter_diff(const char *run_a, const char *run_b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s/adapter/adapter_model.safetensors", tmp, run_a);
    snprintf(pb, sizeof pb, "%s/%s/adapter/adapter_model.safetensors", tmp, run_b);
    mmt_safetensors *a = NULL, *b = NULL;
    double num = 0, den = 0;
    if (mmt_safetensors_open(pa, &a) != MMT_OK || mmt_safetensors_open(pb, &b) != MMT_OK || a->n_tensors != b->n_tensors) {
        num = INFINITY;
    } else {
        for (int64_t i = 0; i < a->n_tensors; i++) {
            const mmt_st_tensor *ta = &a->tensors[i], *tb = mmt_safetensors_find(b, ta->name);
            if (!tb || tb->numel != ta->numel || ta->dtype != MMT_DTYPE_F32 || tb->dtype != MMT_DTYPE_F32) {
                num = INFINITY;
                break;
            }
            const float *x = ta->data, *y = tb->data;
            for (int64_t j = 0; j < ta->numel; j++) num += ((double)x[j] - y[j]) * ((double)x[j] - y[j]), den += (double)x[j] * x[j];
        }
    }
    mmt_safetensors_close(a);
    mmt_safetensors_close(b);
    return den > 0 ? sqrt(num / den) : num;
}

static int same(const char *run_a, const char *run_b, const char *file) {
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/%s", tmp, run_a);
    snprintf(b, sizeof b, "%s/%s", tmp, run_b);
    return check_same_file(a, b, file);
}

/* The "loss" of every line of two runs' metrics.jsonl, compared as printed (%.8g). */
static int same_losses(const char *run_a, const char *run_b, int steps) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s/metrics.jsonl", tmp, run_a);
    snprintf(pb, sizeof pb, "%s/%s/metrics.jsonl", tmp, run_b);
    char *a = check_read_file(pa, NULL), *b = check_read_file(pb, NULL);
    int n = 0, ok = a && b;
    for (const char *p = a, *q = b; ok && (p = strstr(p, "\"loss\": ")) && (q = strstr(q, "\"loss\": ")); p++, q++, n++)
        ok = strncmp(p, q, strcspn(p, ",")) == 0;
    free(a);
    free(b);
    return ok && n == steps;
}

/* The losses of a run's metrics.jsonl into out[0..cap); their count. */
static int read_losses(const char *run, double *out, int cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", tmp, run);
    char *text = check_read_file(path, NULL);
    int n = 0;
    for (const char *p = text; p && n < cap && (p = strstr(p, "\"loss\": ")); p++) out[n++] = strtod(p + 8, NULL);
    free(text);
    return n;
}

/* --gather-with-grad: 2 ranks of 4 pairs against one process with batches of 8, the same 8
 * pairs a step (in another order: the loss does not depend on it); no dropout, whose draws
 * would differ. */
static void test_gather_with_grad(void) {
    CHECK(mpi_train(2, NULL, "--gather-with-grad --lora-dropout 0 --out g2") == 0);
    CHECK(sh("cd %s && %s train %s --lora-dropout 0 --batch-size 8 --out g1 >one.out 2>&1", tmp, MMT_BINARY, args) == 0);
    double a[16], b[16];
    int na = read_losses("g2", a, 16), nb = read_losses("g1", b, 16);
    CHECK(na == 6 && nb == 6);
    /* step 1 from the same weights: the same loss; later steps from weights that AdamW has
     * moved apart by rounding (it divides tiny gradients by their own size) */
    for (int i = 0; i < na && i < nb; i++)
        CHECK_MSG(fabs(a[i] - b[i]) <= (i == 0 ? 1e-6 : 1e-4) * fabs(b[i]) + 1e-9, "step %d: %.9g vs %.9g", i + 1, a[i], b[i]);
    double d = adapter_diff("g2", "g1");
    CHECK_MSG(d <= 1e-5, "gathered 2-rank adapter vs one process with the global batch: %g", d);
    /* without gathering the negatives are each rank's own: another loss */
    CHECK(mpi_train(2, NULL, "--lora-dropout 0 --out l2") == 0);
    CHECK(read_losses("l2", a, 16) == 6 && fabs(a[0] - b[0]) > 1e-4 * fabs(b[0]));
    /* shares computed one after another cannot see each other's embeddings */
    CHECK(one_train("--gather-with-grad --as-ranks 2 --out bad") != 0);
}

static void test_two_ranks_equal_one_process(void) {
    CHECK(mpi_train(2, NULL, "--out np2") == 0);
    CHECK(one_train("--as-ranks 2 --out as2") == 0);
    CHECK_MSG(same("np2", "as2", "adapter/adapter_model.safetensors"), "the 2-rank adapter differs from one process's");
    CHECK_MSG(same_losses("np2", "as2", 6), "the losses of some step differ");
    /* the per-rank shares are not plain accumulation over consecutive micro-batches */
    CHECK(one_train("--grad-accum 2 --out acc2") == 0);
    CHECK(!same("np2", "acc2", "adapter/adapter_model.safetensors"));
}

static void test_four_ranks(void) {
    CHECK(mpi_train(4, NULL, "--out np4") == 0);
    CHECK(one_train("--as-ranks 4 --out as4") == 0);
    double d = adapter_diff("np4", "as4");
    CHECK_MSG(d <= 1e-6, "4 ranks vs one process: relative difference %g", d);
    CHECK_MSG(same("np4", "as4", "adapter/adapter_model.safetensors"), "(not bitwise: %g)", d);
}

static void test_zero1_equals_plain(void) {
    CHECK(mpi_train(2, NULL, "--zero 1 --save-every 3 --out z2") == 0);
    CHECK(mpi_train(2, NULL, "--save-every 3 --out p2") == 0);
    CHECK(same("z2", "p2", "adapter/adapter_model.safetensors"));
    CHECK_MSG(same("z2", "p2", "ckpt-6/optimizer.safetensors"), "ZeRO-1's gathered optimizer state differs");
    CHECK(same("z2", "p2", "ckpt-3/optimizer.safetensors"));
}

/* tmp/name's text (malloc'd; NULL when unreadable). */
static char *read_tmp(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    return check_read_file(path, NULL);
}

/* --overlap-comm: the text tower's gradients all-reduced on a thread while the vision tower
 * runs backward give the bytes of the one all-reduce after backward: the same adapter,
 * losses and optimizer state, with gradient accumulation, ZeRO-1 and full fine-tuning too. */
static void test_overlap_equals_plain(void) {
    char loud[1100]; /* args without --quiet, to see whether the overlap is on */
    snprintf(loud, sizeof loud, "%s", args);
    char *q = strstr(loud, " --quiet");
    if (q) *q = '\0';
    CHECK(sh("cd %s && %s --allow-run-as-root --oversubscribe -np 2 %s train %s --overlap-comm --out ov2 >mpi.out 2>&1",
             tmp, MMT_MPIRUN, MMT_BINARY, loud) == 0);
    char *log = read_tmp("mpi.out");
    CHECK_MSG(log && strstr(log, "--overlap-comm: ") && strstr(log, "all-reduced during backward"), "%s", log ? log : "");
    free(log);
    CHECK_MSG(same("ov2", "np2", "adapter/adapter_model.safetensors"), "overlapped vs plain 2-rank adapter");
    CHECK(same_losses("ov2", "np2", 6));
    CHECK(mpi_train(2, NULL, "--overlap-comm --grad-accum 2 --out ova") == 0);
    CHECK(mpi_train(2, NULL, "--grad-accum 2 --out pla") == 0);
    CHECK_MSG(same("ova", "pla", "adapter/adapter_model.safetensors"), "overlap with --grad-accum 2");
    CHECK(mpi_train(2, NULL, "--overlap-comm --zero 1 --save-every 3 --out ovz") == 0);
    CHECK_MSG(same("ovz", "z2", "adapter/adapter_model.safetensors") && same("ovz", "z2", "ckpt-6/optimizer.safetensors"),
              "overlap with ZeRO-1");
    CHECK(mpi_train(2, NULL, "--method full --lr 1e-4 --overlap-comm --out ovf") == 0);
    CHECK(mpi_train(2, NULL, "--method full --lr 1e-4 --out plf") == 0);
    CHECK_MSG(same("ovf", "plf", "adapter/model.safetensors"), "overlap, full fine-tuning");
    /* no split point: one tower trains; the run says so and trains as without */
    CHECK(sh("cd %s && %s --allow-run-as-root --oversubscribe -np 2 %s train %s --scope vision --overlap-comm --out ovv "
             ">mpi.out 2>&1", tmp, MMT_MPIRUN, MMT_BINARY, loud) == 0);
    log = read_tmp("mpi.out");
    CHECK_MSG(log && strstr(log, "--overlap-comm: off: no split point"), "%s", log ? log : "");
    free(log);
}

static void test_rank_killed_then_resumed(void) {
    CHECK(mpi_train(4, NULL, "--zero 1 --out ref4") == 0);
    const char *crash = "MMT_CRASH_AT=train.backward_done:5 MMT_CRASH_RANK=1";
    for (int resume_np = 4; resume_np >= 2; resume_np -= 2) {
        char out[64], extra[512];
        snprintf(out, sizeof out, "killed%d", resume_np);
        snprintf(extra, sizeof extra, "--zero 1 --save-every 2 --out %s", out);
        double t0 = now_s();
        int rc = mpi_train(4, crash, extra);
        double took = now_s() - t0;
        CHECK_MSG(rc != 0, "the job went on without rank 1");
        CHECK_MSG(took < 60, "the job took %.0f s to end after losing a rank", took);
        char path[512];
        snprintf(path, sizeof path, "%s/mpi.out", tmp);
        char *log = check_read_file(path, NULL);
        CHECK_MSG(log && strstr(log, "rank 1"), "nothing names the lost rank:\n%s", log ? log : "");
        CHECK_MSG(log && strstr(log, "stopped by the launcher"), "the other ranks do not say why they stop:\n%s", log ? log : "");
        free(log);
        CHECK(exists("%s/%s/ckpt-4", tmp, out) && !exists("%s/%s/adapter", tmp, out));
        snprintf(extra, sizeof extra, "--zero 1 --save-every 2 --out %s --resume %s/%s%s", out, tmp, out,
                 resume_np == 2 ? " --as-ranks 4" : "");
        CHECK(mpi_train(resume_np, NULL, extra) == 0);
        double d = adapter_diff(out, "ref4");
        if (resume_np == 4) CHECK_MSG(same(out, "ref4", "adapter/adapter_model.safetensors"), "resumed on 4: %g", d);
        else CHECK_MSG(d <= 1e-6, "resumed on 2 ranks: relative difference %g", d);
    }
}

static void test_refusals(void) {
    CHECK(mpi_train(2, NULL, "--as-ranks 3 --out bad") != 0);
    char path[512];
    snprintf(path, sizeof path, "%s/mpi.out", tmp);
    char *log = check_read_file(path, NULL);
    CHECK(log && strstr(log, "not a multiple"));
    free(log);
    CHECK(mpi_train(2, NULL, "--method linear-probe --out probe") != 0);
    log = check_read_file(path, NULL);
    CHECK(log && strstr(log, "without mpirun"));
    free(log);
    CHECK(sh("cd %s && %s --allow-run-as-root --oversubscribe -np 2 %s embed --model %s --text x >mpi.out 2>&1", tmp,
             MMT_MPIRUN, MMT_BINARY, MODEL) != 0);
    log = check_read_file(path, NULL);
    CHECK(log && strstr(log, "runs in one process"));
    free(log);
}

int main(void) {
    if (!MMT_MPIRUN[0]) {
        fprintf(stderr, "test_dist_train: skipped: no mpirun at build time (apt-get install openmpi-bin libopenmpi-dev)\n");
        return 77;
    }
    snprintf(tmp, sizeof tmp, "/tmp/mmt_dist_train_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    setenv("OMP_NUM_THREADS", "1", 1);
    if (sh("%s synth --out %s/data --split-sizes 64,0,0 --size 32 >/dev/null 2>&1", MMT_BINARY, tmp) != 0) {
        fprintf(stderr, "test_dist_train: synth failed\n");
        return 1;
    }
    snprintf(args, sizeof args,
             "--model %s --data %s/data/train.jsonl --steps 6 --batch-size 4 --lr 1e-3 --seed 3 --lora-dropout 0.1 "
             "--targets q_proj,k_proj,v_proj,out_proj,fc1 --quiet",
             MODEL, tmp);
    RUN(test_two_ranks_equal_one_process);
    RUN(test_four_ranks);
    RUN(test_zero1_equals_plain);
    RUN(test_overlap_equals_plain);
    RUN(test_gather_with_grad);
    RUN(test_rank_killed_then_resumed);
    RUN(test_refusals);
    int failed = check_summary();
    if (!failed) sh("rm -rf %s", tmp);
    return failed;
}
