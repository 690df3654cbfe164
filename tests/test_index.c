/*
 * test_index.c — catalogue search: data/catalog.h, serve/index.h, `mmtune index` and
 * `mmtune search`, on the tiny CLIP fixture (tests/fixtures/clip/tiny-a) and its images.
 *
 * References and tolerances:
 *   - the index's vectors equal `mmtune embed`'s for the same image or title (1e-6);
 *   - search results equal a brute-force ranking computed here in double (same order, scores
 *     within 1e-6), for float32 and for int8 + rescoring (same ids, same scores);
 *   - filters select exactly the items worked out by hand from the catalogue below;
 *   - append == a rebuild from the union (items identical, vectors within 1e-6), --replace
 *     keeps the row; .npy headers are checked byte by byte as NumPy's format describes them;
 *   - a failure mid-write (every allocation failing in turn, an I/O error, a kill) leaves the
 *     previous index readable and unchanged; corrupt or mismatched indexes give one-line
 *     errors; bad catalogue lines give FILE:LINE errors.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/alloc.h"
#include "core/json.h"
#include "data/catalog.h"
#include "rng.h"
#include "serve/index.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define OTHER_MODEL MMT_FIXTURE_DIR "/clip/tiny-b"
#define D 24

static char tmp[256];

/* The catalogue: five items in JSONL (part 1), three in CSV (part 2), and the union of both
 * as JSONL. The images folder is linked into tmp so that relative paths are exercised. */
static const char *PART1 =
    "{\"id\": \"astro\", \"title\": \"an astronaut\", \"image\": \"images/astronaut.png\", \"price\": 12.5, "
    "\"color\": \"white\", \"dims\": {\"w\": 3}}\n"
    "{\"id\": \"cam\", \"title\": \"a camera man\", \"image\": \"images/camera_gray.png\", \"price\": 3, "
    "\"color\": \"grey\", \"code\": \"5\"}\n"
    "\n"
    "{\"id\": 7, \"title\": \"a cat\", \"image_path\": \"images/chelsea.jpg\", \"price\": 30, \"color\": \"orange\", "
    "\"instock\": true}\n"
    "{\"id\": \"coffee\", \"title\": \"a cup of coffee\", \"price\": 7, \"color\": \"brown\", \"instock\": false}\n"
    "{\"id\": \"rocket\", \"image\": \"images/rocket_rgba.png\", \"title\": null, \"price\": \"n/a\"}\n";
static const char *PART2 =
    "id,title,image,price,color,code\r\n"
    "mug,\"a mug, blue\",,7,blue,5\r\n"
    "portrait,a portrait,images/coffee_portrait.jpg,19.99,,\r\n"
    "tea,\"a cup of \"\"tea\"\"\",,2.5,green,x\r\n";
static const char *PART2_AS_JSONL =
    "{\"id\": \"mug\", \"title\": \"a mug, blue\", \"price\": 7, \"color\": \"blue\", \"code\": 5}\n"
    "{\"id\": \"portrait\", \"title\": \"a portrait\", \"image\": \"images/coffee_portrait.jpg\", \"price\": 19.99}\n"
    "{\"id\": \"tea\", \"title\": \"a cup of \\\"tea\\\"\", \"price\": 2.5, \"color\": \"green\", \"code\": \"x\"}\n";
static const char *IDS[8] = {"astro", "cam", "7", "coffee", "rocket", "mug", "portrait", "tea"};

/* tmp/name */
static const char *tp(const char *name) {
    static char bufs[4][512];
    static int at;
    char *b = bufs[at++ % 4];
    snprintf(b, 512, "%s/%s", tmp, name);
    return b;
}

static void write_text(const char *name, const char *a, const char *b) {
    FILE *f = fopen(tp(name), "wb");
    fputs(a, f);
    if (b) fputs(b, f);
    fclose(f);
}

/* ---- reading what the index wrote, independently of the library ----------------------- */

/* An .npy file checked byte by byte against NumPy's format 1.0: magic, version, header length,
 * the header dict, padding to 64, the data size. Returns the data (malloc'd) or NULL. */
static void *read_npy(const char *path, const char *descr, int64_t rows, int64_t cols) {
    size_t len = 0;
    unsigned char *b = check_read_file(path, &len);
    if (!b) {
        CHECK_MSG(0, "%s unreadable", path);
        return NULL;
    }
    CHECK(len >= 10 && memcmp(b, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = b[8] | (size_t)b[9] << 8, start = 10 + hlen;
    CHECK(start % 64 == 0 && b[start - 1] == '\n');
    char want[200];
    if (cols < 0) snprintf(want, sizeof want, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }", descr, (long long)rows);
    else snprintf(want, sizeof want, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }", descr, (long long)rows, (long long)cols);
    CHECK_MSG(strncmp((char *)b + 10, want, strlen(want)) == 0, "%s header: %.80s", path, b + 10);
    size_t elem = descr[2] == '1' ? 1 : 4;
    CHECK(len == start + (size_t)rows * (size_t)(cols < 0 ? 1 : cols) * elem);
    void *data = malloc(len - start + 1);
    memcpy(data, b + start, len - start);
    free(b);
    return data;
}

static float *index_vectors(const char *dir, int64_t generation, int64_t rows) {
    char path[600];
    snprintf(path, sizeof path, "%s/vectors.g%lld.npy", dir, (long long)generation);
    return read_npy(path, "<f4", rows, D);
}

/* The embeddings printed by `mmtune embed` (JSON lines) into out (n, D); returns n. */
static int64_t parse_embeddings(const char *text, float *out, int64_t max) {
    int64_t n = 0;
    for (const char *line = text; line && *line && n < max;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        mmt_json_doc *doc = NULL;
        if (mmt_json_parse(line, len, "embed", &doc) == MMT_OK) {
            const mmt_json *e = mmt_json_get(mmt_json_root(doc), "embedding");
            for (size_t j = 0; e && j < e->len && j < D; j++) out[n * D + (int64_t)j] = (float)e->items[j].number;
            n++;
        }
        mmt_json_free(doc);
        line = end ? end + 1 : NULL;
    }
    return n;
}

/* Brute force: rows of vectors (n, D) ranked by their double dot with q, ties by row. */
static void brute_rank(const float *vectors, int64_t n, const float *q, int64_t *order, double *score) {
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += (double)vectors[i * D + j] * q[j];
        score[i] = s;
        order[i] = i;
    }
    for (int64_t i = 1; i < n; i++) /* insertion sort: few rows */
        for (int64_t j = i; j > 0 && score[order[j]] > score[order[j - 1]]; j--) {
            int64_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

static int build(const char *out, const char *catalog, const char *extra) {
    return run("index --model %s --catalog %s --out %s %s", MODEL, tp(catalog), tp(out), extra ? extra : "");
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_vectors_equal_embed(void) {
    CHECK(build("idx", "part1.jsonl", NULL) == 0);
    CHECK(out_text && strstr(out_text, "\"count\":5"));
    float *v = index_vectors(tp("idx"), 1, 5);
    CHECK(run("embed --model %s --image %s/images/astronaut.png --image %s/images/camera_gray.png "
              "--image %s/images/chelsea.jpg --image %s/images/rocket_rgba.png --text 'a cup of coffee'",
              MODEL, tmp, tmp, tmp, tmp) == 0);
    float want[5 * D];
    CHECK(parse_embeddings(out_text, want, 5) == 5);
    /* rows: astro, cam, 7 (images), coffee (title only: its title), rocket (image) */
    const int from[5] = {0, 1, 2, 4, 3};
    for (int r = 0; v && r < 5; r++)
        for (int j = 0; j < D; j++) CHECK_NEAR(v[r * D + j], want[from[r] * D + j], 1e-6);
    free(v);
    /* the int8 copy and its scales parse too, and dequantize close to the vectors */
    int8_t *q = read_npy(tp("idx/vectors_int8.g1.npy"), "|i1", 5, D);
    float *sc = read_npy(tp("idx/scales.g1.npy"), "<f4", 5, -1);
    v = index_vectors(tp("idx"), 1, 5);
    for (int r = 0; q && sc && v && r < 5; r++)
        for (int j = 0; j < D; j++) CHECK_NEAR(q[r * D + j] * sc[r], v[r * D + j], 0.5 * sc[r] + 1e-7);
    free(q);
    free(sc);
    free(v);
    /* --embed both: the normalised mean of image and title where an item has both */
    CHECK(build("idx_both", "part1.jsonl", "--embed both") == 0);
    v = index_vectors(tp("idx_both"), 1, 5);
    CHECK(run("embed --model %s --image %s/images/astronaut.png --text 'an astronaut'", MODEL, tmp) == 0);
    CHECK(parse_embeddings(out_text, want, 2) == 2);
    double norm = 0, mean[D];
    for (int j = 0; j < D; j++) {
        mean[j] = (double)want[j] + want[D + j];
        norm += mean[j] * mean[j];
    }
    for (int j = 0; v && j < D; j++) CHECK_NEAR(v[j], mean[j] / sqrt(norm), 1e-6);
    free(v);
}

/* search --top-k 8 prints all items: their order and scores against brute force. */
static void check_cli_search(const char *index, int64_t n, const char *query_flag, const char *query,
                             const char *embed_flag, const char *extra) {
    float *v = index_vectors(tp(index), 1, n), qv[D];
    CHECK(run("embed --model %s %s '%s'", MODEL, embed_flag, query) == 0);
    CHECK(parse_embeddings(out_text, qv, 1) == 1);
    int64_t order[16];
    double score[16];
    brute_rank(v, n, qv, order, score);
    CHECK(run("search --index %s --model %s %s '%s' --top-k 100 %s", tp(index), MODEL, query_flag, query, extra) == 0);
    CHECK(count_lines(out_text) == n);
    const char *line = out_text;
    for (int64_t r = 0; line && r < n; r++) {
        mmt_json_doc *doc = NULL;
        const char *end = strchr(line, '\n');
        CHECK_OK(mmt_json_parse(line, (size_t)(end - line), "search", &doc));
        const mmt_json *root = doc ? mmt_json_root(doc) : NULL;
        const mmt_json *id = mmt_json_get(root, "id"), *sc = mmt_json_get(root, "score"), *rank = mmt_json_get(root, "rank");
        CHECK(rank && rank->integer == r + 1);
        CHECK_MSG(id && !strcmp(id->string, IDS[order[r]]), "rank %lld: got %s, want %s", (long long)r + 1,
                  id ? id->string : "?", IDS[order[r]]);
        CHECK(sc && fabs(sc->number - score[order[r]]) <= 1e-6);
        CHECK(mmt_json_get(root, "metadata") && mmt_json_get(root, "metadata")->type == MMT_JSON_OBJECT);
        mmt_json_free(doc);
        line = end + 1;
    }
    free(v);
}

static void test_search_equals_brute_force(void) {
    const char *texts[] = {"a cat", "an astronaut", "coffee", "a rocket launch"};
    for (int i = 0; i < 4; i++) {
        check_cli_search("idx", 5, "--text", texts[i], "--text", "");
        check_cli_search("idx", 5, "--text", texts[i], "--text", "--int8");
    }
    char img[512];
    snprintf(img, sizeof img, "%s/images/chelsea.jpg", tmp);
    check_cli_search("idx", 5, "--image", img, "--image", "");
    check_cli_search("idx", 5, "--image", img, "--image", "--int8 --rescore 1");
    /* --top-k cuts */
    CHECK(run("search --index %s --model %s --text cat --top-k 2", tp("idx"), MODEL) == 0);
    CHECK(count_lines(out_text) == 2);
}

/* int8 + rescoring equals float32 on a larger random index where the candidates are a small
 * part of the rows, through the library. */
static void test_int8_equals_float32(void) {
    enum { N = 3000, Q = 40 };
    float *v = malloc(N * D * sizeof(float));
    mmt_index_item *items = calloc(N, sizeof *items);
    static char ids[N][16];
    for (int i = 0; i < N; i++) {
        double norm = 0;
        for (int j = 0; j < D; j++) {
            v[i * D + j] = rng_uniform();
            norm += (double)v[i * D + j] * v[i * D + j];
        }
        for (int j = 0; j < D; j++) v[i * D + j] = (float)(v[i * D + j] / sqrt(norm));
        snprintf(ids[i], sizeof ids[i], "r%d", i);
        items[i].id = ids[i];
    }
    mmt_index_build b = {.mode = MMT_INDEX_CREATE, .dim = D, .model_dir = "random", .model_fingerprint = "0123456789abcdef",
                         .embed = "image"};
    CHECK_OK(mmt_index_write(tp("random"), &b, items, v, N));
    mmt_index *ix = NULL;
    CHECK_OK(mmt_index_open(tp("random"), &ix));
    int64_t same = 0;
    for (int t = 0; ix && t < Q; t++) {
        const float *q = v + (t * 37 % N) * D; /* an item as the query: many near ties below it */
        mmt_search_options o;
        mmt_search_options_default(&o);
        o.top_k = 10;
        o.rescore = 100;
        mmt_search_result a, c;
        CHECK_OK(mmt_index_search(ix, q, &o, &a));
        o.int8 = 1;
        CHECK_OK(mmt_index_search(ix, q, &o, &c));
        int64_t order[N];
        double score[N];
        int64_t *ord = order;
        brute_rank(v, N, q, ord, score);
        for (int k = 0; k < 10 && a.n == 10 && c.n == 10; k++) {
            same += a.hits[k].row == c.hits[k].row && a.hits[k].score == c.hits[k].score;
            CHECK(a.hits[k].row == order[k]);
            CHECK_NEAR(a.hits[k].score, score[order[k]], 1e-6);
        }
        mmt_search_result_free(&a);
        mmt_search_result_free(&c);
    }
    CHECK_MSG(same == Q * 10, "int8 + rescore matched float32 on %lld of %d hits", (long long)same, Q * 10);
    mmt_index_close(ix);
    free(v);
    free(items);
}

/* The ids a filter keeps (library search over the 8-item index), sorted, joined with ','. */
static void filtered_ids(mmt_index *ix, const char *const *exprs, int n, char *out, size_t cap) {
    mmt_search_filter f[4];
    for (int i = 0; i < n; i++) CHECK_OK(mmt_search_filter_parse(exprs[i], &f[i]));
    mmt_search_options o;
    mmt_search_options_default(&o);
    o.top_k = 100;
    o.filters = f;
    o.n_filters = n;
    mmt_search_result r = {0};
    CHECK_OK(mmt_index_search(ix, mmt_index_vectors(ix), &o, &r));
    int in[8] = {0};
    for (int64_t i = 0; i < r.n; i++)
        for (int k = 0; k < 8; k++) in[k] |= !strcmp(r.hits[i].id, IDS[k]);
    out[0] = '\0';
    for (int k = 0; k < 8; k++)
        if (in[k]) snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", IDS[k]);
    mmt_search_result_free(&r);
    for (int i = 0; i < n; i++) mmt_search_filter_free(&f[i]);
}

static void test_filters(void) {
    CHECK(build("all", "union.jsonl", NULL) == 0);
    mmt_index *ix = NULL;
    CHECK_OK(mmt_index_open(tp("all"), &ix));
    if (!ix) return;
    struct { const char *expr[3]; const char *want; } cases[] = {
        {{"price<10"}, "cam,coffee,mug,tea"},
        {{"price<=7"}, "cam,coffee,mug,tea"},
        {{"price>7"}, "astro,7,portrait"},
        {{"price>=30"}, "7"},
        {{"price=7"}, "coffee,mug"},
        {{"price!=7"}, "astro,cam,7,portrait,tea"},        /* rocket's price is a string */
        {{"price=n/a"}, "rocket"},
        {{"color=grey"}, "cam"},
        {{"color!=grey"}, "astro,7,coffee,mug,tea"},       /* no color: never matches */
        {{"color>c"}, "astro,cam,7,tea"},                  /* strings by bytes */
        {{"code=5"}, "mug"},                               /* the number 5 */
        {{"code=\"5\""}, "cam"},                           /* the string "5" */
        {{"instock=true"}, "7"},
        {{"instock=false"}, "coffee"},
        {{"dims.w=3"}, "astro"},
        {{"price<20", "color!=white"}, "cam,coffee,mug,tea"},
        {{"price<20", "color!=white", "code=5"}, "mug"},
        {{"color=x' OR 1=1 --"}, ""},                      /* text is a value, never SQL */
        {{"nosuch=1"}, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int n = 0;
        while (n < 3 && cases[i].expr[n]) n++;
        char got[200];
        filtered_ids(ix, cases[i].expr, n, got, sizeof got);
        CHECK_MSG(!strcmp(got, cases[i].want), "filter %s%s%s: got {%s}, want {%s}", cases[i].expr[0],
                  n > 1 ? " AND " : "", n > 1 ? cases[i].expr[1] : "", got, cases[i].want);
    }
    /* the filtered ranking is the brute-force ranking of the kept rows */
    const float *v = mmt_index_vectors(ix);
    mmt_search_filter f;
    CHECK_OK(mmt_search_filter_parse("price<10", &f));
    mmt_search_options o;
    mmt_search_options_default(&o);
    o.filters = &f;
    o.n_filters = 1;
    mmt_search_result r = {0};
    CHECK_OK(mmt_index_search(ix, v + 2 * D, &o, &r));
    int64_t order[8];
    double score[8];
    brute_rank(v, 8, v + 2 * D, order, score);
    int64_t at = 0;
    for (int k = 0; k < 8; k++) {
        int64_t row = order[k];
        if (row != 1 && row != 3 && row != 5 && row != 7) continue; /* cam, coffee, mug, tea */
        CHECK(at < r.n && r.hits[at].row == row);
        at++;
    }
    CHECK(r.n == 4 && r.scanned == 4);
    mmt_search_result_free(&r);
    mmt_search_filter_free(&f);
    mmt_index_close(ix);
    /* bad filters: usage errors naming the grammar */
    const char *bad[] = {"price", "=3", "a b=3", "a..b=1", ".a=1", "a.=1", "pr$ice=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mmt_search_filter g;
        CHECK_FAILS(mmt_search_filter_parse(bad[i], &g), MMT_STATUS_INVALID_ARGUMENT, "expected FIELD OP VALUE");
    }
    CHECK(run("search --index %s --model %s --text cat --filter 'price<10' --filter 'color=blue'", tp("all"), MODEL) == 0);
    CHECK(count_lines(out_text) == 1 && strstr(out_text, "\"id\":\"mug\""));
    CHECK(run("search --index %s --model %s --text cat --filter 'a b'", tp("all"), MODEL) == 2);
    struct { const char *expr, *needle; } typo[] = {{"price==3", "the value starts with '='"},
                                                    {"price=>3", "the value starts with '>'"},
                                                    {"price<>3", "the value starts with '>'"},
                                                    {"color = \"grey", "the value's quote is not closed"},
                                                    {"price<1e999", "past the double range"},
                                                    {"price>-1e999", "past the double range"}};
    for (size_t i = 0; i < sizeof typo / sizeof *typo; i++) {
        mmt_search_filter g;
        CHECK_FAILS(mmt_search_filter_parse(typo[i].expr, &g), MMT_STATUS_INVALID_ARGUMENT, typo[i].needle);
    }
    /* integers past 2^53 compare exactly (a double would make 2^53 + 1 equal 2^53) */
    write_text("big.jsonl", "{\"id\":\"astro\",\"title\":\"x\",\"sku\":9007199254740993}\n"
                            "{\"id\":\"cam\",\"title\":\"y\",\"sku\":9007199254740992}\n"
                            "{\"id\":\"tea\",\"title\":\"z\",\"sku\":1234567890123456789}\n", NULL);
    CHECK(build("big", "big.jsonl", NULL) == 0);
    CHECK_OK(mmt_index_open(tp("big"), &ix));
    struct { const char *expr; const char *want; } exact[] = {{"sku=9007199254740993", "astro"},
                                                              {"sku!=9007199254740993", "cam,tea"},
                                                              {"sku>=9007199254740993", "astro,tea"},
                                                              {"sku<9007199254740993", "cam"},
                                                              {"sku=1234567890123456789", "tea"},
                                                              {"sku=9007199254740992.0", "cam"}};
    for (size_t i = 0; ix && i < sizeof exact / sizeof *exact; i++) {
        char got[200];
        filtered_ids(ix, &exact[i].expr, 1, got, sizeof got);
        CHECK_MSG(!strcmp(got, exact[i].want), "filter %s: got {%s}, want {%s}", exact[i].expr, got, exact[i].want);
    }
    mmt_index_close(ix);
}

/* The items table of an index as text, one line per row. */
static char *items_dump(const char *index, int64_t generation) {
    char cmd[1200], path[600];
    snprintf(path, sizeof path, "%s/dump.txt", tmp);
    snprintf(cmd, sizeof cmd, "sqlite3 %s/items.g%lld.sqlite 'SELECT * FROM items ORDER BY row' > %s 2>/dev/null",
             index, (long long)generation, path);
    if (sh("%s", cmd) != 0) return NULL;
    return check_read_file(path, NULL);
}

static int64_t generation_of(const char *index) {
    mmt_index *ix = NULL;
    if (mmt_index_open(index, &ix) != MMT_OK) return -1;
    int64_t g = mmt_index_info_of(ix)->generation;
    mmt_index_close(ix);
    return g;
}

static void test_append_equals_rebuild(void) {
    CHECK(sh("cp -r %s %s", tp("idx"), tp("app")) == 0);
    CHECK(build("app", "part2.csv", "--append") == 0);
    CHECK(out_text && strstr(out_text, "\"count\":8") && strstr(out_text, "\"generation\":2"));
    CHECK(!exists("%s/vectors.g1.npy", tp("app")) && !exists("%s/items.g1.sqlite", tp("app"))); /* old gen removed */
    float *a = index_vectors(tp("app"), 2, 8), *b = index_vectors(tp("all"), 1, 8);
    for (int i = 0; a && b && i < 8 * D; i++) CHECK_NEAR(a[i], b[i], 1e-6);
    free(a);
    free(b);
    char *da = items_dump(tp("app"), 2), *db = items_dump(tp("all"), 1);
    if (da && db) CHECK_MSG(!strcmp(da, db), "items differ:\n%s\nvs\n%s", da, db);
    else fprintf(stderr, "(sqlite3 shell missing: items tables not compared as text)\n");
    free(da);
    free(db);
    /* an id already there: an error naming it, and nothing changes */
    CHECK(build("app", "part2.csv", "--append") == 1);
    CHECK(err_text && strstr(err_text, "already holds id \"mug\"") && count_lines(err_text) == 1);
    CHECK(generation_of(tp("app")) == 2);
    /* another model, another embed mode, create over an index: refused */
    CHECK(run("index --model %s --catalog %s --out %s --append", OTHER_MODEL, tp("part2.csv"), tp("app")) == 1);
    CHECK(err_text && strstr(err_text, "another model"));
    CHECK(build("app", "part2.csv", "--append --embed title") == 1);
    CHECK(err_text && strstr(err_text, "embeds items by image, not title"));
    CHECK(build("app", "part2.csv", NULL) == 1);
    CHECK(err_text && strstr(err_text, "already holds an index"));
    /* --replace: "cam" becomes a tea pot picture, keeping row 1 */
    write_text("replace.jsonl", "{\"id\": \"cam\", \"title\": \"a tea pot\", \"image\": \"images/coffee_portrait.jpg\", "
                                "\"price\": 4}\n", NULL);
    CHECK(build("app", "replace.jsonl", "--append --replace") == 0);
    CHECK(out_text && strstr(out_text, "\"count\":8") && strstr(out_text, "\"generation\":3"));
    float *c = index_vectors(tp("app"), 3, 8), *p = index_vectors(tp("all"), 1, 8);
    for (int j = 0; c && p && j < D; j++) CHECK_NEAR(c[1 * D + j], p[6 * D + j], 1e-6); /* the portrait's image */
    for (int j = 0; c && p && j < D; j++) CHECK_NEAR(c[0 * D + j], p[0 * D + j], 1e-6);
    free(c);
    free(p);
    mmt_index *ix = NULL;
    CHECK_OK(mmt_index_open(tp("app"), &ix));
    mmt_search_options o;
    mmt_search_options_default(&o);
    o.top_k = 1;
    mmt_search_result r = {0};
    if (ix) CHECK_OK(mmt_index_search(ix, mmt_index_vectors(ix) + D, &o, &r));
    CHECK(r.n == 1 && r.hits[0].row == 1 && !strcmp(r.hits[0].id, "cam") && !strcmp(r.hits[0].title, "a tea pot") &&
          !strcmp(r.hits[0].meta, "{\"price\":4}"));
    mmt_search_result_free(&r);
    mmt_index_close(ix);
}

/* Every allocation of an append failing in turn, an I/O error, leftovers of a killed writer
 * and real kills: the old index stays readable and unchanged each time. */
static void test_failures_leave_old_index(void) {
    CHECK(sh("rm -rf %s && cp -r %s %s", tp("fail"), tp("idx"), tp("fail")) == 0);
    float v[2 * D];
    for (int j = 0; j < 2 * D; j++) v[j] = j % D == j / D ? 1.0f : 0.0f;
    mmt_index_item items[2] = {{.id = "new1", .title = "n1", .meta = "{\"a\":1}"}, {.id = "new2", .title = "n2"}};
    mmt_index *ix = NULL;
    CHECK_OK(mmt_index_open(tp("fail"), &ix));
    mmt_index_info info = *mmt_index_info_of(ix);
    mmt_index_close(ix);
    mmt_index_build b = {.mode = MMT_INDEX_APPEND, .dim = D, .model_dir = info.model_dir,
                         .model_fingerprint = info.model_fingerprint, .embed = "image"};
    int failures = 0;
    for (long k = 1; k < 500; k++) {
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_index_write(tp("fail"), &b, items, v, 2);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) break;
        failures++;
        ix = NULL;
        CHECK_OK(mmt_index_open(tp("fail"), &ix));
        CHECK(ix && mmt_index_info_of(ix)->count == 5 && mmt_index_info_of(ix)->generation == 1);
        mmt_index_close(ix);
        CHECK(!exists("%s/vectors.g2.npy", tp("fail")) && !exists("%s/items.g2.sqlite", tp("fail")));
    }
    CHECK(failures > 5);
    CHECK(generation_of(tp("fail")) == 2);
    /* an I/O error: a folder where the next generation's vectors go cannot be removed */
    CHECK(sh("mkdir -p %s/vectors.g3.npy/x", tp("fail")) == 0);
    items[0].id = "new3";
    items[1].id = "new4";
    CHECK_FAILS(mmt_index_write(tp("fail"), &b, items, v, 2), MMT_STATUS_IO, "vectors.g3.npy");
    CHECK(generation_of(tp("fail")) == 2);
    CHECK(sh("rm -rf %s/vectors.g3.npy", tp("fail")) == 0);
    /* leftovers of a writer killed mid-write: ignored by readers, removed by the next write */
    write_text("fail/vectors.g7.npy", "\x93NUMPY partial", NULL);
    write_text("fail/items.g7.sqlite", "partial", NULL);
    write_text("fail/index.json.tmp.99999", "{", NULL);
    CHECK(generation_of(tp("fail")) == 2);
    CHECK_OK(mmt_index_write(tp("fail"), &b, items, v, 2));
    CHECK(generation_of(tp("fail")) == 8);
    CHECK(!exists("%s/items.g7.sqlite", tp("fail")) && !exists("%s/index.json.tmp.99999", tp("fail")));
    /* real kills of `mmtune index --append` at a few moments: old or new, never broken */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s index --model %s --catalog %s --out %s --append >/dev/null 2>&1", MMT_BINARY,
             MODEL, tp("part2.csv"), tp("kill"));
    const long delays_us[] = {0, 2000, 10000, 30000, 80000};
    for (size_t i = 0; i < sizeof delays_us / sizeof *delays_us; i++) {
        CHECK(sh("rm -rf %s && cp -r %s %s", tp("kill"), tp("idx"), tp("kill")) == 0);
        pid_t pid = spawn_sh(cmd, NULL, NULL);
        usleep((useconds_t)delays_us[i]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ix = NULL;
        CHECK_OK(mmt_index_open(tp("kill"), &ix));
        CHECK(ix && (mmt_index_info_of(ix)->count == 5 || mmt_index_info_of(ix)->count == 8));
        mmt_index_close(ix);
        CHECK(build("kill", "part2.csv", "--append --replace") == 0); /* and the next write works */
    }
}

/* A copy of the index broken by cmd (printf with the copy's path), then searched: exit 1 and
 * a one-line error containing needle. */
static void check_broken(const char *cmd, const char *needle) {
    CHECK(sh("rm -rf %s && cp -r %s %s", tp("broken"), tp("idx"), tp("broken")) == 0);
    CHECK(sh(cmd, tp("broken")) == 0);
    CHECK(run("search --index %s --model %s --text cat", tp("broken"), MODEL) == 1);
    CHECK_MSG(err_text && strstr(err_text, needle) && count_lines(err_text) == 1, "%s: got %s", cmd, err_text);
}

static void test_broken_indexes(void) {
    check_broken("printf '{' > %s/index.json", "index.json: invalid JSON");
    check_broken("sed -i 's/mmtune-index/other/' %s/index.json", "format is \"other\"");
    check_broken("sed -i 's/\"version\": 1/\"version\": 2/' %s/index.json", "index version 2");
    check_broken("sed -i 's/\"count\": 5/\"count\": 6/' %s/index.json", "expected float32 (6, 24)");
    check_broken("truncate -s -10 %s/vectors.g1.npy", "truncated");
    check_broken("printf 'garbage' > %s/vectors_int8.g1.npy", "not a .npy file");
    check_broken("truncate -s 100 %s/items.g1.sqlite", "items.g1.sqlite");
    check_broken("rm %s/scales.g1.npy", "scales.g1.npy");
    /* a row no longer a unit vector (inf in it; all rows are hits at the default top-k): an
     * error, never a hit with "score":inf (not JSON) or a wrong ranking */
    check_broken("F=%s/vectors.g1.npy; H=$((10 + $(od -An -tu2 -j8 -N2 $F))); "
                 "printf '\\000\\000\\200\\177' | dd of=$F bs=1 seek=$((H + 24 * 4)) conv=notrunc 2>/dev/null",
                 "vectors.g1.npy: row 1 is not a unit vector (score inf)");
    CHECK(run("search --index %s --model %s --text cat", tp("nowhere"), MODEL) == 1);
    CHECK(err_text && strstr(err_text, "no index here") && count_lines(err_text) == 1);
    CHECK(run("search --index %s --model %s --text cat", tp("idx"), OTHER_MODEL) == 1);
    CHECK(err_text && strstr(err_text, "another model") && count_lines(err_text) == 1);
    CHECK(run("search --index %s --model %s --text cat --adapter %s", tp("idx"), MODEL, MODEL) == 1);
    CHECK(err_text && strstr(err_text, "without an adapter") && count_lines(err_text) == 1);
}

/* mmt_catalog_parse fails with a message containing needle. */
static void check_catalog_fails(const char *text, int csv, const char *needle) {
    mmt_catalog_options o;
    mmt_catalog_options_default(&o);
    o.max_field_bytes = 200;
    mmt_catalog *c = NULL;
    CHECK_FAILS(mmt_catalog_parse(text, strlen(text), "cat.x", csv == 1, tmp, &o, &c), csv == 2 ? MMT_STATUS_NOT_FOUND :
                MMT_STATUS_BAD_FORMAT, needle);
    CHECK(c == NULL);
}

static void test_catalog_errors(void) {
    const char *ok = "{\"id\":1,\"title\":\"a\"}\n";
    char line[512];
    check_catalog_fails("{\"id\":1,\"title\":\"a\"}\nnot json\n", 0, "cat.x:2: invalid JSON");
    check_catalog_fails("\n[1,2]\n", 0, "cat.x:2: not a JSON object");
    check_catalog_fails("{\"title\":\"a\"}\n", 0, "cat.x:1: no \"id\"");
    check_catalog_fails("{\"id\":1.5,\"title\":\"a\"}\n", 0, "cat.x:1: \"id\" must be a string or an integer (within 64 bits");
    check_catalog_fails("{\"id\":2.0,\"title\":\"a\"}\n", 0, "written without a fraction or exponent), got a number");
    check_catalog_fails("{\"id\":\"a\\u0000b\",\"title\":\"a\"}\n", 0, "cat.x:1: \"id\" holds a NUL character");
    /* a key twice, at the top or inside: readers disagree on which one counts */
    check_catalog_fails("{\"id\":1,\"title\":\"a\",\"price\":1,\"price\":2}\n", 0, "cat.x:1: key \"price\" appears twice");
    check_catalog_fails("{\"id\":1,\"id\":2,\"title\":\"a\"}\n", 0, "cat.x:1: key \"id\" appears twice");
    check_catalog_fails("{\"id\":1,\"title\":\"a\",\"m\":[{\"k\":1,\"j\":0,\"k\":2}]}\n", 0, "cat.x:1: key \"k\" appears twice");
    check_catalog_fails("{\"id\":true,\"title\":\"a\"}\n", 0, "cat.x:1: \"id\" must be");
    check_catalog_fails("{\"id\":\"\",\"title\":\"a\"}\n", 0, "cat.x:1: empty id");
    check_catalog_fails("{\"id\":1,\"title\":3}\n", 0, "cat.x:1: \"title\" must be a string");
    check_catalog_fails("{\"id\":1,\"image\":\"a\",\"image_path\":\"b\"}\n", 0, "cat.x:1: give \"image\" or \"image_path\"");
    check_catalog_fails("{\"id\":1,\"price\":3}\n", 0, "cat.x:1: item \"1\" has neither a title nor an image");
    snprintf(line, sizeof line, "%s{\"id\":2,\"title\":\"b\"}\n\n{\"id\":\"1\",\"title\":\"c\"}\n", ok);
    check_catalog_fails(line, 0, "cat.x:4: duplicate id \"1\" (first on line 1)");
    check_catalog_fails("", 0, "cat.x: no items");
    snprintf(line, sizeof line, "%s{\"id\":2,\"title\":\"%0300d\"}\n", ok, 0);
    check_catalog_fails(line, 0, "cat.x:2: the line is over the limit of 200 bytes");
    check_catalog_fails("{\"id\":1,\"image\":\"missing.png\"}\n", 2, "cat.x:1: image not found");
    check_catalog_fails("title,image\na,b\n", 1, "cat.x:1: the header has no \"id\" column");
    check_catalog_fails("id,title\n1,a\n2\n", 1, "cat.x:3: expected 2 fields as in the header, got 1");
    check_catalog_fails("id,title\n1,a\n2,b\"c\n", 1, "cat.x:3: field 2: a quote inside an unquoted field");
    check_catalog_fails("id,title\n1,\"a\n\nb\n", 1, "cat.x:2: field 2: quote opened here is never closed");
    check_catalog_fails("id,title,Title\n1,a,b\n", 1, "cat.x:1: column \"Title\" appears twice");
    check_catalog_fails("id,title\n1,a\n\n2,b\n1,c\n", 1, "cat.x:5: duplicate id \"1\" (first on line 2)");
    check_catalog_fails("id,price\n1,3\n", 1, "cat.x:2: item \"1\" has neither a title nor an image");
    /* a NUL byte in a CSV field would cut it short: refused, naming the line and the field */
    {
        static const char nul_csv[] = "id,title\n1,a\n2,b\0c\n";
        mmt_catalog_options no;
        mmt_catalog_options_default(&no);
        mmt_catalog *cn = NULL;
        CHECK_FAILS(mmt_catalog_parse(nul_csv, sizeof nul_csv - 1, "cat.x", 1, tmp, &no, &cn), MMT_STATUS_BAD_FORMAT,
                    "cat.x:3: field 2 holds a NUL byte");
        CHECK(cn == NULL);
        /* a UTF-8 byte-order mark before JSONL, as before CSV */
        const char *bom = "\xEF\xBB\xBF{\"id\":\"b\",\"title\":\"t\"}\n";
        CHECK_OK(mmt_catalog_parse(bom, strlen(bom), "bom.jsonl", 0, tmp, &no, &cn));
        CHECK(cn && cn->n == 1 && !strcmp(cn->items[0].id, "b"));
        mmt_catalog_free(cn);
    }
    /* CSV values: JSON numbers become numbers, other text strings, empty fields are left out */
    const char *csv = "\xEF\xBB\xBFid,title,a,b,c,d,e,f,g\n"
                      "x,\"t, \"\"q\"\"\n2\",12,007,1e3,-0.5,inf,,0x10\n";
    mmt_catalog *c = NULL;
    mmt_catalog_options o;
    mmt_catalog_options_default(&o);
    CHECK_OK(mmt_catalog_parse(csv, strlen(csv), "v.csv", 1, tmp, &o, &c));
    if (c) {
        CHECK(c->n == 1 && !strcmp(c->items[0].title, "t, \"q\"\n2") && c->items[0].line == 2);
        CHECK_MSG(!strcmp(c->items[0].meta, "{\"a\":12,\"b\":\"007\",\"c\":1e3,\"d\":-0.5,\"e\":\"inf\",\"g\":\"0x10\"}"),
                  "meta %s", c->items[0].meta);
    }
    mmt_catalog_free(c);
    /* JSONL metadata kept in order with nested values; a number id as its text */
    const char *jl = "{\"id\": 42, \"z\": [1, {\"b\": null}], \"title\": \"t\", \"a\": \"\\u00e9\", \"n\": -1.25e-3}\n";
    CHECK_OK(mmt_catalog_parse(jl, strlen(jl), "v.jsonl", 0, tmp, &o, &c));
    if (c) {
        CHECK(!strcmp(c->items[0].id, "42"));
        CHECK_MSG(!strcmp(c->items[0].meta, "{\"z\":[1,{\"b\":null}],\"a\":\"\xc3\xa9\",\"n\":-0.00125}"), "meta %s",
                  c->items[0].meta);
    }
    mmt_catalog_free(c);
    /* through the CLI: exit 1, one line, FILE:LINE */
    write_text("bad.csv", "id,title\n1,a\n1,b\n", NULL);
    CHECK(build("never", "bad.csv", NULL) == 1);
    CHECK(err_text && strstr(err_text, "bad.csv:3: duplicate id \"1\" (first on line 2)") && count_lines(err_text) == 1);
    CHECK(!exists("%s", tp("never/index.json")));
    /* an image that does not decode: the error names its line and id, not its batch */
    CHECK(sh("head -c 300 %s/clip/images/chelsea.jpg > %s/cut.jpg", MMT_FIXTURE_DIR, tmp) == 0);
    write_text("cut.jsonl", "{\"id\":\"a\",\"title\":\"x\"}\n\n{\"id\":\"b\",\"image\":\"cut.jpg\"}\n{\"id\":\"c\",\"title\":\"y\"}\n",
               NULL);
    CHECK(build("never", "cut.jsonl", NULL) == 1);
    CHECK_MSG(err_text && strstr(err_text, "cut.jsonl:3 (id \"b\"): ") && strstr(err_text, "cut.jpg") && count_lines(err_text) == 1,
              "%s", err_text ? err_text : "");
}

static void test_help(void) {
    CHECK(run("index --help") == 0 && strstr(out_text, "--catalog FILE"));
    CHECK(run("search --help") == 0 && strstr(out_text, "--filter EXPR"));
    CHECK(run("--help") == 0 && strstr(out_text, "  index ") && strstr(out_text, "  search "));
    CHECK(run("index --model %s --out x", MODEL) == 2);
    CHECK(run("index --model %s --catalog x --out y --embed pixels", MODEL) == 2);
    CHECK(run("search --index x --model %s", MODEL) == 2);
    CHECK(run("search --index x --model %s --text a --image b", MODEL) == 2);
    CHECK(run("search --index x --model %s --text a --rescore 5", MODEL) == 2 && strstr(err_text, "--rescore goes with --int8"));
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_test_index_%d", (int)getpid());
    mkdir(tmp, 0755);
    cli_run_setup(tmp);
    cli_print_failures = 0;
    sh("ln -s %s/clip/images %s/images", MMT_FIXTURE_DIR, tmp);
    write_text("part1.jsonl", PART1, NULL);
    write_text("part2.csv", PART2, NULL);
    write_text("union.jsonl", PART1, PART2_AS_JSONL);
    RUN(test_vectors_equal_embed);
    RUN(test_search_equals_brute_force);
    RUN(test_int8_equals_float32);
    RUN(test_filters);
    RUN(test_append_equals_rebuild);
    RUN(test_failures_leave_old_index);
    RUN(test_broken_indexes);
    RUN(test_catalog_errors);
    RUN(test_help);
    cli_run_cleanup();
    if (sh("rm -rf %s", tmp) != 0) fprintf(stderr, "cleanup of %s failed\n", tmp);
    return check_summary();
}
