/* SPDX-License-Identifier: Apache-2.0 */
/* framer.c: split the byte stream from QEMU into one-line JSON messages. */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "internal.h"

void
qmp_framer_init (struct qmp_framer *f, size_t max_line)
{
  memset (f, 0, sizeof *f);
  f->max_line = max_line;
}

void
qmp_framer_release (struct qmp_framer *f)
{
  free (f->buf);
  memset (f, 0, sizeof *f);
}

static int
framer_grow (struct qmp_framer *f, size_t need)
{
  size_t cap = f->cap ? f->cap : 4096;
  char *p;

  if (need > SIZE_MAX / 2) {
    set_error (ENOMEM, "cannot buffer a message of %zu bytes", need);
    return -1;
  }
  while (cap < need)
    cap *= 2;
  p = realloc (f->buf, cap);
  if (p == NULL) {
    set_error (ENOMEM, "cannot buffer a message of %zu bytes", need);
    return -1;
  }
  f->buf = p;
  f->cap = cap;
  return 0;
}

int
qmp_framer_feed (struct qmp_framer *f, const char *data, size_t n)
{
  const char *nl;
  size_t partial;

  if (n == 0)
    return 0;
  /* Only the unfinished line is bounded here: whole lines are checked
   * when they are taken, and the caller takes them as they come. */
  nl = memrchr (data, '\n', n);
  partial = nl != NULL ? (size_t) (data + n - nl - 1) : f->partial + n;
  /* It may hold max_line bytes and the CR of its "\r\n". */
  if (partial > f->max_line + 1) {
    set_error (EMSGSIZE, "message longer than %zu bytes", f->max_line);
    return -1;
  }
  if (f->len + n > f->cap && framer_grow (f, f->len + n) == -1)
    return -1;
  memcpy (f->buf + f->len, data, n);
  f->len += n;
  f->partial = partial;
  return 0;
}

static void
framer_consume (struct qmp_framer *f, size_t n)
{
  memmove (f->buf, f->buf + n, f->len - n);
  f->len -= n;
  f->scanned = 0;
}

static bool
is_blank (const char *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
      return false;
  return true;
}

int
qmp_framer_next (struct qmp_framer *f, char **line, size_t *len)
{
  for (;;) {
    char *nl;
    size_t n;

    nl = f->len > f->scanned
           ? memchr (f->buf + f->scanned, '\n', f->len - f->scanned)
           : NULL;
    if (nl == NULL) {
      f->scanned = f->len;
      return 0;
    }
    n = nl - f->buf;
    if (n > 0 && f->buf[n - 1] == '\r')
      n--;
    if (is_blank (f->buf, n)) {
      framer_consume (f, nl - f->buf + 1);
      continue;
    }
    if (n > f->max_line) {
      set_error (EMSGSIZE, "message longer than %zu bytes", f->max_line);
      return -1;
    }
    *line = malloc (n + 1);
    if (*line == NULL) {
      set_error (ENOMEM, "cannot hold a message of %zu bytes", n);
      return -1;
    }
    memcpy (*line, f->buf, n);
    (*line)[n] = '\0';
    *len = n;
    framer_consume (f, nl - f->buf + 1);
    return 1;
  }
}

bool
qmp_framer_partial (const struct qmp_framer *f)
{
  if (f->partial == 0)
    return false;
  return !is_blank (f->buf + f->len - f->partial, f->partial);
}
