/* SPDX-License-Identifier: Apache-2.0 */
/* quick.c: consolidation of quick-restored disks: block-stream on the VM's
 * own QEMU, adopted and resumed after a kill of knib or QEMU. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backup.h"
#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"
#include "qmp/qmp.h"

/* The job that streams disk vda: "knib-stream-vda". */
#define STREAM_JOB_PREFIX "knib-stream-"

/* How often a waiting consolidation looks at its jobs. */
#define CONSOLIDATE_POLL_MS 500

const char *
backup_consolidation_state_name (enum backup_consolidation_state s)
{
  switch (s) {
  case BACKUP_CONSOLIDATION_NONE:
    return "not-from-backup";
  case BACKUP_CONSOLIDATION_DONE:
    return "consolidated";
  case BACKUP_CONSOLIDATION_PENDING:
    return "pending";
  case BACKUP_CONSOLIDATION_RUNNING:
    return "running";
  case BACKUP_CONSOLIDATION_FAILED:
    return "failed";
  }
  return "?";
}

void
backup_consolidation_release (backup_consolidation_vector *v)
{
  for (size_t i = 0; i < v->len; i++) {
    free (v->ptr[i].disk);
    free (v->ptr[i].image);
    free (v->ptr[i].backing);
    free (v->ptr[i].error);
  }
  backup_consolidation_vector_reset (v);
}

/* Is path (a backing file) inside the repository? */
static bool
in_repo (const char *repo_real, const char *path)
{
  CLEANUP_FREE char *real = realpath (path, NULL);
  size_t n = strlen (repo_real);

  return real != NULL && strncmp (real, repo_real, n) == 0 && real[n] == '/';
}

/* The VM directory name of a backing file in the repository
 * ("REPO/vms/<vm>/<id>/<disk>.qcow2"), or NULL. */
static char *
backing_vm (const char *repo_real, const char *backing)
{
  CLEANUP_FREE char *real = realpath (backing, NULL);
  size_t n = strlen (repo_real);
  const char *p, *end;

  if (real == NULL || strncmp (real, repo_real, n) != 0
      || strncmp (real + n, "/vms/", 5) != 0)
    return NULL;
  p = real + n + 5;
  end = strchr (p, '/');
  return end ? strndup (p, (size_t) (end - p)) : NULL;
}

/* Drop the pins that consolidated disks held (best effort: a pin whose
 * overlay no longer reads the repository counts for nothing anyway). */
static void
drop_pins (struct chain_repo *repo, const char *repo_real,
           const backup_consolidation_vector *before,
           chain_string_vector *notes)
{
  for (size_t i = 0; i < before->len; i++) {
    CLEANUP_FREE char *vm = before->ptr[i].backing
                              ? backing_vm (repo_real, before->ptr[i].backing)
                              : NULL;
    struct chain_lock *lock;

    if (vm == NULL)
      continue;
    lock
      = chain_lock_new (repo, vm, CHAIN_LOCK_EXCLUSIVE, "consolidate", 10000);
    if (lock == NULL || chain_pin_prune (lock, notes) == -1)
      debug (DEBUG_CHAIN, "pins of vm '%s': %s", vm, get_error ());
    error_clear ();
    chain_lock_free (lock);
  }
}

/* The job of that id in a query-jobs list: 1 found (*job borrows from
 * jobs), 0 not there, -1 a job of the wrong shape. */
static int
find_job (json_t *jobs, const char *id, struct qmp_job *job)
{
  size_t i;
  json_t *j;

  json_array_foreach (jobs, i, j)
  {
    if (qmp_job_get (j, job) == -1)
      return -1;
    if (strcmp (job->id, id) == 0)
      return 1;
  }
  return 0;
}

/* Dismiss a concluded job of ours, keeping its error in s. */
static int
take_concluded (struct qmp_client *c, const struct qmp_job *job,
                struct backup_consolidation *s)
{
  if (job->error != NULL) {
    free (s->error);
    s->error = strdup (job->error);
  }
  if (qmp_job_dismiss (c, job->id) == -1)
    return -1;
  debug (DEBUG_QMP, "dismissed concluded job %s", job->id);
  return 0;
}

/* Finish a stream whose data is all in (status "pending").  QEMU 7.2
 * drops the backing file from the image's header when the job
 * finalizes without writing the image's cached metadata first: a QEMU
 * killed right then loses what the stream copied.  So flush first: a
 * "stop" drains and flushes every disk (the guest pauses for as long);
 * then "job-finalize", then "cont" when the VM ran. */
static int
finalize_stream (struct qmp_client *c, const char *id)
{
  bool running;
  int r;

  if (qmp_query_running (c, &running) == -1 || qmp_stop (c) == -1)
    return -1;
  r = qmp_job_finalize (c, id);
  if (running && qmp_cont (c) == -1)
    r = -1;
  debug (DEBUG_QMP, "finalized job %s", id);
  return r;
}

/* Where disk d stands: its backing file (read from the image's header,
 * which QEMU rewrites when a stream completes) and its job. */
static int
disk_state (struct qmp_client *c, const char *repo_real,
            const struct live_disk *d, json_t *jobs, bool act,
            struct backup_consolidation *s)
{
  CLEANUP_FREE char *id = str_printf (STREAM_JOB_PREFIX "%s", d->name);
  struct qmp_job job;
  int found;

  if (id == NULL)
    return -1;
  s->disk = strdup (d->name);
  s->image = strdup (d->filename ? d->filename : "");
  s->total = d->virtual_size;
  /* QEMU's own view (the header's name): the VM's block graph; also what
   * a running job reads, whose pin goes when it is done. */
  if (s->disk == NULL || s->image == NULL
      || (d->backing != NULL && (s->backing = strdup (d->backing)) == NULL)) {
    set_error (ENOMEM, "consolidation");
    return -1;
  }
  found = find_job (jobs, id, &job);
  if (found == -1)
    return -1;
  if (found == 1) {
    s->done = job.current > 0 ? (uint64_t) job.current : 0;
    if (job.total > 0)
      s->total = (uint64_t) job.total;
    s->state = BACKUP_CONSOLIDATION_RUNNING;
    if (act && strcmp (job.status, "pending") == 0)
      return finalize_stream (c, id);
    if (strcmp (job.status, "concluded") != 0)
      return 0;
    if (take_concluded (c, &job, s) == -1)
      return -1;
  }
  if (s->backing == NULL)
    s->state = BACKUP_CONSOLIDATION_DONE;
  else if (!in_repo (repo_real, s->backing))
    s->state = BACKUP_CONSOLIDATION_NONE;
  else
    s->state = s->error != NULL ? BACKUP_CONSOLIDATION_FAILED
                                : BACKUP_CONSOLIDATION_PENDING;
  if (s->state == BACKUP_CONSOLIDATION_DONE)
    s->done = s->total;
  return 0;
}

static bool
wanted (const char *const *disks, const char *name)
{
  if (disks == NULL)
    return true;
  for (size_t i = 0; disks[i] != NULL; i++)
    if (strcmp (disks[i], name) == 0)
      return true;
  return false;
}

/* Every selected disk's state, from one look at QEMU. */
static int
look (struct qmp_client *c, const char *repo_real,
      const struct backup_consolidate_options *o, bool act,
      backup_consolidation_vector *out)
{
  live_disk_vector disks = empty_vector;
  json_t *jobs = NULL;
  int r = -1;

  backup_consolidation_release (out);
  if (live_disks_query (c, NULL, 0, &disks) == -1
      || qmp_query_jobs (c, &jobs) == -1)
    goto out;
  for (size_t i = 0; o->renames && i < disks.len; i++)
    for (size_t k = 0; k < o->n_renames; k++)
      if (strcmp (disks.ptr[i].name, o->renames[k].device) == 0) {
        char *name = strdup (o->renames[k].disk);

        if (name == NULL)
          goto out;
        free (disks.ptr[i].name);
        disks.ptr[i].name = name;
      }
  for (size_t i = 0; o->disks && o->disks[i]; i++) {
    size_t k;

    for (k = 0; k < disks.len && strcmp (disks.ptr[k].name, o->disks[i]); k++)
      ;
    if (k == disks.len) {
      set_error (-ENOENT, "the VM has no disk '%s'", o->disks[i]);
      goto out;
    }
  }
  for (size_t i = 0; i < disks.len; i++) {
    struct backup_consolidation s = { .state = BACKUP_CONSOLIDATION_NONE };

    if (!wanted (o->disks, disks.ptr[i].name))
      continue;
    if (disk_state (c, repo_real, &disks.ptr[i], jobs, act, &s) == -1
        || backup_consolidation_vector_append (out, s) == -1) {
      free (s.disk);
      free (s.image);
      free (s.backing);
      free (s.error);
      goto out;
    }
  }
  r = 0;
out:
  json_decref (jobs);
  live_disk_vector_release (&disks);
  return r;
}

/* The block node of disk name (knib's name for it). */
static char *
node_of (struct qmp_client *c, const struct backup_consolidate_options *o,
         const char *name)
{
  live_disk_vector disks = empty_vector;
  const char *device = name;
  char *node = NULL;

  for (size_t k = 0; k < o->n_renames; k++)
    if (strcmp (o->renames[k].disk, name) == 0)
      device = o->renames[k].device;
  if (live_disks_query (c, NULL, 0, &disks) == -1)
    return NULL;
  for (size_t i = 0; i < disks.len; i++)
    if (strcmp (disks.ptr[i].name, device) == 0)
      node = strdup (disks.ptr[i].node);
  if (node == NULL)
    set_error (-ENOENT, "the VM has no disk '%s'", name);
  live_disk_vector_release (&disks);
  return node;
}

/* QEMU 7.2's block-stream writes one 512 KiB chunk after another into
 * the disk's top image, through the host's page cache when the VM runs
 * with cache.direct=off (QEMU's default): where new page-cache pages are
 * dear, that is where a consolidation's time goes (2 GiB of a chain on a
 * 2-core host: 13.7-15.8 s buffered, 3.3-3.9 s with O_DIRECT).  So while
 * knib waits for a stream, the top image's file node runs with
 * cache.direct=on (blockdev-reopen), and goes back when the stream ends.
 * A reopen keeps the node's flags but for the cache ones (discard stays),
 * and knib gives again what query-named-block-nodes shows (read-only,
 * detect-zeroes, cache.no-flush); a qcow2 node whose file child QEMU
 * named itself is reopened with that child inline, which resets the qcow2
 * driver's own tuning options (its metadata cache sizes) to QEMU's
 * defaults.  Where QEMU refuses (a file system without O_DIRECT, an image
 * given to QEMU as a file descriptor), the stream runs as it is. */
struct direct_io {
  char *disk;   /* knib's name of the disk */
  char *top;    /* the node the reopen names */
  json_t *off;  /* blockdev-reopen's arguments that undo it, less the
                   backing, which the stream changes */
  bool inline_; /* top is the format node, the file child inline */
};
DEFINE_VECTOR_TYPE (direct_io_vector, struct direct_io)

static void
direct_io_free (struct direct_io *d)
{
  free (d->disk);
  free (d->top);
  json_decref (d->off);
}

static void
direct_io_release (direct_io_vector *v)
{
  for (size_t i = 0; i < v->len; i++)
    direct_io_free (&v->ptr[i]);
  direct_io_vector_reset (v);
}

/* The blockdev-reopen arguments of one switch: options with the file
 * node's cache.direct set to direct; an inline one gets the top node's
 * current backing child. */
static json_t *
direct_args (struct qmp_client *c, const struct direct_io *d, bool direct)
{
  json_t *opts = json_deep_copy (d->off), *file;
  CLEANUP_FREE char *backing = NULL;

  if (opts == NULL)
    return NULL;
  file = d->inline_ ? json_object_get (opts, "file") : opts;
  json_object_set_new (json_object_get (file, "cache"), "direct",
                       json_boolean (direct));
  if (d->inline_) {
    if (live_node_child (c, d->top, "backing", &backing) == -1) {
      json_decref (opts);
      return NULL;
    }
    json_object_set_new (opts, "backing",
                         backing ? json_string (backing) : json_null ());
  }
  return json_pack ("{s:[o]}", "options", opts);
}

/* The undoing options of node's file node (its "cache.direct" to be
 * set), or NULL with why in debug: a node knib does not switch. */
static json_t *
direct_plan (struct qmp_client *c, const char *node, bool *inline_, char **top)
{
  json_t *nodes = NULL, *n, *f, *opts = NULL, *cache;
  CLEANUP_FREE char *file = NULL;
  const char *why = NULL, *dz, *filename;

  *top = NULL;
  if (live_node_child (c, node, "file", &file) == -1
      || qmp_query_named_block_nodes (c, true, &nodes) == -1) {
    debug (DEBUG_CHAIN, "direct I/O: node '%s': %s", node, get_error ());
    error_clear ();
    json_decref (nodes);
    return NULL;
  }
  n = live_find_node (nodes, node);
  f = file ? live_find_node (nodes, file) : NULL;
  filename = f ? json_string_value (json_object_get (f, "file")) : NULL;
  cache = f ? json_object_get (f, "cache") : NULL;
  if (n == NULL || f == NULL || filename == NULL)
    why = "no file node under it";
  else if (strcmp (json_string_value (json_object_get (f, "drv")) ?: "", "file")
           != 0)
    why = "its file node is not a host file";
  else if (json_is_true (json_object_get (cache, "direct")))
    why = "it already runs with cache.direct=on";
  else if (strncmp (filename, "/dev/fdset/", 11) == 0)
    why = "QEMU has its image as a file descriptor";
  else if (file[0] != '#') {
    /* A node of its own (libvirt's "libvirt-1-storage"): reopened by
     * name. */
    opts = json_pack ("{s:s, s:s, s:s, s:b, s:{s:b, s:b}}", "driver", "file",
                      "node-name", file, "filename", filename, "read-only",
                      json_is_true (json_object_get (f, "ro")), "cache",
                      "direct", 0, "no-flush",
                      json_is_true (json_object_get (cache, "no-flush")));
    *inline_ = false;
    *top = strdup (file);
  }
  else if (node[0] == '#')
    why = "QEMU named the disk's nodes itself (-drive)";
  else if (strcmp (json_string_value (json_object_get (n, "drv")) ?: "",
                   "qcow2")
             != 0
           || json_is_true (json_object_get (n, "encrypted"))
           || json_object_get (
                json_object_get (json_object_get (json_object_get (n, "image"),
                                                  "format-specific"),
                                 "data"),
                "data-file")
                != NULL)
    why = "its top image is not a plain qcow2 image";
  else {
    const json_t *ncache = json_object_get (n, "cache");

    dz = json_string_value (json_object_get (n, "detect_zeroes"));
    opts = json_pack (
      "{s:s, s:s, s:b, s:s, s:{s:b, s:b}, s:{s:s, s:s, s:b, s:{s:b, s:b}}}",
      "driver", "qcow2", "node-name", node, "read-only",
      json_is_true (json_object_get (n, "ro")), "detect-zeroes",
      dz ? dz : "off", "cache", "direct",
      json_is_true (json_object_get (ncache, "direct")), "no-flush",
      json_is_true (json_object_get (ncache, "no-flush")), "file", "driver",
      "file", "filename", filename, "read-only",
      json_is_true (json_object_get (f, "ro")), "cache", "direct", 0,
      "no-flush", json_is_true (json_object_get (cache, "no-flush")));
    *inline_ = true;
    *top = strdup (node);
  }
  if (why != NULL)
    debug (DEBUG_CHAIN, "direct I/O: node '%s' stays as it is: %s", node, why);
  if (opts != NULL && *top == NULL) {
    json_decref (opts);
    opts = NULL;
  }
  json_decref (nodes);
  return opts;
}

/* Switch disk s's top image to O_DIRECT for its stream (best effort:
 * any failure leaves the disk as it was). */
static void
direct_on (struct qmp_client *c, const char *node,
           const struct backup_consolidation *s, direct_io_vector *v)
{
  struct direct_io d = { NULL, NULL, NULL, false };
  json_t *args;

  d.off = direct_plan (c, node, &d.inline_, &d.top);
  if (d.off == NULL)
    return;
  /* Remembered first: a switch made is always one to undo. */
  if ((d.disk = strdup (s->disk)) == NULL
      || direct_io_vector_append (v, d) == -1) {
    direct_io_free (&d);
    return;
  }
  args = direct_args (c, &d, true);
  if (args == NULL
      || qmp_client_execute (c, "blockdev-reopen", args, NULL) == -1) {
    debug (DEBUG_CHAIN,
           "direct I/O: disk '%s' stays buffered (blockdev-reopen of '%s': "
           "%s)",
           s->disk, d.top, get_error ());
    error_clear ();
    direct_io_free (&v->ptr[--v->len]);
    return;
  }
  debug (DEBUG_CHAIN,
         "direct I/O: disk '%s' is written with cache.direct=on while it "
         "streams (blockdev-reopen of node '%s')",
         s->disk, d.top);
}

/* Put disk i of v back as it was; a failure is a warning: the disk
 * keeps cache.direct=on, which loses nothing. */
static void
direct_off (struct qmp_client *c, direct_io_vector *v, size_t i,
            chain_string_vector *notes)
{
  struct direct_io *d = &v->ptr[i];
  json_t *args = direct_args (c, d, false);

  if (args == NULL
      || qmp_client_execute (c, "blockdev-reopen", args, NULL) == -1) {
    char *note = str_printf (
      "disk '%s' keeps cache.direct=on (knib set it for the stream, and "
      "blockdev-reopen of node '%s' back failed: %s); it loses nothing, "
      "and the next start of the VM uses its own setting",
      d->disk, d->top, get_error ());

    error_clear ();
    if (note != NULL && chain_string_vector_append (notes, note) == -1)
      free (note);
  }
  else
    debug (DEBUG_CHAIN, "direct I/O: disk '%s' back to cache.direct=off",
           d->disk);
  direct_io_free (d);
  v->ptr[i] = v->ptr[--v->len];
}

/* block-stream the whole backing chain into the disk's top image; the
 * backing file is dropped when it completes. */
static int
start_stream (struct qmp_client *c, const struct backup_consolidate_options *o,
              struct backup_consolidation *s, direct_io_vector *direct)
{
  CLEANUP_FREE char *node = node_of (c, o, s->disk);
  CLEANUP_FREE char *id = str_printf (STREAM_JOB_PREFIX "%s", s->disk);

  if (node == NULL || id == NULL)
    return -1;
  /* Only a caller that waits is there to switch it back (at the end of
   * backup_consolidate, also when this stream fails to start). */
  if (o->wait)
    direct_on (c, node, s, direct);
  if (qmp_block_stream (c, id, node, false, false, o->speed) == -1) {
    error_prepend ("disk '%s'", s->disk);
    return -1;
  }
  free (s->error);
  s->error = NULL;
  s->state = BACKUP_CONSOLIDATION_RUNNING;
  s->started = true;
  return 0;
}

static bool
any_running (const backup_consolidation_vector *v)
{
  for (size_t i = 0; i < v->len; i++)
    if (v->ptr[i].state == BACKUP_CONSOLIDATION_RUNNING)
      return true;
  return false;
}

/* Until a job's status changes (QEMU's JOB_STATUS_CHANGE) or
 * CONSOLIDATE_POLL_MS pass: a finished stream is seen at once, not at
 * the next look. */
static int
wait_change (struct qmp_client *c)
{
  json_t *event = NULL;

  if (qmp_client_wait_event (c, "JOB_STATUS_CHANGE", NULL, NULL,
                             CONSOLIDATE_POLL_MS, &event)
      == 0)
    json_decref (event);
  else if (get_errno () != ETIMEDOUT && get_errno () != EINTR)
    return -1;
  error_clear ();
  return 0;
}

/* Read ahead of each running stream (the disks of out, in the order of
 * look (), which keeps QEMU's order): pf[i] for out->ptr[i], made at
 * the first look. */
static void
read_ahead (const backup_consolidation_vector *out, struct backup_prefetch **pf,
            bool *tried, size_t n)
{
  for (size_t i = 0; i < out->len && i < n; i++) {
    const struct backup_consolidation *s = &out->ptr[i];

    if (s->state != BACKUP_CONSOLIDATION_RUNNING || s->backing == NULL)
      continue;
    if (!tried[i]) {
      pf[i] = backup_prefetch_new (s->image, s->backing);
      tried[i] = true;
    }
    backup_prefetch_to (pf[i], s->done);
  }
}

/* Switch back each disk of direct whose stream no longer runs (every
 * one when all). */
static void
direct_done (struct qmp_client *c, const backup_consolidation_vector *out,
             direct_io_vector *direct, bool all, chain_string_vector *notes)
{
  for (size_t i = direct->len; i-- > 0;) {
    bool running = false;

    for (size_t k = 0; !all && k < out->len; k++)
      if (strcmp (out->ptr[k].disk, direct->ptr[i].disk) == 0)
        running = out->ptr[k].state == BACKUP_CONSOLIDATION_RUNNING;
    if (!running)
      direct_off (c, direct, i, notes);
  }
}

/* Wait until no stream of ours runs, looking at least twice a second;
 * the disks of direct go back to their own cache mode as their streams
 * end (on a failure, backup_consolidate puts back the rest). */
static int
wait_streams (struct qmp_client *c, const char *repo_real,
              const struct backup_consolidate_options *o,
              backup_consolidation_vector *out, direct_io_vector *direct,
              chain_string_vector *notes)
{
  struct backup_prefetch *pf[64] = { NULL };
  bool tried[64] = { false };
  int r = -1;

  while (any_running (out)) {
    read_ahead (out, pf, tried, 64);
    if (o->cancel != NULL && *o->cancel) {
      set_error (-EINTR, "interrupted: the consolidation goes on in QEMU; "
                         "'knib restore --status' shows it");
      goto out;
    }
    if (wait_change (c) == -1 || look (c, repo_real, o, true, out) == -1)
      goto out;
    direct_done (c, out, direct, false, notes);
    for (size_t i = 0; o->progress && i < out->len; i++)
      o->progress (o->opaque, &out->ptr[i]);
  }
  r = 0;
out:
  for (size_t i = 0; i < 64; i++)
    backup_prefetch_free (pf[i]);
  return r;
}

int
backup_consolidate (struct chain_repo *repo,
                    const struct backup_consolidate_options *o,
                    backup_consolidation_vector *out,
                    chain_string_vector *notes)
{
  CLEANUP_FREE char *repo_real = realpath (chain_repo_path (repo), NULL);
  backup_consolidation_vector before = empty_vector;
  direct_io_vector direct = empty_vector;
  struct qmp_client *c;
  int r = -1;

  if (repo_real == NULL) {
    set_error (errno, "repository '%s'", chain_repo_path (repo));
    return -1;
  }
  c = qmp_client_connect (o->qmp_socket, o->timeout_ms, o->cancel);
  if (c == NULL) {
    error_prepend ("QMP socket '%s'", o->qmp_socket);
    return -1;
  }
  if (look (c, repo_real, o, o->start, out) == -1)
    goto out;
  /* What the disks read before: their pins go when they are done. */
  for (size_t i = 0; i < out->len; i++) {
    struct backup_consolidation b = { .state = out->ptr[i].state };

    if (out->ptr[i].backing != NULL
        && ((b.backing = strdup (out->ptr[i].backing)) == NULL
            || backup_consolidation_vector_append (&before, b) == -1)) {
      free (b.backing);
      set_error (ENOMEM, "consolidation");
      goto out;
    }
  }
  for (size_t i = 0; o->start && i < out->len; i++) {
    struct backup_consolidation *s = &out->ptr[i];

    if ((s->state == BACKUP_CONSOLIDATION_PENDING
         || s->state == BACKUP_CONSOLIDATION_FAILED)
        && start_stream (c, o, s, &direct) == -1)
      goto out;
    if (s->state == BACKUP_CONSOLIDATION_RUNNING && !s->started)
      s->adopted = true;
  }
  if (o->wait) {
    bool adopted[64] = { false }, started[64] = { false };

    for (size_t i = 0; i < out->len && i < 64; i++) {
      adopted[i] = out->ptr[i].adopted;
      started[i] = out->ptr[i].started;
    }
    if (wait_streams (c, repo_real, o, out, &direct, notes) == -1)
      goto out;
    for (size_t i = 0; i < out->len && i < 64; i++) {
      out->ptr[i].adopted = adopted[i];
      out->ptr[i].started = started[i];
    }
    drop_pins (repo, repo_real, &before, notes);
  }
  r = 0;
out:
  if (direct.len > 0) {
    /* Streams that failed to start, or a wait that failed or was
     * interrupted: their disks go back now. */
    struct error_saved saved;

    error_save (&saved);
    direct_done (c, out, &direct, true, notes);
    error_restore (&saved);
  }
  direct_io_release (&direct);
  if (r == -1)
    error_prepend ("consolidation of vm '%s'", o->vm ? o->vm : "?");
  qmp_client_free (c);
  backup_consolidation_release (&before);
  return r;
}

int
quick_check_no_stream (struct qmp_client *c, const char *repo,
                       const struct backup_options *o)
{
  json_t *jobs = NULL, *j;
  size_t i;

  if (qmp_query_jobs (c, &jobs) == -1)
    return -1;
  json_array_foreach (jobs, i, j)
  {
    struct qmp_job job;

    if (qmp_job_get (j, &job) == -1) {
      json_decref (jobs);
      return -1;
    }
    if (strncmp (job.id, STREAM_JOB_PREFIX, strlen (STREAM_JOB_PREFIX)) != 0
        || strcmp (job.status, "concluded") == 0
        || strcmp (job.status, "null") == 0)
      continue;
    set_error (-EBUSY,
               "disk '%s' is being consolidated (knib's block-stream job "
               "'%s' is %s, %d%% done: a quick restore's consolidation or a "
               "snapshot's merge), and a backup cannot run beside it: back "
               "up once it is done (knib restore --repo %s --consolidate "
               "%s%s%s%s --wait waits for a consolidation)",
               job.id + strlen (STREAM_JOB_PREFIX), job.id, job.status,
               job.total > 0 ? (int) (job.current * 100 / job.total) : 0, repo,
               o->definition ? "--domain " : "--qmp ",
               o->definition ? o->vm : o->qmp_socket,
               o->definition ? "" : " --vm ", o->definition ? "" : o->vm);
    json_decref (jobs);
    return -1;
  }
  json_decref (jobs);
  return 0;
}
