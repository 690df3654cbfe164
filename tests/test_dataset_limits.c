/*
 * test_dataset_limits.c — the size limits of the dataset readers (data/datasets.h), on files
 * the test writes itself into a temp folder:
 *   - a JSONL line and a CSV field holding a 64 MiB caption: refused with the one-line error
 *     "FILE:LINE: text is N bytes, over the limit of M (--max-text-bytes)", or skipped and
 *     counted under skip_bad with the other records kept, while the allocator's peak and the
 *     process's max RSS grow by less than 16 MiB (the readers stream; they used to hold the
 *     whole file, then the line);
 *   - the decoded length of an overlong line's "text" (\u escapes, a "text" key nested deeper
 *     that does not count), a line too long for other reasons, a text over the limit in a
 *     line short enough to hold, an overlong CSV field that is not the caption;
 *   - COCO: a caption over the limit is a bad annotation; a file over --max-file-bytes is
 *     refused before it is read, for every layout, skip_bad or not;
 *   - the streamed readers give exactly what the in-memory parsers give on files much larger
 *     than the read window (records and CRLFs split across its edges).
 * Run this executable first thing in its own process: the allocator's peak is process-wide.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "tmp_files.h"
#include "core/alloc.h"
#include "data/datasets.h"

#define BIG_TEXT ((size_t)64 << 20)
#define MEMORY_BOUND ((size_t)16 << 20)



/* head, then n bytes of caption-like text, then tail; written in pieces so the test holds
 * none of it. */
static void write_big(const char *name, const char *head, size_t n, const char *tail) {
    static char piece[1 << 16];
    for (size_t i = 0; i < sizeof piece; i++) piece[i] = "a cat on a mat "[i % 15];
    FILE *f = fopen(tpath(name), "wb");
    fputs(head, f);
    for (size_t left = n; left > 0;) {
        size_t k = left < sizeof piece ? left : sizeof piece;
        fwrite(piece, 1, k, f);
        left -= k;
    }
    fputs(tail, f);
    fclose(f);
}

static long max_rss_kib(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

static mmt_pairs_options opts(int skip_bad, size_t max_text) {
    mmt_pairs_options o;
    mmt_pairs_options_default(&o);
    o.skip_bad = skip_bad;
    if (max_text) o.max_text_bytes = max_text;
    return o;
}

/* Loads name twice (failing, then under skip_bad) and checks the error, the two pairs kept
 * and that neither the allocator's peak nor the max RSS grew by MEMORY_BOUND. */
static void check_big_record(const char *name, const char *needle) {
    size_t base = mmt_alloc_current_bytes();
    long rss = max_rss_kib();
    mmt_pairs_options o = opts(0, 0);
    mmt_pairs *p = NULL;
    CHECK_FAILS(mmt_pairs_load(tpath(name), &o, &p), MMT_STATUS_BAD_FORMAT, needle);
    CHECK(p == NULL && !strchr(mmt_last_error(), '\n'));
    o.skip_bad = 1;
    CHECK_OK(mmt_pairs_load(tpath(name), &o, &p));
    CHECK_MSG(p && p->n == 2 && p->skipped == 1, "kept %lld, skipped %lld", p ? (long long)p->n : -1LL,
              p ? (long long)p->skipped : -1LL);
    if (p && p->n == 2) CHECK(!strcmp(p->items[0].text, "a cat") && !strcmp(p->items[1].text, "a rocket"));
    mmt_pairs_free(p);
    size_t grew = mmt_alloc_peak_bytes() - base;
    long rss_grew_kib = max_rss_kib() - rss;
    CHECK_MSG(grew < MEMORY_BOUND, "%s: the allocator's peak grew by %zu bytes", name, grew);
    CHECK_MSG(rss_grew_kib < (long)(MEMORY_BOUND >> 10), "%s: max RSS grew by %ld KiB", name, rss_grew_kib);
    unlink(tpath(name));
}

static void test_jsonl_64mib_caption(void) {
    write_text("a.png", "");
    write_big("big.jsonl", "{\"image_path\": \"a.png\", \"text\": \"a cat\"}\n{\"image_path\": \"a.png\", \"text\": \"",
              BIG_TEXT, "\"}\n{\"image_path\": \"a.png\", \"text\": \"a rocket\"}\n");
    check_big_record("big.jsonl", "big.jsonl:2: text is 67108864 bytes, over the limit of 65536 (--max-text-bytes)");
}

static void test_csv_64mib_caption(void) {
    write_text("a.png", "");
    write_big("big.csv", "image,caption\r\na.png,a cat\r\na.png,\"", BIG_TEXT, "\"\r\na.png,a rocket\r\n");
    check_big_record("big.csv", "big.csv:3: text is 67108864 bytes, over the limit of 65536 (--max-text-bytes)");
    /* unquoted, and with the image column as the long one */
    write_big("big.csv", "caption,image\na cat,a.png\n", BIG_TEXT, ",a.png\na rocket,a.png\n");
    check_big_record("big.csv", "big.csv:3: text is 67108864 bytes");
    write_big("big.csv", "caption,image\na cat,a.png\nx,", BIG_TEXT, "\na rocket,a.png\n");
    check_big_record("big.csv", "big.csv:3: field 2 is 67108864 bytes, over the limit of 65536 for a field");
    /* a lower --max-text-bytes holds the caption to it, not the image path or the header */
    mmt_pairs_options o = opts(0, 4);
    mmt_pairs *p = NULL;
    write_text("long name.png", "");
    write_text("s.csv", "image,caption\nlong name.png,abcd\nlong name.png,abcde\n");
    CHECK_FAILS(mmt_pairs_load(tpath("s.csv"), &o, &p), MMT_STATUS_BAD_FORMAT,
                "s.csv:3: text is 5 bytes, over the limit of 4 (--max-text-bytes)");
}

/* Lines too long to hold: the meter finds the top-level "text" and its decoded length. */
static void test_jsonl_overlong_lines(void) {
    mmt_pairs_options o = opts(0, 100); /* lines up to 8 x 100 + 4096 = 4896 bytes are held */
    mmt_pairs *p = NULL;
    char line[16384];
    int n = snprintf(line, sizeof line, "{\"image_path\": \"a.png\", \"text\": \"");
    for (int i = 0; i < 1000; i++) n += snprintf(line + n, sizeof line - (size_t)n, "\\u00e9");
    snprintf(line + n, sizeof line - (size_t)n, "\"}\n{\"image_path\": \"a.png\", \"text\": \"ok\"}\n");
    write_text("a.png", "");
    write_text("l.jsonl", line);
    CHECK_FAILS(mmt_pairs_load(tpath("l.jsonl"), &o, &p), MMT_STATUS_BAD_FORMAT,
                "l.jsonl:1: text is 2000 bytes, over the limit of 100 (--max-text-bytes)");
    /* a long "text" nested deeper is not the record's text: the line is what is too long */
    n = snprintf(line, sizeof line, "{\"meta\": {\"text\": \"");
    for (int i = 0; i < 6000; i++) line[n++] = 'x';
    snprintf(line + n, sizeof line - (size_t)n, "\"}, \"image_path\": \"a.png\", \"text\": \"short\"}\n");
    write_text("l.jsonl", line);
    char needle[128];
    snprintf(needle, sizeof needle, "l.jsonl:1: the line is %zu bytes, over the limit of 4896 for one record",
             strlen(line) - 1);
    CHECK_FAILS(mmt_pairs_load(tpath("l.jsonl"), &o, &p), MMT_STATUS_BAD_FORMAT, needle);
    o.skip_bad = 1;
    write_text("l2.jsonl", "{\"image_path\": \"a.png\", \"text\": \"ok\"}\n");
    FILE *f = fopen(tpath("l2.jsonl"), "ab");
    fputs(line, f);
    fclose(f);
    CHECK_OK(mmt_pairs_load(tpath("l2.jsonl"), &o, &p));
    CHECK(p && p->n == 1 && p->skipped == 1);
    mmt_pairs_free(p);
    /* short enough to hold, yet over the limit; the limit itself is allowed */
    o.skip_bad = 0;
    o.max_text_bytes = 10;
    write_text("l.jsonl", "{\"image_path\": \"a.png\", \"text\": \"0123456789\"}\n"
                          "{\"image_path\": \"a.png\", \"text\": \"0123456789X\"}\n");
    CHECK_FAILS(mmt_pairs_load(tpath("l.jsonl"), &o, &p), MMT_STATUS_BAD_FORMAT,
                "l.jsonl:2: text is 11 bytes, over the limit of 10 (--max-text-bytes)");
    o.skip_bad = 1;
    CHECK_OK(mmt_pairs_load(tpath("l.jsonl"), &o, &p));
    CHECK(p && p->n == 1 && p->skipped == 1);
    mmt_pairs_free(p);
}

static void test_coco_caption_limit(void) {
    write_text("1.jpg", "");
    write_text("c.json", "{\"images\": [{\"id\": 1, \"file_name\": \"1.jpg\"}], \"annotations\": ["
                         "{\"image_id\": 1, \"caption\": \"short \"}, {\"image_id\": 1, \"caption\": \"0123456789ab\"}]}");
    mmt_pairs_options o = opts(0, 10);
    mmt_pairs *p = NULL;
    CHECK_FAILS(mmt_pairs_load(tpath("c.json"), &o, &p), MMT_STATUS_BAD_FORMAT,
                "c.json: annotations[1].caption: text is 12 bytes, over the limit of 10 (--max-text-bytes)");
    o.skip_bad = 1;
    CHECK_OK(mmt_pairs_load(tpath("c.json"), &o, &p));
    CHECK(p && p->n == 1 && p->skipped == 1 && !strcmp(p->items[0].text, "short"));
    mmt_pairs_free(p);
}

/* Over --max-file-bytes: refused before a byte is read, in every layout, even with skip_bad. */
static void test_file_limit(void) {
    write_text("a.png", "");
    write_big("f.jsonl", "{\"image_path\": \"a.png\", \"text\": \"", (size_t)4 << 20, "\"}\n");
    write_big("f.csv", "image,caption\na.png,", (size_t)4 << 20, "\n");
    write_big("f.json", "{\"images\": [], \"annotations\": [], \"pad\": \"", (size_t)4 << 20, "\"}");
    const char *names[] = {"f.jsonl", "f.csv", "f.json"};
    for (size_t i = 0; i < 3; i++) {
        struct stat st;
        stat(tpath(names[i]), &st);
        char needle[256];
        snprintf(needle, sizeof needle, "%s: file is %lld bytes, over the limit of 1048576 (--max-file-bytes)",
                 names[i], (long long)st.st_size);
        mmt_pairs_options o = opts(1, 0);
        o.max_file_bytes = (size_t)1 << 20;
        size_t base = mmt_alloc_current_bytes();
        mmt_pairs *p = NULL;
        CHECK_FAILS(mmt_pairs_load(tpath(names[i]), &o, &p), MMT_STATUS_BAD_FORMAT, needle);
        CHECK_MSG(mmt_alloc_peak_bytes() - base < MEMORY_BOUND, "%s", names[i]);
        unlink(tpath(names[i]));
    }
    /* the in-memory COCO parser applies it too */
    mmt_pairs_options o = opts(0, 0);
    o.max_file_bytes = 8;
    mmt_pairs *p = NULL;
    CHECK_FAILS(mmt_pairs_parse_coco("{\"images\": []}", 14, "m.json", ".", &o, &p), MMT_STATUS_BAD_FORMAT,
                "m.json: file is 14 bytes, over the limit of 8 (--max-file-bytes)");
}

static int same_pairs(const mmt_pairs *a, const mmt_pairs *b) {
    if (!a || !b || a->n != b->n || a->skipped != b->skipped) return 0;
    for (int64_t i = 0; i < a->n; i++) {
        const mmt_pair *x = &a->items[i], *y = &b->items[i];
        if (strcmp(x->image_path, y->image_path) || strcmp(x->text, y->text)) return 0;
        if (!x->label != !y->label || (x->label && strcmp(x->label, y->label))) return 0;
    }
    return 1;
}

/* Files many times the 64 KiB read window, with records of every length from 1 to 1000 bytes
 * so that quotes, CRLFs and line ends fall on its edges: the file readers must give what the
 * in-memory parsers give on the same bytes. */
static void test_streamed_equals_memory(void) {
    size_t cap = (size_t)8 << 20, n_csv = 0, n_jsonl = 0;
    char *csv = malloc(cap), *jsonl = malloc(cap);
    n_csv += (size_t)snprintf(csv, cap, "image,caption,label\r\n");
    for (int i = 0; i < 3000; i++) {
        char text[1100];
        int len = 1 + i % 1000;
        for (int k = 0; k < len; k++) text[k] = "ab, c"[(i + k) % 5];
        text[len] = '\0';
        n_csv += (size_t)snprintf(csv + n_csv, cap - n_csv, "a.png,\"%s\"\"q\"\"\nline two\",c%d\r\n%s", text, i % 7,
                                  i % 13 ? "" : "\r\n");
        n_jsonl += (size_t)snprintf(jsonl + n_jsonl, cap - n_jsonl,
                                    "{\"image_path\": \"a.png\", \"text\": \"%s\\u00e9\", \"label\": \"c%d\"}\r\n%s", text,
                                    i % 7, i % 11 ? "" : "\n  \n");
    }
    n_csv += (size_t)snprintf(csv + n_csv, cap - n_csv, "a.png,bad \"quote\",x\r\na.png,last,x"); /* one bad, no final newline */
    FILE *f = fopen(tpath("s.csv"), "wb");
    fwrite(csv, 1, n_csv, f);
    fclose(f);
    f = fopen(tpath("s.jsonl"), "wb");
    fwrite(jsonl, 1, n_jsonl, f);
    fclose(f);
    mmt_pairs_options o = opts(1, 0);
    o.check_files = 0;
    mmt_pairs *file = NULL, *memory = NULL;
    CHECK_OK(mmt_pairs_load(tpath("s.csv"), &o, &file));
    CHECK_OK(mmt_pairs_parse_csv(csv, n_csv, tpath("s.csv"), tmp, &o, &memory));
    CHECK(file && file->n == 3001 && file->skipped == 1 && same_pairs(file, memory));
    mmt_pairs_free(file);
    mmt_pairs_free(memory);
    file = memory = NULL;
    CHECK_OK(mmt_pairs_load(tpath("s.jsonl"), &o, &file));
    CHECK_OK(mmt_pairs_parse_jsonl(jsonl, n_jsonl, tpath("s.jsonl"), tmp, &o, &memory));
    CHECK(file && file->n == 3000 && file->skipped == 0 && same_pairs(file, memory));
    if (file && file->n == 3000) CHECK(strlen(file->items[999].text) == 1002 && !strcmp(file->items[2].label, "c2"));
    mmt_pairs_free(file);
    mmt_pairs_free(memory);
    free(csv);
    free(jsonl);
}

int main(void) {
    mmt_log_set_level(MMT_LOG_ERROR);
    snprintf(tmp, sizeof tmp, "/tmp/mmt_limits_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    RUN(test_jsonl_64mib_caption); /* first: the allocator's peak is process-wide */
    RUN(test_csv_64mib_caption);
    RUN(test_jsonl_overlong_lines);
    RUN(test_coco_caption_limit);
    RUN(test_file_limit);
    RUN(test_streamed_equals_memory);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
