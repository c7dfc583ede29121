/* SPDX-License-Identifier: Apache-2.0 */
/* list.c: a VM's backups, finding one by id, and walking a chain. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

/* The backup id a directory entry stands for: "<id>" or "<id>.partial". */
static bool
entry_id (const char *name, char id[CHAIN_ID_MAX], bool *partial)
{
  size_t n = strlen (name), sl = strlen (CHAIN_PARTIAL_SUFFIX);

  *partial = n > sl && strcmp (name + n - sl, CHAIN_PARTIAL_SUFFIX) == 0;
  if (*partial)
    n -= sl;
  if (n >= CHAIN_ID_MAX)
    return false;
  memcpy (id, name, n);
  id[n] = '\0';
  return chain_id_is_valid (id);
}

/* opendir on the VM's directory; NULL with errno ENOENT (and no error
 * recorded) when it does not exist. */
static DIR *
open_vm_dir (struct chain_repo *repo, const char *vm, char **dir)
{
  DIR *d;

  *dir = chain_repo_vm_dir (repo, vm);
  if (*dir == NULL)
    return NULL;
  d = opendir (*dir);
  if (d == NULL && errno != ENOENT)
    set_error (errno, "vm '%s': cannot read '%s'", vm, *dir);
  return d;
}

int
chain_vm_latest_id (struct chain_repo *repo, const char *vm, bool with_partial,
                    char out[CHAIN_ID_MAX])
{
  CLEANUP_FREE char *dir = NULL;
  DIR *d = open_vm_dir (repo, vm, &dir);
  struct dirent *e;
  char id[CHAIN_ID_MAX];
  bool partial;

  out[0] = '\0';
  if (d == NULL)
    return dir != NULL && errno == ENOENT ? 0 : -1;
  while ((e = readdir (d)) != NULL)
    if (entry_id (e->d_name, id, &partial) && (with_partial || !partial)
        && (out[0] == '\0' || chain_id_compare (id, out) > 0))
      strcpy (out, id);
  closedir (d);
  return 0;
}

static int
compare_manifests (const void *a, const void *b)
{
  const struct chain_manifest *const *ma = a, *const *mb = b;

  return chain_id_compare ((*ma)->id, (*mb)->id);
}

void
chain_manifest_vector_sort (chain_manifest_vector *v)
{
  if (v->len > 1) /* qsort's pointer must not be NULL, even for none */
    qsort (v->ptr, v->len, sizeof v->ptr[0], compare_manifests);
}

/* Record a problem with one backup, or fail when there is no list. */
static int
problem (chain_string_vector *problems)
{
  char *s;

  if (problems == NULL)
    return -1;
  s = strdup (get_error ());
  if (s == NULL || chain_string_vector_append (problems, s) == -1) {
    free (s);
    set_error (ENOMEM, "backup list");
    return -1;
  }
  return 0;
}

static int
list_entry (struct chain_repo *repo, const char *vm, const char *dir, int dfd,
            const char *name, chain_manifest_vector *backups,
            chain_string_vector *problems)
{
  char id[CHAIN_ID_MAX];
  bool partial;
  struct stat st;
  struct chain_manifest *m;

  if (!entry_id (name, id, &partial) || partial)
    return 0;
  if (fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
    set_error (errno, "backup '%s/%s'", dir, name);
    return problem (problems);
  }
  if (!S_ISDIR (st.st_mode)) {
    set_error (0, "backup '%s/%s' is not a directory", dir, name);
    return problem (problems);
  }
  m = chain_manifest_load_backup (repo, vm, id);
  if (m == NULL)
    return problem (problems);
  if (chain_manifest_vector_append (backups, m) == -1) {
    chain_manifest_free (m);
    set_error (ENOMEM, "backup list");
    return -1;
  }
  return 0;
}

int
chain_backup_list (struct chain_repo *repo, const char *vm,
                   chain_manifest_vector *backups,
                   chain_string_vector *problems)
{
  CLEANUP_FREE char *dir = NULL;
  DIR *d = open_vm_dir (repo, vm, &dir);
  struct dirent *e;
  size_t before = backups->len;
  int r = 0;

  if (d == NULL)
    return dir != NULL && errno == ENOENT ? 0 : -1;
  while (r == 0 && (e = readdir (d)) != NULL)
    r = list_entry (repo, vm, dir, dirfd (d), e->d_name, backups, problems);
  closedir (d);
  if (r == -1) {
    while (backups->len > before) /* leave the vector as it was */
      chain_manifest_free (backups->ptr[--backups->len]);
    if (before == 0) /* its storage too, which the caller may not free */
      chain_manifest_vector_reset (backups);
    return -1;
  }
  chain_manifest_vector_sort (backups);
  return 0;
}

static bool
backup_dir_exists (struct chain_repo *repo, const char *vm, const char *id)
{
  CLEANUP_FREE char *path
    = str_printf ("%s/" CHAIN_VMS_DIR "/%s/%s", repo->path, vm, id);
  struct stat st;

  return path != NULL && stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

static struct chain_manifest *
find_any_vm (struct chain_repo *repo, const char *id)
{
  chain_string_vector vms = empty_vector;
  const char *found = NULL, *other = NULL;
  struct chain_manifest *m = NULL;

  if (chain_vm_list (repo, &vms) == -1)
    return NULL;
  for (size_t i = 0; i < vms.len && other == NULL; i++) {
    if (!backup_dir_exists (repo, vms.ptr[i], id))
      continue;
    if (found == NULL)
      found = vms.ptr[i];
    else
      other = vms.ptr[i];
  }
  if (found == NULL)
    set_error (0, "no backup '%s' in repository '%s'", id, repo->path);
  else if (other != NULL)
    set_error (0,
               "backup id '%s' is ambiguous: vms '%s' and '%s' both have "
               "it; name the vm",
               id, found, other);
  else
    m = chain_manifest_load_backup (repo, found, id);
  if (found == NULL)
    errno = ENOENT;
  else if (other != NULL)
    errno = EINVAL;
  chain_string_vector_release (&vms);
  return m;
}

struct chain_manifest *
chain_backup_find (struct chain_repo *repo, const char *vm, const char *id)
{
  if (id == NULL || !chain_id_is_valid (id)) {
    set_error (-EINVAL,
               "invalid backup id '%s': ids look like 20261123T203015Z",
               id ? id : "");
    return NULL;
  }
  if (vm == NULL)
    return find_any_vm (repo, id);
  if (name_check ("vm", vm) == -1)
    return NULL;
  if (!backup_dir_exists (repo, vm, id)) {
    set_error (-ENOENT, "vm '%s' has no backup '%s' in repository '%s'", vm, id,
               repo->path);
    return NULL;
  }
  return chain_manifest_load_backup (repo, vm, id);
}

/* Load the parent of m and check the link.  NULL with set_error. */
static struct chain_manifest *
load_parent (struct chain_repo *repo, const struct chain_manifest *m)
{
  struct chain_manifest *p;

  p = chain_manifest_load_backup (repo, m->vm, m->parent);
  if (p == NULL && errno == ENOENT) {
    set_error (-ENOENT,
               "backup '%s' of vm '%s': its parent '%s' is missing from "
               "the repository: the chain is broken",
               m->id, m->vm, m->parent);
    return NULL;
  }
  if (p == NULL) {
    error_prepend ("backup '%s' of vm '%s': parent", m->id, m->vm);
    return NULL;
  }
  if (p->kind == CHAIN_KIND_ISOLATED)
    jsonutil_invalid ("backup '%s' of vm '%s': its parent '%s' is an isolated "
                      "backup: the chain is broken",
                      m->id, m->vm, p->id);
  else if (strcmp (p->chain, m->chain) != 0)
    jsonutil_invalid (
      "backup '%s' of vm '%s': its parent '%s' belongs to chain "
      "'%s', not '%s': the chain is broken",
      m->id, m->vm, p->id, p->chain, m->chain);
  else if (p->position != m->position - 1)
    jsonutil_invalid ("backup '%s' of vm '%s': its parent '%s' is at position "
                      "%lld, not %lld: the chain is broken",
                      m->id, m->vm, p->id, (long long) p->position,
                      (long long) m->position - 1);
  else
    return p;
  chain_manifest_free (p);
  return NULL;
}

int
chain_backup_chain (struct chain_repo *repo, const char *vm, const char *id,
                    chain_manifest_vector *chain)
{
  chain_manifest_vector walk = empty_vector;
  struct chain_manifest *m = chain_backup_find (repo, vm, id);

  while (m != NULL) {
    if (chain_manifest_vector_append (&walk, m) == -1) {
      chain_manifest_free (m);
      set_error (ENOMEM, "chain");
      goto fail;
    }
    if (m->kind != CHAIN_KIND_INCREMENTAL)
      break;
    m = load_parent (repo, m);
    if (m == NULL)
      goto fail;
  }
  if (m == NULL)
    goto fail;
  for (size_t i = walk.len; i > 0; i--) {
    if (chain_manifest_vector_append (chain, walk.ptr[i - 1]) == -1) {
      set_error (ENOMEM, "chain");
      goto fail;
    }
    walk.ptr[i - 1] = NULL;
  }
  chain_manifest_vector_reset (&walk);
  return 0;
fail:
  chain_manifest_vector_release (&walk);
  return -1;
}

char *
chain_backup_image_path (struct chain_repo *repo,
                         const struct chain_manifest *m,
                         const struct chain_disk *disk)
{
  if (name_check ("vm", m->vm) == -1 || name_check ("image", disk->image) == -1)
    return NULL;
  if (!chain_id_is_valid (m->id)) {
    jsonutil_invalid ("invalid backup id '%s'", m->id);
    return NULL;
  }
  return str_printf ("%s/" CHAIN_VMS_DIR "/%s/%s/%s", repo->path, m->vm, m->id,
                     disk->image);
}

char *
chain_backup_read_file (struct chain_repo *repo, const struct chain_manifest *m,
                        const char *name)
{
  CLEANUP_FREE char *path = chain_backup_file_path (repo, m, name);
  size_t len;

  return path ? fs_read_file (path, "backup file", 16u << 20, &len) : NULL;
}
