/* SPDX-License-Identifier: Apache-2.0 */
/* mount.c: a read-only FUSE view of a backup's filesystems (libguestfs mount_local). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "internal.h"

int
files_clean_stale_mount (const char *path, bool *cleaned)
{
  struct stat st;
  struct command *cmd;
  int r;

  *cleaned = false;
  if (stat (path, &st) == 0 || errno != ENOTCONN)
    return 0;
  /* A FUSE mount whose server is gone (a killed knib files mount). */
  if (umount2 (path, MNT_DETACH) == 0) {
    *cleaned = true;
    return 0;
  }
  cmd = command_new ("fusermount");
  if (cmd == NULL)
    return -1;
  command_add_args (cmd, "-u", "-z", path, NULL);
  command_set_timeout (cmd, 30000);
  r = command_run (cmd, NULL);
  command_free (cmd);
  if (r == -1) {
    error_prepend ("'%s' is a stale mount that cannot be removed (umount -l "
                   "'%s' as root removes it)",
                   path, path);
    return -1;
  }
  *cleaned = true;
  return 0;
}

int
files_session_mount_local (struct files_session *s, const char *mountpoint)
{
  if (files_session_mount_all (s) == -1)
    return -1;
  if (guestfs_mount_local (s->g, mountpoint, GUESTFS_MOUNT_LOCAL_READONLY, 1,
                           -1)
      == -1) {
    files_guestfs_error (s->g, mountpoint);
    error_prepend ("cannot mount");
    return -1;
  }
  debug (DEBUG_CHAIN, "files: mounted at %s", mountpoint);
  return 0;
}

int
files_session_mount_run (struct files_session *s)
{
  if (guestfs_mount_local_run (s->g) == -1) {
    files_guestfs_error (s->g, "mount");
    return -1;
  }
  return 0;
}

int
files_umount_local (const char *mountpoint)
{
  struct command *cmd;
  int r;

  if (umount2 (mountpoint, 0) == 0)
    return 0;
  cmd = command_new ("fusermount");
  if (cmd == NULL)
    return -1;
  command_add_args (cmd, "-u", mountpoint, NULL);
  command_set_timeout (cmd, 30000);
  r = command_run (cmd, NULL);
  command_free (cmd);
  return r;
}
