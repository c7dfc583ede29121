/* SPDX-License-Identifier: Apache-2.0 */
/* fs.h: directories, fsync, atomic file replacement and tree removal. */
#ifndef KNIB_COMMON_FS_H
#define KNIB_COMMON_FS_H

#include <stdbool.h>
#include <stddef.h>

/* The prefix of the temporary files fs_replace_file writes beside its
 * target (so that a directory listing can skip them). */
#define FS_TEMP_PREFIX ".tmp-"

/* mkdir 0700; an existing directory is fine. */
int fs_mkdir (const char *path) __attribute__ ((warn_unused_result));

/* fsync a file or directory by path. */
int fs_fsync_path (const char *path) __attribute__ ((warn_unused_result));

/* Read a whole regular file of at most max bytes, NUL-terminated; *len
 * gets its length.  Does not block on a FIFO nor follow a symbolic link
 * (ELOOP).  Errors "WHAT 'PATH': ...",
 * with ENOENT kept for a missing file. */
char *fs_read_file (const char *path, const char *what, size_t max, size_t *len)
  __attribute__ ((warn_unused_result));

/* Replace dir/name with len bytes of data atomically: a temporary file
 * FS_TEMP_PREFIX "NAME.XXXXXX" in dir with mode 0600, fsync, rename,
 * fsync dir.  Errors "WHAT 'PATH': ...". */
int fs_replace_file (const char *dir, const char *name, const void *data,
                     size_t len, const char *what)
  __attribute__ ((warn_unused_result));

/* rm -r path (no error when it is already gone).  Does not follow
 * symbolic links. */
int fs_remove_tree (const char *path) __attribute__ ((warn_unused_result));

/* The same, recording no error (for cleanup paths): -1 with errno. */
int fs_remove_tree_quiet (const char *path);

#endif
