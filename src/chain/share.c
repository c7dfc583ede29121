/* SPDX-License-Identifier: Apache-2.0 */
/* share.c: a repository shared for reading with a group: its group and modes. */
#include <config.h>

#include <errno.h>
#include <fts.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/debug.h"
#include "common/error.h"
#include "internal.h"

/* Private: directories 0700, files 0600.  Shared with a group: the group
 * owns everything, may read files and list directories (0640, 2750: new
 * entries inherit the group). */
#define PRIVATE_DIR_MODE 0700
#define PRIVATE_FILE_MODE 0600
#define SHARED_DIR_MODE 02750
#define SHARED_FILE_MODE 0640

int
chain_share_resolve (const char *group, gid_t *gid)
{
  struct group gr, *res = NULL;
  char buf[4096];
  int e;

  if (group == NULL || group[0] == '\0') {
    *gid = (gid_t) -1;
    return 0;
  }
  e = getgrnam_r (group, &gr, buf, sizeof buf, &res);
  if (e != 0) {
    set_error (e, "group '%s'", group);
    return -1;
  }
  if (res == NULL) {
    set_error (-ENOENT, "group '%s' does not exist on this host", group);
    return -1;
  }
  *gid = gr.gr_gid;
  return 0;
}

/* One entry: its mode and group, never through a symbolic link.  A file
 * this process may not change (a reader of a shared repository running
 * knib list) is left as it is. */
static void
apply_one (const FTSENT *e, gid_t gid)
{
  bool dir = e->fts_info == FTS_D;
  mode_t mode = gid == (gid_t) -1 ? (dir ? PRIVATE_DIR_MODE : PRIVATE_FILE_MODE)
                                  : (dir ? SHARED_DIR_MODE : SHARED_FILE_MODE);
  const struct stat *st = e->fts_statp;

  if (gid != (gid_t) -1 && st->st_gid != gid
      && lchown (e->fts_accpath, (uid_t) -1, gid) == -1)
    debug (DEBUG_CHAIN, "share: chgrp '%s': %s", e->fts_path, strerror (errno));
  if ((st->st_mode & 07777) != mode && chmod (e->fts_accpath, mode) == -1)
    debug (DEBUG_CHAIN, "share: chmod '%s': %s", e->fts_path, strerror (errno));
}

int
chain_share_apply (const char *path, gid_t gid)
{
  char *paths[] = { (char *) path, NULL };
  FTS *fts;
  FTSENT *e;
  int r = 0;

  fts = fts_open (paths, FTS_PHYSICAL | FTS_NOCHDIR | FTS_XDEV, NULL);
  if (fts == NULL) {
    set_error (errno, "'%s'", path);
    return -1;
  }
  while ((errno = 0, e = fts_read (fts)) != NULL) {
    switch (e->fts_info) {
    case FTS_D:
    case FTS_F:
      apply_one (e, gid);
      break;
    case FTS_DNR:
    case FTS_ERR:
    case FTS_NS:
      /* Gone meanwhile (a temporary file) is not an error. */
      if (e->fts_errno != ENOENT) {
        set_error (e->fts_errno, "'%s'", e->fts_path);
        r = -1;
      }
      break;
    default: /* symbolic links, the post-order visit of directories */
      break;
    }
  }
  if (e == NULL && errno != 0 && r == 0) {
    set_error (errno, "'%s'", path);
    r = -1;
  }
  fts_close (fts);
  return r;
}
