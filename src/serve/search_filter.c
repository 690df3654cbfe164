/*
 * search_filter.c — "FIELD OP VALUE" filters (grammar in index.h) compiled to one SQL query.
 *
 * The SQL text is assembled only from fixed pieces (the operator comes from a table, never
 * from the user); the field's JSON path and the value are bound as parameters. Each filter
 * becomes
 *     (json_type(meta, ?p) IN (<types>) AND json_extract(meta, ?p) <op> ?v)
 * where the type test keeps SQLite's cross-type ordering (every number sorts before every
 * string) from making "price < 5" match a string price, and a missing field gives NULL,
 * which no comparison matches.
 */
#include "serve/search_filter.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"
#include "serve/index_internal.h"

#define FILTER_MAX 64

static const char *const OP_SQL[] = {"=", "!=", "<", "<=", ">", ">="};

static int field_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

mmt_status mmt_search_filter_parse(const char *expr, mmt_search_filter *out) {
    memset(out, 0, sizeof *out);
    const char *quoted = expr; /* for messages */
    while (*expr == ' ') expr++; /* spaces around the field and the operator are allowed */
    size_t n = 0;
    while (field_char(expr[n])) n++;
    const char *op = expr + n;
    while (*op == ' ') op++;
    int op_len = 0;
    if (!strncmp(op, "!=", 2)) out->op = MMT_FILTER_NE, op_len = 2;
    else if (!strncmp(op, "<=", 2)) out->op = MMT_FILTER_LE, op_len = 2;
    else if (!strncmp(op, ">=", 2)) out->op = MMT_FILTER_GE, op_len = 2;
    else if (*op == '=') out->op = MMT_FILTER_EQ, op_len = 1;
    else if (*op == '<') out->op = MMT_FILTER_LT, op_len = 1;
    else if (*op == '>') out->op = MMT_FILTER_GT, op_len = 1;
    int bad_field = n == 0 || n > 200 || expr[0] == '.' || expr[n - 1] == '.';
    for (size_t i = 1; i < n && !bad_field; i++) bad_field = expr[i] == '.' && expr[i - 1] == '.';
    if (!op_len || bad_field)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "filter '%.200s': expected FIELD OP VALUE, OP one of = != < <= > "
                        ">=, FIELD of letters, digits, '_' and '.' (e.g. price<=20 or color = red)", quoted);
    snprintf(out->path, sizeof out->path, "$.%.*s", (int)n, expr);
    const char *value = op + op_len;
    while (*value == ' ') value++;
    size_t vlen = strlen(value);
    while (vlen && value[vlen - 1] == ' ') vlen--;
    if (!vlen)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "filter '%.200s': no value after the operator (quote an empty string: \"\")",
                        quoted);
    if (strchr("=<>!", value[0])) /* price==3, price=>3, price<>3: a typo, not the string "=3" */
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "filter '%.200s': the value starts with '%c': use one operator of "
                        "= != < <= > >= (quote a value that starts so: \"=3\")", quoted, value[0]);
    if (value[0] == '"' && (vlen < 2 || value[vlen - 1] != '"'))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "filter '%.200s': the value's quote is not closed", quoted);
    char *trimmed = mmt_strndup(value, vlen);
    if (!trimmed) return MMT_STATUS_OUT_OF_MEMORY;
    value = trimmed;
    char *end = NULL;
    double parsed = strtod(value, &end);
    if (!*end && isinf(parsed) && (isdigit((unsigned char)value[0]) || (value[0] == '-' && isdigit((unsigned char)value[1])))) {
        mmt_free(trimmed); /* 1e999: a JSON number, but past the double range */
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "filter '%.200s': the number is past the double range", quoted);
    }
    if (mmt_json_is_number(value)) {
        out->kind = MMT_FILTER_NUMBER;
        out->number = parsed;
        if (!strpbrk(value, ".eE")) { /* an integer: exactly, as SQLite keeps integers (2^53 + 1 is not a double) */
            errno = 0;
            long long ll = strtoll(value, NULL, 10);
            if (!errno) out->is_integer = 1, out->integer = ll;
        }
    } else if (!strcmp(value, "true") || !strcmp(value, "false")) {
        out->kind = MMT_FILTER_BOOL;
        out->number = value[0] == 't';
    } else {
        out->kind = MMT_FILTER_STRING;
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            memmove(trimmed, trimmed + 1, vlen - 2);
            trimmed[vlen - 2] = '\0';
        }
        out->text = trimmed;
        return MMT_OK;
    }
    mmt_free(trimmed);
    return MMT_OK;
}

void mmt_search_filter_free(mmt_search_filter *f) {
    if (!f) return;
    mmt_free(f->text);
    f->text = NULL;
}

/* The WHERE clause for n filters, parameters ?(2i+1) = path and ?(2i+2) = value. */
static mmt_status filter_sql(const mmt_search_filter *filters, int64_t n, mmt_strbuf *sql) {
    mmt_strbuf_printf(sql, "SELECT row FROM items WHERE ");
    for (int64_t i = 0; i < n; i++) {
        const mmt_search_filter *f = &filters[i];
        const char *types = f->kind == MMT_FILTER_NUMBER ? "'integer','real'"
                          : f->kind == MMT_FILTER_BOOL   ? "'true','false'"
                                                         : "'text'";
        int p = (int)(2 * i + 1);
        mmt_strbuf_printf(sql, "%s(json_type(meta, ?%d) IN (%s) AND json_extract(meta, ?%d) %s ?%d)", i ? " AND " : "",
                          p, types, p, OP_SQL[f->op], p + 1);
    }
    mmt_strbuf_printf(sql, " ORDER BY row");
    return sql->failed ? MMT_STATUS_OUT_OF_MEMORY : MMT_OK;
}

mmt_status search_filter_rows(sqlite3 *db, const char *what, const mmt_search_filter *filters, int64_t n_filters,
                              int64_t **rows, int64_t *n_rows) {
    *rows = NULL;
    *n_rows = 0;
    if (n_filters > FILTER_MAX)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "search: %lld filters, at most %d", (long long)n_filters, FILTER_MAX);
    mmt_strbuf sql = {0};
    sqlite3_stmt *st = NULL;
    mmt_status s = filter_sql(filters, n_filters, &sql);
    if (s == MMT_OK && sqlite3_prepare_v2(db, sql.data, -1, &st, NULL) != SQLITE_OK)
        s = index_sqlite_fail(MMT_STATUS_IO, what, db);
    for (int64_t i = 0; s == MMT_OK && i < n_filters; i++) {
        const mmt_search_filter *f = &filters[i];
        int p = (int)(2 * i + 1);
        sqlite3_bind_text(st, p, f->path, -1, SQLITE_STATIC);
        if (f->kind == MMT_FILTER_STRING) sqlite3_bind_text(st, p + 1, f->text, -1, SQLITE_STATIC);
        else if (f->is_integer) sqlite3_bind_int64(st, p + 1, f->integer);
        else sqlite3_bind_double(st, p + 1, f->number);
    }
    int64_t cap = 0;
    while (s == MMT_OK) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            s = index_sqlite_fail(MMT_STATUS_IO, what, db);
            break;
        }
        s = mmt_grow((void **)rows, &cap, *n_rows + 1, sizeof **rows);
        if (s == MMT_OK) (*rows)[(*n_rows)++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    mmt_strbuf_free(&sql);
    if (s != MMT_OK) {
        mmt_free(*rows);
        *rows = NULL;
        *n_rows = 0;
    }
    return s;
}
