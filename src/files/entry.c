/* SPDX-License-Identifier: Apache-2.0 */
/* entry.c: entries of a backup's filesystems: stat, listing, checksums. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

/* Names per lstatnslist call (its reply has a size limit). */
#define STAT_BATCH 1000

const char *
files_type_name (enum files_type t)
{
  switch (t) {
  case FILES_REGULAR:
    return "file";
  case FILES_DIRECTORY:
    return "directory";
  case FILES_SYMLINK:
    return "symlink";
  case FILES_CHARDEV:
    return "char";
  case FILES_BLOCKDEV:
    return "block";
  case FILES_FIFO:
    return "fifo";
  case FILES_SOCKET:
    return "socket";
  }
  return "?";
}

char
files_type_letter (enum files_type t)
{
  switch (t) {
  case FILES_REGULAR:
    return '-';
  case FILES_DIRECTORY:
    return 'd';
  case FILES_SYMLINK:
    return 'l';
  case FILES_CHARDEV:
    return 'c';
  case FILES_BLOCKDEV:
    return 'b';
  case FILES_FIFO:
    return 'p';
  case FILES_SOCKET:
    return 's';
  }
  return '?';
}

void
files_entry_release (struct files_entry *e)
{
  free (e->path);
  free (e->target);
  e->path = e->target = NULL;
}

void
files_entry_vector_release (files_entry_vector *v)
{
  for (size_t i = 0; i < v->len; i++)
    files_entry_release (&v->ptr[i]);
  files_entry_vector_reset (v);
}

void
files_entry_from_stat (struct files_entry *e, const struct guestfs_statns *st)
{
  mode_t m = (mode_t) st->st_mode;

  e->type = S_ISDIR (m)    ? FILES_DIRECTORY
            : S_ISLNK (m)  ? FILES_SYMLINK
            : S_ISCHR (m)  ? FILES_CHARDEV
            : S_ISBLK (m)  ? FILES_BLOCKDEV
            : S_ISFIFO (m) ? FILES_FIFO
            : S_ISSOCK (m) ? FILES_SOCKET
                           : FILES_REGULAR;
  e->mode = (uint32_t) (m & 07777);
  e->uid = st->st_uid;
  e->gid = st->st_gid;
  e->size = st->st_size;
  e->nlink = st->st_nlink;
  e->atime_sec = st->st_atime_sec;
  e->atime_nsec = st->st_atime_nsec;
  e->mtime_sec = st->st_mtime_sec;
  e->mtime_nsec = st->st_mtime_nsec;
}

/* The deepest parent of path that exists (for "no such file" errors). */
static char *
closest_parent (struct files_session *s, const struct files_path *p)
{
  CLEANUP_FREE char *cur = strdup (p->path);

  if (cur == NULL)
    return NULL;
  for (;;) {
    char *slash = strrchr (cur, '/');
    CLEANUP_FREE char *full = NULL;

    if (slash == NULL || slash == cur)
      return strdup ("/");
    *slash = '\0';
    full = files_join (p->root, cur);
    if (full != NULL && guestfs_is_dir (s->g, full) == 1)
      return strdup (cur);
  }
}

int
files_session_stat (struct files_session *s, const struct files_path *p,
                    struct files_entry *out)
{
  CLEANUP_FREE char *full = files_join (p->root, p->path);
  struct guestfs_statns *st;

  memset (out, 0, sizeof *out);
  if (full == NULL)
    return -1;
  if (guestfs_exists (s->g, full) == 0
      && guestfs_is_symlink (s->g, full) == 0) {
    CLEANUP_FREE char *parent = closest_parent (s, p);

    set_error (-ENOENT,
               "'%s' does not exist in backup '%s' (the closest parent "
               "that does is '%s')",
               p->display, files_session_manifest (s)->id,
               parent ? parent : "/");
    return -1;
  }
  st = guestfs_lstatns (s->g, full);
  if (st == NULL) {
    files_guestfs_error (s->g, p->display);
    return -1;
  }
  files_entry_from_stat (out, st);
  guestfs_free_statns (st);
  out->path = strdup (p->path);
  if (out->type == FILES_SYMLINK)
    out->target = guestfs_readlink (s->g, full);
  if (out->path == NULL || (out->type == FILES_SYMLINK && !out->target)) {
    files_entry_release (out);
    set_error (ENOMEM, "entry");
    return -1;
  }
  return 0;
}

static char *
child_path (const char *dir, const char *name)
{
  char *s;

  if (asprintf (&s, "%s/%s", strcmp (dir, "/") == 0 ? "" : dir, name) == -1)
    return NULL;
  return s;
}

/* Stat names[0..n) of directory full (appliance path) whose guest path
 * is dir, appending to out. */
static int
stat_batch (struct files_session *s, const char *full, const char *dir,
            char **names, size_t n, files_entry_vector *out)
{
  char *saved = names[n];
  struct guestfs_statns_list *sts;
  char **links = NULL;
  int r = 0;

  names[n] = NULL;
  sts = guestfs_lstatnslist (s->g, full, names);
  if (sts != NULL)
    links = guestfs_readlinklist (s->g, full, names);
  names[n] = saved;
  if (sts == NULL || links == NULL || sts->len != n) {
    files_guestfs_error (s->g, dir);
    if (sts)
      guestfs_free_statns_list (sts);
    if (links)
      for (size_t i = 0; links[i] != NULL; i++)
        free (links[i]);
    free (links);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    struct files_entry e = { NULL };

    files_entry_from_stat (&e, &sts->val[i]);
    e.path = child_path (dir, names[i]);
    if (e.type == FILES_SYMLINK) {
      e.target = links[i];
      links[i] = NULL;
    }
    if (r == 0
        && (e.path == NULL || files_entry_vector_append (out, e) == -1)) {
      set_error (ENOMEM, "entry");
      r = -1;
    }
    if (r == -1)
      files_entry_release (&e);
  }
  for (size_t i = 0; i < n; i++)
    free (links[i]);
  free (links);
  guestfs_free_statns_list (sts);
  return r;
}

static int
list_dir (struct files_session *s, const struct files_path *p, const char *dir,
          bool recursive, files_entry_vector *out)
{
  CLEANUP_FREE char *full = files_join (p->root, dir);
  char **names;
  size_t n = 0, first = out->len;
  int r = 0;

  if (full == NULL)
    return -1;
  names = guestfs_ls (s->g, full);
  if (names == NULL) {
    files_guestfs_error (s->g, dir);
    return -1;
  }
  while (names[n] != NULL)
    n++;
  for (size_t i = 0; r == 0 && i < n; i += STAT_BATCH)
    r = stat_batch (s, full, dir, names + i,
                    n - i < STAT_BATCH ? n - i : STAT_BATCH, out);
  for (size_t i = 0; i < n; i++)
    free (names[i]);
  free (names);
  if (!recursive)
    return r;
  for (size_t i = first, end = out->len; r == 0 && i < end; i++)
    if (out->ptr[i].type == FILES_DIRECTORY) {
      CLEANUP_FREE char *sub = strdup (out->ptr[i].path);

      r = sub ? list_dir (s, p, sub, true, out) : -1;
    }
  return r;
}

static int
compare_entries (const void *a, const void *b)
{
  const struct files_entry *x = a, *y = b;

  return strcmp (x->path, y->path);
}

int
files_session_list (struct files_session *s, const struct files_path *p,
                    bool recursive, files_entry_vector *out)
{
  size_t first = out->len;

  if (list_dir (s, p, p->path, recursive, out) == -1)
    return -1;
  if (out->len - first > 1) /* no arithmetic on an empty vector's NULL */
    qsort (out->ptr + first, out->len - first, sizeof out->ptr[0],
           compare_entries);
  return 0;
}

char *
files_session_checksum (struct files_session *s, const struct files_path *p,
                        const char *path)
{
  CLEANUP_FREE char *full = files_join (p->root, path);
  char *sum;

  if (full == NULL)
    return NULL;
  sum = guestfs_checksum (s->g, "sha256", full);
  if (sum == NULL)
    files_guestfs_error (s->g, path);
  return sum;
}
