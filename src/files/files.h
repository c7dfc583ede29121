/* SPDX-License-Identifier: Apache-2.0 */
/* files.h: files inside backups: list, find, copy out and compare, through libguestfs. */
#ifndef KNIB_FILES_H
#define KNIB_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "chain/chain.h"
#include "common/vector.h"

/* A backup point is opened in libguestfs's appliance, a small VM that
 * parses the guest's partitions, LVM and filesystems: the host kernel
 * never mounts a guest filesystem.  Each disk's image is added read-only
 * with its backing chain (format qcow2), so libguestfs puts its own
 * throwaway overlay on top: a dirty journal is replayed in the appliance
 * and the repository is only read.  One appliance per session, started
 * once by files_session_new; the VM's shared lock ("files") is held
 * while the session lives, so no delete runs meanwhile.
 *
 * Paths name a filesystem and a path in it:
 *   "vda:/dev/sda1:/etc/hosts"  disk, filesystem (as the appliance names
 *                               it), path
 *   "/dev/vg0/root:/etc/hosts"  filesystem and path
 *   "/etc/hosts"                the guest's own tree when inspection finds
 *                               an operating system (its mount points as
 *                               in its fstab), or the only filesystem */

/* How the appliance runs. */
enum files_accel {
  FILES_ACCEL_AUTO, /* KVM when /dev/kvm opens read-write and knib does
                       not itself run in a VM (no "hypervisor" CPU flag:
                       nested KVM hangs a real kernel); else TCG */
  FILES_ACCEL_KVM,
  FILES_ACCEL_TCG,
};

const char *files_accel_name (enum files_accel a);
/* "auto", "kvm", "tcg".  -1 with set_error if not. */
int files_accel_parse (const char *s, enum files_accel *a)
  __attribute__ ((warn_unused_result));
/* What auto means on this host (never FILES_ACCEL_AUTO); the others are
 * returned as they are.  *why says why (a static string). */
enum files_accel files_accel_resolve (enum files_accel a, const char **why);

struct files_session_options {
  const char *vm;   /* NULL: whichever VM has the backup */
  const char *disk; /* NULL: every disk of the backup */
  enum files_accel accel;
};

struct files_session;

/* Open backup id of the repository: check its chain, take the VM's
 * shared lock, add its disks to a new appliance and start it.  NULL with
 * set_error when any of that fails. */
struct files_session *files_session_new (struct chain_repo *repo,
                                         const char *id,
                                         const struct files_session_options *o)
  __attribute__ ((warn_unused_result));
void files_session_free (struct files_session *s);

/* Open two backups at once (their appliances start in parallel: two
 * points of one disk cannot share an appliance, their LVM volume groups
 * and XFS filesystems have the same ids).  Both or neither. */
int files_session_new_pair (struct chain_repo *repo, const char *id_a,
                            const char *id_b,
                            const struct files_session_options *o,
                            struct files_session **a, struct files_session **b)
  __attribute__ ((warn_unused_result));

/* The backup's manifest (borrowed). */
const struct chain_manifest *
files_session_manifest (const struct files_session *s);
/* The accel the appliance runs with (kvm or tcg). */
enum files_accel files_session_accel (const struct files_session *s);
/* Seconds the appliance took to start. */
double files_session_launch_seconds (const struct files_session *s);

/* One filesystem of the backup. */
struct files_fs {
  char *disk;       /* "vda"; NULL for an LVM volume spread over disks */
  char *device;     /* as the appliance names it: "/dev/sda1", "/dev/vg0/lv" */
  char *type;       /* "ext4", "xfs", ... */
  char *label;      /* "" when none */
  char *uuid;       /* "" when none */
  char *mountpoint; /* where the guest mounts it ("" when unknown) */
};

DEFINE_VECTOR_TYPE (files_fs_vector, struct files_fs)

void files_fs_release (struct files_fs *fs);
void files_fs_vector_release (files_fs_vector *v);

/* The filesystems of the session's disks (swap and unknown content left
 * out).  A disk that has none is an error that says what is on it:
 * "disk 'vda': no partition table, no filesystem". */
int files_session_filesystems (struct files_session *s, files_fs_vector *out)
  __attribute__ ((warn_unused_result));

/* ---- Entries ---- */

enum files_type {
  FILES_REGULAR,
  FILES_DIRECTORY,
  FILES_SYMLINK,
  FILES_CHARDEV,
  FILES_BLOCKDEV,
  FILES_FIFO,
  FILES_SOCKET,
};

/* "file", "directory", "symlink", "char", "block", "fifo", "socket". */
const char *files_type_name (enum files_type t);
/* ls -l's letter: '-', 'd', 'l', 'c', 'b', 'p', 's'. */
char files_type_letter (enum files_type t);

struct files_entry {
  char *path; /* in its filesystem: "/etc/hosts" */
  enum files_type type;
  uint32_t mode; /* permission bits with setuid/setgid/sticky */
  int64_t uid, gid;
  int64_t size;
  int64_t nlink;
  int64_t atime_sec, atime_nsec;
  int64_t mtime_sec, mtime_nsec;
  char *target; /* a symlink's target, else NULL */
};

DEFINE_VECTOR_TYPE (files_entry_vector, struct files_entry)

void files_entry_release (struct files_entry *e);
void files_entry_vector_release (files_entry_vector *v);

/* A resolved path: the filesystem it is in and the path there.  The
 * display form is how errors and listings name it. */
struct files_path {
  char *root;    /* where its tree is mounted in the appliance */
  char *path;    /* absolute, normalised, in the guest's tree or the fs */
  char *display; /* "vda:/dev/sda1:/etc/hosts" or "/etc/hosts" */
};

void files_path_release (struct files_path *p);

/* path made absolute, without "." or ".." components or repeated
 * slashes; ".." stops at the root ("/a/../../b" is "/b").  The caller
 * frees it; NULL with set_error on ENOMEM. */
char *files_normalise (const char *path) __attribute__ ((warn_unused_result));

/* Resolve a path as the user wrote it (see above) and mount what it
 * needs (read-only, in the appliance).  "." and ".." components are
 * normalised away; ".." never climbs above the root. */
int files_session_resolve (struct files_session *s, const char *spec,
                           struct files_path *out)
  __attribute__ ((warn_unused_result));

/* The entry at p.  A path that does not exist is an error (ENOENT) that
 * names its closest existing parent. */
int files_session_stat (struct files_session *s, const struct files_path *p,
                        struct files_entry *out)
  __attribute__ ((warn_unused_result));

/* The entries of directory p (not recursive unless recursive), sorted
 * by path, appended to out.  Paths are relative to p's filesystem. */
int files_session_list (struct files_session *s, const struct files_path *p,
                        bool recursive, files_entry_vector *out)
  __attribute__ ((warn_unused_result));

/* Hex sha256 of the regular file at path of p's filesystem (the caller
 * frees it). */
char *files_session_checksum (struct files_session *s,
                              const struct files_path *p, const char *path)
  __attribute__ ((warn_unused_result));

/* ---- A FUSE view ---- */

/* Mount every filesystem read-only in the appliance: "/dev/sda1" at
 * "/sda1", "/dev/vg0/lv0" at "/vg0-lv0", and the guest's own tree (when
 * inspection finds one operating system) at "/guest".  A filesystem
 * that does not mount is left out. */
int files_session_mount_all (struct files_session *s)
  __attribute__ ((warn_unused_result));

/* A stale FUSE mount at path (its server was killed: stat fails with
 * ENOTCONN) is detached; *cleaned says whether there was one. */
int files_clean_stale_mount (const char *path, bool *cleaned)
  __attribute__ ((warn_unused_result));

/* Show what files_session_mount_all mounts at mountpoint, read-only
 * (libguestfs mount_local), then serve it with files_session_mount_run
 * until it is unmounted (files_umount_local from another thread, or
 * fusermount -u). */
int files_session_mount_local (struct files_session *s, const char *mountpoint)
  __attribute__ ((warn_unused_result));
int files_session_mount_run (struct files_session *s)
  __attribute__ ((warn_unused_result));
/* Unmount the view at mountpoint (umount, or fusermount -u when not
 * root): files_session_mount_run then returns. */
int files_umount_local (const char *mountpoint)
  __attribute__ ((warn_unused_result));

/* ---- Copying out ---- */

struct files_get_status {
  const char *path; /* the entry being copied */
  uint64_t bytes;   /* bytes copied so far */
  uint64_t files;   /* entries done so far */
  uint64_t total_bytes;
  uint64_t total_files;
};

typedef void (*files_get_fn) (const struct files_get_status *st, void *opaque);

struct files_get_options {
  bool force;            /* replace files that exist (never a directory) */
  bool xattrs;           /* copy extended attributes (with ACLs) */
  files_get_fn progress; /* NULL: none */
  void *opaque;
};

/* Copy p (a file, symlink or a whole tree) into directory dirfd under
 * its base name, keeping mode, owner, times and symlinks (as symlinks,
 * never followed).  Everything is created relative to dirfd with
 * O_NOFOLLOW and without following a symlink on the host, so nothing is
 * written outside it.  An existing entry is an error (EEXIST) without
 * force.  Devices, fifos and sockets are made when the host allows. */
int files_session_get (struct files_session *s, const struct files_path *p,
                       int dirfd, const struct files_get_options *o)
  __attribute__ ((warn_unused_result));

/* A tar archive of directory p (names relative to it, numeric owners;
 * with xattrs, extended attributes and ACLs) written to fd. */
int files_session_tar (struct files_session *s, const struct files_path *p,
                       int fd, bool xattrs)
  __attribute__ ((warn_unused_result));

/* A tar archive of several paths, each under its base name (files,
 * symlinks or trees; numeric owners; with xattrs, extended attributes
 * and ACLs) written to fd.  They are copied out as files_session_get
 * does into a private directory in /var/tmp first, then archived by
 * GNU tar; two paths with the same base name are an error. */
int files_session_tar_paths (struct files_session *s,
                             const struct files_path *ps, size_t n, int fd,
                             bool xattrs) __attribute__ ((warn_unused_result));

/* ---- Putting a file back into a running VM ---- */

/* Run one guest agent command (args may be NULL, stolen); *result (if
 * not NULL) gets a new reference to its "return" value.  -1 with
 * set_error, whose message carries the agent's own error text.  The
 * caller supplies it: the agent's socket, or libvirt's channel. */
typedef int (*files_agent_fn) (void *opaque, const char *command, json_t *args,
                               json_t **result);

struct files_restore_options {
  files_agent_fn agent;
  void *opaque;
  files_get_fn progress; /* NULL: none */
  void *progress_opaque;
};

/* The agent answers, allows what a restore needs (guest-file-open,
 * -write, -close, guest-exec, guest-exec-status) and the guest's
 * filesystems are not frozen; -1 with set_error saying which not. */
int files_guest_check (const struct files_restore_options *o)
  __attribute__ ((warn_unused_result));

/* 1 when path exists in the guest, 0 when not, -1 with set_error. */
int files_guest_exists (const struct files_restore_options *o, const char *path)
  __attribute__ ((warn_unused_result));

/* Put the regular file p into the guest at target (absolute): its bytes
 * in chunks of at most 256 KiB to a temporary name in target's
 * directory, then the backup's mode, owner and mtime (chown, chmod,
 * touch through guest-exec), then a rename over target, which is
 * replaced when it exists (the caller checks first).  The guest never
 * sees a partial file; on failure it keeps its old one and the error
 * says so. */
int files_session_restore (struct files_session *s, const struct files_path *p,
                           const char *target,
                           const struct files_restore_options *o)
  __attribute__ ((warn_unused_result));

/* ---- Comparing ---- */

enum files_change {
  FILES_ADDED,
  FILES_REMOVED,
  FILES_CHANGED,
};

const char *files_change_name (enum files_change c);

/* What differs in a changed entry. */
enum {
  FILES_DIFF_TYPE = 1u << 0,
  FILES_DIFF_SIZE = 1u << 1,
  FILES_DIFF_MODE = 1u << 2,
  FILES_DIFF_OWNER = 1u << 3,
  FILES_DIFF_MTIME = 1u << 4,
  FILES_DIFF_TARGET = 1u << 5,
  FILES_DIFF_CONTENT = 1u << 6,
};

struct files_diff_item {
  enum files_change change;
  const struct files_entry *a; /* NULL when added */
  const struct files_entry *b; /* NULL when removed */
  unsigned what;               /* FILES_DIFF_* for a change */
};

DEFINE_VECTOR_TYPE (files_diff_vector, struct files_diff_item)

/* Compare two listings, each sorted by path (pure; items borrow the
 * entries).  Only metadata: content is compared by the caller. */
int files_diff (const files_entry_vector *a, const files_entry_vector *b,
                files_diff_vector *out) __attribute__ ((warn_unused_result));

/* ---- Exporting a disk over NBD ---- */

struct files_export_options {
  const char *vm;        /* NULL: whichever VM has the backup */
  const char *disk;      /* NULL: the backup's only disk */
  const char *socket;    /* a unix socket to serve on, or */
  const char *port;      /* a TCP port ... */
  const char *bind;      /* ... on this address (NULL: all) */
  const char *tls_creds; /* a directory with ca-cert.pem, server-cert.pem
                            and server-key.pem: clients must use TLS
                            (NULL: plain NBD) */
};

struct files_export;

/* Serve backup id's disk read-only over NBD (export name: the disk's
 * name) with qemu-storage-daemon reading its chain, under the VM's
 * shared lock ("export").  Returns once the server listens. */
struct files_export *files_export_new (struct chain_repo *repo, const char *id,
                                       const struct files_export_options *o)
  __attribute__ ((warn_unused_result));

/* The disk exported and the image read (borrowed). */
const char *files_export_disk (const struct files_export *e);
const char *files_export_image (const struct files_export *e);

/* Wait up to timeout_ms (-1: for ever) for the server to end; 0 when
 * the time ran out (it still serves), -1 when it died. */
int files_export_wait (struct files_export *e, int timeout_ms)
  __attribute__ ((warn_unused_result));

/* Stop the server, release the lock, free.  NULL is a no-op. */
void files_export_free (struct files_export *e);

#endif
