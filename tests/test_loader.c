/*
 * test_loader.c — the background loader (data/loader.h) and the augmentations (data/augment.h):
 *   - threaded output is bitwise equal to the synchronous loop (workers 0) for several
 *     worker / prefetch settings, on the fixture photos through the real decode + preprocess;
 *   - a corrupt image mid-stream gives its one-line error naming the file at the batch that
 *     holds it, earlier batches come through, and free() returns (the test runs under alarm());
 *   - augmentations: same seed + position -> same pixels, another position differs; the flip
 *     is an exact mirror; crop with scale = ratio = (1, 1) on a square image equals the plain
 *     preprocessing; all off equals the plain preprocessing;
 *   - `mmtune train --augment-crop --augment-flip --augment-jitter 0.3` killed after a
 *     checkpoint and resumed ends with the same adapter bytes as the uninterrupted run, and
 *     threaded loading gives the same adapter as --loader-workers 0.
 * Every comparison is exact (memcmp): nothing here is allowed to differ by rounding.
 */
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/alloc.h"
#include "data/augment.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/preprocess.h"

#define IMAGES MMT_FIXTURE_DIR "/clip/images"
#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define S 32

static char tmp[256];
static const char *photos[] = {IMAGES "/chelsea.jpg", IMAGES "/astronaut.png", IMAGES "/camera_gray.png",
                               IMAGES "/coffee_portrait.jpg", IMAGES "/rocket_rgba.png", NULL /* bad, set in main */};
static char bad_path[320];

typedef struct example_ctx {
    mmt_image_processor proc;
    mmt_augment aug;
    int64_t n_paths;
} example_ctx;

static mmt_status load_one(void *ctx, int64_t index, int64_t position, float *out) {
    example_ctx *c = ctx;
    mmt_image img = {0};
    mmt_status s = mmt_image_decode_file(photos[index % c->n_paths], &img);
    if (s == MMT_OK) s = mmt_augment_preprocess(&img, &c->proc, &c->aug, 7, position, out);
    mmt_image_free(&img);
    return s;
}

static void make_ctx(example_ctx *c, int64_t n_paths) {
    mmt_image_processor_default(&c->proc);
    c->proc.shortest_edge = c->proc.crop_height = c->proc.crop_width = S;
    mmt_augment_default(&c->aug);
    c->n_paths = n_paths;
}

/* Loads `batches` batches of 3 through a loader; returns all pixels (caller frees). */
static float *load_all(example_ctx *c, int64_t workers, int64_t depth, int64_t batches, int64_t ahead) {
    const int64_t B = 3, per = 3 * S * S;
    mmt_loader_options lo = {workers, depth, per, B};
    mmt_loader *ld = NULL;
    float *all = calloc((size_t)(batches * B * per), sizeof(float));
    CHECK_OK(mmt_loader_create(&lo, load_one, c, &ld));
    if (!ld) return all;
    int64_t submitted = 0, idx[3];
    for (int64_t b = 0; b < batches; b++) {
        for (; submitted <= b + ahead && submitted < batches; submitted++) {
            for (int64_t j = 0; j < B; j++) idx[j] = (submitted * 7 + j * 3) % 5;
            CHECK_OK(mmt_loader_submit(ld, submitted * B, idx, B));
        }
        for (int64_t j = 0; j < B; j++) idx[j] = (b * 7 + j * 3) % 5;
        const float *px = NULL;
        CHECK_OK(mmt_loader_next(ld, idx, B, &px));
        if (px) memcpy(all + b * B * per, px, (size_t)(B * per) * sizeof(float));
    }
    mmt_loader_free(ld);
    return all;
}

static void test_threaded_equals_synchronous(void) {
    example_ctx c;
    make_ctx(&c, 5);
    const int64_t batches = 9, bytes = batches * 3 * 3 * S * S * (int64_t)sizeof(float);
    for (int aug = 0; aug < 2; aug++) {
        c.aug.crop = c.aug.flip = aug;
        c.aug.brightness = c.aug.contrast = c.aug.saturation = aug ? 0.4 : 0;
        float *ref = load_all(&c, 0, 1, batches, 0);
        static const int64_t settings[][3] = {{1, 1, 1}, {2, 2, 2}, {3, 1, 1}, {2, 4, 4}, {4, 3, 8}, {2, 2, 0}};
        for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++) {
            float *got = load_all(&c, settings[k][0], settings[k][1], batches, settings[k][2]);
            CHECK_MSG(memcmp(ref, got, (size_t)bytes) == 0, "workers %lld depth %lld ahead %lld (augment %d)",
                      (long long)settings[k][0], (long long)settings[k][1], (long long)settings[k][2], aug);
            free(got);
        }
        free(ref);
    }
}

static void test_bad_image_is_an_error_not_a_hang(void) {
    example_ctx c;
    make_ctx(&c, 6); /* index 5 is the corrupt file */
    alarm(60);       /* a hang fails the test instead of blocking ctest */
    for (int64_t workers = 0; workers <= 3; workers++) {
        const int64_t per = 3 * S * S;
        mmt_loader_options lo = {workers, 2, per, 2};
        mmt_loader *ld = NULL;
        CHECK_OK(mmt_loader_create(&lo, load_one, &c, &ld));
        int64_t batches[4][2] = {{0, 1}, {2, 3}, {4, 5}, {1, 2}};
        for (int b = 0; b < 4; b++) CHECK_OK(mmt_loader_submit(ld, b * 2, batches[b], 2));
        const float *px;
        CHECK_OK(mmt_loader_next(ld, batches[0], 2, &px));
        CHECK_OK(mmt_loader_next(ld, batches[1], 2, &px));
        mmt_status s = mmt_loader_next(ld, batches[2], 2, &px);
        CHECK(s != MMT_OK && px == NULL);
        char got[1024];
        snprintf(got, sizeof got, "%s", mmt_last_error());
        CHECK_MSG(strstr(got, bad_path) && !strchr(got, '\n'), "workers %lld: %s", (long long)workers, got);
        /* the same message as a synchronous decode gives */
        mmt_image img = {0};
        CHECK(mmt_image_decode_file(bad_path, &img) != MMT_OK);
        CHECK_MSG(strcmp(got, mmt_last_error()) == 0, "%s vs %s", got, mmt_last_error());
        mmt_loader_free(ld); /* a batch still in flight: free stops the workers */
    }
    alarm(0);
}

static float *preprocess_photo(const char *path, const mmt_image_processor *p, const mmt_augment *a, int64_t position,
                               mmt_image *square) {
    mmt_image img = {0};
    float *out = calloc(3 * S * S, sizeof(float));
    CHECK_OK(mmt_image_decode_file(path, &img));
    if (square) { /* the largest centred square, to compare crop(1, 1) with the plain path */
        int64_t side = img.width < img.height ? img.width : img.height;
        CHECK_OK(mmt_image_alloc(side, side, square));
        for (int64_t y = 0; y < side; y++)
            memcpy(square->pixels + y * side * 3, img.pixels + ((y + (img.height - side) / 2) * img.width + (img.width - side) / 2) * 3,
                   (size_t)side * 3);
        mmt_image_free(&img);
        img = *square;
        memset(square, 0, sizeof *square);
    }
    if (a) CHECK_OK(mmt_augment_preprocess(&img, p, a, 11, position, out));
    else CHECK_OK(mmt_image_preprocess(&img, p, out));
    mmt_image_free(&img);
    return out;
}

static void test_augment_determinism(void) {
    example_ctx c;
    make_ctx(&c, 5);
    size_t bytes = 3 * S * S * sizeof(float);
    mmt_augment all;
    mmt_augment_default(&all);
    all.crop = all.flip = 1;
    all.brightness = all.contrast = all.saturation = 0.4;
    float *a = preprocess_photo(photos[0], &c.proc, &all, 5, NULL), *b = preprocess_photo(photos[0], &c.proc, &all, 5, NULL);
    float *other = preprocess_photo(photos[0], &c.proc, &all, 6, NULL);
    CHECK(memcmp(a, b, bytes) == 0);
    CHECK(memcmp(a, other, bytes) != 0);
    free(a), free(b), free(other);

    /* everything off: the plain path */
    mmt_augment off;
    mmt_augment_default(&off);
    float *plain = preprocess_photo(photos[3], &c.proc, NULL, 0, NULL), *noaug = preprocess_photo(photos[3], &c.proc, &off, 3, NULL);
    CHECK(memcmp(plain, noaug, bytes) == 0);

    /* flip with p = 1: the exact mirror of the plain output */
    mmt_augment flip = off;
    flip.flip = 1;
    flip.flip_p = 1.0;
    float *flipped = preprocess_photo(photos[3], &c.proc, &flip, 9, NULL);
    int mirror = 1;
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) mirror &= flipped[(ch * S + y) * S + x] == plain[(ch * S + y) * S + (S - 1 - x)];
    CHECK(mirror);
    /* p = 0.5 flips some positions and not others, and flip_only agrees with the full path */
    flip.flip_p = 0.5;
    int flips = 0;
    for (int64_t pos = 0; pos < 32; pos++) {
        float *f = preprocess_photo(photos[3], &c.proc, &flip, pos, NULL);
        float *g = malloc(bytes);
        memcpy(g, plain, bytes);
        mmt_augment_flip_only(&flip, 11, pos, g, S, S);
        CHECK(memcmp(f, g, bytes) == 0);
        flips += memcmp(f, plain, bytes) != 0;
        free(f), free(g);
    }
    CHECK(flips > 4 && flips < 28);
    free(flipped), free(plain), free(noaug);

    /* crop with scale (1, 1), ratio (1, 1) on a square image = the plain preprocessing */
    mmt_augment crop = off;
    crop.crop = 1;
    crop.scale_min = crop.scale_max = crop.ratio_min = crop.ratio_max = 1.0;
    for (int i = 0; i < 5; i++) {
        mmt_image sq = {0};
        float *x = preprocess_photo(photos[i], &c.proc, NULL, 0, &sq);
        float *y = preprocess_photo(photos[i], &c.proc, &crop, i, &sq);
        CHECK_MSG(memcmp(x, y, bytes) == 0, "%s", photos[i]);
        free(x), free(y);
    }
    /* bad settings are refused */
    mmt_augment badset = off;
    badset.crop = 1;
    badset.scale_min = 0;
    CHECK(mmt_augment_check(&badset) == MMT_STATUS_INVALID_ARGUMENT);
}

/* ---- the CLI: resume with augmentation ----------------------------------------------------- */

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t la = 0, lb = 0;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x), free(y);
    return same;
}

#define TRAIN MMT_BINARY " train --model " MODEL " --quiet --batch-size 4 --lr 1e-2 --seed 3 --lora-r 2 " \
                         "--augment-crop --augment-flip --augment-jitter 0.3 --cache-mb 0 "

static void test_cli_resume_with_augmentation(void) {
    char data[320], path[512], path2[512];
    snprintf(data, sizeof data, "%s/pairs.jsonl", tmp);
    FILE *f = fopen(data, "w");
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < 5; i++) fprintf(f, "{\"image_path\": \"%s\", \"text\": \"photo number %d\"}\n", photos[i], i);
    fclose(f);
    const int steps = 400;
    CHECK(sh(TRAIN "--data %s --out %s/ref --steps %d --save-every 10 >/dev/null 2>&1", data, tmp, steps) == 0);
    CHECK(sh(TRAIN "--data %s --out %s/sync --steps %d --loader-workers 0 >/dev/null 2>&1", data, tmp, steps) == 0);
    /* the same run, killed once it has a checkpoint */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec " TRAIN "--data %s --out %s/killed --steps %d --save-every 10 >/dev/null 2>&1", data, tmp, steps);
    pid_t pid = spawn_sh(cmd, NULL, NULL);
    snprintf(path, sizeof path, "%s/killed/ckpt-10", tmp);
    for (int i = 0; i < 60000 && !file_exists(path); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(file_exists(path));
    snprintf(path, sizeof path, "%s/killed/adapter", tmp);
    if (file_exists(path)) fprintf(stderr, "note: the run finished before the kill landed; resume is still checked\n");
    CHECK(sh(TRAIN "--data %s --out %s/killed --steps %d --save-every 10 --resume %s/killed >/dev/null 2>&1", data, tmp, steps, tmp) == 0);
    snprintf(path, sizeof path, "%s/ref/adapter/adapter_model.safetensors", tmp);
    snprintf(path2, sizeof path2, "%s/killed/adapter/adapter_model.safetensors", tmp);
    CHECK_MSG(same_file(path, path2), "resumed run with augmentation differs from the uninterrupted one");
    snprintf(path2, sizeof path2, "%s/sync/adapter/adapter_model.safetensors", tmp);
    CHECK_MSG(same_file(path, path2), "threaded loading differs from --loader-workers 0");
    /* a corrupt image: one error line naming it, no hang */
    f = fopen(data, "a");
    fprintf(f, "{\"image_path\": \"%s\", \"text\": \"broken\"}\n", bad_path);
    fclose(f);
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    int rc = sh("timeout 120 " TRAIN "--data %s --out %s/bad --epochs 3 2>%s", data, tmp, path);
    size_t len = 0;
    char *err = slurp(path, &len);
    CHECK_MSG(rc == 1 && err && strstr(err, bad_path) && strchr(err, '\n') == err + len - 1, "rc %d: %s", rc, err ? err : "");
    free(err);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/loader_test_XXXXXX", MMT_BUILD_DIR);
    if (!mkdtemp(tmp)) return 1;
    snprintf(bad_path, sizeof bad_path, "%s/broken.jpg", tmp);
    FILE *f = fopen(bad_path, "wb");
    fputs("\xff\xd8\xff\xe0 this is not a JPEG", f);
    fclose(f);
    photos[5] = bad_path;
    RUN(test_threaded_equals_synchronous);
    RUN(test_bad_image_is_an_error_not_a_hang);
    RUN(test_augment_determinism);
    RUN(test_cli_resume_with_augmentation);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmp);
    return check_summary();
}
