/* fuzz_datasets.c — libFuzzer target for the CSV and COCO captions parsers (data/datasets.h).
 * The first byte picks the parser and skip_bad; the rest is the file. Any input must either
 * give pairs whose strings are readable or fail with a message; never crash, hang or leak. */
#include <stdint.h>
#include <string.h>

#include "data/datasets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    mmt_pairs_options o;
    mmt_pairs_options_default(&o);
    o.check_files = 0;
    o.skip_bad = data[0] & 2;
    mmt_pairs *p = NULL;
    const char *text = (const char *)data + 1;
    mmt_status s = data[0] & 1 ? mmt_pairs_parse_coco(text, size - 1, "fuzz.json", "root", &o, &p)
                               : mmt_pairs_parse_csv(text, size - 1, "fuzz.csv", "root", &o, &p);
    if (s == MMT_OK) {
        size_t sink = 0;
        for (int64_t i = 0; i < p->n; i++)
            sink += strlen(p->items[i].image_path) + strlen(p->items[i].text) +
                    (p->items[i].label ? strlen(p->items[i].label) : 0);
        (void)sink;
        mmt_pairs_free(p);
    } else if (mmt_last_error()[0] == '\0' && s != MMT_STATUS_OUT_OF_MEMORY) {
        __builtin_trap(); /* a failure must always say why */
    }
    return 0;
}
