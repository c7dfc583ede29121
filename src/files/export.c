/* SPDX-License-Identifier: Apache-2.0 */
/* export.c: one disk of a backup point served read-only over NBD by qemu-storage-daemon. */
#include <config.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "files.h"

#define EXPORT_DAEMON "qemu-storage-daemon"
#define EXPORT_START_TIMEOUT_MS 60000
#define EXPORT_POLL_MS 100

struct files_export {
  struct chain_lock *lock;
  struct command *cmd;
  char *disk;
  char *image;
  char *dir; /* private scratch directory (the pid file) */
  char *pid_file;
};

const char *
files_export_disk (const struct files_export *e)
{
  return e->disk;
}

const char *
files_export_image (const struct files_export *e)
{
  return e->image;
}

void
files_export_free (struct files_export *e)
{
  if (e == NULL)
    return;
  command_free (e->cmd); /* SIGTERM, SIGKILL after the grace period */
  if (e->pid_file != NULL)
    unlink (e->pid_file);
  if (e->dir != NULL)
    rmdir (e->dir);
  chain_lock_free (e->lock);
  free (e->disk);
  free (e->image);
  free (e->dir);
  free (e->pid_file);
  free (e);
}

static int
add_json (struct command *cmd, const char *opt, json_t *j)
{
  char *s = j ? json_dumps (j, JSON_COMPACT) : NULL;

  json_decref (j);
  if (s == NULL) {
    set_error (ENOMEM, "%s", opt);
    return -1;
  }
  command_add_args (cmd, opt, s, NULL);
  free (s);
  return 0;
}

static int
build (struct files_export *e, const struct files_export_options *o)
{
  json_t *addr;

  e->cmd = command_new (EXPORT_DAEMON);
  if (e->cmd == NULL)
    return -1;
  /* The image read-only; its backing chain opens read-only with it. */
  if (add_json (e->cmd, "--blockdev",
                json_pack ("{s:s, s:s, s:b, s:{s:s, s:s, s:b}}", "driver",
                           "qcow2", "node-name", "knib-disk", "read-only", 1,
                           "file", "driver", "file", "filename", e->image,
                           "read-only", 1))
      == -1)
    return -1;
  if (o->tls_creds != NULL
      && add_json (e->cmd, "--object",
                   json_pack ("{s:s, s:s, s:s, s:s, s:b}", "qom-type",
                              "tls-creds-x509", "id", "knib-tls", "dir",
                              o->tls_creds, "endpoint", "server", "verify-peer",
                              0))
           == -1)
    return -1;
  if (o->socket != NULL)
    addr = json_pack ("{s:s, s:s}", "type", "unix", "path", o->socket);
  else
    addr = json_pack ("{s:s, s:s, s:s}", "type", "inet", "host",
                      o->bind ? o->bind : "::", "port", o->port);
  if (add_json (e->cmd, "--nbd-server",
                o->tls_creds ? json_pack ("{s:o, s:s}", "addr", addr,
                                          "tls-creds", "knib-tls")
                             : json_pack ("{s:o}", "addr", addr))
        == -1
      || add_json (e->cmd, "--export",
                   json_pack ("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id",
                              "knib-export", "node-name", "knib-disk", "name",
                              e->disk, "writable", 0))
           == -1)
    return -1;
  command_add_args (e->cmd, "--pidfile", e->pid_file, NULL);
  command_set_process_group (e->cmd, true);
  command_set_die_with_parent (e->cmd, true);
  return 0;
}

/* The daemon ended: its first stderr line says why. */
static void
daemon_ended (struct files_export *e, int status)
{
  const char *err = command_get_stderr (e->cmd);
  size_t n = strcspn (err, "\n");

  set_error (-EIO, "%s exited with status %d: %.*s", EXPORT_DAEMON, status,
             (int) n, n ? err : "(no message)");
}

static int
wait_listening (struct files_export *e)
{
  int64_t deadline = deadline_after_ms (EXPORT_START_TIMEOUT_MS);
  struct stat st;
  int status;

  for (;;) {
    if (command_wait (e->cmd, EXPORT_POLL_MS, &status) == 0) {
      daemon_ended (e, status);
      return -1;
    }
    if (errno != ETIMEDOUT)
      return -1;
    error_clear ();
    if (stat (e->pid_file, &st) == 0 && st.st_size > 0)
      return 0;
    if (deadline_remaining_ms (deadline) == 0) {
      set_error (ETIMEDOUT, "%s did not start", EXPORT_DAEMON);
      return -1;
    }
  }
}

/* The files qemu's tls-creds-x509 reads from a server's directory. */
static int
check_tls_dir (const char *dir)
{
  static const char *const names[]
    = { "ca-cert.pem", "server-cert.pem", "server-key.pem" };

  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    CLEANUP_FREE char *path = NULL;

    if (asprintf (&path, "%s/%s", dir, names[i]) == -1) {
      path = NULL;
      set_error (ENOMEM, "--tls-creds");
      return -1;
    }
    if (access (path, R_OK) == -1) {
      set_error (errno,
                 "--tls-creds '%s': cannot read %s (the directory holds "
                 "ca-cert.pem, server-cert.pem and server-key.pem)",
                 dir, names[i]);
      return -1;
    }
  }
  return 0;
}

static const struct chain_disk *
pick_disk (const struct chain_manifest *m, const char *name)
{
  if (name != NULL) {
    const struct chain_disk *d = chain_manifest_find_disk (m, name);

    if (d == NULL)
      set_error (ENOENT, "backup '%s' has no disk '%s'", m->id, name);
    return d;
  }
  if (m->disks.len != 1) {
    set_error (EINVAL, "backup '%s' has %zu disks: name one with --disk", m->id,
               m->disks.len);
    return NULL;
  }
  return &m->disks.ptr[0];
}

struct files_export *
files_export_new (struct chain_repo *repo, const char *id,
                  const struct files_export_options *o)
{
  struct files_export *e = calloc (1, sizeof *e);
  chain_manifest_vector chain = empty_vector;
  const struct chain_manifest *m;
  const struct chain_disk *d;
  char tmpl[] = "/tmp/knib-export.XXXXXX";

  if (e == NULL) {
    set_error (ENOMEM, "export");
    return NULL;
  }
  if ((o->tls_creds != NULL && check_tls_dir (o->tls_creds) == -1)
      || chain_backup_chain (repo, o->vm, id, &chain) == -1)
    goto fail;
  m = chain.ptr[chain.len - 1];
  d = pick_disk (m, o->disk);
  if (d == NULL)
    goto fail;
  e->lock = chain_lock_new (repo, m->vm, CHAIN_LOCK_SHARED, "export", 0);
  e->disk = strdup (d->name);
  e->image = chain_backup_image_path (repo, m, d);
  if (e->lock == NULL || e->disk == NULL || e->image == NULL)
    goto fail;
  if (mkdtemp (tmpl) == NULL) {
    set_error (errno, "cannot make a scratch directory in /tmp");
    goto fail;
  }
  e->dir = strdup (tmpl);
  if (e->dir == NULL || asprintf (&e->pid_file, "%s/pid", tmpl) == -1) {
    e->pid_file = NULL;
    set_error (ENOMEM, "export");
    goto fail;
  }
  if (build (e, o) == -1 || command_start (e->cmd) == -1
      || wait_listening (e) == -1)
    goto fail;
  debug (DEBUG_CHAIN, "export: %s (pid %ld) serves %s", EXPORT_DAEMON,
         (long) command_pid (e->cmd), e->image);
  chain_manifest_vector_release (&chain);
  return e;

fail:
  error_prepend ("export of backup '%s'", id);
  chain_manifest_vector_release (&chain);
  files_export_free (e);
  return NULL;
}

int
files_export_wait (struct files_export *e, int timeout_ms)
{
  int status;

  if (command_wait (e->cmd, timeout_ms, &status) == 0) {
    daemon_ended (e, status);
    return -1;
  }
  if (errno != ETIMEDOUT)
    return -1;
  error_clear ();
  return 0;
}
