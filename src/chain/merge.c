/* SPDX-License-Identifier: Apache-2.0 */
/* merge.c: rewrite a backup as standalone images of its point in time. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

/* One disk being rewritten. */
struct merge_disk {
  struct chain_disk *disk; /* in the manifest */
  char *image;             /* its image */
  char *source;            /* its image and chain, for qemu-img */
  char *temp;              /* the new one, beside it */
  uint64_t size;
  char hash[CHAIN_HASH_HEX_LEN + 1];
};

static void
add_line (chain_string_vector *done, char *line)
{
  if (line == NULL)
    return;
  debug (DEBUG_CHAIN, "merge: %s", line);
  if (chain_string_vector_append (done, line) == -1)
    free (line);
}

/* qemu-img convert of the image (through its backing chain) into temp,
 * with the manifest's cluster size and compression. */
static int
convert (const struct merge_disk *md)
{
  CLEANUP_FREE char *dst = chain_qemu_path (md->temp);
  struct command *cmd;
  int r;

  if (dst == NULL || (cmd = command_new ("qemu-img")) == NULL)
    return -1;
  command_add_args (cmd, "convert", "-O", "qcow2", NULL);
  if (md->disk->compression != CHAIN_COMPRESSION_NONE) {
    command_add_arg (cmd, "-c");
    command_add_arg (cmd, "-o");
    command_add_argf (cmd, "cluster_size=%" PRIu32 ",compression_type=%s",
                      md->disk->cluster_size,
                      chain_compression_name (md->disk->compression));
  }
  else {
    command_add_arg (cmd, "-o");
    command_add_argf (cmd, "cluster_size=%" PRIu32, md->disk->cluster_size);
  }
  command_add_args (cmd, md->source, dst, NULL);
  command_set_process_group (cmd, true);
  command_set_die_with_parent (cmd, true);
  r = command_run (cmd, NULL);
  command_free (cmd);
  return r;
}

/* The new image: written, durable, hashed. */
static int
write_disk (struct chain_lock *lock, const struct chain_manifest *m,
            struct merge_disk *md)
{
  CLEANUP_CLOSE int fd = -1;
  struct stat st;

  md->image = str_printf ("%s/%s/%s", lock->dir, m->id, md->disk->image);
  md->temp = str_printf ("%s/%s/" CHAIN_TEMP_PREFIX "merge-%s.XXXXXX",
                         lock->dir, m->id, md->disk->image);
  if (md->image == NULL || md->temp == NULL)
    return -1;
  fd = mkostemp (md->temp, O_CLOEXEC);
  if (fd == -1) {
    set_error (errno, "cannot create a file beside '%s'", md->image);
    free (md->temp);
    md->temp = NULL;
    return -1;
  }
  if (convert (md) == -1)
    return -1;
  close (fd);
  fd = open (md->temp, O_RDONLY | O_CLOEXEC);
  if (fd == -1 || fsync (fd) == -1 || fstat (fd, &st) == -1) {
    set_error (errno, "cannot sync '%s'", md->temp);
    return -1;
  }
  md->size = (uint64_t) st.st_size;
  return chain_hash_fd (fd, CHAIN_HASH_SEGMENTS, md->hash);
}

static int
set_string (char **dst, const char *src)
{
  char *s = strdup (src);

  if (s == NULL) {
    set_error (ENOMEM, "merge");
    return -1;
  }
  free (*dst);
  *dst = s;
  return 0;
}

/* The manifest of the merged backup: a full backup, its own chain. */
static int
update_manifest (struct chain_lock *lock, struct chain_manifest *m,
                 const struct merge_disk *mds, size_t n)
{
  CLEANUP_FREE char *path
    = str_printf ("%s/%s/" CHAIN_MANIFEST_FILE, lock->dir, m->id);
  CLEANUP_FREE char *reason
    = str_printf ("merged: backup %lld of chain %s made standalone",
                  (long long) m->position, m->chain);

  if (path == NULL || reason == NULL || set_string (&m->reason, reason) == -1)
    return -1;
  for (size_t i = 0; i < n; i++) {
    struct chain_disk *d = mds[i].disk;

    d->kind = CHAIN_KIND_FULL;
    d->bytes_written = mds[i].size;
    memcpy (d->hash, mds[i].hash, sizeof d->hash);
    d->hash_kind = CHAIN_HASH_SEGMENTS;
    if (set_string (&d->reason, "merged into a standalone image") == -1)
      return -1;
  }
  m->kind = CHAIN_KIND_FULL;
  m->parent[0] = '\0';
  strcpy (m->chain, m->id);
  m->position = 1;
  return chain_manifest_commit (m, path);
}

/* Rewrite the incremental disks of m; then its manifest. */
static int
merge_images (struct chain_lock *lock, struct chain_manifest *m,
              chain_string_vector *done)
{
  chain_manifest_vector chain = empty_vector;
  struct merge_disk *mds = calloc (m->disks.len + 1, sizeof *mds);
  size_t n = 0;
  int r = -1;

  if (mds == NULL) {
    set_error (ENOMEM, "merge");
    return -1;
  }
  /* The whole chain must be there to be read, and hold what was backed
   * up: a damaged chain is not rewritten into images with fresh hashes
   * that would hide the damage. */
  if (chain_backup_chain (lock->repo, lock->vm, m->id, &chain) == -1)
    goto out;
  for (size_t i = 0; i < m->disks.len; i++) {
    const char *name = m->disks.ptr[i].name;

    if (m->disks.ptr[i].kind != CHAIN_KIND_INCREMENTAL)
      continue;
    if (chain_disk_check (lock->repo, &chain, name, true) == -1) {
      error_prepend ("disk '%s': its chain is damaged (run 'knib verify')",
                     name);
      goto out;
    }
  }
  for (size_t i = 0; i < m->disks.len; i++) {
    if (m->disks.ptr[i].kind != CHAIN_KIND_INCREMENTAL)
      continue;
    mds[n].disk = &m->disks.ptr[i];
    mds[n].source
      = chain_disk_qemu_spec (lock->repo, &chain, m->disks.ptr[i].name);
    if (mds[n].source == NULL || write_disk (lock, m, &mds[n++]) == -1) {
      error_prepend ("disk '%s'", m->disks.ptr[i].name);
      goto out;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (rename (mds[i].temp, mds[i].image) == -1) {
      set_error (errno, "cannot rename '%s' to '%s'", mds[i].temp,
                 mds[i].image);
      goto out;
    }
    free (mds[i].temp);
    mds[i].temp = NULL;
  }
  {
    CLEANUP_FREE char *dir = str_printf ("%s/%s", lock->dir, m->id);
    if (dir == NULL || fs_fsync_path (dir) == -1)
      goto out;
  }
  add_line (done, str_printf ("backup %s: %zu image%s rewritten from "
                              "chain %s (%zu backup%s) as standalone "
                              "images",
                              m->id, n, n == 1 ? "" : "s", m->chain, chain.len,
                              chain.len == 1 ? "" : "s"));
  r = update_manifest (lock, m, mds, n);
  if (r == 0)
    add_line (done, str_printf ("backup %s: now a full backup, the "
                                "first of its own chain",
                                m->id));
out:
  for (size_t i = 0; i < n; i++) {
    if (mds[i].temp != NULL)
      unlink (mds[i].temp);
    free (mds[i].temp);
    free (mds[i].image);
    free (mds[i].source);
  }
  free (mds);
  chain_manifest_vector_release (&chain);
  return r;
}

/* The descendants of backup x (index in list) follow it: same chain,
 * positions one after the other. */
static int
renumber (struct chain_lock *lock, chain_manifest_vector *list, size_t x,
          chain_string_vector *done, unsigned depth)
{
  const struct chain_manifest *p = list->ptr[x];

  if (depth > list->len)
    return 0; /* a loop in corrupt data: stop */
  for (size_t i = 0; i < list->len; i++) {
    struct chain_manifest *m = list->ptr[i];

    if (m->kind != CHAIN_KIND_INCREMENTAL || strcmp (m->parent, p->id) != 0)
      continue;
    if (strcmp (m->chain, p->chain) != 0 || m->position != p->position + 1) {
      CLEANUP_FREE char *path
        = str_printf ("%s/%s/" CHAIN_MANIFEST_FILE, lock->dir, m->id);

      strcpy (m->chain, p->chain);
      m->position = p->position + 1;
      if (path == NULL || chain_manifest_commit (m, path) == -1)
        return -1;
      add_line (done, str_printf ("backup %s: now backup %lld of chain %s",
                                  m->id, (long long) m->position, m->chain));
    }
    if (renumber (lock, list, i, done, depth + 1) == -1)
      return -1;
  }
  return 0;
}

static int
renumber_descendants (struct chain_lock *lock, const char *id,
                      chain_string_vector *done)
{
  chain_manifest_vector list = empty_vector;
  int r = -1;

  if (chain_backup_list (lock->repo, lock->vm, &list, NULL) == -1)
    return -1;
  for (size_t i = 0; i < list.len; i++)
    if (strcmp (list.ptr[i]->id, id) == 0) {
      r = renumber (lock, &list, i, done, 0);
      break;
    }
  chain_manifest_vector_release (&list);
  return r;
}

static int
merge_locked (struct chain_lock *lock, const char *id,
              chain_string_vector *done, chain_delete_step_vector *deleted)
{
  struct chain_manifest *m = chain_backup_find (lock->repo, lock->vm, id);
  int r = -1;

  if (m == NULL)
    return -1;
  if (m->state == CHAIN_STATE_REMOVED) {
    set_error (-EINVAL,
               "backup '%s' was deleted (its files are kept only for the "
               "backups that depend on it): merge one of those instead",
               id);
    goto out;
  }
  if (m->kind == CHAIN_KIND_INCREMENTAL) {
    if (merge_images (lock, m, done) == -1)
      goto out;
  }
  else
    add_line (done, str_printf ("backup %s: a %s backup, standalone already",
                                id, chain_kind_name (m->kind)));
  /* Also after an interrupted merge: finish what it left. */
  if (renumber_descendants (lock, id, done) == -1
      || chain_delete_unneeded (lock, deleted) == -1)
    goto out;
  r = 0;
out:
  chain_manifest_free (m);
  return r;
}

int
chain_merge (struct chain_repo *repo, const char *vm, const char *id,
             chain_string_vector *done, chain_delete_step_vector *deleted)
{
  struct chain_manifest *m = chain_backup_find (repo, vm, id);
  struct chain_lock *lock;
  int r;

  if (m == NULL)
    return -1;
  lock = chain_lock_new (repo, m->vm, CHAIN_LOCK_EXCLUSIVE, "merge", 0);
  if (lock != NULL) {
    r = chain_pin_refuse (repo, m->vm, id) == -1
          ? -1
          : merge_locked (lock, id, done, deleted);
    chain_lock_free (lock);
  }
  else
    r = -1;
  if (r == -1)
    error_prepend ("merge of backup '%s' of vm '%s'", id, m->vm);
  chain_manifest_free (m);
  return r;
}
