/*
 * test_datasets.c — the dataset readers (data/datasets.h), the IDX reader (data/idx.h) and
 * `mmtune fashion-mnist`, on files the test writes itself (no package needed):
 *   - CSV: RFC 4180 quoting (commas, doubled quotes, line breaks in fields), CRLF, BOM, label
 *     column; every error names FILE:LINE of the record; skip_bad counts;
 *   - COCO: one pair per caption, image_root; duplicate ids, unknown image_id, missing files,
 *     wrong types name the JSON path; skip_bad counts;
 *   - image folders: class folders in name order, the caption template, labels;
 *   - JSONL through the same entry point, with the missing-file check;
 *   - IDX: plain and gzip'd files read back byte for byte; bad magic, element type, zero
 *     dimension, truncation, trailing data and a corrupt gzip stream are one-line errors;
 *   - the CLI: fashion-mnist on a fixture IDX folder (PNG pixels equal the IDX bytes, same seed
 *     same bytes), bad options, and eval --data on a CSV with --skip-bad; eval and train on a
 *     JSONL with a 64 MiB caption (one-line error, or skipped), --max-text-bytes/--max-file-bytes.
 * The readers' limits themselves are tested in test_dataset_limits.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "tmp_files.h"
#include "data/datasets.h"
#include "data/fashion_mnist.h"
#include "data/idx.h"
#include "data/image.h"

static char *out_text, *err_text;


static void write_bytes(const char *name, const void *data, size_t n, int gzip) {
    if (gzip) {
        gzFile g = gzopen(tpath(name), "wb");
        gzwrite(g, data, (unsigned)n);
        gzclose(g);
        return;
    }
    FILE *f = fopen(tpath(name), "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static int run(const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s >%s/stdout 2>%s/stderr </dev/null", MMT_BINARY, args, tmp, tmp);
    int status = system(cmd);
    free(out_text);
    free(err_text);
    out_text = check_read_file(tpath("stdout"), NULL);
    err_text = check_read_file(tpath("stderr"), NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static mmt_pairs_options opts(int skip_bad) {
    mmt_pairs_options o;
    mmt_pairs_options_default(&o);
    o.skip_bad = skip_bad;
    return o;
}

/* ---- CSV ---------------------------------------------------------------------------- */

static void test_csv_good(void) {
    write_text("a.png", "");
    write_text("b b.png", "");
    write_text("good.csv", "\xEF\xBB\xBFimage, caption ,label\r\n"
                           "a.png,\"a cat, sitting\",cat\r\n"
                           "\r\n"
                           "\"b b.png\",\"she said \"\"hi\"\"\nand left\",dog\n"
                           "a.png,plain,cat");
    mmt_pairs_options o = opts(0);
    mmt_pairs *p = NULL;
    CHECK_OK(mmt_pairs_load(tpath("good.csv"), &o, &p));
    if (!p) return;
    CHECK(p->n == 3 && p->skipped == 0);
    CHECK(!strcmp(p->items[0].image_path, tpath("a.png")));
    CHECK(!strcmp(p->items[0].text, "a cat, sitting"));
    CHECK(!strcmp(p->items[0].label, "cat"));
    CHECK(!strcmp(p->items[1].image_path, tpath("b b.png")));
    CHECK(!strcmp(p->items[1].text, "she said \"hi\"\nand left"));
    CHECK(!strcmp(p->items[2].text, "plain") && !strcmp(p->items[2].label, "cat"));
    mmt_pairs_free(p);

    /* column order is the header's; no label column -> NULL labels; "text" names the caption */
    write_text("order.csv", "text,image_path\nhello,/abs/x.jpg\n");
    o.check_files = 0;
    CHECK_OK(mmt_pairs_load(tpath("order.csv"), &o, &p));
    if (p) CHECK(p->n == 1 && !strcmp(p->items[0].image_path, "/abs/x.jpg") && !p->items[0].label);
    mmt_pairs_free(p);
}

/* Each case: a CSV body, the expected status and message part, with and without skip_bad. */
static void test_csv_errors(void) {
    static const struct {
        const char *text, *needle;
        mmt_status status;
    } cases[] = {
        {"image,caption\na.png,ok\na.png,x,extra\n", "bad.csv:3: expected 2 fields as in the header, got 3",
         MMT_STATUS_BAD_FORMAT},
        {"image,caption\na.png,ok\n\na.png,\"never closed\nmore\n", "bad.csv:4: field 2: quote opened here is never closed",
         MMT_STATUS_BAD_FORMAT},
        {"image,caption\na.png,ok\na.png,say \"x\"\n", "bad.csv:3: field 2: a quote inside an unquoted field",
         MMT_STATUS_BAD_FORMAT},
        {"image,caption\na.png,\"x\"y\na.png,ok\n", "bad.csv:2: field 2: text after the closing quote",
         MMT_STATUS_BAD_FORMAT},
        {"image,caption\na.png,ok\na.png,\n", "bad.csv:3: empty caption", MMT_STATUS_BAD_FORMAT},
        {"image,caption\n,ok\na.png,ok\n", "bad.csv:2: empty image", MMT_STATUS_BAD_FORMAT},
        {"image,caption\na.png,\"two\nlines\"\nmissing.png,ok\n", "bad.csv:4: image not found:", MMT_STATUS_NOT_FOUND},
        {"image,caption,label\na.png,ok,\na.png,ok,x\n", "bad.csv:2: empty label", MMT_STATUS_BAD_FORMAT},
        {"image,caption\na.png, \t \na.png,ok\n", "bad.csv:2: empty caption", MMT_STATUS_BAD_FORMAT},
    };
    write_text("a.png", "");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text("bad.csv", cases[i].text);
        mmt_pairs_options o = opts(0);
        mmt_pairs *p = NULL;
        CHECK_FAILS(mmt_pairs_load(tpath("bad.csv"), &o, &p), cases[i].status, cases[i].needle);
        CHECK(p == NULL);
        CHECK_MSG(!strchr(mmt_last_error(), '\n'), "case %zu: message is one line", i);
        o.skip_bad = 1;
        CHECK_OK(mmt_pairs_load(tpath("bad.csv"), &o, &p));
        CHECK_MSG(p && p->skipped == 1 && p->n == 1, "case %zu: skipped %lld, kept %lld", i,
                  p ? (long long)p->skipped : -1LL, p ? (long long)p->n : -1LL);
        mmt_pairs_free(p);
    }
    /* file-level problems are errors even with skip_bad */
    mmt_pairs_options o = opts(1);
    mmt_pairs *p = NULL;
    write_text("bad.csv", "file,words\na.png,x\n");
    CHECK_FAILS(mmt_pairs_load(tpath("bad.csv"), &o, &p), MMT_STATUS_BAD_FORMAT, "bad.csv:1: the header has no \"image\" column");
    /* two columns for one role: which is meant is unknown, so neither is taken */
    write_text("bad.csv", "image,text,caption\na.png,x,y\na.png,x,y\n");
    CHECK_FAILS(mmt_pairs_load(tpath("bad.csv"), &o, &p), MMT_STATUS_BAD_FORMAT, "bad.csv:1: two columns name the caption (caption, text)");
    write_text("bad.csv", "image,file_name,caption\na.png,a.png,y\na.png,a.png,y\n");
    CHECK_FAILS(mmt_pairs_load(tpath("bad.csv"), &o, &p), MMT_STATUS_BAD_FORMAT, "bad.csv:1: two columns name the image");
    write_text("bad.csv", "\n\n");
    CHECK_FAILS(mmt_pairs_load(tpath("bad.csv"), &o, &p), MMT_STATUS_BAD_FORMAT, "bad.csv: empty file");
    write_text("bad.csv", "image,caption\n,\n,\n");
    CHECK_FAILS(mmt_pairs_load(tpath("bad.csv"), &o, &p), MMT_STATUS_BAD_FORMAT, "no image-text pairs (all 2 records were bad)");
}

/* ---- COCO --------------------------------------------------------------------------- */

static void test_coco_good(void) {
    mkdir(tpath("coco"), 0755);
    mkdir(tpath("coco/train"), 0755);
    write_text("coco/train/1.jpg", "");
    write_text("coco/train/2.jpg", "");
    write_text("coco/captions.json",
               "{\"info\": {}, \"images\": [{\"id\": 7, \"file_name\": \"2.jpg\", \"width\": 640},"
               " {\"id\": 3, \"file_name\": \"1.jpg\"}],"
               " \"annotations\": [{\"id\": 1, \"image_id\": 3, \"caption\": \"A dog runs.\\n\"},"
               " {\"id\": 2, \"image_id\": 7, \"caption\": \" Two birds\"}, {\"image_id\": 3, \"caption\": \"grass\"}]}");
    mmt_pairs_options o = opts(0);
    o.image_root = tpath("coco/train");
    mmt_pairs *p = NULL;
    CHECK_OK(mmt_pairs_load(tpath("coco/captions.json"), &o, &p));
    if (!p) return;
    CHECK(p->n == 3);
    CHECK(!strcmp(p->items[0].image_path, tpath("coco/train/1.jpg")) && !strcmp(p->items[0].text, "A dog runs."));
    CHECK(!strcmp(p->items[1].image_path, tpath("coco/train/2.jpg")) && !strcmp(p->items[1].text, "Two birds"));
    CHECK(!strcmp(p->items[2].image_path, tpath("coco/train/1.jpg")) && !p->items[2].label);
    mmt_pairs_free(p);
    /* without image_root the names are relative to the JSON's folder, where they are missing */
    o.image_root = NULL;
    CHECK_FAILS(mmt_pairs_load(tpath("coco/captions.json"), &o, &p), MMT_STATUS_NOT_FOUND,
                "captions.json: images[1].file_name: image not found:");
}

static void test_coco_errors(void) {
    static const struct {
        const char *text, *needle;
        int64_t kept, skipped; /* under skip_bad; kept -1: an error there too */
    } cases[] = {
        {"{\"images\": [{\"id\": 1, \"file_name\": \"a.png\"}, {\"id\": 1, \"file_name\": \"a.png\"}],"
         " \"annotations\": [{\"image_id\": 1, \"caption\": \"x\"}]}",
         "c.json: images[1].id: duplicate id 1 (also images[0])", 1, 1},
        {"{\"images\": [{\"id\": 1, \"file_name\": \"a.png\"}],"
         " \"annotations\": [{\"image_id\": 1, \"caption\": \"x\"}, {\"image_id\": 42, \"caption\": \"y\"}]}",
         "c.json: annotations[1].image_id: no image has id 42", 1, 1},
        {"{\"images\": [{\"id\": 1, \"file_name\": \"a.png\"}, {\"id\": 2, \"file_name\": \"gone.png\"}],"
         " \"annotations\": [{\"image_id\": 2, \"caption\": \"x\"}, {\"image_id\": 1, \"caption\": \"y\"}]}",
         "c.json: images[1].file_name: image not found:", 1, 1},
        {"{\"images\": [{\"id\": \"1\", \"file_name\": \"a.png\"}, {\"id\": 2, \"file_name\": \"a.png\"}],"
         " \"annotations\": [{\"image_id\": 2, \"caption\": \"x\"}]}",
         "c.json: images[0].id: expected an integer, got a string", 1, 1},
        {"{\"images\": [{\"id\": 1}, {\"id\": 2, \"file_name\": \"a.png\"}],"
         " \"annotations\": [{\"image_id\": 1, \"caption\": \"x\"}, {\"image_id\": 2, \"caption\": \"y\"}]}",
         "c.json: images[0].file_name: expected a file name", 1, 2},
        {"{\"images\": [{\"id\": 1, \"file_name\": \"a.png\"}],"
         " \"annotations\": [{\"image_id\": 1, \"caption\": 5}, {\"image_id\": 1, \"caption\": \"y\"}]}",
         "c.json: annotations[0].caption: expected a string", 1, 1},
        {"{\"images\": [{\"id\": 1, \"file_name\": \"a.png\"}],"
         " \"annotations\": [{\"image_id\": 1, \"caption\": \"  \"}, 3, {\"image_id\": 1, \"caption\": \"y\"}]}",
         "c.json: annotations[0].caption: empty caption", 1, 2},
        {"{\"images\": [], \"annotations\": {}}", "c.json: annotations: expected an array", -1, 0},
        {"[1, 2]", "c.json: expected a JSON object", -1, 0},
        {"{\"images\": [", "c.json", -1, 0},
    };
    write_text("a.png", "");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text("c.json", cases[i].text);
        mmt_pairs_options o = opts(0);
        mmt_pairs *p = NULL;
        CHECK_FAILS(mmt_pairs_load(tpath("c.json"), &o, &p), strstr(cases[i].needle, "not found") ? MMT_STATUS_NOT_FOUND : MMT_STATUS_BAD_FORMAT,
                    cases[i].needle);
        CHECK_MSG(!strchr(mmt_last_error(), '\n'), "case %zu: message is one line", i);
        o.skip_bad = 1;
        mmt_status s = mmt_pairs_load(tpath("c.json"), &o, &p);
        if (cases[i].kept < 0) {
            CHECK_MSG(s != MMT_OK, "case %zu: skip_bad must not hide a file-level error", i);
        } else {
            CHECK_MSG(s == MMT_OK && p->n == cases[i].kept && p->skipped == cases[i].skipped,
                      "case %zu: %s, kept %lld, skipped %lld", i, mmt_last_error(), p ? (long long)p->n : -1LL,
                      p ? (long long)p->skipped : -1LL);
        }
        mmt_pairs_free(p);
    }
}

/* ---- image folders, JSONL, detection ----------------------------------------------------- */

static void test_image_folder(void) {
    mkdir(tpath("folder"), 0755);
    mkdir(tpath("folder/zebra"), 0755);
    mkdir(tpath("folder/ankle_boot"), 0755);
    mkdir(tpath("folder/.hidden"), 0755);
    mkdir(tpath("folder/empty"), 0755);
    write_text("folder/zebra/b.JPG", "");
    write_text("folder/zebra/a.png", "");
    write_text("folder/zebra/notes.txt", "");
    write_text("folder/ankle_boot/1.jpeg", "");
    write_text("folder/.hidden/x.png", "");
    write_text("folder/README", "");
    mmt_pairs_options o = opts(0);
    mmt_pairs *p = NULL;
    CHECK_OK(mmt_pairs_load(tpath("folder"), &o, &p));
    if (!p) return;
    CHECK(p->n == 3);
    CHECK(!strcmp(p->items[0].image_path, tpath("folder/ankle_boot/1.jpeg")));
    CHECK(!strcmp(p->items[0].text, "a photo of a ankle boot.") && !strcmp(p->items[0].label, "ankle_boot"));
    CHECK(!strcmp(p->items[1].image_path, tpath("folder/zebra/a.png")));
    CHECK(!strcmp(p->items[2].image_path, tpath("folder/zebra/b.JPG")) && !strcmp(p->items[2].label, "zebra"));
    mmt_pairs_free(p);
    o.caption_template = "{} ({})";
    CHECK_OK(mmt_pairs_load(tpath("folder"), &o, &p));
    if (p) CHECK(!strcmp(p->items[2].text, "zebra (zebra)"));
    mmt_pairs_free(p);
    o.caption_template = "no slot";
    CHECK_FAILS(mmt_pairs_load(tpath("folder"), &o, &p), MMT_STATUS_INVALID_ARGUMENT, "has no \"{}\"");
    o.caption_template = NULL;
    CHECK_FAILS(mmt_pairs_load(tpath("folder/empty"), &o, &p), MMT_STATUS_BAD_FORMAT, "no class folders");
}

static void test_jsonl_and_detection(void) {
    write_text("a.png", "");
    write_text("p.jsonl", "{\"image_path\": \"a.png\", \"text\": \"x\"}\n\n{\"image_path\": \"nope.png\", \"text\": \"y\"}\n");
    mmt_pairs_options o = opts(0);
    mmt_pairs *p = NULL;
    CHECK_FAILS(mmt_pairs_load(tpath("p.jsonl"), &o, &p), MMT_STATUS_NOT_FOUND, "p.jsonl:3: image not found:");
    o.skip_bad = 1;
    CHECK_OK(mmt_pairs_load(tpath("p.jsonl"), &o, &p));
    CHECK(p && p->n == 1 && p->skipped == 1);
    mmt_pairs_free(p);
    o.check_files = 0;
    o.skip_bad = 0;
    CHECK_OK(mmt_pairs_load(tpath("p.jsonl"), &o, &p));
    CHECK(p && p->n == 2);
    mmt_pairs_free(p);
    /* a text of spaces only, a text with a NUL, a folder as the image: each a FILE:LINE
     * record error that --skip-bad skips, like an empty text or a missing image */
    CHECK(mkdir(tpath("imgdir"), 0755) == 0 || errno == EEXIST);
    write_text("w.jsonl", "{\"image_path\": \"a.png\", \"text\": \"x\"}\n{\"image_path\": \"a.png\", \"text\": \" \\t \"}\n"
                          "{\"image_path\": \"a.png\", \"text\": \"a\\u0000b\"}\n{\"image_path\": \"imgdir\", \"text\": \"y\"}\n");
    o = opts(0);
    CHECK_FAILS(mmt_pairs_load(tpath("w.jsonl"), &o, &p), MMT_STATUS_BAD_FORMAT, "w.jsonl:2: missing or empty \"text\"");
    o.skip_bad = 1;
    CHECK_OK(mmt_pairs_load(tpath("w.jsonl"), &o, &p));
    CHECK_MSG(p && p->n == 1 && p->skipped == 3, "%lld kept, %lld skipped", p ? (long long)p->n : -1LL, p ? (long long)p->skipped : -1LL);
    mmt_pairs_free(p);
    write_text("w2.jsonl", "{\"image_path\": \"a.png\", \"text\": \"a\\u0000b\"}\n");
    o.skip_bad = 0;
    CHECK_FAILS(mmt_pairs_load(tpath("w2.jsonl"), &o, &p), MMT_STATUS_BAD_FORMAT, "w2.jsonl:1: \"text\" holds a NUL character");
    write_text("w3.jsonl", "{\"image_path\": \"imgdir\", \"text\": \"y\"}\n");
    CHECK_FAILS(mmt_pairs_load(tpath("w3.jsonl"), &o, &p), MMT_STATUS_NOT_FOUND, "w3.jsonl:1: image not a regular file:");
    write_text("p.json", "{\"image_path\": \"a.png\", \"text\": \"x\"}\n"); /* JSONL named .json */
    CHECK_OK(mmt_pairs_load(tpath("p.json"), &o, &p));
    CHECK(p && p->n == 1);
    mmt_pairs_free(p);
    write_text("p.txt", "x");
    CHECK_FAILS(mmt_pairs_load(tpath("p.txt"), &o, &p), MMT_STATUS_UNSUPPORTED, "unknown dataset layout");
    CHECK_FAILS(mmt_pairs_load(tpath("absent.csv"), NULL, &p), MMT_STATUS_NOT_FOUND, "absent.csv: no such file");
}

/* ---- IDX and Fashion-MNIST ------------------------------------------------------------- */

/* An IDX header + body in buf; returns its length. */
static size_t make_idx(uint8_t *buf, uint8_t type, int n_dims, const uint32_t *dims, const uint8_t *body) {
    size_t at = 0, size = 1;
    buf[at++] = 0, buf[at++] = 0, buf[at++] = type, buf[at++] = (uint8_t)n_dims;
    for (int d = 0; d < n_dims; d++) {
        buf[at++] = (uint8_t)(dims[d] >> 24), buf[at++] = (uint8_t)(dims[d] >> 16);
        buf[at++] = (uint8_t)(dims[d] >> 8), buf[at++] = (uint8_t)dims[d];
        size *= dims[d];
    }
    if (body) memcpy(buf + at, body, size);
    return at + (body ? size : 0);
}

#define FIX_N 30 /* three images of each class */

/* A Fashion-MNIST-shaped folder: FIX_N images whose pixels encode (image, row, column). */
static void make_fashion_fixture(const char *dir, int gzip) {
    static uint8_t images[16 + FIX_N * 28 * 28], labels[8 + FIX_N], pixels[FIX_N * 28 * 28], classes[FIX_N];
    for (int i = 0; i < FIX_N; i++) {
        classes[i] = (uint8_t)(i % 10);
        for (int k = 0; k < 28 * 28; k++) pixels[i * 784 + k] = (uint8_t)(i * 7 + k);
    }
    uint32_t dims[3] = {FIX_N, 28, 28};
    size_t ni = make_idx(images, 8, 3, dims, pixels), nl = make_idx(labels, 8, 1, dims, classes);
    char name[300];
    mkdir(tpath(dir), 0755);
    for (int split = 0; split < 2; split++) {
        const char *prefix = split ? "t10k" : "train";
        snprintf(name, sizeof name, "%s/%s-images-idx3-ubyte%s", dir, prefix, gzip ? ".gz" : "");
        write_bytes(name, images, ni, gzip);
        snprintf(name, sizeof name, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gzip ? ".gz" : "");
        write_bytes(name, labels, nl, gzip);
    }
}

static void test_idx(void) {
    uint8_t buf[64], body[6] = {1, 2, 3, 4, 5, 6};
    uint32_t dims[2] = {2, 3};
    size_t n = make_idx(buf, 8, 2, dims, body);
    mmt_idx idx = {0};
    for (int gz = 0; gz < 2; gz++) {
        write_bytes("t.idx", buf, n, gz);
        CHECK_OK(mmt_idx_read(tpath("t.idx"), &idx));
        CHECK(idx.n_dims == 2 && idx.dims[0] == 2 && idx.dims[1] == 3 && idx.size == 6);
        CHECK(idx.data && !memcmp(idx.data, body, 6));
        mmt_idx_free(&idx);
    }
    static const struct {
        size_t cut;      /* bytes of the good file kept (0: all) */
        int patch_at, patch, extra, gzip;
        mmt_status status;
        const char *needle;
    } cases[] = {
        {0, 0, 1, 0, 0, MMT_STATUS_BAD_FORMAT, "not an IDX file (magic 01 00 08 02)"},
        {0, 2, 0x0D, 0, 0, MMT_STATUS_UNSUPPORTED, "IDX element type 0x0d"},
        {0, 3, 9, 0, 0, MMT_STATUS_BAD_FORMAT, "9 IDX dimensions"},
        {0, 7, 0, 0, 0, MMT_STATUS_BAD_FORMAT, "IDX dimension 0 is 0"},
        {3, -1, 0, 0, 0, MMT_STATUS_BAD_FORMAT, "too short for an IDX header"},
        {9, -1, 0, 0, 0, MMT_STATUS_BAD_FORMAT, "truncated in the IDX header"},
        {15, -1, 0, 0, 0, MMT_STATUS_BAD_FORMAT, "truncated: 3 of 6 data bytes"},
        {15, -1, 0, 0, 1, MMT_STATUS_BAD_FORMAT, "truncated: 3 of 6 data bytes"},
        {0, -1, 0, 1, 0, MMT_STATUS_BAD_FORMAT, "data continues past the 6 bytes"},
        {0, 4, 0x7F, 0, 0, MMT_STATUS_BAD_FORMAT, "IDX data larger than"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t b[80];
        size_t m = make_idx(b, 8, 2, dims, body);
        if (cases[i].patch_at >= 0) b[cases[i].patch_at] = (uint8_t)cases[i].patch;
        if (cases[i].cut) m = cases[i].cut;
        if (cases[i].extra) b[m++] = 0;
        write_bytes("bad.idx", b, m, cases[i].gzip);
        CHECK_FAILS(mmt_idx_read(tpath("bad.idx"), &idx), cases[i].status, cases[i].needle);
        CHECK_MSG(idx.data == NULL && !strchr(mmt_last_error(), '\n'), "case %zu", i);
    }
    /* a gzip stream cut short, and one with a flipped byte in its compressed data */
    write_bytes("g.idx.gz", buf, n, 1);
    size_t gl = 0;
    uint8_t *g = check_read_file(tpath("g.idx.gz"), &gl);
    write_bytes("cut.idx.gz", g, gl - 10, 0);
    CHECK_FAILS(mmt_idx_read(tpath("cut.idx.gz"), &idx), MMT_STATUS_BAD_FORMAT, "cut.idx.gz:");
    g[gl - 9] ^= 0xFF; /* the CRC */
    write_bytes("crc.idx.gz", g, gl, 0);
    CHECK_FAILS(mmt_idx_read(tpath("crc.idx.gz"), &idx), MMT_STATUS_BAD_FORMAT, "crc.idx.gz: cannot read:");
    free(g);
    CHECK_FAILS(mmt_idx_read(tpath("absent.idx"), &idx), MMT_STATUS_NOT_FOUND, "absent.idx: cannot open");
}

static void test_fashion_mnist_load(void) {
    make_fashion_fixture("fm-gz", 1);
    make_fashion_fixture("fm-plain", 0);
    mmt_fashion_mnist fm;
    CHECK_OK(mmt_fashion_mnist_load(tpath("fm-gz"), "test", &fm));
    CHECK(fm.n == FIX_N && fm.labels.data[13] == 3 && fm.images.data[784 * 2 + 5] == (uint8_t)(14 + 5));
    mmt_fashion_mnist_free(&fm);
    CHECK_OK(mmt_fashion_mnist_load(tpath("fm-plain"), "train", &fm));
    mmt_fashion_mnist_free(&fm);
    CHECK_FAILS(mmt_fashion_mnist_load(tpath("fm-gz"), "val", &fm), MMT_STATUS_INVALID_ARGUMENT, "split \"val\"");
    CHECK_FAILS(mmt_fashion_mnist_load(tpath("nowhere"), "train", &fm), MMT_STATUS_NOT_FOUND, "dataset-fashion-mnist");
    /* labels that disagree with the images: a count mismatch, a label above 9 */
    uint8_t buf[64], body[FIX_N] = {0};
    uint32_t dims[1] = {FIX_N - 1};
    write_bytes("fm-plain/train-labels-idx1-ubyte", buf, make_idx(buf, 8, 1, dims, body), 0);
    CHECK_FAILS(mmt_fashion_mnist_load(tpath("fm-plain"), "train", &fm), MMT_STATUS_BAD_FORMAT, "expected 30 labels");
    dims[0] = FIX_N;
    body[4] = 10;
    write_bytes("fm-plain/train-labels-idx1-ubyte", buf, make_idx(buf, 8, 1, dims, body), 0);
    CHECK_FAILS(mmt_fashion_mnist_load(tpath("fm-plain"), "train", &fm), MMT_STATUS_BAD_FORMAT,
                "label 10 of image 4 is not a class");
    CHECK(mmt_fashion_mnist_class_index("Ankle_Boot") == 9 && mmt_fashion_mnist_class_index("t-shirt") == 0 &&
          mmt_fashion_mnist_class_index("7") == 7 && mmt_fashion_mnist_class_index("hat") == -1);
}

static void test_fashion_mnist_cli(void) {
    make_fashion_fixture("fm-cli", 1);
    int rc = run("fashion-mnist --idx-dir %s --out %s --split test --classes 'coat,ankle boot,1' "
                 "--count-per-class 2 --seed 5", tpath("fm-cli"), tpath("fm-out"));
    CHECK_MSG(rc == 0, "rc %d: %s", rc, err_text ? err_text : "");
    size_t len = 0;
    char *jsonl = check_read_file(tpath("fm-out/test.jsonl"), &len);
    CHECK(jsonl != NULL);
    if (!jsonl) return;
    mmt_pairs *p = NULL;
    CHECK_OK(mmt_pairs_load(tpath("fm-out/test.jsonl"), NULL, &p));
    CHECK(p && p->n == 6);
    int per_class[10] = {0};
    for (int64_t i = 0; p && i < p->n; i++) {
        int c = mmt_fashion_mnist_class_index(p->items[i].label);
        CHECK(c == 1 || c == 4 || c == 9);
        if (c >= 0) per_class[c]++;
        CHECK_MSG(strstr(p->items[i].text, p->items[i].label) != NULL, "caption \"%s\"", p->items[i].text);
        /* the PNG holds the IDX image: file test-NNNNN.png, pixel value (NNNNN * 7 + k) */
        const char *base = strrchr(p->items[i].image_path, '/') + 1;
        int k = atoi(base + 5);
        CHECK(k % 10 == c);
        mmt_image img = {0};
        CHECK_OK(mmt_image_decode_file(p->items[i].image_path, &img));
        CHECK(img.width == 28 && img.height == 28);
        int same = img.pixels != NULL;
        for (int j = 0; same && j < 28 * 28; j++)
            same = img.pixels[3 * j] == (uint8_t)(k * 7 + j) && img.pixels[3 * j + 2] == (uint8_t)(k * 7 + j);
        CHECK_MSG(same, "%s pixels differ from the IDX bytes", base);
        mmt_image_free(&img);
    }
    CHECK(per_class[1] == 2 && per_class[4] == 2 && per_class[9] == 2);
    CHECK(strstr(jsonl, "an ankle boot") || strstr(jsonl, "\"ankle boot\""));
    /* the same seed gives the same bytes; another seed another choice */
    CHECK(run("fashion-mnist --idx-dir %s --out %s --split test --classes 'coat,ankle boot,1' "
              "--count-per-class 2 --seed 5", tpath("fm-cli"), tpath("fm-out2")) == 0);
    char *again = check_read_file(tpath("fm-out2/test.jsonl"), NULL);
    CHECK(again && !strcmp(again, jsonl));
    free(again);
    CHECK(access(tpath("fm-out2/test_coco.json"), F_OK) != 0); /* only with --captions */
    /* --captions 4: the same JSONL, and a COCO file with 4 distinct wordings of each image, the
     * JSONL's caption first, every one naming the image's class; the COCO reader takes it */
    CHECK(run("fashion-mnist --idx-dir %s --out %s --split test --classes 'coat,ankle boot,1' "
              "--count-per-class 2 --seed 5 --captions 4", tpath("fm-cli"), tpath("fm-coco")) == 0);
    again = check_read_file(tpath("fm-coco/test.jsonl"), NULL);
    CHECK(again && !strcmp(again, jsonl));
    free(again);
    mmt_pairs *coco = NULL;
    CHECK_OK(mmt_pairs_load_coco(tpath("fm-coco/test_coco.json"), NULL, &coco));
    CHECK(coco && coco->n == 24);
    for (int64_t i = 0; coco && p && i < coco->n; i++) {
        const mmt_pair *a = &coco->items[i];
        const mmt_pair *first = &p->items[i / 4];
        CHECK(!strcmp(strrchr(a->image_path, '/'), strrchr(first->image_path, '/')));
        if (i % 4 == 0) CHECK_MSG(!strcmp(a->text, first->text), "first wording \"%s\" is not the JSONL's", a->text);
        CHECK(strstr(a->text, first->label) != NULL);
        for (int64_t j = i - i % 4; j < i; j++) CHECK_MSG(strcmp(coco->items[j].text, a->text), "\"%s\" twice", a->text);
    }
    mmt_pairs_free(coco);
    CHECK(run("fashion-mnist --idx-dir %s --out %s --captions 13", tpath("fm-cli"), tpath("x")) == 2);
    CHECK(err_text && strstr(err_text, "--captions needs a number from 1 to 12"));
    CHECK(run("fashion-mnist --idx-dir %s --out %s --count-per-class 3 --seed 6", tpath("fm-cli"), tpath("fm-out3")) == 0);
    again = check_read_file(tpath("fm-out3/train.jsonl"), NULL);
    int lines = 0;
    for (char *s = again; s && *s; s++) lines += *s == '\n';
    CHECK(lines == FIX_N);
    free(again);
    free(jsonl);
    mmt_pairs_free(p);
    /* usage and runtime errors: exit 2 / 1 with one line */
    CHECK(run("fashion-mnist --idx-dir %s --out %s --classes hat", tpath("fm-cli"), tpath("x")) == 2);
    CHECK(err_text && strstr(err_text, "'hat' is not a Fashion-MNIST class"));
    CHECK(run("fashion-mnist --out %s --split val", tpath("x")) == 2);
    CHECK(run("fashion-mnist --idx-dir %s", tpath("fm-cli")) == 2);
    CHECK(run("fashion-mnist --idx-dir %s --out %s", tpath("nowhere"), tpath("x")) == 1);
    CHECK(err_text && strstr(err_text, "mmtune: error: ") && strstr(err_text, "not found"));
    CHECK(run("fashion-mnist --help") == 0 && out_text && strstr(out_text, "--count-per-class"));
}

/* eval reads a CSV through the same entry point; --skip-bad reports the count. */
static void test_eval_csv(void) {
    const char *images = MMT_FIXTURE_DIR "/clip/images";
    char text[2048];
    snprintf(text, sizeof text,
             "image,caption\n%s/chelsea.jpg,\"a cat, on a chair\"\n%s/astronaut.png,an astronaut\n"
             "%s/missing.png,nothing\n%s/rocket_rgba.png,a rocket\n", images, images, images, images);
    write_text("eval.csv", text);
    int rc = run("eval --model %s/clip/tiny-a --data %s", MMT_FIXTURE_DIR, tpath("eval.csv"));
    CHECK(rc == 1 && err_text && strstr(err_text, "eval.csv:4: image not found:"));
    rc = run("eval --model %s/clip/tiny-a --data %s --skip-bad", MMT_FIXTURE_DIR, tpath("eval.csv"));
    CHECK_MSG(rc == 0, "rc %d: %s", rc, err_text ? err_text : "");
    CHECK(err_text && strstr(err_text, "skipped 1 bad records of"));
    CHECK(out_text && strstr(out_text, "\"pairs\": 3"));
}

/* A 64 MiB caption: eval and train stop with one line naming it, without reading it into
 * memory (the largest child's max RSS stays far below the caption; it used to reach ~1 GiB);
 * with --skip-bad eval goes on with the other pairs. */
static void test_cli_text_limit(void) {
    const char *images = MMT_FIXTURE_DIR "/clip/images";
    char head[1024], tail[1024];
    snprintf(head, sizeof head, "{\"image_path\": \"%s/chelsea.jpg\", \"text\": \"a cat\"}\n"
             "{\"image_path\": \"%s/astronaut.png\", \"text\": \"", images, images);
    snprintf(tail, sizeof tail, "\"}\n{\"image_path\": \"%s/rocket_rgba.png\", \"text\": \"a rocket\"}\n", images);
    FILE *f = fopen(tpath("big.jsonl"), "wb");
    static char piece[1 << 16];
    memset(piece, 'x', sizeof piece);
    fputs(head, f);
    for (int i = 0; i < 1024; i++) fwrite(piece, 1, sizeof piece, f);
    fputs(tail, f);
    fclose(f);
    int rc = run("eval --model %s/clip/tiny-a --data %s", MMT_FIXTURE_DIR, tpath("big.jsonl"));
    CHECK_MSG(rc == 1, "rc %d", rc);
    CHECK(err_text && strstr(err_text, "big.jsonl:2: text is 67108864 bytes, over the limit of 65536 (--max-text-bytes)"));
    CHECK(err_text && strchr(err_text, '\n') == strrchr(err_text, '\n')); /* one line */
    rc = run("eval --model %s/clip/tiny-a --data %s --skip-bad", MMT_FIXTURE_DIR, tpath("big.jsonl"));
    CHECK_MSG(rc == 0, "rc %d: %s", rc, err_text ? err_text : "");
    CHECK(err_text && strstr(err_text, "skipped 1 bad records of"));
    CHECK(out_text && strstr(out_text, "\"pairs\": 2"));
    rc = run("train --model %s/clip/tiny-a --data %s --out %s --steps 1 --quiet", MMT_FIXTURE_DIR, tpath("big.jsonl"),
             tpath("run-big"));
    CHECK_MSG(rc == 1 && err_text && strstr(err_text, "big.jsonl:2: text is 67108864 bytes"), "rc %d: %s", rc,
              err_text ? err_text : "");
    struct rusage ru;
    CHECK(getrusage(RUSAGE_CHILDREN, &ru) == 0 && ru.ru_maxrss < 256 * 1024); /* KiB */
    unlink(tpath("big.jsonl"));
    /* the limits are settings: a lower one refuses what the default takes; nonsense is a usage error */
    rc = run("eval --model %s/clip/tiny-a --data %s --max-text-bytes 3", MMT_FIXTURE_DIR, tpath("eval.csv"));
    CHECK(rc == 1 && err_text && strstr(err_text, "eval.csv:2: text is 17 bytes, over the limit of 3 (--max-text-bytes)"));
    rc = run("eval --model %s/clip/tiny-a --data %s --max-file-bytes 10", MMT_FIXTURE_DIR, tpath("eval.csv"));
    CHECK(rc == 1 && err_text && strstr(err_text, "over the limit of 10 (--max-file-bytes)"));
    CHECK(run("eval --model %s/clip/tiny-a --data %s --max-text-bytes 0", MMT_FIXTURE_DIR, tpath("eval.csv")) == 2);
    CHECK(run("train --model %s/clip/tiny-a --data %s --max-text-bytes -1", MMT_FIXTURE_DIR, tpath("eval.csv")) == 2);
    CHECK(run("train --help") == 0 && out_text && strstr(out_text, "--max-text-bytes N") && strstr(out_text, "(default: 65536)"));
    CHECK(run("eval --help") == 0 && out_text && strstr(out_text, "--max-file-bytes"));
}

int main(void) {
    mmt_log_set_level(MMT_LOG_ERROR);
    snprintf(tmp, sizeof tmp, "/tmp/mmt_datasets_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    RUN(test_csv_good);
    RUN(test_csv_errors);
    RUN(test_coco_good);
    RUN(test_coco_errors);
    RUN(test_image_folder);
    RUN(test_jsonl_and_detection);
    RUN(test_idx);
    RUN(test_fashion_mnist_load);
    RUN(test_fashion_mnist_cli);
    RUN(test_eval_csv);
    RUN(test_cli_text_limit); /* after test_eval_csv: reuses eval.csv */
    free(out_text);
    free(err_text);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
