/* SPDX-License-Identifier: Apache-2.0 */
/* failalloc.h: make allocations fail on purpose to test out-of-memory paths. */
#ifndef KNIB_TESTS_FAILALLOC_H
#define KNIB_TESTS_FAILALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* The program is linked with -Wl,--wrap=malloc (and calloc, realloc,
 * strdup), so the calls knib's objects and the test make land here.
 * jansson is a shared library that --wrap cannot reach: failalloc_arm
 * points its allocator here with json_set_alloc_funcs.  Allocations made
 * inside libc (vasprintf, fopen...) are not counted. */

/* Counting from 0, the nth allocation of the calling thread fails, and
 * so does every later one until failalloc_disarm.  Every later one too:
 * jansson ignores some failures (a buffer that cannot grow drops a byte)
 * and would silently corrupt what it parses if the next allocation
 * succeeded again. */
void failalloc_arm (long n);

/* Stop failing.  Returns whether an allocation failed since arming. */
bool failalloc_disarm (void);

void *__wrap_malloc (size_t n);
void *__wrap_calloc (size_t nmemb, size_t n);
void *__wrap_realloc (void *ptr, size_t n);
char *__wrap_strdup (const char *s);

#endif
