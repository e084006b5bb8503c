/* The GLIBC_TUNABLES hand-over from `kiln` to kiln-core (src/cli/tunables.c):
 * kiln-core gets the huge-page heap, and whatever it runs sees the
 * environment the user gave, in every starting state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"

static void assert_env(const char *name, const char *want)
{
        const char *got = getenv(name);
        if (!want)
                assert_null(got);
        else {
                assert_non_null(got);
                assert_string_equal(got, want);
        }
}

/* GLIBC_TUNABLES before, what kiln-core must get. */
static void round_trip(const char *user, const char *core)
{
        unsetenv("KILN_USER_GLIBC_TUNABLES");
        if (user)
                setenv("GLIBC_TUNABLES", user, 1);
        else
                unsetenv("GLIBC_TUNABLES");
        tunables_for_core();
        assert_env("GLIBC_TUNABLES", core);
        /* A kiln run by kiln-core before it restored (never, but harmless). */
        tunables_for_core();
        assert_env("GLIBC_TUNABLES", core);
        tunables_restore();
        assert_env("GLIBC_TUNABLES", user);
        assert_env("KILN_USER_GLIBC_TUNABLES", NULL);
        tunables_restore(); /* kiln-core started directly: nothing to undo */
        assert_env("GLIBC_TUNABLES", user);
}

static void test_unset(void **state)
{
        (void)state;
        round_trip(NULL, "glibc.malloc.hugetlb=1");
}

static void test_empty(void **state)
{
        (void)state;
        round_trip("", "glibc.malloc.hugetlb=1");
}

static void test_other_tunables_kept(void **state)
{
        (void)state;
        round_trip("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
}

static void test_user_choice_wins(void **state)
{
        (void)state;
        round_trip("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0");
        round_trip("glibc.malloc.arena_max=1:glibc.malloc.hugetlb=2",
                   "glibc.malloc.arena_max=1:glibc.malloc.hugetlb=2");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_unset),
            cmocka_unit_test(test_empty),
            cmocka_unit_test(test_other_tunables_kept),
            cmocka_unit_test(test_user_choice_wins),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
