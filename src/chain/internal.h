/* SPDX-License-Identifier: Apache-2.0 */
/* internal.h: what the files of src/chain share (and the tests reach). */
#ifndef KNIB_CHAIN_INTERNAL_H
#define KNIB_CHAIN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "chain.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/util.h"

#define CHAIN_REPO_FILE "knib-repo.json"
#define CHAIN_VMS_DIR "vms"
#define CHAIN_VM_FILE "vm.json"
#define CHAIN_MANIFEST_FILE "manifest.json"
#define CHAIN_LOCK_FILE ".lock"
#define CHAIN_PARTIAL_SUFFIX ".partial"
#define CHAIN_TEMP_PREFIX FS_TEMP_PREFIX

/* How often a blocking lock retries. */
#define CHAIN_LOCK_RETRY_MS 50

struct chain_repo {
  char *path;
  char id[CHAIN_REPO_ID_LEN + 1]; /* "" in a repository made before ids */
  char *group;                    /* shared for reading with it; NULL: not */
  gid_t gid;                      /* its gid; -1: not shared */
  chain_clock_fn clock;
  void *clock_opaque;
};

struct chain_lock {
  struct chain_repo *repo;
  char *vm;
  char *dir; /* REPO/vms/<vm> */
  enum chain_lock_mode mode;
  int fd;
};

/* restore-journal.c */

/* The temporary file of a restored image: "<dir>/.knib-restore-<name>.
 * XXXXXX". */
#define CHAIN_RESTORE_TEMP_PREFIX ".knib-restore-"

/* Record (under the VM's exclusive lock) that a restore in place of
 * backup id writes temporary files beside these n images ("writing"), or
 * renames them over the images ("installing"); remove the record when
 * it is done (or failed, its temporary files removed). */
int chain_restore_journal_write (struct chain_lock *lock, const char *id,
                                 const char *phase, const char *const *images,
                                 size_t n) __attribute__ ((warn_unused_result));
int chain_restore_journal_remove (struct chain_lock *lock)
  __attribute__ ((warn_unused_result));

/* A name of the repository's own temporary files (CHAIN_TEMP_PREFIX). */
bool chain_is_temp_name (const char *name);

/* id.c */

/* The id for time t and sequence seq (1: no suffix, 2: "-2", ...). */
void chain_id_make (int64_t t, unsigned seq, char out[CHAIN_ID_MAX]);

/* Split a valid id into its time and sequence. */
int chain_id_split (const char *id, int64_t *t, unsigned *seq)
  __attribute__ ((warn_unused_result));

#define CHAIN_ID_SEQ_MAX 9999u

/* repo.c */

int64_t chain_repo_now (const struct chain_repo *repo);

/* share.c: the gid of group (-1 for NULL or ""), or -1 with set_error. */
int chain_share_resolve (const char *group, gid_t *gid);
/* Give path and everything under it (never through a symbolic link) the
 * modes of a private repository (gid -1: 0700/0600) or of one shared with
 * gid (2750/0640, group gid).  Entries this process may not change are
 * left as they are. */
int chain_share_apply (const char *path, gid_t gid);

/* REPO/vms/<vm> after checking the name. */
char *chain_repo_vm_dir (const struct chain_repo *repo, const char *vm)
  __attribute__ ((warn_unused_result));

/* manifest.c */

json_t *chain_manifest_to_json (const struct chain_manifest *m)
  __attribute__ ((warn_unused_result));

/* Errors without a "manifest 'PATH'" prefix. */
struct chain_manifest *chain_manifest_from_json (const json_t *j)
  __attribute__ ((warn_unused_result));

void chain_disk_release (struct chain_disk *d);

/* Load REPO/vms/<vm>/<id>/manifest.json and check that it says so. */
struct chain_manifest *chain_manifest_load_backup (struct chain_repo *repo,
                                                   const char *vm,
                                                   const char *id)
  __attribute__ ((warn_unused_result));

/* validation.c */

json_t *chain_validation_to_json (const struct chain_validation *v)
  __attribute__ ((warn_unused_result));
/* Read strictly, errors "validation: ..." (EINVAL). */
struct chain_validation *chain_validation_from_json (const json_t *j)
  __attribute__ ((warn_unused_result));
int chain_validation_check (const struct chain_validation *v)
  __attribute__ ((warn_unused_result));

/* vm.c */

/* The VM's vm.json, or a new one (name only) when it has none. */
struct chain_vm *chain_vm_load_or_new (struct chain_repo *repo,
                                       const char *name)
  __attribute__ ((warn_unused_result));

int chain_vm_save (struct chain_lock *lock, const struct chain_vm *vm)
  __attribute__ ((warn_unused_result));

/* list.c */

/* The greatest backup id among the entries of the VM's directory ("" when
 * none); with_partial counts <id>.partial too.  Manifests are not read:
 * a corrupt backup still holds its id. */
int chain_vm_latest_id (struct chain_repo *repo, const char *vm,
                        bool with_partial, char out[CHAIN_ID_MAX])
  __attribute__ ((warn_unused_result));

/* Sort by id. */
void chain_manifest_vector_sort (chain_manifest_vector *v);

/* lock.c */

/* -1 with set_error unless lock is an exclusive lock on repo. */
int chain_lock_check_exclusive (const struct chain_lock *lock,
                                const struct chain_repo *repo, const char *what)
  __attribute__ ((warn_unused_result));

/* hash.c */

int chain_hash_fd (int fd, enum chain_hash_kind kind,
                   char hex[CHAIN_HASH_HEX_LEN + 1])
  __attribute__ ((warn_unused_result));

/* image.c */

/* path as QEMU must be given it: "./" before a relative path, so that
 * "a:b/c" is not read as protocol "a". */
char *chain_qemu_path (const char *path) __attribute__ ((warn_unused_result));

/* Append a formatted problem to v.  -1 with set_error on ENOMEM. */
int chain_problem_add (chain_string_vector *v, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3), warn_unused_result));

/* Check the image of disk at path against the manifest (virtual size,
 * cluster size) and the chain (its backing file must be
 * expected_backing; not compared for an incremental disk whose
 * expected_backing is NULL): problems, each naming path, go to errors
 * and warnings; *readable says whether the header could be read.  -1
 * only on ENOMEM. */
int chain_image_check_header (const char *path, const struct chain_disk *disk,
                              const char *expected_backing,
                              chain_string_vector *errors,
                              chain_string_vector *warnings, bool *readable)
  __attribute__ ((warn_unused_result));

/* trust.c: what a backup's images pass before knib reads them back
 * (restore, merge, compress). */

/* The image at path hashes to what the manifest records for disk.  -1
 * with set_error otherwise (EBADMSG: it changed, naming both hashes).
 * The one place that knows how a stored image is checked. */
int chain_image_check_hash (const char *path, const struct chain_disk *disk)
  __attribute__ ((warn_unused_result));

/* Disk name's images down chain (full first, as chain_backup_chain gives
 * it), from its last backup to the full it starts from: each is there, a
 * regular file, the qcow2 image its manifest describes, with no external
 * data file, the backing file the chain needs and (hashes) the stored
 * hash.  -1 with the first problem as the error. */
int chain_disk_check (struct chain_repo *repo,
                      const chain_manifest_vector *chain, const char *name,
                      bool hashes) __attribute__ ((warn_unused_result));

/* "json:{...}": disk name's image in the last backup of chain, for
 * qemu-img, with its backing chain given explicitly (the repository's
 * files, read-only; the full has none): QEMU follows no name that an
 * image records. */
char *chain_disk_qemu_spec (struct chain_repo *repo,
                            const chain_manifest_vector *chain,
                            const char *name)
  __attribute__ ((warn_unused_result));

/* delete.c */

/* Delete the removed backups of the VM that no live backup needs any
 * more (chain_delete with no id), under the exclusive lock held. */
int chain_delete_unneeded (struct chain_lock *lock,
                           chain_delete_step_vector *steps)
  __attribute__ ((warn_unused_result));

/* backup.c: fault injection for the tests.  When chain_crash_point is
 * set, chain_backup_commit stops there as if knib had been killed (it
 * returns -1 and the backup object forgets the partial directory, so
 * that chain_backup_free leaves everything as a crash would). */
#ifdef ENABLE_TEST_HOOKS
enum chain_crash_point {
  CHAIN_CRASH_NONE,
  CHAIN_CRASH_AFTER_IMAGES,   /* images fsynced, no manifest */
  CHAIN_CRASH_AFTER_MANIFEST, /* manifest in <id>.partial/, not renamed */
  CHAIN_CRASH_AFTER_RENAME,   /* renamed: committed */
};
extern enum chain_crash_point chain_crash_point;
#endif

#endif
