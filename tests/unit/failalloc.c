/* SPDX-License-Identifier: Apache-2.0 */
/* failalloc.c: the ld --wrap allocators that fail from the nth call on. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "failalloc.h"

void *__real_malloc (size_t n);
void *__real_calloc (size_t nmemb, size_t n);
void *__real_realloc (void *ptr, size_t n);
char *__real_strdup (const char *s);

/* Per thread, so the fake server's thread is never counted. */
static __thread long countdown = -1;
static __thread bool fired;

static bool
should_fail (void)
{
  if (countdown < 0)
    return false;
  if (countdown == 0) {
    fired = true;
    errno = ENOMEM;
    return true;
  }
  countdown--;
  return false;
}

static void *
json_malloc (size_t n)
{
  return should_fail () ? NULL : __real_malloc (n);
}

static void
json_free (void *ptr)
{
  free (ptr);
}

void
failalloc_arm (long n)
{
  json_set_alloc_funcs (json_malloc, json_free);
  fired = false;
  countdown = n;
}

bool
failalloc_disarm (void)
{
  countdown = -1;
  return fired;
}

void *
__wrap_malloc (size_t n)
{
  return should_fail () ? NULL : __real_malloc (n);
}

void *
__wrap_calloc (size_t nmemb, size_t n)
{
  return should_fail () ? NULL : __real_calloc (nmemb, n);
}

void *
__wrap_realloc (void *ptr, size_t n)
{
  return should_fail () ? NULL : __real_realloc (ptr, n);
}

char *
__wrap_strdup (const char *s)
{
  return should_fail () ? NULL : __real_strdup (s);
}
