/* SPDX-License-Identifier: Apache-2.0 */
/* repo-fixture.h: build backup repositories of real qcow2 chains for tests. */
#ifndef KNIB_TESTS_REPO_FIXTURE_H
#define KNIB_TESTS_REPO_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "chain/chain.h"

/* "write -P PATTERN OFFSET LENGTH" on disk's image (qemu-io). */
struct fixture_write {
  const char *disk;
  int pattern;
  uint64_t offset;
  uint64_t length;
};

/* One backup of vm, through the chain API (exclusive lock, decide,
 * begin, commit), of each disk in disks (NULL-terminated), every one
 * size bytes: an image made by "qemu-img create -f qcow2" (with "-b
 * ../PARENT/DISK.qcow2 -F qcow2" when the disk is incremental), then the
 * writes for it.  Returns the new id (the caller frees it), or NULL with
 * set_error. */
char *fixture_backup (struct chain_repo *repo, const char *vm,
                      enum chain_mode mode, const char *const *disks,
                      uint64_t size, const struct fixture_write *writes,
                      size_t nwrites) __attribute__ ((warn_unused_result));

/* Mark backup id of vm removed, as a delete with children does. */
int fixture_mark_removed (struct chain_repo *repo, const char *vm,
                          const char *id) __attribute__ ((warn_unused_result));

/* Run qemu-io "write -P pattern offset length" on a qcow2 image. */
int fixture_qemu_io_write (const char *path, int pattern, uint64_t offset,
                           uint64_t length)
  __attribute__ ((warn_unused_result));

#endif
