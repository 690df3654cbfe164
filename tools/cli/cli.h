/*
 * cli.h — what the CLI's command files share: error printing with the exit-code rules
 * (1: the library's one-line error as "mmtune: error: ...", 2: a usage error) and the
 * commands that live outside tools/mmtune.c.
 */
#ifndef MMT_TOOLS_CLI_H
#define MMT_TOOLS_CLI_H

#include <stdint.h>

#include "core/status.h"
#include "data/image.h"

int cli_usage_error(const char *fmt, ...) MMT_PRINTF(1, 2);
int cli_runtime_error(void);

/* Output folders written whole or not at all (out_dir.c): begin refuses a non-empty out
 * without overwrite (exit code, message printed) and gives the temporary folder to write;
 * finish publishes it when rc is 0, else removes it, and returns the final exit code. */
int cli_out_begin(const char *cmd, const char *out, int overwrite, char **tmp);
int cli_out_finish(char *tmp, const char *out, int rc);

/* Model loading with the process-wide quantization flags (model_load.c): cli_load_flags
 * takes `--int8` (unless keep_int8: a command whose own --int8 means something else) and
 * `--quantize-base int8|nf4` out of argv (main calls it once); the loads apply them. */
#include "mmtune.h"
struct mmt_git;
int cli_load_flags(int *argc, char **argv, int keep_int8);
mmt_quant_type cli_load_quant(void);
/* The --window flag taken out by cli_load_flags (zeroed when absent). */
const mmt_dicom_options *cli_load_dicom(void);
/* 0 after --no-prepack (the inference loads below then do not prepack). */
int cli_load_prepack(void);
mmt_status cli_clip_load(const char *dir, mmt_clip **out);
/* The same with the quantization given (train's --quantize) instead of the global flags. */
mmt_status cli_clip_load_as(const char *dir, mmt_quant_type type, mmt_clip **out);
/* A random model (models/clip.h) with its linears quantized as they are generated. */
struct mmt_clip_config;
mmt_status cli_clip_random(const struct mmt_clip_config *cfg, uint64_t seed, mmt_quant_type type, mmt_clip **out);
mmt_status cli_git_load(const char *dir, struct mmt_git **out);
/* The same for inference only: the fp32 linears prepacked once (mmt_clip_prepack,
 * mmt_git_prepack; the same results, a packed copy of those weights in memory), unless
 * --no-prepack was given. */
mmt_status cli_clip_load_inference(const char *dir, mmt_clip **out);
mmt_status cli_git_load_inference(const char *dir, struct mmt_git **out);

int cmd_train(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_eval_captions(int argc, char **argv);

/* A GIT captioner with its adapter, captioning image files (caption.c). */
struct mmt_gen_settings;
typedef struct cli_captioner cli_captioner;
typedef mmt_status (*cli_caption_fn)(void *user, int64_t index, const char *caption);
mmt_status cli_captioner_open(const char *model, const char *adapter, cli_captioner **out);
void cli_captioner_close(cli_captioner *c);
/* The model's BOS, EOS and pad ids into s. */
mmt_status cli_captioner_defaults(const cli_captioner *c, struct mmt_gen_settings *s);
/* A words file (one word or phrase per line) as s's bad words or allowed-words lexicon. */
mmt_status cli_captioner_words(cli_captioner *c, const char *path, int allowed, struct mmt_gen_settings *s);
/* Captions paths[0..n), batch images at a time, calling fn with each caption in order. */
mmt_status cli_captioner_run(cli_captioner *c, const char *const *paths, int64_t n, const struct mmt_gen_settings *s,
                             const char *prompt, int64_t batch, cli_caption_fn fn, void *user);
/* `mmtune eval` (eval.c): a CLIP's retrieval, zero-shot and linear-probe scores, split over
 * the ranks of an MPI job; a GIT captioner's --model goes on to cmd_eval_captions. */
int cmd_eval_clip(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_bench_train(int argc, char **argv);
int cmd_bench_adapters(int argc, char **argv);
int cmd_bench_caption(int argc, char **argv);
int cmd_fashion_mnist(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bpe(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_wordpiece(int argc, char **argv);
int cmd_report(int argc, char **argv);
/* `mmtune curate` (curate.c): near-duplicate and mismatched pairs, the set without them. */
int cmd_curate(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_bench_search(int argc, char **argv);
int cmd_bench_serve(int argc, char **argv);
/* `mmtune bench allreduce` (bench_allreduce.c): the communicator's all-reduce bandwidth;
 * the one bench that runs on the ranks of an MPI job. */
int cmd_bench_allreduce(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
