/* SPDX-License-Identifier: Apache-2.0 */
/* show.c: how list, info and verify present backups (text and JSON). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "show.h"

int
show_problem (chain_string_vector *problems)
{
  char *s = strdup (get_error ());

  if (s == NULL || chain_string_vector_append (problems, s) == -1) {
    free (s);
    set_error (ENOMEM, "problem list");
    return -1;
  }
  return 0;
}

void
show_problems (const chain_string_vector *problems)
{
  for (size_t i = 0; i < problems->len; i++)
    fprintf (stderr, "knib: %s\n", problems->ptr[i]);
}

void
show_json (const json_t *v, bool compact)
{
  CLEANUP_FREE char *text
    = json_dumps (v, (compact ? JSON_COMPACT : JSON_INDENT (2))
                       | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);

  printf ("%s\n", text ? text : "null");
}

char *
show_disk_names (const struct chain_manifest *m)
{
  size_t len = 1;
  char *s;

  for (size_t i = 0; i < m->disks.len; i++)
    len += strlen (m->disks.ptr[i].name) + 1;
  s = calloc (1, len);
  if (s == NULL) {
    set_error (ENOMEM, "disk names");
    return NULL;
  }
  for (size_t i = 0; i < m->disks.len; i++) {
    if (i > 0)
      strcat (s, ",");
    strcat (s, m->disks.ptr[i].name);
  }
  return s;
}

static json_t *
string_or_null (const char *s)
{
  return s != NULL && s[0] != '\0' ? json_string (s) : json_null ();
}

static json_t *
time_json (int64_t t)
{
  char text[CHAIN_TIME_MAX];

  chain_time_format (t, text);
  return json_string (text);
}

/* Every field of one disk, its image's path and recorded backing file. */
static json_t *
disk_json (struct chain_repo *repo, const struct chain_manifest *m,
           const struct chain_disk *d, chain_string_vector *problems)
{
  CLEANUP_FREE char *path = chain_backup_image_path (repo, m, d);
  CLEANUP_FREE char *backing = NULL;
  json_t *backing_json, *j;

  if (path == NULL)
    return NULL;
  if (chain_image_backing_file (path, &backing) == -1) {
    if (show_problem (problems) == -1)
      return NULL;
    backing_json = json_null ();
  }
  else
    backing_json = string_or_null (backing);
  j = json_pack (
    "{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:s, s:s, s:o, s:o}",
    "name", d->name, "image", d->image, "path", path, "kind",
    chain_kind_name (d->kind), "virtual-size", (json_int_t) d->virtual_size,
    "cluster-size", (json_int_t) d->cluster_size, "bitmap",
    d->bitmap ? d->bitmap : "", "bytes-read", (json_int_t) d->bytes_read,
    "bytes-written", (json_int_t) d->bytes_written, "extents",
    (json_int_t) d->extents, chain_hash_kind_name (d->hash_kind), d->hash,
    "compression", chain_compression_name (d->compression), "reason",
    string_or_null (d->reason), "backing-file", backing_json);
  if (j == NULL)
    set_error (ENOMEM, "disk '%s'", d->name);
  return j;
}

static json_t *
disks_json (struct chain_repo *repo, const struct chain_manifest *m,
            bool detail, chain_string_vector *problems)
{
  json_t *a = json_array ();

  for (size_t i = 0; a != NULL && i < m->disks.len; i++) {
    json_t *d = detail ? disk_json (repo, m, &m->disks.ptr[i], problems)
                       : json_string (m->disks.ptr[i].name);

    if (d == NULL) {
      json_decref (a);
      return NULL;
    }
    if (json_array_append_new (a, d) == -1) {
      json_decref (a);
      a = NULL;
    }
  }
  if (a == NULL)
    set_error (ENOMEM, "backup '%s'", m->id);
  return a;
}

json_t *
show_backup_json (struct chain_repo *repo, const struct chain_manifest *m,
                  bool detail, chain_string_vector *problems)
{
  json_t *size, *disks, *j;
  uint64_t bytes;

  if (chain_backup_disk_usage (repo, m, &bytes) == 0)
    size = json_integer ((json_int_t) bytes);
  else if (show_problem (problems) == -1)
    return NULL;
  else
    size = json_null ();
  disks = disks_json (repo, m, detail, problems);
  if (disks == NULL) {
    json_decref (size);
    return NULL;
  }
  j = json_pack ("{s:s, s:s, s:s, s:s, s:o, s:s, s:I, s:o, s:o, s:o, s:o, "
                 "s:o, s:o}",
                 "id", m->id, "vm", m->vm, "kind", chain_kind_name (m->kind),
                 "state", chain_state_name (m->state), "parent",
                 string_or_null (m->parent), "chain", m->chain, "position",
                 (json_int_t) m->position, "created", time_json (m->created),
                 "finished", time_json (m->finished), "reason",
                 string_or_null (m->reason), "size", size, "disks", disks,
                 "validation", show_validation_json (m->validation));
  if (j == NULL)
    set_error (ENOMEM, "backup '%s'", m->id);
  return j;
}

json_t *
show_validation_json (const struct chain_validation *v)
{
  char time[CHAIN_TIME_MAX];
  json_t *steps;

  if (v == NULL)
    return json_null ();
  steps = json_array ();
  for (size_t i = 0; steps != NULL && i < v->steps.len; i++) {
    const struct chain_validation_step *s = &v->steps.ptr[i];

    if (json_array_append_new (
          steps, json_pack ("{s:s, s:s, s:f, s:o}", "name", s->name, "status",
                            chain_check_name (s->status), "seconds", s->seconds,
                            "message", string_or_null (s->message)))
        == -1) {
      json_decref (steps);
      steps = NULL;
    }
  }
  chain_time_format (v->time, time);
  return json_pack (
    "{s:s, s:s, s:f, s:o, s:s, s:o, s:o, s:o}", "status",
    chain_check_name (v->status), "time", time, "seconds", v->seconds,
    "boot-seconds",
    v->boot_seconds >= 0 ? json_real (v->boot_seconds) : json_null (), "accel",
    v->accel ? v->accel : "", "steps", steps ? steps : json_null (),
    "screenshot", string_or_null (v->screenshot), "console",
    string_or_null (v->console));
}

void
show_validation_steps (const struct chain_validation *v, FILE *fp)
{
  for (size_t i = 0; i < v->steps.len; i++) {
    const struct chain_validation_step *s = &v->steps.ptr[i];

    fprintf (fp, "  %-11s %-7s %6.1f s  %s\n", s->name,
             s->status == CHAIN_CHECK_FAILED ? "FAILED"
                                             : chain_check_name (s->status),
             s->seconds, s->message ? s->message : "");
  }
}

void
show_validation_short (const struct chain_validation *v, char *buf, size_t size)
{
  if (v == NULL)
    snprintf (buf, size, "-");
  else if (v->status != CHAIN_CHECK_PASSED)
    snprintf (buf, size, "FAILED");
  else
    snprintf (buf, size, "passed %.0fs", v->boot_seconds);
}

json_t *
show_strings_json (const chain_string_vector *v)
{
  json_t *a = json_array ();

  for (size_t i = 0; a != NULL && i < v->len; i++)
    if (json_array_append_new (a, json_string (v->ptr[i])) == -1) {
      json_decref (a);
      a = NULL;
    }
  return a;
}

json_t *
show_nullable (const char *s)
{
  return s != NULL ? json_string (s) : json_null ();
}
