/* SPDX-License-Identifier: Apache-2.0 */
/* backup.h: a whole backup of a VM, running or stopped, and recovery. */
#ifndef KNIB_BACKUP_BACKUP_H
#define KNIB_BACKUP_BACKUP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "chain/chain.h"
#include "common/conf.h"

/* A disk image of a stopped VM. */
struct offline_image {
  const char *disk;   /* the device name: "vda" */
  const char *path;   /* the image file */
  const char *format; /* "qcow2" or "raw"; NULL: what qemu-img info finds */
};

/* Progress of one disk: done of total bytes of the disk passed. */
typedef void (*backup_progress_fn) (void *opaque, const char *disk,
                                    uint64_t done, uint64_t total);

struct backup_options {
  const char *qmp_socket; /* the VM's QMP socket (knib's own monitor) */
  /* Or, for a stopped VM, its disk images (n_images of them): knib opens
   * them in qemu-storage-daemon and backs them up the same way. */
  const struct offline_image *images;
  size_t n_images;
  const char *vm; /* the VM's name in the repository */
  enum chain_mode mode;
  int64_t chain_size;   /* 1: every backup full; < 1: unlimited */
  const char **disks;   /* NULL-terminated device names; NULL: every
                            writable disk */
  const char *scratch;  /* NULL: KNIB_DEFAULT_SCRATCH */
  int timeout_ms;       /* QMP and NBD silence limit */
  unsigned connections; /* NBD connections per disk (0: default) */
  backup_progress_fn progress;
  void *opaque;
  /* Set (by a signal handler) to stop the backup: it fails cleanly. */
  volatile sig_atomic_t *cancel;
  /* Inline compression: CHAIN_COMPRESSION_NONE (0, the default), or
   * every cluster that shrinks stored compressed with zlib or zstd, at
   * compression_level (0: the library's default), on
   * compression_threads worker threads (0: one per core). */
  enum chain_compression compression;
  int compression_level;
  unsigned compression_threads;
  /* MiB/s of image data written (compressed or not); < 1: no limit. */
  int64_t rate_limit;
  /* A VM that libvirt runs (knib backup --domain): */
  /* disks that QEMU calls by another device id than knib does (libvirt's
   * alias "virtio-disk0" is disk "vda"): n_renames of them; */
  const struct backup_rename *renames;
  size_t n_renames;
  /* its name, so that a snapshot merge a killed knib left is finished
   * through libvirt (NULL: a plain QEMU or a stopped VM); */
  const char *domain;
  /* what vm.json records (NULL: keep what it has), and the definition
   * also beside the images as BACKUP_DEFINITION_FILE, so that the VM
   * can be made again as it was at that backup; */
  const char *uuid;
  const char *definition;
  /* quiesce: freeze is called right before the transaction that sets
   * the point in time, and when it returned 0, thaw right after (also
   * when the transaction failed).  A failed freeze (-1, set_error)
   * fails the backup; a failed thaw is a warning in the notes. */
  int (*freeze) (void *opaque);
  int (*thaw) (void *opaque);
  void *quiesce_opaque;
};

/* QEMU's device id of a disk, and knib's name for it. */
struct backup_rename {
  const char *device;
  const char *disk;
};

/* The VM's definition (domain XML) in each backup's directory. */
#define BACKUP_DEFINITION_FILE "domain.xml"

struct backup_disk_result {
  char *name;
  enum chain_kind kind;
  char *reason; /* why full, or NULL */
  uint64_t virtual_size;
  uint64_t bytes_read;
  uint64_t bytes_zero;
  uint64_t bytes_written;
  uint64_t extents;
  double seconds;
  enum chain_compression compression;
};
DEFINE_VECTOR_TYPE (backup_disk_result_vector, struct backup_disk_result)

struct backup_result {
  char id[CHAIN_ID_MAX];
  char parent[CHAIN_ID_MAX];
  enum chain_kind kind;
  char *reason;
  backup_disk_result_vector disks;
  double seconds;
  chain_string_vector notes; /* what recovery did, warnings */
};

void backup_result_release (struct backup_result *r);

/* Back up the VM: lock it, repair leftovers, decide, fleece all disks at
 * one point in time, copy through NBD into qcow2 images, commit, tear
 * down and rotate the bitmaps.  Returns 0, or -1 with set_error; on
 * failure nothing is left in QEMU or the repository and every guest
 * write stays tracked.  r->notes is filled either way. */
int backup_run (struct chain_repo *repo, const struct backup_options *o,
                struct backup_result *r) __attribute__ ((warn_unused_result));

/* What backup_run repairs before it starts, on its own: partial
 * backups, knib's exports, jobs, fleecing nodes and stale bitmaps in
 * QEMU or (images) in the images of a stopped VM (neither: only the
 * repository), scratch files and daemons of dead runs.  One line per
 * repair goes to done. */
int backup_recover (struct chain_repo *repo, const struct backup_options *o,
                    chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* End the VM's chain (chain_vm_end_chain with reason, under its
 * exclusive lock "chain end"): its next backup is full.  With
 * o->qmp_socket also remove every knib bitmap from the running VM's
 * disks (a stopped VM's stay in its images until the next backup's
 * rotation).  One line per thing done goes to done. */
int backup_end_chain (struct chain_repo *repo, const struct backup_options *o,
                      const char *reason, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* ---- Restore into a VM ---- */

/* Fail (EBUSY, "... is in use ...: stop the VM first") when a program
 * holds image path of disk (QEMU's image locks say so). */
int backup_image_check_unused (const char *disk, const char *path)
  __attribute__ ((warn_unused_result));

struct backup_restore_options {
  const char *vm; /* NULL: whichever VM has the backup */
  /* The VM's disks: each replaces its image (which no program may hold:
   * the VM is stopped). */
  const struct chain_restore_target *targets;
  size_t n_targets;
  /* Each disk becomes a qcow2 overlay whose backing file is the
   * backup's image in the repository (pinned until consolidated). */
  bool quick;
  const char *holder;  /* the VM that holds the pins (NULL: the backup's) */
  bool force;          /* restore a chain that fails verification */
  bool drop_snapshots; /* a VM with snapshots: drop them (else refused) */
  /* Called once every check that needs no stopped VM has passed (the
   * backup, its disks, its chain), before the images are checked and
   * written: it stops the VM (may be NULL).  -1 with set_error fails. */
  int (*prepare) (void *opaque);
  void *prepare_opaque;
  int lock_timeout_ms;
  chain_restore_fn progress;
  void *opaque;
};

/* Restore backup id in place: check that no program holds the images
 * and that every disk is in the backup, verify the backup's chain
 * (hashes and qemu-img check; refused unless force), then under the
 * VM's exclusive lock write each disk beside its image (or make its
 * overlay), add the empty bitmap knib-<id>, sync and rename it over the
 * image; record the restore (the next backup is an incremental of id)
 * or, when not every disk of the backup was restored, end the chain.
 * A removed backup is restored with a note.  Notes go to notes. */
int backup_restore_in_place (struct chain_repo *repo, const char *id,
                             const struct backup_restore_options *o,
                             chain_string_vector *notes)
  __attribute__ ((warn_unused_result));

struct backup_volume_options {
  const char *vm;     /* the backup's VM; NULL: whichever has the backup */
  const char *disk;   /* the backup's disk to restore */
  const char *path;   /* the new image (it must not exist) */
  bool quick;         /* an overlay on the backup's image (pinned) */
  const char *holder; /* the VM that gets the disk, for the pin */
  bool force;         /* restore a chain that fails verification */
  int lock_timeout_ms;
  chain_restore_fn progress;
  void *opaque;
};

/* Restore one disk of backup id (of any VM, one that no longer exists
 * too) as a new qcow2 image at o->path, to be attached to a VM: the
 * chain is verified first (refused unless force), a removed backup is
 * restored with a note; with quick the image is an overlay on the
 * backup's image and the backup is pinned for o->holder. */
int backup_restore_volume (struct chain_repo *repo, const char *id,
                           const struct backup_volume_options *o,
                           chain_string_vector *notes)
  __attribute__ ((warn_unused_result));

/* Attach image path (qcow2) to the running QEMU at qmp_socket as device
 * target (virtio-blk): blockdev-add of node "restored-<target>", then
 * device_add.  A target in use is refused; a failed device_add removes
 * the node again. */
int backup_attach_qmp (const char *qmp_socket, const char *path,
                       const char *target, int timeout_ms)
  __attribute__ ((warn_unused_result));

/* ---- Consolidation of quick-restored disks ---- */

enum backup_consolidation_state {
  BACKUP_CONSOLIDATION_NONE,    /* the disk does not read a backup */
  BACKUP_CONSOLIDATION_DONE,    /* it has no backing file (any more) */
  BACKUP_CONSOLIDATION_PENDING, /* it reads a backup; no job runs */
  BACKUP_CONSOLIDATION_RUNNING, /* knib's block-stream job runs */
  BACKUP_CONSOLIDATION_FAILED,  /* the job failed (error) */
};

const char *backup_consolidation_state_name (enum backup_consolidation_state s);

struct backup_consolidation {
  char *disk;
  char *image;   /* the disk's top image */
  char *backing; /* its backing file, or NULL */
  enum backup_consolidation_state state;
  uint64_t done, total; /* bytes of the job */
  char *error;          /* QEMU's error of a failed job, or NULL */
  bool started;         /* this call started its job */
  bool adopted;         /* this call found its job running */
};
DEFINE_VECTOR_TYPE (backup_consolidation_vector, struct backup_consolidation)

void backup_consolidation_release (backup_consolidation_vector *v);

typedef void (*backup_consolidation_fn) (
  void *opaque, const struct backup_consolidation *disk);

struct backup_consolidate_options {
  const char *qmp_socket;   /* the VM's (knib's own monitor) */
  const char *vm;           /* its name, for messages */
  const char *const *disks; /* NULL-terminated; NULL: every disk */
  /* QEMU's device ids that are not knib's disk names (libvirt). */
  const struct backup_rename *renames;
  size_t n_renames;
  bool start;    /* start a stream on each pending or failed disk */
  int64_t speed; /* bytes/s of each stream it starts; 0: no limit */
  bool wait;     /* wait until no stream runs */
  int timeout_ms;
  backup_consolidation_fn progress; /* while waiting; may be NULL */
  void *opaque;
  volatile sig_atomic_t *cancel;
};

/* Each disk's consolidation (out), looking at QEMU: a disk whose top
 * image has a backing file in the repository reads a backup.  With
 * start, "block-stream" (job "knib-stream-<disk>") pulls the data in,
 * or a job already running is adopted; a job whose data is in is
 * finalized after a flush of the VM's disks (a "stop" and "cont": the
 * guest pauses that long), so that the backing file is dropped only once
 * the copied data is safe; a concluded job is dismissed (its error
 * kept).  With wait, returns when no job runs, and drops
 * the pins of the disks that are done (notes). */
int backup_consolidate (struct chain_repo *repo,
                        const struct backup_consolidate_options *o,
                        backup_consolidation_vector *out,
                        chain_string_vector *notes)
  __attribute__ ((warn_unused_result));

/* ---- Disk-only snapshots (snapshot.c) ---- */

struct snapshot_options {
  const char *vm;         /* the VM's name in the repository */
  const char *qmp_socket; /* a running VM: its QMP socket (knib's own) */
  /* A stopped VM: its disk images (create only; later operations find
   * them in the snapshot records). */
  const struct offline_image *images;
  size_t n_images;
  /* A libvirt domain: create goes through virsh snapshot-create-as, so
   * that libvirt's definition follows; qmp_socket or images as
   * libvirt_backup_begin found them. */
  const char *domain;
  const struct backup_rename *renames;
  size_t n_renames;
  int timeout_ms;
  /* Set by a signal handler: QMP waits end with EINTR (the next run
   * repairs what is left). */
  volatile sig_atomic_t *cancel;
  /* The progress of a live merge (block-stream): bytes of the disk's
   * job done of its total, about once a second (NULL: none). */
  backup_progress_fn progress;
  void *opaque;
  /* Quiesce around the point in time (as in backup_options). */
  int (*freeze) (void *opaque);
  int (*thaw) (void *opaque);
  void *quiesce_opaque;
};

/* Snapshot every writable disk of the VM at one point in time: a new
 * qcow2 overlay beside each disk's image ("<image>.<name>.qcow2") that
 * the disk runs on from now on, with knib's bitmaps carried into it so
 * that the next backup stays incremental.  Running plain QEMU: one QMP
 * transaction; a libvirt domain: virsh; stopped: qemu-img.  One line per
 * thing done goes to done (also what recovery did first). */
int snapshot_create (struct chain_repo *repo, const struct snapshot_options *o,
                     const char *name, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* Delete snapshots by the reference's rules: a layer that nothing needs
 * any more goes, one that a single layer depends on is merged into it
 * (block-stream in the running QEMU with o->qmp_socket, else qemu-img
 * rebase), giving its bitmaps to the active layer first; a layer that
 * several depend on stays and its snapshot is marked removed. */
int snapshot_delete (struct chain_repo *repo, const struct snapshot_options *o,
                     const char *const *names, size_t n,
                     chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* With the VM stopped (o->qmp_socket NULL): put every disk on a fresh
 * overlay of the snapshot's layer; the abandoned layers go once nothing
 * needs them.  The new overlay's bitmaps cover every cluster that may
 * differ from the last backup, so the next backup is incremental. */
int snapshot_revert (struct chain_repo *repo, const struct snapshot_options *o,
                     const char *name, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* What every snapshot operation does first: finish or undo what a killed
 * knib left (a create, a merge in QEMU or on disk, a revert). */
int snapshot_recover (struct chain_repo *repo, const struct snapshot_options *o,
                      chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* A restore in place replaces the disks that a VM's snapshots are
 * layers of.  Before it: refused (EBUSY, saying so) while vm has
 * snapshots (or layers, or an unfinished operation), unless drop; and
 * with drop, unless every disk with layers is one of the n targets. */
int snapshot_restore_check (struct chain_repo *repo, const char *vm,
                            const struct chain_restore_target *targets,
                            size_t n, bool drop)
  __attribute__ ((warn_unused_result));

/* After it, under the VM's exclusive lock: every snapshot is forgotten
 * and every layer removed but the n restored images of keep (a layer
 * that a program holds fails it first).  One line per removal. */
int snapshot_drop (struct chain_lock *lock,
                   const struct chain_restore_target *keep, size_t n,
                   chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* ---- A throwaway VM on overlays of a backup (vm.c) ----
 *
 * QEMU boots the backup's disks through temporary qcow2 overlays in a
 * private scratch directory, "<scratch>/vm-XXXXXX", whose backing files
 * are the backup's images: the repository is only read.  The VM has no
 * network device; it has a guest agent channel (a unix socket), a VGA
 * display for screendump, a pvpanic device, its serial console in a
 * file and a QMP monitor of knib's own.  Its hardware comes from the
 * definition stored with the backup when there is one (machine type,
 * BIOS or UEFI firmware with a fresh copy of the NVRAM template,
 * memory, vCPUs, disk buses, boot order, direct kernel boot), else
 * from defaults; the options override memory and vCPUs.  QEMU runs in
 * its own process group and dies with knib (PR_SET_PDEATHSIG). */

enum backup_vm_accel {
  BACKUP_VM_ACCEL_AUTO, /* kvm when /dev/kvm is usable and the host is
                           not itself a VM (nested KVM may hang a real
                           guest kernel), else tcg */
  BACKUP_VM_ACCEL_KVM,
  BACKUP_VM_ACCEL_TCG,
};

const char *backup_vm_accel_name (enum backup_vm_accel a);
int backup_vm_accel_parse (const char *s, enum backup_vm_accel *a)
  __attribute__ ((warn_unused_result));

/* Defaults without a stored definition. */
#define BACKUP_VM_DEFAULT_MEMORY_MIB 1024
#define BACKUP_VM_DEFAULT_CPUS 1

struct backup_vm_options {
  const char *scratch; /* NULL: KNIB_DEFAULT_SCRATCH */
  enum backup_vm_accel accel;
  uint64_t memory_mib; /* 0: the definition's, else the default */
  unsigned cpus;       /* 0: the definition's, else the default */
  bool keep;           /* leave the scratch directory (and QEMU's files) */
  int timeout_ms;      /* QMP replies and QEMU's start */
};

struct backup_vm;
struct qmp_client;

/* Make the overlays of backup m's disks (its chain's images, which the
 * caller has checked) and start QEMU on them, paused (-S): nothing runs
 * until backup_vm_power_on.  QEMU gets each disk's chain explicitly,
 * layer by layer (chain_disk_qemu_json): it follows no backing file
 * name recorded in an image.  definition is the domain XML stored with
 * the backup, or NULL.  Where the VM differs from what the definition
 * asks (a CPU mode that the accelerator cannot give, an IDE disk on a
 * q35 machine), a line says so in notes.  NULL with set_error: an
 * unknown or missing firmware, a disk bus QEMU cannot give, an unknown
 * CPU mode, not enough free memory, QEMU failing to start (with its
 * message). */
struct backup_vm *
backup_vm_start (struct chain_repo *repo, const struct chain_manifest *m,
                 const char *definition, const struct backup_vm_options *o,
                 chain_string_vector *notes)
  __attribute__ ((warn_unused_result));

/* Let the VM run ("cont"); the time of power-on is noted. */
int backup_vm_power_on (struct backup_vm *vm)
  __attribute__ ((warn_unused_result));

/* Seconds since power-on. */
double backup_vm_uptime (const struct backup_vm *vm);

/* Borrowed: QEMU's QMP connection, the scratch directory, the guest
 * agent's socket, the serial console's file, the accelerator used. */
struct qmp_client *backup_vm_qmp (struct backup_vm *vm);
const char *backup_vm_dir (const struct backup_vm *vm);
const char *backup_vm_agent_socket (const struct backup_vm *vm);
const char *backup_vm_console (const struct backup_vm *vm);
const char *backup_vm_accel_used (const struct backup_vm *vm);
/* The file whose lock says that the VM's scratch directory is in use
 * (for chain_pin_add_owned), and the overlay of the backup's disk i. */
const char *backup_vm_owner_file (const struct backup_vm *vm);
const char *backup_vm_overlay (const struct backup_vm *vm, size_t i);

/* Whether QEMU still runs; when it ended, *why says how (the caller
 * frees it). */
bool backup_vm_alive (struct backup_vm *vm, char **why);

/* Kill QEMU (SIGTERM, then SIGKILL), keeping its files.  The last
 * error is left alone. */
void backup_vm_stop (struct backup_vm *vm);

/* Kill QEMU (SIGTERM, then SIGKILL), and remove the scratch directory
 * unless the options said keep.  The last error is left alone.  NULL is
 * a no-op. */
void backup_vm_free (struct backup_vm *vm);

/* Leftovers of killed runs under the scratch root: every "vm-*"
 * directory whose owner is gone loses its QEMU (if it still runs) and
 * then goes.  One line per removal goes to done. */
int backup_vm_reap (const char *scratch, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* ---- Boot validation (validate.c) ----
 *
 * Does this backup boot?  A throwaway VM on overlays of the backup's
 * chain (backup_vm_start), powered on; then the steps, each with its
 * own result:
 *   boot        the guest agent answers guest-sync-delimited (tried
 *               every VALIDATE_AGENT_POLL_MS up to boot_timeout); the
 *               seconds from power-on to its first answer are the
 *               backup's measured recovery time;
 *   screenshot  QMP screendump as PNG, stored with the backup as
 *               validation/screen.png (also when the boot failed);
 *   command     guest-exec of argv (no shell) with its output captured,
 *               guest-exec-status until it exits or command_timeout;
 *               its exit status (or its output, with expect_output) is
 *               checked.
 * When the agent never answers, the evidence says why: the
 * GUEST_PANICKED event, the VGA text screen (QEMU's pmemsave of the
 * text buffer: "No bootable device", a GRUB prompt, a kernel panic) and
 * the serial console's last lines; a screen or console that shows a
 * dead end ends the wait early.  The result goes into the backup's
 * manifest, with the console log beside the screenshot.  Only those
 * files and the manifest are written in the repository. */

#define VALIDATE_DEFAULT_BOOT_TIMEOUT 240   /* s, as the platform */
#define VALIDATE_DEFAULT_COMMAND_TIMEOUT 60 /* s */
#define VALIDATE_AGENT_POLL_MS 5000         /* one guest-sync attempt */
/* The most of the console log kept with the backup (its end). */
#define VALIDATE_CONSOLE_KEEP (256u * 1024)

struct validate_options {
  const char *vm; /* NULL: whichever VM has the backup */
  const char *id;
  struct backup_vm_options vm_options;
  int boot_timeout;          /* seconds */
  int command_timeout;       /* seconds */
  const char *const *argv;   /* the command, NULL-terminated; NULL: none */
  const char *expect_output; /* an extended regex its stdout must match;
                                NULL: check expect_exit */
  int expect_exit;
  bool screenshot;
  /* validation-jobs-per-host (< 1: no limit); with no_wait a validation
   * that finds every slot taken fails at once (EWOULDBLOCK), otherwise
   * it waits, and waiting (may be NULL) hears why once. */
  int64_t jobs_per_host;
  bool no_wait;
  void (*waiting) (void *opaque, const char *why);
  void *opaque;
  volatile sig_atomic_t *cancel; /* set by a signal handler: stop */
};

struct validate_result {
  char *vm;
  char id[CHAIN_ID_MAX];
  struct chain_validation *validation; /* as recorded in the manifest */
  chain_string_vector evidence;        /* why the boot failed, line by line */
  char *screenshot;                    /* paths in the repository, or NULL */
  char *console;
  int exit_code; /* the command's, or -1 */
  char *out;     /* its captured stdout and stderr, or NULL */
  char *err;
  char *scratch;             /* kept scratch directory (keep), or NULL */
  chain_string_vector notes; /* leftovers of killed runs removed */
};

void validate_result_release (struct validate_result *r);

/* Validate backup o->id: remove the leftovers of killed validations,
 * take a slot (validation-jobs-per-host), the VM's shared lock
 * ("validate"), check the chain's structure (chain_verify_structure),
 * boot, run the steps and record the result.  Returns 0 when the
 * validation ran, whatever it found (r->validation->status); -1 with
 * set_error when it could not (no such backup, a removed one, a broken
 * chain, a bad definition, no slot with no_wait, QEMU missing,
 * interrupted). */
int backup_validate (struct chain_repo *repo, const struct validate_options *o,
                     struct validate_result *r)
  __attribute__ ((warn_unused_result));

#endif
