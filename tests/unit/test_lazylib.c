/* Libraries opened when first used (src/daemon/lazylib.c): symbols resolve
 * once, and a missing library or symbol is one line naming it. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "lazylib.h"

static void test_loads_once(void **state)
{
        (void)state;
        static const char *const names[] = {"cos", "sqrt", NULL};
        static void *fn[2];
        static struct lazy_lib lib = LAZY_LIB_INIT("libm.so.6", names, fn);
        struct kiln_error *err = NULL;
        assert_int_equal(lazy_lib_load(&lib, &err), 0);
        assert_null(err);
        assert_true(((typeof(&sqrt))fn[1])(81.0) == 9.0);
        void *first = fn[0];
        assert_int_equal(lazy_lib_load(&lib, &err), 0);
        assert_ptr_equal(fn[0], first);
}

static void test_missing_library(void **state)
{
        (void)state;
        static const char *const names[] = {"f", NULL};
        static void *fn[1];
        static struct lazy_lib lib = LAZY_LIB_INIT("libkiln-no-such.so.7", names, fn);
        struct kiln_error *err = NULL;
        assert_int_equal(lazy_lib_load(&lib, &err), -ELIBACC);
        assert_non_null(strstr(kiln_error_msg(err), "cannot load libkiln-no-such.so.7"));
        kiln_error_free(err);
}

static void test_missing_symbol(void **state)
{
        (void)state;
        static const char *const names[] = {"cos", "kiln_no_such_function", NULL};
        static void *fn[2];
        static struct lazy_lib lib = LAZY_LIB_INIT("libm.so.6", names, fn);
        struct kiln_error *err = NULL;
        assert_int_equal(lazy_lib_load(&lib, &err), -ELIBACC);
        assert_string_equal(kiln_error_msg(err), "libm.so.6 has no kiln_no_such_function");
        kiln_error_free(TAKE_PTR(err));
        /* Not loaded: the next call tries again and fails the same way. */
        assert_int_equal(lazy_lib_load(&lib, &err), -ELIBACC);
        kiln_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_loads_once),
                cmocka_unit_test(test_missing_library),
                cmocka_unit_test(test_missing_symbol),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
