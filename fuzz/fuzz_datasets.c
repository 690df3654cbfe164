/* fuzz_datasets.c — libFuzzer target for the CSV, COCO captions and JSONL parsers
 * (data/datasets.h). The first byte picks the parser (bits 0-1: CSV, COCO, JSONL, JSONL),
 * skip_bad (bit 2) and a small --max-text-bytes (bit 3: 16 bytes, so that overlong fields and
 * lines, and JSONL's meter of the "text" in a line too long to hold, are reached by small
 * inputs); the rest is the file. Any input must either give pairs whose strings are readable
 * and whose texts keep to the limit, or fail with a message; never crash, hang or leak. */
#include <stdint.h>
#include <string.h>

#include "data/datasets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    mmt_pairs_options o;
    mmt_pairs_options_default(&o);
    o.check_files = 0;
    o.skip_bad = (data[0] & 4) != 0;
    if (data[0] & 8) o.max_text_bytes = 16;
    mmt_pairs *p = NULL;
    const char *text = (const char *)data + 1;
    mmt_status s;
    switch (data[0] & 3) {
    case 0: s = mmt_pairs_parse_csv(text, size - 1, "fuzz.csv", "root", &o, &p); break;
    case 1: s = mmt_pairs_parse_coco(text, size - 1, "fuzz.json", "root", &o, &p); break;
    default: s = mmt_pairs_parse_jsonl(text, size - 1, "fuzz.jsonl", "root", &o, &p); break;
    }
    if (s == MMT_OK) {
        size_t sink = 0;
        for (int64_t i = 0; i < p->n; i++) {
            size_t n = strlen(p->items[i].text);
            if (n > o.max_text_bytes) __builtin_trap(); /* a text over the limit got through */
            sink += strlen(p->items[i].image_path) + n + (p->items[i].label ? strlen(p->items[i].label) : 0);
        }
        (void)sink;
        mmt_pairs_free(p);
    } else if (mmt_last_error()[0] == '\0' && s != MMT_STATUS_OUT_OF_MEMORY) {
        __builtin_trap(); /* a failure must always say why */
    }
    return 0;
}
