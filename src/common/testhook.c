/* SPDX-License-Identifier: Apache-2.0 */
/* testhook.c: the stop points of a build with --enable-test-hooks. */
#include <config.h>

#ifdef ENABLE_TEST_HOOKS
#include <signal.h>
#include <stdlib.h>
#include <string.h>

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
#endif
