/* SPDX-License-Identifier: Apache-2.0 */
/* debug.c: the trace mask and the trace line writer. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "debug.h"
#include "error.h"

static unsigned debug_mask;

static const struct {
  const char *name;
  unsigned bit;
} topics[] = {
  { "qmp", DEBUG_QMP },     { "nbd", DEBUG_NBD }, { "qcow2", DEBUG_QCOW2 },
  { "chain", DEBUG_CHAIN }, { "cmd", DEBUG_CMD },
};

static const char *
topic_name (unsigned bit)
{
  for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
    if (topics[i].bit == bit)
      return topics[i].name;
  return "all";
}

static int
parse_word (const char *word, size_t n, unsigned *mask)
{
  if ((n == 3 && strncmp (word, "all", 3) == 0) || (n == 1 && word[0] == '1')) {
    *mask = DEBUG_ALL;
    return 0;
  }
  for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
    if (strlen (topics[i].name) == n
        && strncmp (topics[i].name, word, n) == 0) {
      *mask |= topics[i].bit;
      return 0;
    }
  }
  set_error (
    0, "unknown debug topic '%.*s' (known: qmp, nbd, qcow2, chain, cmd, all)",
    (int) n, word);
  return -1;
}

int
debug_parse (const char *spec, unsigned *mask)
{
  unsigned m = 0;
  const char *p = spec;

  while (*p) {
    size_t n = strcspn (p, ",");
    if (n > 0 && parse_word (p, n, &m) == -1)
      return -1;
    p += n;
    if (*p == ',')
      p++;
  }
  *mask = m;
  return 0;
}

void
debug_set (unsigned mask)
{
  debug_mask = mask;
}

unsigned
debug_get (void)
{
  return debug_mask;
}

void
debug (unsigned topic, const char *fmt, ...)
{
  va_list ap;

  if (!debug_enabled (topic))
    return;
  flockfile (stderr);
  fprintf (stderr, "knib: debug %s: ", topic_name (topic));
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  funlockfile (stderr);
}
