/* SPDX-License-Identifier: Apache-2.0 */
/* decide.c: the chain rules: full or incremental, which parent, and why. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

void
chain_decision_release (struct chain_decision *d)
{
  free (d->reason);
  memset (d, 0, sizeof *d);
}

/* Why the next backup must be full, or NULL when it may be incremental. */
static char *
full_reason (const chain_manifest_vector *backups, int64_t chain_size,
             const struct chain_vm *vm, const struct chain_manifest *last,
             bool *oom)
{
  char *r = NULL;
  int n = 0;

  if (last == NULL && backups->len == 0)
    n = asprintf (&r, "first backup of this VM");
  else if (last == NULL)
    n = asprintf (&r, "no earlier backup of this VM can be a parent "
                      "(isolated backups never are)");
  else if (vm != NULL && vm->chain_end_reason != NULL
           && vm->chain_end_after[0] != '\0'
           && chain_id_compare (last->id, vm->chain_end_after) <= 0)
    n = asprintf (&r, "the chain was ended: %s", vm->chain_end_reason);
  else if (chain_size == 1)
    n = asprintf (&r, "chain size 1: every backup is full");
  else if (chain_size > 1 && last->position >= chain_size)
    n = asprintf (&r, "chain %s already holds %lld backups (chain size %lld)",
                  last->chain, (long long) last->position,
                  (long long) chain_size);
  *oom = n == -1;
  return n == -1 ? NULL : r;
}

static int
set_reason (struct chain_decision *d, char *reason)
{
  if (reason == NULL) {
    set_error (ENOMEM, "chain decision");
    return -1;
  }
  d->reason = reason;
  return 0;
}

int
chain_decide (const chain_manifest_vector *backups, int64_t chain_size,
              enum chain_mode mode, const struct chain_vm *vm,
              struct chain_decision *d)
{
  const struct chain_manifest *last;
  char *why = NULL;
  bool oom;

  memset (d, 0, sizeof *d);
  d->position = 1;
  switch (mode) {
  case CHAIN_MODE_ISOLATED:
    d->kind = CHAIN_KIND_ISOLATED;
    return set_reason (d, strdup ("--isolated requested"));
  case CHAIN_MODE_FULL:
    d->kind = CHAIN_KIND_FULL;
    return set_reason (d, strdup ("--full requested"));
  case CHAIN_MODE_AUTO:
  case CHAIN_MODE_INCREMENTAL:
    break;
  }

  last = chain_tip (backups, vm);
  why = full_reason (backups, chain_size, vm, last, &oom);
  if (oom)
    return set_reason (d, NULL);
  if (why != NULL) {
    if (mode == CHAIN_MODE_INCREMENTAL) {
      set_error (-EINVAL, "an incremental backup is not possible: %s", why);
      free (why);
      return -1;
    }
    d->kind = CHAIN_KIND_FULL;
    return set_reason (d, why);
  }

  d->kind = CHAIN_KIND_INCREMENTAL;
  strcpy (d->parent, last->id);
  strcpy (d->chain, last->chain);
  d->position = last->position + 1;
  if (chain_size > 1) {
    if (asprintf (&why, "backup %lld of chain %s (chain size %lld)",
                  (long long) d->position, d->chain, (long long) chain_size)
        == -1)
      why = NULL;
  }
  else if (asprintf (&why, "backup %lld of chain %s (chain size unlimited)",
                     (long long) d->position, d->chain)
           == -1)
    why = NULL;
  return set_reason (d, why);
}

int
chain_vm_decide (struct chain_repo *repo, const char *vm, int64_t chain_size,
                 enum chain_mode mode, struct chain_decision *d,
                 chain_string_vector *problems)
{
  chain_manifest_vector backups = empty_vector;
  struct chain_vm *info = NULL;
  int r = -1;

  if (chain_backup_list (repo, vm, &backups, problems) == -1)
    goto out;
  info = chain_vm_load (repo, vm);
  if (info == NULL && errno != ENOENT)
    goto out;
  r = chain_decide (&backups, chain_size, mode, info, d);
out:
  chain_vm_free (info);
  chain_manifest_vector_release (&backups);
  return r;
}
