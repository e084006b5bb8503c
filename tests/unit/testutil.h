/* Shared helpers for the cmocka unit tests. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <kiln/util/error.h>

/* Decodes a hex string into a new buffer. */
static inline uint8_t *test_unhex(const char *hex, size_t *ret_len)
{
        size_t n = strlen(hex) / 2;
        uint8_t *p = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                sscanf(hex + 2 * i, "%2x", &v);
                p[i] = (uint8_t)v;
        }
        *ret_len = n;
        return p;
}

static inline char *test_hex(const void *p, size_t n)
{
        char *s = malloc(2 * n + 1);
        for (size_t i = 0; i < n; i++)
                sprintf(s + 2 * i, "%02x", ((const uint8_t *)p)[i]);
        s[2 * n] = '\0';
        return s;
}

/* Asserts that a call failed with `code` and a message containing `needle`. */
#define assert_error(call, err, code, needle)                                                      \
        do {                                                                                       \
                int r_ = (call);                                                                   \
                assert_int_equal(r_, -(code));                                                     \
                assert_non_null(err);                                                              \
                if (!strstr((err)->msg, (needle)))                                                 \
                        fail_msg("error message \"%s\" lacks \"%s\"", (err)->msg, (needle));       \
                kiln_error_clear(&(err));                                                          \
        } while (0)

/* Asserts success, printing the error message otherwise. */
#define assert_ok(call, err)                                                                       \
        do {                                                                                       \
                int r_ = (call);                                                                   \
                if (r_ < 0)                                                                        \
                        fail_msg("%s failed: %s", #call, kiln_error_msg(err));                     \
        } while (0)
