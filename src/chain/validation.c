/* SPDX-License-Identifier: Apache-2.0 */
/* validation.c: a backup's boot validation in its manifest, and its files. */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

static const char *const validation_keys[] = {
  "status", "time", "seconds", "boot-seconds", "accel", "steps", "files", NULL,
};

static const char *const step_keys[] = {
  "name", "status", "seconds", "message", NULL,
};

static const char *const file_keys[] = { "screenshot", "console", NULL };

const char *
chain_check_name (enum chain_check c)
{
  switch (c) {
  case CHAIN_CHECK_PASSED:
    return "passed";
  case CHAIN_CHECK_FAILED:
    return "failed";
  case CHAIN_CHECK_SKIPPED:
    return "skipped";
  }
  return "?";
}

static int
check_parse (const char *s, const char *where, enum chain_check *c)
{
  if (strcmp (s, "passed") == 0)
    *c = CHAIN_CHECK_PASSED;
  else if (strcmp (s, "failed") == 0)
    *c = CHAIN_CHECK_FAILED;
  else if (strcmp (s, "skipped") == 0)
    *c = CHAIN_CHECK_SKIPPED;
  else
    return jsonutil_invalid ("%s'status' must be passed, failed or skipped, "
                             "not '%s'",
                             where, s);
  return 0;
}

static void
step_release (struct chain_validation_step *s)
{
  free (s->name);
  free (s->message);
}

void
chain_validation_free (struct chain_validation *v)
{
  if (v == NULL)
    return;
  for (size_t i = 0; i < v->steps.len; i++)
    step_release (&v->steps.ptr[i]);
  chain_validation_step_vector_reset (&v->steps);
  free (v->accel);
  free (v->screenshot);
  free (v->console);
  free (v);
}

static bool
dup_ok (const char *s, char **out)
{
  *out = s ? strdup (s) : NULL;
  return s == NULL || *out != NULL;
}

struct chain_validation *
chain_validation_copy (const struct chain_validation *v)
{
  struct chain_validation *c = calloc (1, sizeof *c);

  if (c == NULL)
    goto nomem;
  c->status = v->status;
  c->time = v->time;
  c->seconds = v->seconds;
  c->boot_seconds = v->boot_seconds;
  if (!dup_ok (v->accel, &c->accel) || !dup_ok (v->screenshot, &c->screenshot)
      || !dup_ok (v->console, &c->console))
    goto nomem;
  for (size_t i = 0; i < v->steps.len; i++) {
    struct chain_validation_step s = v->steps.ptr[i];

    if (!dup_ok (v->steps.ptr[i].name, &s.name)
        || !dup_ok (v->steps.ptr[i].message, &s.message)
        || chain_validation_step_vector_append (&c->steps, s) == -1) {
      step_release (&s);
      goto nomem;
    }
  }
  return c;
nomem:
  chain_validation_free (c);
  set_error (ENOMEM, "validation");
  return NULL;
}

/* A file of the validation: "validation/<a valid name>". */
static bool
file_ok (const char *s)
{
  size_t n = strlen (CHAIN_VALIDATION_DIR);

  return s == NULL
         || (strncmp (s, CHAIN_VALIDATION_DIR "/", n + 1) == 0
             && name_is_valid (s + n + 1));
}

static bool
line_ok (const char *s)
{
  for (const unsigned char *p = (const unsigned char *) s; p && *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return false;
  return true;
}

int
chain_validation_check (const struct chain_validation *v)
{
  if (v->status == CHAIN_CHECK_SKIPPED)
    return jsonutil_invalid ("validation: 'status' must be passed or failed");
  if (!(v->seconds >= 0) || !isfinite (v->boot_seconds))
    return jsonutil_invalid ("validation: a time is not a number of seconds");
  if (v->accel == NULL || !name_is_valid (v->accel))
    return jsonutil_invalid ("validation: 'accel' must be a name");
  if (!file_ok (v->screenshot) || !file_ok (v->console))
    return jsonutil_invalid ("validation: its files must be in '%s/'",
                             CHAIN_VALIDATION_DIR);
  for (size_t i = 0; i < v->steps.len; i++) {
    const struct chain_validation_step *s = &v->steps.ptr[i];

    if (s->name == NULL || !name_is_valid (s->name) || !(s->seconds >= 0)
        || !line_ok (s->message))
      return jsonutil_invalid ("validation: step %zu is malformed", i + 1);
  }
  return 0;
}

static json_t *
step_to_json (const struct chain_validation_step *s)
{
  return json_pack ("{s:s, s:s, s:f, s:s?}", "name", s->name, "status",
                    chain_check_name (s->status), "seconds", s->seconds,
                    "message", s->message);
}

json_t *
chain_validation_to_json (const struct chain_validation *v)
{
  char time[CHAIN_TIME_MAX];
  json_t *steps = json_array ();
  json_t *j;

  for (size_t i = 0; steps != NULL && i < v->steps.len; i++)
    if (json_array_append_new (steps, step_to_json (&v->steps.ptr[i])) == -1) {
      json_decref (steps);
      steps = NULL;
    }
  if (steps == NULL) {
    set_error (ENOMEM, "validation to JSON");
    return NULL;
  }
  chain_time_format (v->time, time);
  j = json_pack ("{s:s, s:s, s:f, s:o, s:s, s:o, s:{s:s?, s:s?}}", "status",
                 chain_check_name (v->status), "time", time, "seconds",
                 v->seconds, "boot-seconds",
                 v->boot_seconds >= 0 ? json_real (v->boot_seconds)
                                      : json_null (),
                 "accel", v->accel, "steps", steps, "files", "screenshot",
                 v->screenshot, "console", v->console);
  if (j == NULL)
    set_error (ENOMEM, "validation to JSON");
  return j;
}

/* A number of seconds (integer or real, >= 0); with nullable null is -1. */
static int
get_seconds (const json_t *o, const char *key, const char *where, bool nullable,
             double *out)
{
  const json_t *v = json_object_get (o, key);

  if (nullable && json_is_null (v)) {
    *out = -1;
    return 0;
  }
  if (!json_is_number (v) || !(json_number_value (v) >= 0)
      || !isfinite (json_number_value (v)))
    return jsonutil_invalid ("%s'%s' must be a number of seconds", where, key);
  *out = json_number_value (v);
  return 0;
}

static int
step_from_json (const json_t *o, size_t i, struct chain_validation_step *s)
{
  char where[64];
  const char *name, *status, *message;

  snprintf (where, sizeof where, "validation: step %zu: ", i + 1);
  if (!json_is_object (o))
    return jsonutil_invalid ("%snot a JSON object", where);
  if (jsonutil_check_keys (o, step_keys, where) == -1
      || jsonutil_get_string (o, "name", where, false, &name) == -1
      || jsonutil_get_string (o, "status", where, false, &status) == -1
      || check_parse (status, where, &s->status) == -1
      || get_seconds (o, "seconds", where, false, &s->seconds) == -1
      || jsonutil_get_string (o, "message", where, true, &message) == -1)
    return -1;
  if (!dup_ok (name, &s->name) || !dup_ok (message, &s->message)) {
    set_error (ENOMEM, "validation");
    return -1;
  }
  return 0;
}

static int
fill (struct chain_validation *v, const json_t *j)
{
  const char *where = "validation: ";
  const char *status, *time, *accel, *shot, *console;
  const json_t *steps, *files = json_object_get (j, "files");

  if (!json_is_object (j))
    return jsonutil_invalid ("'validation' must be a JSON object");
  if (jsonutil_check_keys (j, validation_keys, where) == -1
      || jsonutil_get_string (j, "status", where, false, &status) == -1
      || check_parse (status, where, &v->status) == -1
      || jsonutil_get_string (j, "time", where, false, &time) == -1
      || get_seconds (j, "seconds", where, false, &v->seconds) == -1
      || get_seconds (j, "boot-seconds", where, true, &v->boot_seconds) == -1
      || jsonutil_get_string (j, "accel", where, false, &accel) == -1)
    return -1;
  if (chain_time_parse (time, &v->time) == -1) {
    error_prepend ("validation: 'time'");
    return -1;
  }
  if (!json_is_object (files))
    return jsonutil_invalid ("validation: 'files' must be a JSON object");
  if (jsonutil_check_keys (files, file_keys, "validation: files: ") == -1
      || jsonutil_get_string (files, "screenshot", where, true, &shot) == -1
      || jsonutil_get_string (files, "console", where, true, &console) == -1)
    return -1;
  if (!dup_ok (accel, &v->accel) || !dup_ok (shot, &v->screenshot)
      || !dup_ok (console, &v->console)) {
    set_error (ENOMEM, "validation");
    return -1;
  }
  steps = json_object_get (j, "steps");
  if (!json_is_array (steps))
    return jsonutil_invalid ("validation: 'steps' must be an array");
  for (size_t i = 0; i < json_array_size (steps); i++) {
    struct chain_validation_step s = { 0 };

    if (step_from_json (json_array_get (steps, i), i, &s) == -1
        || chain_validation_step_vector_append (&v->steps, s) == -1) {
      if (get_errno () == 0)
        set_error (ENOMEM, "validation");
      step_release (&s);
      return -1;
    }
  }
  return chain_validation_check (v);
}

struct chain_validation *
chain_validation_from_json (const json_t *j)
{
  struct chain_validation *v = calloc (1, sizeof *v);

  if (v == NULL) {
    set_error (errno, "calloc");
    return NULL;
  }
  if (fill (v, j) == -1) {
    chain_validation_free (v);
    return NULL;
  }
  return v;
}

int
chain_backup_set_validation (struct chain_repo *repo, const char *vm,
                             const char *id, const struct chain_validation *v)
{
  CLEANUP_FREE char *path = NULL;
  struct chain_manifest *m;
  int r = -1;

  m = chain_manifest_load_backup (repo, vm, id);
  if (m == NULL)
    return -1;
  path = str_printf ("%s/" CHAIN_VMS_DIR "/%s/%s/" CHAIN_MANIFEST_FILE,
                     repo->path, vm, id);
  chain_validation_free (m->validation);
  m->validation = chain_validation_copy (v);
  if (path != NULL && m->validation != NULL)
    r = chain_manifest_commit (m, path);
  chain_manifest_free (m);
  return r;
}

char *
chain_backup_file_path (struct chain_repo *repo, const struct chain_manifest *m,
                        const char *name)
{
  size_t n = strlen (CHAIN_VALIDATION_DIR "/");
  const char *base
    = strncmp (name, CHAIN_VALIDATION_DIR "/", n) == 0 ? name + n : name;

  if (name_check ("file", base) == -1)
    return NULL;
  return str_printf ("%s/" CHAIN_VMS_DIR "/%s/%s/%s", repo->path, m->vm, m->id,
                     name);
}

int
chain_backup_write_validation_file (struct chain_repo *repo,
                                    const struct chain_manifest *m,
                                    const char *name, const void *data,
                                    size_t len, char **path)
{
  CLEANUP_FREE char *dir = NULL;

  if (name_check ("file", name) == -1)
    return -1;
  dir = chain_backup_file_path (repo, m, CHAIN_VALIDATION_DIR);
  if (dir == NULL || fs_mkdir (dir) == -1
      || fs_replace_file (dir, name, data, len, "validation file") == -1)
    return -1;
  if (path != NULL && (*path = str_printf ("%s/%s", dir, name)) == NULL)
    return -1;
  return 0;
}

int
chain_backup_remove_validation_file (struct chain_repo *repo,
                                     const struct chain_manifest *m,
                                     const char *name)
{
  CLEANUP_FREE char *rel = str_printf (CHAIN_VALIDATION_DIR "/%s", name);
  CLEANUP_FREE char *path = rel ? chain_backup_file_path (repo, m, rel) : NULL;

  if (path == NULL)
    return -1;
  if (unlink (path) == -1 && errno != ENOENT) {
    set_error (errno, "validation file '%s'", path);
    return -1;
  }
  return 0;
}
