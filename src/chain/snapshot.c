/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot.c: snapshots.json, a VM's disk-only snapshots, and the rules of
 * which layer goes or is merged when a snapshot is deleted. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "internal.h"

#define SNAPS_FILE "snapshots.json"

void
chain_snap_file_vector_release (chain_snap_file_vector *v)
{
  for (size_t i = 0; i < v->len; i++) {
    free (v->ptr[i].disk);
    free (v->ptr[i].file);
  }
  chain_snap_file_vector_reset (v);
}

static void
snap_release (struct chain_snap *s)
{
  free (s->name);
  chain_snap_file_vector_release (&s->layers);
}

void
chain_snaps_release (struct chain_snaps *s)
{
  for (size_t i = 0; i < s->snaps.len; i++)
    snap_release (&s->snaps.ptr[i]);
  chain_snap_vector_reset (&s->snaps);
  chain_snap_file_vector_release (&s->tops);
  chain_snap_file_vector_release (&s->layers);
  chain_snap_file_vector_release (&s->pending_files);
  free (s->pending);
  free (s->pending_name);
  s->pending = s->pending_name = NULL;
}

const char *
chain_snap_file_get (const chain_snap_file_vector *v, const char *disk)
{
  for (size_t i = 0; i < v->len; i++)
    if (strcmp (v->ptr[i].disk, disk) == 0)
      return v->ptr[i].file;
  return NULL;
}

static int
file_append (chain_snap_file_vector *v, const char *disk, const char *file)
{
  struct chain_snap_file f = { strdup (disk), strdup (file) };

  if (f.disk == NULL || f.file == NULL
      || chain_snap_file_vector_append (v, f) == -1) {
    free (f.disk);
    free (f.file);
    set_error (ENOMEM, "snapshot record");
    return -1;
  }
  return 0;
}

/* f names file now. */
static int
file_replace (struct chain_snap_file *f, const char *file)
{
  char *copy = strdup (file);

  if (copy == NULL) {
    set_error (ENOMEM, "snapshot record");
    return -1;
  }
  free (f->file);
  f->file = copy;
  return 0;
}

int
chain_snap_file_set (chain_snap_file_vector *v, const char *disk,
                     const char *file)
{
  for (size_t i = 0; i < v->len; i++)
    if (strcmp (v->ptr[i].disk, disk) == 0)
      return file_replace (&v->ptr[i], file);
  return file_append (v, disk, file);
}

int
chain_snap_file_add (chain_snap_file_vector *v, const char *disk,
                     const char *file)
{
  for (size_t i = 0; i < v->len; i++)
    if (strcmp (v->ptr[i].disk, disk) == 0
        && strcmp (v->ptr[i].file, file) == 0)
      return 0;
  return file_append (v, disk, file);
}

struct chain_snap *
chain_snaps_find (struct chain_snaps *s, const char *name)
{
  for (size_t i = 0; i < s->snaps.len; i++)
    if (strcmp (s->snaps.ptr[i].name, name) == 0)
      return &s->snaps.ptr[i];
  return NULL;
}

int
chain_snaps_add (struct chain_snaps *s, const char *name, int64_t time,
                 chain_snap_file_vector *layers)
{
  struct chain_snap n = { .name = strdup (name), .time = time };

  if (n.name == NULL || chain_snap_vector_append (&s->snaps, n) == -1) {
    free (n.name);
    set_error (ENOMEM, "snapshot record");
    return -1;
  }
  s->snaps.ptr[s->snaps.len - 1].layers = *layers;
  *layers = (chain_snap_file_vector) empty_vector;
  return 0;
}

int
chain_snaps_set_pending (struct chain_snaps *s, const char *op,
                         const char *name, const chain_snap_file_vector *files)
{
  free (s->pending);
  free (s->pending_name);
  s->pending = s->pending_name = NULL;
  chain_snap_file_vector_release (&s->pending_files);
  if (op == NULL)
    return 0;
  s->pending = strdup (op);
  s->pending_name = strdup (name ? name : "");
  if (s->pending == NULL || s->pending_name == NULL) {
    set_error (ENOMEM, "snapshot record");
    return -1;
  }
  for (size_t i = 0; files && i < files->len; i++)
    if (file_append (&s->pending_files, files->ptr[i].disk, files->ptr[i].file)
        == -1)
      return -1;
  return 0;
}

/* ---- JSON ---- */

/* {"vda": "/path", ...} */
static json_t *
files_to_json (const chain_snap_file_vector *v)
{
  json_t *o = json_object ();

  for (size_t i = 0; o && i < v->len; i++)
    if (json_object_set_new (o, v->ptr[i].disk, json_string (v->ptr[i].file))
        == -1) {
      json_decref (o);
      return NULL;
    }
  return o;
}

/* {"vda": ["/a", "/b"]} */
static json_t *
lists_to_json (const chain_snap_file_vector *v)
{
  json_t *o = json_object ();

  for (size_t i = 0; o && i < v->len; i++) {
    json_t *a = json_object_get (o, v->ptr[i].disk);

    if (a == NULL) {
      a = json_array ();
      if (a == NULL || json_object_set_new (o, v->ptr[i].disk, a) == -1) {
        json_decref (o);
        return NULL;
      }
    }
    if (json_array_append_new (a, json_string (v->ptr[i].file)) == -1) {
      json_decref (o);
      return NULL;
    }
  }
  return o;
}

static json_t *
snaps_to_json (const struct chain_snaps *s)
{
  json_t *snaps = json_array (), *j;

  for (size_t i = 0; snaps && i < s->snaps.len; i++) {
    const struct chain_snap *n = &s->snaps.ptr[i];
    char t[CHAIN_TIME_MAX];

    chain_time_format (n->time, t);
    if (json_array_append_new (
          snaps, json_pack ("{s:s, s:s, s:s, s:o*}", "name", n->name, "time", t,
                            "state", n->removed ? "removed" : "active",
                            "layers", files_to_json (&n->layers)))
        == -1) {
      json_decref (snaps);
      return NULL;
    }
  }
  j = json_pack ("{s:i, s:o*, s:o*, s:o*}", "version", 1, "snapshots", snaps,
                 "tops", files_to_json (&s->tops), "layers",
                 lists_to_json (&s->layers));
  if (j != NULL && s->pending != NULL
      && json_object_set_new (j, "pending",
                              json_pack ("{s:s, s:s, s:o*}", "op", s->pending,
                                         "name", s->pending_name, "files",
                                         files_to_json (&s->pending_files)))
           == -1) {
    json_decref (j);
    return NULL;
  }
  return j;
}

/* A disk name and an absolute path: nothing else is accepted. */
static int
check_file (const char *disk, const json_t *v, const char **file)
{
  if (name_check ("disk", disk) == -1)
    return -1;
  *file = json_string_value (v);
  if (*file == NULL || (*file)[0] != '/')
    return jsonutil_invalid ("disk '%s': an image must be an absolute path",
                             disk);
  return 0;
}

static int
files_from_json (const json_t *o, chain_snap_file_vector *v)
{
  const char *disk;
  json_t *val;

  if (o == NULL)
    return 0;
  if (!json_is_object (o))
    return jsonutil_invalid ("a map of disks to images must be an object");
  json_object_foreach ((json_t *) o, disk, val)
  {
    const char *file;

    if (check_file (disk, val, &file) == -1
        || file_append (v, disk, file) == -1)
      return -1;
  }
  return 0;
}

static int
lists_from_json (const json_t *o, chain_snap_file_vector *v)
{
  const char *disk;
  json_t *a, *val;
  size_t i;

  if (!json_is_object (o))
    return jsonutil_invalid ("'layers' must be an object");
  json_object_foreach ((json_t *) o, disk, a)
  {
    if (!json_is_array (a))
      return jsonutil_invalid ("'layers' of '%s' must be an array", disk);
    json_array_foreach (a, i, val)
    {
      const char *file;

      if (check_file (disk, val, &file) == -1
          || file_append (v, disk, file) == -1)
        return -1;
    }
  }
  return 0;
}

static int
snap_from_json (const json_t *o, struct chain_snaps *s)
{
  const char *name, *time, *state;
  chain_snap_file_vector layers = empty_vector;
  int64_t t;

  if (!json_is_object (o)
      || jsonutil_get_string (o, "name", "snapshot: ", false, &name) == -1
      || jsonutil_get_string (o, "time", "snapshot: ", false, &time) == -1
      || jsonutil_get_string (o, "state", "snapshot: ", false, &state) == -1)
    return jsonutil_invalid ("a snapshot needs a name, a time and a state");
  if (name_check ("snapshot", name) == -1 || chain_time_parse (time, &t) == -1)
    return -1;
  if (strcmp (state, "active") != 0 && strcmp (state, "removed") != 0)
    return jsonutil_invalid ("snapshot '%s': unknown state '%s'", name, state);
  if (files_from_json (json_object_get (o, "layers"), &layers) == -1
      || chain_snaps_add (s, name, t, &layers) == -1) {
    chain_snap_file_vector_release (&layers);
    return -1;
  }
  s->snaps.ptr[s->snaps.len - 1].removed = strcmp (state, "removed") == 0;
  return 0;
}

static int
snaps_from_json (const json_t *j, struct chain_snaps *s)
{
  const json_t *snaps = json_object_get (j, "snapshots"), *p, *o;
  size_t i;

  if (!json_is_array (snaps))
    return jsonutil_invalid ("'snapshots' must be an array");
  json_array_foreach (snaps, i, o)
  {
    if (snap_from_json (o, s) == -1)
      return -1;
  }
  if (files_from_json (json_object_get (j, "tops"), &s->tops) == -1
      || lists_from_json (json_object_get (j, "layers"), &s->layers) == -1)
    return -1;
  p = json_object_get (j, "pending");
  if (p != NULL) {
    const char *op, *name;

    if (jsonutil_get_string (p, "op", "pending: ", false, &op) == -1
        || jsonutil_get_string (p, "name", "pending: ", false, &name) == -1)
      return -1;
    s->pending = strdup (op);
    s->pending_name = strdup (name);
    if (s->pending == NULL || s->pending_name == NULL) {
      set_error (ENOMEM, "snapshot record");
      return -1;
    }
    if (files_from_json (json_object_get (p, "files"), &s->pending_files) == -1)
      return -1;
  }
  return 0;
}

static int
load_dir (const char *dir, struct chain_snaps *s)
{
  CLEANUP_FREE char *path = str_printf ("%s/" SNAPS_FILE, dir);
  json_t *j;
  int r;

  memset (s, 0, sizeof *s);
  if (path == NULL)
    return -1;
  j = jsonutil_load (path, "snapshot record");
  if (j == NULL) {
    if (get_errno () == ENOENT) {
      error_clear ();
      return 0;
    }
    return -1;
  }
  r = snaps_from_json (j, s);
  json_decref (j);
  if (r == -1) {
    error_prepend ("snapshot record '%s'", path);
    chain_snaps_release (s);
  }
  return r;
}

int
chain_snaps_load (struct chain_lock *lock, struct chain_snaps *s)
{
  return load_dir (lock->dir, s);
}

int
chain_snaps_read (struct chain_repo *repo, const char *vm,
                  struct chain_snaps *s)
{
  CLEANUP_FREE char *dir = chain_repo_vm_dir (repo, vm);

  if (dir == NULL)
    return -1;
  return load_dir (dir, s);
}

int
chain_snaps_commit (struct chain_lock *lock, const struct chain_snaps *s)
{
  json_t *j = snaps_to_json (s);
  int r;

  if (j == NULL) {
    set_error (ENOMEM, "snapshot record");
    return -1;
  }
  r = jsonutil_commit (j, lock->dir, SNAPS_FILE, "snapshot record");
  json_decref (j);
  return r;
}

/* ---- Rules ---- */

/* Whether a snapshot that is not removed holds file of disk. */
static bool
held (const struct chain_snaps *s, const char *disk, const char *file)
{
  for (size_t i = 0; i < s->snaps.len; i++) {
    const char *l = chain_snap_file_get (&s->snaps.ptr[i].layers, disk);

    if (!s->snaps.ptr[i].removed && l != NULL && strcmp (l, file) == 0)
      return true;
  }
  return false;
}

void
chain_snaps_plan (const struct chain_snaps *s, const char *disk,
                  const struct chain_snap_layer *layers, size_t n,
                  struct chain_snap_step *step)
{
  const char *top = chain_snap_file_get (&s->tops, disk);
  size_t i, j;

  memset (step, 0, sizeof *step);
  for (int pass = 0; pass < 2; pass++)
    for (i = 0; i < n; i++) {
      size_t children = 0, child = 0;

      if ((top && strcmp (layers[i].file, top) == 0)
          || held (s, disk, layers[i].file))
        continue;
      for (j = 0; j < n; j++)
        if (layers[j].backing
            && strcmp (layers[j].backing, layers[i].file) == 0) {
          children++;
          child = j;
        }
      if (pass == 0 && children == 0) {
        step->kind = CHAIN_SNAP_STEP_REMOVE;
        step->file = layers[i].file;
        return;
      }
      if (pass == 1 && children == 1) {
        step->kind = CHAIN_SNAP_STEP_MERGE;
        step->file = layers[i].file;
        step->child = layers[child].file;
        step->backing = layers[i].backing;
        return;
      }
    }
}

void
chain_snaps_forget (struct chain_snaps *s, const char *disk, const char *file)
{
  size_t i, k;

  for (i = 0, k = 0; i < s->layers.len; i++) {
    struct chain_snap_file *f = &s->layers.ptr[i];

    if (strcmp (f->disk, disk) == 0 && strcmp (f->file, file) == 0) {
      free (f->disk);
      free (f->file);
    }
    else
      s->layers.ptr[k++] = *f;
  }
  s->layers.len = k;
  for (i = 0, k = 0; i < s->snaps.len; i++) {
    struct chain_snap *n = &s->snaps.ptr[i];
    const char *l = chain_snap_file_get (&n->layers, disk);

    if (n->removed && l != NULL && strcmp (l, file) == 0)
      snap_release (n);
    else
      s->snaps.ptr[k++] = *n;
  }
  s->snaps.len = k;
}

/* In v, disk's from becomes to (when there). */
static int
rename_in (chain_snap_file_vector *v, const char *disk, const char *from,
           const char *to)
{
  for (size_t i = 0; i < v->len; i++)
    if (strcmp (v->ptr[i].disk, disk) == 0 && strcmp (v->ptr[i].file, from) == 0
        && file_replace (&v->ptr[i], to) == -1)
      return -1;
  return 0;
}

int
chain_snaps_rename (struct chain_snaps *s, const char *disk, const char *from,
                    const char *to)
{
  bool has_to = false;
  size_t i, k;

  for (i = 0; i < s->layers.len; i++)
    has_to = has_to
             || (strcmp (s->layers.ptr[i].disk, disk) == 0
                 && strcmp (s->layers.ptr[i].file, to) == 0);
  /* to is kept already: from's entry goes, one of to stays. */
  for (i = 0, k = 0; has_to && i < s->layers.len; i++) {
    struct chain_snap_file *f = &s->layers.ptr[i];

    if (strcmp (f->disk, disk) == 0 && strcmp (f->file, from) == 0) {
      free (f->disk);
      free (f->file);
    }
    else
      s->layers.ptr[k++] = *f;
  }
  if (has_to)
    s->layers.len = k;
  if (rename_in (&s->layers, disk, from, to) == -1
      || rename_in (&s->tops, disk, from, to) == -1)
    return -1;
  for (i = 0; i < s->snaps.len; i++)
    if (rename_in (&s->snaps.ptr[i].layers, disk, from, to) == -1)
      return -1;
  return 0;
}
