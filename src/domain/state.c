/* SPDX-License-Identifier: Apache-2.0 */
/* state.c: knib's directories, and the hook's records of each domain. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/util.h"
#include "domain/domain.h"
#include "domain/internal.h"

/* A record or saved XML larger than this is not ours. */
#define MAX_FILE (16u * 1024 * 1024)

static const char *
env_or (const char *var, const char *def)
{
  const char *v = getenv (var);

  return v && v[0] == '/' ? v : def;
}

const char *
domain_run_dir (void)
{
  return env_or ("KNIB_RUN_DIR", DOMAIN_RUN_DIR);
}

const char *
domain_state_dir (void)
{
  return env_or ("KNIB_STATE_DIR", DOMAIN_STATE_DIR);
}

char *
domain_qmp_dir (void)
{
  char *s;

  if (asprintf (&s, "%s/" DOMAIN_QMP_SUBDIR, domain_run_dir ()) == -1) {
    set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return s;
}

/* 8-4-4-4-12 hex digits. */
static bool
uuid_is_valid (const char *u)
{
  size_t i;

  if (strlen (u) != 36)
    return false;
  for (i = 0; i < 36; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;

    if (dash ? u[i] != '-' : strchr ("0123456789abcdefABCDEF", u[i]) == NULL)
      return false;
  }
  return true;
}

char *
domain_qmp_socket (const char *uuid)
{
  char *s;

  if (uuid == NULL || !uuid_is_valid (uuid)) {
    set_error (EINVAL, "invalid domain uuid '%s'", uuid ? uuid : "");
    return NULL;
  }
  if (asprintf (&s, "%s/" DOMAIN_QMP_SUBDIR "/%s.sock", domain_run_dir (), uuid)
      == -1) {
    set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return s;
}

int
domain_make_dir (const char *dir, mode_t mode)
{
  CLEANUP_FREE char *copy = strdup (dir);
  char *p;

  if (copy == NULL) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (p = strchr (copy + 1, '/'); p; p = strchr (p + 1, '/')) {
    *p = '\0';
    if (mkdir (copy, 0711) == -1 && errno != EEXIST) {
      set_error (errno, "cannot make directory '%s'", copy);
      return -1;
    }
    *p = '/';
  }
  if (mkdir (copy, mode) == -1 && errno != EEXIST) {
    set_error (errno, "cannot make directory '%s'", copy);
    return -1;
  }
  return 0;
}

char *
domain_path (const char *base, const char *sub, const char *name,
             const char *suffix)
{
  char *s;

  if (name_check ("domain", name) == -1)
    return NULL;
  if (asprintf (&s, "%s/%s/%s%s", base, sub, name, suffix) == -1) {
    set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return s;
}

int
domain_write_file (const char *path, const char *data, size_t len)
{
  CLEANUP_FREE char *dir = strdup (path);
  char *slash;

  if (dir == NULL) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  slash = strrchr (dir, '/');
  if (slash == NULL) {
    set_error (-EINVAL, "'%s' is not an absolute path", path);
    return -1;
  }
  *slash = '\0';
  if (domain_make_dir (dir, 0700) == -1)
    return -1;
  return fs_replace_file (dir, slash + 1, data, len, "domain record");
}

char *
domain_read_file (const char *path, size_t max, size_t *len)
{
  size_t n;
  char *text = fs_read_file (path, "domain record", max + 1, &n);

  if (text != NULL && len != NULL)
    *len = n;
  return text;
}

/* ---- Records ---- */

static const char *
state_name (enum domain_state s)
{
  switch (s) {
  case DOMAIN_STATE_RUNNING:
    return "running";
  case DOMAIN_STATE_STOPPED:
    return "stopped";
  }
  return "stopped";
}

static json_t *
disk_json (const struct domain_disk *d)
{
  return json_pack ("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:b}", "target",
                    d->target, "alias", d->alias, "type", d->type, "device",
                    d->device, "source", d->source, "format", d->format,
                    "readonly", d->readonly);
}

static json_t *
record_json (const struct domain_record *r)
{
  const struct domain_info *i = &r->info;
  json_t *disks = json_array ();
  json_t *j;
  size_t k;

  if (disks == NULL)
    return NULL;
  for (k = 0; k < i->disks.len; k++)
    if (json_array_append_new (disks, disk_json (&i->disks.ptr[k])) == -1) {
      json_decref (disks);
      return NULL;
    }
  j = json_pack ("{s:s, s:s?, s:s, s:I, s:s?, s:b, s:s?, s:o}", "name", i->name,
                 "uuid", i->uuid, "state", state_name (r->state), "updated",
                 (json_int_t) r->updated, "qmp", i->qmp, "agent", i->agent,
                 "agent-path", i->agent_path, "disks", disks);
  if (j != NULL && i->dac_label
      && (json_object_set_new (j, "qemu-uid", json_integer (i->qemu_uid)) == -1
          || json_object_set_new (j, "qemu-gid", json_integer (i->qemu_gid))
               == -1)) {
    json_decref (j);
    return NULL;
  }
  return j;
}

int
domain_record_save (const struct domain_record *r)
{
  CLEANUP_FREE char *path = domain_path (
    domain_run_dir (), DOMAIN_RECORD_SUBDIR, r->info.name, ".json");
  CLEANUP_FREE char *text = NULL;
  json_t *j;

  if (path == NULL)
    return -1;
  j = record_json (r);
  text = j ? json_dumps (j, JSON_INDENT (2)) : NULL;
  json_decref (j);
  if (text == NULL) {
    set_error (ENOMEM, "domain '%s': record", r->info.name);
    return -1;
  }
  return domain_write_file (path, text, strlen (text));
}

/* A copy of an optional string member. */
static int
get_string (json_t *o, const char *key, char **out)
{
  json_t *v = json_object_get (o, key);

  *out = NULL;
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_string (v)) {
    set_error (EINVAL, "'%s' is not a string", key);
    return -1;
  }
  *out = strdup (json_string_value (v));
  if (*out == NULL) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

static int
load_disk (json_t *o, struct domain_info *info)
{
  struct domain_disk d
    = { .readonly = json_is_true (json_object_get (o, "readonly")) };

  if (!json_is_object (o) || get_string (o, "target", &d.target) == -1
      || get_string (o, "alias", &d.alias) == -1
      || get_string (o, "type", &d.type) == -1
      || get_string (o, "device", &d.device) == -1
      || get_string (o, "source", &d.source) == -1
      || get_string (o, "format", &d.format) == -1 || d.target == NULL
      || domain_disk_vector_append (&info->disks, d) == -1) {
    if (d.target == NULL)
      set_error (EINVAL, "a disk has no target");
    domain_disk_release (&d);
    return -1;
  }
  return 0;
}

static int
load_record (json_t *j, struct domain_record *r)
{
  struct domain_info *i = &r->info;
  json_t *disks = json_object_get (j, "disks"), *v;
  const char *state = json_string_value (json_object_get (j, "state"));
  size_t k;

  if (get_string (j, "name", &i->name) == -1 || i->name == NULL
      || get_string (j, "uuid", &i->uuid) == -1
      || get_string (j, "qmp", &i->qmp) == -1
      || get_string (j, "agent-path", &i->agent_path) == -1 || state == NULL
      || !json_is_array (disks)) {
    if (i->name == NULL || state == NULL || !json_is_array (disks))
      set_error (EINVAL, "a member is missing");
    return -1;
  }
  r->state = strcmp (state, "running") == 0 ? DOMAIN_STATE_RUNNING
                                            : DOMAIN_STATE_STOPPED;
  r->updated = json_integer_value (json_object_get (j, "updated"));
  i->agent = json_is_true (json_object_get (j, "agent"));
  json_array_foreach (disks, k, v) if (load_disk (v, i) == -1) return -1;
  if (json_is_integer (json_object_get (j, "qemu-uid"))
      && json_is_integer (json_object_get (j, "qemu-gid"))) {
    i->dac_label = true;
    i->qemu_uid = json_integer_value (json_object_get (j, "qemu-uid"));
    i->qemu_gid = json_integer_value (json_object_get (j, "qemu-gid"));
  }
  return 0;
}

struct domain_record *
domain_record_load (const char *name)
{
  CLEANUP_FREE char *path
    = domain_path (domain_run_dir (), DOMAIN_RECORD_SUBDIR, name, ".json");
  CLEANUP_FREE char *text = NULL;
  struct domain_record *r;
  json_error_t jerr;
  json_t *j;

  if (path == NULL || (text = domain_read_file (path, MAX_FILE, NULL)) == NULL)
    return NULL;
  j = json_loads (text, 0, &jerr);
  if (j == NULL) {
    set_error (EINVAL, "'%s': %s", path, jerr.text);
    return NULL;
  }
  r = calloc (1, sizeof *r);
  if (r == NULL) {
    set_error (errno, "calloc");
    json_decref (j);
    return NULL;
  }
  if (load_record (j, r) == -1) {
    error_prepend ("'%s'", path);
    json_decref (j);
    domain_record_free (r);
    return NULL;
  }
  json_decref (j);
  return r;
}

void
domain_record_free (struct domain_record *r)
{
  if (r == NULL)
    return;
  domain_info_release (&r->info);
  free (r);
}

int
domain_xml_save (const char *name, const char *xml, size_t len)
{
  CLEANUP_FREE char *path
    = domain_path (domain_state_dir (), DOMAIN_RECORD_SUBDIR, name, ".xml");

  if (path == NULL)
    return -1;
  return domain_write_file (path, xml, len);
}

char *
domain_xml_load (const char *name)
{
  CLEANUP_FREE char *path
    = domain_path (domain_state_dir (), DOMAIN_RECORD_SUBDIR, name, ".xml");

  if (path == NULL)
    return NULL;
  return domain_read_file (path, MAX_FILE, NULL);
}
