/* test_json.c — the JSON parser: valid documents, typed getters, and rejection of malformed
 * input with messages naming the source and byte offset. Expected values are from RFC 8259. */
#include "check.h"
#include "core/json.h"

static mmt_status parse(const char *text, mmt_json_doc **doc) {
    return mmt_json_parse(text, strlen(text), "t.json", doc);
}

static void test_parses_nested_document(void) {
    mmt_json_doc *doc;
    CHECK_OK(parse(" {\"a\": [1, -2.5e1, true, null, \"x\\u00e9\\ud83d\\ude00\\n\"],"
                   " \"b\": {\"c\": 0}, \"a2\": {}} ", &doc));
    if (!doc) return;
    const mmt_json *root = mmt_json_root(doc);
    CHECK(root->type == MMT_JSON_OBJECT && root->len == 3);
    const mmt_json *a = mmt_json_get(root, "a");
    CHECK(a && a->type == MMT_JSON_ARRAY && a->len == 5);
    CHECK(a->items[0].is_integer && a->items[0].integer == 1);
    CHECK(!a->items[1].is_integer && a->items[1].number == -25.0);
    CHECK(a->items[2].type == MMT_JSON_BOOL && a->items[2].boolean);
    CHECK(a->items[3].type == MMT_JSON_NULL);
    CHECK(strcmp(a->items[4].string, "x\xc3\xa9\xf0\x9f\x98\x80\n") == 0);
    CHECK(mmt_json_get(mmt_json_get(root, "b"), "c")->integer == 0);
    CHECK(mmt_json_get(root, "missing") == NULL);
    CHECK(mmt_json_get(root, "a2")->len == 0);
    mmt_json_free(doc);
}

static void test_duplicate_key_last_wins(void) {
    mmt_json_doc *doc;
    CHECK_OK(parse("{\"k\": 1, \"k\": 2}", &doc));
    if (doc) CHECK(mmt_json_get(mmt_json_root(doc), "k")->integer == 2);
    mmt_json_free(doc);
}

static void test_typed_getters(void) {
    mmt_json_doc *doc;
    CHECK_OK(parse("{\"n\": 5, \"f\": 0.5, \"s\": \"hi\", \"b\": false, \"z\": null}", &doc));
    if (!doc) return;
    const mmt_json *r = mmt_json_root(doc);
    int64_t i;
    double d;
    const char *s;
    int b;
    CHECK_OK(mmt_json_get_int(r, "n", 0, &i, "c.json", "cfg"));
    CHECK(i == 5);
    CHECK_OK(mmt_json_get_int(r, "absent", 7, &i, "c.json", "cfg"));
    CHECK(i == 7);
    CHECK_OK(mmt_json_get_int(r, "z", 9, &i, "c.json", "cfg"));
    CHECK(i == 9);
    CHECK_OK(mmt_json_get_double(r, "n", 0, &d, "c.json", ""));
    CHECK(d == 5.0);
    CHECK_OK(mmt_json_get_string(r, "s", NULL, &s, "c.json", ""));
    CHECK(s && strcmp(s, "hi") == 0);
    CHECK_OK(mmt_json_get_bool(r, "b", 1, &b, "c.json", ""));
    CHECK(b == 0);
    CHECK_FAILS(mmt_json_get_int(r, "f", 0, &i, "c.json", "cfg"), MMT_STATUS_BAD_FORMAT,
                "c.json: cfg.f: expected an integer, got a non-integer number");
    CHECK_FAILS(mmt_json_get_int(r, "s", 0, &i, "c.json", ""), MMT_STATUS_BAD_FORMAT,
                "c.json: s: expected an integer, got a string");
    CHECK_FAILS(mmt_json_get_string(r, "n", NULL, &s, "c.json", ""), MMT_STATUS_BAD_FORMAT,
                "expected a string, got a number");
    mmt_json_free(doc);
}

static void test_rejects_malformed(void) {
    static const char *bad[] = {
        "", "{", "[1,]", "{\"a\":1,}", "{'a':1}", "01", "1.", "-", "1e", "nul", "tru",
        "\"abc", "\"\\x\"", "\"\\ud800\"", "\"\\udc00x\"", "\"a\x01\"", "\"\xff\"",
        "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "[1] 2", "NaN", "{\"a\" 1}", "[1 2]", "{1:2}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mmt_json_doc *doc = NULL;
        mmt_status s = parse(bad[i], &doc);
        CHECK_MSG(s == MMT_STATUS_BAD_FORMAT && doc == NULL, "accepted bad input #%zu: %s", i, bad[i]);
        CHECK(strstr(mmt_last_error(), "t.json: invalid JSON at byte") != NULL);
    }
}

static void test_depth_limit(void) {
    char deep[2 * MMT_JSON_MAX_DEPTH + 10];
    size_t n = MMT_JSON_MAX_DEPTH + 2;
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    mmt_json_doc *doc;
    CHECK_FAILS(parse(deep, &doc), MMT_STATUS_BAD_FORMAT, "nesting too deep");
}

static void test_missing_file(void) {
    mmt_json_doc *doc;
    CHECK_FAILS(mmt_json_parse_file("/nonexistent/x.json", &doc), MMT_STATUS_NOT_FOUND,
                "/nonexistent/x.json: cannot open");
}

static void test_strbuf_escapes(void) {
    mmt_strbuf b = {0};
    mmt_strbuf_json_string(&b, "a\"b\\c\n\x01", 7);
    CHECK(strcmp(b.data, "\"a\\\"b\\\\c\\n\\u0001\"") == 0);
    mmt_strbuf_printf(&b, "%d", 42);
    CHECK(b.len == strlen(b.data) && strstr(b.data, "42"));
    mmt_strbuf_free(&b);
}

/* What mmt_json_write writes parses again to the same values; numbers past the double range
 * (read as +-inf) are written as 1e999 / -1e999, valid JSON, never "inf" (the feedback file
 * and the catalogue's metadata are written this way). */
static void test_write_round_trips(void) {
    const char *text = "{\"a\":[1,19.99,-2.5e-07,1e999,-1e999,true,null],\"b\":{\"c\":\"x\\n\"}}";
    mmt_json_doc *doc;
    CHECK_OK(parse(text, &doc));
    if (!doc) return;
    mmt_strbuf b = {0};
    mmt_json_write(&b, mmt_json_root(doc));
    CHECK_MSG(b.data && strcmp(b.data, text) == 0, "written: %s", b.data ? b.data : "(null)");
    CHECK(b.data && !strstr(b.data, "inf"));
    mmt_json_doc *again = NULL;
    CHECK_OK(mmt_json_parse(b.data, b.len, "written", &again));
    if (again) {
        const mmt_json *a = mmt_json_get(mmt_json_root(again), "a");
        CHECK(a && a->len == 7 && a->items[3].number > 1e308 && a->items[4].number < -1e308);
    }
    mmt_json_free(again);
    mmt_strbuf_free(&b);
    mmt_json_free(doc);
}

int main(void) {
    RUN(test_parses_nested_document);
    RUN(test_duplicate_key_last_wins);
    RUN(test_typed_getters);
    RUN(test_rejects_malformed);
    RUN(test_depth_limit);
    RUN(test_missing_file);
    RUN(test_strbuf_escapes);
    RUN(test_write_round_trips);
    return check_summary();
}
