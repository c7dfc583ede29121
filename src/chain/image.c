/* SPDX-License-Identifier: Apache-2.0 */
/* image.c: what the read side needs of a backup's images: usage and links. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"
#include "qcow2/qcow2.h"

int
chain_backup_disk_usage (struct chain_repo *repo,
                         const struct chain_manifest *m, uint64_t *bytes)
{
  *bytes = 0;
  for (size_t i = 0; i < m->disks.len; i++) {
    CLEANUP_FREE char *path
      = chain_backup_image_path (repo, m, &m->disks.ptr[i]);
    struct stat st;

    if (path == NULL)
      return -1;
    if (lstat (path, &st) == -1) {
      set_error (errno, "backup '%s' of vm '%s': disk '%s': image '%s'", m->id,
                 m->vm, m->disks.ptr[i].name, path);
      return -1;
    }
    *bytes += (uint64_t) st.st_blocks * 512;
  }
  return 0;
}

/* Open path for reading (no symbolic links), as a regular file. */
static int
open_image (const char *path)
{
  int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;

  if (fd == -1) {
    set_error (errno, "image '%s'", path);
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    set_error (errno, "image '%s'", path);
    close (fd);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    close (fd);
    set_error (-EINVAL, "image '%s' is not a regular file", path);
    return -1;
  }
  return fd;
}

int
chain_image_backing_file (const char *path, char **backing)
{
  CLEANUP_CLOSE int fd = -1;
  struct qcow2_info info;

  *backing = NULL;
  fd = open_image (path);
  if (fd == -1)
    return -1;
  if (qcow2_probe (fd, &info) == -1) {
    error_prepend ("image '%s'", path);
    return -1;
  }
  *backing = STEAL_PTR (info.backing_file);
  qcow2_info_release (&info);
  return 0;
}

int
chain_disk_expected_backing (const struct chain_manifest *parent,
                             const struct chain_disk *disk, char **backing)
{
  const struct chain_disk *pd;

  *backing = NULL;
  if (disk->kind != CHAIN_KIND_INCREMENTAL)
    return 0;
  if (parent == NULL) {
    set_error (-EINVAL, "disk '%s' is incremental but its backup has no parent",
               disk->name);
    return -1;
  }
  pd = chain_manifest_find_disk (parent, disk->name);
  if (pd == NULL) {
    set_error (-EINVAL,
               "disk '%s' is incremental but parent backup '%s' has no such "
               "disk",
               disk->name, parent->id);
    return -1;
  }
  *backing = str_printf ("../%s/%s", parent->id, pd->image);
  return *backing ? 0 : -1;
}

char *
chain_qemu_path (const char *path)
{
  /* "a:b/c" would be protocol "a" to QEMU; "./a:b/c" is a file. */
  if (path[0] == '/')
    return str_printf ("%s", path);
  return str_printf ("./%s", path);
}

int
chain_problem_add (chain_string_vector *v, const char *fmt, ...)
{
  va_list ap;
  char *s = NULL;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r == -1 || chain_string_vector_append (v, s) == -1) {
    if (r != -1)
      free (s);
    set_error (ENOMEM, "problem list");
    return -1;
  }
  return 0;
}

/* Compare the header with what the manifest and the chain say.  An
 * incremental disk without an expected backing file (its parent could
 * not tell) is not compared. */
static int
check_header (const char *path, const struct chain_disk *disk,
              const char *expected, const struct qcow2_info *info,
              chain_string_vector *errors, chain_string_vector *warnings)
{
  int r = 0;

  if (info->corrupt)
    r |= chain_problem_add (errors,
                            "image '%s' is marked corrupt (QEMU found an "
                            "inconsistency in it)",
                            path);
  if (info->virtual_size != disk->virtual_size)
    r |= chain_problem_add (errors,
                            "image '%s' has a virtual size of %llu bytes; "
                            "the manifest says %llu",
                            path, (unsigned long long) info->virtual_size,
                            (unsigned long long) disk->virtual_size);
  if (info->cluster_size != disk->cluster_size)
    r |= chain_problem_add (errors,
                            "image '%s' has %u-byte clusters; the manifest "
                            "says %u",
                            path, info->cluster_size, disk->cluster_size);
  if (disk->kind != CHAIN_KIND_INCREMENTAL && info->backing_file != NULL)
    r |= chain_problem_add (errors,
                            "image '%s' has backing file '%s' but disk '%s' "
                            "is a full backup that must have none",
                            path, info->backing_file, disk->name);
  else if (expected != NULL && info->backing_file == NULL)
    r |= chain_problem_add (errors,
                            "image '%s' has no backing file; it must be "
                            "'%s'",
                            path, expected);
  else if (expected != NULL && strcmp (info->backing_file, expected) != 0)
    r |= chain_problem_add (errors,
                            "image '%s' has backing file '%s'; it must be "
                            "'%s'",
                            path, info->backing_file, expected);
  else if (expected != NULL && info->backing_format == NULL)
    r |= chain_problem_add (warnings,
                            "image '%s' does not record the format of its "
                            "backing file",
                            path);
  else if (expected != NULL && strcmp (info->backing_format, "qcow2") != 0)
    r |= chain_problem_add (errors,
                            "image '%s' says its backing file is '%s', not "
                            "qcow2",
                            path, info->backing_format);
  return r == 0 ? 0 : -1;
}

int
chain_image_check_header (const char *path, const struct chain_disk *disk,
                          const char *expected_backing,
                          chain_string_vector *errors,
                          chain_string_vector *warnings, bool *readable)
{
  CLEANUP_CLOSE int fd = -1;
  struct qcow2_info info;
  int r;

  *readable = false;
  fd = open_image (path);
  if (fd == -1) {
    if (errno == ENOENT)
      return chain_problem_add (errors, "image '%s' is missing", path);
    return chain_problem_add (errors, "%s", get_error ());
  }
  if (qcow2_probe (fd, &info) == -1)
    return chain_problem_add (errors, "image '%s': %s", path, get_error ());
  *readable = true;
  r = check_header (path, disk, expected_backing, &info, errors, warnings);
  qcow2_info_release (&info);
  return r;
}
