/*
 * prompt.h — prompt and prefix tuning: the learned tokens, their initialisation, the prefix
 * projection MLP, and their tensors in an adapter file (CLIP; GIT takes text prompts and
 * decoder prefixes).
 *
 * Three kinds of learned tokens, any of which may be combined (and combined with a LoRA or
 * IA3 adapter on the same view):
 *   - text prompts (CoOp): M context vectors (M, C_text) after the BOS embedding;
 *   - visual prompts (VPT): P tokens (P, C_vision) after CLS; VPT-deep adds layer i's own P
 *     tokens for every encoder layer i >= 1;
 *   - prefixes (prefix tuning): per encoder layer V key rows and V value rows in front of
 *     self-attention's keys and values, in the text tower and, optionally, the vision tower.
 *     Raw: a trainable (V, L*2*C) tensor in PEFT's prompt_embeddings layout. With
 *     prefix_projection (PEFT's PrefixEncoder): Embedding(V, C) -> Linear(C, E) -> Tanh ->
 *     Linear(E, L*2*C) is trained instead and recomputed before every forward (a view hook).
 * How the towers use them is the family's: CLIP puts text prompts after BOS (CoOp,
 * models/clip_train.c), GIT in front of the whole text (PEFT's PROMPT_TUNING, models/git_train.c).
 *
 * Tensor names (adapter_model.safetensors; also the names the view registers, so optimizer
 * state and gradients carry them):
 *   prompt_embeddings                        text prompts (M, C_text), or the text tower's
 *                                            prefixes (V, L_text*2*C_text) (PEFT's names)
 *   mmtune.visual_prompt.shallow             (P, C_vision)
 *   mmtune.visual_prompt.deep.<i>            (P, C_vision), i = 1 .. L_vision-1 (VPT-deep)
 *   mmtune.prefix.vision                     (V, L_vision*2*C_vision)
 *   mmtune.prefix_encoder.<text|vision>.embedding.weight    (V, C)
 *   mmtune.prefix_encoder.<text|vision>.transform.0.weight  (E, C)     .bias (E)
 *   mmtune.prefix_encoder.<text|vision>.transform.2.weight  (L*2*C, E) .bias (L*2*C)
 * With the projection the raw names hold the MLP's output (as PEFT saves it: "baked"), and
 * the encoder names hold what trains. Which parts a file has is read from its tensor names
 * and shapes (mmt_prompt_settings_from_file); adapter_config.json carries PEFT's keys only.
 *
 * Initialisation: text prompts N(0, 0.02^2) (CoOp; or the settings' std: 1 is PEFT's
 * nn.Embedding), or the token embeddings of an init text repeated to M, cut at M (PEFT's
 * prompt_tuning_init TEXT); visual prompts U(-a, a) with
 * a = sqrt(6 / (3 * patch^2 + C)) (VPT's xavier-uniform, KMnP/vpt vit.py); raw prefixes and
 * the projection's embedding N(0, 1) (torch's nn.Embedding, as PEFT's PrefixEncoder); the
 * projection's linears U(-1/sqrt(in), 1/sqrt(in)) for weight and bias (torch's nn.Linear).
 */
#ifndef MMT_PEFT_PROMPT_H
#define MMT_PEFT_PROMPT_H

#include <stdint.h>

#include "core/arena.h"
#include "nn/model.h"
#include "peft/peft_config.h"

typedef struct mmt_prompt_settings {
    int64_t text_tokens;        /* CoOp context vectors (0: none) */
    const int32_t *init_ids;    /* text init: token ids, repeated to text_tokens; NULL: random */
    double text_init_std;       /* random text prompts: N(0, std^2); 0: 0.02 (CoOp) */
    int64_t n_init_ids;
    int64_t visual_tokens;      /* VPT tokens (0: none) */
    int visual_deep;            /* VPT-deep */
    int64_t prefix_tokens;      /* prefixes per layer (0: none); the text tower always */
    int prefix_vision;          /* the vision tower's layers too */
    int prefix_projection;      /* train PEFT's reparameterisation MLP instead of raw prefixes */
    int64_t encoder_hidden_size;/* the MLP's width E (0: each tower's hidden size) */
    uint64_t seed;              /* initialisation */
    int trainable;              /* register the tensors with the view */
    const char *source;         /* NULL, or the file the settings were read from (set by
                                 * mmt_prompt_settings_from_file): mmt_prompt_attach names it in
                                 * its errors. Borrowed: must live until attach returns; not kept */
} mmt_prompt_settings;

/* One tower's prefixes. */
typedef struct mmt_prompt_prefix {
    int64_t V, L, C, E;         /* V = 0: none */
    float *kv, *dkv;            /* (V, L*2*C): the prefixes and the view's gradient for them */
    int projection;
    float *emb, *demb;          /* (V, C) */
    float *w1, *dw1, *b1, *db1; /* (E, C), (E) */
    float *w2, *dw2, *b2, *db2; /* (L*2*C, E), (L*2*C) */
    float *hidden, *dhidden;    /* tanh output and its gradient (V, E) */
    float *dpre;                /* the gradient before the tanh (V, E) */
} mmt_prompt_prefix;

typedef struct mmt_prompt {
    mmt_prompt_settings settings;   /* init_ids not kept */
    const mmt_model_iface *model;   /* borrowed: the model view the tokens are attached to */
    const struct mmt_ops *ops;      /* borrowed: the view's table (the projection MLP) */
    int64_t text_dim, vision_dim, vision_layers;
    float *text, *dtext;            /* (M, C_text) */
    float *visual, *dvisual;        /* (deep ? L_vision : 1, P, C_vision) */
    mmt_prompt_prefix prefix[2];    /* [0] text, [1] vision */
    int hooked;
    mmt_arena store;                /* owned: every tensor */
} mmt_prompt;

/* Creates the tokens, attaches them to the view (and registers them when trainable). */
mmt_status mmt_prompt_attach(const mmt_model_iface *model, const mmt_prompt_settings *settings, mmt_prompt **out);
/* Detaches from the view and frees; NULL is fine. */
void mmt_prompt_free(mmt_prompt *p);
/* Trainable floats. */
int64_t mmt_prompt_numel(const mmt_prompt *p);

/* Writes every tensor listed above that the prompt has (projection output refreshed). */
mmt_status mmt_prompt_save_tensors(mmt_prompt *p, const char *path);
/* Reads them back: every tensor must be present with its shape; unknown names are errors.
 * A projection prompt whose file lacks the encoder tensors (PEFT saves only the baked
 * output) loads the baked prefixes, frozen: not trainable. */
mmt_status mmt_prompt_load_tensors(mmt_prompt *p, const char *path);

/* The settings a saved file describes: its tensor names and shapes, checked against the
 * config (peft_type PROMPT_TUNING or PREFIX_TUNING; num_virtual_tokens, token_dim,
 * num_layers, prefix_projection, encoder_hidden_size). */
mmt_status mmt_prompt_settings_from_file(const mmt_peft_config *cfg, const char *tensors_path,
                                         const mmt_model_dims *dims, mmt_prompt_settings *out);
/* The adapter_config.json for these settings: PREFIX_TUNING when there are prefixes, else
 * PROMPT_TUNING; the PEFT sizes describe the text part (prompts or prefixes), or, with visual
 * prompts only, the vision tower (num_virtual_tokens = P, token_dim = C_vision). */
mmt_status mmt_prompt_peft_config(const mmt_prompt_settings *s, const mmt_model_dims *dims,
                                  const char *init_text, mmt_peft_config *out);

#endif
