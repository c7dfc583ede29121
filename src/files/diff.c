/* SPDX-License-Identifier: Apache-2.0 */
/* diff.c: what differs between two listings of a tree (pure). */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "common/error.h"
#include "files.h"

const char *
files_change_name (enum files_change c)
{
  switch (c) {
  case FILES_ADDED:
    return "added";
  case FILES_REMOVED:
    return "removed";
  case FILES_CHANGED:
    return "changed";
  }
  return "?";
}

static unsigned
compare (const struct files_entry *a, const struct files_entry *b)
{
  unsigned what = 0;

  if (a->type != b->type)
    return FILES_DIFF_TYPE;
  if (a->type != FILES_DIRECTORY && a->size != b->size)
    what |= FILES_DIFF_SIZE;
  if (a->mode != b->mode)
    what |= FILES_DIFF_MODE;
  if (a->uid != b->uid || a->gid != b->gid)
    what |= FILES_DIFF_OWNER;
  if (a->type != FILES_DIRECTORY
      && (a->mtime_sec != b->mtime_sec || a->mtime_nsec != b->mtime_nsec))
    what |= FILES_DIFF_MTIME;
  if (a->type == FILES_SYMLINK
      && strcmp (a->target ? a->target : "", b->target ? b->target : "") != 0)
    what |= FILES_DIFF_TARGET;
  return what;
}

static int
push (files_diff_vector *out, enum files_change c, const struct files_entry *a,
      const struct files_entry *b, unsigned what)
{
  struct files_diff_item it = { c, a, b, what };

  if (files_diff_vector_append (out, it) == -1) {
    set_error (ENOMEM, "diff");
    return -1;
  }
  return 0;
}

int
files_diff (const files_entry_vector *a, const files_entry_vector *b,
            files_diff_vector *out)
{
  size_t i = 0, j = 0;

  while (i < a->len || j < b->len) {
    int c = i == a->len   ? 1
            : j == b->len ? -1
                          : strcmp (a->ptr[i].path, b->ptr[j].path);
    int r;

    if (c < 0)
      r = push (out, FILES_REMOVED, &a->ptr[i++], NULL, 0);
    else if (c > 0)
      r = push (out, FILES_ADDED, NULL, &b->ptr[j++], 0);
    else {
      unsigned what = compare (&a->ptr[i], &b->ptr[j]);

      r = what ? push (out, FILES_CHANGED, &a->ptr[i], &b->ptr[j], what) : 0;
      i++;
      j++;
    }
    if (r == -1)
      return -1;
  }
  return 0;
}
