/* SPDX-License-Identifier: Apache-2.0 */
/* internal.h: what the files of src/files share: the session and its appliance. */
#ifndef KNIB_FILES_INTERNAL_H
#define KNIB_FILES_INTERNAL_H

#include "gfs.h"

#include "files.h"

struct files_mount {
  char *device; /* a filesystem, or NULL for the guest's own tree */
  char *dir;    /* where it is mounted in the appliance */
};

DEFINE_VECTOR_TYPE (files_mount_vector, struct files_mount)

struct files_session {
  guestfs_h *g;
  struct chain_lock *lock;
  chain_manifest_vector chain; /* the backup last */
  chain_string_vector disks;   /* names, in the order added (sda, sdb...) */
  chain_string_vector devices; /* the appliance's names for them */
  enum files_accel accel;
  double launch_seconds;
  files_mount_vector mounts;
  int inspected; /* 0 not yet, 1 one OS found, -1 none */
  char *os_root; /* the OS's root filesystem when inspected == 1 */
  bool fs_done;
  files_fs_vector fs;
};

/* Record the handle's last error with set_error, prefixed by what. */
void files_guestfs_error (guestfs_h *g, const char *what);

/* Free a NULL-terminated list of strings that libguestfs returned. */
void files_free_strings (char **v);

/* The appliance path of path below root ("/knib-fs-0" + "/etc"). */
char *files_join (const char *root, const char *path);

/* Fill e from a guestfs stat (path and target are left alone). */
void files_entry_from_stat (struct files_entry *e,
                            const struct guestfs_statns *st);

#endif
