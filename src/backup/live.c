/* SPDX-License-Identifier: Apache-2.0 */
/* live.c: the QMP side of a backup: disks, bitmaps, fleecing, exports. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "backup/internal.h"
#include "common/fs.h"
#include "common/util.h"
#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/testhook.h"

static bool
has_prefix (const char *s, const char *prefix)
{
  return s != NULL && strncmp (s, prefix, strlen (prefix)) == 0;
}

static void
bitmap_release (struct live_bitmap *b)
{
  free (b->name);
}

static void
disk_release (struct live_disk *d)
{
  size_t i;

  free (d->name);
  free (d->node);
  free (d->driver);
  free (d->filename);
  free (d->qdev);
  free (d->backing);
  for (i = 0; i < d->bitmaps.len; i++)
    bitmap_release (&d->bitmaps.ptr[i]);
  live_bitmap_vector_reset (&d->bitmaps);
}

void
live_disk_vector_release (live_disk_vector *v)
{
  size_t i;

  for (i = 0; i < v->len; i++)
    disk_release (&v->ptr[i]);
  live_disk_vector_reset (v);
}

/* "/machine/peripheral/vda/virtio-backend" -> "vda"; NULL when the
 * device has no id of its own. */
static char *
qdev_id (const char *qdev)
{
  static const char prefix[] = "/machine/peripheral/";
  const char *p, *end;

  if (qdev == NULL)
    return NULL;
  if (!has_prefix (qdev, prefix))
    return qdev[0] != '\0' && qdev[0] != '/' ? strdup (qdev) : NULL;
  p = qdev + strlen (prefix);
  end = strchr (p, '/');
  return end ? strndup (p, end - p) : strdup (p);
}

static int
parse_bitmaps (const json_t *list, struct live_disk *d)
{
  size_t i;
  json_t *b;

  if (list == NULL)
    return 0;
  if (!json_is_array (list)) {
    set_error (EPROTO, "qmp 'query-block': dirty-bitmaps of %s is not a list",
               d->name);
    return -1;
  }
  json_array_foreach (list, i, b)
  {
    struct live_bitmap bm = { 0 };
    const char *name = json_string_value (json_object_get (b, "name"));
    json_t *gran = json_object_get (b, "granularity");

    /* Block jobs keep unnamed bitmaps of their own: not ours to see. */
    if (name == NULL && json_object_get (b, "name") == NULL)
      continue;
    if (name == NULL || !json_is_integer (gran)) {
      set_error (EPROTO,
                 "qmp 'query-block': a dirty bitmap of %s lacks a name "
                 "or granularity",
                 d->name);
      return -1;
    }
    bm.name = strdup (name);
    if (bm.name == NULL) {
      set_error (errno, "strdup");
      return -1;
    }
    bm.granularity = json_integer_value (gran);
    bm.count = json_integer_value (json_object_get (b, "count"));
    bm.recording = json_is_true (json_object_get (b, "recording"));
    bm.persistent = json_is_true (json_object_get (b, "persistent"));
    bm.busy = json_is_true (json_object_get (b, "busy"));
    bm.inconsistent = json_is_true (json_object_get (b, "inconsistent"));
    if (live_bitmap_vector_append (&d->bitmaps, bm) == -1) {
      set_error (errno, "realloc");
      free (bm.name);
      return -1;
    }
  }
  return 0;
}

/* Whether a node's image can store persistent bitmaps: qcow2 v3, not
 * raw nor qcow2 v2 ("compat": "0.10").  A qcow2 node that does not say
 * is taken to be v3 (QEMU refuses the bitmap if it is not). */
static bool
can_persist_bitmaps (const char *driver, const json_t *image)
{
  const json_t *fs = json_object_get (image, "format-specific");
  const char *compat = json_string_value (
    json_object_get (json_object_get (fs, "data"), "compat"));

  return strcmp (driver, "qcow2") == 0
         && (compat == NULL || strcmp (compat, "0.10") != 0);
}

/* One block node (a BlockDeviceInfo, as query-block's "inserted" or an
 * entry of query-named-block-nodes) as the disk name (taken). */
static int
parse_node (const json_t *info, char *name, const char *qdev,
            live_disk_vector *disks)
{
  const char *node, *driver, *file, *backing;
  json_t *image, *size;
  struct live_disk d = { .name = name };

  node = json_string_value (json_object_get (info, "node-name"));
  driver = json_string_value (json_object_get (info, "drv"));
  file = json_string_value (json_object_get (info, "file"));
  image = json_object_get (info, "image");
  size = json_object_get (image, "virtual-size");
  if (node == NULL || driver == NULL || !json_is_integer (size)) {
    set_error (EPROTO,
               "qmp 'query-block': disk '%s' lacks node-name, drv or "
               "virtual-size",
               d.name);
    free (d.name);
    return -1;
  }
  if (name_check ("disk", d.name) == -1) {
    free (d.name);
    return -1;
  }
  d.node = strdup (node);
  d.driver = strdup (driver);
  d.filename = strdup (file ? file : "");
  if (qdev != NULL && (d.qdev = strdup (qdev)) == NULL) {
    set_error (ENOMEM, "strdup");
    disk_release (&d);
    return -1;
  }
  backing = json_string_value (json_object_get (image, "backing-filename"));
  if (backing != NULL && (d.backing = strdup (backing)) == NULL) {
    set_error (ENOMEM, "strdup");
    disk_release (&d);
    return -1;
  }
  d.virtual_size = json_integer_value (size);
  d.read_only = json_is_true (json_object_get (info, "ro"));
  d.persistent_bitmaps = can_persist_bitmaps (driver, image);
  if (d.node == NULL || d.driver == NULL || d.filename == NULL) {
    set_error (ENOMEM, "strdup");
    disk_release (&d);
    return -1;
  }
  if (parse_bitmaps (json_object_get (info, "dirty-bitmaps"), &d) == -1
      || live_disk_vector_append (disks, d) == -1) {
    if (get_errno () == 0)
      set_error (errno, "realloc");
    disk_release (&d);
    return -1;
  }
  return 0;
}

static int
parse_disk (const json_t *b, live_disk_vector *disks)
{
  json_t *inserted = json_object_get (b, "inserted");
  const char *device = json_string_value (json_object_get (b, "device"));
  const char *node;
  char *name;

  if (inserted == NULL)
    return 0; /* an empty drive (cdrom): nothing to back up */
  node = json_string_value (json_object_get (inserted, "node-name"));
  name = qdev_id (json_string_value (json_object_get (b, "qdev")));
  if (name == NULL && device != NULL && device[0] != '\0')
    name = strdup (device);
  if (name == NULL) {
    set_error (EINVAL,
               "a disk of the VM (node '%s') has no device id: give "
               "its device an id (-device ...,id=vda)",
               node ? node : "?");
    return -1;
  }
  return parse_node (inserted, name,
                     json_string_value (json_object_get (b, "qdev")), disks);
}

/* The block devices of a QEMU with guest devices. */
static int
query_block (struct qmp_client *c, live_disk_vector *disks)
{
  json_t *blocks = NULL, *b;
  size_t i;
  int r = 0;

  if (qmp_query_block (c, &blocks) == -1)
    return -1;
  json_array_foreach (blocks, i, b)
  {
    if (parse_disk (b, disks) == -1) {
      r = -1;
      break;
    }
  }
  json_decref (blocks);
  return r;
}

/* The nodes of map, named as it says (qemu-storage-daemon). */
static int
query_nodes (struct qmp_client *c, const struct live_node_map *map, size_t n,
             live_disk_vector *disks)
{
  json_t *nodes = NULL, *e;
  size_t i, j;
  int r = 0;

  if (qmp_query_named_block_nodes (c, true, &nodes) == -1)
    return -1;
  for (i = 0; i < n && r == 0; i++) {
    const json_t *found = NULL;
    char *name;

    json_array_foreach (nodes, j, e)
    {
      const char *node = json_string_value (json_object_get (e, "node-name"));
      if (node != NULL && strcmp (node, map[i].node) == 0) {
        found = e;
        break;
      }
    }
    if (found == NULL) {
      set_error (ENOENT, "disk '%s': QEMU has no block node '%s'", map[i].disk,
                 map[i].node);
      r = -1;
    }
    else if ((name = strdup (map[i].disk)) == NULL) {
      set_error (errno, "strdup");
      r = -1;
    }
    else
      r = parse_node (found, name, NULL, disks);
  }
  json_decref (nodes);
  return r;
}

int
live_disks_query (struct qmp_client *c, const struct live_node_map *map,
                  size_t n, live_disk_vector *disks)
{
  int r = map ? query_nodes (c, map, n, disks) : query_block (c, disks);

  if (r == -1)
    live_disk_vector_release (disks);
  return r;
}

int
live_disks_rename (live_disk_vector *disks, const struct backup_rename *renames,
                   size_t n)
{
  for (size_t i = 0; i < disks->len; i++)
    for (size_t j = 0; j < n; j++) {
      char *name;

      if (strcmp (disks->ptr[i].name, renames[j].device) != 0)
        continue;
      name = strdup (renames[j].disk);
      if (name == NULL) {
        set_error (errno, "strdup");
        return -1;
      }
      free (disks->ptr[i].name);
      disks->ptr[i].name = name;
      break;
    }
  return 0;
}

char *
live_disk_volatile_why (const struct live_disk *d)
{
  if (d->persistent_bitmaps)
    return NULL;
  if (strcmp (d->driver, "qcow2") == 0)
    return str_printf ("%s is a qcow2 v2 (compat=0.10) image, which "
                       "cannot store a persistent dirty bitmap",
                       d->name);
  return str_printf ("%s is a %s image, which cannot store a persistent "
                     "dirty bitmap",
                     d->name, d->driver);
}

const struct live_bitmap *
live_disk_find_bitmap (const struct live_disk *d, const char *name)
{
  size_t i;

  for (i = 0; i < d->bitmaps.len; i++)
    if (strcmp (d->bitmaps.ptr[i].name, name) == 0)
      return &d->bitmaps.ptr[i];
  return NULL;
}

bool
live_bitmap_usable (const struct live_disk *d, const char *name, char **why)
{
  const struct live_bitmap *b = live_disk_find_bitmap (d, name);
  const char *what = NULL;

  if (b == NULL && !d->persistent_bitmaps) {
    /* It was a transient bitmap, gone with the QEMU that held it. */
    CLEANUP_FREE char *vol = live_disk_volatile_why (d);

    if (why != NULL
        && asprintf (why,
                     "bitmap %s of %s is missing: %s, so the bitmap "
                     "went when QEMU stopped",
                     name, d->name, vol ? vol : "the image")
             == -1)
      *why = NULL;
    return false;
  }
  if (b == NULL)
    what = "is missing (QEMU was restarted without it, or the disk was "
           "replaced)";
  else if (b->inconsistent)
    what = "is inconsistent (QEMU did not shut down cleanly)";
  else if (!b->persistent && d->persistent_bitmaps)
    what = "is not persistent";
  else if (!b->recording)
    what = "is not recording";
  else if (b->busy)
    what = "is in use by a block job";
  else if (b->granularity != LIVE_GRANULARITY)
    what = "has an unexpected granularity";
  if (what == NULL)
    return true;
  if (why != NULL
      && asprintf (why, "bitmap %s of %s %s", name, d->name, what) == -1)
    *why = NULL;
  return false;
}

int
live_check_foreign_jobs (struct qmp_client *c)
{
  json_t *jobs = NULL, *j;
  size_t i;

  if (qmp_query_jobs (c, &jobs) == -1)
    return -1;
  json_array_foreach (jobs, i, j)
  {
    const char *id = json_string_value (json_object_get (j, "id"));
    const char *type = json_string_value (json_object_get (j, "type"));
    const char *status = json_string_value (json_object_get (j, "status"));

    if (has_prefix (id, "knib-"))
      continue;
    set_error (EBUSY,
               "a %s block job '%s' (%s) that is not knib's runs in "
               "this QEMU; wait for it to finish",
               type ? type : "", id ? id : "?", status ? status : "?");
    json_decref (jobs);
    return -1;
  }
  json_decref (jobs);
  return 0;
}

/* Build "knib-fleece-vda" and friends. */
static char *
node_name (const char *prefix, const char *disk)
{
  return str_printf ("%s%s", prefix, disk);
}

static int
add_fleece_node (struct qmp_client *c, struct live_target *t)
{
  CLEANUP_FREE char *node = node_name (LIVE_FLEECE_PREFIX, t->disk->name);
  CLEANUP_FREE char *fdset_path = NULL;
  int64_t fdset = -1;
  json_t *args;
  int r;

  if (node == NULL)
    return -1;
  /* QEMU gets the image that knib made as an open file: no path that
   * another user could replace between its creation and QEMU's open. */
  if (t->fleece_fd >= 0) {
    if (qmp_add_fd (c, t->fleece_fd, node, &fdset) == -1)
      return -1;
    /* A knib killed from here on leaves the set in QEMU (recover_fdsets
     * removes it). */
    test_stop_point ("fdset");
    fdset_path = str_printf ("/dev/fdset/%" PRId64, fdset);
    if (fdset_path == NULL)
      return -1;
  }
  /* The image is made; QEMU (or the daemon) opens it next. */
  test_stop_point ("fleece");
  /* blockdev-backup's target reads what it has not copied from its
   * backing, the disk; a copy-before-write filter's target has none
   * (snapshot-access reads through the filter). */
  args
    = json_pack ("{s:s, s:s, s:{s:s, s:s}, s:s}", "driver", "qcow2",
                 "node-name", node, "file", "driver", "file", "filename",
                 fdset_path ? fdset_path : t->fleece_path, "discard", "unmap");
  if (args != NULL && !t->cbw
      && json_object_set_new (args, "backing", json_string (t->disk->node))
           == -1) {
    json_decref (args);
    args = NULL;
  }
  r = qmp_client_execute_packed (c, "blockdev-add", args, NULL);
  if (r == 0)
    t->node_added = true;
  /* QEMU holds its own copy of the descriptor now; the set goes. */
  if (fdset >= 0) {
    struct error_saved saved;

    error_save (&saved);
    if (qmp_remove_fdset (c, fdset) == -1 && r == 0)
      r = -1;
    else
      error_restore (&saved);
  }
  return r;
}

/* The transaction: for every disk, the fleecing job and the bitmaps. */
static json_t *
build_transaction (struct live_target *targets, size_t n)
{
  json_t *actions = json_array ();
  size_t i;

  if (actions == NULL)
    return NULL;
  for (i = 0; i < n; i++) {
    struct live_target *t = &targets[i];
    CLEANUP_FREE char *job = node_name (LIVE_JOB_PREFIX, t->disk->name);
    CLEANUP_FREE char *fleece = node_name (LIVE_FLEECE_PREFIX, t->disk->name);

    if (job == NULL || fleece == NULL)
      goto nomem;
    if (!t->cbw
        && json_array_append_new (
             actions, json_pack ("{s:s, s:{s:s, s:s, s:s, s:s, s:b}}", "type",
                                 "blockdev-backup", "data", "job-id", job,
                                 "device", t->disk->node, "target", fleece,
                                 "sync", "none", "auto-dismiss", 0))
             == -1)
      goto nomem;
    if (t->new_bitmap
        && json_array_append_new (
             actions, json_pack ("{s:s, s:{s:s, s:s, s:b, s:i}}", "type",
                                 "block-dirty-bitmap-add", "data", "node",
                                 t->disk->node, "name", t->new_bitmap,
                                 "persistent", !t->transient_bitmap,
                                 "granularity", (json_int_t) LIVE_GRANULARITY))
             == -1)
      goto nomem;
    if (t->old_bitmap
        && json_array_append_new (
             actions, json_pack ("{s:s, s:{s:s, s:s}}", "type",
                                 "block-dirty-bitmap-disable", "data", "node",
                                 t->disk->node, "name", t->old_bitmap))
             == -1)
      goto nomem;
  }
  return json_pack ("{s:o}", "actions", actions);

nomem:
  json_decref (actions);
  return NULL;
}

static int
add_export (struct qmp_client *c, struct live_target *t)
{
  CLEANUP_FREE char *id = node_name (LIVE_EXPORT_PREFIX, t->disk->name);
  CLEANUP_FREE char *node = node_name (
    t->cbw ? LIVE_ACCESS_PREFIX : LIVE_FLEECE_PREFIX, t->disk->name);
  json_t *args;

  if (id == NULL || node == NULL)
    return -1;
  args = json_pack ("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id", id,
                    "node-name", node, "name", t->disk->name, "writable", 0);
  /* The fleecing node finds the bitmap down its backing chain; the
   * snapshot-access node has none: name the disk's node. */
  if (args && t->export_bitmap
      && json_object_set_new (args, "bitmaps",
                              t->cbw ? json_pack ("[{s:s, s:s}]", "node",
                                                  t->disk->node, "name",
                                                  t->export_bitmap)
                                     : json_pack ("[s]", t->export_bitmap))
           == -1) {
    json_decref (args);
    args = NULL;
  }
  if (qmp_client_execute_packed (c, "block-export-add", args, NULL) == -1)
    return -1;
  t->export_added = true;
  return 0;
}

/* The device of disk d onto node, unless it is there already (QEMU 7.2
 * aborts on a qom-set of the node a device already has). */
static int
set_drive (struct qmp_client *c, const char *qdev, const char *node)
{
  CLEANUP_FREE char *now = NULL;

  if (qmp_qom_get_string (c, qdev, "drive", &now) == -1)
    return -1;
  if (strcmp (now, node) == 0)
    return 0;
  return qmp_qom_set_string (c, qdev, "drive", node);
}

int
live_cbw_supported (struct qmp_client *c, bool *yes)
{
  json_t *schema = NULL, *e, *v;
  bool option = false, access = false;
  size_t i, j;

  *yes = false;
  if (qmp_client_execute (c, "query-qmp-schema", NULL, &schema) == -1)
    return -1;
  json_array_foreach (schema, i, e)
  {
    json_array_foreach (json_object_get (e, "members"), j, v)
    {
      const char *name = json_string_value (json_object_get (v, "name"));
      if (name != NULL && strcmp (name, "on-cbw-error") == 0)
        option = true;
    }
    json_array_foreach (json_object_get (e, "values"), j, v)
    {
      const char *name = json_string_value (v);
      if (name != NULL && strcmp (name, "snapshot-access") == 0)
        access = true;
    }
  }
  json_decref (schema);
  *yes = option && access;
  return 0;
}

static int
add_cbw_node (struct qmp_client *c, struct live_target *t)
{
  CLEANUP_FREE char *node = node_name (LIVE_CBW_PREFIX, t->disk->name);
  CLEANUP_FREE char *fleece = node_name (LIVE_FLEECE_PREFIX, t->disk->name);

  if (node == NULL || fleece == NULL)
    return -1;
  /* A write that cannot save the old data into the fleecing image (the
   * scratch is full) goes on, and the snapshot breaks: its reads fail,
   * and so does the backup. */
  if (qmp_client_execute_packed (
        c, "blockdev-add",
        json_pack ("{s:s, s:s, s:s, s:s, s:s}", "driver", "copy-before-write",
                   "node-name", node, "file", t->disk->node, "target", fleece,
                   "on-cbw-error", "break-snapshot"),
        NULL)
      == -1)
    return -1;
  t->cbw_added = true;
  return 0;
}

/* The point in time: a running VM paused (stopping drains every disk),
 * the bitmaps' transaction, every device onto its filter, the VM
 * resumed, whatever failed. */
/* The marker's name: knib's pid and the process's start time, so that
 * a later process with the same pid is not taken for this one. */
static char *
pause_marker_name (pid_t pid)
{
  return str_printf ("%s%d-%" PRId64, LIVE_PAUSE_PREFIX, (int) pid,
                     process_start_time (pid));
}

static void
remove_pause_marker (struct qmp_client *c, const char *marker)
{
  struct error_saved saved;

  error_save (&saved);
  if (qmp_object_del (c, marker) == -1)
    debug (DEBUG_CHAIN,
           "removing the pause marker %s: %s (recovery removes it)", marker,
           get_error ());
  error_restore (&saved);
}

static int
switch_to_cbw (struct qmp_client *c, struct live_target *targets, size_t n)
{
  json_t *tx = build_transaction (targets, n);
  CLEANUP_FREE char *marker = NULL;
  volatile sig_atomic_t *cancel;
  bool running = false;
  size_t i;
  int r = -1;

  if (tx == NULL) {
    set_error (ENOMEM, "the backup transaction");
    return -1;
  }
  if (json_array_size (json_object_get (tx, "actions")) == 0) {
    json_decref (tx); /* an isolated backup: no bitmaps */
    tx = NULL;
  }
  if (qmp_query_running (c, &running) == -1) {
    json_decref (tx);
    return -1;
  }
  /* A marker in QEMU for as long as knib holds the VM paused: should
   * knib be killed in between, the next recovery knows the pause was
   * knib's, not the user's, and resumes the VM. */
  if (running
      && ((marker = pause_marker_name (getpid ())) == NULL
          || qmp_object_add_secret (c, marker) == -1)) {
    json_decref (tx);
    return -1;
  }
  /* A signal must not cut the pause short: an interrupted command
   * leaves the client unusable, and the VM would stay paused until the
   * next recovery.  Every step still has its timeout; the signal is
   * seen once the VM runs again. */
  cancel = qmp_client_set_cancel (c, NULL);
  if (running && qmp_stop (c) == -1) {
    qmp_client_set_cancel (c, cancel);
    json_decref (tx);
    remove_pause_marker (c, marker);
    return -1;
  }
  if (tx != NULL && qmp_client_execute (c, "transaction", tx, NULL) == -1) {
    error_prepend ("the backup transaction failed");
    goto out;
  }
  for (i = 0; i < n; i++)
    targets[i].job_started = true;
  for (i = 0; i < n; i++) {
    CLEANUP_FREE char *node
      = node_name (LIVE_CBW_PREFIX, targets[i].disk->name);

    if (!targets[i].cbw)
      continue;
    if (node == NULL || set_drive (c, targets[i].disk->qdev, node) == -1) {
      error_prepend ("disk %s: moving device '%s' onto its filter",
                     targets[i].disk->name, targets[i].disk->qdev);
      goto out;
    }
    targets[i].drive_set = true;
  }
  test_stop_point ("paused");
  r = 0;
out:
  if (running) {
    struct error_saved saved;

    error_save (&saved);
    if (qmp_cont (c) == -1) {
      if (r == 0)
        error_prepend ("resuming the VM");
      else
        error_restore (&saved);
      qmp_client_set_cancel (c, cancel);
      return -1; /* the marker stays: recovery resumes the VM */
    }
    error_restore (&saved);
  }
  qmp_client_set_cancel (c, cancel);
  if (running)
    remove_pause_marker (c, marker);
  if (r == 0 && cancel != NULL && *cancel) {
    set_error (EINTR, "interrupted");
    return -1;
  }
  return r;
}

static int
start_cbw (struct qmp_client *c, struct live_target *targets, size_t n)
{
  size_t i, filters = 0;

  for (i = 0; i < n; i++)
    filters += targets[i].cbw;
  for (i = 0; i < n; i++)
    if (targets[i].cbw && add_cbw_node (c, &targets[i]) == -1) {
      error_prepend ("disk %s: copy-before-write filter",
                     targets[i].disk->name);
      return -1;
    }
  if (switch_to_cbw (c, targets, n) == -1)
    return -1;
  if (filters == n)
    debug (DEBUG_CHAIN,
           "transaction done: %zu disk(s) at one point in time "
           "(copy-before-write filters, on-cbw-error=break-snapshot)",
           n);
  else
    debug (DEBUG_CHAIN,
           "transaction done: %zu disk(s) at one point in time (%zu "
           "through copy-before-write filters, on-cbw-error=break-snapshot; "
           "the rest, read-only, through blockdev-backup sync=none)",
           n, filters);
  for (i = 0; i < n; i++) {
    struct live_target *t = &targets[i];
    CLEANUP_FREE char *node = node_name (LIVE_ACCESS_PREFIX, t->disk->name);
    CLEANUP_FREE char *cbw = node_name (LIVE_CBW_PREFIX, t->disk->name);

    if (!t->cbw)
      continue;
    if (node == NULL || cbw == NULL
        || qmp_client_execute_packed (c, "blockdev-add",
                                      json_pack ("{s:s, s:s, s:s}", "driver",
                                                 "snapshot-access", "node-name",
                                                 node, "file", cbw),
                                      NULL)
             == -1) {
      error_prepend ("disk %s: snapshot-access node", t->disk->name);
      return -1;
    }
    t->access_added = true;
  }
  return 0;
}

int
live_start (struct qmp_client *c, struct live_target *targets, size_t n,
            const char *nbd_socket, bool *server_started)
{
  size_t i;

  *server_started = false;
  for (i = 0; i < n; i++)
    if (add_fleece_node (c, &targets[i]) == -1) {
      error_prepend ("disk %s: fleecing node", targets[i].disk->name);
      goto fail;
    }
  test_stop_point ("transaction");
  for (i = 0; i < n && !targets[i].cbw; i++)
    ;
  if (i < n) {
    if (start_cbw (c, targets, n) == -1)
      goto fail;
  }
  else {
    if (qmp_client_execute_packed (c, "transaction",
                                   build_transaction (targets, n), NULL)
        == -1) {
      error_prepend ("the backup transaction failed");
      goto fail;
    }
    for (i = 0; i < n; i++)
      targets[i].job_started = true;
    debug (DEBUG_CHAIN,
           "transaction done: %zu disk(s) at one point in time "
           "(blockdev-backup sync=none)",
           n);
  }
  if (qmp_nbd_server_start_unix (c, nbd_socket) == -1) {
    error_prepend ("cannot start QEMU's NBD server");
    goto fail;
  }
  *server_started = true;
  for (i = 0; i < n; i++)
    if (add_export (c, &targets[i]) == -1) {
      error_prepend ("disk %s: NBD export", targets[i].disk->name);
      goto fail;
    }
  return 0;

fail : {
  struct error_saved err;

  error_save (&err);
  (void) live_stop (c, targets, n, *server_started, false);
  *server_started = false;
  error_restore (&err);
}
  return -1;
}

static bool
export_deleted (const json_t *data, void *opaque)
{
  const char *id = json_string_value (json_object_get (data, "id"));

  return id != NULL && strcmp (id, opaque) == 0;
}

/* Remember the first failure of a teardown, go on with the rest. */
static void
note_failure (int *r, char **first)
{
  debug (DEBUG_CHAIN, "teardown: %s", get_error ());
  if (*r == 0) {
    *first = strdup (get_error ());
    *r = -1;
  }
}

static int
remove_export (struct qmp_client *c, const char *id)
{
  json_t *event = NULL;

  /* Stopping the server deleted it: its event came before the reply. */
  if (qmp_client_wait_event (c, "BLOCK_EXPORT_DELETED", export_deleted,
                             (void *) id, 0, &event)
      == 0) {
    json_decref (event);
    return 0;
  }
  error_clear (); /* not yet: delete it */
  if (qmp_block_export_del (c, id) == -1 && get_errno () == EREMOTEIO) {
    /* Already gone (the server stop took it): fine. */
    return 0;
  }
  if (qmp_client_wait_event (c, "BLOCK_EXPORT_DELETED", export_deleted,
                             (void *) id, 30000, &event)
      == -1)
    return -1;
  json_decref (event);
  return 0;
}

/* Cancel a knib job and dismiss it.  A cancelled job concludes with the
 * error "Operation canceled", which is what we asked for. */
static int
cancel_job (struct qmp_client *c, const char *id)
{
  if (qmp_job_cancel (c, id) == -1) {
    /* Concluded already (it failed on its own): dismiss it below. */
    if (get_errno () != EREMOTEIO)
      return -1;
  }
  if (qmp_client_job_wait (c, id, 60000) == -1 && get_errno () != EIO)
    return -1;
  error_clear ();
  return 0;
}

/* Give the new bitmap's tracking back to the old one (which is enabled
 * again), then drop the new one: one transaction, all or nothing. */
static int
rollback_bitmaps (struct qmp_client *c, const struct live_target *t)
{
  json_t *args;

  if (t->old_bitmap == NULL)
    return qmp_bitmap_remove (c, t->disk->node, t->new_bitmap);
  args = json_pack (
    "{s:[{s:s, s:{s:s, s:s}}, {s:s, s:{s:s, s:s, s:[s]}}, {s:s, s:{s:s, "
    "s:s}}]}",
    "actions", "type", "block-dirty-bitmap-enable", "data", "node",
    t->disk->node, "name", t->old_bitmap, "type", "block-dirty-bitmap-merge",
    "data", "node", t->disk->node, "target", t->old_bitmap, "bitmaps",
    t->new_bitmap, "type", "block-dirty-bitmap-remove", "data", "node",
    t->disk->node, "name", t->new_bitmap);
  return qmp_client_execute_packed (c, "transaction", args, NULL);
}

/* The snapshot-access node, the device back onto its disk's node, the
 * filter. */
static int
stop_cbw (struct qmp_client *c, struct live_target *t)
{
  CLEANUP_FREE char *access = node_name (LIVE_ACCESS_PREFIX, t->disk->name);
  CLEANUP_FREE char *cbw = node_name (LIVE_CBW_PREFIX, t->disk->name);

  if (access == NULL || cbw == NULL)
    return -1;
  if (t->access_added && qmp_blockdev_del (c, access) == -1)
    return -1;
  t->access_added = false;
  if (t->drive_set && set_drive (c, t->disk->qdev, t->disk->node) == -1) {
    error_prepend ("disk %s: moving device '%s' back onto node '%s'",
                   t->disk->name, t->disk->qdev, t->disk->node);
    return -1;
  }
  t->drive_set = false;
  if (t->cbw_added && qmp_blockdev_del (c, cbw) == -1)
    return -1;
  t->cbw_added = false;
  return 0;
}

int
live_stop (struct qmp_client *c, struct live_target *targets, size_t n,
           bool server_started, bool success)
{
  CLEANUP_FREE char *first = NULL;
  int r = 0;
  size_t i;

  /* Stopping the server closes its exports; wait for each to go. */
  if (server_started && qmp_nbd_server_stop (c) == -1
      && get_errno () != EREMOTEIO) /* already stopped: nothing left */
    note_failure (&r, &first);
  for (i = 0; i < n; i++) {
    struct live_target *t = &targets[i];
    CLEANUP_FREE char *exp = node_name (LIVE_EXPORT_PREFIX, t->disk->name);
    CLEANUP_FREE char *job = node_name (LIVE_JOB_PREFIX, t->disk->name);
    CLEANUP_FREE char *fleece = node_name (LIVE_FLEECE_PREFIX, t->disk->name);

    if (exp == NULL || job == NULL || fleece == NULL) {
      note_failure (&r, &first);
      continue;
    }
    if (t->export_added && remove_export (c, exp) == -1)
      note_failure (&r, &first);
    t->export_added = false;
    if (t->cbw && stop_cbw (c, t) == -1)
      note_failure (&r, &first);
    if (t->job_started && !t->cbw && cancel_job (c, job) == -1)
      note_failure (&r, &first);
    if (t->node_added && qmp_blockdev_del (c, fleece) == -1)
      note_failure (&r, &first);
    t->node_added = false;
    if (t->job_started && !success && t->new_bitmap
        && rollback_bitmaps (c, t) == -1)
      note_failure (&r, &first);
    t->job_started = false;
  }
  if (r == -1)
    set_error (0, "cleaning up in QEMU: %s", first ? first : "failed");
  return r;
}

bool
live_bitmap_is_ours (const struct live_owner *owner, const char *name)
{
  return chain_bitmap_is_ours (owner->repo, owner->vm, name);
}

int
live_bitmaps_prune (struct qmp_client *c, const struct live_disk *d,
                    const struct live_owner *owner, const char *keep,
                    const char *frozen, chain_string_vector *removed)
{
  size_t i;

  for (i = 0; i < d->bitmaps.len; i++) {
    const char *name = d->bitmaps.ptr[i].name;
    char *line;

    if (!live_bitmap_is_ours (owner, name) || (keep && strcmp (name, keep) == 0)
        || (frozen && strcmp (name, frozen) == 0))
      continue;
    if (qmp_bitmap_remove (c, d->node, name) == -1) {
      error_prepend ("disk %s: removing bitmap %s", d->name, name);
      return -1;
    }
    line = str_printf ("removed bitmap %s of %s", name, d->name);
    if (removed && line && chain_string_vector_append (removed, line) == 0)
      line = NULL;
    free (line);
  }
  return 0;
}

/* Record one repair (line is taken). */
static void
note (chain_string_vector *done, char *line)
{
  if (line == NULL)
    return;
  debug (DEBUG_CHAIN, "recover: %s", line);
  if (done == NULL || chain_string_vector_append (done, line) == -1)
    free (line);
}

/* Exports, the server they were on, jobs. */
static int
recover_exports_and_jobs (struct qmp_client *c, chain_string_vector *done)
{
  json_t *list = NULL, *e;
  size_t i;
  bool ours = false, others = false;

  if (qmp_query_block_exports (c, &list) == -1)
    return -1;
  json_array_foreach (list, i, e)
  {
    const char *id = json_string_value (json_object_get (e, "id"));
    if (has_prefix (id, LIVE_EXPORT_PREFIX))
      ours = true;
    else
      others = true;
  }
  /* knib's exports are on knib's server: stop it (unless someone else
   * exports on it too), which closes them. */
  if (ours && !others) {
    if (qmp_nbd_server_stop (c) == -1 && get_errno () != EREMOTEIO)
      goto fail;
    note (done, str_printf ("stopped the NBD server of a killed backup"));
  }
  json_array_foreach (list, i, e)
  {
    const char *id = json_string_value (json_object_get (e, "id"));
    if (has_prefix (id, LIVE_EXPORT_PREFIX)) {
      if (remove_export (c, id) == -1)
        goto fail;
      note (done, str_printf ("removed export %s", id));
    }
  }
  json_decref (list);
  list = NULL;

  if (qmp_query_jobs (c, &list) == -1)
    return -1;
  json_array_foreach (list, i, e)
  {
    const char *id = json_string_value (json_object_get (e, "id"));
    if (has_prefix (id, LIVE_JOB_PREFIX)) {
      if (cancel_job (c, id) == -1)
        goto fail;
      note (done, str_printf ("cancelled job %s", id));
    }
  }
  json_decref (list);
  return 0;

fail:
  json_decref (list);
  return -1;
}

/* Node's child through edge ("file", "backing") from QEMU's graph
 * (x-debug-query-block-graph: query-named-block-nodes of QEMU 7.2 does
 * not name a node's children).  *child malloc'ed, NULL when there is
 * none. */
int
live_node_child (struct qmp_client *c, const char *node, const char *edge,
                 char **child)
{
  json_t *graph = NULL, *e;
  json_t *nodes, *edges;
  json_int_t parent = -1, id = -1;
  size_t i;

  *child = NULL;
  if (qmp_client_execute (c, "x-debug-query-block-graph", NULL, &graph) == -1)
    return -1;
  nodes = json_object_get (graph, "nodes");
  edges = json_object_get (graph, "edges");
  json_array_foreach (nodes, i, e)
  {
    const char *name = json_string_value (json_object_get (e, "name"));
    const char *type = json_string_value (json_object_get (e, "type"));
    if (name != NULL && strcmp (name, node) == 0
        && (type == NULL || strcmp (type, "block-driver") == 0))
      parent = json_integer_value (json_object_get (e, "id"));
  }
  json_array_foreach (edges, i, e)
  {
    const char *name = json_string_value (json_object_get (e, "name"));
    if (name != NULL && strcmp (name, edge) == 0
        && json_integer_value (json_object_get (e, "parent")) == parent)
      id = json_integer_value (json_object_get (e, "child"));
  }
  json_array_foreach (nodes, i, e)
  {
    const char *name = json_string_value (json_object_get (e, "name"));
    if (name != NULL && name[0] != '\0'
        && json_integer_value (json_object_get (e, "id")) == id)
      *child = strdup (name);
  }
  json_decref (graph);
  return 0;
}

/* The node under a filter node: its "file" child.  *child malloc'ed. */
static int
filter_child (struct qmp_client *c, const char *filter, char **child)
{
  if (live_node_child (c, filter, "file", child) == -1)
    return -1;
  if (*child == NULL) {
    set_error (ENOENT, "filter node '%s': no named file child", filter);
    return -1;
  }
  return 0;
}

/* A VM that a killed backup left paused (its pause marker is there and
 * the process that made it is gone) runs again; the markers of dead
 * processes go.  A VM its user paused has no marker: it stays paused. */
static int
recover_pause (struct qmp_client *c, chain_string_vector *done)
{
  json_t *names = NULL, *e;
  size_t i;
  int r = 0;

  if (qmp_qom_children (c, "/objects", LIVE_PAUSE_PREFIX, &names) == -1)
    return -1;
  json_array_foreach (names, i, e)
  {
    const char *name = json_string_value (e);
    const char *p = name + strlen (LIVE_PAUSE_PREFIX);
    CLEANUP_FREE char *mine = NULL;
    bool running = true;
    char *end;
    long pid = strtol (p, &end, 10);

    if (end != p && *end == '-' && pid > 0 && pid <= INT32_MAX) {
      mine = pause_marker_name ((pid_t) pid);
      if (mine == NULL) {
        r = -1;
        break;
      }
      if (strcmp (mine, name) == 0)
        continue; /* its knib still runs (another repository's backup) */
    }
    if (qmp_query_running (c, &running) == -1
        || (!running && qmp_cont (c) == -1)) {
      error_prepend ("resuming the VM that a killed backup paused");
      r = -1;
      break;
    }
    if (!running)
      note (done, str_printf ("resumed the VM, which a killed backup had "
                              "paused (%s)",
                              name));
    if (qmp_object_del (c, name) == -1) {
      r = -1;
      break;
    }
    note (done, str_printf ("removed pause marker %s", name));
  }
  json_decref (names);
  return r;
}

/* Devices that a killed backup left on its copy-before-write filter go
 * back onto the node under it. */
static int
recover_drives (struct qmp_client *c, chain_string_vector *done)
{
  json_t *list = NULL, *e;
  size_t i;
  int r = 0;

  if (qmp_query_block (c, &list) == -1)
    return -1;
  json_array_foreach (list, i, e)
  {
    const char *qdev = json_string_value (json_object_get (e, "qdev"));
    const char *node = json_string_value (
      json_object_get (json_object_get (e, "inserted"), "node-name"));
    CLEANUP_FREE char *child = NULL;

    if (qdev == NULL || !has_prefix (node, LIVE_CBW_PREFIX))
      continue;
    if (filter_child (c, node, &child) == -1
        || set_drive (c, qdev, child) == -1) {
      error_prepend ("moving device '%s' off node '%s'", qdev, node);
      r = -1;
      break;
    }
    note (done, str_printf ("moved device %s back from %s onto %s", qdev, node,
                            child));
  }
  json_decref (list);
  return r;
}

/* knib's nodes, those on top first: snapshot-access nodes (a filter
 * with one keeps the device off the node under it), then, once the
 * devices are back (recover_drives), filters, fleecing images.  Kinds
 * first to last of: */
static const struct {
  const char *prefix, *what;
} node_kinds[] = {
  { LIVE_ACCESS_PREFIX, "snapshot-access node" },
  { LIVE_CBW_PREFIX, "copy-before-write filter" },
  { LIVE_FLEECE_PREFIX, "fleecing node" },
};

/* Remove knib's nodes of node_kinds first to last, from *nodes (the
 * nodes as QEMU has them: queried when NULL).  *nodes is kept for the
 * caller when none went, else dropped (NULL). */
static int
recover_nodes (struct qmp_client *c, size_t first, size_t last, json_t **nodes,
               chain_string_vector *done)
{
  json_t *e;
  size_t i, k;
  bool removed = false;

  if (*nodes == NULL && qmp_query_named_block_nodes (c, true, nodes) == -1)
    return -1;
  for (k = first; k <= last; k++)
    json_array_foreach (*nodes, i, e)
    {
      const char *node = json_string_value (json_object_get (e, "node-name"));
      const char *file = json_string_value (json_object_get (e, "file"));

      if (!has_prefix (node, node_kinds[k].prefix))
        continue;
      removed = true;
      if (qmp_blockdev_del (c, node) == -1)
        return -1;
      note (done, str_printf ("removed %s %s (%s)", node_kinds[k].what, node,
                              file ? file : ""));
      /* The file itself is in knib's scratch directory: that is the
       * caller's to clean. */
    }
  if (removed) {
    json_decref (*nodes);
    *nodes = NULL;
  }
  return 0;
}

/* The fd sets of a killed run: each of its descriptors is knib's (its
 * opaque, the fleecing node's name, says so).  Sets of others (libvirt
 * passes its own) and empty ones are left alone. */
static bool
fdset_is_ours (const json_t *set)
{
  const json_t *fds = json_object_get (set, "fds");
  const json_t *fd;
  size_t i;

  if (!json_is_array (fds) || json_array_size (fds) == 0)
    return false;
  json_array_foreach (fds, i, fd)
  {
    if (!has_prefix (json_string_value (json_object_get (fd, "opaque")),
                     LIVE_FLEECE_PREFIX))
      return false;
  }
  return true;
}

/* After recover_nodes: no fleecing node uses the descriptors any more.
 * qemu-storage-daemon has no fd sets (nor query-fdsets). */
static int
recover_fdsets (struct qmp_client *c, chain_string_vector *done)
{
  json_t *list = NULL, *set;
  size_t i;

  if (qmp_query_fdsets (c, &list) == -1) {
    const char *cls = qmp_client_error_class (c);

    if (cls != NULL && strcmp (cls, "CommandNotFound") == 0) {
      error_clear ();
      return 0;
    }
    return -1;
  }
  json_array_foreach (list, i, set)
  {
    const json_t *id = json_object_get (set, "fdset-id");

    if (!json_is_integer (id) || !fdset_is_ours (set))
      continue;
    if (qmp_remove_fdset (c, json_integer_value (id)) == -1) {
      json_decref (list);
      return -1;
    }
    note (done, str_printf ("removed fd set %" JSON_INTEGER_FORMAT " (%s)",
                            json_integer_value (id),
                            json_string_value (json_object_get (
                              json_array_get (json_object_get (set, "fds"), 0),
                              "opaque"))));
  }
  json_decref (list);
  return 0;
}

static bool
in_list (const chain_string_vector *v, const char *s)
{
  for (size_t i = 0; v != NULL && i < v->len; i++)
    if (strcmp (v->ptr[i], s) == 0)
      return true;
  return false;
}

/* keep was left disabled: enable it when a recording bitmap was merged
 * into it (covered), else it misses writes since it was frozen. */
static int
recover_keep (struct qmp_client *c, const struct live_disk *d,
              const struct live_bitmap *k, bool covered,
              chain_string_vector *done)
{
  if (k->recording)
    return 0;
  if (!covered) {
    if (qmp_bitmap_remove (c, d->node, k->name) == -1)
      return -1;
    note (done, str_printf ("removed bitmap %s of %s: it was frozen and "
                            "no newer bitmap tracked the writes since "
                            "(the next backup of %s is full)",
                            k->name, d->name, d->name));
    return 0;
  }
  if (qmp_bitmap_enable (c, d->node, k->name) == -1)
    return -1;
  note (done, str_printf ("enabled bitmap %s of %s again", k->name, d->name));
  return 0;
}

static int
recover_disk_bitmaps (struct qmp_client *c, const struct live_disk *d,
                      const struct live_owner *owner, const char *keep,
                      const chain_string_vector *older,
                      chain_string_vector *done)
{
  const struct live_bitmap *k = keep ? live_disk_find_bitmap (d, keep) : NULL;
  const struct live_bitmap *gone = NULL; /* removed already */
  bool covered = false;
  size_t i;

  if (k != NULL && k->inconsistent) {
    if (qmp_bitmap_remove (c, d->node, k->name) == -1)
      return -1;
    note (done, str_printf ("removed inconsistent bitmap %s of %s", k->name,
                            d->name));
    gone = k;
    k = NULL;
  }
  for (i = 0; i < d->bitmaps.len; i++) {
    const struct live_bitmap *b = &d->bitmaps.ptr[i];

    if (!live_bitmap_is_ours (owner, b->name) || b == k || b == gone)
      continue;
    /* The tip's predecessor's frozen bitmap: kept for a delete of the
     * tip (see live_bitmaps_prune). */
    if (k != NULL && !b->recording && !b->inconsistent
        && in_list (older, b->name))
      continue;
    /* Tracking that may be newer than keep's: give it to keep first. */
    if (k != NULL && !b->inconsistent
        && qmp_bitmap_merge (c, d->node, k->name, NULL, b->name) == -1)
      return -1;
    covered = covered || (k != NULL && !b->inconsistent && b->recording);
    if (qmp_bitmap_remove (c, d->node, b->name) == -1)
      return -1;
    if (k != NULL)
      note (done, str_printf ("merged bitmap %s of %s into %s and removed "
                              "it",
                              b->name, d->name, k->name));
    else
      note (done,
            str_printf ("removed stale bitmap %s of %s", b->name, d->name));
  }
  return k != NULL ? recover_keep (c, d, k, covered, done) : 0;
}

/* Whether a repair was noted in done since it held seen lines (without
 * done: always, so that nothing queried before is taken as current). */
static bool
repaired (const chain_string_vector *done, size_t seen)
{
  return done == NULL || done->len != seen;
}

int
live_recover (struct qmp_client *c, const struct live_node_map *map, size_t n,
              const struct live_owner *owner, const char *keep,
              const chain_string_vector *older, live_disk_vector *found,
              chain_string_vector *done)
{
  live_disk_vector disks = empty_vector;
  json_t *nodes = NULL;
  size_t i, seen;
  int r = 0;

  /* Every repair changes what QEMU would answer: a query is reused only
   * while none was made since. */
  if (recover_exports_and_jobs (c, done) == -1
      || recover_nodes (c, 0, 0, &nodes, done) == -1)
    goto fail;
  seen = done != NULL ? done->len : 0;
  if ((map == NULL && recover_drives (c, done) == -1)
      || (map == NULL && recover_pause (c, done) == -1))
    goto fail;
  if (repaired (done, seen)) {
    json_decref (nodes);
    nodes = NULL;
  }
  if (recover_nodes (c, 1, 2, &nodes, done) == -1
      || recover_fdsets (c, done) == -1)
    goto fail;
  json_decref (nodes);
  nodes = NULL;
  if (live_disks_query (c, map, n, &disks) == -1)
    goto fail;
  seen = done != NULL ? done->len : 0;
  for (i = 0; i < disks.len; i++)
    if (recover_disk_bitmaps (c, &disks.ptr[i], owner, keep, older, done)
        == -1) {
      error_prepend ("disk %s", disks.ptr[i].name);
      r = -1;
      break;
    }
  if (r == 0 && found != NULL && !repaired (done, seen)) {
    *found = disks; /* no bitmap changed: what QEMU has now */
    disks = (live_disk_vector) empty_vector;
  }
  live_disk_vector_release (&disks);
  if (r == 0)
    return 0;
fail:
  json_decref (nodes);
  error_prepend ("recovering knib's leftovers in QEMU");
  return -1;
}
