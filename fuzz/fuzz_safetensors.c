/* fuzz_safetensors.c — libFuzzer target for the safetensors header parser and validator.
 * Any input must either open cleanly (then every tensor's bytes lie inside the buffer) or
 * fail with a message; never crash, hang or leak. */
#include <stdint.h>
#include <string.h>

#include "core/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mmt_safetensors *st = NULL;
    if (mmt_safetensors_open_memory(data, size, "fuzz", &st) == MMT_OK) {
        volatile uint8_t sink = 0;
        for (int64_t i = 0; i < st->n_tensors; i++) {
            const mmt_st_tensor *t = &st->tensors[i];
            if (t->end > t->begin) { /* touch first and last byte: ASan checks the bounds */
                sink ^= ((const uint8_t *)t->data)[0];
                sink ^= ((const uint8_t *)t->data)[t->end - t->begin - 1];
            }
        }
        (void)sink;
        mmt_safetensors_close(st);
    } else if (mmt_last_error()[0] == '\0') {
        __builtin_trap(); /* a failure must always say why */
    }
    return 0;
}
