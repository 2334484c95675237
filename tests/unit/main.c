/* SPDX-License-Identifier: MIT */
/* unit-tests — the single runner for every core suite.
 *
 * Prints Check's normal report, then as its last line
 * "unit-tests: N passed, N failed".  Exits 0 only if every test passed.
 */
#include <stdio.h>
#include <stdlib.h>

#include "suites.h"

int
main(void)
{
    SRunner *sr = srunner_create(names_suite());
    srunner_add_suite(sr, options_suite());
    srunner_add_suite(sr, quota_suite());
    srunner_add_suite(sr, store_suite());
    srunner_add_suite(sr, procwatch_suite());

    srunner_run_all(sr, CK_NORMAL);
    int run = srunner_ntests_run(sr);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    fflush(stderr);
    printf("unit-tests: %d passed, %d failed\n", run - failed, failed);
    fflush(stdout);
    return (failed == 0 && run > 0) ? EXIT_SUCCESS : EXIT_FAILURE;
}
