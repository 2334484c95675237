/* SPDX-License-Identifier: MIT */
/* suites — one Check suite per core module; tests/unit/main.c runs them all. */
#pragma once

#include <check.h>

Suite *names_suite(void);
Suite *options_suite(void);
Suite *quota_suite(void);
Suite *store_suite(void);
Suite *procwatch_suite(void);
