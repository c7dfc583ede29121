/* SPDX-License-Identifier: Apache-2.0 */
/* session.c: one backup point opened read-only in libguestfs's appliance. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

const char *
files_accel_name (enum files_accel a)
{
  switch (a) {
  case FILES_ACCEL_AUTO:
    return "auto";
  case FILES_ACCEL_KVM:
    return "kvm";
  case FILES_ACCEL_TCG:
    return "tcg";
  }
  return "?";
}

int
files_accel_parse (const char *s, enum files_accel *a)
{
  static const enum files_accel all[]
    = { FILES_ACCEL_AUTO, FILES_ACCEL_KVM, FILES_ACCEL_TCG };

  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (strcmp (s, files_accel_name (all[i])) == 0) {
      *a = all[i];
      return 0;
    }
  set_error (EINVAL, "'%s' is not one of auto, kvm, tcg", s);
  return -1;
}

/* The "hypervisor" CPU flag: knib itself runs in a VM. */
static bool
runs_in_vm (void)
{
  CLEANUP_FCLOSE FILE *fp = fopen ("/proc/cpuinfo", "r");
  char line[4096];

  if (fp == NULL)
    return true;
  while (fgets (line, sizeof line, fp) != NULL)
    if (strncmp (line, "flags", 5) == 0)
      return strstr (line, " hypervisor") != NULL;
  return true;
}

enum files_accel
files_accel_resolve (enum files_accel a, const char **why)
{
  int fd;

  switch (a) {
  case FILES_ACCEL_KVM:
    *why = "files-accel = kvm";
    return a;
  case FILES_ACCEL_TCG:
    *why = "files-accel = tcg";
    return a;
  case FILES_ACCEL_AUTO:
    break;
  }
  fd = open ("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd == -1) {
    *why = "auto: /dev/kvm cannot be opened read-write";
    return FILES_ACCEL_TCG;
  }
  close (fd);
  if (runs_in_vm ()) {
    *why = "auto: knib runs in a VM, where nested KVM can hang the "
           "appliance's kernel";
    return FILES_ACCEL_TCG;
  }
  *why = "auto: /dev/kvm is usable and knib runs on bare metal";
  return FILES_ACCEL_KVM;
}

void
files_guestfs_error (guestfs_h *g, const char *what)
{
  const char *msg = guestfs_last_error (g);
  int err = guestfs_last_errno (g);

  set_error (err > 0 ? -err : 0, "%s: %s", what, msg ? msg : "failed");
}

char *
files_join (const char *root, const char *path)
{
  char *s;

  if (strcmp (path, "/") == 0)
    path = "";
  if (asprintf (&s, "%s%s", root, path) == -1) {
    set_error (ENOMEM, "path");
    return NULL;
  }
  return s;
}

void
files_fs_release (struct files_fs *fs)
{
  free (fs->disk);
  free (fs->device);
  free (fs->type);
  free (fs->label);
  free (fs->uuid);
  free (fs->mountpoint);
  memset (fs, 0, sizeof *fs);
}

void
files_fs_vector_release (files_fs_vector *v)
{
  for (size_t i = 0; i < v->len; i++)
    files_fs_release (&v->ptr[i]);
  files_fs_vector_reset (v);
}

void
files_path_release (struct files_path *p)
{
  free (p->root);
  free (p->path);
  free (p->display);
  memset (p, 0, sizeof *p);
}

void
files_free_strings (char **v)
{
  if (v == NULL)
    return;
  for (size_t i = 0; v[i] != NULL; i++)
    free (v[i]);
  free (v);
}

void
files_session_free (struct files_session *s)
{
  if (s == NULL)
    return;
  if (s->g != NULL) {
    guestfs_shutdown (s->g);
    guestfs_close (s->g);
  }
  for (size_t i = 0; i < s->mounts.len; i++) {
    free (s->mounts.ptr[i].device);
    free (s->mounts.ptr[i].dir);
  }
  files_mount_vector_reset (&s->mounts);
  files_fs_vector_release (&s->fs);
  free (s->os_root);
  chain_string_vector_release (&s->disks);
  chain_string_vector_release (&s->devices);
  chain_lock_free (s->lock);
  chain_manifest_vector_release (&s->chain);
  free (s);
}

const struct chain_manifest *
files_session_manifest (const struct files_session *s)
{
  return s->chain.ptr[s->chain.len - 1];
}

enum files_accel
files_session_accel (const struct files_session *s)
{
  return s->accel;
}

double
files_session_launch_seconds (const struct files_session *s)
{
  return s->launch_seconds;
}

static int
push_string (chain_string_vector *v, const char *str)
{
  char *copy = strdup (str);

  if (copy == NULL || chain_string_vector_append (v, copy) == -1) {
    free (copy);
    set_error (ENOMEM, "string");
    return -1;
  }
  return 0;
}

/* Add each disk's image read-only: libguestfs reads it with its
 * backing chain under an overlay of its own. */
static int
add_disks (struct files_session *s, struct chain_repo *repo, const char *only)
{
  const struct chain_manifest *m = files_session_manifest (s);

  for (size_t i = 0; i < m->disks.len; i++) {
    const struct chain_disk *d = &m->disks.ptr[i];
    CLEANUP_FREE char *path = NULL;

    if (only != NULL && strcmp (only, d->name) != 0)
      continue;
    path = chain_backup_image_path (repo, m, d);
    if (path == NULL)
      return -1;
    if (access (path, R_OK) == -1) {
      set_error (errno, "disk '%s': image '%s'", d->name, path);
      return -1;
    }
    debug (DEBUG_CHAIN, "files: disk %s: %s (read-only, with its chain)",
           d->name, path);
    if (guestfs_add_drive_opts (s->g, path, GUESTFS_ADD_DRIVE_OPTS_READONLY, 1,
                                GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2", -1)
        == -1) {
      files_guestfs_error (s->g, d->name);
      return -1;
    }
    if (push_string (&s->disks, d->name) == -1)
      return -1;
  }
  if (s->disks.len == 0) {
    set_error (ENOENT, "backup '%s' has no disk '%s'", m->id, only);
    return -1;
  }
  return 0;
}

static int
launch (struct files_session *s)
{
  char *tcg[] = { (char *) "force_tcg", NULL };
  char **devs;
  double t0;

  if (guestfs_set_backend (s->g, "direct") == -1
      || (s->accel == FILES_ACCEL_TCG
          && guestfs_set_backend_settings (s->g, tcg) == -1)) {
    files_guestfs_error (s->g, "appliance");
    return -1;
  }
  t0 = monotonic_seconds ();
  if (guestfs_launch (s->g) == -1) {
    files_guestfs_error (s->g, "appliance");
    error_prepend ("cannot start libguestfs's appliance (try files-accel = "
                   "tcg; libguestfs-test-tool tells more)");
    return -1;
  }
  s->launch_seconds = monotonic_seconds () - t0;
  devs = guestfs_list_devices (s->g);
  if (devs == NULL) {
    files_guestfs_error (s->g, "list devices");
    return -1;
  }
  for (size_t i = 0; devs[i] != NULL; i++)
    if (push_string (&s->devices, devs[i]) == -1) {
      files_free_strings (devs);
      return -1;
    }
  files_free_strings (devs);
  if (s->devices.len != s->disks.len) {
    set_error (EIO, "the appliance sees %zu disks, not %zu", s->devices.len,
               s->disks.len);
    return -1;
  }
  return 0;
}

struct files_session *
files_session_new (struct chain_repo *repo, const char *id,
                   const struct files_session_options *o)
{
  struct files_session *s = calloc (1, sizeof *s);
  const struct chain_manifest *m;
  const char *why;

  if (s == NULL) {
    set_error (ENOMEM, "session");
    return NULL;
  }
  if (chain_backup_chain (repo, o->vm, id, &s->chain) == -1)
    goto fail;
  m = files_session_manifest (s);
  s->lock = chain_lock_new (repo, m->vm, CHAIN_LOCK_SHARED, "files", 0);
  if (s->lock == NULL)
    goto fail;
  s->accel = files_accel_resolve (o->accel, &why);
  debug (DEBUG_CHAIN, "files: appliance accel %s (%s)",
         files_accel_name (s->accel), why);
  if (files_gfs_load () == -1)
    goto fail;
  s->g = guestfs_create_flags (GUESTFS_CREATE_NO_ENVIRONMENT);
  if (s->g == NULL) {
    set_error (errno, "cannot create a libguestfs handle");
    goto fail;
  }
  guestfs_set_error_handler (s->g, NULL, NULL);
  if (guestfs_parse_environment (s->g) == -1) {
    files_guestfs_error (s->g, "libguestfs environment");
    goto fail;
  }
  if (add_disks (s, repo, o->disk) == -1 || launch (s) == -1)
    goto fail;
  return s;

fail:
  error_prepend ("backup '%s'", id);
  files_session_free (s);
  return NULL;
}

struct pair_arg {
  struct chain_repo *repo;
  const char *id;
  const struct files_session_options *o;
  struct files_session *s;
  char *error;
  int err;
};

static void *
pair_thread (void *opaque)
{
  struct pair_arg *a = opaque;

  a->s = files_session_new (a->repo, a->id, a->o);
  if (a->s == NULL) {
    a->error = strdup (get_error ());
    a->err = get_errno ();
    /* It went to a->error: a thread's own copy would leak with it. */
    error_clear ();
  }
  return NULL;
}

int
files_session_new_pair (struct chain_repo *repo, const char *id_a,
                        const char *id_b, const struct files_session_options *o,
                        struct files_session **a, struct files_session **b)
{
  struct pair_arg pa = { repo, id_a, o, NULL, NULL, 0 };
  struct pair_arg pb = { repo, id_b, o, NULL, NULL, 0 };
  pthread_t t;
  int r;

  r = pthread_create (&t, NULL, pair_thread, &pa);
  if (r != 0) {
    set_error (r, "thread");
    return -1;
  }
  pair_thread (&pb);
  pthread_join (t, NULL);
  if (pa.s == NULL || pb.s == NULL) {
    struct pair_arg *bad = pa.s == NULL ? &pa : &pb;

    set_error (bad->err > 0 ? -bad->err : -ENOMEM, "%s",
               bad->error ? bad->error : "out of memory");
    free (pa.error);
    free (pb.error);
    files_session_free (pa.s);
    files_session_free (pb.s);
    return -1;
  }
  *a = pa.s;
  *b = pb.s;
  return 0;
}
