/*
 * unicode.c — table lookups, UTF-8, lowercasing and NFC for the CLIP tokenizer (unicode.h).
 *
 * NFC follows UAX #15: full canonical decomposition (Hangul algorithmically), canonical
 * ordering of each run of non-starters by combining class, then canonical composition of
 * unblocked pairs. The fast flavour reads the same tables but skips entries flagged as
 * unknown to the Rust crate HF tokenizers uses, which is how its Unicode 9.0 NFC differs.
 */
#include "data/unicode.h"

/* Hangul syllable arithmetic (Unicode 3.12). */
enum {
    HANGUL_S_BASE = 0xAC00,
    HANGUL_L_BASE = 0x1100,
    HANGUL_V_BASE = 0x1161,
    HANGUL_T_BASE = 0x11A7,
    HANGUL_L_COUNT = 19,
    HANGUL_V_COUNT = 21,
    HANGUL_T_COUNT = 28,
    HANGUL_N_COUNT = HANGUL_V_COUNT * HANGUL_T_COUNT,
    HANGUL_S_COUNT = HANGUL_L_COUNT * HANGUL_N_COUNT
};

/* Canonical decompositions are at most 4 code points long (e.g. U+1F82). */
#define MAX_DECOMPOSITION 4

/* Index of the last entry whose key (entry >> shift) is <= cp; entries sorted, [0] == 0. */
static int64_t range_find(const uint32_t *table, int64_t count, int shift, uint32_t cp) {
    int64_t lo = 0, hi = count - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if ((table[mid] >> shift) <= cp) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

uint32_t mmt_unicode_props(uint32_t cp) {
    if (cp > 0x10FFFF) return 0;
    return mmt_unicode_props_table[range_find(mmt_unicode_props_table, mmt_unicode_props_count,
                                              11, cp)] &
           0x7FF;
}

int mmt_unicode_ccc_of(uint32_t cp, mmt_unicode_flavor flavor) {
    if (cp < 0x300 || cp > 0x10FFFF) return 0;
    uint32_t e =
        mmt_unicode_ccc_table[range_find(mmt_unicode_ccc_table, mmt_unicode_ccc_count, 9, cp)];
    if (flavor == MMT_UNICODE_FAST && (e & 0x100)) return 0;
    return (int)(e & 0xFF);
}

/* ------------------------------------------------------------------------------------ */
/* UTF-8                                                                                */

int64_t mmt_utf8_decode(const char *text, size_t len, uint32_t *out, size_t *bad_offset) {
    const unsigned char *s = (const unsigned char *)text;
    int64_t n = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            out[n++] = c;
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) need = 2, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) need = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) need = 4, cp = c & 0x07, min = 0x10000;
        else goto bad;
        if (len - i < need) goto bad;
        for (size_t k = 1; k < need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        out[n++] = cp;
        i += need;
    }
    return n;
bad:
    if (bad_offset) *bad_offset = i;
    return -1;
}

int mmt_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------------------------ */
/* Lowercase                                                                            */

int mmt_unicode_lower_char(uint32_t cp, mmt_unicode_flavor flavor, uint32_t out[3]) {
    unsigned which = flavor == MMT_UNICODE_SLOW ? 1u : 2u;
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    for (int64_t i = 0; i < mmt_unicode_lower_multi_count; i++) {
        const mmt_unicode_lower_multi_entry *m = &mmt_unicode_lower_multi_table[i];
        if (m->cp == cp && (m->which & which)) {
            for (int k = 0; k < m->n; k++) out[k] = m->out[k];
            return m->n;
        }
    }
    /* Runs are sorted by start with disjoint spans, except that a code point mapped
     * differently by Python and Rust may end one run and start the next. */
    int64_t lo = 0, hi = mmt_unicode_lower_count - 1;
    if (hi < 0 || cp < mmt_unicode_lower_table[0].start) goto identity;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (mmt_unicode_lower_table[mid].start <= cp) lo = mid;
        else hi = mid - 1;
    }
    for (int64_t i = lo; i >= 0 && i >= lo - 1; i--) {
        const mmt_unicode_lower_run *r = &mmt_unicode_lower_table[i];
        uint32_t off = cp - r->start;
        if (cp >= r->start && (r->which & which) && off % r->stride == 0 &&
            off / r->stride < r->count) {
            out[0] = (uint32_t)((int32_t)cp + r->delta);
            return 1;
        }
    }
identity:
    out[0] = cp;
    return 1;
}

/* CPython's handle_capital_sigma (Objects/unicodeobject.c): U+03A3 lowercases to final
 * sigma U+03C2 when a cased letter precedes it and none follows, case-ignorable characters
 * in between being skipped on both sides. */
static int python_final_sigma(const uint32_t *s, int64_t n, int64_t i) {
    int64_t j = i - 1;
    uint32_t props = 0;
    while (j >= 0) {
        props = mmt_unicode_props(s[j]);
        if (!(props & MMT_UNI_CASE_IGNORABLE)) break;
        j--;
    }
    if (j < 0 || !(props & MMT_UNI_CASED)) return 0;
    for (j = i + 1; j < n; j++) {
        props = mmt_unicode_props(s[j]);
        if (!(props & MMT_UNI_CASE_IGNORABLE)) break;
    }
    return j == n || !(props & MMT_UNI_CASED);
}

int64_t mmt_unicode_lower_python(const uint32_t *in, int64_t n, uint32_t *out) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (in[i] == 0x3A3) {
            out[m++] = python_final_sigma(in, n, i) ? 0x3C2 : 0x3C3;
            continue;
        }
        m += mmt_unicode_lower_char(in[i], MMT_UNICODE_SLOW, out + m);
    }
    return m;
}

/* ------------------------------------------------------------------------------------ */
/* NFC                                                                                  */

static const mmt_unicode_decomp_entry *decomp_find(uint32_t cp) {
    int64_t lo = 0, hi = mmt_unicode_decomp_count - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        uint32_t key = mmt_unicode_decomp_table[mid].cp & 0x7FFFFFFFu;
        if (key == cp) return &mmt_unicode_decomp_table[mid];
        if (key < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* Appends the full canonical decomposition of cp to out; returns the count written. */
static int64_t decompose(uint32_t cp, mmt_unicode_flavor flavor, uint32_t *out) {
    if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT) {
        uint32_t s = cp - HANGUL_S_BASE;
        out[0] = HANGUL_L_BASE + s / HANGUL_N_COUNT;
        out[1] = HANGUL_V_BASE + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT;
        if (s % HANGUL_T_COUNT == 0) return 2;
        out[2] = HANGUL_T_BASE + s % HANGUL_T_COUNT;
        return 3;
    }
    const mmt_unicode_decomp_entry *d = cp < 0xC0 ? NULL : decomp_find(cp);
    if (!d || (flavor == MMT_UNICODE_FAST && (d->cp & 0x80000000u))) {
        out[0] = cp;
        return 1;
    }
    int64_t n = decompose(d->first, flavor, out);
    if (d->second) n += decompose(d->second, flavor, out + n);
    return n;
}

/* The primary composite of (a, b), or 0 when they do not compose. */
static uint32_t compose_pair(uint32_t a, uint32_t b, mmt_unicode_flavor flavor) {
    if (a >= HANGUL_L_BASE && a < HANGUL_L_BASE + HANGUL_L_COUNT && b >= HANGUL_V_BASE &&
        b < HANGUL_V_BASE + HANGUL_V_COUNT)
        return HANGUL_S_BASE +
               ((a - HANGUL_L_BASE) * HANGUL_V_COUNT + (b - HANGUL_V_BASE)) * HANGUL_T_COUNT;
    if (a >= HANGUL_S_BASE && a < HANGUL_S_BASE + HANGUL_S_COUNT &&
        (a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 && b > HANGUL_T_BASE &&
        b < HANGUL_T_BASE + HANGUL_T_COUNT)
        return a + (b - HANGUL_T_BASE);
    int64_t lo = 0, hi = mmt_unicode_compose_count - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const mmt_unicode_compose_entry *e = &mmt_unicode_compose_table[mid];
        if (e->first == a && e->second == b) {
            if (flavor == MMT_UNICODE_FAST && (e->composite & 0x80000000u)) return 0;
            return e->composite & 0x7FFFFFFFu;
        }
        if (e->first < a || (e->first == a && e->second < b)) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

/* Room for the decomposition plus as much again as sorting space. */
int64_t mmt_unicode_nfc_bound(int64_t n) { return 2 * n * MAX_DECOMPOSITION; }

/* Stable sort of a run of n non-starters by combining class. Short runs (the normal case)
 * use insertion sort; long ones a counting sort through tmp (room for n), so that hostile
 * text made of thousands of marks costs O(n), not O(n^2). */
static void sort_marks(uint32_t *run, int64_t n, mmt_unicode_flavor flavor, uint32_t *tmp) {
    if (n < 32) {
        for (int64_t i = 1; i < n; i++) {
            uint32_t c = run[i];
            int cc = mmt_unicode_ccc_of(c, flavor);
            int64_t j = i;
            while (j > 0 && mmt_unicode_ccc_of(run[j - 1], flavor) > cc) {
                run[j] = run[j - 1];
                j--;
            }
            run[j] = c;
        }
        return;
    }
    int64_t start[257] = {0};
    for (int64_t i = 0; i < n; i++) start[mmt_unicode_ccc_of(run[i], flavor) + 1]++;
    for (int k = 1; k <= 256; k++) start[k] += start[k - 1];
    for (int64_t i = 0; i < n; i++) tmp[start[mmt_unicode_ccc_of(run[i], flavor)]++] = run[i];
    for (int64_t i = 0; i < n; i++) run[i] = tmp[i];
}

int64_t mmt_unicode_nfd(const uint32_t *in, int64_t n, mmt_unicode_flavor flavor, uint32_t *out) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += decompose(in[i], flavor, out + m);
    /* Canonical ordering: a stable sort by ccc of each run of non-starters. */
    for (int64_t i = 0; i < m;) {
        if (mmt_unicode_ccc_of(out[i], flavor) == 0) {
            i++;
            continue;
        }
        int64_t j = i;
        while (j < m && mmt_unicode_ccc_of(out[j], flavor) != 0) j++;
        sort_marks(out + i, j - i, flavor, out + m);
        i = j;
    }
    return m;
}

int64_t mmt_unicode_nfc(const uint32_t *in, int64_t n, mmt_unicode_flavor flavor,
                        uint32_t *out) {
    /* Below U+0300 nothing decomposes into anything that would not recompose, and nothing
     * combines with what follows unless a combining mark or jamo (all >= U+0300) follows. */
    int plain = 1;
    for (int64_t i = 0; i < n && plain; i++) plain = in[i] < 0x300;
    if (plain) {
        for (int64_t i = 0; i < n; i++) out[i] = in[i];
        return n;
    }
    int64_t m = mmt_unicode_nfd(in, n, flavor, out);

    /* Canonical composition, in place: c joins the last starter unless a character between
     * them has ccc 0 or ccc >= ccc(c). Sorted order means only the last one needs checking. */
    int64_t starter = -1, w = 0;
    int last_cc = 0;
    for (int64_t i = 0; i < m; i++) {
        uint32_t c = out[i];
        int cc = mmt_unicode_ccc_of(c, flavor);
        if (starter >= 0) {
            int adjacent = (w - 1 == starter);
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                uint32_t composite = compose_pair(out[starter], c, flavor);
                if (composite) {
                    out[starter] = composite;
                    continue;
                }
            }
        }
        if (cc == 0) {
            starter = w;
            last_cc = 0;
        } else {
            last_cc = cc;
        }
        out[w++] = c;
    }
    return w;
}
