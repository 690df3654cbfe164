/*
 * adapter.h — LoRA and IA3 tensors attached to a model view (nn/model.h), in PEFT's layout.
 *
 * An adapter is a list of entries, one per adapted module (transformers' module name, such
 * as "text_model.encoder.layers.0.self_attn.q_proj"), each holding its tensors in memory the
 * adapter owns. Attaching points the view's linear layers at them; the view then computes
 * with them and (when trainable) registers them under PEFT's save keys:
 *     base_model.model.<module>.lora_A.weight   (r, in)          conv: (r, Cin, P, P)
 *     base_model.model.<module>.lora_B.weight   (out, r)         conv: (out, r, 1, 1)
 *     base_model.model.<module>.lora_magnitude_vector   DoRA (out); conv: (1, out, 1, 1)
 *     base_model.model.<module>.ia3_l           (out, 1), or (1, in) for feed-forward modules
 * (peft/utils/save_and_load.py get_peft_model_state_dict strips the adapter name "default").
 * Initialisation is PEFT's default (peft/tuners/lora/layer.py reset_lora_parameters):
 * A ~ kaiming_uniform(a = sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)), B = 0; IA3 vectors = 1;
 * DoRA's magnitude = the row norms ||W + scaling B A|| (= ||W|| while B = 0), as
 * peft/tuners/lora/dora.py DoraLinearLayer.update_layer.
 * Which modules, ranks and alphas come from the PEFT config (peft_config.h, target.h); this
 * file takes the resolved list.
 */
#ifndef MMT_PEFT_ADAPTER_H
#define MMT_PEFT_ADAPTER_H

#include <stdint.h>

#include "core/arena.h"
#include "core/safetensors.h"
#include "nn/model.h"
#include "nn/bottleneck.h"
#include "nn/linear.h"

/* BOTTLENECK: mmtune's own bottleneck adapters (peft/bottleneck_config.h); an entry's module
 * is then a slot name such as "text_model.encoder.layers.0.adapter_attn" and r its width D. */
typedef enum mmt_adapter_method { MMT_ADAPTER_LORA, MMT_ADAPTER_IA3, MMT_ADAPTER_BOTTLENECK } mmt_adapter_method;

/* One module to adapt, as resolved from a config. */
typedef struct mmt_adapter_target {
    const char *module;
    int64_t r;          /* LoRA rank */
    double alpha;       /* LoRA alpha */
    int feedforward;    /* IA3: scale the input instead of the output */
} mmt_adapter_target;

typedef struct mmt_adapter_settings {
    mmt_adapter_method method;
    int use_rslora;     /* scaling alpha / sqrt(r) instead of alpha / r */
    float dropout;      /* LoRA dropout */
    uint64_t seed;      /* initialisation */
    int trainable;      /* register gradients with the view */
    int use_dora;       /* LoRA: DoRA's magnitude vector on every target */
    mmt_bottleneck_act bottleneck_act;
} mmt_adapter_settings;

typedef struct mmt_adapter_entry {
    char *module;             /* owned */
    mmt_linear *linear;       /* in the view */
    int is_conv;              /* the patch embedding: PEFT saves 4-D tensors */
    int64_t conv_shape[4];    /* the conv weight's (out, Cin, P, P) */
    mmt_lora lora;            /* LoRA: a, b, DoRA's magnitude (and grads) point into the adapter's store */
    int feedforward;          /* IA3 */
    float *ia3, *dia3;        /* IA3 */
    mmt_bottleneck bottleneck; /* BOTTLENECK: tensors in the adapter's store */
    mmt_bottleneck **slot;    /* BOTTLENECK: where the view looks for it */
    /* in-memory merge (mmt_adapter_merge_in_view): the layer's own tensors while merged */
    const float *orig_w, *orig_b;
    float *merged_w, *merged_b; /* owned (mmt_malloc) while merged */
} mmt_adapter_entry;

/* A base tensor trained in full and saved whole: PEFT's modules_to_save. */
typedef struct mmt_adapter_saved {
    char *key;              /* in the store: "base_model.model." + hf_name */
    const char *hf_name;    /* into key: the tensor's Hugging Face name */
    float *data;            /* the view's trainable copy */
    int ndim;
    int64_t shape[4];
    int64_t numel;
} mmt_adapter_saved;

typedef struct mmt_adapter {
    mmt_adapter_settings settings;
    int merged;                 /* folded into the view's weights (mmt_adapter_merge_in_view) */
    mmt_adapter_saved *saved;   /* owned; modules_to_save tensors */
    int64_t n_saved;
    mmt_adapter_entry *entries; /* owned */
    int64_t n;
    const mmt_model_iface *model; /* borrowed: the model view it is attached to */
    mmt_arena store;            /* owned: the tensors and names */
} mmt_adapter;

/* Attaches to every target (an unknown module name is an error naming it); with
 * settings->trainable the tensors are registered with the view under PEFT's keys. */
mmt_status mmt_adapter_attach(const mmt_model_iface *model, const mmt_adapter_settings *settings,
                              const mmt_adapter_target *targets, int64_t n, mmt_adapter **out);
/* Detaches from the view (its linear layers compute without the adapter again) and frees. */
void mmt_adapter_free(mmt_adapter *ad);

/* PEFT's modules_to_save: the named modules' tensors become trainable copies in the view,
 * saved with the adapter under "base_model.model.<tensor>" and put in place by merge. */
mmt_status mmt_adapter_save_modules(mmt_adapter *ad, const char *const *modules, int64_t n);

/* Serving: folds a LoRA/DoRA/IA3 adapter into the view's layers (each adapted layer gets a
 * merged copy of its weight, and bias for IA3 on outputs, and computes without the adapter:
 * one matmul instead of three), and back. Unmerging restores the layers' original tensors,
 * so it is exact, bit for bit; the base model is never written. Bottleneck adapters cannot
 * be merged (UNSUPPORTED). Training a merged adapter is refused by the view (no gradients). */
mmt_status mmt_adapter_merge_in_view(mmt_adapter *ad);
void mmt_adapter_unmerge_in_view(mmt_adapter *ad);

/* Number of adapter floats (trainable parameter count). */
int64_t mmt_adapter_numel(const mmt_adapter *ad);

/* adapter_model.safetensors with PEFT's keys and shapes. */
mmt_status mmt_adapter_save_tensors(const mmt_adapter *ad, const char *path);
/* Reads PEFT-keyed tensors into the attached entries: every entry's tensors must be present
 * with the right shape (F32, F16 or BF16); keys for modules not in the adapter are errors. */
mmt_status mmt_adapter_load_tensors(mmt_adapter *ad, const char *path);

/* The PEFT key of an entry's tensor ("lora_A.weight", "lora_B.weight", "ia3_l"). */
void mmt_adapter_key(const mmt_adapter_entry *e, const char *suffix, char *out, size_t cap);

/* For merging into a checkpoint: the merged value of base tensor `name` (a module's
 * ".weight" or ".bias") given its base values; returns 1 and fills out (numel floats) when
 * the adapter changes that tensor, 0 when it does not. LoRA: W + scaling B A; DoRA: that
 * times m / ||W + scaling B A|| per row (bias unchanged, as PEFT's DoraLinearVariant.merge); IA3: rows
 * (output) or columns (feed-forward input) of W scaled, bias scaled in the output case. */
int mmt_adapter_merged_tensor(const mmt_adapter *ad, const char *name, const float *base,
                              int64_t numel, float *out);

#endif
