/* test_quant.c — src/quant/ against bitsandbytes 0.50.2 itself: the fixtures in
 * tests/fixtures/quant/ were made by tools/fixtures/make_quant_fixtures.py with bitsandbytes on
 * the CPU. Tolerance everywhere: none. Quantized bytes must be identical and every float
 * (absmax, offsets, dequantized values, the dynamic map) must have the same bits.
 * The bnb_io reader and writer are tested on the real transformers snapshots
 * (clip-tiny-nf4/, clip-tiny-int8/), on round trips, and on corrupt files, each of which must
 * fail with a one-line message naming the file and tensor. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "quant/blockwise8.h"
#include "quant/bnb_io.h"
#include "quant/dynamic_map.h"
#include "quant/int8_rows.h"
#include "quant/nf4.h"

/* ---- fixture access ------------------------------------------------------------------ */

/* A copy of tensor `name` (any dtype) in a malloc'd, aligned buffer; NULL if absent.
 * *numel gets its element count. */
static void *tensor_copy(const mmt_safetensors *st, const char *name, int64_t *numel) {
    const mmt_st_tensor *t = mmt_safetensors_find(st, name);
    if (!t) return NULL;
    size_t bytes = (size_t)(t->end - t->begin);
    void *p = malloc(bytes ? bytes : 1);
    if (p && bytes) memcpy(p, t->data, bytes);
    if (numel) *numel = t->numel;
    return p;
}

static int64_t tensor_i64(const mmt_safetensors *st, const char *name, int index) {
    int64_t n = 0;
    int64_t *v = tensor_copy(st, name, &n);
    int64_t r = v && index < n ? v[index] : -1;
    free(v);
    return r;
}

/* name + "." + field into a static buffer. */
static const char *key(const char *name, const char *field) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s.%s", name, field);
    return buf;
}

/* Count of positions where the two float arrays differ in bits. Two NaNs count as equal
 * whatever their sign and payload: IEEE leaves those to the hardware path (torch's abs/max
 * of a NaN block gives -nan where fabsf gives +nan), and no format rule depends on them. */
static int64_t float_bits_differ(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++)
        d += memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(isnan(a[i]) && isnan(b[i]));
    return d;
}

static int64_t bytes_differ(const void *a, const void *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += ((const uint8_t *)a)[i] != ((const uint8_t *)b)[i];
    return d;
}

/* Calls fn(st, case_name) for each case of a fixture file: the tensors named
 * "<case>.<marker>". */
static int for_each_case(const char *file, const char *marker,
                         void (*fn)(const mmt_safetensors *, const char *)) {
    mmt_safetensors *st = NULL;
    CHECK_OK(mmt_safetensors_open(fixture(file), &st));
    if (!st) return 0;
    int cases = 0;
    size_t mlen = strlen(marker);
    for (int64_t i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        size_t len = strlen(name);
        if (len <= mlen + 1 || strcmp(name + len - mlen, marker) != 0 || name[len - mlen - 1] != '.')
            continue;
        char base[200];
        snprintf(base, sizeof base, "%.*s", (int)(len - mlen - 1), name);
        fn(st, base);
        cases++;
    }
    mmt_safetensors_close(st);
    return cases;
}

/* ---- dynamic map and blockwise 8-bit --------------------------------------------------- */

static void test_dynamic_map(void) {
    mmt_safetensors *st = NULL;
    CHECK_OK(mmt_safetensors_open(fixture("quant/dynamic_map.safetensors"), &st));
    if (!st) return;
    for (int is_signed = 0; is_signed <= 1; is_signed++) {
        float code[256];
        mmt_dynamic_map(is_signed, code);
        float *want = tensor_copy(st, is_signed ? "signed" : "unsigned", NULL);
        CHECK(want != NULL);
        if (want) CHECK_MSG(float_bits_differ(code, want, 256) == 0, "signed=%d", is_signed);
        free(want);
    }
    mmt_safetensors_close(st);
}

static void blockwise8_case(const mmt_safetensors *st, const char *name) {
    int64_t n = 0, nb = 0;
    float *x = tensor_copy(st, key(name, "x"), &n);
    uint8_t *want_q = tensor_copy(st, key(name, "q"), NULL);
    float *want_absmax = tensor_copy(st, key(name, "absmax"), &nb);
    float *want_deq = tensor_copy(st, key(name, "deq"), NULL);
    int64_t bs = tensor_i64(st, key(name, "blocksize"), 0);
    int is_signed = (int)tensor_i64(st, key(name, "signed"), 0);
    CHECK_MSG(x && want_q && want_absmax && want_deq && bs > 0, "%s: incomplete case", name);
    if (x && want_q && want_absmax && want_deq && bs > 0) {
        CHECK(nb == (n + bs - 1) / bs);
        float code[256];
        mmt_dynamic_map(is_signed, code);
        uint8_t *q = malloc((size_t)n);
        float *absmax = malloc((size_t)nb * sizeof(float)), *deq = malloc((size_t)n * sizeof(float));
        mmt_quantize_blockwise8(q, absmax, x, n, bs, code);
        mmt_dequantize_blockwise8(deq, want_q, want_absmax, n, bs, code);
        CHECK_MSG(bytes_differ(q, want_q, n) == 0, "%s: %lld bytes differ", name,
                  (long long)bytes_differ(q, want_q, n));
        /* the table-driven twin (what adamw8bit uses) gives the same bytes */
        static uint8_t lut[MMT_BLOCKWISE8_GRID];
        mmt_blockwise8_lut(code, lut);
        memset(q, 0xAB, (size_t)n);
        mmt_quantize_blockwise8_lut(q, absmax, x, n, bs, lut);
        CHECK_MSG(bytes_differ(q, want_q, n) == 0, "%s (table): %lld bytes differ", name,
                  (long long)bytes_differ(q, want_q, n));
        CHECK_MSG(float_bits_differ(absmax, want_absmax, nb) == 0, "%s: absmax", name);
        CHECK_MSG(float_bits_differ(deq, want_deq, n) == 0, "%s: deq", name);
        free(q);
        free(absmax);
        free(deq);
    }
    free(x);
    free(want_q);
    free(want_absmax);
    free(want_deq);
}

static void test_blockwise8(void) {
    int cases = for_each_case("quant/blockwise8.safetensors", "blocksize", blockwise8_case);
    CHECK(cases >= 25);
}

/* The grid rule, checked without a fixture: 0 goes to the signed map's entry 131 (the entry
 * nearest the grid point 1.5e-5), not to the exact 0 at 127. If the code searched for the
 * true nearest entry, this would fail. */
static void test_blockwise8_zero_is_not_nearest(void) {
    float code[256], x[2] = {0.0f, 1.0f}, absmax[1];
    uint8_t q[2];
    mmt_dynamic_map(1, code);
    CHECK(code[127] == 0.0f);
    mmt_quantize_blockwise8(q, absmax, x, 2, 64, code);
    CHECK(q[0] == 131 && q[1] == 255 && absmax[0] == 1.0f);
}

/* ---- NF4 ----------------------------------------------------------------------------- */

static void nf4_case(const mmt_safetensors *st, const char *name) {
    int64_t rows = tensor_i64(st, key(name, "shape"), 0), cols = tensor_i64(st, key(name, "shape"), 1);
    int64_t bs = tensor_i64(st, key(name, "blocksize"), 0);
    int dq = strstr(name, "_dq") != NULL;
    char base[200];
    snprintf(base, sizeof base, "%.*s", dq ? (int)(strlen(name) - 3) : (int)strlen(name), name);
    int64_t n = rows * cols, blocks = mmt_nf4_blocks(n, bs), nbytes = mmt_nf4_packed_bytes(n);
    float *x = tensor_copy(st, key(base, "x"), NULL);
    uint8_t *want_packed = tensor_copy(st, key(name, "packed"), NULL);
    float *want_deq = tensor_copy(st, key(name, "deq"), NULL);
    CHECK_MSG(x && want_packed && want_deq, "%s: incomplete case", name);
    uint8_t *packed = malloc((size_t)nbytes);
    float *absmax = malloc((size_t)blocks * sizeof(float)), *deq = malloc((size_t)n * sizeof(float));
    if (!x || !want_packed || !want_deq) goto done;
    mmt_nf4_quantize(packed, absmax, x, n, bs);
    CHECK_MSG(bytes_differ(packed, want_packed, nbytes) == 0, "%s: packed bytes differ", name);
    if (!dq) {
        float *want_absmax = tensor_copy(st, key(name, "absmax"), NULL);
        CHECK(want_absmax && float_bits_differ(absmax, want_absmax, blocks) == 0);
        if (want_absmax) {
            mmt_nf4_dequantize(deq, want_packed, want_absmax, n, bs, mmt_nf4_code);
            CHECK_MSG(float_bits_differ(deq, want_deq, n) == 0, "%s: deq", name);
        }
        free(want_absmax);
    } else {
        int64_t nested = mmt_nf4_blocks(blocks, 256);
        float *raw = tensor_copy(st, key(name, "absmax_raw"), NULL);
        uint8_t *want_q = tensor_copy(st, key(name, "qabsmax"), NULL);
        float *want_nested = tensor_copy(st, key(name, "nested_absmax"), NULL);
        float *want_code = tensor_copy(st, key(name, "nested_code"), NULL);
        float *want_offset = tensor_copy(st, key(name, "offset"), NULL);
        float *want_absmax = tensor_copy(st, key(name, "absmax_deq"), NULL);
        CHECK(raw && want_q && want_nested && want_code && want_offset && want_absmax);
        if (raw && want_q && want_nested && want_code && want_offset && want_absmax) {
            CHECK_MSG(float_bits_differ(absmax, raw, blocks) == 0, "%s: first-level absmax", name);
            uint8_t *q = malloc((size_t)blocks);
            float *nested_absmax = malloc((size_t)nested * sizeof(float));
            float *work = malloc((size_t)blocks * sizeof(float)), offset = 0;
            float *expanded = malloc((size_t)blocks * sizeof(float)), code[256];
            mmt_nf4_compress_absmax(q, nested_absmax, &offset, absmax, work, blocks, 256);
            CHECK_MSG(float_bits_differ(&offset, want_offset, 1) == 0, "%s: offset %.9g, bnb %.9g", name,
                      offset, want_offset[0]);
            CHECK_MSG(bytes_differ(q, want_q, blocks) == 0, "%s: qabsmax", name);
            CHECK_MSG(float_bits_differ(nested_absmax, want_nested, nested) == 0, "%s: nested", name);
            mmt_dynamic_map(1, code);
            CHECK(float_bits_differ(code, want_code, 256) == 0);
            mmt_nf4_expand_absmax(expanded, want_q, want_nested, want_offset[0], blocks, 256,
                                  want_code);
            CHECK_MSG(float_bits_differ(expanded, want_absmax, blocks) == 0, "%s: absmax", name);
            mmt_nf4_dequantize(deq, want_packed, expanded, n, bs, mmt_nf4_code);
            CHECK_MSG(float_bits_differ(deq, want_deq, n) == 0, "%s: deq", name);
            free(q);
            free(nested_absmax);
            free(work);
            free(expanded);
        }
        free(raw);
        free(want_q);
        free(want_nested);
        free(want_code);
        free(want_offset);
        free(want_absmax);
    }
done:
    free(packed);
    free(absmax);
    free(deq);
    free(x);
    free(want_packed);
    free(want_deq);
}

static void test_nf4(void) {
    int cases = for_each_case("quant/nf4.safetensors", "blocksize", nf4_case);
    CHECK(cases >= 20);
}

static void mean_case(const mmt_safetensors *st, const char *name) {
    int64_t n = 0;
    float *x = tensor_copy(st, key(name, "x"), &n);
    float *want = tensor_copy(st, key(name, "value"), NULL);
    CHECK(x && want);
    if (x && want) {
        float got = mmt_nf4_absmax_offset(x, n);
        CHECK_MSG(memcmp(&got, want, 4) == 0, "%s: %.9g, torch %.9g", name, got, want[0]);
    }
    free(x);
    free(want);
}

/* torch's float32 mean, the double-quant offset, on lengths 1..40 and up to 5000. */
static void test_torch_mean(void) {
    CHECK(for_each_case("quant/nf4.safetensors", "value", mean_case) >= 50);
}

/* bnb's padding nibble of an odd count is 7 (the code of 0), and the ragged zero block keeps
 * the clamped absmax 1e-38f: rules a plain implementation gets wrong. */
static void test_nf4_padding_and_zero_tail(void) {
    float x[67] = {0};
    x[0] = 1.0f;
    uint8_t packed[34];
    float absmax[2];
    mmt_nf4_quantize(packed, absmax, x, 67, 64);
    CHECK(packed[0] == ((15 << 4) | 7));
    CHECK(packed[33] == ((7 << 4) | 7));
    CHECK(absmax[0] == 1.0f && absmax[1] == 1e-38f);
}

/* ---- int8 rows ------------------------------------------------------------------------ */

static void int8_case(const mmt_safetensors *st, const char *name) {
    const mmt_st_tensor *t = mmt_safetensors_find(st, key(name, "w"));
    CHECK(t && t->ndim == 2);
    if (!t || t->ndim != 2) return;
    int64_t rows = t->shape[0], cols = t->shape[1], n = rows * cols;
    float *w = tensor_copy(st, key(name, "w"), NULL), *want_scb = tensor_copy(st, key(name, "scb"), NULL);
    int8_t *want_q = tensor_copy(st, key(name, "q"), NULL);
    float *want_deq = tensor_copy(st, key(name, "deq"), NULL);
    int8_t *q = malloc((size_t)n);
    float *scb = malloc((size_t)rows * sizeof(float)), *deq = malloc((size_t)n * sizeof(float));
    if (w && want_scb && want_q && want_deq) {
        mmt_int8_rows_quantize(q, scb, w, rows, cols);
        CHECK_MSG(bytes_differ(q, want_q, n) == 0, "%s: q", name);
        CHECK_MSG(float_bits_differ(scb, want_scb, rows) == 0, "%s: scb", name);
        mmt_int8_rows_dequantize(deq, want_q, want_scb, rows, cols);
        CHECK_MSG(float_bits_differ(deq, want_deq, n) == 0, "%s: deq", name);
    } else {
        CHECK_MSG(0, "%s: incomplete case", name);
    }
    free(w);
    free(want_scb);
    free(want_q);
    free(want_deq);
    free(q);
    free(scb);
    free(deq);
}

static void test_int8_rows(void) { CHECK(for_each_case("quant/int8_rows.safetensors", "scb", int8_case) >= 5); }

/* ---- bnb_io: real snapshots ---------------------------------------------------------- */

static char tmp[256];

/* The 2-D float weights of the original model: name, rows, cols, data (in the arena). */
typedef struct linear_list {
    int64_t n;
    const char *names[128];
    int64_t rows[128], cols[128];
    const float *data[128];
} linear_list;

static mmt_weights *original_linears(mmt_arena *arena, linear_list *list) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/mmtune-clip-tiny", MMT_SOURCE_DIR);
    mmt_weights *w = NULL;
    CHECK_OK(mmt_weights_open(dir, &w));
    list->n = 0;
    if (!w) return NULL;
    for (int64_t i = 0; i < w->files[0]->n_tensors && list->n < 128; i++) {
        const mmt_st_tensor *t = &w->files[0]->tensors[i];
        size_t len = strlen(t->name);
        if (t->ndim != 2 || len < 7 || strcmp(t->name + len - 7, ".weight") != 0) continue;
        if (strstr(t->name, "embedding")) continue; /* embeddings are not linears */
        list->names[list->n] = t->name;
        list->rows[list->n] = t->shape[0];
        list->cols[list->n] = t->shape[1];
        CHECK_OK(mmt_weights_f32(w, arena, t->name, 2, t->shape, &list->data[list->n]));
        list->n++;
    }
    return w;
}

/* Every tensor the writer makes must be in the snapshot with the same dtype, shape, bytes. */
static void check_same_as_snapshot(const mmt_weights *snap, const mmt_bnb_tensors *t) {
    for (int64_t k = 0; k < t->n; k++) {
        const mmt_st_write_tensor *want = &t->tensors[k];
        const mmt_st_tensor *got = mmt_weights_find(snap, want->name, NULL);
        CHECK_MSG(got != NULL, "%s missing from the snapshot", want->name);
        if (!got) continue;
        int64_t numel = 1;
        int same = got->dtype == want->dtype && got->ndim == want->ndim;
        for (int d = 0; same && d < want->ndim; d++) {
            same = got->shape[d] == want->shape[d];
            numel *= want->shape[d];
        }
        size_t bytes = (size_t)numel * (size_t)mmt_dtype_bits(want->dtype) / 8;
        CHECK_MSG(same && got->end - got->begin == bytes && memcmp(got->data, want->data, bytes) == 0,
                  "%s differs from what bitsandbytes saved", want->name);
    }
}

/* Loads every linear of the 4-bit / 8-bit transformers snapshot through the reader, checks
 * the kind (text_projection stays float in both: transformers keeps it unquantized), that the
 * writer reproduces the snapshot's tensors byte for byte from the original float32 weights,
 * and that the reader's dequantized weight equals quantize-then-dequantize of the original. */
static void check_snapshot(const char *folder, mmt_bnb_kind kind) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 20);
    linear_list list;
    mmt_weights *orig = original_linears(&arena, &list), *snap = NULL;
    CHECK_MSG(list.n == 50, "%lld linears", (long long)list.n);
    CHECK_OK(mmt_weights_open(fixture(folder), &snap));
    int quantized = 0;
    for (int64_t i = 0; snap && i < list.n; i++) {
        mmt_bnb_linear lin;
        CHECK_OK(mmt_bnb_linear_load(snap, &arena, list.names[i], list.rows[i], list.cols[i], &lin));
        int is_text_projection = strcmp(list.names[i], "text_projection.weight") == 0;
        CHECK_MSG(lin.kind == (is_text_projection ? MMT_BNB_PLAIN : kind), "%s", list.names[i]);
        if (lin.kind == MMT_BNB_PLAIN) continue;
        quantized++;
        mmt_bnb_tensors t;
        if (kind == MMT_BNB_NF4)
            CHECK_OK(mmt_bnb_nf4_tensors(&arena, list.names[i], list.data[i], list.rows[i], list.cols[i], 64, 1, &t));
        else
            CHECK_OK(mmt_bnb_int8_tensors(&arena, list.names[i], list.data[i], list.rows[i], list.cols[i], &t));
        check_same_as_snapshot(snap, &t);
        int64_t n = list.rows[i] * list.cols[i];
        float *got = malloc((size_t)n * sizeof(float)), *want = malloc((size_t)n * sizeof(float));
        CHECK_OK(mmt_bnb_linear_dequantize(&lin, got));
        if (kind == MMT_BNB_NF4) {
            int64_t blocks = mmt_nf4_blocks(n, 64), nested = mmt_nf4_blocks(blocks, 256);
            uint8_t *packed = malloc((size_t)mmt_nf4_packed_bytes(n)), *q = malloc((size_t)blocks);
            float *absmax = malloc((size_t)blocks * 4), *work = malloc((size_t)blocks * 4);
            float *nested_absmax = malloc((size_t)nested * 4), offset, code[256];
            mmt_nf4_quantize(packed, absmax, list.data[i], n, 64);
            mmt_nf4_compress_absmax(q, nested_absmax, &offset, absmax, work, blocks, 256);
            mmt_dynamic_map(1, code);
            mmt_nf4_expand_absmax(absmax, q, nested_absmax, offset, blocks, 256, code);
            mmt_nf4_dequantize(want, packed, absmax, n, 64, mmt_nf4_code);
            CHECK(lin.double_quant && lin.blocksize == 64 && lin.blocks == blocks);
            free(packed);
            free(q);
            free(absmax);
            free(work);
            free(nested_absmax);
        } else {
            int8_t *q = malloc((size_t)n);
            float *scb = malloc((size_t)list.rows[i] * 4), *half = malloc((size_t)n * 4);
            for (int64_t k = 0; k < n; k++) half[k] = mmt_f16_to_f32(mmt_f32_to_f16(list.data[i][k]));
            mmt_int8_rows_quantize(q, scb, half, list.rows[i], list.cols[i]);
            free(half);
            mmt_int8_rows_dequantize(want, q, scb, list.rows[i], list.cols[i]);
            free(q);
            free(scb);
        }
        CHECK_MSG(float_bits_differ(got, want, n) == 0, "%s: dequantized weight", list.names[i]);
        free(got);
        free(want);
    }
    CHECK(quantized == 49);
    /* The config helper gives the quantization_config transformers wrote (same JSON values). */
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", fixture(folder));
    mmt_json_doc *config = NULL, *mine = NULL;
    mmt_strbuf text = {0}, a = {0}, b = {0};
    mmt_bnb_quantization_config(&text, kind, 1);
    CHECK_OK(mmt_json_parse_file(path, &config));
    CHECK_OK(mmt_json_parse(text.data, text.len, "mmt_bnb_quantization_config", &mine));
    if (config && mine) {
        const mmt_json *want = mmt_json_get(mmt_json_root(config), "quantization_config");
        CHECK(want != NULL);
        if (want) {
            mmt_json_write(&a, want);
            mmt_json_write(&b, mmt_json_root(mine));
            CHECK_MSG(a.data && b.data && strcmp(a.data, b.data) == 0, "%s\nvs %s", a.data, b.data);
        }
    }
    mmt_strbuf_free(&text);
    mmt_strbuf_free(&a);
    mmt_strbuf_free(&b);
    mmt_json_free(config);
    mmt_json_free(mine);
    mmt_weights_free(snap);
    mmt_weights_free(orig);
    mmt_arena_free(&arena);
}

static void test_bnb_snapshot_nf4(void) { check_snapshot("quant/clip-tiny-nf4", MMT_BNB_NF4); }
static void test_bnb_snapshot_int8(void) { check_snapshot("quant/clip-tiny-int8", MMT_BNB_INT8); }

/* ---- bnb_io: written files, and corrupt ones ---------------------------------------- */

/* A test weight of (12, 40) = 480 elements: 7 blocks of 64 with a ragged last one of 32. */
enum { ROWS = 12, COLS = 40 };
static float weight[ROWS * COLS];
static const char *wname = "layer.fc.weight";

/* Writes tensors (plus an unrelated float tensor) as tmp/<dir>/model.safetensors. */
static void write_case(const char *dir, const mmt_st_write_tensor *t, int64_t n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/model.safetensors", tmp, dir);
    mmt_st_write_tensor all[16];
    memcpy(all, t, (size_t)n * sizeof *t);
    int64_t bias_shape[1] = {ROWS};
    all[n] = (mmt_st_write_tensor){"layer.fc.bias", MMT_DTYPE_F32, 1, bias_shape, weight};
    CHECK_OK(mmt_safetensors_write(path, all, n + 1, NULL, 0));
}

/* Opens tmp/<dir> and loads the test linear with the declared shape. */
static mmt_status load_case(const char *dir, int64_t rows, int64_t cols, mmt_bnb_linear *lin,
                            mmt_arena *arena) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, dir);
    mmt_weights *w = NULL;
    mmt_status s = mmt_weights_open(path, &w);
    if (s == MMT_OK) s = mmt_bnb_linear_load(w, arena, wname, rows, cols, lin);
    if (s == MMT_OK && lin->kind != MMT_BNB_PLAIN) {
        float *out = malloc(sizeof weight);
        s = mmt_bnb_linear_dequantize(lin, out); /* touches every byte handed out (ASan) */
        free(out);
    }
    mmt_weights_free(w);
    return s;
}

static void test_bnb_round_trip(void) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 16);
    for (int dq = 0; dq <= 1; dq++) {
        mmt_bnb_tensors t;
        CHECK_OK(mmt_bnb_nf4_tensors(&arena, wname, weight, ROWS, COLS, 64, dq, &t));
        CHECK(t.n == (dq ? 6 : 4));
        write_case(dq ? "nf4_dq" : "nf4", t.tensors, t.n);
        mmt_bnb_linear lin;
        CHECK_OK(load_case(dq ? "nf4_dq" : "nf4", ROWS, COLS, &lin, &arena));
        CHECK(lin.kind == MMT_BNB_NF4 && lin.double_quant == dq && lin.blocks == 8);
    }
    mmt_bnb_tensors t;
    CHECK_OK(mmt_bnb_int8_tensors(&arena, wname, weight, ROWS, COLS, &t));
    CHECK(t.n == 3 && strcmp(t.tensors[1].name, "layer.fc.SCB") == 0 && t.tensors[2].ndim == 0);
    write_case("int8", t.tensors, t.n);
    mmt_bnb_linear lin;
    CHECK_OK(load_case("int8", ROWS, COLS, &lin, &arena));
    CHECK(lin.kind == MMT_BNB_INT8);
    /* A plain float weight is reported as such. */
    int64_t shape[2] = {ROWS, COLS};
    mmt_st_write_tensor plain = {wname, MMT_DTYPE_F32, 2, shape, weight};
    write_case("plain", &plain, 1);
    CHECK_OK(load_case("plain", ROWS, COLS, &lin, &arena));
    CHECK(lin.kind == MMT_BNB_PLAIN);
    mmt_arena_free(&arena);
}

/* One corruption of a valid tensor set: the expected status and a message fragment. The
 * message must also be one line naming the tensor. */
static void expect_fail(const char *dir, const mmt_st_write_tensor *t, int64_t n, int64_t rows,
                        int64_t cols, mmt_status status, const char *needle) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 16);
    write_case(dir, t, n);
    mmt_bnb_linear lin;
    CHECK_FAILS(load_case(dir, rows, cols, &lin, &arena), status, needle);
    CHECK_MSG(strchr(mmt_last_error(), '\n') == NULL && strstr(mmt_last_error(), "layer.fc"),
              "%s: \"%s\"", dir, mmt_last_error());
    mmt_arena_free(&arena);
}

static int64_t find_tensor(const mmt_bnb_tensors *t, const char *suffix) {
    for (int64_t k = 0; k < t->n; k++) {
        size_t a = strlen(t->tensors[k].name), b = strlen(suffix);
        if (a >= b && strcmp(t->tensors[k].name + a - b, suffix) == 0) return k;
    }
    return -1;
}

static void test_bnb_nf4_corrupt(void) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 16);
    mmt_bnb_tensors good, t;
    CHECK_OK(mmt_bnb_nf4_tensors(&arena, wname, weight, ROWS, COLS, 64, 1, &good));
    int64_t iw = find_tensor(&good, ".weight"), ia = find_tensor(&good, ".absmax");
    int64_t in = find_tensor(&good, ".nested_absmax"), iq = find_tensor(&good, "bitsandbytes__nf4");
    int64_t im = find_tensor(&good, ".nested_quant_map"), ic = find_tensor(&good, ".quant_map");
    CHECK(iw >= 0 && ia >= 0 && in >= 0 && iq >= 0 && im >= 0 && ic >= 0);
    if (iw < 0 || ia < 0 || in < 0 || iq < 0 || im < 0 || ic < 0) return;
    int64_t short_packed[2] = {ROWS * COLS / 2 - 1, 1}, seven[1] = {7}, nested2[1] = {2};

    /* the declared shape disagrees with the file */
    expect_fail("nf4_shape", good.tensors, good.n, ROWS, COLS + 2, MMT_STATUS_BAD_FORMAT, "quant_state shape");
    t = good;
    t.tensors[iw].shape = short_packed; /* truncated packed bytes */
    expect_fail("nf4_trunc", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "has shape [239, 1], expected [240, 1]");
    t = good;
    t.tensors[ia].shape = seven; /* absmax count != ceil(480 / 64) */
    expect_fail("nf4_absmax", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "absmax\" has shape [7], expected [8]");
    t = good;
    t.tensors[in].shape = nested2;
    expect_fail("nf4_nested", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "nested_absmax\" has shape [2]");
    t = good;
    t.tensors[ia].dtype = MMT_DTYPE_I8;
    expect_fail("nf4_dtype", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "dtype I8, expected U8");
    t = good;
    t.tensors[ic].dtype = MMT_DTYPE_I32;
    expect_fail("nf4_map_dtype", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "dtype I32, expected F32");
    t = good;
    t.tensors[iw].dtype = MMT_DTYPE_I8;
    expect_fail("nf4_storage", t.tensors, t.n, ROWS, COLS, MMT_STATUS_UNSUPPORTED, "4-bit storage I8");
    t = good;
    t.tensors[im] = t.tensors[--t.n];
    expect_fail("nf4_no_map", t.tensors, t.n, ROWS, COLS, MMT_STATUS_NOT_FOUND, "nested_quant_map");
    t = good;
    t.tensors[in] = t.tensors[--t.n];
    expect_fail("nf4_no_nested", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "nested keys");
    t = good;
    t.tensors[iq].name = "layer.fc.weight.quant_state.bitsandbytes__fp4";
    expect_fail("nf4_fp4", t.tensors, t.n, ROWS, COLS, MMT_STATUS_UNSUPPORTED, "quant type \"fp4\" is not supported");
    mmt_st_write_tensor two_states[MMT_BNB_MAX_TENSORS + 1];
    memcpy(two_states, good.tensors, sizeof good.tensors);
    two_states[good.n] = good.tensors[iq];
    two_states[good.n].name = "layer.fc.weight.quant_state.bitsandbytes__nf4x";
    expect_fail("nf4_two_states", two_states, good.n + 1, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "exactly one");
    t = good;
    t.tensors[iq] = t.tensors[--t.n];
    expect_fail("nf4_no_state", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "no quant_state");

    /* bad quant_state JSON texts */
    static const struct { const char *json, *needle; mmt_status status; } bad[] = {
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64", "", MMT_STATUS_BAD_FORMAT},
        {"[1, 2]", "not a JSON object", MMT_STATUS_BAD_FORMAT},
        {"{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [12, 40]}",
         "does not match", MMT_STATUS_BAD_FORMAT},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 0, \"dtype\": \"float32\", \"shape\": [12, 40]}",
         "blocksize", MMT_STATUS_BAD_FORMAT},
        {"{\"quant_type\": \"nf4\", \"blocksize\": \"64\", \"dtype\": \"float32\", \"shape\": [12, 40]}",
         "blocksize", MMT_STATUS_BAD_FORMAT},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [40, 12]}",
         "quant_state shape", MMT_STATUS_BAD_FORMAT},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [12, 40], \"x\": 1}",
         "unknown quant_state key \"x\"", MMT_STATUS_BAD_FORMAT},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [12, 40], "
         "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": \"x\"}",
         "nested_offset", MMT_STATUS_BAD_FORMAT},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [12, 40], "
         "\"nested_blocksize\": -1, \"nested_dtype\": \"float32\", \"nested_offset\": 0.5}",
         "nested_blocksize", MMT_STATUS_BAD_FORMAT},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 32, \"dtype\": \"float32\", \"shape\": [12, 40], "
         "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.5}",
         "absmax\" has shape [8], expected [15]", MMT_STATUS_BAD_FORMAT},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        t = good;
        int64_t *len = mmt_arena_alloc(&arena, sizeof(int64_t), 8);
        *len = (int64_t)strlen(bad[k].json);
        t.tensors[iq].data = bad[k].json;
        t.tensors[iq].shape = len;
        char dir[32];
        snprintf(dir, sizeof dir, "nf4_json%zu", k);
        expect_fail(dir, t.tensors, t.n, ROWS, COLS, bad[k].status, bad[k].needle);
    }
    mmt_arena_free(&arena);
}

/* Random byte flips in the quant_state JSON and in the nested absmax bytes: whatever the
 * status, no crash and no read out of range (run under ASan). Flips of the absmax bytes are
 * valid data (any byte is a code index), so those loads must succeed. */
static void test_bnb_nf4_fuzz(void) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 16);
    mmt_bnb_tensors good, t;
    CHECK_OK(mmt_bnb_nf4_tensors(&arena, wname, weight, ROWS, COLS, 64, 1, &good));
    int64_t iq = find_tensor(&good, "bitsandbytes__nf4"), ia = find_tensor(&good, ".absmax");
    CHECK(iq >= 0 && ia >= 0);
    if (iq < 0 || ia < 0) return;
    size_t len = (size_t)good.tensors[iq].shape[0];
    char *json = malloc(len);
    uint8_t absmax[8];
    uint32_t seed = 12345;
    int ok = 0, failed = 0;
    for (int round = 0; round < 200; round++) {
        memcpy(json, good.tensors[iq].data, len);
        memcpy(absmax, good.tensors[ia].data, 8);
        for (int f = 0; f < 1 + round % 4; f++) {
            seed = seed * 1103515245u + 12345u;
            json[(seed >> 8) % len] = (char)(seed >> 24);
            absmax[(seed >> 4) % 8] ^= (uint8_t)(seed >> 16);
        }
        t = good;
        t.tensors[iq].data = json;
        t.tensors[ia].data = absmax;
        write_case("nf4_fuzz", t.tensors, t.n);
        mmt_bnb_linear lin;
        if (load_case("nf4_fuzz", ROWS, COLS, &lin, &arena) == MMT_OK) ok++;
        else failed++;
        mmt_arena_reset(&arena);
        CHECK_OK(mmt_bnb_nf4_tensors(&arena, wname, weight, ROWS, COLS, 64, 1, &good));
    }
    CHECK(ok + failed == 200 && failed > 100);
    free(json);
    mmt_arena_free(&arena);
}

static void test_bnb_int8_corrupt(void) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 16);
    mmt_bnb_tensors good, t;
    CHECK_OK(mmt_bnb_int8_tensors(&arena, wname, weight, ROWS, COLS, &good));
    int64_t short_rows[1] = {ROWS - 1};
    static const uint8_t col_format = 1;
    expect_fail("int8_shape", good.tensors, good.n, ROWS, COLS + 1, MMT_STATUS_BAD_FORMAT, "has shape [12, 40], expected [12, 41]");
    t = good;
    t.tensors[1].shape = short_rows;
    expect_fail("int8_scb", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "SCB\" has shape [11]");
    t = good;
    t.tensors[1].dtype = MMT_DTYPE_I32;
    expect_fail("int8_scb_dtype", t.tensors, t.n, ROWS, COLS, MMT_STATUS_BAD_FORMAT, "dtype I32");
    t = good;
    t.tensors[1] = t.tensors[--t.n];
    expect_fail("int8_no_scb", t.tensors, t.n, ROWS, COLS, MMT_STATUS_NOT_FOUND, "\"layer.fc.SCB\" is missing");
    t = good;
    t.tensors[2].data = &col_format;
    expect_fail("int8_format", t.tensors, t.n, ROWS, COLS, MMT_STATUS_UNSUPPORTED, "only 0 (row)");
    mmt_arena_free(&arena);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_test_quant_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    for (int i = 0; i < ROWS * COLS; i++) weight[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 7));
    RUN(test_dynamic_map);
    RUN(test_blockwise8);
    RUN(test_blockwise8_zero_is_not_nearest);
    RUN(test_nf4);
    RUN(test_torch_mean);
    RUN(test_nf4_padding_and_zero_tail);
    RUN(test_int8_rows);
    RUN(test_bnb_snapshot_nf4);
    RUN(test_bnb_snapshot_int8);
    RUN(test_bnb_round_trip);
    RUN(test_bnb_nf4_corrupt);
    RUN(test_bnb_nf4_fuzz);
    RUN(test_bnb_int8_corrupt);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
