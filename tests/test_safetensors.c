/* test_safetensors.c — writer/reader round trip, and every malformed-file case the reader
 * must reject with a one-line message naming the file (rules: formats.md §2). Files written
 * by the Python safetensors library are read in test_clip (the HF fixtures). */
#include <unistd.h>

#include "check.h"
#include "core/safetensors.h"

static char tmp_path[256];

static void write_raw(const char *header, const void *data, size_t data_len, long long forced_n) {
    FILE *f = fopen(tmp_path, "wb");
    unsigned long long n = forced_n >= 0 ? (unsigned long long)forced_n : strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
}

static mmt_status open_tmp(void) {
    mmt_safetensors *st = NULL;
    mmt_status s = mmt_safetensors_open(tmp_path, &st);
    mmt_safetensors_close(st);
    return s;
}

static void test_round_trip(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[2] = {mmt_f32_to_bf16(1.5f), mmt_f32_to_bf16(-2.0f)};
    int64_t ids[3] = {7, 8, 9};
    float scalar = 2.6592f;
    int64_t sa[2] = {2, 3}, sb[1] = {2}, sc[2] = {1, 3};
    mmt_st_write_tensor t[] = {
        {"w.a", MMT_DTYPE_F32, 2, sa, a},
        {"w.b", MMT_DTYPE_BF16, 1, sb, b},
        {"ids", MMT_DTYPE_I64, 2, sc, ids},
        {"logit_scale", MMT_DTYPE_F32, 0, NULL, &scalar},
        {"empty", MMT_DTYPE_F32, 1, (int64_t[]){0}, NULL},
    };
    const char *meta[] = {"note", "hi \"there\""};
    CHECK_OK(mmt_safetensors_write(tmp_path, t, 5, meta, 1));
    mmt_safetensors *st = NULL;
    CHECK_OK(mmt_safetensors_open(tmp_path, &st));
    if (!st) return;
    CHECK(st->n_tensors == 5);
    CHECK(strcmp(mmt_safetensors_metadata(st, "format"), "pt") == 0);
    CHECK(strcmp(mmt_safetensors_metadata(st, "note"), "hi \"there\"") == 0);
    const mmt_st_tensor *x = mmt_safetensors_find(st, "w.a");
    CHECK(x && x->dtype == MMT_DTYPE_F32 && x->ndim == 2 && x->shape[1] == 3);
    float out[6];
    if (x) {
        CHECK_OK(mmt_st_tensor_to_f32(x, out));
        CHECK(memcmp(out, a, sizeof a) == 0);
        /* Header padding keeps the data start 8-byte aligned, and 8-byte dtypes come first. */
        CHECK(((uintptr_t)x->data & 3) == 0);
    }
    const mmt_st_tensor *y = mmt_safetensors_find(st, "w.b");
    if (y) {
        CHECK_OK(mmt_st_tensor_to_f32(y, out));
        CHECK(out[0] == 1.5f && out[1] == -2.0f);
    }
    const mmt_st_tensor *s = mmt_safetensors_find(st, "logit_scale");
    CHECK(s && s->ndim == 0 && s->numel == 1);
    const mmt_st_tensor *e = mmt_safetensors_find(st, "empty");
    CHECK(e && e->numel == 0 && e->begin == e->end);
    CHECK(mmt_safetensors_find(st, "nope") == NULL);
    const mmt_st_tensor *i = mmt_safetensors_find(st, "ids");
    CHECK(i && i->begin == 0); /* widest dtype first, then name: I64 "ids" leads */
    CHECK_FAILS(mmt_st_tensor_to_f32(i, out), MMT_STATUS_UNSUPPORTED, "not a float type");
    mmt_safetensors_close(st);
}

static void test_rejects_bad_files(void) {
    float d[2] = {1, 2};
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    write_raw(ok, d, 8, -1);
    CHECK_OK(open_tmp());
    /* Truncated data. */
    write_raw(ok, d, 4, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "truncated file");
    /* Header length far beyond the limit / beyond the file. */
    write_raw(ok, d, 8, 200000000);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "exceeds the 100000000-byte limit");
    write_raw(ok, d, 8, 5000);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "runs past the end");
    /* Shape inconsistent with offsets. */
    write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "needs 12 bytes but data_offsets span 8");
    /* Overlap and gap. */
    write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "overlap");
    write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "gap");
    /* Duplicate name, unknown dtype, bad shape, bad metadata, not JSON, tiny file. */
    write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "duplicate tensor name \"a\"");
    write_raw("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "unknown dtype \"Q4\"");
    write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "not a non-negative integer");
    write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "overflows");
    write_raw("{\"__metadata__\":{\"format\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "__metadata__ value for \"format\" is not a string");
    /* a repeated key (found by fuzz_safetensors: the second __metadata__ leaked the first) */
    write_raw("{\"__metadata__\":{\"a\":\"1\"},\"__metadata__\":{\"b\":\"2\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[0,8]}}", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "__metadata__ appears twice");
    write_raw("{\"a\":", d, 8, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "invalid JSON");
    write_raw("[1,2]   ", NULL, 0, -1);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "does not start with '{'");
    FILE *f = fopen(tmp_path, "wb");
    fputs("abc", f);
    fclose(f);
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, "too short");
    CHECK_FAILS(open_tmp(), MMT_STATUS_BAD_FORMAT, tmp_path); /* message names the file */
    mmt_safetensors *st;
    CHECK_FAILS(mmt_safetensors_open("/nonexistent.safetensors", &st), MMT_STATUS_NOT_FOUND,
                "/nonexistent.safetensors");
}

static void test_half_conversions(void) {
    CHECK(mmt_f16_to_f32(0x3c00) == 1.0f);
    CHECK(mmt_f16_to_f32(0xc000) == -2.0f);
    CHECK(mmt_f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(isinf(mmt_f16_to_f32(0x7c00)));
    CHECK(mmt_f32_to_f16(1.0f) == 0x3c00);
    CHECK(mmt_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(mmt_f32_to_f16(1e6f) == 0x7c00);
    for (uint32_t h = 0; h < 0x7c00; h += 7) /* every finite positive half round-trips */
        CHECK(mmt_f32_to_f16(mmt_f16_to_f32((uint16_t)h)) == h);
    CHECK(mmt_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(mmt_bf16_to_f32(0x3f80) == 1.0f);
}

int main(void) {
    snprintf(tmp_path, sizeof tmp_path, "/tmp/mmt_test_st_%d.safetensors", (int)getpid());
    RUN(test_round_trip);
    RUN(test_rejects_bad_files);
    RUN(test_half_conversions);
    unlink(tmp_path);
    return check_summary();
}
