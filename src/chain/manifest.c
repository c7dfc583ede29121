/* SPDX-License-Identifier: Apache-2.0 */
/* manifest.c: a backup's manifest: its rules, JSON form, load and commit. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

#define MIN_CLUSTER 512u
#define MAX_CLUSTER (2u * 1024 * 1024)

static const char *const manifest_keys[] = {
  "id",    "vm",      "parent",   "chain",  "position", "kind",
  "state", "created", "finished", "reason", "disks",    NULL,
};

/* Only in the manifests of backups that "knib validate" booted. */
#define CHAIN_KEY_VALIDATION "validation"

/* Only in the disks that "knib compress" rewrote. */
#define CHAIN_KEY_BEFORE_COMPRESSION "bytes-before-compression"

static const char *const disk_keys[] = {
  "name",         "image",    "kind",        "virtual-size",
  "cluster-size", "bitmap",   "bytes-read",  "bytes-written",
  "extents",      "xxh3-128", "compression", "reason",
  NULL,
};

/* The disk keys of a disk that records the segmented digest. */
static const char *const disk_keys_segments[] = {
  "name",         "image",
  "kind",         "virtual-size",
  "cluster-size", "bitmap",
  "bytes-read",   "bytes-written",
  "extents",      "xxh3-128-segments",
  "compression",  "reason",
  NULL,
};

/* The image's hash: "xxh3-128" of the whole file (version 1), or the
 * segmented digest (common/digest.h) that a backup computes as it writes
 * the image (version 2; a disk has one of the two). */
#define CHAIN_KEY_HASH_WHOLE "xxh3-128"
#define CHAIN_KEY_HASH_SEGMENTS "xxh3-128-segments"

/* The manifest format: absent means 1.  2 when a disk records the
 * segmented digest. */
#define CHAIN_KEY_VERSION "version"
#define CHAIN_MANIFEST_VERSION 2

static const char *const manifest_optional[] = {
  CHAIN_KEY_VALIDATION,
  CHAIN_KEY_VERSION,
  NULL,
};

static const char *const disk_optional[] = {
  CHAIN_KEY_BEFORE_COMPRESSION,
  NULL,
};

/* keys, and the optional keys (NULL-terminated) that o has. */
static int
check_keys_with (const json_t *o, const char *const *keys,
                 const char *const *optional, const char *where)
{
  bool any = false;
  json_t *c;
  int r;

  for (size_t i = 0; optional[i] != NULL; i++)
    any = any || json_object_get (o, optional[i]) != NULL;
  if (!any)
    return jsonutil_check_keys (o, keys, where);
  c = json_copy ((json_t *) o);
  if (c == NULL) {
    set_error (ENOMEM, "manifest");
    return -1;
  }
  for (size_t i = 0; optional[i] != NULL; i++)
    json_object_del (c, optional[i]);
  r = jsonutil_check_keys (c, keys, where);
  json_decref (c);
  return r;
}

/* disk_keys, with CHAIN_KEY_HASH_SEGMENTS instead of CHAIN_KEY_HASH_WHOLE
 * when the manifest's version has it. */
static int
check_disk_keys (const json_t *o, const char *where, int64_t version)
{
  json_t *seg = json_object_get (o, CHAIN_KEY_HASH_SEGMENTS);

  if (seg != NULL && version < 2)
    return jsonutil_invalid ("%s'%s' needs manifest version 2", where,
                             CHAIN_KEY_HASH_SEGMENTS);
  if (seg != NULL && json_object_get (o, CHAIN_KEY_HASH_WHOLE) != NULL)
    return jsonutil_invalid ("%shas both '%s' and '%s'", where,
                             CHAIN_KEY_HASH_WHOLE, CHAIN_KEY_HASH_SEGMENTS);
  return check_keys_with (o, seg != NULL ? disk_keys_segments : disk_keys,
                          disk_optional, where);
}

static const char *
hash_key (enum chain_hash_kind kind)
{
  switch (kind) {
  case CHAIN_HASH_SEGMENTS:
    return CHAIN_KEY_HASH_SEGMENTS;
  case CHAIN_HASH_WHOLE:
    return CHAIN_KEY_HASH_WHOLE;
  }
  return CHAIN_KEY_HASH_WHOLE;
}

const char *
chain_hash_kind_name (enum chain_hash_kind kind)
{
  return hash_key (kind);
}

struct chain_manifest *
chain_manifest_new (void)
{
  struct chain_manifest *m = calloc (1, sizeof *m);

  if (m == NULL)
    set_error (errno, "calloc");
  return m;
}

void
chain_disk_release (struct chain_disk *d)
{
  free (d->name);
  free (d->image);
  free (d->bitmap);
  free (d->reason);
  memset (d, 0, sizeof *d);
}

void
chain_manifest_free (struct chain_manifest *m)
{
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->disks.len; i++)
    chain_disk_release (&m->disks.ptr[i]);
  chain_disk_vector_reset (&m->disks);
  chain_validation_free (m->validation);
  free (m->vm);
  free (m->reason);
  free (m);
}

void
chain_manifest_vector_release (chain_manifest_vector *v)
{
  for (size_t i = 0; i < v->len; i++)
    chain_manifest_free (v->ptr[i]);
  chain_manifest_vector_reset (v);
}

/* strdup where NULL stays NULL; false when out of memory. */
static bool
dup_or_null (const char *s, char **out)
{
  *out = s ? strdup (s) : NULL;
  return s == NULL || *out != NULL;
}

int
chain_manifest_add_disk (struct chain_manifest *m, const struct chain_disk *d)
{
  struct chain_disk c = *d;

  if (!dup_or_null (d->name, &c.name) || !dup_or_null (d->image, &c.image)
      || !dup_or_null (d->bitmap, &c.bitmap)
      || !dup_or_null (d->reason, &c.reason)
      || chain_disk_vector_append (&m->disks, c) == -1) {
    chain_disk_release (&c);
    set_error (ENOMEM, "manifest disk");
    return -1;
  }
  return 0;
}

const struct chain_disk *
chain_manifest_find_disk (const struct chain_manifest *m, const char *name)
{
  for (size_t i = 0; i < m->disks.len; i++)
    if (strcmp (m->disks.ptr[i].name, name) == 0)
      return &m->disks.ptr[i];
  return NULL;
}

/* ---- Rules ---- */

static bool
is_hex_hash (const char *s)
{
  if (strlen (s) != CHAIN_HASH_HEX_LEN)
    return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return false;
  return true;
}

static bool
is_printable (const char *s)
{
  for (const unsigned char *p = (const unsigned char *) s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return false;
  return true;
}

static const char *
a_kind (enum chain_kind kind)
{
  return kind == CHAIN_KIND_FULL          ? "a full"
         : kind == CHAIN_KIND_INCREMENTAL ? "an incremental"
                                          : "an isolated";
}

static int
validate_disk (const struct chain_manifest *m, size_t i)
{
  const struct chain_disk *d = &m->disks.ptr[i];

  if (name_check ("disk", d->name) == -1) {
    error_prepend ("disk %zu", i + 1);
    return -1;
  }
  if (name_check ("image", d->image) == -1) {
    error_prepend ("disk '%s'", d->name);
    return -1;
  }
  if (strcmp (d->image, CHAIN_MANIFEST_FILE) == 0)
    return jsonutil_invalid ("disk '%s': image '%s' is the manifest's name",
                             d->name, d->image);
  if (d->kind == CHAIN_KIND_ISOLATED)
    return jsonutil_invalid ("disk '%s': 'kind' must be full or incremental",
                             d->name);
  if (d->kind == CHAIN_KIND_INCREMENTAL && m->kind != CHAIN_KIND_INCREMENTAL)
    return jsonutil_invalid ("disk '%s': is incremental in %s backup", d->name,
                             a_kind (m->kind));
  if (d->virtual_size > INT64_MAX || d->bytes_read > INT64_MAX
      || d->bytes_written > INT64_MAX || d->extents > INT64_MAX
      || d->bytes_before_compression > INT64_MAX)
    return jsonutil_invalid ("disk '%s': a size or count is too large",
                             d->name);
  if (d->cluster_size < MIN_CLUSTER || d->cluster_size > MAX_CLUSTER
      || (d->cluster_size & (d->cluster_size - 1)) != 0)
    return jsonutil_invalid (
      "disk '%s': 'cluster-size' must be a power of two from "
      "%u to %u, not %u",
      d->name, MIN_CLUSTER, MAX_CLUSTER, d->cluster_size);
  if (d->bitmap == NULL || d->bitmap[0] == '\0' || !is_printable (d->bitmap)
      || strlen (d->bitmap) > 1023)
    return jsonutil_invalid ("disk '%s': 'bitmap' must be a bitmap name",
                             d->name);
  if (!is_hex_hash (d->hash))
    return jsonutil_invalid ("disk '%s': '%s' must be 32 lowercase hex digits",
                             d->name, hash_key (d->hash_kind));
  if (d->reason != NULL && !is_printable (d->reason))
    return jsonutil_invalid ("disk '%s': 'reason' holds control characters",
                             d->name);
  for (size_t j = 0; j < i; j++) {
    if (strcmp (m->disks.ptr[j].name, d->name) == 0)
      return jsonutil_invalid ("disk '%s' is listed twice", d->name);
    if (strcmp (m->disks.ptr[j].image, d->image) == 0)
      return jsonutil_invalid ("disks '%s' and '%s' have the same image '%s'",
                               m->disks.ptr[j].name, d->name, d->image);
  }
  return 0;
}

static int
validate_links (const struct chain_manifest *m)
{
  switch (m->kind) {
  case CHAIN_KIND_FULL:
  case CHAIN_KIND_ISOLATED:
    if (m->parent[0] != '\0')
      return jsonutil_invalid ("%s backup has no parent, but 'parent' is '%s'",
                               a_kind (m->kind), m->parent);
    if (strcmp (m->chain, m->id) != 0)
      return jsonutil_invalid (
        "the 'chain' of %s backup is its own id, not '%s'", a_kind (m->kind),
        m->chain);
    if (m->position != 1)
      return jsonutil_invalid ("the 'position' of %s backup is 1, not %" PRId64,
                               a_kind (m->kind), m->position);
    return 0;
  case CHAIN_KIND_INCREMENTAL:
    if (m->parent[0] == '\0')
      return jsonutil_invalid ("an incremental backup needs a 'parent'");
    if (!chain_id_is_valid (m->parent))
      return jsonutil_invalid ("'parent' is not a backup id: '%s'", m->parent);
    if (chain_id_compare (m->parent, m->id) >= 0)
      return jsonutil_invalid ("'parent' %s does not sort before the backup %s",
                               m->parent, m->id);
    if (!chain_id_is_valid (m->chain))
      return jsonutil_invalid ("'chain' is not a backup id: '%s'", m->chain);
    if (chain_id_compare (m->chain, m->parent) > 0)
      return jsonutil_invalid ("'chain' %s sorts after 'parent' %s", m->chain,
                               m->parent);
    if (m->position < 2)
      return jsonutil_invalid (
        "the 'position' of an incremental backup is at least "
        "2, not %" PRId64,
        m->position);
    return 0;
  }
  return jsonutil_invalid ("'kind' is not full, incremental or isolated");
}

int
chain_manifest_validate (const struct chain_manifest *m)
{
  if (!chain_id_is_valid (m->id))
    return jsonutil_invalid ("'id' is not a backup id: '%s'", m->id);
  if (name_check ("vm", m->vm) == -1)
    return -1;
  if (validate_links (m) == -1)
    return -1;
  if (m->state != CHAIN_STATE_COMPLETE && m->state != CHAIN_STATE_REMOVED)
    return jsonutil_invalid ("'state' is not complete or removed");
  if (m->finished < m->created)
    return jsonutil_invalid ("'finished' is before 'created'");
  if (m->reason == NULL || !is_printable (m->reason))
    return jsonutil_invalid ("'reason' must be a line of text");
  if (m->disks.len == 0)
    return jsonutil_invalid ("'disks' is empty");
  for (size_t i = 0; i < m->disks.len; i++)
    if (validate_disk (m, i) == -1)
      return -1;
  if (m->validation != NULL && chain_validation_check (m->validation) == -1)
    return -1;
  return 0;
}

/* ---- JSON ---- */

static json_t *
disk_to_json (const struct chain_disk *d)
{
  json_t *j = json_pack (
    "{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:s, s:s, s:s?}", "name",
    d->name, "image", d->image, "kind", chain_kind_name (d->kind),
    "virtual-size", (json_int_t) d->virtual_size, "cluster-size",
    (json_int_t) d->cluster_size, "bitmap", d->bitmap, "bytes-read",
    (json_int_t) d->bytes_read, "bytes-written", (json_int_t) d->bytes_written,
    "extents", (json_int_t) d->extents, hash_key (d->hash_kind), d->hash,
    "compression", chain_compression_name (d->compression), "reason",
    d->reason);

  if (j != NULL && d->bytes_before_compression != 0
      && json_object_set_new (
           j, CHAIN_KEY_BEFORE_COMPRESSION,
           json_integer ((json_int_t) d->bytes_before_compression))
           == -1) {
    json_decref (j);
    return NULL;
  }
  return j;
}

/* 1 (no "version" key) while every disk has the whole file's hash: a
 * manifest an older knib wrote stays readable by it. */
static int
manifest_version (const struct chain_manifest *m)
{
  for (size_t i = 0; i < m->disks.len; i++)
    if (m->disks.ptr[i].hash_kind != CHAIN_HASH_WHOLE)
      return CHAIN_MANIFEST_VERSION;
  return 1;
}

json_t *
chain_manifest_to_json (const struct chain_manifest *m)
{
  json_t *disks = json_array ();
  char created[CHAIN_TIME_MAX], finished[CHAIN_TIME_MAX];

  if (disks == NULL)
    goto oom;
  for (size_t i = 0; i < m->disks.len; i++)
    if (json_array_append_new (disks, disk_to_json (&m->disks.ptr[i])) == -1)
      goto oom;
  chain_time_format (m->created, created);
  chain_time_format (m->finished, finished);
  json_t *j = json_pack (
    "{s:s, s:s, s:s?, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:o}", "id", m->id,
    "vm", m->vm, "parent", m->parent[0] ? m->parent : NULL, "chain", m->chain,
    "position", (json_int_t) m->position, "kind", chain_kind_name (m->kind),
    "state", chain_state_name (m->state), "created", created, "finished",
    finished, "reason", m->reason, "disks", disks);
  if (j != NULL && manifest_version (m) > 1
      && json_object_set_new (j, CHAIN_KEY_VERSION,
                              json_integer (manifest_version (m)))
           == -1) {
    json_decref (j);
    j = NULL;
  }
  if (j == NULL)
    set_error (ENOMEM, "manifest to JSON");
  if (j != NULL && m->validation != NULL) {
    json_t *v = chain_validation_to_json (m->validation);

    if (v == NULL || json_object_set_new (j, CHAIN_KEY_VALIDATION, v) == -1) {
      json_decref (j);
      set_error (ENOMEM, "manifest to JSON");
      return NULL;
    }
  }
  return j;
oom:
  json_decref (disks);
  set_error (ENOMEM, "manifest to JSON");
  return NULL;
}

static int
get_u64 (const json_t *o, const char *key, const char *where, uint64_t *out)
{
  int64_t v;

  if (jsonutil_get_int (o, key, where, 0, INT64_MAX, "a non-negative integer",
                        &v)
      == -1)
    return -1;
  *out = (uint64_t) v;
  return 0;
}

static int
get_kind (const json_t *o, const char *where, bool disk, enum chain_kind *k)
{
  const char *s;

  if (jsonutil_get_string (o, "kind", where, false, &s) == -1)
    return -1;
  if (strcmp (s, "full") == 0)
    *k = CHAIN_KIND_FULL;
  else if (strcmp (s, "incremental") == 0)
    *k = CHAIN_KIND_INCREMENTAL;
  else if (strcmp (s, "isolated") == 0 && !disk)
    *k = CHAIN_KIND_ISOLATED;
  else
    return jsonutil_invalid (
      "%s'kind' must be %s, not '%s'", where,
      disk ? "full or incremental" : "full, incremental or isolated", s);
  return 0;
}

static int
get_id (const json_t *o, const char *key, bool nullable, char out[CHAIN_ID_MAX])
{
  const char *s;

  if (jsonutil_get_string (o, key, "", nullable, &s) == -1)
    return -1;
  if (s == NULL) {
    out[0] = '\0';
    return 0;
  }
  if (!chain_id_is_valid (s))
    return jsonutil_invalid ("'%s' is not a backup id: '%s'", key, s);
  strcpy (out, s);
  return 0;
}

static int
get_time (const json_t *o, const char *key, int64_t *t)
{
  const char *s;

  if (jsonutil_get_string (o, key, "", false, &s) == -1)
    return -1;
  if (chain_time_parse (s, t) == -1) {
    error_prepend ("'%s'", key);
    return -1;
  }
  return 0;
}

static int
disk_from_json (const json_t *o, size_t i, int64_t version,
                struct chain_disk *d)
{
  char where[160];
  const char *name, *image, *bitmap, *hash, *comp, *reason;
  int64_t cluster;

  snprintf (where, sizeof where, "disk %zu: ", i + 1);
  if (!json_is_object (o))
    return jsonutil_invalid ("%snot a JSON object", where);
  if (json_is_string (json_object_get (o, "name"))
      && name_is_valid (json_string_value (json_object_get (o, "name"))))
    snprintf (where, sizeof where,
              "disk '%s': ", json_string_value (json_object_get (o, "name")));
  d->hash_kind = json_object_get (o, CHAIN_KEY_HASH_SEGMENTS) != NULL
                   ? CHAIN_HASH_SEGMENTS
                   : CHAIN_HASH_WHOLE;
  if (check_disk_keys (o, where, version) == -1
      || jsonutil_get_string (o, "name", where, false, &name) == -1
      || jsonutil_get_string (o, "image", where, false, &image) == -1
      || get_kind (o, where, true, &d->kind) == -1
      || get_u64 (o, "virtual-size", where, &d->virtual_size) == -1
      || jsonutil_get_int (o, "cluster-size", where, 0, MAX_CLUSTER,
                           "a power of two from 512 to 2097152", &cluster)
           == -1
      || jsonutil_get_string (o, "bitmap", where, false, &bitmap) == -1
      || get_u64 (o, "bytes-read", where, &d->bytes_read) == -1
      || get_u64 (o, "bytes-written", where, &d->bytes_written) == -1
      || get_u64 (o, "extents", where, &d->extents) == -1
      || jsonutil_get_string (o, hash_key (d->hash_kind), where, false, &hash)
           == -1
      || jsonutil_get_string (o, "compression", where, false, &comp) == -1
      || jsonutil_get_string (o, "reason", where, true, &reason) == -1)
    return -1;
  if (json_object_get (o, CHAIN_KEY_BEFORE_COMPRESSION) != NULL
      && get_u64 (o, CHAIN_KEY_BEFORE_COMPRESSION, where,
                  &d->bytes_before_compression)
           == -1)
    return -1;
  d->cluster_size = (uint32_t) cluster;
  if (chain_compression_parse (comp, &d->compression) == -1) {
    error_prepend ("%s'compression'", where);
    return -1;
  }
  if (!is_hex_hash (hash))
    return jsonutil_invalid ("%s'%s' must be 32 lowercase hex digits", where,
                             hash_key (d->hash_kind));
  strcpy (d->hash, hash);
  if (!dup_or_null (name, &d->name) || !dup_or_null (image, &d->image)
      || !dup_or_null (bitmap, &d->bitmap)
      || !dup_or_null (reason, &d->reason)) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  return 0;
}

/* "version": absent (1) or 2; a newer one is refused, naming both. */
static int
get_version (const json_t *j, int64_t *version)
{
  const json_t *v = json_object_get (j, CHAIN_KEY_VERSION);

  *version = 1;
  if (v == NULL)
    return 0;
  if (!json_is_integer (v) || json_integer_value (v) < 2)
    return jsonutil_invalid ("'%s' must be an integer from 2 to %d",
                             CHAIN_KEY_VERSION, CHAIN_MANIFEST_VERSION);
  if (json_integer_value (v) > CHAIN_MANIFEST_VERSION)
    return jsonutil_invalid (
      "the manifest has version %" JSON_INTEGER_FORMAT
      ", this knib reads versions up to %d: use a newer knib",
      json_integer_value (v), CHAIN_MANIFEST_VERSION);
  *version = json_integer_value (v);
  return 0;
}

static int
fill_from_json (struct chain_manifest *m, const json_t *j)
{
  const char *vm, *state, *reason;
  const json_t *disks;
  int64_t version = 1;

  if (!json_is_object (j))
    return jsonutil_invalid ("not a JSON object");
  if (get_version (j, &version) == -1
      || check_keys_with (j, manifest_keys, manifest_optional, "") == -1
      || get_id (j, "id", false, m->id) == -1
      || jsonutil_get_string (j, "vm", "", false, &vm) == -1
      || get_id (j, "parent", true, m->parent) == -1
      || get_id (j, "chain", false, m->chain) == -1
      || jsonutil_get_int (j, "position", "", 1, INT64_MAX,
                           "a positive integer", &m->position)
           == -1
      || get_kind (j, "", false, &m->kind) == -1
      || jsonutil_get_string (j, "state", "", false, &state) == -1
      || get_time (j, "created", &m->created) == -1
      || get_time (j, "finished", &m->finished) == -1
      || jsonutil_get_string (j, "reason", "", false, &reason) == -1)
    return -1;
  if (strcmp (state, "complete") == 0)
    m->state = CHAIN_STATE_COMPLETE;
  else if (strcmp (state, "removed") == 0)
    m->state = CHAIN_STATE_REMOVED;
  else
    return jsonutil_invalid ("'state' must be complete or removed, not '%s'",
                             state);
  if (!dup_or_null (vm, &m->vm) || !dup_or_null (reason, &m->reason)) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  disks = json_object_get (j, "disks");
  if (!json_is_array (disks))
    return jsonutil_invalid ("'disks' must be an array");
  for (size_t i = 0; i < json_array_size (disks); i++) {
    struct chain_disk d = { 0 };

    if (disk_from_json (json_array_get (disks, i), i, version, &d) == -1) {
      chain_disk_release (&d);
      return -1;
    }
    if (chain_disk_vector_append (&m->disks, d) == -1) {
      chain_disk_release (&d);
      set_error (ENOMEM, "manifest disks");
      return -1;
    }
  }
  if (json_object_get (j, CHAIN_KEY_VALIDATION) != NULL) {
    m->validation
      = chain_validation_from_json (json_object_get (j, CHAIN_KEY_VALIDATION));
    if (m->validation == NULL)
      return -1;
  }
  return chain_manifest_validate (m);
}

struct chain_manifest *
chain_manifest_from_json (const json_t *j)
{
  struct chain_manifest *m = chain_manifest_new ();

  if (m == NULL)
    return NULL;
  if (fill_from_json (m, j) == -1) {
    chain_manifest_free (m);
    return NULL;
  }
  return m;
}

struct chain_manifest *
chain_manifest_load (const char *path)
{
  json_t *j = jsonutil_load (path, "manifest");
  struct chain_manifest *m;

  if (j == NULL)
    return NULL;
  m = chain_manifest_from_json (j);
  json_decref (j);
  if (m == NULL) {
    error_prepend ("manifest '%s'", path);
    errno = get_errno () ? get_errno () : EINVAL; /* corrupt, not missing */
  }
  return m;
}

struct chain_manifest *
chain_manifest_load_backup (struct chain_repo *repo, const char *vm,
                            const char *id)
{
  CLEANUP_FREE char *path = NULL;
  struct chain_manifest *m;

  path = str_printf ("%s/" CHAIN_VMS_DIR "/%s/%s/" CHAIN_MANIFEST_FILE,
                     repo->path, vm, id);
  if (path == NULL)
    return NULL;
  m = chain_manifest_load (path);
  if (m == NULL)
    return NULL;
  if (strcmp (m->vm, vm) != 0 || strcmp (m->id, id) != 0) {
    set_error (-EINVAL,
               "manifest '%s': it describes backup '%s' of vm '%s', not "
               "backup '%s' of vm '%s' (was it moved?)",
               path, m->id, m->vm, id, vm);
    chain_manifest_free (m);
    return NULL;
  }
  return m;
}

int
chain_manifest_commit (const struct chain_manifest *m, const char *path)
{
  CLEANUP_FREE char *dir_copy = strdup (path);
  CLEANUP_FREE char *base_copy = strdup (path);
  json_t *j;
  int r;

  if (dir_copy == NULL || base_copy == NULL) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  if (chain_manifest_validate (m) == -1) {
    error_prepend ("manifest '%s': will not write an invalid manifest", path);
    return -1;
  }
  j = chain_manifest_to_json (m);
  if (j == NULL)
    return -1;
  r = jsonutil_commit (j, dirname (dir_copy), basename (base_copy), "manifest");
  json_decref (j);
  return r;
}
