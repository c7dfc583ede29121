/* live.h: the QMP side of a backup: disks, bitmaps, fleecing, exports. */
#ifndef KNIB_CHAIN_LIVE_H
#define KNIB_CHAIN_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "chain/chain.h"
#include "common/vector.h"
#include "qmp/qmp.h"

/* Everything knib adds to QEMU carries the "knib-" prefix, so that it
 * acts only on its own jobs, nodes, exports and bitmaps. */
#define LIVE_FLEECE_PREFIX "knib-fleece-"
#define LIVE_JOB_PREFIX "knib-job-"
#define LIVE_EXPORT_PREFIX "knib-export-"

/* The granularity of the bitmaps knib adds, and the cluster size of the
 * images it writes. */
#define LIVE_GRANULARITY (64u * 1024)

/* A dirty bitmap of a node, as query-block shows it. */
struct live_bitmap {
  char *name;
  uint32_t granularity;
  uint64_t count;
  bool recording;
  bool persistent;
  bool busy;
  bool inconsistent;
};
DEFINE_VECTOR_TYPE (live_bitmap_vector, struct live_bitmap)

/* A disk of the VM. */
struct live_disk {
  char *name;     /* the guest device id: "vda" */
  char *node;     /* its top block node: "disk0", "libvirt-1-format" */
  char *driver;   /* the node's format: "qcow2", "raw" */
  char *filename; /* the image file, as QEMU names it */
  uint64_t virtual_size;
  bool read_only;
  live_bitmap_vector bitmaps;
};
DEFINE_VECTOR_TYPE (live_disk_vector, struct live_disk)

void live_disk_vector_release (live_disk_vector *v);

/* The VM's disks with a medium, from query-block; the name is the qdev
 * id ("/machine/peripheral/vda/virtio-backend" gives "vda"), or the
 * block backend's name when the device has no id.  Disks whose name is
 * not a valid name are an error that names them. */
int live_disks_query (struct qmp_client *c, live_disk_vector *disks)
  __attribute__ ((warn_unused_result));

const struct live_bitmap *live_disk_find_bitmap (const struct live_disk *d,
                                                 const char *name);

/* Whether bitmap name of disk d can drive an incremental backup; when it
 * cannot, *why gets the reason ("bitmap knib-X of vda is missing"). */
bool live_bitmap_usable (const struct live_disk *d, const char *name,
                         char **why);

/* Fail (EBUSY) when a block job that is not knib's runs in QEMU. */
int live_check_foreign_jobs (struct qmp_client *c)
  __attribute__ ((warn_unused_result));

/* One disk in a live backup. */
struct live_target {
  const struct live_disk *disk;
  const char *fleece_path;   /* an empty qcow2 image of the disk's size */
  const char *new_bitmap;    /* the bitmap to add ("knib-<id>"), or NULL */
  const char *old_bitmap;    /* knib's recording bitmap to freeze, or NULL */
  const char *export_bitmap; /* the bitmap the export exposes, or NULL */
  /* State, for live_stop. */
  bool node_added;
  bool job_started;
  bool export_added;
};

/* Fleecing nodes, then one transaction over all targets (blockdev-backup
 * sync=none into the fleecing node, add the new bitmap, disable the old
 * one): one point in time for every disk.  Then the NBD server on
 * nbd_socket and one read-only export per disk, named after the disk.
 * On failure undoes what it did (live_stop with success false). */
int live_start (struct qmp_client *c, struct live_target *targets, size_t n,
                const char *nbd_socket, bool *server_started)
  __attribute__ ((warn_unused_result));

/* Take everything down: the NBD server, the exports, the jobs, the
 * fleecing nodes.  success: the old bitmaps go.  Otherwise the new
 * bitmap is merged back into the old one, which is enabled again, and
 * the new one goes: no guest write is lost from tracking.  Every step is
 * tried; returns -1 with the first error when one failed. */
int live_stop (struct qmp_client *c, struct live_target *targets, size_t n,
               bool server_started, bool success);

/* After a successful backup that added keep: remove every other "knib-"
 * bitmap of the disk.  Appends what it removed to removed (may be
 * NULL). */
int live_bitmaps_prune (struct qmp_client *c, const struct live_disk *d,
                        const char *keep, chain_string_vector *removed)
  __attribute__ ((warn_unused_result));

/* Repair what a killed knib left in QEMU: knib's exports (and the NBD
 * server when they were on it), jobs and fleecing nodes go; knib's
 * bitmaps other than keep (the bitmap of the VM's latest backup, NULL
 * when none) are merged into keep when it exists and is usable, then
 * removed; keep is enabled again if it was left disabled; inconsistent
 * knib bitmaps are removed.  Appends one line per repair to done. */
int live_recover (struct qmp_client *c, const char *keep,
                  chain_string_vector *done)
  __attribute__ ((warn_unused_result));

#endif
