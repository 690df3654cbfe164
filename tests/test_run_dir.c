/*
 * test_run_dir.c — run folders that cannot be mixed up, and folders written whole, as a user
 * meets them through the real binary (issue 9's findings 1, 2, 6 and 8), on the tiny fixture
 * CLIP and the fixture photos:
 *   - a second `train` into a used --out is refused (it used to mix its checkpoints with the
 *     old run's and resume the wrong one); --overwrite clears it first;
 *   - --resume with other data, another base model or another setting is refused, naming
 *     each difference; save-every and the loader's settings may change;
 *   - two processes on one --out: the second gets one line naming the holder's pid;
 *   - a damaged newest checkpoint is skipped with a warning and the run resumes from the one
 *     before it, ending with the bytes of an uninterrupted run; a damaged ckpt given by name
 *     is refused;
 *   - only the run's own checkpoints are pruned;
 *   - a checkpoint write that fails leaves no temporary folder behind;
 *   - merge, init and bpe write their folder whole: a merge killed before it finishes leaves
 *     no model folder (inspect finds none) and the next merge clears the stale temporary;
 *   - --method ia3 with its defaults trains (PEFT's k_proj, v_proj, fc2 with fc2 as
 *     feed-forward); --save-every -1 and report --model without --queries are usage errors.
 * Every expectation here failed on the code before issue 9.
 */
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define MODEL_B MMT_FIXTURE_DIR "/clip/tiny-b"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"
#define TRAIN "train --model " MODEL " --quiet --batch-size 4 --lr 1e-2 --seed 3 --lora-r 2 "

static char tmp[256], data_a[320], data_b[320];

static void make_data(const char *path, const char *suffix) {
    static const char *imgs[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg", "rocket_rgba.png"};
    FILE *f = fopen(path, "w");
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < 5; i++)
            fprintf(f, "{\"image_path\": \"%s/%s\", \"text\": \"photo %d %s\"}\n", IMAGES, imgs[i], i, suffix);
    fclose(f);
}

/* Entries of a folder whose name contains needle. */
static int count_named(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, needle) != NULL;
    closedir(d);
    return n;
}

static void test_used_out_is_refused(void) {
    int rc = run(TRAIN "--data %s --out %s/used --steps 8 --save-every 4", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    /* the old code kept ckpt-4/ckpt-8 of the first run beside the second one's */
    rc = run(TRAIN "--data %s --out %s/used --steps 6 --save-every 2", data_b, tmp);
    CHECK_MSG(rc == 1 && count_lines(err_text) == 1 && strstr(err_text, "is not empty") && strstr(err_text, "--overwrite"),
              "exit %d: %s", rc, err_text);
    CHECK(exists("%s/used/ckpt-8", tmp));
    rc = run(TRAIN "--data %s --out %s/used --steps 6 --save-every 2 --overwrite", data_b, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    CHECK(!exists("%s/used/ckpt-8", tmp) && exists("%s/used/ckpt-6", tmp));
    CHECK(run(TRAIN "--data %s --out %s/used --overwrite --resume %s/used", data_b, tmp, tmp) == 2);
}

static void test_resume_checks_identity(void) {
    int rc = run(TRAIN "--data %s --out %s/id --steps 8 --save-every 4", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/id --steps 8 --resume %s/id", data_b, tmp, tmp);
    CHECK_MSG(rc == 1 && count_lines(err_text) == 1 && strstr(err_text, "data.fingerprint"), "exit %d: %s", rc, err_text);
    rc = run(TRAIN "--data %s --out %s/id --steps 8 --lr 2e-2 --resume %s/id", data_a, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "settings.lr (recorded 0.01, now 0.02)"), "exit %d: %s", rc, err_text);
    rc = run("train --model " MODEL_B " --quiet --batch-size 4 --lr 1e-2 --seed 3 --lora-r 2 --data %s --out %s/id "
             "--steps 8 --resume %s/id", data_a, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "model.fingerprint"), "exit %d: %s", rc, err_text);
    rc = run(TRAIN "--data %s --out %s/id --steps 8 --method ia3 --resume %s/id", data_a, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "settings.method"), "exit %d: %s", rc, err_text);
    /* what does not change the numbers may change */
    rc = run(TRAIN "--data %s --out %s/id --steps 8 --save-every 2 --loader-workers 0 --resume %s/id", data_a, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    /* a folder that is no run */
    CHECK(sh("mkdir -p %s/norun && touch %s/norun/x", tmp, tmp) == 0);
    rc = run(TRAIN "--data %s --out %s/norun --steps 8 --resume %s/norun", data_a, tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "not a run folder"), "exit %d: %s", rc, err_text);
}

static void test_second_process_is_refused(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "exec %s " TRAIN "--data %s --out %s/busy --steps 400 >/dev/null 2>&1", MMT_BINARY, data_a, tmp);
    pid_t pid = spawn_sh(cmd, NULL, NULL);
    /* wait until the first run holds the folder */
    for (int i = 0; i < 2000 && !exists("%s/busy/run.json", tmp); i++) usleep(5000);
    CHECK(exists("%s/busy/run.json", tmp));
    int rc = run(TRAIN "--data %s --out %s/busy --steps 400 --resume %s/busy", data_a, tmp, tmp);
    char want[64];
    snprintf(want, sizeof want, "(pid %d)", (int)pid);
    CHECK_MSG(rc == 1 && count_lines(err_text) == 1 && strstr(err_text, "in use by another mmtune process") &&
                  strstr(err_text, want),
              "exit %d: %s", rc, err_text);
    rc = run(TRAIN "--data %s --out %s/busy --steps 400 --overwrite", data_a, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, want), "exit %d: %s", rc, err_text);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the first run did not finish cleanly");
    CHECK(exists("%s/busy/adapter/adapter_model.safetensors", tmp));
}

static void test_damaged_checkpoint_falls_back(void) {
    int rc = run(TRAIN "--data %s --out %s/ref --steps 6 --save-every 2 --keep-checkpoints 0", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run(TRAIN "--data %s --out %s/dmg --steps 6 --save-every 2 --keep-checkpoints 0", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    /* the newest checkpoint torn (one byte changed), the final adapter gone: as after a crash */
    char p[512];
    snprintf(p, sizeof p, "%s/dmg/ckpt-6/optimizer.safetensors", tmp);
    FILE *f = fopen(p, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, -3, SEEK_END);
        int c = fgetc(f);
        fseek(f, -3, SEEK_END);
        fputc(c ^ 0x5a, f);
        fclose(f);
    }
    CHECK(sh("rm -rf %s/dmg/adapter", tmp) == 0);
    rc = run(TRAIN "--data %s --out %s/dmg --steps 6 --save-every 2 --keep-checkpoints 0 --resume %s/dmg/ckpt-6", data_a,
             tmp, tmp);
    CHECK_MSG(rc == 1 && count_lines(err_text) == 1 && strstr(err_text, "checksum"), "exit %d: %s", rc, err_text);
    rc = run("train --model " MODEL " --batch-size 4 --lr 1e-2 --seed 3 --lora-r 2 --progress log --data %s --out %s/dmg "
             "--steps 6 --save-every 2 --keep-checkpoints 0 --resume %s/dmg", data_a, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    CHECK_MSG(err_text && strstr(err_text, "skipping a damaged checkpoint") && strstr(err_text, "ckpt-4 (step 4)"), "%s",
              err_text);
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/ref/adapter", tmp);
    snprintf(b, sizeof b, "%s/dmg/adapter", tmp);
    CHECK_MSG(check_same_file(a, b, "adapter_model.safetensors"), "resumed adapter differs from the uninterrupted run");
    /* a checkpoint whose manifest never got written (a crash before the rename would leave
     * only a temporary; this one is made by hand) is not resumed from either */
    CHECK(sh("rm %s/dmg/ckpt-6/manifest.json && rm -rf %s/dmg/adapter", tmp, tmp) == 0);
    rc = run("train --model " MODEL " --batch-size 4 --lr 1e-2 --seed 3 --lora-r 2 --progress log --data %s --out %s/dmg "
             "--steps 6 --save-every 2 --keep-checkpoints 0 --resume %s/dmg", data_a, tmp, tmp);
    CHECK_MSG(rc == 0 && strstr(err_text, "never finished"), "%s", err_text);
    CHECK_MSG(check_same_file(a, b, "adapter_model.safetensors"), "resumed adapter differs from the uninterrupted run");
}

static void test_only_own_checkpoints_pruned(void) {
    int rc = run(TRAIN "--data %s --out %s/own --steps 12 --save-every 2 --keep-checkpoints 0", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    /* a checkpoint of another run copied in (as a user might): newer, and not this run's */
    CHECK(sh("cp -r %s/used/ckpt-6 %s/own/ckpt-99 2>/dev/null || cp -r %s/own/ckpt-12 %s/own/ckpt-99", tmp, tmp, tmp, tmp) == 0);
    CHECK(sh("sed -i 's/\"run_id\": \"[0-9a-f]*\"/\"run_id\": \"0123456789abcdef\"/' %s/own/ckpt-99/manifest.json", tmp) == 0);
    CHECK(sh("rm -rf %s/own/adapter %s/own/ckpt-12", tmp, tmp) == 0);
    rc = run("train --model " MODEL " --batch-size 4 --lr 1e-2 --seed 3 --lora-r 2 --progress log --data %s --out %s/own "
             "--steps 12 --save-every 2 --keep-checkpoints 2 --resume %s/own", data_a, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    CHECK_MSG(err_text && strstr(err_text, "belongs to another run") && strstr(err_text, "ckpt-10 (step 10)"), "%s", err_text);
    CHECK(exists("%s/own/ckpt-99", tmp) && exists("%s/own/ckpt-12", tmp) && exists("%s/own/ckpt-10", tmp));
    CHECK(!exists("%s/own/ckpt-8", tmp) && !exists("%s/own/ckpt-2", tmp));
}

static void test_failed_checkpoint_write_leaves_nothing(void) {
    /* a file-size limit makes the optimizer file's write fail with EFBIG (SIGXFSZ ignored):
     * small files (run.json, metrics, the adapter) fit under it */
    int rc = sh("cd %s && trap '' XFSZ && ulimit -f 12 && %s " TRAIN "--data %s --out %s/efbig --steps 4 --save-every 2 "
                ">/dev/null 2>%s/efbig.err",
                tmp, MMT_BINARY, data_a, tmp, tmp);
    size_t n = 0;
    char *err = read_rel("%s/efbig.err", tmp, &n);
    CHECK_MSG(rc == 1 && count_lines(err) == 1 && strstr(err, "writing checkpoint"), "exit %d: %s", rc, err ? err : "");
    free(err);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/efbig", tmp);
    CHECK_MSG(count_named(dir, ".tmp") == 0, "a temporary was left in %s", dir);
    CHECK(!exists("%s/efbig/ckpt-2", tmp));
}

static void test_merge_is_whole_or_absent(void) {
    int rc = run(TRAIN "--data %s --out %s/m --steps 2", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    /* killed after writing every file, just before publishing the folder */
    rc = sh("MMT_CRASH_AT=out.before_publish:1 %s merge --model " MODEL " --adapter %s/m/adapter --out %s/merged "
            ">/dev/null 2>&1", MMT_BINARY, tmp, tmp);
    CHECK(rc == -1 || rc == 137);
    CHECK(!exists("%s/merged", tmp));
    char parent[300];
    snprintf(parent, sizeof parent, "%s", tmp);
    CHECK(count_named(parent, "merged.tmp-") == 1);
    CHECK(run("inspect --model %s/merged", tmp) == 1);
    CHECK(run("merge --model " MODEL " --adapter %s/m/adapter --out %s/merged", tmp, tmp) == 0);
    CHECK(count_named(parent, "merged.tmp-") == 0);
    CHECK(run("inspect --model %s/merged", tmp) == 0);
    /* an existing folder is replaced only when asked */
    rc = run("merge --model " MODEL " --adapter %s/m/adapter --out %s/merged", tmp, tmp);
    CHECK_MSG(rc == 1 && count_lines(err_text) == 1 && strstr(err_text, "--overwrite"), "exit %d: %s", rc, err_text);
    CHECK(run("merge --model " MODEL " --adapter %s/m/adapter --out %s/merged --overwrite", tmp, tmp) == 0);
    CHECK(run("inspect --model %s/merged", tmp) == 0);
    /* a merge that fails leaves nothing */
    CHECK(run("merge --model " MODEL " --adapter %s/nowhere --out %s/merged2", tmp, tmp) == 1);
    CHECK(!exists("%s/merged2", tmp) && count_named(parent, "merged2.tmp-") == 0);
}

static void test_small_findings(void) {
    /* finding 6: IA3 with its defaults */
    int rc = run(TRAIN "--data %s --out %s/ia3 --steps 2 --method ia3", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    size_t n;
    char *cfg = read_rel("%s/ia3/adapter/adapter_config.json", tmp, &n);
    CHECK(cfg && strstr(cfg, "k_proj") && strstr(cfg, "v_proj") && strstr(cfg, "fc2") && !strstr(cfg, "q_proj"));
    CHECK(cfg && strstr(cfg, "\"feedforward_modules\": [\n    \"fc2\"\n  ]"));
    free(cfg);
    rc = run(TRAIN "--data %s --out %s/ia3b --steps 2 --method ia3 --targets q_proj,v_proj", data_a, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    /* finding 8 */
    rc = run(TRAIN "--data %s --out %s/se --steps 2 --save-every -1", data_a, tmp);
    CHECK_MSG(rc == 2 && strstr(err_text, "--save-every must be >= 0"), "exit %d: %s", rc, err_text);
    CHECK(run(TRAIN "--data %s --out %s/se --steps 2 --keep-checkpoints -2", data_a, tmp) == 2);
    rc = run("report --run %s/ia3 --model " MODEL, tmp);
    CHECK_MSG(rc == 2 && strstr(err_text, "--queries"), "exit %d: %s", rc, err_text);
    /* init and bpe: an existing folder is not replaced unless asked */
    CHECK(sh("mkdir -p %s/tok && echo keep > %s/tok/mine.txt", tmp, tmp) == 0);
    rc = run("bpe --input %s --vocab-size 600 --out %s/tok", data_a, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "--overwrite"), "exit %d: %s", rc, err_text);
    CHECK(exists("%s/tok/mine.txt", tmp));
    CHECK(run("bpe --input %s --vocab-size 600 --out %s/tok --overwrite", data_a, tmp) == 0);
    CHECK(exists("%s/tok/vocab.json", tmp) && !exists("%s/tok/mine.txt", tmp));
    rc = run("init --out %s/tok --tokenizer %s/tok", tmp, tmp);
    CHECK_MSG(rc == 1 && strstr(err_text, "--overwrite"), "exit %d: %s", rc, err_text);
    CHECK(run("init --out %s/newmodel --tokenizer %s/tok --vision-width 32 --vision-layers 1 --vision-heads 2 "
              "--text-width 32 --text-layers 1 --text-heads 2 --projection-dim 16 --image-size 32 --patch 8",
              tmp, tmp) == 0);
    CHECK(run("inspect --model %s/newmodel", tmp) == 0);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_run_dir_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    snprintf(data_a, sizeof data_a, "%s/a.jsonl", tmp);
    snprintf(data_b, sizeof data_b, "%s/b.jsonl", tmp);
    make_data(data_a, "of set a");
    make_data(data_b, "of set b");
    RUN(test_used_out_is_refused);
    RUN(test_resume_checks_identity);
    RUN(test_second_process_is_refused);
    RUN(test_damaged_checkpoint_falls_back);
    RUN(test_only_own_checkpoints_pruned);
    RUN(test_failed_checkpoint_write_leaves_nothing);
    RUN(test_merge_is_whole_or_absent);
    RUN(test_small_findings);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    cli_run_cleanup();
    return check_summary();
}
