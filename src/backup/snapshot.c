/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot.c: disk-only snapshots of a VM (create, delete, revert) that
 * keep its backups incremental.
 *
 * A snapshot puts a new qcow2 overlay on every disk: a running plain QEMU
 * through one QMP transaction of blockdev-snapshot, a libvirt domain
 * through virsh snapshot-create-as --disk-only --atomic, a stopped VM
 * with qemu-img.  knib's bitmaps go up with it: the new layer gets a
 * bitmap of each name with the contents of the one below, so the active
 * layer alone holds every write since the last backup.  A layer that is
 * merged away gives its bitmaps to the active layer first.  A revert
 * gives the new layer the union of the clusters allocated in every layer
 * between the snapshot and the abandoned state (every write in between is
 * one of them) and of the abandoned state's bitmaps: a superset of what
 * differs from the last backup.  The records are in the repository
 * (chain_snaps_load), and "pending" journals each step that touches
 * images so that the next run finishes or undoes it. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "backup/backup.h"
#include "backup/internal.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/testhook.h"
#include "common/util.h"
#include "qmp/qmp.h"

#define LAYER_NODE_PREFIX "knib-layer-"
/* A snapshot delete's block-stream: "knib-merge-<disk>", never the
 * "knib-stream-<disk>" of a quick restore's consolidation (which waits
 * for knib restore to finalize it: recovery here must not wait on it). */
#define STREAM_JOB_PREFIX "knib-merge-"

/* qemu-img runs on metadata (create, info, bitmap) and rebase, which
 * copies data: no limit on that one. */
#define QEMU_IMG_TIMEOUT_MS (10 * 60 * 1000)

struct snap_run {
  struct chain_repo *repo;
  const struct snapshot_options *o;
  struct chain_lock *lock;
  struct chain_snaps s;
  struct qmp_client *c;
  live_disk_vector disks;
  chain_string_vector *done;
  const char *const *deleting; /* the snapshots this delete names */
  size_t ndeleting;
};

static bool
being_deleted (const struct snap_run *run, const char *name)
{
  for (size_t i = 0; i < run->ndeleting; i++)
    if (strcmp (run->deleting[i], name) == 0)
      return true;
  return false;
}

static void
note (struct snap_run *run, char *line)
{
  if (line != NULL)
    debug (DEBUG_CHAIN, "snapshot: %s", line);
  chain_note_add (run->done, line);
}

static bool
has_prefix (const char *s, const char *prefix)
{
  return s != NULL && strncmp (s, prefix, strlen (prefix)) == 0;
}

/* ---- qemu-img ---- */

/* Run qemu-img with the arguments (NULL-terminated); with out, its
 * stdout parsed as JSON. */
static int
qemu_img (json_t **out, const char *first, ...)
{
  struct command *cmd = command_new ("qemu-img");
  va_list ap;
  const char *a;
  int r = -1;

  if (cmd == NULL)
    return -1;
  command_add_arg (cmd, first);
  va_start (ap, first);
  while ((a = va_arg (ap, const char *)) != NULL)
    command_add_arg (cmd, a);
  va_end (ap);
  if (out)
    command_capture_stdout (cmd, 0);
  command_set_timeout (cmd, QEMU_IMG_TIMEOUT_MS);
  if (command_run (cmd, NULL) == 0) {
    r = 0;
    if (out) {
      json_error_t jerr;

      *out = json_loads (command_get_stdout (cmd, NULL), 0, &jerr);
      if (*out == NULL) {
        set_error (-EPROTO, "qemu-img %s: unreadable output: %s", first,
                   jerr.text);
        r = -1;
      }
    }
  }
  command_free (cmd);
  return r;
}

/* qemu-img info of an image that may be in use (-U). */
static json_t *
image_info (const char *path)
{
  json_t *info = NULL;

  if (qemu_img (&info, "info", "-U", "--output=json", path, NULL) == -1) {
    error_prepend ("image '%s'", path);
    return NULL;
  }
  return info;
}

/* Whether a QEMU holds path (qemu-img info without -U fails on its lock). */
static bool
image_in_use (const char *path)
{
  json_t *info = NULL;

  if (qemu_img (&info, "info", "--output=json", path, NULL) == 0) {
    json_decref (info);
    return false;
  }
  error_clear ();
  return true;
}

/* The absolute backing file of an image, or NULL (none, or unreadable:
 * then the image is left out of the layer tree). */
static char *
image_backing (const char *path)
{
  json_t *info = image_info (path);
  const char *b;
  char *r = NULL;

  if (info == NULL) {
    error_clear ();
    return NULL;
  }
  b = json_string_value (json_object_get (info, "full-backing-filename"));
  if (b == NULL)
    b = json_string_value (json_object_get (info, "backing-filename"));
  if (b != NULL && b[0] == '/')
    r = strdup (b);
  else if (b != NULL) {
    CLEANUP_FREE char *copy = strdup (path);
    r = copy ? str_printf ("%s/%s", dirname (copy), b) : NULL;
  }
  json_decref (info);
  return r;
}

static const char *
info_format (json_t *info)
{
  const char *f = json_string_value (json_object_get (info, "format"));
  return f ? f : "raw";
}

/* knib's bitmaps in an image, as qemu-img info lists them. */
static json_t *
info_bitmaps (json_t *info)
{
  return json_object_get (
    json_object_get (json_object_get (info, "format-specific"), "data"),
    "bitmaps");
}

static bool
flag_set (json_t *bitmap, const char *flag)
{
  json_t *flags = json_object_get (bitmap, "flags"), *f;
  size_t i;

  json_array_foreach (flags, i, f)
  {
    if (json_string_value (f) && strcmp (json_string_value (f), flag) == 0)
      return true;
  }
  return false;
}

static json_t *
info_find_bitmap (json_t *info, const char *name)
{
  json_t *b;
  size_t i;

  json_array_foreach (info_bitmaps (info), i, b)
  {
    const char *n = json_string_value (json_object_get (b, "name"));
    if (n != NULL && strcmp (n, name) == 0)
      return b;
  }
  return NULL;
}

/* ---- Names and paths ---- */

static bool
exists (const char *path)
{
  struct stat st;
  return lstat (path, &st) == 0;
}

/* "<dir>/<stem>.<what>.qcow2", with "-2", "-3"... when taken; stem is
 * the name of the disk's first layer without ".qcow2". */
static char *
new_layer_path (struct snap_run *run, const char *disk, const char *top,
                const char *what)
{
  const char *first = top;
  CLEANUP_FREE char *d = NULL, *b = NULL;
  char *path = NULL;
  size_t len;

  for (size_t i = 0; i < run->s.layers.len; i++)
    if (strcmp (run->s.layers.ptr[i].disk, disk) == 0) {
      first = run->s.layers.ptr[i].file;
      break;
    }
  d = strdup (top);
  b = strdup (first);
  if (d == NULL || b == NULL) {
    set_error (ENOMEM, "layer name");
    return NULL;
  }
  {
    char *base = basename (b), *dot, *dir = dirname (d);

    len = strlen (base);
    if (len > 6 && strcmp (base + len - 6, ".qcow2") == 0)
      base[len - 6] = '\0';
    /* a.s1.qcow2 was made from a.qcow2: name the next after a too. */
    if ((dot = strchr (base, '.')) != NULL && dot != base)
      *dot = '\0';
    for (unsigned n = 1; n < 1000; n++) {
      free (path);
      path = n == 1 ? str_printf ("%s/%s.%s.qcow2", dir, base, what)
                    : str_printf ("%s/%s.%s-%u.qcow2", dir, base, what, n);
      if (path == NULL || !exists (path))
        return path;
    }
  }
  set_error (EEXIST, "no free name for a new layer of '%s'", top);
  free (path);
  return NULL;
}

/* ---- The run ---- */

static void
run_release (struct snap_run *run)
{
  chain_snaps_release (&run->s);
  live_disk_vector_release (&run->disks);
  qmp_client_free (run->c);
  chain_lock_free (run->lock);
}

static int
commit (struct snap_run *run)
{
  return chain_snaps_commit (run->lock, &run->s);
}

/* A running VM's disks (writable ones), through QMP. */
static int
query_disks (struct snap_run *run)
{
  live_disk_vector_release (&run->disks);
  if (live_disks_query (run->c, NULL, 0, &run->disks) == -1
      || live_disks_rename (&run->disks, run->o->renames, run->o->n_renames)
           == -1)
    return -1;
  return 0;
}

static struct live_disk *
find_disk (struct snap_run *run, const char *name)
{
  for (size_t i = 0; i < run->disks.len; i++)
    if (strcmp (run->disks.ptr[i].name, name) == 0)
      return &run->disks.ptr[i];
  return NULL;
}

/* query-named-block-nodes (flat). */
static json_t *
query_nodes (struct snap_run *run)
{
  json_t *nodes = NULL;

  if (qmp_client_execute (run->c, "query-named-block-nodes",
                          json_pack ("{s:b}", "flat", 1), &nodes)
      == -1)
    return NULL;
  return nodes;
}

static json_t *
node_bitmaps (json_t *nodes, const char *node_name)
{
  return json_object_get (live_find_node (nodes, node_name), "dirty-bitmaps");
}

/* ---- The layer tree of one disk ---- */

struct tree {
  struct chain_snap_layer *l;
  char **backings; /* owned */
  size_t n;
};

static void
tree_release (struct tree *t)
{
  for (size_t i = 0; i < t->n; i++)
    free (t->backings[i]);
  free (t->backings);
  free (t->l);
  memset (t, 0, sizeof *t);
}

/* The disk's layers that still exist, with the backing files their
 * headers name.  Layers whose files are gone are forgotten. */
static int
tree_load (struct snap_run *run, const char *disk, struct tree *t)
{
  size_t i;

  memset (t, 0, sizeof *t);
  for (i = 0; i < run->s.layers.len;) {
    struct chain_snap_file *f = &run->s.layers.ptr[i];

    if (strcmp (f->disk, disk) == 0 && !exists (f->file)) {
      CLEANUP_FREE char *file = strdup (f->file);
      if (file == NULL)
        return -1;
      note (run,
            str_printf ("disk %s: layer '%s' is gone: forgotten", disk, file));
      chain_snaps_forget (&run->s, disk, file);
      continue;
    }
    i++;
  }
  t->l = calloc (run->s.layers.len + 1, sizeof *t->l);
  t->backings = calloc (run->s.layers.len + 1, sizeof *t->backings);
  if (t->l == NULL || t->backings == NULL) {
    set_error (errno, "calloc");
    return -1;
  }
  for (i = 0; i < run->s.layers.len; i++) {
    struct chain_snap_file *f = &run->s.layers.ptr[i];

    if (strcmp (f->disk, disk) != 0)
      continue;
    t->backings[t->n] = image_backing (f->file);
    t->l[t->n].file = f->file;
    t->l[t->n].backing = t->backings[t->n];
    t->n++;
  }
  return 0;
}

static const char *
tree_backing (const struct tree *t, const char *file)
{
  for (size_t i = 0; i < t->n; i++)
    if (strcmp (t->l[i].file, file) == 0)
      return t->l[i].backing;
  return NULL;
}

/* Whether anc is file or below it. */
static bool
tree_is_ancestor (const struct tree *t, const char *anc, const char *file)
{
  for (size_t k = 0; file != NULL && k <= t->n; k++) {
    if (strcmp (file, anc) == 0)
      return true;
    file = tree_backing (t, file);
  }
  return false;
}

/* ---- Merging layers away ---- */

/* Live: merge knib's bitmaps of layer node into the same-named ones of
 * the disk's active layer (a superset of its tracking is still right). */
static int
fold_live (struct snap_run *run, const struct live_disk *d, json_t *nodes,
           const char *layer_node)
{
  json_t *below = node_bitmaps (nodes, layer_node), *b;
  size_t i;

  json_array_foreach (below, i, b)
  {
    const char *name = json_string_value (json_object_get (b, "name"));
    const struct live_bitmap *top;

    if (!has_prefix (name, CHAIN_BITMAP_PREFIX)
        || json_is_true (json_object_get (b, "inconsistent")))
      continue;
    top = live_disk_find_bitmap (d, name);
    if (top == NULL || top->inconsistent)
      continue;
    if (qmp_client_execute_packed (
          run->c, "block-dirty-bitmap-merge",
          json_pack ("{s:s, s:s, s:[{s:s, s:s}]}", "node", d->node, "target",
                     name, "bitmaps", "node", layer_node, "name", name),
          NULL)
        == -1) {
      error_prepend ("disk %s: merging bitmap %s", d->name, name);
      return -1;
    }
  }
  return 0;
}

/* Offline: the same with qemu-img bitmap --merge between the images. */
static int
fold_offline (const char *disk, const char *top, const char *layer)
{
  json_t *ti = image_info (top), *li = NULL, *b;
  size_t i;
  int r = -1;

  if (ti == NULL || (li = image_info (layer)) == NULL)
    goto out;
  json_array_foreach (info_bitmaps (li), i, b)
  {
    const char *name = json_string_value (json_object_get (b, "name"));
    json_t *tb;

    if (!has_prefix (name, CHAIN_BITMAP_PREFIX) || flag_set (b, "in-use"))
      continue;
    tb = info_find_bitmap (ti, name);
    if (tb == NULL || flag_set (tb, "in-use"))
      continue;
    if (qemu_img (NULL, "bitmap", "--merge", name, "-b", layer, "-F",
                  info_format (li), top, name, NULL)
        == -1) {
      error_prepend ("disk %s: merging bitmap %s of '%s' into '%s'", disk, name,
                     layer, top);
      goto out;
    }
  }
  r = 0;
out:
  json_decref (ti);
  json_decref (li);
  return r;
}

/* Offline: disable (on false) knib's recording bitmaps of image, or
 * enable those again.  Which ones were recording is kept in a file
 * beside the image ("<image>.knib-disabled") until they are, so that a
 * run after a kill between the two enables them too (see recover). */
static int
bitmaps_enable (const char *disk, const char *image, bool on)
{
  CLEANUP_FREE char *list = str_printf ("%s.knib-disabled", image);
  json_t *info = NULL, *names = NULL, *b;
  size_t i;
  int r = -1;

  if (list == NULL)
    return -1;
  if (on) {
    json_error_t jerr;

    names = json_load_file (list, 0, &jerr);
    if (names == NULL)
      return exists (list) ? (set_error (EIO, "'%s': %s", list, jerr.text), -1)
                           : 0;
  }
  else {
    if ((info = image_info (image)) == NULL || (names = json_array ()) == NULL)
      goto out;
    json_array_foreach (info_bitmaps (info), i, b)
    {
      const char *name = json_string_value (json_object_get (b, "name"));

      if (has_prefix (name, CHAIN_BITMAP_PREFIX) && flag_set (b, "auto")
          && !flag_set (b, "in-use"))
        json_array_append_new (names, json_string (name));
    }
    if (json_dump_file (names, list, 0) == -1 || fs_fsync_path (list) == -1) {
      set_error (EIO, "bitmap list '%s'", list);
      goto out;
    }
  }
  json_array_foreach (names, i, b)
  {
    if (qemu_img (NULL, "bitmap", on ? "--enable" : "--disable", image,
                  json_string_value (b), NULL)
        == -1) {
      error_prepend ("disk %s", disk);
      goto out;
    }
  }
  if (on && unlink (list) == -1) {
    set_error (errno, "removing '%s'", list);
    goto out;
  }
  r = 0;
out:
  json_decref (info);
  json_decref (names);
  return r;
}

/* Report the job's progress (query-jobs, once a second) until it is no
 * longer running; qmp_client_job_wait then collects how it ended. */
static int
stream_progress (struct snap_run *run, const char *disk, const char *job)
{
  for (;;) {
    json_t *jobs = NULL, *j, *event = NULL;
    const char *status = NULL;
    bool running;
    size_t i;

    if (qmp_query_jobs (run->c, &jobs) == -1)
      return -1;
    json_array_foreach (jobs, i, j)
    {
      const char *id = json_string_value (json_object_get (j, "id"));

      if (id == NULL || strcmp (id, job) != 0)
        continue;
      status = json_string_value (json_object_get (j, "status"));
      run->o->progress (
        run->o->opaque, disk,
        json_integer_value (json_object_get (j, "current-progress")),
        json_integer_value (json_object_get (j, "total-progress")));
    }
    /* status points into jobs: read it before jobs goes. */
    running = status != NULL && strcmp (status, "running") == 0;
    json_decref (jobs);
    if (!running)
      return 0;
    /* A status change, or a second passes. */
    if (qmp_client_wait_event (run->c, "JOB_STATUS_CHANGE", NULL, NULL, 1000,
                               &event)
        == 0)
      json_decref (event);
    else if (get_errno () != ETIMEDOUT)
      return -1;
    error_clear ();
  }
}

/* Live: pull file's data into child (block-stream), then file leaves the
 * graph.  The job is knib's and not auto-dismissed, so that a run after
 * a kill learns how it ended. */
static int
stream_live (struct snap_run *run, const char *disk, json_t *nodes,
             const char *child_node, const char *base)
{
  CLEANUP_FREE char *job = str_printf (STREAM_JOB_PREFIX "%s", disk);
  const char *base_node = base ? live_format_node_of (nodes, base) : NULL;
  json_t *args;

  if (job == NULL)
    return -1;
  if (base != NULL && base_node == NULL) {
    set_error (ENOENT, "disk %s: QEMU has no node of '%s'", disk, base);
    return -1;
  }
  args = json_pack ("{s:s, s:s, s:b}", "job-id", job, "device", child_node,
                    "auto-dismiss", 0);
  if (args && base_node
      && json_object_set_new (args, "base-node", json_string (base_node))
           == -1) {
    json_decref (args);
    args = NULL;
  }
  if (qmp_client_execute_packed (run->c, "block-stream", args, NULL) == -1)
    return -1;
  test_stop_point ("stream");
  if (run->o->progress != NULL && stream_progress (run, disk, job) == -1)
    return -1;
  if (qmp_client_job_wait (run->c, job, -1) == -1) {
    error_prepend ("disk %s: block-stream", disk);
    return -1;
  }
  return 0;
}

/* Drop the nodes of file that knib or the user added, once nothing uses
 * them (best effort: a node that QEMU opened itself goes on its own).  A
 * new layer that never got its backing is named "json:{...}" after its
 * options: knib's own are found by the file in them. */
static void
drop_node (struct snap_run *run, const char *file)
{
  json_t *nodes = query_nodes (run), *n;
  size_t i;

  json_array_foreach (nodes, i, n)
  {
    const char *node = json_string_value (json_object_get (n, "node-name"));
    const char *f = json_string_value (json_object_get (n, "file"));
    const char *drv = json_string_value (json_object_get (n, "drv"));

    if (node == NULL || f == NULL || drv == NULL || node[0] == '#'
        || strcmp (drv, "file") == 0)
      continue;
    if (strcmp (f, file) != 0
        && !(has_prefix (node, LAYER_NODE_PREFIX) && strstr (f, file) != NULL))
      continue;
    if (qmp_client_execute_packed (run->c, "blockdev-del",
                                   json_pack ("{s:s}", "node-name", node), NULL)
        == -1)
      debug (DEBUG_CHAIN, "snapshot: %s (left alone)", get_error ());
    else
      debug (DEBUG_CHAIN, "snapshot: removed node %s of '%s'", node, file);
  }
  error_clear ();
  json_decref (nodes);
}

/* The progress of libvirt's block job on disk (one whose id names the
 * disk), as query-jobs has it; best effort. */
static void
libvirt_job_progress (struct snap_run *run, const char *disk)
{
  CLEANUP_FREE char *part = str_printf ("-%s-", disk);
  json_t *jobs = NULL, *j;
  size_t i;

  if (part == NULL || qmp_query_jobs (run->c, &jobs) == -1) {
    error_clear ();
    return;
  }
  json_array_foreach (jobs, i, j)
  {
    const char *id = json_string_value (json_object_get (j, "id"));

    if (id == NULL || has_prefix (id, "knib-") || strstr (id, part) == NULL)
      continue;
    run->o->progress (
      run->o->opaque, disk,
      json_integer_value (json_object_get (j, "current-progress")),
      json_integer_value (json_object_get (j, "total-progress")));
  }
  json_decref (jobs);
}

/* A running libvirt domain: its layers are merged by libvirt's own block
 * jobs, so that its view of the disks stays true.  Into the disk's top:
 * virsh blockpull down to step->backing (the same merge as block-stream,
 * the top keeps its name).  Into a layer below the top: libvirt streams
 * into the active layer only, so step->child is committed into step->file
 * instead (virsh blockcommit --top child --base file), which then holds
 * what child held: *kept_lower says so (the records call it child's
 * name's successor, see collect).  The commit is journalled ("commit",
 * child) so that a run after a kill learns whether libvirt did it. */
static int
merge_virsh (struct snap_run *run, const char *disk,
             const struct chain_snap_step *step, bool into_top,
             bool *kept_lower)
{
  struct command *cmd = command_new ("virsh");
  int r;

  if (cmd == NULL)
    return -1;
  if (into_top) {
    command_add_args (cmd, "blockpull", run->o->domain, disk, "--wait", NULL);
    if (step->backing != NULL)
      command_add_args (cmd, "--base", step->backing, NULL);
  }
  else {
    chain_snap_file_vector pf = empty_vector;

    if (chain_snap_file_set (&pf, disk, step->child) == -1
        || chain_snaps_set_pending (&run->s, "commit", step->file, &pf) == -1
        || commit (run) == -1) {
      chain_snap_file_vector_release (&pf);
      command_free (cmd);
      return -1;
    }
    chain_snap_file_vector_release (&pf);
    command_add_args (cmd, "blockcommit", run->o->domain, disk, "--top",
                      step->child, "--base", step->file, "--wait", NULL);
    *kept_lower = true;
  }
  /* No time limit: the job copies data.  Its progress is read from
   * QEMU meanwhile (libvirt names its jobs after the disk). */
  r = command_start (cmd);
  while (r == 0 && command_wait (cmd, 1000, NULL) == -1) {
    if (get_errno () != ETIMEDOUT) {
      r = -1;
      break;
    }
    error_clear ();
    if (run->o->progress != NULL)
      libvirt_job_progress (run, disk);
  }
  command_free (cmd);
  if (r == 0)
    test_stop_point ("virsh-merged");
  if (r == -1)
    error_prepend ("disk %s: libvirt's %s", disk,
                   into_top ? "blockpull" : "blockcommit");
  return r;
}

/* Merge step->file into step->child, the live way when the child is in
 * the running QEMU, else with qemu-img rebase (which copies what differs
 * and switches the backing file last, so a kill leaves a chain that still
 * opens).  *kept_lower: step->child went instead, its data in step->file
 * (a running libvirt domain's layer below its top). */
static int
merge_layer (struct snap_run *run, const char *disk, const struct tree *t,
             const struct chain_snap_step *step, bool *kept_lower)
{
  const char *top = chain_snap_file_get (&run->s.tops, disk);
  bool below_top = top && tree_is_ancestor (t, step->file, top);
  json_t *nodes = NULL;
  const char *child_node = NULL;
  int r = -1;

  *kept_lower = false;
  if (run->c != NULL) {
    if (query_disks (run) == -1 || (nodes = query_nodes (run)) == NULL)
      return -1;
    child_node = live_format_node_of (nodes, step->child);
  }
  if (child_node != NULL) {
    const struct live_disk *d = find_disk (run, disk);
    bool into_top = top != NULL && strcmp (step->child, top) == 0;
    /* The layer that goes gives the active one its bitmaps. */
    const char *gone = run->o->domain && !into_top ? step->child : step->file;
    const char *gone_node = live_format_node_of (nodes, gone);

    if (d != NULL && gone_node != NULL && below_top
        && fold_live (run, d, nodes, gone_node) == -1)
      goto out;
    if (run->o->domain != NULL) {
      if (merge_virsh (run, disk, step, into_top, kept_lower) == -1)
        goto out;
    }
    else {
      if (stream_live (run, disk, nodes, child_node, step->backing) == -1)
        goto out;
      drop_node (run, step->file);
    }
  }
  else {
    json_t *bi = NULL;

    if (below_top && fold_offline (disk, top, step->file) == -1)
      goto out;
    if (step->backing && (bi = image_info (step->backing)) == NULL)
      goto out;
    /* The copy must not look like guest writes to the child's bitmaps
     * (the VM is stopped: nothing else writes meanwhile). */
    if (bitmaps_enable (disk, step->child, false) == -1) {
      json_decref (bi);
      goto out;
    }
    test_stop_point ("rebase");
    if (step->backing != NULL)
      r = qemu_img (NULL, "rebase", "-f", "qcow2", "-b", step->backing, "-F",
                    info_format (bi), step->child, NULL);
    else
      r = qemu_img (NULL, "rebase", "-f", "qcow2", "-b", "", step->child, NULL);
    json_decref (bi);
    if (r == 0 && bitmaps_enable (disk, step->child, true) == -1)
      goto out;
    if (r == -1) {
      error_prepend ("disk %s: merging '%s' into '%s'", disk, step->file,
                     step->child);
      goto out;
    }
    r = -1;
  }
  {
    const char *gone = *kept_lower ? step->child : step->file;

    if (unlink (gone) == -1 && errno != ENOENT) {
      set_error (errno, "removing '%s'", gone);
      goto out;
    }
  }
  r = 0;
out:
  json_decref (nodes);
  return r;
}

/* A commit of child into file is done: file holds what child held (and
 * removed snapshots of file's own state go with it). */
static int
committed (struct snap_run *run, const char *disk, const char *file,
           const char *child)
{
  CLEANUP_FREE char *f = strdup (file);
  CLEANUP_FREE char *c = strdup (child);

  if (f == NULL || c == NULL) {
    set_error (ENOMEM, "snapshot record");
    return -1;
  }
  chain_snaps_forget (&run->s, disk, f);
  if (chain_snap_file_add (&run->s.layers, disk, f) == -1
      || chain_snaps_rename (&run->s, disk, c, f) == -1)
    return -1;
  return 0;
}

/* Apply the rules to every disk until no layer can go. */
static int
collect (struct snap_run *run)
{
  size_t i;

  for (i = 0; i < run->s.tops.len; i++) {
    const char *disk = run->s.tops.ptr[i].disk;

    for (;;) {
      struct tree t;
      struct chain_snap_step step;
      CLEANUP_FREE char *file = NULL, *child = NULL;
      bool kept_lower = false;
      int r = 0;

      if (tree_load (run, disk, &t) == -1) {
        tree_release (&t);
        return -1;
      }
      chain_snaps_plan (&run->s, disk, t.l, t.n, &step);
      if (step.kind == CHAIN_SNAP_STEP_NONE) {
        tree_release (&t);
        break;
      }
      file = strdup (step.file);
      child = step.child ? strdup (step.child) : NULL;
      if (file == NULL || (step.child && child == NULL)) {
        tree_release (&t);
        return -1;
      }
      {
        chain_snap_file_vector pf = empty_vector;

        if (chain_snap_file_set (&pf, disk, file) == -1
            || chain_snaps_set_pending (&run->s, "delete", "", &pf) == -1
            || commit (run) == -1)
          r = -1;
        chain_snap_file_vector_release (&pf);
      }
      if (r == 0 && step.kind == CHAIN_SNAP_STEP_MERGE) {
        r = merge_layer (run, disk, &t, &step, &kept_lower);
        if (r == 0 && kept_lower)
          note (run, str_printf ("disk %s: committed layer '%s' into '%s', "
                                 "which holds its state now",
                                 disk, step.child, step.file));
        else if (r == 0)
          note (run, str_printf ("disk %s: merged layer '%s' into '%s'", disk,
                                 step.file, step.child));
      }
      else if (r == 0) {
        if (run->c != NULL)
          drop_node (run, file);
        if (unlink (file) == -1 && errno != ENOENT) {
          set_error (errno, "removing '%s'", file);
          r = -1;
        }
        else
          note (run, str_printf ("disk %s: removed layer '%s'", disk, file));
      }
      tree_release (&t);
      if (r == -1)
        return -1;
      if (kept_lower) {
        /* file stays, holding child's state. */
        if (committed (run, disk, file, child) == -1
            || chain_snaps_set_pending (&run->s, NULL, NULL, NULL) == -1
            || commit (run) == -1)
          return -1;
        continue;
      }
      /* A snapshot marked removed earlier goes with its layer. */
      for (size_t k = 0; k < run->s.snaps.len; k++) {
        const struct chain_snap *n = &run->s.snaps.ptr[k];
        const char *l = chain_snap_file_get (&n->layers, disk);

        if (n->removed && l != NULL && strcmp (l, file) == 0 && i == 0
            && !being_deleted (run, n->name))
          note (run, str_printf ("snapshot %s (marked removed): its layer "
                                 "is merged away, it is gone",
                                 n->name));
      }
      chain_snaps_forget (&run->s, disk, file);
      if (chain_snaps_set_pending (&run->s, NULL, NULL, NULL) == -1
          || commit (run) == -1)
        return -1;
    }
  }
  return 0;
}

/* ---- Recovery ---- */

/* Whether an overlay that a killed create or revert made is in use: the
 * top of a disk in the running QEMU, held by a QEMU, or written to.
 * Then it is kept; else it goes (nothing was ever written into it). */
static bool
overlay_used (struct snap_run *run, const char *disk, const char *file)
{
  json_t *map = NULL, *e;
  size_t i;
  bool used = false;

  /* A running QEMU says which image the disk runs on; a leftover node
   * of knib's that holds the overlay open does not count. */
  if (run->c != NULL) {
    const struct live_disk *d;

    if (query_disks (run) == 0 && (d = find_disk (run, disk)) != NULL)
      return strcmp (d->filename, file) == 0;
    error_clear ();
  }
  if (image_in_use (file))
    return true;
  if (qemu_img (&map, "map", "--output=json", "-U", file, NULL) == -1) {
    error_clear ();
    return true; /* unsure: keep it */
  }
  /* An overlay has a backing file: what it holds is at depth 0. */
  json_array_foreach (map, i, e)
  {
    if (json_integer_value (json_object_get (e, "depth")) == 0
        && (json_is_true (json_object_get (e, "data"))
            || json_is_true (json_object_get (e, "zero"))))
      used = true;
  }
  json_decref (map);
  return used;
}

/* A killed create: complete it when the overlays are in use, else
 * remove them. */
static int
recover_create (struct snap_run *run)
{
  const chain_snap_file_vector *pf = &run->s.pending_files;
  chain_snap_file_vector layers = empty_vector;
  bool used = false;
  size_t i;

  for (i = 0; i < pf->len; i++)
    used = used || overlay_used (run, pf->ptr[i].disk, pf->ptr[i].file);
  for (i = 0; i < pf->len; i++) {
    const char *disk = pf->ptr[i].disk, *file = pf->ptr[i].file;
    CLEANUP_FREE char *below = used ? image_backing (file) : NULL;

    if (!used) {
      if (run->c != NULL)
        drop_node (run, file);
      if (unlink (file) == -1 && errno != ENOENT) {
        set_error (errno, "removing '%s'", file);
        chain_snap_file_vector_release (&layers);
        return -1;
      }
      note (run, str_printf ("disk %s: removed '%s' of a snapshot that a "
                             "killed knib did not finish",
                             disk, file));
      continue;
    }
    if (below == NULL || chain_snap_file_set (&layers, disk, below) == -1
        || chain_snap_file_add (&run->s.layers, disk, below) == -1
        || chain_snap_file_add (&run->s.layers, disk, file) == -1
        || chain_snap_file_set (&run->s.tops, disk, file) == -1) {
      if (get_errno () == 0)
        set_error (EIO, "disk %s: '%s' has no backing file", disk, file);
      chain_snap_file_vector_release (&layers);
      return -1;
    }
  }
  if (used) {
    if (chain_snaps_add (&run->s, run->s.pending_name, time (NULL), &layers)
        == -1) {
      chain_snap_file_vector_release (&layers);
      return -1;
    }
    note (run, str_printf ("snapshot %s: finished what a killed knib "
                           "started (its disks run on the new layers)",
                           run->s.pending_name));
  }
  return 0;
}

/* A killed libvirt commit of a layer (pending "commit": the file it goes
 * into is pending_name, the layer pending_files): when nothing is backed
 * by the layer any more, libvirt did it and the records follow; else it
 * is done again by the rules. */
static int
recover_commit (struct snap_run *run)
{
  if (run->o->domain == NULL) {
    set_error (-EBUSY, "a merge of a libvirt domain's layers was interrupted: "
                       "finish it through libvirt with --domain NAME (knib "
                       "snapshot delete, create or revert, or knib backup)");
    return -1;
  }
  for (size_t i = 0; i < run->s.pending_files.len; i++) {
    const char *disk = run->s.pending_files.ptr[i].disk;
    const char *child = run->s.pending_files.ptr[i].file;
    const char *top = chain_snap_file_get (&run->s.tops, disk);
    struct tree t;
    bool needed = top != NULL && strcmp (top, child) == 0;

    if (tree_load (run, disk, &t) == -1) {
      tree_release (&t);
      return -1;
    }
    for (size_t k = 0; k < t.n; k++)
      needed
        = needed || (t.l[k].backing && strcmp (t.l[k].backing, child) == 0);
    tree_release (&t);
    if (needed)
      continue;
    if (unlink (child) == -1 && errno != ENOENT) {
      set_error (errno, "removing '%s'", child);
      return -1;
    }
    if (committed (run, disk, run->s.pending_name, child) == -1)
      return -1;
    note (run, str_printf ("disk %s: libvirt committed layer '%s' into '%s' "
                           "for a killed knib: recorded",
                           disk, child, run->s.pending_name));
  }
  return 0;
}

/* Finish or undo what a killed knib left: knib's stream jobs in QEMU, a
 * journalled create, delete or revert. */
static int
recover (struct snap_run *run)
{
  if (run->c != NULL) {
    json_t *jobs = NULL, *j;
    size_t i;

    if (qmp_client_execute (run->c, "query-jobs", NULL, &jobs) == -1)
      return -1;
    json_array_foreach (jobs, i, j)
    {
      const char *id = json_string_value (json_object_get (j, "id"));

      if (!has_prefix (id, STREAM_JOB_PREFIX))
        continue;
      if (qmp_client_job_wait (run->c, id, -1) == -1)
        note (run, str_printf ("a merge of a killed knib failed: %s (it is "
                               "done again)",
                               get_error ()));
      else
        note (run, str_printf ("a merge of a killed knib (job %s) ended", id));
      error_clear ();
    }
    json_decref (jobs);
  }
  if (run->s.pending == NULL)
    return 0;
  if (strcmp (run->s.pending, "create") == 0) {
    if (recover_create (run) == -1)
      return -1;
  }
  else if (strcmp (run->s.pending, "commit") == 0) {
    if (recover_commit (run) == -1)
      return -1;
  }
  else if (strcmp (run->s.pending, "revert") == 0) {
    for (size_t i = 0; i < run->s.pending_files.len; i++) {
      const char *file = run->s.pending_files.ptr[i].file;

      if (image_in_use (file)) {
        set_error (EBUSY,
                   "a killed revert made '%s' and a VM runs on it: "
                   "stop it and revert again",
                   file);
        return -1;
      }
      if (unlink (file) == -1 && errno != ENOENT) {
        set_error (errno, "removing '%s'", file);
        return -1;
      }
      note (run, str_printf ("removed '%s' of a revert that a killed knib "
                             "did not finish",
                             file));
    }
  }
  /* "delete": bitmaps that a merge disabled come back on (the copy they
   * must not see is over or will be done again); the rules below do
   * the rest again. */
  for (size_t i = 0; i < run->s.layers.len; i++)
    if (exists (run->s.layers.ptr[i].file)
        && bitmaps_enable (run->s.layers.ptr[i].disk, run->s.layers.ptr[i].file,
                           true)
             == -1)
      return -1;
  if (chain_snaps_set_pending (&run->s, NULL, NULL, NULL) == -1
      || commit (run) == -1)
    return -1;
  return collect (run);
}

static int
run_open (struct snap_run *run, struct chain_repo *repo,
          const struct snapshot_options *o, const char *what,
          chain_string_vector *done)
{
  memset (run, 0, sizeof *run);
  run->repo = repo;
  run->o = o;
  run->done = done;
  if (name_check ("vm", o->vm) == -1)
    return -1;
  run->lock = chain_lock_new (repo, o->vm, CHAIN_LOCK_EXCLUSIVE, what, 0);
  if (run->lock == NULL || chain_snaps_load (run->lock, &run->s) == -1)
    return -1;
  if (o->qmp_socket != NULL) {
    run->c = qmp_client_connect (o->qmp_socket, o->timeout_ms, o->cancel);
    if (run->c == NULL) {
      error_prepend ("QMP socket '%s'", o->qmp_socket);
      return -1;
    }
    if (live_check_foreign_jobs (run->c) == -1)
      return -1;
  }
  return recover (run);
}

int
snapshot_recover (struct chain_repo *repo, const struct snapshot_options *o,
                  chain_string_vector *done)
{
  struct snap_run run;
  int r = run_open (&run, repo, o, "snapshot recover", done);

  run_release (&run);
  return r;
}

/* ---- Create ---- */

struct new_layer {
  char *disk;
  char *top;     /* the disk's image now */
  char *format;  /* its format */
  char *overlay; /* the new one */
  char *node;    /* live: its node name */
  uint64_t size;
  bool node_added;
};

static void
new_layers_free (struct new_layer *nl, size_t n)
{
  for (size_t i = 0; nl && i < n; i++) {
    free (nl[i].disk);
    free (nl[i].top);
    free (nl[i].format);
    free (nl[i].overlay);
    free (nl[i].node);
  }
  free (nl);
}

static int
create_overlay_file (const struct new_layer *l)
{
  char size[32];

  snprintf (size, sizeof size, "%" PRIu64, l->size);
  if (qemu_img (NULL, "create", "-q", "-f", "qcow2", "-F", l->format, "-b",
                l->top, "-u", l->overlay, size, NULL)
      == -1) {
    error_prepend ("disk %s: new layer '%s'", l->disk, l->overlay);
    return -1;
  }
  return 0;
}

/* The QMP transaction's actions for one disk: the snapshot, and a copy
 * of each of knib's bitmaps in the new layer (disabled ones stay
 * disabled: the frozen bitmap of the previous backup). */
static int
add_actions (json_t *actions, const struct live_disk *d,
             const struct new_layer *l)
{
  if (json_array_append_new (
        actions, json_pack ("{s:s, s:{s:s, s:s}}", "type", "blockdev-snapshot",
                            "data", "node", d->node, "overlay", l->node))
      == -1)
    return -1;
  for (size_t i = 0; i < d->bitmaps.len; i++) {
    const struct live_bitmap *b = &d->bitmaps.ptr[i];

    if (!has_prefix (b->name, CHAIN_BITMAP_PREFIX) || b->inconsistent)
      continue;
    if (json_array_append_new (
          actions,
          json_pack ("{s:s, s:{s:s, s:s, s:b, s:i, s:b}}", "type",
                     "block-dirty-bitmap-add", "data", "node", l->node, "name",
                     b->name, "persistent", 1, "granularity",
                     (json_int_t) b->granularity, "disabled", !b->recording))
          == -1
        || json_array_append_new (
             actions, json_pack ("{s:s, s:{s:s, s:s, s:[{s:s, s:s}]}}", "type",
                                 "block-dirty-bitmap-merge", "data", "node",
                                 l->node, "target", b->name, "bitmaps", "node",
                                 d->node, "name", b->name))
             == -1)
      return -1;
  }
  return 0;
}

static int
quiesce (const struct snapshot_options *o, bool freeze)
{
  struct error_saved err;

  if (freeze)
    return o->freeze ? o->freeze (o->quiesce_opaque) : 0;
  if (o->thaw == NULL)
    return 0;
  error_save (&err);
  (void) o->thaw (o->quiesce_opaque);
  error_restore (&err);
  return 0;
}

/* Plain QEMU, running: blockdev-add the overlays, one transaction. */
static int
create_qmp (struct snap_run *run, struct new_layer *nl, size_t n)
{
  json_t *actions = json_array ();
  size_t i;
  int st;

  if (actions == NULL)
    return -1;
  for (i = 0; i < n; i++) {
    if (qmp_client_execute_packed (
          run->c, "blockdev-add",
          json_pack ("{s:s, s:s, s:{s:s, s:s}, s:n}", "driver", "qcow2",
                     "node-name", nl[i].node, "file", "driver", "file",
                     "filename", nl[i].overlay, "backing"),
          NULL)
        == -1) {
      error_prepend ("disk %s: new layer", nl[i].disk);
      json_decref (actions);
      return -1;
    }
    nl[i].node_added = true;
    if (add_actions (actions, find_disk (run, nl[i].disk), &nl[i]) == -1) {
      set_error (ENOMEM, "transaction");
      json_decref (actions);
      return -1;
    }
  }
  test_stop_point ("snapshot-transaction");
  if (quiesce (run->o, true) == -1) {
    json_decref (actions);
    return -1;
  }
  st = qmp_client_execute_packed (
    run->c, "transaction", json_pack ("{s:o}", "actions", actions), NULL);
  quiesce (run->o, false);
  if (st == -1)
    error_prepend ("the snapshot transaction failed");
  return st;
}

/* A libvirt domain: libvirt makes the overlays and switches the disks
 * (so that its definition stays true); then knib gives the new layers
 * the contents of its bitmaps (libvirt adds empty ones of the same name
 * to a running domain's; a stopped one's get them from knib). */
static int
create_virsh (struct snap_run *run, struct new_layer *nl, size_t n,
              const char *name)
{
  struct command *cmd = command_new ("virsh");
  int r;

  if (cmd == NULL)
    return -1;
  command_add_args (cmd, "snapshot-create-as", run->o->domain, name,
                    "--disk-only", "--atomic", "--no-metadata", NULL);
  /* knib's disk names are libvirt's target devices. */
  for (size_t i = 0; i < n; i++) {
    command_add_arg (cmd, "--diskspec");
    command_add_argf (cmd, "%s,snapshot=external,file=%s", nl[i].disk,
                      nl[i].overlay);
  }
  command_set_timeout (cmd, QEMU_IMG_TIMEOUT_MS);
  test_stop_point ("snapshot-transaction");
  if (quiesce (run->o, true) == -1) {
    command_free (cmd);
    return -1;
  }
  r = command_run (cmd, NULL);
  quiesce (run->o, false);
  command_free (cmd);
  if (r == -1)
    return -1;
  /* The snapshot is taken: what follows only saves the next backup some
   * work (it merges the same way), so its failure is a warning. */
  if (run->c != NULL && query_disks (run) == 0)
    for (size_t i = 0; i < n; i++) {
      const struct live_disk *d = find_disk (run, nl[i].disk);

      for (size_t k = 0; d && k < d->bitmaps.len; k++) {
        char *why = NULL;

        if (!has_prefix (d->bitmaps.ptr[k].name, CHAIN_BITMAP_PREFIX))
          continue;
        if (live_bitmap_fold (run->c, d, d->bitmaps.ptr[k].name, &why) == -1)
          why = str_printf ("%s (the next backup merges it)", get_error ());
        if (why != NULL)
          note (run, str_printf ("warning: %s", why));
        free (why);
      }
    }
  error_clear ();
  return 0;
}

/* The new layers of a stopped VM get knib's bitmaps of the image below,
 * contents and all (qemu-img bitmap --add then --merge). */
static int
copy_bitmaps_offline (const struct new_layer *l)
{
  json_t *info = image_info (l->top), *b;
  size_t i;
  int r = -1;

  if (info == NULL)
    return -1;
  json_array_foreach (info_bitmaps (info), i, b)
  {
    const char *name = json_string_value (json_object_get (b, "name"));
    char gran[32];

    if (!has_prefix (name, CHAIN_BITMAP_PREFIX) || flag_set (b, "in-use"))
      continue;
    snprintf (
      gran, sizeof gran, "%" PRId64,
      (int64_t) json_integer_value (json_object_get (b, "granularity")));
    if (qemu_img (NULL, "bitmap", "--add", "-g", gran, "--merge", name, "-b",
                  l->top, "-F", l->format, l->overlay, name, NULL)
          == -1
        || (!flag_set (b, "auto")
            && qemu_img (NULL, "bitmap", "--disable", l->overlay, name, NULL)
                 == -1)) {
      error_prepend ("disk %s: bitmap %s", l->disk, name);
      goto out;
    }
  }
  r = 0;
out:
  json_decref (info);
  return r;
}

/* The disks and their current images: from QEMU, or the --image list. */
static int
plan_layers (struct snap_run *run, const char *name, struct new_layer **out,
             size_t *nout)
{
  const struct snapshot_options *o = run->o;
  size_t n = run->c ? run->disks.len : o->n_images, k = 0;
  struct new_layer *nl = calloc (n + 1, sizeof *nl);
  unsigned rnd = (unsigned) time (NULL) ^ ((unsigned) getpid () << 8);

  if (nl == NULL) {
    set_error (errno, "calloc");
    return -1;
  }
  *out = nl;
  for (size_t i = 0; i < n; i++) {
    struct new_layer *l = &nl[k];

    if (run->c != NULL) {
      const struct live_disk *d = &run->disks.ptr[i];

      if (d->read_only)
        continue;
      if (d->filename[0] != '/') {
        set_error (EINVAL, "disk %s: image '%s' is not a local file", d->name,
                   d->filename);
        return -1;
      }
      l->disk = strdup (d->name);
      l->top = strdup (d->filename);
      l->format = strdup (d->driver);
      l->size = d->virtual_size;
    }
    else {
      json_t *info = image_info (o->images[i].path);

      if (info == NULL)
        return -1;
      if (image_in_use (o->images[i].path)) {
        json_decref (info);
        set_error (EBUSY,
                   "disk %s: a QEMU holds '%s': the VM runs; give its "
                   "QMP socket (--qmp) or its domain (--domain)",
                   o->images[i].disk, o->images[i].path);
        return -1;
      }
      l->disk = strdup (o->images[i].disk);
      l->top = realpath (o->images[i].path, NULL);
      l->format = strdup (info_format (info));
      l->size = json_integer_value (json_object_get (info, "virtual-size"));
      json_decref (info);
    }
    k++;
    *nout = k;
    if (l->disk == NULL || l->top == NULL || l->format == NULL) {
      if (get_errno () == 0)
        set_error (errno, "disk %s", o->vm);
      return -1;
    }
    l->overlay = new_layer_path (run, l->disk, l->top, name);
    l->node = str_printf (LAYER_NODE_PREFIX "%08x-%zu", rnd, i);
    if (l->overlay == NULL || l->node == NULL)
      return -1;
  }
  if (k == 0) {
    set_error (ENOENT, "vm '%s' has no writable disk", o->vm);
    return -1;
  }
  return 0;
}

/* Undo a create that failed before its transaction took effect. */
static void
create_rollback (struct snap_run *run, struct new_layer *nl, size_t n)
{
  struct error_saved err;

  error_save (&err);
  for (size_t i = 0; i < n; i++) {
    if (nl[i].node_added
        && qmp_client_execute_packed (
             run->c, "blockdev-del",
             json_pack ("{s:s}", "node-name", nl[i].node), NULL)
             == -1)
      debug (DEBUG_CHAIN, "snapshot: %s", get_error ());
    if (nl[i].overlay)
      unlink (nl[i].overlay);
  }
  if (chain_snaps_set_pending (&run->s, NULL, NULL, NULL) == 0)
    (void) commit (run);
  error_restore (&err);
}

int
snapshot_create (struct chain_repo *repo, const struct snapshot_options *o,
                 const char *name, chain_string_vector *done)
{
  struct snap_run run;
  struct new_layer *nl = NULL;
  chain_snap_file_vector pf = empty_vector, layers = empty_vector;
  size_t n = 0, i;
  bool made = false;
  int r = -1;

  if (run_open (&run, repo, o, "snapshot", done) == -1)
    goto out;
  if (name_check ("snapshot", name) == -1)
    goto out;
  if (chain_snaps_find (&run.s, name) != NULL) {
    set_error (EEXIST, "vm '%s' has a snapshot '%s' already", o->vm, name);
    goto out;
  }
  if (run.c != NULL && query_disks (&run) == -1)
    goto out;
  if (plan_layers (&run, name, &nl, &n) == -1)
    goto out;
  for (i = 0; i < n; i++)
    if (chain_snap_file_set (&pf, nl[i].disk, nl[i].overlay) == -1)
      goto out;
  /* Journal first: a kill from here on is repaired by the next run. */
  if (chain_snaps_set_pending (&run.s, "create", name, &pf) == -1
      || commit (&run) == -1)
    goto out;
  made = true;
  if (o->domain == NULL)
    for (i = 0; i < n; i++)
      if (create_overlay_file (&nl[i]) == -1)
        goto out;
  if (o->domain != NULL) {
    if (create_virsh (&run, nl, n, name) == -1)
      goto out;
  }
  else if (run.c != NULL) {
    if (create_qmp (&run, nl, n) == -1)
      goto out;
  }
  if (run.c == NULL)
    for (i = 0; i < n; i++)
      if (copy_bitmaps_offline (&nl[i]) == -1)
        goto out;
  made = false; /* done: from here on, it stays */
  for (i = 0; i < n; i++)
    if (chain_snap_file_set (&layers, nl[i].disk, nl[i].top) == -1
        || chain_snap_file_add (&run.s.layers, nl[i].disk, nl[i].top) == -1
        || chain_snap_file_add (&run.s.layers, nl[i].disk, nl[i].overlay) == -1
        || chain_snap_file_set (&run.s.tops, nl[i].disk, nl[i].overlay) == -1)
      goto out;
  if (chain_snaps_add (&run.s, name, time (NULL), &layers) == -1
      || chain_snaps_set_pending (&run.s, NULL, NULL, NULL) == -1)
    goto out;
  test_stop_point ("snapshot-record");
  if (commit (&run) == -1)
    goto out;
  for (i = 0; i < n; i++)
    note (&run, str_printf ("disk %s: '%s' on top of '%s'", nl[i].disk,
                            nl[i].overlay, nl[i].top));
  r = 0;
out:
  if (r == -1 && made && run.lock != NULL)
    create_rollback (&run, nl, n);
  if (r == -1)
    error_prepend ("snapshot of vm '%s'", o->vm);
  chain_snap_file_vector_release (&pf);
  chain_snap_file_vector_release (&layers);
  new_layers_free (nl, n);
  {
    struct error_saved err;

    error_save (&err);
    run_release (&run);
    error_restore (&err);
  }
  return r;
}

/* ---- Delete ---- */

int
snapshot_delete (struct chain_repo *repo, const struct snapshot_options *o,
                 const char *const *names, size_t n, chain_string_vector *done)
{
  struct snap_run run;
  size_t i;
  int r = -1;

  if (run_open (&run, repo, o, "snapshot delete", done) == -1)
    goto out;
  for (i = 0; i < n; i++) {
    struct chain_snap *s = chain_snaps_find (&run.s, names[i]);

    if (s == NULL || s->removed) {
      set_error (ENOENT, "vm '%s' has no snapshot '%s'%s", o->vm, names[i],
                 s ? " (it was deleted already)" : "");
      goto out;
    }
  }
  for (i = 0; i < n; i++)
    chain_snaps_find (&run.s, names[i])->removed = true;
  run.deleting = names;
  run.ndeleting = n;
  if (commit (&run) == -1 || collect (&run) == -1)
    goto out;
  for (i = 0; i < n; i++) {
    const struct chain_snap *s = chain_snaps_find (&run.s, names[i]);

    if (s != NULL)
      note (&run, str_printf ("snapshot %s: marked removed; its layer is kept "
                              "while other layers depend on it",
                              names[i]));
    else
      note (&run, str_printf ("snapshot %s: removed", names[i]));
  }
  r = 0;
out:
  if (r == -1)
    error_prepend ("deleting snapshots of vm '%s'", o->vm);
  {
    struct error_saved err;

    error_save (&err);
    run_release (&run);
    error_restore (&err);
  }
  return r;
}

/* ---- Revert ---- */

/* Set, in bitmap name of scratch image path, every cluster allocated in
 * layer (qemu-img map: depth 0), by zero writes through qemu-io, which
 * mark a recording bitmap without storing data. */
static int
mark_allocated (const char *scratch, const char *layer)
{
  json_t *map = NULL, *e;
  struct command *cmd;
  size_t i, writes = 0;
  int r;

  if (qemu_img (&map, "map", "--output=json", layer, NULL) == -1) {
    error_prepend ("layer '%s'", layer);
    return -1;
  }
  cmd = command_new ("qemu-io");
  if (cmd == NULL) {
    json_decref (map);
    return -1;
  }
  command_add_args (cmd, "-f", "qcow2", NULL);
  json_array_foreach (map, i, e)
  {
    if (json_integer_value (json_object_get (e, "depth")) != 0
        || !(json_is_true (json_object_get (e, "data"))
             || json_is_true (json_object_get (e, "zero"))))
      continue;
    /* A layer without backing reads zero where it has nothing: those
     * are depth 0 too, but neither data nor allocated zero. */
    if (!json_is_true (json_object_get (e, "data"))
        && json_object_get (e, "present") != NULL
        && !json_is_true (json_object_get (e, "present")))
      continue;
    command_add_arg (cmd, "-c");
    command_add_argf (
      cmd, "write -z %" PRId64 " %" PRId64,
      (int64_t) json_integer_value (json_object_get (e, "start")),
      (int64_t) json_integer_value (json_object_get (e, "length")));
    writes++;
  }
  json_decref (map);
  command_add_arg (cmd, scratch);
  command_set_timeout (cmd, QEMU_IMG_TIMEOUT_MS);
  r = writes ? command_run (cmd, NULL) : 0;
  command_free (cmd);
  return r;
}

/* Layers from file down (file first), as far as the headers go. */
static int
ancestors (const char *file, chain_string_vector *out)
{
  char *f = strdup (file);

  for (int depth = 0; f != NULL && depth < 1000; depth++) {
    char *next;

    if (chain_string_vector_append (out, f) == -1) {
      free (f);
      return -1;
    }
    next = image_backing (f);
    f = next;
  }
  return 0;
}

static bool
in_vector (const chain_string_vector *v, const char *s)
{
  for (size_t i = 0; i < v->len; i++)
    if (strcmp (v->ptr[i], s) == 0)
      return true;
  return false;
}

/* The tracking of the new layer over: every layer between the snapshot
 * and the abandoned top (up to their common ancestor) marked allocated,
 * and the abandoned top's recording bitmaps (merged down their
 * contiguous run of layers). */
static int
revert_bitmaps (struct snap_run *run, const char *disk, const char *top,
                const char *layer, const char *overlay, uint64_t size)
{
  chain_string_vector at = empty_vector, al = empty_vector;
  CLEANUP_FREE char *scratch = str_printf ("%s.knib-revert", overlay);
  json_t *ti = image_info (top), *b;
  char sz[32];
  size_t i;
  int r = -1;

  if (scratch == NULL || ti == NULL || ancestors (top, &at) == -1
      || ancestors (layer, &al) == -1)
    goto out;
  snprintf (sz, sizeof sz, "%" PRIu64, size);
  if (qemu_img (NULL, "create", "-q", "-f", "qcow2", scratch, sz, NULL) == -1
      || qemu_img (NULL, "bitmap", "--add", "-g", "65536", scratch, "alloc",
                   NULL)
           == -1)
    goto out;
  for (i = 0; i < at.len && !in_vector (&al, at.ptr[i]); i++)
    if (mark_allocated (scratch, at.ptr[i]) == -1)
      goto out;
  for (i = 0; i < al.len && !in_vector (&at, al.ptr[i]); i++)
    if (mark_allocated (scratch, al.ptr[i]) == -1)
      goto out;
  json_array_foreach (info_bitmaps (ti), i, b)
  {
    const char *name = json_string_value (json_object_get (b, "name"));
    char gran[32];
    bool gap = false;

    if (!has_prefix (name, CHAIN_BITMAP_PREFIX) || !flag_set (b, "auto")
        || flag_set (b, "in-use"))
      continue;
    snprintf (
      gran, sizeof gran, "%" PRId64,
      (int64_t) json_integer_value (json_object_get (b, "granularity")));
    if (qemu_img (NULL, "bitmap", "--add", "-g", gran, "--merge", "alloc", "-b",
                  scratch, "-F", "qcow2", overlay, name, NULL)
        == -1)
      goto out;
    /* The bitmap's contiguous run of layers below the top. */
    for (size_t k = 1; k < at.len; k++) {
      json_t *li = image_info (at.ptr[k]), *lb;

      if (li == NULL)
        goto out;
      lb = info_find_bitmap (li, name);
      if (lb == NULL)
        gap = true;
      else if (gap || flag_set (lb, "in-use")) {
        json_decref (li);
        note (run, str_printf ("disk %s: bitmap %s cannot be carried over "
                               "(layer '%s' breaks its run): the next "
                               "backup of %s is full",
                               disk, name, at.ptr[k], disk));
        if (qemu_img (NULL, "bitmap", "--remove", overlay, name, NULL) == -1)
          goto out;
        break;
      }
      else if (qemu_img (NULL, "bitmap", "--merge", name, "-b", at.ptr[k], "-F",
                         info_format (li), overlay, name, NULL)
               == -1) {
        json_decref (li);
        goto out;
      }
      json_decref (li);
    }
  }
  r = 0;
out:
  if (r == -1)
    error_prepend ("disk %s: tracking of the new layer", disk);
  if (scratch != NULL)
    unlink (scratch);
  json_decref (ti);
  chain_string_vector_release (&at);
  chain_string_vector_release (&al);
  return r;
}

int
snapshot_revert (struct chain_repo *repo, const struct snapshot_options *o,
                 const char *name, chain_string_vector *done)
{
  struct snap_run run;
  struct chain_snap *s;
  chain_snap_file_vector pf = empty_vector;
  size_t i;
  int r = -1;

  if (o->qmp_socket != NULL) {
    set_error (EBUSY, "revert vm '%s' to snapshot '%s': stop the VM first",
               o->vm, name);
    return -1;
  }
  if (run_open (&run, repo, o, "snapshot revert", done) == -1)
    goto out;
  s = chain_snaps_find (&run.s, name);
  if (s == NULL || s->removed) {
    set_error (ENOENT, "vm '%s' has no snapshot '%s'%s", o->vm, name,
               s ? " (it was deleted)" : "");
    goto out;
  }
  for (i = 0; i < run.s.tops.len; i++) {
    const char *disk = run.s.tops.ptr[i].disk;
    const char *top = run.s.tops.ptr[i].file;
    const char *layer = chain_snap_file_get (&s->layers, disk);
    char *overlay;

    if (layer == NULL)
      continue;
    if (image_in_use (top)) {
      set_error (EBUSY, "disk %s: a QEMU holds '%s': stop the VM first", disk,
                 top);
      goto out;
    }
    overlay = new_layer_path (&run, disk, top, name);
    if (overlay == NULL || chain_snap_file_set (&pf, disk, overlay) == -1) {
      free (overlay);
      goto out;
    }
    free (overlay);
  }
  if (chain_snaps_set_pending (&run.s, "revert", name, &pf) == -1
      || commit (&run) == -1)
    goto out;
  for (i = 0; i < pf.len; i++) {
    const char *disk = pf.ptr[i].disk, *overlay = pf.ptr[i].file;
    const char *layer = chain_snap_file_get (&s->layers, disk);
    const char *top = chain_snap_file_get (&run.s.tops, disk);
    json_t *li = image_info (layer);
    struct new_layer l = { .disk = (char *) disk };

    if (li == NULL)
      goto out;
    l.top = (char *) layer;
    l.format = (char *) info_format (li);
    l.overlay = (char *) overlay;
    l.size = json_integer_value (json_object_get (li, "virtual-size"));
    if (create_overlay_file (&l) == -1
        || revert_bitmaps (&run, disk, top, layer, overlay, l.size) == -1) {
      json_decref (li);
      goto out;
    }
    json_decref (li);
  }
  test_stop_point ("revert-record");
  for (i = 0; i < pf.len; i++)
    if (chain_snap_file_add (&run.s.layers, pf.ptr[i].disk, pf.ptr[i].file)
          == -1
        || chain_snap_file_set (&run.s.tops, pf.ptr[i].disk, pf.ptr[i].file)
             == -1)
      goto out;
  if (chain_snaps_set_pending (&run.s, NULL, NULL, NULL) == -1
      || commit (&run) == -1)
    goto out;
  for (i = 0; i < pf.len; i++)
    note (&run, str_printf ("disk %s: now '%s' on top of snapshot %s",
                            pf.ptr[i].disk, pf.ptr[i].file, name));
  /* The abandoned layers that nothing needs go. */
  if (collect (&run) == -1)
    goto out;
  r = 0;
out:
  if (r == -1)
    error_prepend ("reverting vm '%s' to snapshot '%s'", o->vm, name);
  chain_snap_file_vector_release (&pf);
  {
    struct error_saved err;

    error_save (&err);
    run_release (&run);
    error_restore (&err);
  }
  return r;
}

/* ---- Restore in place ---- */

/* Whether the VM has something a restore in place would orphan. */
static bool
has_snapshots (const struct chain_snaps *s)
{
  if (s->snaps.len > 0 || s->pending != NULL)
    return true;
  for (size_t i = 0; i < s->layers.len; i++) {
    const char *top = chain_snap_file_get (&s->tops, s->layers.ptr[i].disk);

    if (top == NULL || strcmp (top, s->layers.ptr[i].file) != 0)
      return true;
  }
  return false;
}

/* The disk of s with layers that no target restores, or NULL. */
static const char *
unrestored_disk (const struct chain_snaps *s,
                 const struct chain_restore_target *targets, size_t n)
{
  for (size_t i = 0; i < s->layers.len; i++) {
    size_t k;

    for (k = 0; k < n; k++)
      if (strcmp (targets[k].disk, s->layers.ptr[i].disk) == 0)
        break;
    if (k == n)
      return s->layers.ptr[i].disk;
  }
  return NULL;
}

int
snapshot_restore_check (struct chain_repo *repo, const char *vm,
                        const struct chain_restore_target *targets, size_t n,
                        bool drop)
{
  struct chain_snaps s;
  CLEANUP_FREE char *names = NULL;
  bool has;

  if (chain_snaps_read (repo, vm, &s) == -1)
    return -1;
  has = has_snapshots (&s);
  if (has && drop) {
    const char *disk = unrestored_disk (&s, targets, n);

    if (disk != NULL)
      set_error (-EINVAL,
                 "--drop-snapshots removes the layers of every disk of vm "
                 "'%s', and disk %s runs on them: restore it too",
                 vm, disk);
    chain_snaps_release (&s);
    return disk != NULL ? -1 : 0;
  }
  for (size_t i = 0; i < s.snaps.len; i++) {
    char *more = str_printf ("%s%s%s", names ? names : "", names ? ", " : "",
                             s.snaps.ptr[i].name);

    free (names);
    names = more;
  }
  chain_snaps_release (&s);
  if (!has)
    return 0;
  set_error (-EBUSY,
             "vm '%s' has snapshots (%s) whose layers its disks are: a "
             "restore in place replaces the disks and the snapshots could "
             "not be reverted to any more; delete them first (knib snapshot "
             "delete), or give --drop-snapshots to remove them and their "
             "layers with the restore",
             vm, names ? names : "an unfinished operation");
  return -1;
}

/* Whether file is one of the restored images. */
static bool
kept (const char *file, const struct chain_restore_target *keep, size_t n)
{
  CLEANUP_FREE char *real = realpath (file, NULL);

  for (size_t i = 0; i < n; i++) {
    CLEANUP_FREE char *k = realpath (keep[i].path, NULL);

    if (strcmp (file, keep[i].path) == 0
        || (real != NULL && k != NULL && strcmp (real, k) == 0))
      return true;
  }
  return false;
}

int
snapshot_drop (struct chain_lock *lock, const struct chain_restore_target *keep,
               size_t n, chain_string_vector *done)
{
  struct chain_snaps s, empty = { .pending = NULL };
  chain_snap_file_vector files = empty_vector;
  size_t i;
  int r = -1;

  if (chain_snaps_load (lock, &s) == -1)
    return -1;
  if (!has_snapshots (&s)) {
    chain_snaps_release (&s);
    return 0;
  }
  for (i = 0; i < s.layers.len; i++)
    if (chain_snap_file_add (&files, s.layers.ptr[i].disk, s.layers.ptr[i].file)
        == -1)
      goto out;
  for (i = 0; i < s.pending_files.len; i++)
    if (chain_snap_file_add (&files, s.pending_files.ptr[i].disk,
                             s.pending_files.ptr[i].file)
        == -1)
      goto out;
  /* Nothing is removed while a program holds one of them. */
  for (i = 0; i < files.len; i++)
    if (!kept (files.ptr[i].file, keep, n) && exists (files.ptr[i].file)
        && image_in_use (files.ptr[i].file)) {
      set_error (-EBUSY,
                 "disk %s: a program holds layer '%s' of a snapshot: stop "
                 "it, then run the restore again",
                 files.ptr[i].disk, files.ptr[i].file);
      goto out;
    }
  for (i = 0; i < files.len; i++) {
    const char *f = files.ptr[i].file;
    CLEANUP_FREE char *list = str_printf ("%s.knib-disabled", f);

    if (kept (f, keep, n))
      continue;
    if (unlink (f) == -1 && errno != ENOENT) {
      set_error (errno, "removing layer '%s'", f);
      goto out;
    }
    if (list != NULL)
      (void) unlink (list);
    chain_note_add (done, str_printf ("disk %s: removed '%s', a layer of the "
                                      "dropped snapshots",
                                      files.ptr[i].disk, f));
  }
  for (i = 0; i < s.snaps.len; i++)
    chain_note_add (done, str_printf ("snapshot %s: dropped with the restore",
                                      s.snaps.ptr[i].name));
  if (chain_snaps_commit (lock, &empty) == -1)
    goto out;
  r = 0;
out:
  if (r == -1)
    error_prepend ("dropping the snapshots");
  chain_snap_file_vector_release (&files);
  chain_snaps_release (&s);
  return r;
}
