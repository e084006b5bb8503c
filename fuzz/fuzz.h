/* Shared by the libFuzzer targets: a failed property is a crash with one
 * line saying which. */
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kiln/util/error.h>
#include <kiln/util/util.h>

#define FUZZ_CHECK(cond)                                                                           \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* Every rejection must come with a one-line message. */
static inline void fuzz_rejected(int r, struct kiln_error **err)
{
        FUZZ_CHECK(r < 0 && *err && (*err)->msg);
        if (strchr((*err)->msg, '\n')) {
                fprintf(stderr, "rejection message is not one line: [%s]\n", (*err)->msg);
                abort();
        }
        kiln_error_free(*err);
        *err = NULL;
}

static inline int fuzz_buf_eq(const struct kiln_buf *a, const struct kiln_buf *b)
{
        return a->len == b->len && (a->len == 0 || !memcmp(a->data, b->data, a->len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
