/* SPDX-License-Identifier: Apache-2.0 */
/* repo.c: open, create and refuse repositories; the clock; the VM list. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

static bool
dir_is_empty (const char *path, bool *empty)
{
  DIR *d = opendir (path);
  struct dirent *e;

  if (d == NULL) {
    set_error (errno, "repository '%s': cannot read it", path);
    return false;
  }
  *empty = true;
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0) {
      *empty = false;
      break;
    }
  closedir (d);
  return true;
}

/* Check knib-repo.json: the version first, so that a newer repository
 * says so rather than "unknown key". */
static bool
repo_id_is_valid (const char *id)
{
  if (strlen (id) != CHAIN_REPO_ID_LEN)
    return false;
  for (size_t i = 0; i < CHAIN_REPO_ID_LEN; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return false;
  return true;
}

/* A group name as knib-repo.json may hold it: what groupadd accepts. */
static bool
group_name_is_valid (const char *g)
{
  size_t n = strlen (g);

  if (n == 0 || n > 32 || g[0] == '-')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((g[i] >= 'a' && g[i] <= 'z') || (g[i] >= 'A' && g[i] <= 'Z')
          || (g[i] >= '0' && g[i] <= '9') || g[i] == '_' || g[i] == '-'
          || g[i] == '.'))
      return false;
  return true;
}

/* *group: the group the repository is shared with (malloc'd), NULL when
 * it is not. */
static int
check_repo_file (const char *path, const char *file,
                 char id[CHAIN_REPO_ID_LEN + 1], char **group)
{
  json_t *j = jsonutil_load (file, "repository file");
  const json_t *format, *version;
  const char *key;
  json_t *v;
  int r = -1;

  *group = NULL;
  if (j == NULL)
    return -1;
  format = json_object_get (j, "format");
  version = json_object_get (j, "version");
  if (!json_is_string (format)
      || strcmp (json_string_value (format), CHAIN_REPO_FORMAT) != 0) {
    set_error (0, "'%s' is not a knib repository file (no \"format\": \"%s\")",
               file, CHAIN_REPO_FORMAT);
    goto out;
  }
  if (!json_is_integer (version)) {
    set_error (0, "repository file '%s': 'version' must be an integer", file);
    goto out;
  }
  if (json_integer_value (version) != CHAIN_REPO_VERSION) {
    set_error (0,
               "repository '%s' has format version %lld; this knib reads "
               "version %d",
               path, (long long) json_integer_value (version),
               CHAIN_REPO_VERSION);
    goto out;
  }
  json_object_foreach (j, key, v)
  {
    if (strcmp (key, "id") == 0) {
      if (!json_is_string (v) || !repo_id_is_valid (json_string_value (v))) {
        set_error (0,
                   "repository file '%s': 'id' must be %d lowercase hex "
                   "digits",
                   file, CHAIN_REPO_ID_LEN);
        goto out;
      }
      snprintf (id, CHAIN_REPO_ID_LEN + 1, "%s", json_string_value (v));
    }
    else if (strcmp (key, "group") == 0) {
      if (!json_is_string (v) || !group_name_is_valid (json_string_value (v))) {
        set_error (0, "repository file '%s': 'group' must be a group name",
                   file);
        goto out;
      }
      free (*group);
      *group = strdup (json_string_value (v));
      if (*group == NULL) {
        set_error (ENOMEM, "strdup");
        goto out;
      }
    }
    else if (strcmp (key, "format") != 0 && strcmp (key, "version") != 0) {
      set_error (0, "repository file '%s': unknown key '%s'", file, key);
      goto out;
    }
  }
  r = 0;
out:
  json_decref (j);
  if (r == -1) {
    free (*group);
    *group = NULL;
    errno = EINVAL;
  }
  return r;
}

/* A new random repository id. */
static int
new_repo_id (char id[CHAIN_REPO_ID_LEN + 1])
{
  unsigned char b[CHAIN_REPO_ID_LEN / 2];

  if (getrandom (b, sizeof b, 0) != (ssize_t) sizeof b) {
    set_error (errno, "cannot make a repository id");
    return -1;
  }
  for (size_t i = 0; i < sizeof b; i++)
    snprintf (id + 2 * i, 3, "%02x", b[i]);
  return 0;
}

static int
write_repo_file (const char *path, const char *id, const char *group)
{
  json_t *j;
  int r;

  /* A repository made before ids (id "") keeps having none. */
  j = json_pack ("{s:s, s:i}", "format", CHAIN_REPO_FORMAT, "version",
                 CHAIN_REPO_VERSION);
  if (j != NULL && id[0] != '\0'
      && json_object_set_new (j, "id", json_string (id)) == -1) {
    json_decref (j);
    j = NULL;
  }
  if (j != NULL && group != NULL
      && json_object_set_new (j, "group", json_string (group)) == -1) {
    json_decref (j);
    j = NULL;
  }
  if (j == NULL) {
    set_error (ENOMEM, "json_pack");
    return -1;
  }
  r = jsonutil_commit (j, path, CHAIN_REPO_FILE, "repository file");
  json_decref (j);
  return r;
}

/* Make an empty directory a repository.  knib-repo.json is written last:
 * until it exists the directory is not a repository. */
static int
init_repo (const char *path, char id[CHAIN_REPO_ID_LEN + 1])
{
  CLEANUP_FREE char *vms = str_printf ("%s/" CHAIN_VMS_DIR, path);

  if (vms == NULL || fs_mkdir (vms) == -1 || new_repo_id (id) == -1
      || write_repo_file (path, id, NULL) == -1)
    return -1;
  debug (DEBUG_CHAIN, "created repository '%s' (id %s)", path, id);
  return 0;
}

/* The repository directory, open and locked (LOCK_EX): runs that make
 * or rewrite knib-repo.json take turns.  The descriptor, or -1
 * (set_error). */
static int
lock_repo_dir (const char *path)
{
  int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd == -1 || flock (fd, LOCK_EX) == -1) {
    set_error (errno, "repository '%s'", path);
    if (fd != -1)
      close (fd);
    return -1;
  }
  return fd;
}

/* Make the directory a repository unless another run just did: under
 * the lock of the directory, so that of several runs that find it empty
 * or new at once (backups of many VMs into a new repository) one makes
 * it and the others open what it made. */
static int
create_locked (const char *path, const char *file,
               char id[CHAIN_REPO_ID_LEN + 1], char **group)
{
  CLEANUP_CLOSE int fd = -1;
  struct stat st;
  bool empty;
  int r = -1;

  fd = lock_repo_dir (path);
  if (fd == -1)
    return -1;
  if (lstat (file, &st) == 0)
    r = check_repo_file (path, file, id, group);
  else if (errno != ENOENT)
    set_error (errno, "repository file '%s'", file);
  else if (dir_is_empty (path, &empty)) {
    if (empty)
      r = init_repo (path, id);
    else
      set_error (-EINVAL,
                 "'%s' is not empty and is not a knib repository: knib "
                 "will not write into it; choose a new or empty directory",
                 path);
  }
  flock (fd, LOCK_UN);
  return r;
}

static int
open_or_create (const char *path, bool create, char id[CHAIN_REPO_ID_LEN + 1],
                char **group)
{
  CLEANUP_FREE char *file = str_printf ("%s/" CHAIN_REPO_FILE, path);
  struct stat st;

  if (file == NULL)
    return -1;
  if (stat (path, &st) == -1) {
    if (errno != ENOENT || !create) {
      set_error (errno, "repository '%s'", path);
      return -1;
    }
    if (mkdir (path, 0700) == -1 && errno != EEXIST) {
      set_error (errno, "cannot create repository '%s'", path);
      return -1;
    }
    return create_locked (path, file, id, group);
  }
  if (!S_ISDIR (st.st_mode)) {
    set_error (ENOTDIR, "repository '%s'", path);
    return -1;
  }
  if (lstat (file, &st) == 0)
    return check_repo_file (path, file, id, group);
  if (errno != ENOENT) {
    set_error (errno, "repository file '%s'", file);
    return -1;
  }
  if (create)
    return create_locked (path, file, id, group);
  set_error (-EINVAL,
             "'%s' is not a knib repository (it has no %s): create one "
             "first",
             path, CHAIN_REPO_FILE);
  return -1;
}

struct chain_repo *
chain_repo_open (const char *path, bool create)
{
  struct chain_repo *repo;
  size_t n;

  if (path == NULL || path[0] == '\0') {
    set_error (EINVAL, "no repository path given");
    return NULL;
  }
  repo = calloc (1, sizeof *repo);
  if (repo == NULL || (repo->path = strdup (path)) == NULL) {
    set_error (ENOMEM, "repository");
    free (repo);
    return NULL;
  }
  n = strlen (repo->path);
  while (n > 1 && repo->path[n - 1] == '/')
    repo->path[--n] = '\0';
  repo->gid = (gid_t) -1;
  if (open_or_create (repo->path, create, repo->id, &repo->group) == -1) {
    chain_repo_free (repo);
    return NULL;
  }
  if (chain_share_resolve (repo->group, &repo->gid) == -1) {
    error_prepend ("repository '%s' is shared with a group", repo->path);
    chain_repo_free (repo);
    return NULL;
  }
  return repo;
}

void
chain_repo_free (struct chain_repo *repo)
{
  if (repo == NULL)
    return;
  free (repo->path);
  free (repo->group);
  free (repo);
}

const char *
chain_repo_path (const struct chain_repo *repo)
{
  return repo->path;
}

const char *
chain_repo_id (const struct chain_repo *repo)
{
  return repo->id;
}

/* An update of knib-repo.json: id and *group (malloc'd, NULL for none)
 * are what the file holds now; it may change them.  1: rewrite the file
 * with them, 0: leave it as it is, -1 (set_error): fail. */
typedef int (*repo_file_update_fn) (struct chain_repo *repo,
                                    char id[CHAIN_REPO_ID_LEN + 1],
                                    char **group, void *opaque);

/* What follows the rewrite, still under the lock: 0, or -1 (set_error). */
typedef int (*repo_file_then_fn) (struct chain_repo *repo, void *opaque);

/* Apply update to knib-repo.json: under the lock of the repository's
 * directory (two runs at once agree), the file is read again, updated and
 * rewritten with everything else it holds; then (unless NULL) runs before
 * the lock goes.  repo's id is the file's once it succeeded. */
static int
repo_file_update (struct chain_repo *repo, repo_file_update_fn update,
                  repo_file_then_fn then, void *opaque)
{
  CLEANUP_FREE char *file = str_printf ("%s/" CHAIN_REPO_FILE, repo->path);
  CLEANUP_CLOSE int fd = -1;
  char id[CHAIN_REPO_ID_LEN + 1] = "";
  char *group = NULL;
  int r = -1, u;

  if (file == NULL)
    return -1;
  fd = lock_repo_dir (repo->path);
  if (fd == -1)
    return -1;
  if (check_repo_file (repo->path, file, id, &group) == -1
      || (u = update (repo, id, &group, opaque)) == -1
      || (u == 1 && write_repo_file (repo->path, id, group) == -1)
      || (then != NULL && then (repo, opaque) == -1))
    goto out;
  memcpy (repo->id, id, sizeof id);
  r = 0;
out:
  free (group);
  flock (fd, LOCK_UN);
  return r;
}

/* A new id for a file without one. */
static int
add_id (struct chain_repo *repo __attribute__ ((unused)),
        char id[CHAIN_REPO_ID_LEN + 1], char **group __attribute__ ((unused)),
        void *opaque __attribute__ ((unused)))
{
  if (id[0] != '\0')
    return 0;
  return new_repo_id (id) == -1 ? -1 : 1;
}

int
chain_repo_ensure_id (struct chain_repo *repo)
{
  if (repo->id[0] != '\0')
    return 0;
  if (repo_file_update (repo, add_id, NULL, NULL) == -1)
    return -1;
  debug (DEBUG_CHAIN, "repository '%s': id %s", repo->path, repo->id);
  return 0;
}

const char *
chain_repo_group (const struct chain_repo *repo)
{
  return repo->group;
}

struct share {
  const char *group; /* NULL: private */
  gid_t gid;
};

/* The new group, recorded when it changes. */
static int
set_group (struct chain_repo *repo __attribute__ ((unused)),
           char id[CHAIN_REPO_ID_LEN + 1] __attribute__ ((unused)),
           char **group, void *opaque)
{
  const struct share *sh = opaque;
  char *copy = NULL;

  if ((*group == NULL) == (sh->group == NULL)
      && (*group == NULL || strcmp (*group, sh->group) == 0))
    return 0;
  if (sh->group != NULL && (copy = strdup (sh->group)) == NULL) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  free (*group);
  *group = copy;
  return 1;
}

/* Then the modes and group of everything in the repository (the file
 * just rewritten too), under the same lock: two runs at once leave the
 * files as knib-repo.json says. */
static int
apply_group (struct chain_repo *repo, void *opaque)
{
  const struct share *sh = opaque;

  if (chain_share_apply (repo->path, sh->gid) == -1) {
    error_prepend ("repository '%s'", repo->path);
    return -1;
  }
  return 0;
}

int
chain_repo_share (struct chain_repo *repo, const char *group)
{
  struct share sh = { .group = group };
  char *copy = NULL;

  if (sh.group != NULL && sh.group[0] == '\0')
    sh.group = NULL;
  if (sh.group != NULL && !group_name_is_valid (sh.group)) {
    set_error (-EINVAL, "'%s' is not a group name", sh.group);
    return -1;
  }
  if (chain_share_resolve (sh.group, &sh.gid) == -1)
    return -1;
  if (sh.group != NULL && (copy = strdup (sh.group)) == NULL) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  if (repo_file_update (repo, set_group, apply_group, &sh) == -1) {
    free (copy);
    return -1;
  }
  free (repo->group);
  repo->group = copy;
  repo->gid = sh.gid;
  debug (DEBUG_CHAIN, "repository '%s': %s%s", repo->path,
         sh.group ? "shared for reading with group " : "private",
         sh.group ? sh.group : "");
  return 0;
}

void
chain_repo_set_clock (struct chain_repo *repo, chain_clock_fn fn, void *opaque)
{
  repo->clock = fn;
  repo->clock_opaque = opaque;
}

int64_t
chain_repo_now (const struct chain_repo *repo)
{
  if (repo->clock)
    return repo->clock (repo->clock_opaque);
  return (int64_t) time (NULL);
}

char *
chain_repo_vm_dir (const struct chain_repo *repo, const char *vm)
{
  if (name_check ("vm", vm) == -1)
    return NULL;
  return str_printf ("%s/" CHAIN_VMS_DIR "/%s", repo->path, vm);
}

static int
compare_strings (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

int
chain_vm_list (struct chain_repo *repo, chain_string_vector *vms)
{
  CLEANUP_FREE char *dir = str_printf ("%s/" CHAIN_VMS_DIR, repo->path);
  DIR *d;
  struct dirent *e;
  struct stat st;

  if (dir == NULL)
    return -1;
  d = opendir (dir);
  if (d == NULL && errno == ENOENT)
    return 0;
  if (d == NULL) {
    set_error (errno, "repository '%s': cannot read '%s'", repo->path, dir);
    return -1;
  }
  while ((e = readdir (d)) != NULL) {
    char *name;

    if (!name_is_valid (e->d_name)
        || fstatat (dirfd (d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1
        || !S_ISDIR (st.st_mode))
      continue;
    name = strdup (e->d_name);
    if (name == NULL || chain_string_vector_append (vms, name) == -1) {
      free (name);
      closedir (d);
      set_error (ENOMEM, "vm list");
      return -1;
    }
  }
  closedir (d);
  if (vms->len > 0) /* an empty vector's ptr is NULL: qsort's is nonnull */
    qsort (vms->ptr, vms->len, sizeof vms->ptr[0], compare_strings);
  return 0;
}
