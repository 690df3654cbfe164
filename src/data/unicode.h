/*
 * unicode.h — the Unicode data and algorithms the CLIP tokenizer needs: UTF-8 decoding,
 * character classes, lowercasing and NFC, each in two flavours.
 *
 * The CLIP tokenizer exists in two reference implementations that were built against
 * different Unicode data, and a tokenizer that must give the same ids as each has to carry
 * both (tools/gen_unicode_tables.py says which library each table was probed from):
 *   - "fast": Hugging Face tokenizers (Rust). Regex classes from Oniguruma (Unicode 16),
 *     NFC from the unicode-normalization-alignments crate (Unicode 9.0), lowercase from
 *     Rust's char::to_lowercase (Unicode 17), applied char by char.
 *   - "slow": the Python CLIPTokenizer of transformers 4.x. BasicTokenizer cleaning, NFC and
 *     str.lower from Python 3.11's unicodedata (14.0); regex classes from the `regex`
 *     module compiled with IGNORECASE.
 *
 * Usage: mmt_unicode_props(cp) & MMT_UNI_FAST_LETTER, mmt_unicode_nfc(...), etc.
 * The tables themselves live in unicode_tables.c, which is generated.
 */
#ifndef MMT_DATA_UNICODE_H
#define MMT_DATA_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Property bits of mmt_unicode_props(); keep in sync with tools/gen_unicode_tables.py. */
enum {
    MMT_UNI_FAST_LETTER = 1 << 0,     /* \p{L} in Oniguruma (HF tokenizers) */
    MMT_UNI_FAST_NUMBER = 1 << 1,     /* \p{N} in Oniguruma */
    MMT_UNI_SPACE = 1 << 2,           /* \s: White_Space, identical in Oniguruma and regex */
    MMT_UNI_SLOW_LETTER = 1 << 3,     /* [\p{L}] in Python regex with IGNORECASE */
    MMT_UNI_SLOW_NUMBER = 1 << 4,     /* [\p{N}] in Python regex with IGNORECASE */
    MMT_UNI_SLOW_PUNCT = 1 << 5,      /* [^\s\p{L}\p{N}] in Python regex with IGNORECASE */
    MMT_UNI_SLOW_REMOVE = 1 << 6,     /* dropped by BasicTokenizer._clean_text (NUL, U+FFFD, C*) */
    MMT_UNI_SLOW_WHITESPACE = 1 << 7, /* BasicTokenizer _is_whitespace: \t \n \r space or Zs */
    MMT_UNI_PY_SPACE = 1 << 8,        /* Python str.isspace (what str.split splits on) */
    MMT_UNI_CASED = 1 << 9,           /* cased and not case-ignorable (Python Final_Sigma) */
    MMT_UNI_CASE_IGNORABLE = 1 << 10  /* case-ignorable (Python Final_Sigma) */
};

/* Which reference a case mapping or normalisation must reproduce. */
typedef enum mmt_unicode_flavor {
    MMT_UNICODE_FAST = 0, /* HF tokenizers (Rust) */
    MMT_UNICODE_SLOW = 1  /* Python 3.11 unicodedata */
} mmt_unicode_flavor;

/* ---- generated tables (unicode_tables.c) ---- */
typedef struct mmt_unicode_decomp_entry {
    uint32_t cp;     /* code point; bit 31 set: the fast reference does not decompose it */
    uint32_t first;  /* canonical decomposition, one level */
    uint32_t second; /* 0 for a singleton decomposition */
} mmt_unicode_decomp_entry;

typedef struct mmt_unicode_compose_entry {
    uint32_t first, second;
    uint32_t composite; /* bit 31 set: the fast reference does not compose this pair */
} mmt_unicode_compose_entry;

/* cp -> cp + delta for cp = start, start + stride, ... (count of them). */
typedef struct mmt_unicode_lower_run {
    uint32_t start;
    uint16_t count;
    uint8_t stride;
    uint8_t which; /* bit 0: Python str.lower, bit 1: Rust to_lowercase */
    int32_t delta;
} mmt_unicode_lower_run;

typedef struct mmt_unicode_lower_multi_entry {
    uint32_t cp;
    uint8_t which, n;
    uint32_t out[3];
} mmt_unicode_lower_multi_entry;

extern const uint32_t mmt_unicode_props_table[]; /* (first cp << 11) | flags, sorted */
extern const int64_t mmt_unicode_props_count;
extern const uint32_t mmt_unicode_ccc_table[]; /* (first cp << 9) | (not_in_fast << 8) | ccc */
extern const int64_t mmt_unicode_ccc_count;
extern const mmt_unicode_decomp_entry mmt_unicode_decomp_table[];
extern const int64_t mmt_unicode_decomp_count;
extern const mmt_unicode_compose_entry mmt_unicode_compose_table[];
extern const int64_t mmt_unicode_compose_count;
extern const mmt_unicode_lower_run mmt_unicode_lower_table[];
extern const int64_t mmt_unicode_lower_count;
extern const mmt_unicode_lower_multi_entry mmt_unicode_lower_multi_table[];
extern const int64_t mmt_unicode_lower_multi_count;

/* ---- lookups ---- */
uint32_t mmt_unicode_props(uint32_t cp);
/* Canonical combining class as the given reference sees it. */
int mmt_unicode_ccc_of(uint32_t cp, mmt_unicode_flavor flavor);

/* ---- UTF-8 ---- */
/* Decodes len bytes of strict UTF-8 (no overlongs, surrogates or values above U+10FFFF)
 * into out (room for len code points). Returns the number of code points, or -1 with
 * *bad_offset set to the offset of the first byte that does not start a valid sequence. */
int64_t mmt_utf8_decode(const char *text, size_t len, uint32_t *out, size_t *bad_offset);
/* Writes cp as UTF-8 into out (room for 4); returns the byte count. */
int mmt_utf8_encode(uint32_t cp, char *out);

/* ---- transformations on code point arrays ----
 * Each writes into out, which must have room for the bound stated, and returns the number
 * of code points written. */

/* Lowercase of one code point: writes 1..3 code points to out, returns the count.
 * Context-free: Python's final-sigma rule is applied by mmt_unicode_lower_python_word. */
int mmt_unicode_lower_char(uint32_t cp, mmt_unicode_flavor flavor, uint32_t out[3]);
/* Python str.lower() of a whole string, Final_Sigma rule included. Room: 3 * n. */
int64_t mmt_unicode_lower_python(const uint32_t *in, int64_t n, uint32_t *out);

/* Room mmt_unicode_nfc needs in `out` for n input code points (it also sorts in there). */
int64_t mmt_unicode_nfc_bound(int64_t n);
/* Canonical composition (NFC) as the given reference computes it. */
int64_t mmt_unicode_nfc(const uint32_t *in, int64_t n, mmt_unicode_flavor flavor, uint32_t *out);
/* NFD, the first half of it: full canonical decomposition and canonical ordering of
 * in[0, n) into out (room: mmt_unicode_nfc_bound(n), the tail used for sorting); returns the
 * length. The fast flavour leaves alone what the Rust unicode-normalization crate does not
 * decompose (the tokenizers library's NFD). */
int64_t mmt_unicode_nfd(const uint32_t *in, int64_t n, mmt_unicode_flavor flavor, uint32_t *out);

#endif
