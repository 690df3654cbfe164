/*
 * test_ops_table.c — the op table as a backend seam: its buffer operations on the CPU, and
 * mmt_ops_resolve, which completes a backend's table from the CPU's with one warning per
 * missing op.
 *
 * References: buffers against memcpy/memset semantics and the allocator's byte counter
 * (core/alloc); the resolved table against the entries it was given (pointer equality).
 * Everything here is exact.
 */
#include <stdint.h>

#include "check.h"
#include "core/alloc.h"
#include "ops/ops.h"

/* The tables every CPU backend must fill completely. */
static void test_cpu_tables_complete(void) {
    CHECK(mmt_ops_first_missing(mmt_ops_ref()) == NULL);
    CHECK(mmt_ops_first_missing(mmt_ops_cpu()) == NULL);
    const mmt_ops *avx2 = mmt_ops_cpu_named("avx2"), *avx512 = mmt_ops_cpu_named("avx512");
    if (avx2) CHECK(mmt_ops_first_missing(avx2) == NULL);
    if (avx512) CHECK(mmt_ops_first_missing(avx512) == NULL);
}

/* alloc/upload/copy/fill/download/free round trip on each CPU table; the memory is aligned
 * and counted by core/alloc. */
static void check_buffers(const mmt_ops *ops) {
    enum { N = 1000 };
    float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (float)i * 0.5f - 3.0f;
    size_t before = mmt_alloc_current_bytes();
    float *a = ops->buffer_alloc(N * sizeof(float));
    float *b = ops->buffer_alloc(N * sizeof(float));
    CHECK(a && b);
    if (!a || !b) goto done;
    CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0);
    CHECK(mmt_alloc_current_bytes() >= before + 2 * N * sizeof(float));
    ops->buffer_upload(a, host, sizeof host);
    ops->buffer_copy(b, a, sizeof host);
    ops->buffer_fill(b + 10, -7.25f, 20);
    ops->sync();
    ops->buffer_download(back, b, sizeof back);
    for (int i = 0; i < N; i++) CHECK(back[i] == (i >= 10 && i < 30 ? -7.25f : host[i]));
    ops->buffer_fill(a, 0.0f, 0); /* n = 0 touches nothing */
    ops->buffer_copy(a, b, 0);
    ops->buffer_download(back, a, sizeof back);
    CHECK(memcmp(back, host, sizeof host) == 0);
done:
    ops->buffer_free(a);
    ops->buffer_free(b);
    ops->buffer_free(NULL);
    CHECK(mmt_alloc_current_bytes() == before);
    void *empty = ops->buffer_alloc(0);
    CHECK(empty != NULL);
    ops->buffer_free(empty);
}

static void test_buffers(void) {
    check_buffers(mmt_ops_ref());
    check_buffers(mmt_ops_cpu());
    const mmt_ops *avx2 = mmt_ops_cpu_named("avx2"), *avx512 = mmt_ops_cpu_named("avx512");
    if (avx2) check_buffers(avx2);
    if (avx512) check_buffers(avx512);
}

/* The allocator's fault injection reaches buffer_alloc: NULL and an out-of-memory error. */
static void test_buffer_alloc_failure(void) {
    mmt_alloc_fail_after(1);
    void *p = mmt_ops_cpu()->buffer_alloc(64);
    mmt_alloc_fail_after(0);
    CHECK(p == NULL);
    CHECK(strstr(mmt_last_error(), "out of memory") != NULL);
}

static int warnings;
static char last_warning[256];
static void count_warning(mmt_log_level level, const char *message, void *user) {
    (void)user;
    if (level != MMT_LOG_WARN) return;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", message);
}

static void fake_add(float *y, const float *a, const float *b, int64_t n) {
    (void)y, (void)a, (void)b, (void)n;
}

/* A backend with only a name, an add and a fill: the resolved table keeps those two, takes
 * every other entry from the CPU table, and warns once for each of them. */
static void test_resolve_fills_missing(void) {
    mmt_ops partial;
    memset(&partial, 0, sizeof partial);
    partial.name = "partial";
    partial.add_fwd = fake_add;
    partial.buffer_fill = mmt_ops_ref()->buffer_fill;
    CHECK(mmt_ops_first_missing(&partial) != NULL);
    CHECK(strcmp(mmt_ops_first_missing(&partial), "buffer_alloc") == 0);

    mmt_log_set_level(MMT_LOG_WARN);
    mmt_log_set_callback(count_warning, NULL);
    warnings = 0;
    mmt_ops resolved;
    mmt_ops_resolve(&partial, &resolved);
    const mmt_ops *cpu = mmt_ops_cpu();
    CHECK(strcmp(resolved.name, "partial") == 0);
    CHECK(resolved.add_fwd == fake_add);
    CHECK(resolved.buffer_fill == mmt_ops_ref()->buffer_fill);
    CHECK(resolved.matmul_fwd == cpu->matmul_fwd);
    CHECK(resolved.buffer_alloc == cpu->buffer_alloc);
    CHECK(resolved.attention_kv_bwd == cpu->attention_kv_bwd);
    CHECK(mmt_ops_first_missing(&resolved) == NULL);
    /* One warning per missing entry: all but add_fwd and buffer_fill. */
    mmt_ops count;
    memset(&count, 0, sizeof count);
    count.name = "empty";
    int before = warnings;
    mmt_ops all;
    mmt_ops_resolve(&count, &all);
    int total = warnings - before;
    CHECK(total > 2);
    CHECK_MSG(before == total - 2, "warned %d times for the partial table, %d for an empty one",
              before, total);
    CHECK_MSG(strstr(last_warning, "ops: empty lacks ") == last_warning &&
                  strstr(last_warning, "; using the CPU"),
              "last warning: %s", last_warning);

    /* A complete table resolves to itself, silently; NULL resolves to the CPU table. */
    warnings = 0;
    mmt_ops same;
    mmt_ops_resolve(cpu, &same);
    CHECK(warnings == 0);
    CHECK(memcmp(&same, cpu, sizeof same) == 0);
    mmt_ops_resolve(NULL, &same);
    CHECK(warnings == 0);
    CHECK(memcmp(&same, cpu, sizeof same) == 0);
    mmt_log_set_callback(NULL, NULL);
    mmt_log_set_level(MMT_LOG_SILENT);
}

int main(void) {
    mmt_log_set_level(MMT_LOG_SILENT);
    RUN(test_cpu_tables_complete);
    RUN(test_buffers);
    RUN(test_buffer_alloc_failure);
    RUN(test_resolve_fills_missing);
    return check_summary();
}
