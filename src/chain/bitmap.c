/* SPDX-License-Identifier: Apache-2.0 */
/* bitmap.c: the names of the bitmaps a repository adds, and which are its. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "internal.h"

void
chain_bitmap_name (const struct chain_repo *repo, const char *id,
                   char name[CHAIN_BITMAP_MAX])
{
  if (repo->id[0] != '\0')
    snprintf (name, CHAIN_BITMAP_MAX, CHAIN_BITMAP_PREFIX "%s-%s", repo->id,
              id);
  else
    snprintf (name, CHAIN_BITMAP_MAX, CHAIN_BITMAP_PREFIX "%s", id);
}

/* "<16 hex digits>-": the start of a name that carries a repository id. */
static bool
has_repo_id (const char *s)
{
  for (size_t i = 0; i < CHAIN_REPO_ID_LEN; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return s[CHAIN_REPO_ID_LEN] == '-';
}

bool
chain_bitmap_is_ours (struct chain_repo *repo, const char *vm, const char *name)
{
  size_t plen = strlen (CHAIN_BITMAP_PREFIX);
  const char *rest;
  struct stat st;

  if (name == NULL || strncmp (name, CHAIN_BITMAP_PREFIX, plen) != 0)
    return false;
  rest = name + plen;
  if (has_repo_id (rest))
    return repo->id[0] != '\0'
           && strncmp (rest, repo->id, CHAIN_REPO_ID_LEN) == 0;
  if (repo->id[0] == '\0')
    return true;
  /* As older versions named them: one of this repository's backups of
   * the VM (committed, removed, or cut short). */
  if (!chain_id_is_valid (rest))
    return false;
  {
    CLEANUP_FREE char *dir
      = str_printf ("%s/" CHAIN_VMS_DIR "/%s/%s", repo->path, vm, rest);
    CLEANUP_FREE char *partial = str_printf (
      "%s/" CHAIN_VMS_DIR "/%s/%s" CHAIN_PARTIAL_SUFFIX, repo->path, vm, rest);

    return (dir != NULL && lstat (dir, &st) == 0)
           || (partial != NULL && lstat (partial, &st) == 0);
  }
}
