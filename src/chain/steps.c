/* steps.c: what the long operations of the repository share. */
#include <config.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/debug.h"
#include "internal.h"

void
chain_test_stop_point (const char *name)
{
  const char *at = getenv ("KNIB_TEST_STOP_AT");

  if (at != NULL && strcmp (at, name) == 0) {
    debug (DEBUG_CHAIN, "stopping at %s (KNIB_TEST_STOP_AT)", name);
    raise (SIGSTOP);
  }
}

void
chain_note_add (chain_string_vector *notes, char *line)
{
  if (line != NULL && chain_string_vector_append (notes, line) == -1)
    free (line);
}
