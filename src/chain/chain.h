/* SPDX-License-Identifier: Apache-2.0 */
/* chain.h: the backup repository: manifests, chains, locks, commit, recovery. */
#ifndef KNIB_CHAIN_H
#define KNIB_CHAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/vector.h"

/* The repository is a directory:
 *
 *   REPO/knib-repo.json                    {"format": "knib-repository",
 *                                           "version": 1}
 *   REPO/vms/<vm>/vm.json                  what knib last knew of the VM
 *   REPO/vms/<vm>/.lock                    the VM's lock (see chain_lock_new)
 *   REPO/vms/<vm>/<id>/manifest.json       a backup: it exists when this does
 *   REPO/vms/<vm>/<id>/<disk>.qcow2        its images
 *   REPO/vms/<vm>/<id>.partial/            a backup being written, or the
 *                                          leftover of one that failed
 *   .tmp-<name>.XXXXXX                     a file being written atomically
 *
 * Directories are made 0700 and files 0600.  VM names, disk names, image
 * names and backup ids are checked (name_check, chain_id_is_valid) before
 * they touch a path.  Nothing here prints or exits; every failure returns
 * -1 or NULL with set_error.
 *
 * Errors that name a file: "manifest '/r/vms/web01/ID/manifest.json':
 * 'position' must be a positive integer". */

#define CHAIN_REPO_FORMAT "knib-repository"
#define CHAIN_REPO_VERSION 1

/* Backup ids sort by time: "20261123T203015Z" (UTC), and "-2", "-3", ...
 * up to "-9999" for further backups of the same VM in the same second.
 * Size of a buffer that holds any id with its NUL. */
#define CHAIN_ID_MAX 24

/* How an image's hash is computed.  A backup's images get the segmented
 * digest (common/digest.h), computed while they are written; manifests
 * of version 1 record xxh3-128 of the whole file, and still verify. */
enum chain_hash_kind {
  CHAIN_HASH_SEGMENTS, /* "xxh3-128-segments": the default */
  CHAIN_HASH_WHOLE,    /* "xxh3-128" */
};

/* A hex xxh3-128 hash, without its NUL. */
#define CHAIN_HASH_HEX_LEN 32

/* Size of a buffer for an RFC 3339 UTC time "2026-11-23T20:30:15Z". */
#define CHAIN_TIME_MAX 32

/* Bitmaps that knib adds are named this followed by the repository's id,
 * "-" and the backup id ("knib-<id>" in a repository made before ids). */
#define CHAIN_BITMAP_PREFIX "knib-"

/* A repository id: random lowercase hex digits in knib-repo.json. */
#define CHAIN_REPO_ID_LEN 16

/* Size of a buffer for a bitmap name, with its NUL. */
#define CHAIN_BITMAP_MAX                                                       \
  (sizeof CHAIN_BITMAP_PREFIX + CHAIN_REPO_ID_LEN + 1 + CHAIN_ID_MAX)

DEFINE_VECTOR_TYPE (chain_string_vector, char *)

/* Free the strings and the vector (a caller-owned vector). */
void chain_string_vector_release (chain_string_vector *v);

/* Append line (taken, may be NULL) to notes; dropped when out of memory. */
void chain_note_add (chain_string_vector *notes, char *line);

/* ---- Backup ids and times ---- */

bool chain_id_is_valid (const char *id);

/* Order of two valid ids: <0, 0, >0 (time first, then the suffix). */
int chain_id_compare (const char *a, const char *b);

/* "2026-11-23T20:30:15Z" from seconds since the epoch. */
void chain_time_format (int64_t t, char out[CHAIN_TIME_MAX]);

/* The reverse; only that exact form is accepted.  -1 (EINVAL) if not. */
int chain_time_parse (const char *s, int64_t *t)
  __attribute__ ((warn_unused_result));

/* ---- Manifests ---- */

enum chain_kind {
  CHAIN_KIND_FULL,        /* starts a chain */
  CHAIN_KIND_INCREMENTAL, /* depends on its parent */
  CHAIN_KIND_ISOLATED,    /* a full that is no part of any chain */
};

enum chain_state {
  CHAIN_STATE_COMPLETE,
  CHAIN_STATE_REMOVED, /* deleted, files kept while children need them */
};

enum chain_compression {
  CHAIN_COMPRESSION_NONE,
  CHAIN_COMPRESSION_ZLIB,
  CHAIN_COMPRESSION_ZSTD,
};

const char *chain_kind_name (enum chain_kind kind);
const char *chain_state_name (enum chain_state state);
const char *chain_compression_name (enum chain_compression c);
/* Parse "none", "zlib", "zstd".  -1 with set_error if not. */
int chain_compression_parse (const char *s, enum chain_compression *c)
  __attribute__ ((warn_unused_result));

/* One disk of a backup.  Strings are owned by the struct. */
struct chain_disk {
  char *name;  /* the guest device: "vda" */
  char *image; /* file name in the backup's directory: "vda.qcow2" */
  /* CHAIN_KIND_FULL: a standalone image; CHAIN_KIND_INCREMENTAL: an
   * overlay whose backing file is the parent backup's image of the same
   * disk.  An incremental backup may hold full disks (a new disk, a
   * missing bitmap); a full or isolated backup holds only full disks. */
  enum chain_kind kind;
  uint64_t virtual_size;
  uint32_t cluster_size; /* a power of two, 512 to 2 MiB */
  char *bitmap;          /* the dirty bitmap started with it:
                            "knib-<repository id>-<id>" or "knib-<id>" */
  uint64_t bytes_read;
  uint64_t bytes_written;
  uint64_t extents;
  char hash[CHAIN_HASH_HEX_LEN + 1]; /* the image's hash, lowercase hex */
  enum chain_hash_kind hash_kind;    /* which hash */
  enum chain_compression compression;
  /* "knib compress" rewrote the image: its size before (bytes_written is
   * the size after); 0 when the image is as the backup wrote it. */
  uint64_t bytes_before_compression;
  char *reason; /* why this disk is full (free text), or NULL */
};

DEFINE_VECTOR_TYPE (chain_disk_vector, struct chain_disk)

/* The last boot validation of a backup ("knib validate"), optional in
 * the manifest ("validation"): manifests without it stay readable. */
enum chain_check {
  CHAIN_CHECK_PASSED,
  CHAIN_CHECK_FAILED,
  CHAIN_CHECK_SKIPPED, /* a step that did not run */
};

const char *chain_check_name (enum chain_check c);

/* One step: "boot", "screenshot", "command". */
struct chain_validation_step {
  char *name;
  enum chain_check status;
  double seconds;
  char *message; /* what it found or why it failed (a line), or NULL */
};

DEFINE_VECTOR_TYPE (chain_validation_step_vector, struct chain_validation_step)

/* The files a validation keeps beside the backup's images. */
#define CHAIN_VALIDATION_DIR "validation"
#define CHAIN_VALIDATION_SCREENSHOT "screen.png"
#define CHAIN_VALIDATION_CONSOLE "console.log"

struct chain_validation {
  enum chain_check status; /* passed when every step passed (or skipped) */
  int64_t time;            /* when it started: seconds since the epoch */
  double seconds;          /* the whole run */
  /* Seconds from power-on to the guest agent's first answer: the
   * backup's measured recovery time; < 0 when it never answered. */
  double boot_seconds;
  char *accel; /* "kvm" or "tcg" */
  chain_validation_step_vector steps;
  /* Relative to the backup's directory ("validation/screen.png"), or
   * NULL when not kept. */
  char *screenshot;
  char *console;
};

void chain_validation_free (struct chain_validation *v);

/* A deep copy, or NULL with set_error. */
struct chain_validation *
chain_validation_copy (const struct chain_validation *v)
  __attribute__ ((warn_unused_result));

struct chain_manifest {
  char id[CHAIN_ID_MAX];
  char *vm;
  char parent[CHAIN_ID_MAX]; /* "" when none (full, isolated) */
  char chain[CHAIN_ID_MAX];  /* the chain's full backup (its own id when full
                                or isolated) */
  int64_t position;          /* 1 for the full, parent's + 1 for the others */
  enum chain_kind kind;
  enum chain_state state;
  int64_t created;  /* seconds since the epoch */
  int64_t finished; /* >= created */
  char *reason;     /* why this kind (free text) */
  chain_disk_vector disks;
  struct chain_validation *validation; /* NULL: never validated */
};

DEFINE_VECTOR_TYPE (chain_manifest_vector, struct chain_manifest *)

/* Free the manifests and the vector (a caller-owned vector). */
void chain_manifest_vector_release (chain_manifest_vector *v);

struct chain_manifest *chain_manifest_new (void)
  __attribute__ ((warn_unused_result));
void chain_manifest_free (struct chain_manifest *m);

/* Append a copy of disk to m->disks.  -1 with set_error on ENOMEM. */
int chain_manifest_add_disk (struct chain_manifest *m,
                             const struct chain_disk *disk)
  __attribute__ ((warn_unused_result));

/* The disk of that name, or NULL. */
const struct chain_disk *
chain_manifest_find_disk (const struct chain_manifest *m, const char *name);

/* Every rule a manifest must follow: names, ids, kinds against parent and
 * position, sizes, hashes, times.  -1 with set_error (without any
 * "manifest 'PATH'" prefix) when one is broken. */
int chain_manifest_validate (const struct chain_manifest *m)
  __attribute__ ((warn_unused_result));

/* Read and fully validate a manifest.  Unknown keys, missing keys and
 * wrong types are errors, each "manifest 'PATH': ...". */
struct chain_manifest *chain_manifest_load (const char *path)
  __attribute__ ((warn_unused_result));

/* Validate, then replace path atomically: write a temporary file in the
 * same directory, fsync it, rename it over path, fsync the directory. */
int chain_manifest_commit (const struct chain_manifest *m, const char *path)
  __attribute__ ((warn_unused_result));

/* ---- The repository ---- */

struct chain_repo;

/* Seconds since the epoch (tests inject their own clock). */
typedef int64_t (*chain_clock_fn) (void *opaque);

/* Open the repository at path.  With create, a missing directory is made
 * (0700; its parent must exist) and an empty one becomes a repository;
 * an existing repository is opened as it is.  A directory that is not
 * empty and not a repository is never touched.  A knib-repo.json of
 * another format or version, or a corrupt one, is refused. */
struct chain_repo *chain_repo_open (const char *path, bool create)
  __attribute__ ((warn_unused_result));

/* NULL is a no-op.  Locks taken on the repository must be freed first. */
void chain_repo_free (struct chain_repo *repo);

const char *chain_repo_path (const struct chain_repo *repo);

/* The repository's id ("" for a repository made before ids, until
 * chain_repo_ensure_id gives it one). */
const char *chain_repo_id (const struct chain_repo *repo);

/* Give a repository made before ids its random id (knib-repo.json
 * rewritten under a lock of the repository's directory).  Backups do it
 * first: the bitmaps they add carry it. */
int chain_repo_ensure_id (struct chain_repo *repo)
  __attribute__ ((warn_unused_result));

/* The group the repository is shared with for reading (knib-repo.json's
 * "group"), or NULL: private (directories 0700, files 0600). */
const char *chain_repo_group (const struct chain_repo *repo);

/* Share the repository for reading with group (directories 2750 and files
 * 0640 of that group, also for what later runs write), or make it private
 * again (group NULL or ""): recorded in knib-repo.json and applied to
 * everything in the repository now. */
int chain_repo_share (struct chain_repo *repo, const char *group)
  __attribute__ ((warn_unused_result));

/* The bitmap that backup id of this repository adds:
 * "knib-<repository id>-<id>" ("knib-<id>" without a repository id). */
void chain_bitmap_name (const struct chain_repo *repo, const char *id,
                        char name[CHAIN_BITMAP_MAX]);

/* Whether a bitmap of vm's disks is this repository's to remove or merge:
 * "knib-<its id>-..."; or "knib-<backup id>" of a backup of the VM that
 * the repository holds (as older versions named them, also removed
 * backups); in a repository without an id, any "knib-" bitmap that does
 * not carry another repository's id.  Another repository's bitmaps are
 * never touched. */
bool chain_bitmap_is_ours (struct chain_repo *repo, const char *vm,
                           const char *name);

/* Replace the clock used for backup ids and times (NULL: the real one). */
void chain_repo_set_clock (struct chain_repo *repo, chain_clock_fn fn,
                           void *opaque);

/* The VMs with a directory in the repository, sorted by name.  Entries
 * whose names are not valid VM names are skipped. */
int chain_vm_list (struct chain_repo *repo, chain_string_vector *vms)
  __attribute__ ((warn_unused_result));

/* ---- Locks ---- */

/* One lock per VM: an fcntl open file description lock (F_OFD_SETLK) on
 * vms/<vm>/.lock, which NFSv4 and CephFS honour across hosts.  Two
 * chain_lock_new calls conflict even in one process.  Exclusive for
 * backup, delete and restore in place; shared for readers that must not
 * see a delete (restore, verify).  Listing needs no lock: manifests are
 * replaced atomically and partial backups are not listed. */
enum chain_lock_mode {
  CHAIN_LOCK_SHARED,
  CHAIN_LOCK_EXCLUSIVE,
};

struct chain_lock;

/* Lock vm for operation ("backup", "delete", "restore", ...: recorded with
 * the pid and host of an exclusive holder so that the loser can name
 * them).  An exclusive lock makes the VM's directory when it is missing;
 * a shared one fails with ENOENT.  timeout_ms 0 tries once, > 0 retries
 * until it passes, -1 waits for ever.  A conflict fails with errno
 * EWOULDBLOCK: "vm 'web01' is locked by another knib (pid 1234): a backup
 * is running; wait for it to finish".  The repository must outlive the
 * lock. */
struct chain_lock *chain_lock_new (struct chain_repo *repo, const char *vm,
                                   enum chain_lock_mode mode,
                                   const char *operation, int timeout_ms)
  __attribute__ ((warn_unused_result));

/* Release and free.  NULL is a no-op. */
void chain_lock_free (struct chain_lock *lock);

/* ---- What knib knows of a VM (vm.json) ---- */

struct chain_vm_disk {
  char *name;
  uint64_t virtual_size;
};

DEFINE_VECTOR_TYPE (chain_vm_disk_vector, struct chain_vm_disk)

struct chain_vm {
  char *name;
  char *uuid;                 /* NULL when unknown */
  chain_vm_disk_vector disks; /* as of the last backup */
  char *definition;           /* last known definition (domain XML), or
                                  NULL */
  int64_t updated;            /* when this was written */
  char *chain_end_reason;     /* the chain was ended for this reason ... */
  char chain_end_after[CHAIN_ID_MAX]; /* ... when this was its latest
                                         backup ("": none) */
  /* The VM's disks were restored in place from this backup ("": never)
   * when restored_after was the VM's latest chained backup: until a
   * newer backup exists, the restored one is the chain's tip. */
  char restored_from[CHAIN_ID_MAX];
  char restored_after[CHAIN_ID_MAX];
};

/* NULL with errno ENOENT (and set_error) when the VM has no vm.json. */
struct chain_vm *chain_vm_load (struct chain_repo *repo, const char *vm)
  __attribute__ ((warn_unused_result));
void chain_vm_free (struct chain_vm *vm);

/* End the VM's current chain: its next backup is full whatever the chain
 * size, with "the chain was ended: REASON" ("restored in place from
 * backup X", "disk vdb was migrated").  Needs the exclusive lock. */
int chain_vm_end_chain (struct chain_lock *lock, const char *reason)
  __attribute__ ((warn_unused_result));

/* Record that the VM's disks now hold backup id's point in time (a
 * restore in place, each disk with the empty bitmap knib-<id>): the next
 * backup is an incremental of id, so the chain becomes a tree (id gets a
 * second child).  Clears an ended chain.  Needs the exclusive lock. */
int chain_vm_record_restore (struct chain_lock *lock, const char *id)
  __attribute__ ((warn_unused_result));

/* ---- Listing ---- */

/* The backups of vm, sorted by id (none when the VM has no directory).
 * Backups being written (<id>.partial) are not listed.  A backup whose
 * manifest is missing or corrupt is never skipped silently: with
 * problems NULL it fails the listing (backups is left as it was);
 * otherwise its error is appended to problems and the listing goes on.
 * Backups are appended to what backups holds. */
int chain_backup_list (struct chain_repo *repo, const char *vm,
                       chain_manifest_vector *backups,
                       chain_string_vector *problems)
  __attribute__ ((warn_unused_result));

/* The backup id of vm, or with vm NULL of whichever VM has it (an id
 * that two VMs have is an error that asks for the VM). */
struct chain_manifest *chain_backup_find (struct chain_repo *repo,
                                          const char *vm, const char *id)
  __attribute__ ((warn_unused_result));

/* The chain of backup id of vm: its full backup first, the backup itself
 * last, each link checked (the parent exists, is of the same chain, one
 * position before).  A missing parent is an error that says the chain is
 * broken.  An isolated or full backup is a chain of one. */
int chain_backup_chain (struct chain_repo *repo, const char *vm, const char *id,
                        chain_manifest_vector *chain)
  __attribute__ ((warn_unused_result));

/* The path of disk's image in backup m (a committed backup). */
char *chain_backup_image_path (struct chain_repo *repo,
                               const struct chain_manifest *m,
                               const struct chain_disk *disk)
  __attribute__ ((warn_unused_result));

/* The backup the VM's next backup continues from (pure): the latest
 * backup that is not isolated, unless the VM was restored in place since
 * (vm may be NULL): then the restored backup, while it exists.  Chains
 * are trees: the tip is on the branch the VM is on.  NULL when none. */
const struct chain_manifest *chain_tip (const chain_manifest_vector *backups,
                                        const struct chain_vm *vm);

/* The tip is the backup the VM was restored from, with no backup since:
 * the VM's disks hold only its bitmap (none of the backup before it). */
bool chain_tip_is_restore (const chain_manifest_vector *backups,
                           const struct chain_vm *vm);

/* Where backup id stands to the VM's branch (pure, on all the VM's
 * backups): the tip, on the path from the tip up to its full, or off
 * it (an old branch, an isolated backup). */
enum chain_branch {
  CHAIN_BRANCH_OFF,
  CHAIN_BRANCH_ON,
  CHAIN_BRANCH_TIP,
};

enum chain_branch chain_branch_of (const chain_manifest_vector *backups,
                                   const struct chain_vm *vm, const char *id);

/* "-", "on", "tip". */
const char *chain_branch_name (enum chain_branch b);

/* A file that the backup stored beside its images
 * (chain_backup_write_file: "domain.xml"), NUL-terminated; NULL with
 * errno ENOENT when it has none. */
char *chain_backup_read_file (struct chain_repo *repo,
                              const struct chain_manifest *m, const char *name)
  __attribute__ ((warn_unused_result));

/* ---- Deciding full or incremental ---- */

enum chain_mode {
  CHAIN_MODE_AUTO,        /* incremental when the chain rules allow */
  CHAIN_MODE_FULL,        /* a full backup, starting a new chain */
  CHAIN_MODE_INCREMENTAL, /* incremental, or fail saying why not */
  CHAIN_MODE_ISOLATED,    /* a full that no chain counts or depends on */
};

struct chain_decision {
  enum chain_kind kind;
  char parent[CHAIN_ID_MAX]; /* incremental: the parent; else "" */
  char chain[CHAIN_ID_MAX];  /* incremental: the chain; else "" (the new
                                backup's own id) */
  int64_t position;          /* in the chain: 1 for full or isolated */
  char *reason;              /* human text: "first backup of this VM" */
};

void chain_decision_release (struct chain_decision *d);

/* The chain rules, as a pure function of the VM's backups (any order),
 * the chain size (1: every backup full; < 1: unlimited) and the mode:
 * the parent is the latest backup that is not isolated, whatever its
 * state (a deleted chain tip is kept, state removed, exactly so that it
 * can stay the parent); the next backup is full when there is none, when
 * the chain was ended after it (vm, may be NULL), or when its chain
 * already holds chain_size backups.  Isolated backups never count and are
 * never parents.  With CHAIN_MODE_INCREMENTAL a full result is an error "an
 * incremental backup is not possible: REASON".  The QMP side may still
 * turn an incremental decision (or one of its disks) into a full one
 * (bitmap missing, disk resized) before chain_backup_begin. */
int chain_decide (const chain_manifest_vector *backups, int64_t chain_size,
                  enum chain_mode mode, const struct chain_vm *vm,
                  struct chain_decision *d)
  __attribute__ ((warn_unused_result));

/* chain_decide on what the repository holds for vm (its backups and
 * vm.json).  Corrupt manifests go to problems (or fail, when NULL). */
int chain_vm_decide (struct chain_repo *repo, const char *vm,
                     int64_t chain_size, enum chain_mode mode,
                     struct chain_decision *d, chain_string_vector *problems)
  __attribute__ ((warn_unused_result));

/* ---- Writing a backup ----
 *
 *   b = chain_backup_begin (repo, lock, &decision);   makes <id>.partial/
 *   for each disk:
 *     path = chain_backup_disk_path (b, "vda");       write the image there
 *     chain_backup_backing_file (b, "vda", &backing); (incremental disks)
 *     chain_backup_add_disk (b, &disk);               what was written
 *   chain_backup_commit (b)  or  chain_backup_abort (b)
 *   chain_backup_free (b);
 *
 * chain_backup_commit, in this order:
 *   1. checks the disks, opens each image, computes its hash when the
 *      writer gave none, and fsyncs it; fsyncs <id>.partial/;
 *   2. replaces vm.json atomically (disks, definition, time);
 *   3. writes <id>.partial/manifest.json atomically (temporary file,
 *      fsync, rename, fsync <id>.partial/);
 *   4. renames <id>.partial/ to <id>/ and fsyncs vms/<vm>/.
 * The rename in step 4 is the commit point: a crash before it leaves
 * <id>.partial/ (with or without a manifest), which is never listed and
 * which chain_repo_recover_vm removes, so the backup does not exist; a
 * crash after it leaves a complete backup whose images and manifest are
 * already on disk.  vm.json (step 2) only describes the VM, so it may
 * run ahead of the backups.  Temporary files left by a crash in an
 * atomic replace are never read and recovery removes them too. */

struct chain_backup;

/* Start a backup of the VM that lock holds exclusively (the lock must
 * stay held until commit or abort).  The id sorts after every backup of
 * the VM (even when the clock went back).  For an incremental decision
 * the parent must be the VM's latest non-isolated backup (complete, or
 * the removed chain tip that a delete kept for this). */
struct chain_backup *chain_backup_begin (struct chain_repo *repo,
                                         struct chain_lock *lock,
                                         const struct chain_decision *d)
  __attribute__ ((warn_unused_result));

/* Abort the backup unless it was committed or aborted, then free.  The
 * last error is left alone.  NULL is a no-op. */
void chain_backup_free (struct chain_backup *b);

const char *chain_backup_id (const struct chain_backup *b);

/* The name of the bitmap that this backup starts (chain_bitmap_name). */
const char *chain_backup_bitmap (const struct chain_backup *b);

/* The manifest as it stands (borrowed). */
const struct chain_manifest *
chain_backup_manifest (const struct chain_backup *b);

/* Where the writer writes disk's image: <id>.partial/<disk>.qcow2. */
char *chain_backup_disk_path (struct chain_backup *b, const char *disk)
  __attribute__ ((warn_unused_result));

/* The backing file name an incremental image of disk records: relative,
 * "../<parent-id>/<image>", so that the repository can move.  *backing
 * is NULL for a backup without a parent.  Fails (ENOENT) when the parent
 * has no such disk: that disk must be full. */
int chain_backup_backing_file (struct chain_backup *b, const char *disk,
                               char **backing)
  __attribute__ ((warn_unused_result));

/* Record a disk that was written (copied).  image NULL means
 * "<name>.qcow2"; an empty hash is computed at commit; bitmap NULL means
 * chain_backup_bitmap. */
int chain_backup_add_disk (struct chain_backup *b,
                           const struct chain_disk *disk)
  __attribute__ ((warn_unused_result));

/* What to store in vm.json at commit (copied; NULL keeps what is there). */
int chain_backup_set_vm_info (struct chain_backup *b, const char *uuid,
                              const char *definition)
  __attribute__ ((warn_unused_result));

/* Write a file of the backup beside its images, <id>.partial/<name>
 * (the VM's definition, "domain.xml"): name is a valid name and not an
 * image's; the file is synced now, its directory at commit. */
int chain_backup_write_file (struct chain_backup *b, const char *name,
                             const char *data, size_t len)
  __attribute__ ((warn_unused_result));

/* Commit (see above).  An incremental backup none of whose disks is
 * incremental becomes a full backup starting its own chain.  After a
 * failure before the commit point the caller aborts; a failure after it
 * (fsync of vms/<vm>/) still leaves the backup committed. */
int chain_backup_commit (struct chain_backup *b)
  __attribute__ ((warn_unused_result));

/* Remove <id>.partial/ and everything in it. */
int chain_backup_abort (struct chain_backup *b)
  __attribute__ ((warn_unused_result));

/* ---- Deleting, retention, merging ----
 *
 * A backup is live when it is complete, or when it is the VM's chain
 * tip: its latest non-isolated backup (whatever its state), unless the
 * chain was ended after it.  The tip's bitmap is the one recording in
 * QEMU; the frozen bitmap of the backup before it (its predecessor: its
 * parent, or for a full the latest non-isolated backup before it) is
 * kept beside it, so that deleting the tip can hand the tracking back.
 *
 * Deleting backup X (chain_delete):
 *   - a live backup depends on X (X is an ancestor of it): X is marked
 *     removed (state removed, files kept, hidden from listings);
 *   - X is the tip: when its predecessor P is complete and not deleted
 *     in the same call, X's files go and the next backup's recovery
 *     merges X's bitmap into P's, so that it can be an incremental of
 *     P; otherwise X is marked removed and stays the tip (the next
 *     backup is an incremental of it);
 *   - otherwise X goes with its files, and so does every removed backup
 *     that no live backup needs any more (X's removed ancestors).
 * Files go newest first, so an incremental never loses its parent
 * before itself, even when knib is killed half-way. */

enum chain_delete_action {
  CHAIN_DELETE_FILES, /* the backup goes: its manifest and images */
  CHAIN_DELETE_MARK,  /* marked removed: its files stay */
  CHAIN_DELETE_KEEP,  /* removed already and still needed: unchanged */
};

enum chain_delete_reason {
  CHAIN_DELETE_NOTHING_NEEDS,    /* FILES: no live backup needs it */
  CHAIN_DELETE_TIP_HANDED_OVER,  /* FILES: it was the tip; other (its
                                    predecessor) takes over */
  CHAIN_DELETE_UNNEEDED,         /* FILES, not asked for: it was removed
                                    and no live backup needs it any more */
  CHAIN_DELETE_NEEDED,           /* MARK, KEEP: live backup other depends
                                    on it */
  CHAIN_DELETE_TIP_FIRST,        /* MARK, KEEP: the tip, with no backup
                                    before it to take over */
  CHAIN_DELETE_TIP_PRED_REMOVED, /* MARK, KEEP: the tip, whose predecessor
                                    other was deleted already */
  CHAIN_DELETE_TIP_PRED_GOES,    /* MARK, KEEP: the tip, whose predecessor
                                    other is deleted in the same call */
};

struct chain_delete_step {
  char id[CHAIN_ID_MAX];
  enum chain_delete_action action;
  enum chain_delete_reason reason;
  bool asked;               /* named by the caller (else a consequence) */
  char other[CHAIN_ID_MAX]; /* see the reasons; "" when none */
};

DEFINE_VECTOR_TYPE (chain_delete_step_vector, struct chain_delete_step)

/* What deleting ids (n of them; repeats count once) does to the VM's
 * backups (any order, every state) given vm.json (vm, may be NULL):
 * one step per id in the order given, then one per backup that goes
 * along (newest first).  Pure.  An id that is not among backups is an
 * error (ENOENT) and nothing is planned; n 0 plans only the removed
 * backups that nothing needs any more. */
int chain_delete_plan (const chain_manifest_vector *backups,
                       const struct chain_vm *vm, const char *const *ids,
                       size_t n, chain_delete_step_vector *steps)
  __attribute__ ((warn_unused_result));

/* "backup ID: deleted" and the like, one line without newline (the
 * caller frees it), or NULL on ENOMEM. */
char *chain_delete_step_describe (const struct chain_delete_step *s)
  __attribute__ ((warn_unused_result));

/* Plan as chain_delete_plan on what the repository holds for vm, then
 * (unless dry_run) do it under the VM's exclusive lock ("delete"),
 * which fails at once while a backup, restore, verify, merge or
 * compression holds the VM.  A backup whose manifest cannot be read
 * fails the delete (what depends on it is unknown).  The steps are
 * appended to steps, also those done before a failure. */
int chain_delete (struct chain_repo *repo, const char *vm,
                  const char *const *ids, size_t n, bool dry_run,
                  chain_delete_step_vector *steps)
  __attribute__ ((warn_unused_result));

/* Retention: which complete backups to keep.  The keep_last latest
 * backups; the latest backup of each of the keep_daily latest days (UTC)
 * that have backups; the latest of each of the keep_weekly latest weeks
 * (Monday to Sunday, UTC) that have backups. */
struct chain_prune_policy {
  int64_t keep_last;
  int64_t keep_daily;
  int64_t keep_weekly;
};

/* The complete backups that the policy does not keep, oldest first, as
 * ids appended to doomed (pure; removed backups are not listed). */
int chain_prune_select (const chain_manifest_vector *backups,
                        const struct chain_prune_policy *p,
                        chain_string_vector *doomed)
  __attribute__ ((warn_unused_result));

/* Select under the VM's exclusive lock ("prune") and delete as
 * chain_delete does (backups that a kept one depends on are marked
 * removed, never taken from under it).  Nothing is changed with
 * dry_run. */
int chain_prune (struct chain_repo *repo, const char *vm,
                 const struct chain_prune_policy *p, bool dry_run,
                 chain_delete_step_vector *steps)
  __attribute__ ((warn_unused_result));

/* Merge backup id of vm (NULL: whichever VM has it) into standalone
 * images: under the VM's exclusive lock ("merge"), "qemu-img convert"
 * each incremental disk's image, which reads through its chain, into a
 * temporary file beside it (same cluster size and compression), fsync it
 * and hash it; once every disk is written rename each over its image.
 * Then the manifest says full, position 1, a chain of its own; its
 * descendants move to that chain (positions renumbered); and removed
 * backups that nothing needs any more are deleted (deleted gets their
 * steps).  The images read the same before and after, so the backups
 * that depend on it stay whole.  A merge that was interrupted is
 * finished by running it again.  One line per thing done goes to done. */
int chain_merge (struct chain_repo *repo, const char *vm, const char *id,
                 chain_string_vector *done, chain_delete_step_vector *deleted)
  __attribute__ ((warn_unused_result));

/* ---- Recovery ---- */

/* Remove what crashed backups and atomic replaces left behind in the
 * VM's directory: <id>.partial/ directories and .tmp-* files (also those
 * inside backup directories).  Needs the exclusive lock.  Appends one
 * line per removal to removed ("removed unfinished backup
 * '20261123T203015Z' of vm 'web01'"). */
int chain_repo_recover_vm (struct chain_lock *lock,
                           chain_string_vector *removed)
  __attribute__ ((warn_unused_result));

/* ---- Hashing ---- */

/* The hash of a file of kind, as 32 lowercase hex digits (the canonical,
 * big-endian form that "xxhsum -H2" prints). */
int chain_hash_file (const char *path, enum chain_hash_kind kind,
                     char hex[CHAIN_HASH_HEX_LEN + 1])
  __attribute__ ((warn_unused_result));

/* The manifest's name of the kind ("xxh3-128", "xxh3-128-segments"). */
const char *chain_hash_kind_name (enum chain_hash_kind kind);
/* Record the result of a boot validation in backup id of vm: load its
 * manifest afresh, set its validation (copied) and commit it.  The
 * caller holds the VM's shared lock (so no delete or merge rewrites the
 * manifest meanwhile); the last of two validations at once wins. */
int chain_backup_set_validation (struct chain_repo *repo, const char *vm,
                                 const char *id,
                                 const struct chain_validation *v)
  __attribute__ ((warn_unused_result));

/* The path of a file in backup m's directory: name is a valid name
 * (BACKUP_DEFINITION_FILE), or "validation/" and one. */
char *chain_backup_file_path (struct chain_repo *repo,
                              const struct chain_manifest *m, const char *name)
  __attribute__ ((warn_unused_result));

/* Store a file of the validation, <backup dir>/validation/<name>
 * (name a valid name), atomically (made 0600, the directory 0700); with
 * path not NULL *path gets where it is. */
int chain_backup_write_validation_file (struct chain_repo *repo,
                                        const struct chain_manifest *m,
                                        const char *name, const void *data,
                                        size_t len, char **path)
  __attribute__ ((warn_unused_result));

/* Remove that file, when it is there (a screenshot that a later
 * validation did not take again). */
int chain_backup_remove_validation_file (struct chain_repo *repo,
                                         const struct chain_manifest *m,
                                         const char *name)
  __attribute__ ((warn_unused_result));

/* ---- Reading backups: usage, links, verify, restore ---- */

/* Bytes that the images of backup m take on disk (allocated blocks).
 * A missing image is an error that names it. */
int chain_backup_disk_usage (struct chain_repo *repo,
                             const struct chain_manifest *m, uint64_t *bytes)
  __attribute__ ((warn_unused_result));

/* The backing file name that the qcow2 image at path records (*backing
 * NULL when it has none; the caller frees it). */
int chain_image_backing_file (const char *path, char **backing)
  __attribute__ ((warn_unused_result));

/* The backing file name that disk's image must record, given the
 * backup's parent (NULL when none): NULL for a full disk,
 * "../<parent-id>/<parent's image>" for an incremental one.  Fails when
 * the parent cannot back an incremental disk. */
int chain_disk_expected_backing (const struct chain_manifest *parent,
                                 const struct chain_disk *disk, char **backing)
  __attribute__ ((warn_unused_result));

/* One verified image or, with disk NULL, a problem of a whole backup (a
 * corrupt manifest, a broken chain).  Borrowed for the callback. */
struct chain_verify_item {
  const char *vm;
  const char *backup; /* its id; NULL when unknown (a corrupt entry) */
  const char *disk;   /* NULL: the backup itself */
  const char *path;   /* the image; NULL with disk NULL */
  const chain_string_vector *errors;   /* what is wrong (empty: nothing) */
  const chain_string_vector *warnings; /* harmless findings (leaks) */
};

typedef void (*chain_verify_fn) (const struct chain_verify_item *item,
                                 void *opaque);

struct chain_verify_summary {
  size_t backups;  /* backups whose images were checked */
  size_t images;   /* images checked */
  size_t ok;       /* images with neither errors nor warnings */
  size_t warnings; /* images with warnings only */
  size_t errors;   /* items (images or backups) with errors */
};

/* Verify backup id of vm (vm NULL: whichever VM has it) with every image
 * of its chain, or (id NULL) every complete backup of vm with its chain,
 * each image once, in chain order (full first).  The VM's shared lock
 * ("verify", lock_timeout_ms as for chain_lock_new) is held throughout,
 * so no delete runs meanwhile.  Each image must: exist; be qcow2 of the
 * manifest's virtual and cluster size; record as backing file what
 * chain_disk_expected_backing says (and format qcow2); hash to the
 * manifest's xxh3-128; pass "qemu-img check" (leaked clusters are a
 * warning, corruptions and failed checks errors).  fn is called once per
 * image (and per broken backup).  Returns 0 when the verification ran,
 * whatever it found (summary->errors == 0 means all is well); -1 with
 * set_error when it could not (no such backup or VM, the lock is taken,
 * qemu-img is missing). */
int chain_verify (struct chain_repo *repo, const char *vm, const char *id,
                  int lock_timeout_ms, chain_verify_fn fn, void *opaque,
                  struct chain_verify_summary *summary)
  __attribute__ ((warn_unused_result));

/* The quick part of a verify, for a chain (full first, as
 * chain_backup_chain gives it) about to be read: every image is there,
 * is the qcow2 image its manifest describes (size, cluster size) and
 * records the backing file the chain needs.  No hashes, no qemu-img
 * check.  What is wrong goes to errors (empty: all is well); -1 only on
 * ENOMEM. */
int chain_verify_structure (struct chain_repo *repo,
                            const chain_manifest_vector *chain,
                            chain_string_vector *errors)
  __attribute__ ((warn_unused_result));

enum chain_restore_format {
  CHAIN_RESTORE_QCOW2,
  CHAIN_RESTORE_RAW,
};

const char *chain_restore_format_name (enum chain_restore_format f);
/* "qcow2" or "raw".  -1 with set_error if not. */
int chain_restore_format_parse (const char *s, enum chain_restore_format *f)
  __attribute__ ((warn_unused_result));

/* Where a restore stands, for its progress callback. */
struct chain_restore_status {
  const char *vm;
  const char *backup;
  const char *disk;
  const char *path; /* where the disk goes */
  uint64_t virtual_size;
  uint64_t written; /* bytes allocated so far in the new file */
  bool done;        /* the disk is in place at path */
};

/* Return -1 to stop the restore (then nothing is left behind). */
typedef int (*chain_restore_fn) (const struct chain_restore_status *s,
                                 void *opaque);

/* A disk restored onto an image that exists (in place). */
struct chain_restore_target {
  const char *disk; /* the backup's disk */
  const char *path; /* the image it replaces */
  enum chain_restore_format format;
};

struct chain_restore_options {
  const char *vm;   /* NULL: whichever VM has the backup */
  const char *disk; /* NULL: every disk of the backup */
  /* One disk: the new file (or DIR/<disk>.<format> when to is a
   * directory).  Several: a directory (made 0700 when missing) that
   * receives DIR/<disk>.<format>. */
  const char *to;
  enum chain_restore_format format;
  bool force;                /* replace existing files (never directories) */
  bool no_verify;            /* skip the images' stored hashes */
  int lock_timeout_ms;       /* for the VM's shared lock */
  chain_restore_fn progress; /* NULL: none; called about twice a second
                                while a disk is written, and once when
                                it is in place */
  void *opaque;
  /* In place, instead of disk and to: each of the n_targets disks
   * replaces its image, which must exist (its owner and mode are kept);
   * force is implied.  The caller holds the VM's exclusive lock (lock),
   * and checks that no program uses the images. */
  const struct chain_restore_target *targets;
  size_t n_targets;
  struct chain_lock *lock; /* NULL: take the VM's shared lock */
  /* quick: each disk becomes a new qcow2 overlay whose backing file is
   * the backup's image in the repository (absolute path, format qcow2):
   * nothing is copied. */
  bool quick;
  /* Add the empty persistent dirty bitmap knib-<id> to each new qcow2
   * image, so that the VM's next backup can be an incremental of id. */
  bool bitmap;
  /* Restore a backup that was deleted (state removed; its files are
   * still there) instead of refusing it. */
  bool removed_ok;
  /* No "qemu-img measure" free-space check before writing. */
  bool no_space_check;
};

/* Restore the disks of backup id as they were at its point in time:
 * under the VM's shared lock ("restore"), check that the chain is whole
 * (every image there, linked as it must be, no external data file, and
 * unless no_verify each hashes to what its manifest records) and that
 * no target exists (unless force), then "qemu-img convert" each disk's
 * image, with its backing chain given explicitly, into a temporary file
 * beside its target,
 * and once all are written fsync each, rename it into place and fsync
 * the directory.  A failure or an interruption leaves no temporary
 * file.  The new files are 0600.  A removed backup is not restored. */
int chain_restore (struct chain_repo *repo, const char *id,
                   const struct chain_restore_options *o)
  __attribute__ ((warn_unused_result));

/* The options of a QEMU block node (JSON text) that opens disk name's
 * image in the last backup of chain read-only, with its backing chain
 * given explicitly, layer by layer (the repository's files; the full
 * has none): QEMU follows no backing file name that an image records.
 * For -blockdev, as the "backing" of an overlay. */
char *chain_disk_qemu_json (struct chain_repo *repo,
                            const chain_manifest_vector *chain,
                            const char *name)
  __attribute__ ((warn_unused_result));

/* A restore in place that was killed (under the VM's exclusive lock):
 * its record (vms/<vm>/restoring.json) names the images it restored
 * onto; the temporary files beside them (".knib-restore-<image>.XXXXXX")
 * are removed, and when it was killed while renaming them over the
 * images, a warning says which images hold the backup and which do not.
 * One line per thing done goes to done. */
int chain_restore_recover (struct chain_lock *lock, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* Is backup id of vm, or one it depends on, read by a disk that was
 * quick-restored from it and not yet consolidated, or by a running
 * validation?  1 and *who (a line
 * that names the VM, the disk and its image; the caller frees it), or 0.
 * Pins whose overlay no longer reads the repository (consolidated,
 * replaced, gone) count for nothing.  -1 with set_error. */
int chain_pin_find (struct chain_repo *repo, const char *vm, const char *id,
                    char **who) __attribute__ ((warn_unused_result));

/* The error for a pinned backup: "backup ID is pinned: WHO: ..." (errno
 * EBUSY), when chain_pin_find says so; 0 when it is not pinned. */
int chain_pin_refuse (struct chain_repo *repo, const char *vm, const char *id)
  __attribute__ ((warn_unused_result));

/* Record (under the VM's lock) that image, the quick-restored disk disk
 * of holder (a VM name), reads backup id. */
int chain_pin_add (struct chain_lock *lock, const char *id, const char *disk,
                   const char *holder, const char *image)
  __attribute__ ((warn_unused_result));

/* The same for a process that reads the backup through image (a
 * validation's overlay): the pin counts only while some process holds
 * an fcntl lock on the file owner (that process, which may be killed).
 * holder names it for messages ("a validation (knib pid 1234)").  The
 * VM's shared lock is enough. */
int chain_pin_add_owned (struct chain_lock *lock, const char *id,
                         const char *disk, const char *holder,
                         const char *image, const char *owner)
  __attribute__ ((warn_unused_result));

/* Drop the pins whose overlay no longer reads the repository (under the
 * VM's lock, shared or exclusive); one line per pin dropped goes to
 * done. */
int chain_pin_prune (struct chain_lock *lock, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* Compressing a backup after the fact, in two phases (compress.c). */

/* "knib compress" rewrites the uncompressed images of a backup as
 * compressed qcow2 images with the same backing file, holding the same
 * clusters: the clusters of the image itself are read (never through
 * its backing chain) and each one that shrinks is stored compressed.
 * Two phases, each callable on its own (knib compress --start-only and
 * --finalize-only run one each):
 *
 * start      Under the VM's exclusive lock, briefly: finish a finalize
 *            that was killed (see below), remove the partial copies of
 *            killed runs, and check the free space.  Then, without the
 *            lock (backups of the VM go on meanwhile), write each disk's
 *            copy beside its image as ".compressing-<image>.XXXXXX"
 *            (locked by its writer while it grows), fsync it, and under
 *            the shared lock rename it to ".compressed-<image>": ready.
 *            A failure, a timeout or an interruption removes the
 *            partial copy; the original is never touched.
 * finalize   Under the VM's exclusive lock (it waits for restores and
 *            verifies to finish, so none sees an image swapped under
 *            it): check every ready copy against its image (sizes,
 *            backing file), hash it, write the new manifest as a journal
 *            ".compress-journal.json", rename each ready copy over its
 *            image, fsync the directory, commit the manifest (sizes
 *            before and after, compression, hash) and remove the
 *            journal.  A finalize killed after the journal is rolled
 *            forward by the next start, finalize or chain_compress_recover.
 *
 * Images that are compressed already are left alone. */

typedef void (*chain_compress_progress_fn) (void *opaque, const char *disk,
                                            uint64_t done, uint64_t total);

struct chain_compress_options {
  const char *vm;                     /* NULL: whichever VM has the backup */
  enum chain_compression compression; /* CHAIN_COMPRESSION_ZLIB or _ZSTD */
  int level;                          /* 0: the library's default */
  unsigned threads;                   /* 0: one per core */
  int64_t rate_limit;                 /* MiB/s written; < 1: no limit */
  /* start: the free space of the backup's file system must be at least
   * min_free times the space the backup's images take, else nothing is
   * written (ENOSPC). */
  double min_free;
  /* Each phase (and chain_compress, both) fails with ETIMEDOUT after
   * this long, waiting for the lock included; <= 0: no limit. */
  int64_t timeout_ms;
  /* Set (by a signal handler) to stop: it fails cleanly (EINTR). */
  volatile sig_atomic_t *cancel;
  chain_compress_progress_fn progress; /* may be NULL */
  void *opaque;
};

struct chain_compress_disk {
  char *name;
  enum chain_compression before; /* what the image was */
  enum chain_compression after;  /* what it is (or will be, after start) */
  uint64_t bytes_before;         /* the image's size before */
  uint64_t bytes_after;          /* its size after (0: unchanged) */
  bool done;                     /* rewritten by this call */
  double seconds;
};

DEFINE_VECTOR_TYPE (chain_compress_disk_vector, struct chain_compress_disk)

struct chain_compress_result {
  char *vm;
  char id[CHAIN_ID_MAX];
  chain_compress_disk_vector disks;
  chain_string_vector notes; /* what recovery did, on the way */
};

void chain_compress_result_release (struct chain_compress_result *r);

/* The start phase for backup id (see above).  Fills r (release it
 * either way). */
int chain_compress_start (struct chain_repo *repo, const char *id,
                          const struct chain_compress_options *o,
                          struct chain_compress_result *r)
  __attribute__ ((warn_unused_result));

/* The finalize phase: swap the ready copies in.  Fails (ENOENT) when an
 * uncompressed disk has no ready copy (nothing is swapped then). */
int chain_compress_finalize (struct chain_repo *repo, const char *id,
                             const struct chain_compress_options *o,
                             struct chain_compress_result *r)
  __attribute__ ((warn_unused_result));

/* Both phases, within one timeout. */
int chain_compress (struct chain_repo *repo, const char *id,
                    const struct chain_compress_options *o,
                    struct chain_compress_result *r)
  __attribute__ ((warn_unused_result));

/* With the VM's exclusive lock: roll forward the finalizes that were
 * killed and remove the partial copies of killed runs, in every backup
 * of the VM; one line per repair goes to done. */
int chain_compress_recover (struct chain_lock *lock, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

/* ---- Disk-only snapshots (snapshot.c) ----
 *
 * REPO/vms/<vm>/snapshots.json records a VM's snapshots and, per disk,
 * the qcow2 layers knib keeps for them: the image the disk runs on (its
 * top) and every image that a snapshot or a layer above still needs.
 * Which layer is backed by which is read from the images themselves, so
 * the record never disagrees with the chain QEMU opens.  A snapshot's
 * layer is the image that was the disk's top when it was taken (read-only
 * since: the snapshot's state).  "pending" journals an operation that
 * touches images, so that the next run can finish or undo it. */

/* One disk's image. */
struct chain_snap_file {
  char *disk;
  char *file;
};
DEFINE_VECTOR_TYPE (chain_snap_file_vector, struct chain_snap_file)

struct chain_snap {
  char *name;
  int64_t time;
  bool removed;                  /* deleted, its layer still needed */
  chain_snap_file_vector layers; /* per disk, its layer */
};
DEFINE_VECTOR_TYPE (chain_snap_vector, struct chain_snap)

struct chain_snaps {
  chain_snap_vector snaps;       /* oldest first */
  chain_snap_file_vector tops;   /* per disk, the image it runs on */
  chain_snap_file_vector layers; /* per disk, every image kept (tops too) */
  char *pending;                 /* "create", "delete", "revert" or NULL */
  char *pending_name;            /* the snapshot it is about */
  chain_snap_file_vector pending_files; /* images it may have made */
};

/* An empty record when the VM has none.  Needs the VM's lock. */
int chain_snaps_load (struct chain_lock *lock, struct chain_snaps *s)
  __attribute__ ((warn_unused_result));
/* Replace snapshots.json atomically. */
int chain_snaps_commit (struct chain_lock *lock, const struct chain_snaps *s)
  __attribute__ ((warn_unused_result));
/* The same without a lock, for listing. */
int chain_snaps_read (struct chain_repo *repo, const char *vm,
                      struct chain_snaps *s)
  __attribute__ ((warn_unused_result));
void chain_snaps_release (struct chain_snaps *s);

struct chain_snap *chain_snaps_find (struct chain_snaps *s, const char *name);
/* The file of disk in v, or NULL. */
const char *chain_snap_file_get (const chain_snap_file_vector *v,
                                 const char *disk);
/* Set (replace) disk's file in v; copies both. */
int chain_snap_file_set (chain_snap_file_vector *v, const char *disk,
                         const char *file) __attribute__ ((warn_unused_result));
/* Add disk's file to v unless there already. */
int chain_snap_file_add (chain_snap_file_vector *v, const char *disk,
                         const char *file) __attribute__ ((warn_unused_result));
void chain_snap_file_vector_release (chain_snap_file_vector *v);
/* Append a snapshot (copies name; takes layers). */
int chain_snaps_add (struct chain_snaps *s, const char *name, int64_t time,
                     chain_snap_file_vector *layers)
  __attribute__ ((warn_unused_result));
/* Set or clear (op NULL) the journal; copies. */
int chain_snaps_set_pending (struct chain_snaps *s, const char *op,
                             const char *name,
                             const chain_snap_file_vector *files)
  __attribute__ ((warn_unused_result));

/* A layer of a disk and the file it is backed by (NULL: none, or an
 * image knib does not keep). */
struct chain_snap_layer {
  const char *file;
  const char *backing;
};

enum chain_snap_step_kind {
  CHAIN_SNAP_STEP_NONE,   /* every layer is needed */
  CHAIN_SNAP_STEP_REMOVE, /* nothing needs file: delete it */
  CHAIN_SNAP_STEP_MERGE,  /* only child needs file: pull file's data into
                             child (child's backing becomes file's) */
};

struct chain_snap_step {
  enum chain_snap_step_kind kind;
  const char *file;    /* borrowed from the layers given */
  const char *child;   /* MERGE */
  const char *backing; /* MERGE: file's backing, the child's new one */
};

/* The reference's rules for the layers of disk (n of them, with their
 * backing files): a layer that is neither the top nor the layer of a
 * snapshot that is not removed goes when no layer is backed by it, and
 * is merged into its child when one is; with two or more it stays (its
 * removed snapshots stay listed as removed).  Removals come first. */
void chain_snaps_plan (const struct chain_snaps *s, const char *disk,
                       const struct chain_snap_layer *layers, size_t n,
                       struct chain_snap_step *step);

/* After a step: forget file of disk, and removed snapshots whose layer
 * it was. */
void chain_snaps_forget (struct chain_snaps *s, const char *disk,
                         const char *file);

/* After a merge that kept the lower file (from's data committed into
 * to, which then holds what from held): from of disk is to, as the top,
 * a kept layer and a snapshot's layer. */
int chain_snaps_rename (struct chain_snaps *s, const char *disk,
                        const char *from, const char *to)
  __attribute__ ((warn_unused_result));

#endif
