/*
 * test_crash.c — a training run killed with SIGKILL at 20 moments and resumed ends with
 * exactly the adapter bytes of an uninterrupted run.
 *
 * The run (tiny fixture CLIP, LoRA, 100 steps, a checkpoint every 2 steps, the newest two
 * kept) is started afresh in each trial and killed once:
 *   - 10 times inside checkpoint and adapter writes, through the crash points of
 *     core/crash.h (MMT_CRASH_AT=NAME:N: SIGKILL at the N-th pass), at every stage of a
 *     write: before anything, after the adapter files, after the optimizer file, after the
 *     manifest, after the rename, and inside the final adapter's write;
 *   - 10 times at random moments (a seeded draw over the run's measured duration), sent
 *     from outside with kill(2).
 * Then `train --resume` continues it (or, when it died before recording the run, it starts
 * again) until it exits 0. The final adapter must equal the uninterrupted run's byte for
 * byte, and no temporary may be left in the run folder.
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"
#define ARGS "train --model " MODEL " --quiet --batch-size 4 --lr 1e-2 --seed 5 --lora-r 2 --steps 100 --save-every 2 "

static char tmp[256], data[320];

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Starts `mmtune ARGS --out dir [extra]` with an optional crash point; returns its pid. */
static pid_t start(const char *dir, const char *crash_at, const char *extra) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s " ARGS "--data %s --out %s %s >/dev/null 2>>%s/crash.log", MMT_BINARY, data, dir,
             extra, tmp);
    return spawn_sh(cmd, crash_at ? "MMT_CRASH_AT" : NULL, crash_at);
}

static int wait_exit(pid_t pid, int *signaled) {
    int st = 0;
    waitpid(pid, &st, 0);
    *signaled = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL || strstr(e->d_name, ".old-") != NULL;
    closedir(d);
    return n;
}

static int count_checkpoints(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strncmp(e->d_name, "ckpt-", 5) == 0;
    closedir(d);
    return n;
}

/* Continues the run in dir until it exits 0 (at most 3 tries); 1 on success. */
static int finish(const char *dir) {
    for (int attempt = 0; attempt < 3; attempt++) {
        char probe[600];
        snprintf(probe, sizeof probe, "%s/run.json", dir);
        struct stat st;
        int recorded = stat(probe, &st) == 0;
        /* no run.json: it died before recording the run, so there is nothing to resume */
        char extra[600];
        if (recorded) snprintf(extra, sizeof extra, "--resume %s", dir);
        else snprintf(extra, sizeof extra, "--overwrite");
        int killed;
        int rc = wait_exit(start(dir, NULL, extra), &killed);
        if (rc == 0) return 1;
    }
    return 0;
}

typedef struct trial {
    const char *crash_at; /* NULL: a kill from outside after delay_s */
    double delay_s;
} trial;

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_crash_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    snprintf(data, sizeof data, "%s/pairs.jsonl", tmp);
    static const char *imgs[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg", "rocket_rgba.png"};
    FILE *f = fopen(data, "w");
    for (int rep = 0; rep < 3; rep++)
        for (int i = 0; i < 5; i++) fprintf(f, "{\"image_path\": \"%s/%s\", \"text\": \"photo %d of %d\"}\n", IMAGES, imgs[i], i, rep);
    fclose(f);

    /* the uninterrupted run, timed to place the random kills */
    char ref[400];
    snprintf(ref, sizeof ref, "%s/ref", tmp);
    double t0 = now_s();
    int killed;
    int rc = wait_exit(start(ref, NULL, ""), &killed);
    double duration = now_s() - t0;
    CHECK_MSG(rc == 0, "the reference run failed");

    trial trials[20] = {
        {"checkpoint.begin:1", 0},           {"checkpoint.task_saved:2", 0},      {"checkpoint.optimizer_saved:3", 0},
        {"checkpoint.manifest_written:4", 0}, {"checkpoint.published:5", 0},       {"checkpoint.task_saved:8", 0},
        {"checkpoint.manifest_written:8", 0}, {"checkpoint.published:8", 0},       {"final.saved:1", 0},
        {"checkpoint.optimizer_saved:7", 0},
    };
    uint64_t state = 0x2545f4914f6cdd1dull;
    for (int i = 10; i < 20; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        trials[i].crash_at = NULL;
        trials[i].delay_s = duration * (double)(state % 1000) / 1000.0;
    }
    int same = 0, kills = 0, midway = 0;
    for (int i = 0; i < 20; i++) {
        char dir[400];
        snprintf(dir, sizeof dir, "%s/t%d", tmp, i);
        pid_t pid = start(dir, trials[i].crash_at, "");
        if (!trials[i].crash_at) {
            usleep((useconds_t)(trials[i].delay_s * 1e6));
            kill(pid, SIGKILL);
        }
        wait_exit(pid, &killed);
        kills += killed;
        midway += killed && !trials[i].crash_at && count_checkpoints(dir) > 0;
        if (trials[i].crash_at) CHECK_MSG(killed, "trial %d: the crash point %s was never reached", i, trials[i].crash_at);
        int ok = finish(dir);
        CHECK_MSG(ok, "trial %d (%s %.3fs): the run could not be completed; see %s/crash.log", i,
                  trials[i].crash_at ? trials[i].crash_at : "kill at", trials[i].delay_s, tmp);
        int equal = check_same_file(ref, dir, "adapter/adapter_model.safetensors") &&
                    check_same_file(ref, dir, "adapter/adapter_config.json");
        CHECK_MSG(equal, "trial %d (%s %.3fs): the resumed adapter differs from the uninterrupted run", i,
                  trials[i].crash_at ? trials[i].crash_at : "kill at", trials[i].delay_s);
        CHECK_MSG(count_temporaries(dir) == 0, "trial %d: temporaries left in %s", i, dir);
        same += equal;
    }
    printf("%d of 20 interrupted runs (%d killed before finishing, %d of the random kills after the first checkpoint) "
           "ended with the uninterrupted run's bytes (reference run %.2f s)\n", same, kills, midway, duration);
    if (!check_current_failed_) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd) != 0) return 1;
    }
    cli_run_cleanup();
    check_passed_ += !check_current_failed_;
    check_failed_ += check_current_failed_;
    return check_summary();
}
