/* test_status.c — error messages, allocator accounting and fault injection. */
#include "check.h"
#include "core/alloc.h"
#include "core/status.h"

static void test_fail_sets_one_line_message(void) {
    mmt_status s = mmt_fail(MMT_STATUS_BAD_FORMAT, "file %s:\nline %d", "a.json", 3);
    CHECK(s == MMT_STATUS_BAD_FORMAT);
    CHECK(strcmp(mmt_last_error(), "file a.json: line 3") == 0);
    mmt_error_prefix(s, "%s: ", "model");
    CHECK(strcmp(mmt_last_error(), "model: file a.json: line 3") == 0);
    mmt_clear_error();
    CHECK(mmt_last_error()[0] == '\0');
}

static void test_alloc_counts_and_aligns(void) {
    size_t before = mmt_alloc_current_bytes();
    char *p = mmt_malloc(1000);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & 63) == 0);
    CHECK(mmt_alloc_current_bytes() == before + 1000);
    CHECK(mmt_alloc_peak_bytes() >= before + 1000);
    p = mmt_realloc(p, 5000);
    CHECK(p != NULL && mmt_alloc_current_bytes() == before + 5000);
    mmt_free(p);
    CHECK(mmt_alloc_current_bytes() == before);
    mmt_free(NULL);
}

static void test_alloc_fault_injection(void) {
    mmt_alloc_fail_after(2);
    void *a = mmt_malloc(16);
    void *b = mmt_malloc(16);
    void *c = mmt_malloc(16);
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(strstr(mmt_last_error(), "out of memory") != NULL);
    CHECK(c != NULL);
    mmt_free(a);
    mmt_free(c);
    CHECK(mmt_calloc((size_t)1 << 62, 16) == NULL);
    CHECK(mmt_malloc((size_t)-1) == NULL);
}

int main(void) {
    RUN(test_fail_sets_one_line_message);
    RUN(test_alloc_counts_and_aligns);
    RUN(test_alloc_fault_injection);
    return check_summary();
}
