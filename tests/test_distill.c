/*
 * test_distill.c — distillation from another model (nn_distill_loss in nn/loss.h, the training
 * view's distill_teacher in models/clip_train.h, `train --distill-from`).
 *
 * References and tolerances:
 *   - the loss's gradients (embeddings and scale) against central finite differences in
 *     double steps of 1e-3 on float inputs: within 2e-3 of the largest gradient (the float
 *     logits' rounding over the step);
 *   - at temperature 1 with the teacher at the student's scale, the KL term equals the one
 *     nn_contrastive_loss adds for a teacher's logits (the existing distillation to the
 *     frozen base), loss and gradients within 1e-6; a teacher equal to the student gives a
 *     zero KL and cosine term;
 *   - through a training view: every gradient of a fully trainable tiny CLIP (tests/fixtures/
 *     clip/tiny-a, learned logit scale) distilled from another, randomly initialised CLIP with
 *     other widths and depths, against directional finite differences (clip_fixture.h's
 *     check_fd: 2e-2 relative plus the float loss's noise), with the KL term at T = 2, the
 *     cosine term and the task term weighted;
 *   - `train --distill-from`: refusals (no distillation weight, a teacher adapter or cosine
 *     weight without a teacher, a temperature <= 0, a teacher that reads other inputs, a GIT
 *     student, with --gather-with-grad), and a run records the teacher's fingerprint.
 */
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "clip_fixture.h"
#include "core/arena.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "nn/loss.h"
#include "rng.h"

static char tmpdir[256];

static void normalize_rows(float *x, int64_t B, int64_t P) {
    for (int64_t b = 0; b < B; b++) {
        double n = 0;
        for (int64_t k = 0; k < P; k++) n += (double)x[b * P + k] * x[b * P + k];
        for (int64_t k = 0; k < P; k++) x[b * P + k] = (float)(x[b * P + k] / sqrt(n));
    }
}

static float *random_rows(int64_t B, int64_t P) {
    float *x = malloc((size_t)(B * P) * sizeof(float));
    for (int64_t i = 0; i < B * P; i++) x[i] = rng_uniform();
    normalize_rows(x, B, P);
    return x;
}

typedef struct loss_case {
    int64_t B, P, Pt;
    float scale, t_scale, T, kl, cos;
} loss_case;

static double distill_value(const loss_case *c, const float *img, const float *txt, const float *ti, const float *tt,
                            float scale, mmt_arena *ar) {
    double loss = NAN;
    CHECK_OK(nn_distill_loss(img, txt, ti, tt, c->B, c->P, c->Pt, scale, c->t_scale, c->T, c->kl, c->cos, ar, &loss, NULL,
                             NULL, NULL));
    return loss;
}

/* Every entry of dimg and dtxt, and dscale, against central differences. */
static void test_loss_gradients(void) {
    static const loss_case cases[] = {
        {5, 8, 6, 14.3f, 20.0f, 2.0f, 1.5f, 0.0f},  /* KL only, a narrower teacher, T 2 */
        {4, 8, 8, 10.0f, 30.0f, 1.0f, 0.7f, 1.3f},  /* KL and cosine */
        {6, 8, 8, 25.0f, 5.0f, 0.5f, 0.0f, 2.0f},   /* cosine only */
    };
    mmt_arena ar;
    mmt_arena_init(&ar, (size_t)1 << 16);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const loss_case *c = &cases[ci];
        int64_t B = c->B, P = c->P;
        float *img = random_rows(B, P), *txt = random_rows(B, P), *ti = random_rows(B, c->Pt), *tt = random_rows(B, c->Pt);
        float *dimg = calloc((size_t)(B * P), sizeof(float)), *dtxt = calloc((size_t)(B * P), sizeof(float));
        double loss = 0, ds = 0;
        CHECK_OK(nn_distill_loss(img, txt, ti, tt, B, P, c->Pt, c->scale, c->t_scale, c->T, c->kl, c->cos, &ar, &loss, dimg,
                                 dtxt, &ds));
        CHECK(isfinite(loss) && loss > 0);
        double big = fabs(ds), worst = 0, h = 1e-3;
        for (int64_t k = 0; k < B * P; k++) big = fmax(big, fmax(fabs(dimg[k]), fabs(dtxt[k])));
        for (int side = 0; side < 2; side++) {
            float *x = side ? txt : img, *g = side ? dtxt : dimg;
            for (int64_t k = 0; k < B * P; k++) {
                float saved = x[k];
                x[k] = (float)(saved + h);
                double lp = distill_value(c, img, txt, ti, tt, c->scale, &ar);
                x[k] = (float)(saved - h);
                double lm = distill_value(c, img, txt, ti, tt, c->scale, &ar);
                x[k] = saved;
                worst = fmax(worst, fabs((lp - lm) / (2 * h) - g[k]));
            }
        }
        double hs = 1e-2;
        double fs = (distill_value(c, img, txt, ti, tt, c->scale + (float)hs, &ar) -
                     distill_value(c, img, txt, ti, tt, c->scale - (float)hs, &ar)) / (2 * hs);
        worst = fmax(worst, fabs(fs - ds));
        CHECK_MSG(worst <= 2e-3 * big, "case %zu: worst |fd - gradient| %.3g, largest gradient %.3g", ci, worst, big);
        printf("  case %zu: loss %.6f, worst |fd - gradient| %.2e of %.3g\n", ci, loss, worst, big);
        free(img), free(txt), free(ti), free(tt), free(dimg), free(dtxt);
    }
    mmt_arena_free(&ar);
}

/* At T = 1 with the teacher at the student's scale, the KL term is the existing one. */
static void test_matches_existing_distillation(void) {
    int64_t B = 5, P = 8;
    float scale = 14.3f, w = 0.8f;
    float *img = random_rows(B, P), *txt = random_rows(B, P), *ti = random_rows(B, P), *tt = random_rows(B, P);
    float *lt = malloc((size_t)(B * B) * sizeof(float));
    nn_clip_logits(lt, ti, tt, B, P, scale);
    mmt_arena ar;
    mmt_arena_init(&ar, (size_t)1 << 16);
    float *g0 = calloc((size_t)(2 * B * P), sizeof(float)), *g1 = calloc((size_t)(2 * B * P), sizeof(float));
    float *g2 = calloc((size_t)(2 * B * P), sizeof(float));
    double l0, l1, l2, s0 = 0, s1 = 0, s2 = 0;
    CHECK_OK(nn_contrastive_loss(img, txt, B, P, scale, NULL, 0, &ar, &l0, g0, g0 + B * P, &s0));
    CHECK_OK(nn_contrastive_loss(img, txt, B, P, scale, lt, w, &ar, &l1, g1, g1 + B * P, &s1));
    CHECK_OK(nn_distill_loss(img, txt, ti, tt, B, P, P, scale, scale, 1.0f, w, 0.0f, &ar, &l2, g2, g2 + B * P, &s2));
    CHECK_NEAR(l1 - l0, l2, 1e-6);
    CHECK_NEAR(s1 - s0, s2, 1e-6);
    double worst = 0;
    for (int64_t k = 0; k < 2 * B * P; k++) worst = fmax(worst, fabs((g1[k] - g0[k]) - g2[k]));
    CHECK_MSG(worst <= 1e-6, "gradients differ by %.3g", worst);
    /* a teacher equal to the student: nothing to learn */
    double l3;
    CHECK_OK(nn_distill_loss(img, txt, img, txt, B, P, P, scale, scale, 3.0f, 1.0f, 1.0f, &ar, &l3, NULL, NULL, NULL));
    CHECK_NEAR(l3, 0, 1e-6);
    CHECK_FAILS(nn_distill_loss(img, txt, ti, tt, B, P, P, scale, scale, 0.0f, 1.0f, 0.0f, &ar, &l3, NULL, NULL, NULL),
                MMT_STATUS_INVALID_ARGUMENT, "temperature must be positive");
    CHECK_FAILS(nn_distill_loss(img, txt, ti, tt, B, P, P - 1, scale, scale, 1.0f, 1.0f, 1.0f, &ar, &l3, NULL, NULL, NULL),
                MMT_STATUS_INVALID_ARGUMENT, "compares embeddings");
    mmt_arena_free(&ar);
    free(img), free(txt), free(ti), free(tt), free(lt), free(g0), free(g1), free(g2);
}

/* A teacher with other widths and depths than tiny-a but the same inputs; projection_dim P. */
static mmt_clip *random_teacher(const mmt_clip *student, int64_t P, uint64_t seed) {
    mmt_clip_config c = *mmt_clip_config_of(student);
    c.projection_dim = P;
    c.text.hidden_size = 16, c.text.intermediate_size = 40, c.text.num_heads = 2, c.text.num_layers = 1;
    c.vision.hidden_size = 24, c.vision.intermediate_size = 32, c.vision.num_heads = 3, c.vision.num_layers = 3;
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_create_random(&c, seed, &m));
    return m;
}

static void test_view_gradients(void) {
    clip_batch b;
    if (!batch_load("tiny-a", &b)) {
        CHECK(0);
        batch_free(&b);
        return;
    }
    int64_t P = mmt_clip_config_of(b.model)->projection_dim;
    struct {
        int64_t tp;
        float task, kl, T, cos;
        const char *what;
    } variants[] = {{16, 0.5f, 2.0f, 2.0f, 0.0f, "KL at T 2 from a 16-dim teacher, task 0.5"},
                    {P, 0.0f, 1.0f, 1.0f, 1.5f, "KL and cosine, no task term"}};
    for (int v = 0; v < 2; v++) {
        mmt_clip *teacher = random_teacher(b.model, variants[v].tp, 11 + (uint64_t)v);
        mmt_clip_train *tv = NULL, *ct = NULL;
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        CHECK(o.task_weight == 1 && o.distill_temperature == 1);
        if (teacher) CHECK_OK(mmt_clip_train_create(teacher, &o, &tv));
        o.train_logit_scale = 1;
        o.distill_teacher = tv;
        o.task_weight = variants[v].task;
        o.distill_weight = variants[v].kl;
        o.distill_temperature = variants[v].T;
        o.distill_cosine = variants[v].cos;
        if (tv) CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
        if (ct) {
            CHECK_OK(mmt_clip_train_make_full(ct));
            double with = loss_of(ct, &b);
            CHECK(isfinite(with) && with > 0);
            check_fd(ct, &b, variants[v].what);
        }
        mmt_clip_train_free(ct);
        mmt_clip_train_free(tv);
        mmt_clip_free(teacher);
    }
    batch_free(&b);
}

static void test_cli(void) {
    cli_run_setup(tmpdir);
    const char *model = MMT_SOURCE_DIR "/models/mmtune-clip-tiny";
    char data[512], out[512];
    snprintf(data, sizeof data, "%s/fm/train.jsonl", tmpdir);
    snprintf(out, sizeof out, "%s/run", tmpdir);
    CHECK(run("fashion-mnist --out %s/fm --split train --count-per-class 1 --seed 3", tmpdir) == 0);
    const char *base = "train --model %s --data %s --out %s --steps 1 --batch-size 4 --quiet";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, base, model, data, out);
    CHECK(run("%s --distill-from %s", cmd, model) == 2);
    CHECK(err_text && strstr(err_text, "--distill-from needs --distill W"));
    CHECK(run("%s --teacher-adapter %s", cmd, tmpdir) == 2);
    CHECK(err_text && strstr(err_text, "--teacher-adapter goes with --distill-from"));
    CHECK(run("%s --distill-cosine 1", cmd) == 2);
    CHECK(err_text && strstr(err_text, "go with --distill-from"));
    CHECK(run("%s --distill-from %s --distill 1 --distill-temperature 0", cmd, model) == 2);
    CHECK(err_text && strstr(err_text, "--distill-temperature must be > 0"));
    CHECK(run("%s --distill-from %s --distill 1 --gather-with-grad", cmd, model) == 2);
    CHECK(run("%s --distill-from %s --distill 1 --init-adapter %s --distill-from-previous", cmd, model, tmpdir) == 2);
    CHECK(err_text && strstr(err_text, "name two teachers"));
    CHECK(run("%s --distill-from %s/clip/tiny-b --distill 1", cmd, MMT_FIXTURE_DIR) == 1);
    CHECK(err_text && strstr(err_text, "must read the student's inputs"));
    CHECK(run("train --model %s/models/mmtune-git-tiny --data %s --out %s --distill-from %s --distill 1 --quiet",
              MMT_SOURCE_DIR, data, out, model) == 2);
    CHECK(err_text && strstr(err_text, "GIT captioner"));
    /* a run: LoRA on the default model distilled from itself with an adapter-free teacher */
    CHECK(run("%s --distill-from %s --distill 1 --distill-cosine 0.5 --distill-temperature 2 --task-weight 0.5", cmd, model) == 0);
    char *rec = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/run.json", out);
    rec = check_read_file(path, NULL);
    CHECK(rec && strstr(rec, "\"distill\": {\"teacher\": \"") && strstr(rec, "\"temperature\": 2"));
    free(rec);
    cli_run_cleanup();
}

int main(void) {
    rng_state = 0xd15711ull;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mmt_test_distill_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    RUN(test_loss_gradients);
    RUN(test_matches_existing_distillation);
    RUN(test_view_gradients);
    RUN(test_cli);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
