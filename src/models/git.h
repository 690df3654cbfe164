/*
 * git.h — Microsoft's GIT captioner as transformers implements it (GitForCausalLM,
 * modeling_git.py): a CLIP vision tower whose last hidden states (post_layernorm at every
 * position) go through Linear + LayerNorm into a BERT-style post-LN decoder, in front of the
 * text. The image tokens attend to each other both ways and to no text; each text token
 * attends to every image token and causally to the text; the output head (with its bias)
 * gives next-token logits.
 *
 * The base model (mmt_git) is immutable after load and shared by threads. A run context
 * (mmt_git_run, one per thread) holds the decoder's blocks, activations and KV caches:
 *
 *     mmt_git_run_image_features(r, pixels, B, feats);        // (B, Ni, C), once per image
 *     mmt_git_run_start(r, feats, B, prompt, L, cap, logits);  // image + prompt into the cache
 *     mmt_git_run_step(r, next_tokens, logits);                // one token per row, cached
 *     mmt_git_run_select(r, rows, B2);                         // beams: keep / copy rows
 *     mmt_git_run_join(r, feats2, B2, prompt2, L2, cap2, lg2);   // more rows join between steps
 *
 * Continuous batching (the server's captioner, serve/caption_service.h) joins rows into a
 * running decoding between steps and drops the finished ones with select: rows then differ in
 * length, each step feeding every row its own next position, and each row computes what it
 * would alone (tests/test_git.c: joined rows equal their own decoding and recomputation).
 * A run may keep several decodings apart (mmt_git_cache) and switch between them.
 * Text positions count from 0 at the first text token, as generate() passes them; with a
 * prompt-tuning adapter (PEFT's PROMPT_TUNING) its rows come first, at text positions 0..P-1,
 * in front of every row's text (in the cache after the image tokens), as PEFT's forward
 * places them; with prefix tuning the text positions start after the prefix.
 * Tensor names are GitForCausalLM's state_dict names; F32/F16/BF16, single or sharded
 * safetensors (core/weights.h).
 */
#ifndef MMT_MODELS_GIT_H
#define MMT_MODELS_GIT_H

#include <stdint.h>

#include "core/status.h"
#include "data/preprocess.h"
#include "models/git_config.h"

typedef struct mmt_git mmt_git;
typedef struct mmt_git_run mmt_git_run;
typedef struct mmt_git_cache mmt_git_cache;

/* Loads a snapshot folder: config.json (model_type "git"), the weights, and when present
 * preprocessor_config.json (else CLIP's processor at the tower's image size) and
 * tokenizer.json (WordPiece, data/wordpiece.h). */
mmt_status mmt_git_load(const char *dir, mmt_git **out);
/* Keeps the linear weights quantized (mmtune.h mmt_quant_options; before any run context). */
mmt_status mmt_git_quantize(mmt_git *m, const mmt_quant_options *o);
/* mmt_clip_prepack for the vision tower and the decoder's fp32 linears (the output head is
 * only ever multiplied by few rows, which stream it): for inference only. */
mmt_status mmt_git_prepack(mmt_git *m);
void mmt_git_free(mmt_git *m);

const mmt_git_config *mmt_git_config_of(const mmt_git *m);
const mmt_image_processor *mmt_git_processor(const mmt_git *m);
/* DICOM rendering for the image files decoded for this model (data/image.h), as
 * mmt_clip_set_dicom_options: a copy is kept, NULL restores each file's rule; the getter
 * gives what to pass to mmt_image_decode_file_ex. */
void mmt_git_set_dicom_options(mmt_git *m, const mmt_dicom_options *o);
const mmt_dicom_options *mmt_git_dicom_options(const mmt_git *m);
const char *mmt_git_dir(const mmt_git *m);
/* The WordPiece tokenizer of the snapshot's tokenizer.json (+ tokenizer_config.json), or NULL
 * when it has none. */
struct mmt_wordpiece;
const struct mmt_wordpiece *mmt_git_tokenizer(const mmt_git *m);
/* Image tokens in front of every caption: 1 + (image_size / patch_size)^2. */
int64_t mmt_git_image_tokens(const mmt_git *m);
/* Parameters of the checkpoint. */
int64_t mmt_git_param_count(const mmt_git *m);

mmt_status mmt_git_run_create(mmt_git *m, mmt_git_run **out);
void mmt_git_run_free(mmt_git_run *r);

/* feats (B, Ni, hidden_size) = LayerNorm(Linear(vision states)) of B preprocessed images
 * pixels (B, 3, S, S): git.visual_projection(git.image_encoder(pixels).last_hidden_state). */
mmt_status mmt_git_run_image_features(mmt_git_run *r, const float *pixels, int64_t B, float *feats);

/* logits (B, Ni + P + L, vocab) of the whole sequence [image tokens; P prompt rows; ids (B, L)]
 * with no cache: GitForCausalLM(input_ids=ids, pixel_values=pixels).logits, or with a
 * prompt-tuning adapter (P = its num_virtual_tokens, else 0) PeftModel(...)(same).logits. */
mmt_status mmt_git_run_logits(mmt_git_run *r, const float *pixels, const int32_t *ids, int64_t B, int64_t L,
                              float *logits);

/* Starts decoding B rows: the image features feats (B, Ni, C) and the first L >= 1 text tokens
 * of each row go into fresh KV caches sized for cap text tokens in all (cap >= L, at most
 * max_position_embeddings); logits (B, vocab) are the next-token logits after position L-1. */
mmt_status mmt_git_run_start(mmt_git_run *r, const float *feats, int64_t B, const int32_t *prompt, int64_t L,
                             int64_t cap, float *logits);
/* One more token per row (tokens (B)); logits (B, vocab) for the position after it. */
mmt_status mmt_git_run_step(mmt_git_run *r, const int32_t *tokens, float *logits);
/* The caches' rows become rows[0..n) of the current ones (repeats allowed: beam search's
 * reordering and the first expansion to beams); the batch is n rows from then on. */
mmt_status mmt_git_run_select(mmt_git_run *r, const int64_t *rows, int64_t n);
/* Text tokens cached so far per row (the most of any row once rows differ). */
int64_t mmt_git_run_length(const mmt_git_run *r);

/* Adds B2 rows to the running decoding, after its current rows: the image features feats
 * (B2, Ni, C) and the first L >= 1 text tokens of each new row go into the cache; logits
 * (B2, vocab) are the new rows' next-token logits. cap is checked as start checks it; the
 * decoding's room (one for every row) becomes the larger of its own and cap. The rows already there keep their place, caches and lengths; the next step feeds
 * every row. With no rows decoding this is mmt_git_run_start. On failure the decoding is
 * lost (no rows), so its callers must give up every row. */
mmt_status mmt_git_run_join(mmt_git_run *r, const float *feats, int64_t B2, const int32_t *prompt, int64_t L,
                            int64_t cap, float *logits);
/* Rows decoding (0 before start and after mmt_git_run_clear). */
int64_t mmt_git_run_rows(const mmt_git_run *r);
/* Ends the decoding: no rows (select cannot drop the last one). */
void mmt_git_run_clear(mmt_git_run *r);

/* A decoding of its own for run r (caches, rows, lengths), so that one run may hold several
 * and switch between them: the server's continuous batch and a beam search that runs
 * between two of its steps. Free it after the run stops using it. */
mmt_status mmt_git_cache_create(const mmt_git_run *r, mmt_git_cache **out);
void mmt_git_cache_free(mmt_git_cache *c);
/* The run decodes into c from now on (NULL: its own decoding again); what start, step,
 * select, join and the decoder of mmt_git_run_decoder do goes to c. */
void mmt_git_run_use_cache(mmt_git_run *r, mmt_git_cache *c);

/* The run as a decoder for gen/ (nn/decoder.h): its start(B, prompt, ...) decodes after the
 * image features feats (B, Ni, C) of B images (borrowed: they must live while the decoder is
 * used; start's B must equal n_images). */
struct mmt_decoder;
void mmt_git_run_decoder(mmt_git_run *r, const float *feats, int64_t n_images, struct mmt_decoder *out);

/* ---- training ------------------------------------------------------------------------------
 * The run is also GIT's training graph. What trains is decided after creation: PEFT methods
 * attach through mmt_git_run_iface (module names are GitForCausalLM's named_modules(); the
 * image encoder's are git.image_encoder.<CLIP's vision names>), make_full copies every base
 * tensor into memory the run owns and registers it under its Hugging Face name. One step:
 *     mmt_git_run_zero_grad(r);
 *     mmt_git_run_forward_loss(r, pixels, ids, labels, B, L, 0, seed, &loss);
 *     mmt_git_run_backward(r);
 * The loss is GitForCausalLM's: mean cross-entropy of the logits at image-token count + j
 * against labels[:, j + 1] over the labels that are not -100 (transformers' labels: usually
 * the ids with prompt and padding positions set to -100), with optional label smoothing as
 * torch's cross_entropy. GIT's own dropout is not applied (eval()-mode numerics). With P
 * prompt rows in front (prompt tuning) the labels are PEFT's: P labels of -100 in front, so
 * the logits at image-token count + P - 1 + j predict labels[:, j] ([CLS] included, from the
 * last prompt row) and the prompt rows' gradient goes to the prompt tensor. */
struct mmt_model_iface;
struct mmt_nn_param;
struct mmt_linear;
const struct mmt_model_iface *mmt_git_run_iface(mmt_git_run *r);
/* The trainable tensors (the vision tower's first); valid until a tensor is registered. */
const struct mmt_nn_param *mmt_git_run_params(mmt_git_run *r, int64_t *n);
void mmt_git_run_zero_grad(mmt_git_run *r);
/* Evaluation mode: forward_loss computes the loss only, backward is refused. */
void mmt_git_run_set_eval(mmt_git_run *r, int eval);
mmt_status mmt_git_run_make_full(mmt_git_run *r);
/* The linear layer behind a module name, or NULL. */
struct mmt_linear *mmt_git_run_linear(mmt_git_run *r, const char *module);
/* pixels (B, 3, S, S); ids and labels (B, L), L >= 2 (ids start with [CLS]). */
mmt_status mmt_git_run_forward_loss(mmt_git_run *r, const float *pixels, const int32_t *ids, const int32_t *labels,
                                    int64_t B, int64_t L, float label_smoothing, uint64_t seed, double *loss);
mmt_status mmt_git_run_backward(mmt_git_run *r);

#endif
