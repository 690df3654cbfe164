/*
 * json.c — strict recursive-descent JSON parser into an arena-backed tree (see json.h).
 *
 * Strictness follows RFC 8259: no comments, no trailing commas, no NaN/Infinity, no leading
 * zeros, no unescaped control characters, valid UTF-8 only, no lone surrogate escapes.
 */
#include "core/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/file.h"

struct mmt_json_doc {
    mmt_arena arena; /* every node, string and key array */
    mmt_json root;
};

typedef struct parser {
    const unsigned char *s;
    size_t len;
    size_t pos;
    const char *what;
    mmt_arena *arena;
    int depth;
} parser;

static mmt_status parse_fail(parser *p, const char *msg) {
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: invalid JSON at byte %zu: %s", p->what, p->pos,
                    msg);
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* Length of one valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned int cp;
    if (c >= 0xc2 && c <= 0xdf) need = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) need = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) need = 4, cp = c & 0x07;
    else return 0;
    if (n < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    if (cp >= 0xd800 && cp <= 0xdfff) return 0;
    return need;
}

static size_t put_utf8(char *out, unsigned int cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int hex4(parser *p, unsigned int *out) {
    if (p->len - p->pos < 4) return 0;
    unsigned int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p->s[p->pos + (size_t)i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    p->pos += 4;
    *out = v;
    return 1;
}

/* Parses a string literal at p->pos (the opening quote). The decoded form is never longer
 * than the literal, so one arena block of the literal's size suffices. */
static mmt_status parse_string(parser *p, const char **out, size_t *out_len) {
    size_t start = ++p->pos;
    size_t end = start;
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len) return parse_fail(p, "unterminated string");
    char *buf = mmt_arena_alloc(p->arena, end - start + 1, 1);
    if (!buf) return MMT_STATUS_OUT_OF_MEMORY;
    size_t n = 0;
    while (p->s[p->pos] != '"') {
        unsigned char c = p->s[p->pos];
        if (c < 0x20) return parse_fail(p, "control character in string");
        if (c != '\\') {
            size_t k = utf8_sequence(p->s + p->pos, p->len - p->pos);
            if (k == 0) return parse_fail(p, "invalid UTF-8 in string");
            memcpy(buf + n, p->s + p->pos, k);
            n += k;
            p->pos += k;
            continue;
        }
        p->pos++;
        char e = (char)p->s[p->pos++];
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned int cp;
            if (!hex4(p, &cp)) return parse_fail(p, "bad \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned int lo;
                if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return parse_fail(p, "lone surrogate in \\u escape");
                p->pos += 2;
                if (!hex4(p, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return parse_fail(p, "lone surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return parse_fail(p, "lone surrogate in \\u escape");
            }
            n += put_utf8(buf + n, cp);
            break;
        }
        default: p->pos--; return parse_fail(p, "bad escape in string");
        }
    }
    p->pos++; /* closing quote */
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return MMT_OK;
}

static mmt_status parse_number(parser *p, mmt_json *v) {
    size_t start = p->pos;
    const unsigned char *s = p->s;
    size_t i = p->pos;
    int integral = 1;
    if (i < p->len && s[i] == '-') i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9') return parse_fail(p, "bad number");
    if (s[i] == '0') {
        i++;
    } else {
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') return parse_fail(p, "bad number");
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') return parse_fail(p, "bad number");
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    char tmp[512];
    if (i - start >= sizeof tmp) return parse_fail(p, "number too long");
    memcpy(tmp, s + start, i - start);
    tmp[i - start] = '\0';
    v->type = MMT_JSON_NUMBER;
    v->number = strtod(tmp, NULL);
    if (integral) {
        errno = 0;
        long long ll = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            v->is_integer = 1;
            v->integer = ll;
        }
    }
    p->pos = i;
    return MMT_OK;
}

static mmt_status parse_value(parser *p, mmt_json *v);

/* Collects children in a growable scratch vector, then moves them into the arena. */
typedef struct child_vec {
    mmt_json *items;
    const char **keys;
    size_t *key_lens;
    size_t len, cap;
} child_vec;

static mmt_status child_push(child_vec *c, int with_keys) {
    if (c->len < c->cap) return MMT_OK;
    size_t cap = c->cap ? c->cap * 2 : 8;
    mmt_json *items = mmt_realloc(c->items, cap * sizeof *items);
    if (!items) return MMT_STATUS_OUT_OF_MEMORY;
    c->items = items;
    if (with_keys) {
        const char **keys = mmt_realloc((void *)c->keys, cap * sizeof *keys);
        if (!keys) return MMT_STATUS_OUT_OF_MEMORY;
        c->keys = keys;
        size_t *lens = mmt_realloc(c->key_lens, cap * sizeof *lens);
        if (!lens) return MMT_STATUS_OUT_OF_MEMORY;
        c->key_lens = lens;
    }
    c->cap = cap;
    return MMT_OK;
}

static void child_free(child_vec *c) {
    mmt_free(c->items);
    mmt_free((void *)c->keys);
    mmt_free(c->key_lens);
}

static mmt_status child_move(parser *p, child_vec *c, mmt_json *v, int with_keys) {
    v->len = c->len;
    if (c->len == 0) return MMT_OK;
    v->items = mmt_arena_alloc(p->arena, c->len * sizeof(mmt_json), 8);
    if (!v->items) return MMT_STATUS_OUT_OF_MEMORY;
    memcpy(v->items, c->items, c->len * sizeof(mmt_json));
    if (with_keys) {
        v->keys = mmt_arena_alloc(p->arena, c->len * sizeof(char *), 8);
        v->key_lens = mmt_arena_alloc(p->arena, c->len * sizeof(size_t), 8);
        if (!v->keys || !v->key_lens) return MMT_STATUS_OUT_OF_MEMORY;
        memcpy((void *)v->keys, c->keys, c->len * sizeof(char *));
        memcpy(v->key_lens, c->key_lens, c->len * sizeof(size_t));
    }
    return MMT_OK;
}

static mmt_status parse_container(parser *p, mmt_json *v, int is_object) {
    char close = is_object ? '}' : ']';
    if (++p->depth > MMT_JSON_MAX_DEPTH) return parse_fail(p, "nesting too deep");
    v->type = is_object ? MMT_JSON_OBJECT : MMT_JSON_ARRAY;
    p->pos++;
    child_vec c = {0};
    mmt_status s = MMT_OK;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return MMT_OK;
    }
    for (;;) {
        if ((s = child_push(&c, is_object)) != MMT_OK) goto done;
        memset(&c.items[c.len], 0, sizeof(mmt_json));
        skip_ws(p);
        if (is_object) {
            if (p->pos >= p->len || p->s[p->pos] != '"') {
                s = parse_fail(p, "expected a string key");
                goto done;
            }
            if ((s = parse_string(p, &c.keys[c.len], &c.key_lens[c.len])) != MMT_OK) goto done;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                s = parse_fail(p, "expected ':'");
                goto done;
            }
            p->pos++;
        }
        if ((s = parse_value(p, &c.items[c.len])) != MMT_OK) goto done;
        c.len++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        s = parse_fail(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
        goto done;
    }
    s = child_move(p, &c, v, is_object);
    p->depth--;
done:
    child_free(&c);
    return s;
}

static int match_word(parser *p, const char *w) {
    size_t n = strlen(w);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0) return 0;
    p->pos += n;
    return 1;
}

static mmt_status parse_value(parser *p, mmt_json *v) {
    skip_ws(p);
    if (p->pos >= p->len) return parse_fail(p, "unexpected end of input");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_container(p, v, 1);
    case '[': return parse_container(p, v, 0);
    case '"':
        v->type = MMT_JSON_STRING;
        return parse_string(p, &v->string, &v->len);
    case 't':
        if (!match_word(p, "true")) return parse_fail(p, "bad literal");
        v->type = MMT_JSON_BOOL;
        v->boolean = 1;
        return MMT_OK;
    case 'f':
        if (!match_word(p, "false")) return parse_fail(p, "bad literal");
        v->type = MMT_JSON_BOOL;
        return MMT_OK;
    case 'n':
        if (!match_word(p, "null")) return parse_fail(p, "bad literal");
        v->type = MMT_JSON_NULL;
        return MMT_OK;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
        return parse_fail(p, "unexpected character");
    }
}

mmt_status mmt_json_parse(const char *text, size_t len, const char *what, mmt_json_doc **out) {
    *out = NULL;
    mmt_json_doc *doc = mmt_calloc(1, sizeof *doc);
    if (!doc) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_arena_init(&doc->arena, len < 4096 ? 4096 : len + len / 2);
    parser p = {(const unsigned char *)text, len, 0, what ? what : "JSON", &doc->arena, 0};
    mmt_status s = parse_value(&p, &doc->root);
    if (s == MMT_OK) {
        skip_ws(&p);
        if (p.pos != p.len) s = parse_fail(&p, "trailing characters after the value");
    }
    if (s != MMT_OK) {
        mmt_json_free(doc);
        return s;
    }
    *out = doc;
    return MMT_OK;
}

mmt_status mmt_json_parse_file(const char *path, mmt_json_doc **out) {
    char *text;
    size_t len;
    *out = NULL;
    MMT_TRY(mmt_file_read_all(path, (size_t)1 << 30, &text, &len));
    mmt_status s = mmt_json_parse(text, len, path, out);
    mmt_free(text);
    return s;
}

const mmt_json *mmt_json_root(const mmt_json_doc *doc) { return &doc->root; }

void mmt_json_free(mmt_json_doc *doc) {
    if (!doc) return;
    mmt_arena_free(&doc->arena);
    mmt_free(doc);
}

const mmt_json *mmt_json_get(const mmt_json *obj, const char *key) {
    if (!obj || obj->type != MMT_JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = obj->len; i-- > 0;)
        if (obj->key_lens[i] == n && memcmp(obj->keys[i], key, n) == 0) return &obj->items[i];
    return NULL;
}

const char *mmt_json_type_name(mmt_json_type type) {
    switch (type) {
    case MMT_JSON_NULL: return "null";
    case MMT_JSON_BOOL: return "a boolean";
    case MMT_JSON_NUMBER: return "a number";
    case MMT_JSON_STRING: return "a string";
    case MMT_JSON_ARRAY: return "an array";
    case MMT_JSON_OBJECT: return "an object";
    }
    return "?";
}

static mmt_status wrong_type(const mmt_json *v, const char *expected, const char *key,
                             const char *what, const char *path) {
    const char *got = (v->type == MMT_JSON_NUMBER && !v->is_integer && !strcmp(expected, "an integer"))
                          ? "a non-integer number"
                          : mmt_json_type_name(v->type);
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%s%s: expected %s, got %s", what, path,
                    path[0] ? "." : "", key, expected, got);
}

mmt_status mmt_json_get_int(const mmt_json *obj, const char *key, int64_t def, int64_t *out,
                            const char *what, const char *path) {
    const mmt_json *v = mmt_json_get(obj, key);
    *out = def;
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type != MMT_JSON_NUMBER || !v->is_integer)
        return wrong_type(v, "an integer", key, what, path);
    *out = v->integer;
    return MMT_OK;
}

mmt_status mmt_json_get_double(const mmt_json *obj, const char *key, double def, double *out,
                               const char *what, const char *path) {
    const mmt_json *v = mmt_json_get(obj, key);
    *out = def;
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type != MMT_JSON_NUMBER) return wrong_type(v, "a number", key, what, path);
    *out = v->number;
    return MMT_OK;
}

mmt_status mmt_json_get_bool(const mmt_json *obj, const char *key, int def, int *out,
                             const char *what, const char *path) {
    const mmt_json *v = mmt_json_get(obj, key);
    *out = def;
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type != MMT_JSON_BOOL) return wrong_type(v, "a boolean", key, what, path);
    *out = v->boolean;
    return MMT_OK;
}

mmt_status mmt_json_get_string(const mmt_json *obj, const char *key, const char *def,
                               const char **out, const char *what, const char *path) {
    const mmt_json *v = mmt_json_get(obj, key);
    *out = def;
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type != MMT_JSON_STRING) return wrong_type(v, "a string", key, what, path);
    *out = v->string;
    return MMT_OK;
}

/* ---- output buffer ---------------------------------------------------------------- */

void mmt_strbuf_append(mmt_strbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = mmt_realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void mmt_strbuf_printf(mmt_strbuf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        mmt_strbuf_append(b, small, (size_t)n);
        return;
    }
    char *big = mmt_malloc((size_t)n + 1);
    if (!big) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    mmt_strbuf_append(b, big, (size_t)n);
    mmt_free(big);
}

void mmt_strbuf_json_string(mmt_strbuf *b, const char *s, size_t n) {
    mmt_strbuf_append(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        mmt_strbuf_append(b, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"': mmt_strbuf_append(b, "\\\"", 2); break;
        case '\\': mmt_strbuf_append(b, "\\\\", 2); break;
        case '\n': mmt_strbuf_append(b, "\\n", 2); break;
        case '\r': mmt_strbuf_append(b, "\\r", 2); break;
        case '\t': mmt_strbuf_append(b, "\\t", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            mmt_strbuf_append(b, esc, 6);
        }
    }
    mmt_strbuf_append(b, s + run, n - run);
    mmt_strbuf_append(b, "\"", 1);
}

void mmt_strbuf_free(mmt_strbuf *b) {
    mmt_free(b->data);
    memset(b, 0, sizeof *b);
}

void mmt_json_write(mmt_strbuf *b, const mmt_json *v) {
    switch (v->type) {
    case MMT_JSON_NULL: mmt_strbuf_append(b, "null", 4); return;
    case MMT_JSON_BOOL: mmt_strbuf_append(b, v->boolean ? "true" : "false", v->boolean ? 4 : 5); return;
    case MMT_JSON_NUMBER:
        if (v->is_integer) {
            mmt_strbuf_printf(b, "%lld", (long long)v->integer);
        } else if (!isfinite(v->number)) {
            /* a number past the double range (1e999) parses as +-inf, which has no JSON text:
             * 1e999 is valid JSON and reads back as the same inf (NaN cannot come from text) */
            if (isnan(v->number)) mmt_strbuf_append(b, "null", 4);
            else if (v->number > 0) mmt_strbuf_append(b, "1e999", 5);
            else mmt_strbuf_append(b, "-1e999", 6);
        } else {
            /* the shortest of 15..17 digits that reads back as the same double: 19.99, not
             * 19.989999999999998 */
            char text[32];
            for (int digits = 15; digits <= 17; digits++) {
                snprintf(text, sizeof text, "%.*g", digits, v->number);
                if (strtod(text, NULL) == v->number) break;
            }
            mmt_strbuf_append(b, text, strlen(text));
        }
        return;
    case MMT_JSON_STRING: mmt_strbuf_json_string(b, v->string, v->len); return;
    case MMT_JSON_ARRAY:
    case MMT_JSON_OBJECT: {
        int is_object = v->type == MMT_JSON_OBJECT;
        mmt_strbuf_append(b, is_object ? "{" : "[", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) mmt_strbuf_append(b, ",", 1);
            if (is_object) {
                mmt_strbuf_json_string(b, v->keys[i], v->key_lens[i]);
                mmt_strbuf_append(b, ":", 1);
            }
            mmt_json_write(b, &v->items[i]);
        }
        mmt_strbuf_append(b, is_object ? "}" : "]", 1);
        return;
    }
    }
}

const char *mmt_json_unknown_key(const mmt_json *obj, const char *const *known, size_t n) {
    if (!obj || obj->type != MMT_JSON_OBJECT) return NULL;
    for (size_t k = 0; k < obj->len; k++) {
        size_t i = 0;
        while (i < n && strcmp(obj->keys[k], known[i])) i++;
        if (i == n || strlen(obj->keys[k]) != obj->key_lens[k]) return obj->keys[k]; /* "model\u0000x" is not "model" */
    }
    return NULL;
}

int mmt_json_is_number(const char *s) {
    const char *p = s;
    if (*p == '-') p++;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (*p >= '0' && *p <= '9') p++;
    else return 0;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == '\0' && isfinite(strtod(s, NULL));
}
