/*
 * replay.h — experience replay for continual learning: every micro-batch mixes examples of
 * the task being learnt with a fixed number drawn from a replay set of earlier tasks' pairs
 * (Rolnick et al. 2019, "Experience Replay for Continual Learning"; Chaudhry et al. 2019,
 * "On Tiny Episodic Memories in Continual Learning": a small memory mixed into each batch).
 *
 * The trainer (train/trainer.h, settings.replay_*) holds the replay set as the last
 * examples of the task (the task's examples are the new data, then the replay pairs) and
 * gives micro-batch number q (the global number that also keys dropout: the same on any
 * number of processes) positions q k .. q k + k - 1 of an endless replay stream. Replay epoch
 * e (positions e n .. e n + n - 1) visits every replay pair once, in an order that is a
 * keyed pseudo-random permutation of (seed, e), independent of the data's order. Each
 * position is a pure function of (seed, position): a four-round Feistel network on the next
 * power of four above n, with cycle walking (Black & Rogaway 2002) — no state, so a resumed
 * run, a prefetching thread and every rank all draw the same examples.
 */
#ifndef MMT_TRAIN_REPLAY_H
#define MMT_TRAIN_REPLAY_H

#include <stdint.h>

typedef struct mmt_replay {
    int64_t first, n;   /* the replay examples are first .. first + n - 1 of the task; n 0: none */
    int64_t per_batch;  /* k: replay examples per micro-batch */
    uint64_t seed;
} mmt_replay;

/* Replay examples per micro-batch of `batch` examples: ratio x batch rounded to the nearest
 * integer (halves away from zero). */
int64_t mmt_replay_per_batch(double ratio, int64_t batch);

/* The replay example (a task index) at position q >= 0 of the stream. */
int64_t mmt_replay_at(const mmt_replay *r, int64_t q);
/* out[0..per_batch) = the replay examples of micro-batch `micro`. */
void mmt_replay_fill(const mmt_replay *r, int64_t micro, int64_t *out);

#endif
