/* SPDX-License-Identifier: Apache-2.0 */
/* testhook.c: the stop points and the scheduler's clock of a build with
 * --enable-test-hooks. */
#include <config.h>

#ifdef ENABLE_TEST_HOOKS
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/debug.h"
#include "common/testhook.h"

void
test_stop_point (const char *name)
{
  const char *at = getenv ("KNIB_TEST_STOP_AT");

  if (at != NULL && strcmp (at, name) == 0) {
    debug (DEBUG_CHAIN, "stopping at %s (KNIB_TEST_STOP_AT)", name);
    raise (SIGSTOP);
  }
}

bool
test_flag (const char *flag)
{
  const char *flags = getenv ("KNIB_TEST_FLAGS");
  size_t len = strlen (flag);

  while (flags != NULL && *flags != '\0') {
    if (strncmp (flags, flag, len) == 0
        && (flags[len] == ',' || flags[len] == '\0'))
      return true;
    flags = strchr (flags, ',');
    if (flags != NULL)
      flags++;
  }
  return false;
}

time_t
test_clock (void)
{
  const char *path = getenv ("KNIB_TEST_CLOCK");
  long long t;
  FILE *f;
  int n;

  if (path == NULL || (f = fopen (path, "re")) == NULL)
    return time (NULL);
  n = fscanf (f, "%lld", &t);
  fclose (f);
  if (n != 1)
    return time (NULL);
  return (time_t) t;
}
#endif
