/*
 * clip.h — CLIP dual encoder (transformers CLIPModel) inference in fp32.
 *
 * The public entry points are in mmtune.h (mmt_clip_load, mmt_clip_embed_*); this header adds
 * the lower-level calls the CLI, tests and later layers (PEFT, training, serving) use: encode
 * preprocessed pixels or token ids directly, and look at the loaded config and weights.
 * Forward math follows modeling_clip.py exactly (formats.md §1.3): pre-LN encoder layers,
 * causal mask in the text tower only, text pooling at the EOS position (argmax of ids for
 * legacy eos_token_id == 2), vision pooling at CLS with post_layernorm on CLS only,
 * projections without bias, L2 normalisation without epsilon.
 */
#ifndef MMT_MODELS_CLIP_H
#define MMT_MODELS_CLIP_H

#include "mmtune.h"
#include "models/clip_config.h"
#include "core/weights.h"

struct mmt_tokenizer;
struct mmt_image_processor;
struct mmt_dicom_options;

/* A model with the given config and random weights (std 0.02; norms 1/0), for benchmarks.
 * It has no tokenizer; its processor is the CLIP default. */
mmt_status mmt_clip_create_random(const mmt_clip_config *cfg, uint64_t seed, mmt_clip **out);
/* The same with its linears quantized as each is generated (q NULL: none), so the whole model
 * never exists in float32 (the peak memory of a quantized benchmark model). */
mmt_status mmt_clip_create_random_quantized(const mmt_clip_config *cfg, uint64_t seed, const mmt_quant_options *q,
                                            mmt_clip **out);

/* Packs every fp32 linear of the encoders into the op table's GEMM panels once, so inference
 * stops packing them on every call (ops.h matmul_pack): the same bits, for a copy of those
 * weights in memory. For inference only: the weights must not change afterwards (a layer
 * whose weight pointer changes, as merging an adapter does, or that trains, goes back to
 * packing per call). Does nothing on a table that does not pack (the reference). */
mmt_status mmt_clip_prepack(mmt_clip *model);

const mmt_clip_config *mmt_clip_config_of(const mmt_clip *model);
const mmt_weights *mmt_clip_weights(const mmt_clip *model);
/* NULL when the folder has no vocab.json/merges.txt (text encoding then fails clearly). */
struct mmt_tokenizer *mmt_clip_tokenizer(mmt_clip *model);
const struct mmt_image_processor *mmt_clip_processor(const mmt_clip *model);

/* Image embeddings for preprocessed pixels (B, 3, S, S), S = vision image_size;
 * out (B, projection_dim), L2-normalised. */
mmt_status mmt_clip_encode_pixels(mmt_clip *model, const float *pixels, int64_t B, float *out);
/* Text embeddings for token ids (B, L) as the tokenizer frames them (BOS ... EOS, padding
 * after); only positions up to each row's pooled EOS are computed. out (B, projection_dim). */
mmt_status mmt_clip_encode_ids(mmt_clip *model, const int32_t *ids, int64_t B, int64_t L,
                               float *out);

/* Decodes an image file and preprocesses it with the model's processor into out
 * (3, S, S), S = vision image_size. Errors name the file. */
mmt_status mmt_clip_image_file_pixels(const mmt_clip *model, const char *path, float *out);
/* How this model's image files are rendered when they are DICOM (data/image.h): a copy of *o
 * is kept; NULL restores each file's own rule. Every image-file path (embed, classify, eval,
 * index, the runs of mmtune.h) goes through mmt_clip_image_file_pixels and honours it. Set it
 * right after loading, before the model is shared between threads. */
void mmt_clip_set_dicom_options(mmt_clip *model, const struct mmt_dicom_options *o);
/* The options set (zeroed: each file's own rule); for callers that decode images themselves. */
const struct mmt_dicom_options *mmt_clip_dicom_options(const mmt_clip *model);

/* Tokenizes texts (B of them) into ids (B, L) with L = max_position_embeddings, padded with
 * the tokenizer's pad (= EOS). An empty text, or one longer than L tokens when truncate is 0,
 * is an error naming the text's index. */
mmt_status mmt_clip_tokenize(mmt_clip *model, const char *const *texts, int64_t B,
                             int truncate, int32_t *ids);
/* As mmt_clip_embed_texts with control over truncation. */
mmt_status mmt_clip_embed_texts_ex(mmt_clip *model, const char *const *texts, int64_t n,
                                   int truncate, float *out);

#endif
