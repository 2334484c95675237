/* SPDX-License-Identifier: MIT */
/* names — capability names: minting, validation, constant-time comparison.
 *
 * A capability name is 26 characters of lowercase base32 ([a-z2-7]) carrying
 * 130 bits from getrandom().  This module owns no state: callers own every
 * buffer they pass.  Functions return 0 or a negative errno; the predicates
 * return booleans.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define NAMES_CAP_LEN 26   /* characters in a capability name */
#define NAMES_BUF     32   /* room for a capability name and its NUL */
#define NAMES_MAX     255  /* longest name in names=any mode (NAME_MAX) */

/* Fill @out with a fresh capability name and its NUL.  Returns 0, or
 * -errno if getrandom() fails (it does not block once the pool is ready). */
int names_mint(char out[NAMES_BUF]);

/* Encode @n random bytes (n*8 >= 130) into a capability name; exposed so
 * the encoder can be tested.  Returns 0, or -EINVAL if @n is too small. */
int names_encode(const unsigned char *bytes, size_t n, char out[NAMES_BUF]);

/* True if @name has the exact form of a capability name. */
bool names_is_capability(const char *name);

/* True if @name may name a region in names=any mode: 1..255 bytes, no '/',
 * no NUL, not starting with '.'. */
bool names_is_valid_any(const char *name);

/* True if @name is a control-file name (starts with '.'). */
bool names_is_control(const char *name);

/* Compare two NUL-terminated names in time that depends only on their
 * lengths, not on where they differ.  True if equal. */
bool names_equal_ct(const char *a, const char *b);

/* A GHashTable hash over a name that costs the same for every name of a
 * given length (no early exit). */
unsigned names_hash(const void *name);
