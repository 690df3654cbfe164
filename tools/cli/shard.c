/* shard.c — a command's items split over the ranks of a job in whole batches (shard.h). */
#include "cli/shard.h"

#include "core/alloc.h"

mmt_status cli_shard_open(int64_t n, int64_t batch, cli_shard *sh) {
    *sh = (cli_shard){.n = n, .batch = batch > 0 ? batch : 1};
    MMT_TRY(mmt_comm_world(&sh->comm));
    sh->rank = mmt_comm_rank(sh->comm);
    sh->size = mmt_comm_size(sh->comm);
    int64_t batches = (n + sh->batch - 1) / sh->batch, first, last;
    mmt_comm_share(batches, sh->rank, sh->size, &first, &last);
    sh->begin = first * sh->batch < n ? first * sh->batch : n;
    sh->end = last * sh->batch < n ? last * sh->batch : n;
    return MMT_OK;
}

int cli_shard_is_root(const cli_shard *sh) { return sh->rank == 0; }

mmt_status cli_shard_gather_bytes(const cli_shard *sh, const void *mine, int64_t bytes, void **all, int64_t *offsets) {
    return mmt_comm_gatherv(sh->comm, mine, bytes, 0, 0, all, offsets);
}

mmt_status cli_shard_gather(const cli_shard *sh, const void *mine, int64_t row_bytes, void **all) {
    *all = NULL;
    int64_t got = 0, *off = mmt_malloc((size_t)(sh->size + 1) * sizeof *off);
    if (!off) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "gather: out of memory");
    mmt_status s = cli_shard_gather_bytes(sh, mine, (sh->end - sh->begin) * row_bytes, all, off);
    if (s == MMT_OK) got = off[sh->size];
    mmt_free(off);
    /* every rank computes its share from the same n and batch, so this is an internal check */
    if (s == MMT_OK && sh->rank == 0 && got != sh->n * row_bytes) {
        mmt_free(*all);
        *all = NULL;
        return mmt_fail(MMT_STATUS_INTERNAL, "gather: %lld bytes from the ranks, expected %lld", (long long)got,
                        (long long)(sh->n * row_bytes));
    }
    return s;
}
