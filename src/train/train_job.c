/* train_job.c — one CLIP training run from checked settings (see train_job.h). */
#include "train/train_job.h"

#include "dist/comm.h"

#include "train/caption_task.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/weights.h"
#include "models/clip.h"
#include "peft/adapter_folder.h"
#include "peft/bottleneck_config.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"
#include "train/clip_task.h"
#include "train/continual.h"
#include "train/probe_fit.h"
#include "train/probe_task.h"
#include "train/run_dir.h"
#include "train/schedule.h"

struct mmt_train_job {
    mmt_clip *model;               /* borrowed; NULL for a captioner */
    mmt_dicom_options dicom;       /* --window (zeroed: each DICOM file's own) */
    mmt_git *git;                  /* borrowed: a captioner's model */
    mmt_caption_task *caption;     /* owned: a captioner's task */
    const mmt_pairs *pairs;        /* borrowed */
    const mmt_train_config *c;     /* borrowed */
    /* what the task trains; the task points at these, so they live as long as it does */
    mmt_peft_config peft;          /* owned when have_peft */
    int have_peft;
    mmt_bottleneck_config bottleneck;
    int have_bottleneck;
    mmt_prompt_settings prompt;
    int have_prompt;
    /* --distill-from: the teacher, frozen, run forward only (docs/distillation.md) */
    mmt_clip *teacher;             /* owned */
    mmt_clip_train *teacher_view;  /* owned: the teacher with --teacher-adapter attached */
    mmt_adapter *teacher_adapter;  /* owned */
    mmt_prompt *teacher_prompt;    /* owned */
    mmt_clip_task *task;           /* owned; NULL for linear-probe */
    char *settings_json;           /* owned: trainer_state.json's "settings" */
    char *identity_json;           /* owned: run.json's identity */
    mmt_continual *continual;      /* owned: initial adapter, EWC, replay (train/continual.h) */
    /* linear-probe */
    mmt_probe_task *probe;         /* owned */
    mmt_run_dir run_dir;           /* held while have_run_dir */
    int have_run_dir;
};

static int is_method(const mmt_train_config *c, const char *name) { return strcmp(c->o.method, name) == 0; }

/* A comma-separated setting as a name list of the PEFT config. */
static mmt_status set_names(mmt_peft_names *names, const char *list) {
    char *copy = NULL;
    int64_t n = 0;
    char **items = mmt_train_split_list(list, &copy, &n);
    mmt_status s = items ? mmt_peft_names_set_list(names, (const char *const *)items, n) : MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(items);
    mmt_free(copy);
    return s;
}

/* The PEFT config the settings describe (LoRA or IA3). */
static mmt_status build_peft_config(const mmt_train_config *c, mmt_peft_config *pc) {
    const mmt_train_options *o = &c->o;
    mmt_peft_type type = is_method(c, "ia3") ? MMT_PEFT_IA3 : MMT_PEFT_LORA;
    mmt_status s = mmt_peft_config_default(pc, type);
    if (s != MMT_OK) return s;
    mmt_free(pc->base_model_name_or_path);
    if (!(pc->base_model_name_or_path = mmt_strdup(c->model))) s = MMT_STATUS_OUT_OF_MEMORY;
    if (type == MMT_PEFT_LORA) {
        pc->r = o->lora_r;
        pc->lora_alpha = o->lora_alpha;
        pc->lora_dropout = o->lora_dropout;
        pc->use_rslora = o->use_rslora;
        pc->use_dora = o->use_dora;
    }
    if (s == MMT_OK) {
        if (o->target_regex) s = mmt_peft_names_set_regex(&pc->target_modules, o->target_regex);
        else if (strcmp(o->target_modules, "all-linear") == 0) s = mmt_peft_names_set_regex(&pc->target_modules, "all-linear");
        else s = set_names(&pc->target_modules, o->target_modules);
    }
    if (s == MMT_OK && o->modules_to_save && o->modules_to_save[0]) s = set_names(&pc->modules_to_save, o->modules_to_save);
    if (s == MMT_OK && type == MMT_PEFT_IA3) s = set_names(&pc->feedforward_modules, o->feedforward_modules);
    if (s == MMT_OK && !mmt_peft_scope_parse(o->scope, &pc->scope))
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--scope takes both, text or vision, not '%s'", o->scope);
    if (s == MMT_OK && o->layers_to_transform && o->layers_to_transform[0]) {
        s = mmt_train_parse_layers(o->layers_to_transform, -1, &pc->layers_to_transform, &pc->n_layers_to_transform);
        pc->layers_to_transform_kind = 2;
    }
    if (s == MMT_OK) s = mmt_peft_config_validate(pc, "the training settings");
    if (s != MMT_OK) mmt_peft_config_free(pc);
    return s;
}

/* The prompt / prefix tokens the settings ask for (any method but full and linear-probe;
 * mmt_train_config_check has refused the combinations that cannot be). 0 when none. */
static int build_prompt_settings(const mmt_train_config *c, mmt_prompt_settings *ps) {
    const mmt_train_options *o = &c->o;
    memset(ps, 0, sizeof *ps);
    ps->text_tokens = o->prompt_tokens;
    ps->visual_tokens = o->visual_prompt_tokens;
    if (is_method(c, "prompt")) ps->text_tokens = o->num_virtual_tokens;
    if (is_method(c, "visual-prompt")) ps->visual_tokens = o->num_virtual_tokens;
    if (is_method(c, "prefix")) {
        ps->prefix_tokens = o->num_virtual_tokens;
        ps->prefix_projection = o->prefix_projection;
        ps->encoder_hidden_size = o->encoder_hidden_size;
        ps->prefix_vision = o->prefix_vision;
    }
    ps->visual_deep = o->vpt_deep;
    return ps->text_tokens > 0 || ps->visual_tokens > 0 || ps->prefix_tokens > 0;
}

static void task_options(const mmt_train_job *j, mmt_clip_task_options *to) {
    const mmt_train_options *o = &j->c->o;
    int is_full = is_method(j->c, "full");
    memset(to, 0, sizeof *to);
    to->peft = j->have_peft ? &j->peft : NULL;
    to->bottleneck = j->have_bottleneck ? &j->bottleneck : NULL;
    to->prompt = j->have_prompt ? &j->prompt : NULL;
    to->prompt_init_text = o->prompt_tuning_init_text;
    mmt_clip_train_options_default(&to->train);
    to->train.checkpointing = o->gradient_checkpointing;
    to->train.recompute = o->recompute;
    to->train.train_logit_scale = o->learn_logit_scale || (is_full && o->temperature <= 0);
    to->train.fixed_temperature = (float)o->temperature;
    to->train.distill_weight = (float)o->distill_weight;
    to->seed = (uint64_t)o->seed;
    to->cache_bytes = (size_t)o->cache_mb << 20;
    to->loader_workers = o->loader_workers;
    to->prefetch_batches = o->prefetch;
    mmt_augment_default(&to->augment);
    to->augment.crop = o->augment_crop;
    to->augment.flip = o->augment_flip;
    to->augment.brightness = to->augment.contrast = to->augment.saturation = o->augment_jitter;
    to->dicom = j->dicom;
    to->hard_ratio = o->sampling && !strcmp(o->sampling, "hard") ? o->hard_ratio : 0;
}

/* linear-probe: CLIP's linear probe. The run folder is held and recorded as a training run's
 * is (train/run_dir.h); the image embeddings are computed once, here. The trainer's loop
 * settings (steps, epochs, lr, schedule) do not apply. */
static mmt_status probe_create(mmt_train_job *j) {
    const mmt_train_config *c = j->c;
    mmt_comm *world = NULL;
    MMT_TRY(mmt_comm_world(&world));
    if (mmt_comm_size(world) > 1)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "the linear probe is fitted in one process (L-BFGS over every "
                                                "embedding); run it without mpirun");
    char *identity = NULL, *nothing = NULL;
    mmt_status s = mmt_train_config_identity_json(c, j->pairs, &identity);
    if (s != MMT_OK) return s;
    mmt_run_dir_options ro = {identity, c->o.overwrite, NULL};
    s = mmt_run_dir_open(c->out, &ro, &j->run_dir, &nothing);
    mmt_free(identity);
    mmt_free(nothing);
    if (s != MMT_OK) return s;
    j->have_run_dir = 1;
    mmt_train_options d;
    mmt_train_options_default(&d);
    if (c->o.steps != d.steps || c->o.epochs != d.epochs || c->o.lr != d.lr)
        mmt_log_warn("linear probe: fitted to convergence by L-BFGS with C chosen on held-out data; "
                     "--steps, --epochs and --lr do not apply");
    return mmt_probe_task_create(j->model, j->pairs, &j->probe);
}

/* --window: parsed once into j->dicom, which the image source and the model (images it
 * embeds during training: hard batches, the linear probe) render DICOM with. */
static mmt_status dicom_window(mmt_train_job *j) {
    memset(&j->dicom, 0, sizeof j->dicom);
    return j->c->o.window ? mmt_dicom_window_parse(j->c->o.window, "--window", &j->dicom) : MMT_OK;
}

/* --quantize: the base's linears kept quantized before the views are made (QLoRA with nf4). */

static mmt_status quantize_options(const mmt_train_config *c, mmt_quant_options *q) {
    mmt_quant_type t = MMT_QUANT_NONE;
    if (c->o.quantize && strcmp(c->o.quantize, "none") != 0) MMT_TRY(mmt_quant_type_parse(c->o.quantize, &t));
    mmt_quant_options_default(q, t);
    return MMT_OK;
}

mmt_status mmt_train_job_create_caption(mmt_git *model, const mmt_pairs *pairs, const mmt_train_config *c,
                                        mmt_train_job **out) {
    *out = NULL;
    mmt_train_job *j = mmt_calloc(1, sizeof *j);
    if (!j) return MMT_STATUS_OUT_OF_MEMORY;
    j->git = model;
    j->pairs = pairs;
    j->c = c;
    mmt_status s = dicom_window(j);
    if (s != MMT_OK) goto done;
    mmt_git_set_dicom_options(model, &j->dicom);
    if (is_method(c, "lora") || is_method(c, "ia3")) {
        if ((s = build_peft_config(c, &j->peft)) != MMT_OK) goto done;
        j->have_peft = 1;
    } else if (!is_method(c, "full") && !(j->have_prompt = build_prompt_settings(c, &j->prompt))) {
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: --method %s does not apply to a GIT captioner", c->o.method);
        goto done;
    }
    if (c->o.gradient_checkpointing || c->o.recompute) {
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s is for CLIP's encoders; a GIT captioner keeps its activations",
                     c->o.recompute ? "--recompute" : "--checkpointing");
        goto done;
    }
    if (c->o.gather_with_grad) {
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--gather-with-grad is for the contrastive loss; a captioner's loss is "
                                                  "per token and needs no other rank's batch");
        goto done;
    }
    mmt_quant_options q;
    if ((s = quantize_options(c, &q)) != MMT_OK || (q.type && (s = mmt_git_quantize(model, &q)) != MMT_OK)) goto done;
    const mmt_train_options *o = &c->o;
    mmt_caption_task_options to = {.peft = j->have_peft ? &j->peft : NULL, .prompt = j->have_prompt ? &j->prompt : NULL,
                                   .prompt_init_text = o->prompt_tuning_init_text,
                                   .max_tokens = o->max_caption_tokens, .label_smoothing = (float)o->label_smoothing,
                                   .seed = (uint64_t)o->seed, .cache_bytes = (size_t)o->cache_mb << 20,
                                   .loader_workers = o->loader_workers, .prefetch_batches = o->prefetch};
    mmt_augment_default(&to.augment);
    to.augment.crop = o->augment_crop;
    to.augment.flip = o->augment_flip;
    to.augment.brightness = to.augment.contrast = to.augment.saturation = o->augment_jitter;
    to.dicom = j->dicom;
    if ((s = mmt_continual_open(c, pairs, &j->continual)) != MMT_OK) goto done;
    if ((s = mmt_caption_task_create(model, mmt_continual_pairs(j->continual), &to, &j->caption)) != MMT_OK) goto done;
    mmt_train_task tt;
    mmt_caption_task_bind(j->caption, &tt);
    if ((s = mmt_continual_bind(j->continual, &tt)) != MMT_OK) goto done;
    if (!(j->settings_json = mmt_train_config_settings_json(c, 0))) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if ((s = mmt_train_config_identity_json(c, pairs, &j->identity_json)) == MMT_OK)
        s = mmt_continual_identity(j->continual, &j->identity_json);
done:
    if (s != MMT_OK) {
        mmt_train_job_free(j);
        return s;
    }
    *out = j;
    return MMT_OK;
}

/* --distill-from: loads the teacher (with --teacher-adapter) and points the student's options
 * at it. It reads the student's inputs, so its image size and channels, vocabulary, context
 * and EOS id must be the student's (the pixels come from the student's processor). */
static mmt_status teacher_open(mmt_train_job *j, mmt_clip_train_options *to) {
    const mmt_train_options *o = &j->c->o;
    if (!o->distill_from || !o->distill_from[0]) return MMT_OK;
    MMT_TRY(mmt_clip_load(o->distill_from, &j->teacher));
    const mmt_clip_config *s = mmt_clip_config_of(j->model), *t = mmt_clip_config_of(j->teacher);
    if (!t->has_text || !t->has_vision)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-from %s: the teacher needs both towers", o->distill_from);
    if (t->vision.image_size != s->vision.image_size || t->vision.num_channels != s->vision.num_channels ||
        t->text.vocab_size != s->text.vocab_size || t->text.max_positions != s->text.max_positions ||
        t->text.eos_token_id != s->text.eos_token_id)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-from %s: the teacher must read the student's inputs "
                        "(image size %lld, student %lld; vocabulary %lld, student %lld; context %lld, student %lld; EOS id "
                        "%lld, student %lld)", o->distill_from, (long long)t->vision.image_size,
                        (long long)s->vision.image_size, (long long)t->text.vocab_size, (long long)s->text.vocab_size,
                        (long long)t->text.max_positions, (long long)s->text.max_positions, (long long)t->text.eos_token_id,
                        (long long)s->text.eos_token_id);
    if (o->distill_cosine > 0 && t->projection_dim != s->projection_dim)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--distill-cosine compares embeddings: the teacher %s has "
                        "projection_dim %lld, the student %lld", o->distill_from, (long long)t->projection_dim,
                        (long long)s->projection_dim);
    mmt_clip_train_options vo;
    mmt_clip_train_options_default(&vo);
    MMT_TRY(mmt_clip_train_create(j->teacher, &vo, &j->teacher_view));
    if (o->teacher_adapter)
        MMT_TRY(mmt_adapter_folders_load(mmt_clip_train_iface(j->teacher_view), o->teacher_adapter, 0, &j->teacher_adapter,
                                         &j->teacher_prompt));
    to->distill_teacher = j->teacher_view;
    to->distill_temperature = (float)o->distill_temperature;
    to->distill_cosine = (float)o->distill_cosine;
    to->task_weight = (float)o->task_weight;
    return MMT_OK;
}

mmt_status mmt_train_job_create(mmt_clip *model, const mmt_pairs *pairs, const mmt_train_config *c,
                                mmt_train_job **out) {
    *out = NULL;
    mmt_train_job *j = mmt_calloc(1, sizeof *j);
    if (!j) return MMT_STATUS_OUT_OF_MEMORY;
    j->model = model;
    j->pairs = pairs;
    j->c = c;
    mmt_status s = dicom_window(j);
    if (s != MMT_OK) goto done;
    mmt_clip_set_dicom_options(model, &j->dicom);
    if (is_method(c, "linear-probe")) {
        s = probe_create(j);
        goto done;
    }
    if (is_method(c, "adapter")) {
        if ((s = mmt_train_config_bottleneck(c, &j->bottleneck)) != MMT_OK) goto done;
        j->have_bottleneck = 1;
    } else if (is_method(c, "lora") || is_method(c, "ia3")) {
        if ((s = build_peft_config(c, &j->peft)) != MMT_OK) goto done;
        j->have_peft = 1;
    }
    j->have_prompt = build_prompt_settings(c, &j->prompt);
    mmt_quant_options q;
    if ((s = quantize_options(c, &q)) != MMT_OK || (q.type && (s = mmt_clip_quantize(model, &q)) != MMT_OK)) goto done;
    mmt_clip_task_options to;
    task_options(j, &to);
    if ((s = teacher_open(j, &to.train)) != MMT_OK) goto done;
    if (c->o.gather_with_grad) { /* the contrastive negatives from every rank's micro-batch */
        mmt_comm *world = NULL;
        if ((s = mmt_comm_world(&world)) != MMT_OK) goto done;
        if (c->o.as_ranks > mmt_comm_size(world)) {
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--gather-with-grad needs every share on a rank of its own: "
                                                      "--as-ranks %lld is more than the job's %d ranks",
                         (long long)c->o.as_ranks, mmt_comm_size(world));
            goto done;
        }
        to.train.comm = world;
        to.train.gather_with_grad = 1;
    }
    if ((s = mmt_continual_open(c, pairs, &j->continual)) != MMT_OK ||
        (s = mmt_continual_teacher(j->continual, model, &to.train.base_teacher)) != MMT_OK)
        goto done;
    if ((s = mmt_clip_task_create(model, mmt_continual_pairs(j->continual), &to, &j->task)) != MMT_OK) goto done;
    mmt_train_task tt;
    mmt_clip_task_bind(j->task, &tt);
    if ((s = mmt_continual_bind(j->continual, &tt)) != MMT_OK) goto done;
    if (!(j->settings_json = mmt_train_config_settings_json(c, 0))) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if ((s = mmt_train_config_identity_json(c, pairs, &j->identity_json)) == MMT_OK)
        s = mmt_continual_identity(j->continual, &j->identity_json);
done:
    if (s != MMT_OK) {
        mmt_train_job_free(j);
        return s;
    }
    *out = j;
    return MMT_OK;
}

void mmt_train_job_free(mmt_train_job *j) {
    if (!j) return;
    mmt_clip_task_free(j->task); /* first: it points at the configs below */
    mmt_caption_task_free(j->caption);
    mmt_continual_free(j->continual); /* after the task: it holds the teacher and the pairs */
    mmt_prompt_free(j->teacher_prompt); /* after the task, which runs the teacher */
    mmt_adapter_free(j->teacher_adapter);
    mmt_clip_train_free(j->teacher_view);
    mmt_clip_free(j->teacher);
    if (j->have_peft) mmt_peft_config_free(&j->peft);
    mmt_probe_task_free(j->probe);
    if (j->have_run_dir) mmt_run_dir_close(&j->run_dir);
    mmt_free(j->settings_json);
    mmt_free(j->identity_json);
    mmt_free(j);
}

int64_t mmt_train_job_trainable_params(const mmt_train_job *j) {
    if (j->probe) {
        const mmt_probe_head *h = mmt_probe_task_head(j->probe);
        return h->K * (h->P + 1);
    }
    if (j->caption) return mmt_caption_task_trainable_numel(j->caption);
    return mmt_clip_task_trainable_numel(j->task);
}

int64_t mmt_train_job_total_params(const mmt_train_job *j) {
    return j->git ? mmt_git_param_count(j->git) : mmt_weights_param_count(mmt_clip_weights(j->model));
}

static mmt_status probe_run(mmt_train_job *j, mmt_train_job_result *result) {
    mmt_probe_fit_params fp;
    mmt_probe_fit_params_default(&fp);
    fp.seed = (uint64_t)j->c->o.seed;
    mmt_probe_fit_result r;
    memset(&r, 0, sizeof r);
    mmt_status s = mmt_probe_task_fit(j->probe, &fp, &r);
    if (s == MMT_OK)
        s = mmt_probe_head_publish(mmt_probe_task_head(j->probe), mmt_clip_weights(j->model)->dir, &r, &fp, j->c->out);
    if (s == MMT_OK) {
        result->train.steps_done = result->train.steps_run = r.iterations;
        result->train.final_loss = r.train_loss;
        result->train.seconds = r.seconds;
        result->probe_iterations = r.iterations;
        for (int64_t i = 0; i < r.n_sweep; i++) result->probe_iterations += r.sweep[i].iterations;
        result->probe_C = r.C;
        result->probe_heldout_accuracy = r.heldout_accuracy;
    }
    mmt_probe_fit_result_free(&r);
    return s;
}

mmt_status mmt_train_job_run(mmt_train_job *j, void (*on_step)(void *user, const mmt_train_progress *progress),
                             void *user, mmt_train_job_result *result) {
    memset(result, 0, sizeof *result);
    result->probe_C = result->probe_heldout_accuracy = NAN;
    if (j->probe) return probe_run(j, result);
    const mmt_train_config *c = j->c;
    const mmt_train_options *o = &c->o;
    mmt_train_task tt;
    if (j->caption) mmt_caption_task_bind(j->caption, &tt);
    else mmt_clip_task_bind(j->task, &tt);
    mmt_train_settings ts;
    mmt_train_settings_default(&ts);
    if (mmt_schedule_kind_parse(o->schedule, &ts.schedule) != MMT_OK) return MMT_STATUS_INVALID_ARGUMENT; /* checked */
    ts.out = c->out;
    ts.resume = o->resume;
    ts.steps = o->steps;
    ts.epochs = o->epochs;
    ts.batch_size = o->batch_size;
    ts.grad_accum = o->grad_accum;
    ts.lr = o->lr;
    ts.optim = o->optim;
    ts.lr_scales = o->lr_scales;
    ts.weight_decay = o->weight_decay;
    ts.max_grad_norm = o->max_grad_norm;
    ts.warmup_ratio = o->warmup_ratio;
    ts.warmup_steps = o->warmup_steps;
    ts.min_lr_rate = o->min_lr_rate;
    ts.seed = (uint64_t)o->seed;
    ts.save_every = o->save_every;
    ts.keep_checkpoints = o->keep_checkpoints;
    ts.on_step = on_step;
    ts.on_step_user = user;
    ts.quiet = c->quiet;
    ts.settings_json = j->settings_json;
    ts.identity_json = j->identity_json;
    ts.overwrite = o->overwrite;
    ts.zero = (int)o->zero;
    ts.overlap_comm = o->overlap_comm;
    ts.as_ranks = o->as_ranks;
    MMT_TRY(mmt_comm_world(&ts.comm));
    mmt_continual_settings(j->continual, &ts);
    MMT_TRY(mmt_train_run(&tt, &ts, &result->train));
    return mmt_continual_finish(j->continual, &tt, ts.comm);
}
