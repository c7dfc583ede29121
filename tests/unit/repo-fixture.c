/* SPDX-License-Identifier: Apache-2.0 */
/* repo-fixture.c: build backup repositories of real qcow2 chains for tests. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/error.h"
#include "repo-fixture.h"

int
fixture_qemu_io_write (const char *path, int pattern, uint64_t offset,
                       uint64_t length)
{
  struct command *cmd = command_new ("qemu-io");
  int r;

  if (cmd == NULL)
    return -1;
  command_add_args (cmd, "-f", "qcow2", "-c", NULL);
  command_add_argf (cmd, "write -P 0x%02x %" PRIu64 " %" PRIu64, pattern,
                    offset, length);
  command_add_arg (cmd, path);
  r = command_run (cmd, NULL);
  command_free (cmd);
  return r;
}

static int
create_image (const char *path, const char *backing, uint64_t size)
{
  struct command *cmd = command_new ("qemu-img");
  int r;

  if (cmd == NULL)
    return -1;
  command_add_args (cmd, "create", "-q", "-f", "qcow2", NULL);
  if (backing != NULL)
    command_add_args (cmd, "-b", backing, "-F", "qcow2", NULL);
  command_add_arg (cmd, path);
  command_add_argf (cmd, "%" PRIu64, size);
  r = command_run (cmd, NULL);
  command_free (cmd);
  return r;
}

/* Make, write and record one disk of backup b. */
static int
add_disk (struct chain_backup *b, const char *name, uint64_t size,
          const struct fixture_write *writes, size_t nwrites)
{
  CLEANUP_FREE char *path = chain_backup_disk_path (b, name);
  CLEANUP_FREE char *backing = NULL;
  struct chain_disk d = { .name = (char *) name,
                          .kind = CHAIN_KIND_FULL,
                          .virtual_size = size,
                          .cluster_size = 65536,
                          .compression = CHAIN_COMPRESSION_NONE };

  if (path == NULL)
    return -1;
  if (chain_backup_backing_file (b, name, &backing) == -1) {
    if (errno != ENOENT)
      return -1;
    d.reason = (char *) "a new disk";
  }
  else if (backing == NULL)
    d.reason = (char *) "no parent";
  else
    d.kind = CHAIN_KIND_INCREMENTAL;
  if (create_image (path, backing, size) == -1)
    return -1;
  for (size_t i = 0; i < nwrites; i++) {
    if (strcmp (writes[i].disk, name) != 0)
      continue;
    if (fixture_qemu_io_write (path, writes[i].pattern, writes[i].offset,
                               writes[i].length)
        == -1)
      return -1;
    d.bytes_read += writes[i].length;
    d.bytes_written += writes[i].length;
    d.extents++;
  }
  return chain_backup_add_disk (b, &d);
}

char *
fixture_backup (struct chain_repo *repo, const char *vm, enum chain_mode mode,
                const char *const *disks, uint64_t size,
                const struct fixture_write *writes, size_t nwrites)
{
  struct chain_lock *lock;
  struct chain_decision d;
  struct chain_backup *b = NULL;
  char *id = NULL;

  lock = chain_lock_new (repo, vm, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  if (lock == NULL)
    return NULL;
  if (chain_vm_decide (repo, vm, 8, mode, &d, NULL) == -1)
    goto out;
  b = chain_backup_begin (repo, lock, &d);
  chain_decision_release (&d);
  if (b == NULL)
    goto out;
  for (size_t i = 0; disks[i] != NULL; i++)
    if (add_disk (b, disks[i], size, writes, nwrites) == -1)
      goto out;
  if (chain_backup_commit (b) == -1)
    goto out;
  id = strdup (chain_backup_id (b));
  if (id == NULL)
    set_error (ENOMEM, "backup id");
out:
  chain_backup_free (b);
  chain_lock_free (lock);
  return id;
}

int
fixture_mark_removed (struct chain_repo *repo, const char *vm, const char *id)
{
  struct chain_manifest *m = chain_backup_find (repo, vm, id);
  CLEANUP_FREE char *path = NULL;
  int r;

  if (m == NULL)
    return -1;
  if (asprintf (&path, "%s/vms/%s/%s/manifest.json", chain_repo_path (repo), vm,
                id)
      == -1) {
    chain_manifest_free (m);
    set_error (ENOMEM, "path");
    return -1;
  }
  m->state = CHAIN_STATE_REMOVED;
  r = chain_manifest_commit (m, path);
  chain_manifest_free (m);
  return r;
}
