/* SPDX-License-Identifier: Apache-2.0 */
/* verify.c: check a backup's chain, or a VM's backups, image by image. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

/* The most of qemu-img check's JSON that is read. */
#define CHECK_OUTPUT_MAX (1u << 20)

struct verify {
  struct chain_repo *repo;
  chain_verify_fn fn;
  void *opaque;
  struct chain_verify_summary *sum;
  chain_string_vector seen; /* ids of the backups already verified */
};

static void
report (struct verify *v, const char *vm, const char *id, const char *disk,
        const char *path, const chain_string_vector *errors,
        const chain_string_vector *warnings)
{
  const struct chain_verify_item item = { .vm = vm,
                                          .backup = id,
                                          .disk = disk,
                                          .path = path,
                                          .errors = errors,
                                          .warnings = warnings };

  if (disk != NULL)
    v->sum->images++;
  if (errors->len > 0)
    v->sum->errors++;
  else if (warnings->len > 0)
    v->sum->warnings++;
  else
    v->sum->ok++;
  if (v->fn != NULL)
    v->fn (&item, v->opaque);
}

/* A problem of a whole backup (or of a directory entry that should be
 * one), from the last error. */
static void
report_backup (struct verify *v, const char *vm, const char *id,
               const char *problem)
{
  char *text = (char *) problem;
  const chain_string_vector errors = { .ptr = &text, .len = 1, .cap = 1 };
  const chain_string_vector none = empty_vector;

  report (v, vm, id, NULL, NULL, &errors, &none);
}

/* The last line of a program's stderr (in buf), without blanks. */
static const char *
last_line (const char *text, char *buf, size_t size)
{
  size_t n = strlen (text);
  const char *start;

  while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
    n--;
  start = text + n;
  while (start > text && start[-1] != '\n')
    start--;
  snprintf (buf, size, "%.*s", (int) (text + n - start), start);
  return buf[0] ? buf : "no message";
}

static json_int_t
count (const json_t *report, const char *key)
{
  const json_t *v = json_object_get (report, key);

  return json_is_integer (v) ? json_integer_value (v) : 0;
}

/* What qemu-img check said, as errors and warnings about path. */
static int
check_findings (const char *path, int status, const char *out, const char *err,
                chain_string_vector *errors, chain_string_vector *warnings)
{
  json_auto_t *report = json_loads (out, 0, NULL);
  json_int_t corruptions, leaks, check_errors;
  char line[512];
  int r = 0;

  if (!json_is_object (report) || (status != 0 && status != 2 && status != 3))
    return chain_problem_add (errors,
                              "image '%s': qemu-img check failed (exit "
                              "status %d): %s",
                              path, status, last_line (err, line, sizeof line));
  corruptions = count (report, "corruptions");
  leaks = count (report, "leaks");
  check_errors = count (report, "check-errors");
  if (corruptions > 0)
    r |= chain_problem_add (errors,
                            "image '%s': qemu-img check found %lld "
                            "corruption%s",
                            path, (long long) corruptions,
                            corruptions == 1 ? "" : "s");
  if (check_errors > 0)
    r |= chain_problem_add (errors,
                            "image '%s': qemu-img check could not check "
                            "everything (%lld error%s)",
                            path, (long long) check_errors,
                            check_errors == 1 ? "" : "s");
  if (status != 0 && corruptions == 0 && check_errors == 0 && leaks == 0)
    r |= chain_problem_add (errors,
                            "image '%s': qemu-img check failed (exit "
                            "status %d): %s",
                            path, status, last_line (err, line, sizeof line));
  if (leaks > 0)
    r |= chain_problem_add (warnings,
                            "image '%s': %lld leaked cluster%s (space that "
                            "is allocated but unused; the data is intact)",
                            path, (long long) leaks, leaks == 1 ? "" : "s");
  return r == 0 ? 0 : -1;
}

/* Run "qemu-img check" on path.  -1 only when it cannot run at all
 * (it is not installed) or on ENOMEM: a failing check is a finding. */
static int
qemu_check (const char *path, chain_string_vector *errors,
            chain_string_vector *warnings)
{
  CLEANUP_FREE char *qpath = chain_qemu_path (path);
  struct command *cmd;
  int status, r;

  if (qpath == NULL)
    return -1;
  cmd = command_new ("qemu-img");
  if (cmd == NULL)
    return -1;
  command_add_args (cmd, "check", "--output=json", "-f", "qcow2", qpath, NULL);
  command_capture_stdout (cmd, CHECK_OUTPUT_MAX);
  if (command_run (cmd, &status) == -1) {
    if (get_errno () == ENOENT || get_errno () == ENOMEM) {
      command_free (cmd);
      return -1;
    }
    r = chain_problem_add (errors, "image '%s': %s", path, get_error ());
  }
  else
    r = check_findings (path, status, command_get_stdout (cmd, NULL),
                        command_get_stderr (cmd), errors, warnings);
  command_free (cmd);
  return r;
}

/* Everything about one image, then report it. */
static int
verify_disk (struct verify *v, const struct chain_manifest *m,
             const struct chain_manifest *parent, const struct chain_disk *disk)
{
  chain_string_vector errors = empty_vector, warnings = empty_vector;
  CLEANUP_FREE char *path = chain_backup_image_path (v->repo, m, disk);
  CLEANUP_FREE char *expected = NULL;
  char hex[CHAIN_HASH_HEX_LEN + 1];
  bool readable;
  int r = -1;

  if (path == NULL)
    return -1;
  debug (DEBUG_CHAIN, "verify: vm '%s' backup %s disk '%s': %s", m->vm, m->id,
         disk->name, path);
  if (chain_disk_expected_backing (parent, disk, &expected) == -1
      && chain_problem_add (&errors, "backup '%s': %s", m->id, get_error ())
           == -1)
    goto out;
  if (chain_image_check_header (path, disk, expected, &errors, &warnings,
                                &readable)
      == -1)
    goto out;
  if (readable) {
    if (chain_hash_file (path, disk->hash_kind, hex) == -1) {
      if (chain_problem_add (&errors, "%s", get_error ()) == -1)
        goto out;
    }
    else if (strcmp (hex, disk->hash) != 0
             && chain_problem_add (&errors,
                                   "image '%s' has %s %s but the "
                                   "manifest records %s: the image changed "
                                   "after the backup",
                                   path, chain_hash_kind_name (disk->hash_kind),
                                   hex, disk->hash)
                  == -1)
      goto out;
    if (qemu_check (path, &errors, &warnings) == -1)
      goto out;
  }
  report (v, m->vm, m->id, disk->name, path, &errors, &warnings);
  r = 0;
out:
  chain_string_vector_release (&errors);
  chain_string_vector_release (&warnings);
  return r;
}

static bool
seen (const struct verify *v, const char *id)
{
  for (size_t i = 0; i < v->seen.len; i++)
    if (strcmp (v->seen.ptr[i], id) == 0)
      return true;
  return false;
}

/* Every backup of a chain (full first) not verified yet. */
static int
verify_chain (struct verify *v, const chain_manifest_vector *chain)
{
  for (size_t i = 0; i < chain->len; i++) {
    const struct chain_manifest *m = chain->ptr[i];
    char *id;

    if (seen (v, m->id))
      continue;
    id = strdup (m->id);
    if (id == NULL || chain_string_vector_append (&v->seen, id) == -1) {
      free (id);
      set_error (ENOMEM, "verify");
      return -1;
    }
    v->sum->backups++;
    for (size_t j = 0; j < m->disks.len; j++)
      if (verify_disk (v, m, i > 0 ? chain->ptr[i - 1] : NULL, &m->disks.ptr[j])
          == -1)
        return -1;
  }
  return 0;
}

/* The chain of one backup; a broken one is a finding. */
static int
verify_backup (struct verify *v, const char *vm, const char *id)
{
  chain_manifest_vector chain = empty_vector;
  int r;

  if (chain_backup_chain (v->repo, vm, id, &chain) == -1) {
    if (get_errno () == ENOMEM)
      return -1;
    report_backup (v, vm, id, get_error ());
    return 0;
  }
  r = verify_chain (v, &chain);
  chain_manifest_vector_release (&chain);
  return r;
}

/* Every complete backup of the VM with its chain. */
static int
verify_vm (struct verify *v, const char *vm)
{
  chain_manifest_vector list = empty_vector;
  chain_string_vector problems = empty_vector;
  int r = -1;

  if (chain_backup_list (v->repo, vm, &list, &problems) == -1)
    goto out;
  if (list.len == 0 && problems.len == 0) {
    set_error (-ENOENT, "vm '%s' has no backups in repository '%s'", vm,
               chain_repo_path (v->repo));
    goto out;
  }
  for (size_t i = 0; i < problems.len; i++)
    report_backup (v, vm, NULL, problems.ptr[i]);
  for (size_t i = 0; i < list.len; i++)
    if (list.ptr[i]->state == CHAIN_STATE_COMPLETE
        && verify_backup (v, vm, list.ptr[i]->id) == -1)
      goto out;
  r = 0;
out:
  chain_manifest_vector_release (&list);
  chain_string_vector_release (&problems);
  return r;
}

int
chain_verify (struct chain_repo *repo, const char *vm, const char *id,
              int lock_timeout_ms, chain_verify_fn fn, void *opaque,
              struct chain_verify_summary *summary)
{
  struct verify v = { .repo = repo,
                      .fn = fn,
                      .opaque = opaque,
                      .sum = summary,
                      .seen = empty_vector };
  CLEANUP_FREE char *owner = NULL;
  struct chain_lock *lock;
  int r;

  memset (summary, 0, sizeof *summary);
  if (id == NULL && vm == NULL) {
    set_error (EINVAL, "verify: no backup or vm given");
    return -1;
  }
  if (vm != NULL && name_check ("vm", vm) == -1)
    return -1;
  if (id != NULL && vm == NULL) {
    struct chain_manifest *m = chain_backup_find (repo, NULL, id);

    if (m == NULL)
      return -1;
    owner = strdup (m->vm);
    chain_manifest_free (m);
    if (owner == NULL) {
      set_error (ENOMEM, "verify");
      return -1;
    }
    vm = owner;
  }
  lock
    = chain_lock_new (repo, vm, CHAIN_LOCK_SHARED, "verify", lock_timeout_ms);
  if (lock == NULL)
    return -1;
  if (id != NULL) {
    /* Under the lock: the backup may have gone since it was found. */
    struct chain_manifest *m = chain_backup_find (repo, vm, id);

    r = m == NULL ? -1 : verify_backup (&v, vm, id);
    chain_manifest_free (m);
  }
  else
    r = verify_vm (&v, vm);
  chain_lock_free (lock);
  chain_string_vector_release (&v.seen);
  return r;
}

int
chain_verify_structure (struct chain_repo *repo,
                        const chain_manifest_vector *chain,
                        chain_string_vector *errors)
{
  for (size_t i = 0; i < chain->len; i++) {
    const struct chain_manifest *m = chain->ptr[i];

    for (size_t j = 0; j < m->disks.len; j++) {
      const struct chain_disk *disk = &m->disks.ptr[j];
      chain_string_vector warnings = empty_vector;
      CLEANUP_FREE char *path = chain_backup_image_path (repo, m, disk);
      CLEANUP_FREE char *expected = NULL;
      bool readable;
      int r;

      if (path == NULL)
        return -1;
      if (chain_disk_expected_backing (i > 0 ? chain->ptr[i - 1] : NULL, disk,
                                       &expected)
            == -1
          && chain_problem_add (errors, "backup '%s': %s", m->id, get_error ())
               == -1)
        return -1;
      r = chain_image_check_header (path, disk, expected, errors, &warnings,
                                    &readable);
      chain_string_vector_release (&warnings);
      if (r == -1)
        return -1;
    }
  }
  return 0;
}
