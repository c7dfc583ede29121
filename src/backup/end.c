/* SPDX-License-Identifier: Apache-2.0 */
/* engine-end.c: ending a VM's chain, in the repository and in QEMU. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup/backup.h"
#include "backup/internal.h"
#include "common/fs.h"
#include "common/util.h"
#include "common/error.h"
#include "qmp/qmp.h"

static void
add_line (chain_string_vector *done, char *line)
{
  if (line != NULL && chain_string_vector_append (done, line) == -1)
    free (line);
}

/* Every knib bitmap of every disk of the running VM goes. */
static int
remove_bitmaps (const struct backup_options *o, chain_string_vector *done)
{
  struct qmp_client *c = qmp_client_connect (
    o->qmp_socket, qmp_step_timeout_ms (o->timeout_ms), o->cancel);
  live_disk_vector disks = empty_vector;
  size_t before = done->len;
  int r = -1;

  if (c == NULL) {
    error_prepend ("QMP socket '%s'", o->qmp_socket);
    return -1;
  }
  if (live_disks_query (c, NULL, 0, &disks) == -1)
    goto out;
  for (size_t i = 0; i < disks.len; i++)
    if (live_bitmaps_prune (c, &disks.ptr[i], NULL, NULL, done) == -1)
      goto out;
  if (done->len == before)
    add_line (done, str_printf ("no knib bitmap was left on the VM's "
                                "disks"));
  r = 0;
out:
  live_disk_vector_release (&disks);
  qmp_client_free (c);
  return r;
}

int
backup_end_chain (struct chain_repo *repo, const struct backup_options *o,
                  const char *reason, chain_string_vector *done)
{
  struct chain_lock *lock;
  struct chain_vm *vm = NULL;
  int r = -1;

  if (name_check ("vm", o->vm) == -1)
    return -1;
  lock = chain_lock_new (repo, o->vm, CHAIN_LOCK_EXCLUSIVE, "chain end", 0);
  if (lock == NULL)
    goto out;
  if (chain_vm_end_chain (lock, reason) == -1
      || (vm = chain_vm_load (repo, o->vm)) == NULL)
    goto out;
  if (vm->chain_end_after[0])
    add_line (done, str_printf ("vm %s: the chain ends after backup %s: "
                                "the next backup is full (%s)",
                                o->vm, vm->chain_end_after, reason));
  else
    add_line (done, str_printf ("vm %s: no backup yet: the next backup is "
                                "full anyway",
                                o->vm));
  if (o->qmp_socket != NULL && remove_bitmaps (o, done) == -1)
    goto out;
  r = 0;
out:
  if (r == -1)
    error_prepend ("ending the chain of vm '%s'", o->vm);
  chain_vm_free (vm);
  chain_lock_free (lock);
  return r;
}
