/* SPDX-License-Identifier: Apache-2.0 */
/* internal.h: what the files of src/backup share: the QMP side of a
 * backup in a running QEMU (live.c, layers.c) and the daemon that opens a
 * stopped VM's images (offline.c). */
#ifndef KNIB_BACKUP_INTERNAL_H
#define KNIB_BACKUP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backup/backup.h"
#include "chain/chain.h"
#include "common/vector.h"
#include "nbd/nbd.h"
#include "qcow2/qcow2.h"
#include "qmp/qmp.h"

/* live.c, layers.c */

/* Everything knib adds to QEMU carries the "knib-" prefix, so that it
 * acts only on its own jobs, nodes, exports and bitmaps. */
#define LIVE_FLEECE_PREFIX "knib-fleece-"
#define LIVE_JOB_PREFIX "knib-job-"
#define LIVE_EXPORT_PREFIX "knib-export-"
#define LIVE_CBW_PREFIX "knib-cbw-"
#define LIVE_ACCESS_PREFIX "knib-access-"
#define LIVE_PAUSE_PREFIX "knib-paused-"

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
  char *qdev;     /* the guest device's QOM path (query-block's "qdev"),
                     or NULL (a daemon's node) */
  char *backing;  /* the backing file its header names (QEMU's view), or
                     NULL when it has none */
  uint64_t virtual_size;
  bool read_only;
  /* The image can store persistent bitmaps (qcow2 v3).  A raw or qcow2
   * v2 (compat=0.10) image cannot: its bitmaps live only as long as the
   * QEMU that holds them. */
  bool persistent_bitmaps;
  live_bitmap_vector bitmaps;
};
DEFINE_VECTOR_TYPE (live_disk_vector, struct live_disk)

void live_disk_vector_release (live_disk_vector *v);

/* Where a disk is when no guest device names it (qemu-storage-daemon
 * has none): the disk's name and its top block node. */
struct live_node_map {
  const char *disk;
  const char *node;
};

/* The VM's disks.  With map NULL: the disks with a medium, from
 * query-block; the name is the qdev id
 * ("/machine/peripheral/vda/virtio-backend" gives "vda"), or the block
 * backend's name when the device has no id.  Otherwise: the n nodes of
 * map, from query-named-block-nodes, named as map says (a node that is
 * missing is an error).  Disks whose name is not a valid name are an
 * error that names them. */
int live_disks_query (struct qmp_client *c, const struct live_node_map *map,
                      size_t n, live_disk_vector *disks)
  __attribute__ ((warn_unused_result));

/* libvirt's device ids ("virtio-disk0") become knib's names ("vda"):
 * each of the n renames. */
int live_disks_rename (live_disk_vector *disks,
                       const struct backup_rename *renames, size_t n)
  __attribute__ ((warn_unused_result));

/* Node's child through edge ("file", "backing"), from QEMU's block
 * graph: *child malloc'ed, NULL when node has none (live.c). */
int live_node_child (struct qmp_client *c, const char *node, const char *edge,
                     char **child) __attribute__ ((warn_unused_result));

/* The node named node_name in a query-named-block-nodes reply, or NULL
 * (layers.c). */
json_t *live_find_node (json_t *nodes, const char *node_name);

/* The name of the format node (not the protocol node, which shares its
 * file name) of image filename in that reply, or NULL (borrowed). */
const char *live_format_node_of (json_t *nodes, const char *filename);

/* Why d's image cannot keep a dirty bitmap when its QEMU stops ("vdb is
 * a raw image, which cannot store a persistent dirty bitmap"), or NULL
 * when it can (or out of memory). */
char *live_disk_volatile_why (const struct live_disk *d)
  __attribute__ ((warn_unused_result));

const struct live_bitmap *live_disk_find_bitmap (const struct live_disk *d,
                                                 const char *name);

/* Whether bitmap name of disk d can drive an incremental backup; when it
 * cannot, *why gets the reason ("bitmap knib-X of vda is missing").  On
 * a disk without persistent_bitmaps a bitmap that is not persistent is
 * usable. */
bool live_bitmap_usable (const struct live_disk *d, const char *name,
                         char **why);

/* External snapshots may have spread bitmap name of disk d over layers
 * (layers.c): merge it from the contiguous run of layers below into the
 * active layer's, which then holds every write since its backup.  When
 * that cannot be proved (a layer in between without it, an inconsistent
 * one below) *why says so and the disk must be full; else *why is NULL. */
int live_bitmap_fold (struct qmp_client *c, const struct live_disk *d,
                      const char *name, char **why)
  __attribute__ ((warn_unused_result));

/* Fail (EBUSY) when a block job that is not knib's runs in QEMU. */
int live_check_foreign_jobs (struct qmp_client *c)
  __attribute__ ((warn_unused_result));

/* Fails (EBUSY) while knib streams data into one of the VM's disks (a
 * quick restore's consolidation, or a snapshot's merge: job
 * "knib-stream-<disk>", not yet concluded): a backup would race its end,
 * when QEMU drops the disk's backing file.  The message says how to
 * wait for it (repo and o: the backup's). */
int quick_check_no_stream (struct qmp_client *c, const char *repo,
                           const struct backup_options *o)
  __attribute__ ((warn_unused_result));

/* Read-ahead for a consolidation (prefetch.c): the backing chain of
 * image, from its backing file backing (as the header names it: relative
 * to image's directory; its own backing files followed, qcow2 only),
 * asked of the kernel (POSIX_FADV_WILLNEED) a window ahead of the
 * stream.  NULL when there is nothing to read ahead (-v says why);
 * advice only, never an error. */
struct backup_prefetch;
struct backup_prefetch *backup_prefetch_new (const char *image,
                                             const char *backing);
/* The stream has reached guest offset streamed: ask for the window after
 * it (p NULL: nothing). */
void backup_prefetch_to (struct backup_prefetch *p, uint64_t streamed);
void backup_prefetch_free (struct backup_prefetch *p);

/* One disk in a live backup. */
struct live_target {
  const struct live_disk *disk;
  const char *fleece_path;   /* an empty qcow2 image of the disk's size */
  int fleece_fd;             /* that image open read-write, handed to QEMU
                                (add-fd) so that no path is opened; -1:
                                QEMU opens fleece_path (knib's own daemon,
                                which has no add-fd) */
  const char *new_bitmap;    /* the bitmap to add ("knib-<id>"), or NULL */
  const char *old_bitmap;    /* knib's recording bitmap to freeze, or NULL */
  const char *export_bitmap; /* the bitmap the export exposes, or NULL */
  bool transient_bitmap;     /* add new_bitmap as not persistent (the
                                image cannot store it) */
  bool cbw;                  /* fleece through a copy-before-write filter
                                that the guest's device is moved onto
                                (live_cbw_supported), not blockdev-backup */
  /* State, for live_stop. */
  bool node_added;
  bool job_started; /* the transaction ran (and, without cbw, the job) */
  bool cbw_added;
  bool drive_set; /* the device is on the filter */
  bool access_added;
  bool export_added;
};

/* Whether QEMU has the copy-before-write filter with on-cbw-error
 * (QEMU 7.1) and the snapshot-access driver: then a backup's fleecing
 * never fails a guest write (a full scratch breaks the snapshot, and the
 * backup fails instead).  0 with *yes set, or -1. */
int live_cbw_supported (struct qmp_client *c, bool *yes)
  __attribute__ ((warn_unused_result));

/* Fleecing nodes, then one transaction over all targets (blockdev-backup
 * sync=none into the fleecing node, add the new bitmap, disable the old
 * one): one point in time for every disk.  With cbw: the filters, then,
 * with a running VM paused, the bitmaps' transaction and every device
 * moved onto its filter, and the VM resumed; then a snapshot-access node
 * over each filter.  Then the NBD server on
 * nbd_socket and one read-only export per disk, named after the disk.
 * On failure undoes what it did (live_stop with success false). */
int live_start (struct qmp_client *c, struct live_target *targets, size_t n,
                const char *nbd_socket, bool *server_started)
  __attribute__ ((warn_unused_result));

/* Take everything down: the NBD server, the exports, the jobs, the
 * fleecing nodes.  success: the bitmaps stay (live_bitmaps_prune tidies
 * them).  Otherwise the new bitmap is merged back into the old one,
 * which is enabled again, and the new one goes: no guest write is lost
 * from tracking.  Every step is
 * tried; returns -1 with the first error when one failed. */
int live_stop (struct qmp_client *c, struct live_target *targets, size_t n,
               bool server_started, bool success);

/* Whose "knib-" bitmaps a run may remove or merge: those of repo's
 * backups of vm (chain_bitmap_is_ours); another repository's bitmaps on
 * the same disks are never touched. */
struct live_owner {
  struct chain_repo *repo;
  const char *vm;
};

bool live_bitmap_is_ours (const struct live_owner *owner, const char *name);

/* After a successful backup that added keep: remove every other bitmap
 * of the disk that is owner's but frozen (the previous chain tip's bitmap, which
 * the backup's transaction disabled; NULL: none).  Kept, it holds what
 * changed from its backup to the new one, so that deleting the new
 * backup can hand that tracking back (see live_recover).  With keep and
 * frozen NULL every one of owner's bitmaps goes (the chain was ended).  Appends
 * what it removed to removed (may be NULL). */
int live_bitmaps_prune (struct qmp_client *c, const struct live_disk *d,
                        const struct live_owner *owner, const char *keep,
                        const char *frozen, chain_string_vector *removed)
  __attribute__ ((warn_unused_result));

/* Repair what a killed knib left in QEMU: knib's exports (and the NBD
 * server when they were on it), jobs and fleecing nodes go.  Then per
 * disk, with keep the bitmap of the VM's chain tip (its latest
 * non-isolated backup, NULL when none) and older the bitmaps of its
 * backups before the tip (NULL: none):
 *   - a disabled bitmap named in older stays while keep does: it is
 *     the frozen bitmap of the tip's predecessor;
 *   - every other of owner's bitmaps (a killed backup's, a deleted tip's) is
 *     merged into keep, then removed;
 *   - keep, when it was left disabled, is enabled again only when a
 *     recording bitmap was merged into it (then it has tracked every
 *     write since its backup); otherwise nothing vouches for the writes
 *     since it was frozen: it is removed, and the next backup of the
 *     disk is full;
 *   - inconsistent bitmaps of owner's are removed, and without keep
 *     every one of owner's is.
 * The disks are found as live_disks_query finds them with map and n.
 * Appends one line per repair to done.  found (NULL: not wanted, else
 * empty) gets the disks as QEMU has them after the recovery when no
 * bitmap needed a repair (a caller's live_disks_query would find the
 * same); otherwise it stays empty. */
int live_recover (struct qmp_client *c, const struct live_node_map *map,
                  size_t n, const struct live_owner *owner, const char *keep,
                  const chain_string_vector *older, live_disk_vector *found,
                  chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* offline.c */

/* A QemuOpts value: every comma written twice (NULL with set_error). */
char *backup_opts_escape (const char *s) __attribute__ ((warn_unused_result));

/* Whether pid is alive (not a zombie) and runs program with arguments
 * that mention dir (as QemuOpts escape it): the helper that a run with
 * that scratch directory started, not a process that got its pid
 * later. */
bool backup_process_of (pid_t pid, const char *program, const char *dir);

/* Wait up to ms for that process to be gone; false if it stays. */
bool backup_process_wait_gone (pid_t pid, const char *program, const char *dir,
                               int ms);

/* The daemon's nodes: "knib-file-vda" (the file) under "knib-disk-vda"
 * (the format node, the disk). */
#define OFFLINE_DISK_PREFIX "knib-disk-"
#define OFFLINE_FILE_PREFIX "knib-file-"

/* In the run's scratch directory: the daemon's QMP socket and its pid. */
#define OFFLINE_QMP_SOCKET "qmp.sock"
#define OFFLINE_PID_FILE "daemon.pid"

/* How long the daemon may take to close its images once asked to stop
 * (it stores the persistent bitmaps then). */
#define OFFLINE_STOP_GRACE_MS 30000

struct offline_daemon;

/* Start qemu-storage-daemon on the images: one node pair per image, the
 * QMP monitor on dir/OFFLINE_QMP_SOCKET, its pid file dir/OFFLINE_PID_FILE
 * (dir is private and exists); wait until it answers and connect.  An
 * image that can store persistent bitmaps (qcow2 v3) opens read-write,
 * so that bitmaps can be added; any other read-only.  The daemon holds
 * a qcow2 image's lock while it runs, so no VM starts on it (a raw
 * image's only once the backup's job holds it: see
 * offline_daemon_explain), and it dies with the calling thread.  An
 * image that another process holds (a running VM) is an error that says
 * so and points to --qmp.  The descriptors pass_fds (owned by the
 * caller, >= 3) stay open in the daemon under the same numbers, as
 * "/proc/self/fd/N" there: the daemon has no add-fd.  NULL with
 * set_error on failure. */
struct offline_daemon *offline_daemon_start (const struct offline_image *images,
                                             size_t n, const char *dir,
                                             const int *pass_fds, size_t npass,
                                             int timeout_ms)
  __attribute__ ((warn_unused_result));

/* A raw image's lock is taken only when the backup starts (nothing
 * takes it before): when the last error says that this failed, say
 * which image and what to do. */
void offline_daemon_explain (const struct offline_daemon *d);

/* The daemon's QMP connection (borrowed). */
struct qmp_client *offline_daemon_qmp (struct offline_daemon *d);

/* Which node is which disk, for live_disks_query (borrowed). */
const struct live_node_map *offline_daemon_map (const struct offline_daemon *d,
                                                size_t *n);

/* Disconnect and stop the daemon (SIGTERM): it closes the images, which
 * stores their persistent bitmaps and drops their locks.  -1 with
 * set_error when it did not end cleanly (then bitmaps added since it
 * started may be lost: the next backup of those disks is full). */
int offline_daemon_stop (struct offline_daemon *d)
  __attribute__ ((warn_unused_result));

/* Stop the daemon if it still runs (the last error is left alone), then
 * free.  NULL is a no-op. */
void offline_daemon_free (struct offline_daemon *d);

/* A killed knib's scratch directory dir: if the daemon it started still
 * runs (it gets SIGTERM when knib dies, but may still be closing), stop
 * it and wait until it is gone, so that its images are free.  Appends
 * what it did to done. */
int offline_daemon_reap (const char *dir, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* stream.c */

/* Copy the export into the pipeline (nbd_source_copy's plan and reads)
 * on two threads: this one drives libnbd, a writer thread runs p (which
 * this thread must not touch until the call returns).  Chunks go to the
 * writer in batches, in the read buffers themselves (aligned for
 * O_DIRECT), which come back to the reads once written: memory is
 * bounded by the reads in flight and two batches.  fn sees each chunk
 * first, on this thread (cancel, progress); it must not write it.
 * Returns 0 once every chunk is in p (flush it next), or -1 with
 * set_error: a read's, fn's or the writer's. */
int backup_stream_copy (struct nbd_source *src,
                        const struct nbd_read_options *ro,
                        struct qcow2_pipeline *p, nbd_chunk_fn fn, void *opaque,
                        struct nbd_copy_stats *stats)
  __attribute__ ((warn_unused_result));

/* vm.c: the pure parts, for the unit tests. */

struct domain_info;

/* The -cpu option of a validation VM of definition d (NULL: none) under
 * accel ("kvm" or "tcg") on a host that is (nested) or is not itself a
 * VM.  *cpu: a new string, or NULL for QEMU's default model; *note: a
 * new line when the VM cannot have what d asks (host-passthrough under
 * TCG), else NULL.  A custom model keeps the features d requires or
 * forbids.  -1 with set_error: an unknown CPU mode or feature policy, a
 * model or feature name that is not one. */
int backup_vm_cpu_option (const struct domain_info *d, const char *accel,
                          bool nested, char **cpu, char **note)
  __attribute__ ((warn_unused_result));

/* The machine type for a definition that asks for want, given QEMU's
 * "-machine help" (NULL: unknown): want when QEMU has it, else for a
 * versioned pc-q35-* or pc-i440fx-* type (from a newer QEMU) the
 * family's current one (q35, pc) and *note (a new line) says so. */
int backup_vm_machine (const char *want, const char *help, const char **use,
                       char **note) __attribute__ ((warn_unused_result));

/* The controllers that the disks' buses need, and the SATA ports taken. */
struct backup_vm_buses {
  bool ahci, scsi;
  unsigned sata;
};

/* The -device of disk target (the definition's bus) on machine, on block
 * node node, as the validation VM's device i (boot: its boot index, 0
 * none); b records the controllers it needs.  IDE is the machine's own
 * controller (i440FX), by the target's letter (hda..hdd); a q35 machine
 * has none, so there it is SATA, and *note says so.  NULL with
 * set_error: a bus or a place that the VM cannot give. */
char *backup_vm_disk_device (const char *machine, const char *target,
                             const char *bus, const char *node, size_t i,
                             unsigned boot, struct backup_vm_buses *b,
                             char **note) __attribute__ ((warn_unused_result));

/* validate.c: the pure parts, for the unit tests. */

/* The VGA text buffer (80x25 pairs of character and attribute, as at
 * 0xB8000): its lines, blanks trimmed at the end of each, empty lines at
 * the end dropped, bytes outside printable ASCII as spaces.  NULL with
 * set_error when out of memory. */
char *validate_screen_text (const unsigned char *buf, size_t len)
  __attribute__ ((warn_unused_result));

/* Where a screen or a console shows that the guest will not come up by
 * itself: "No bootable device", a GRUB rescue prompt, a kernel panic, a
 * boot loader's error: that line of text (a new string), else NULL. */
char *validate_dead_end (const char *text) __attribute__ ((warn_unused_result));

/* The last n non-empty lines of text, control characters and ANSI
 * escapes removed, each appended to lines (as new strings). */
int validate_tail_lines (const char *text, size_t n, chain_string_vector *lines)
  __attribute__ ((warn_unused_result));

#endif
