/* SPDX-License-Identifier: Apache-2.0 */
/* restore-journal.c: the record of a restore in place, and the removal of
 * what a killed one left beside the VM's images. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "internal.h"

/* vms/<vm>/restoring.json, while a restore in place writes beside the
 * VM's images: {"backup": ID, "phase": "writing" | "installing",
 * "images": [PATH...]}.  A killed restore leaves it, and its temporary
 * files; chain_restore_recover removes them. */
#define RESTORE_JOURNAL "restoring.json"

int
chain_restore_journal_write (struct chain_lock *lock, const char *id,
                             const char *phase, const char *const *images,
                             size_t n)
{
  json_auto_t *list = json_array ();
  json_auto_t *j = NULL;

  if (chain_lock_check_exclusive (lock, lock->repo, "restore in place") == -1)
    return -1;
  for (size_t i = 0; list != NULL && i < n; i++)
    if (json_array_append_new (list, json_string (images[i])) == -1) {
      json_decref (list);
      list = NULL;
    }
  j = list ? json_pack ("{s:s, s:s, s:O}", "backup", id, "phase", phase,
                        "images", list)
           : NULL;
  if (j == NULL) {
    set_error (ENOMEM, "restore journal");
    return -1;
  }
  return jsonutil_commit (j, lock->dir, RESTORE_JOURNAL, "restore journal");
}

int
chain_restore_journal_remove (struct chain_lock *lock)
{
  CLEANUP_FREE char *path = str_printf ("%s/" RESTORE_JOURNAL, lock->dir);

  if (path == NULL)
    return -1;
  if (unlink (path) == -1) {
    if (errno == ENOENT)
      return 0;
    set_error (errno, "restore journal '%s'", path);
    return -1;
  }
  return fs_fsync_path (lock->dir);
}

/* Remove the temporary files of image path ("<dir>/.knib-restore-<name>.
 * XXXXXX", regular files only); *found says whether there were any. */
static int
remove_image_temps (const char *path, const char *id, bool *found,
                    chain_string_vector *done)
{
  CLEANUP_FREE char *dir_copy = strdup (path);
  CLEANUP_FREE char *base_copy = strdup (path);
  CLEANUP_FREE char *prefix = NULL;
  const char *dir, *base;
  chain_string_vector names = empty_vector;
  struct dirent *e;
  DIR *d;
  int r = 0;

  *found = false;
  if (dir_copy == NULL || base_copy == NULL) {
    set_error (ENOMEM, "restore recovery");
    return -1;
  }
  dir = dirname (dir_copy);
  base = basename (base_copy);
  prefix = str_printf (CHAIN_RESTORE_TEMP_PREFIX "%s.", base);
  if (prefix == NULL)
    return -1;
  d = opendir (dir);
  if (d == NULL)
    return 0; /* the image's directory went: nothing of ours is there */
  while ((e = readdir (d)) != NULL) {
    size_t n = strlen (prefix);
    char *name;

    if (strncmp (e->d_name, prefix, n) != 0 || strlen (e->d_name + n) != 6)
      continue;
    name = str_printf ("%s/%s", dir, e->d_name);
    if (name == NULL || chain_string_vector_append (&names, name) == -1) {
      free (name);
      r = -1;
      break;
    }
  }
  closedir (d);
  for (size_t i = 0; r == 0 && i < names.len; i++) {
    struct stat st;

    if (lstat (names.ptr[i], &st) == -1 || !S_ISREG (st.st_mode))
      continue;
    if (unlink (names.ptr[i]) == -1) {
      set_error (errno, "cannot remove '%s'", names.ptr[i]);
      r = -1;
      break;
    }
    *found = true;
    chain_note_add (done, str_printf ("removed '%s', left by a restore of "
                                      "backup %s that was cut short",
                                      names.ptr[i], id));
  }
  chain_string_vector_release (&names);
  if (r == 0 && *found)
    r = fs_fsync_path (dir);
  return r;
}

int
chain_restore_recover (struct chain_lock *lock, chain_string_vector *done)
{
  CLEANUP_FREE char *path = NULL;
  const char *id, *phase;
  json_t *images, *img;
  json_auto_t *j = NULL;
  CLEANUP_FREE char *replaced = strdup (""), *kept = strdup ("");
  size_t i;

  if (chain_lock_check_exclusive (lock, lock ? lock->repo : NULL,
                                  "restore recovery")
      == -1)
    return -1;
  path = str_printf ("%s/" RESTORE_JOURNAL, lock->dir);
  if (path == NULL || replaced == NULL || kept == NULL)
    return -1;
  j = jsonutil_load (path, "restore journal");
  if (j == NULL && errno == ENOENT) {
    error_clear ();
    return 0;
  }
  if (j == NULL)
    return -1;
  images = json_object_get (j, "images");
  if (jsonutil_get_string (j, "backup", "restore journal: ", false, &id) == -1
      || jsonutil_get_string (j, "phase", "restore journal: ", false, &phase)
           == -1
      || !json_is_array (images) || !chain_id_is_valid (id)) {
    error_prepend ("restore journal '%s'", path);
    return -1;
  }
  json_array_foreach (images, i, img)
  {
    const char *p = json_string_value (img);
    char **list;
    char *more;
    bool found;

    if (p == NULL || p[0] != '/') {
      set_error (-EINVAL,
                 "restore journal '%s': an image is not an absolute path",
                 path);
      return -1;
    }
    if (remove_image_temps (p, id, &found, done) == -1)
      return -1;
    list = found ? &kept : &replaced;
    more = str_printf ("%s%s'%s'", *list, (*list)[0] ? ", " : "", p);
    if (more == NULL)
      return -1;
    free (*list);
    *list = more;
  }
  /* Installing: the images without a temporary file left were replaced. */
  if (strcmp (phase, "installing") == 0 && replaced[0] && kept[0])
    chain_note_add (done, str_printf ("warning: the restore of backup %s was "
                                      "cut short while it replaced the "
                                      "images: %s hold it, %s do not: "
                                      "restore it again",
                                      id, replaced, kept));
  else if (kept[0] || replaced[0])
    debug (DEBUG_CHAIN, "restore of %s cut short in phase %s", id, phase);
  return chain_restore_journal_remove (lock);
}
