/* SPDX-License-Identifier: Apache-2.0 */
/* restore-vm.c: "knib restore" into a VM's disks (--image, --domain), and
 * the consolidation of quick restores (--consolidate, --status). */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "backup/backup.h"
#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/util.h"
#include "domain/domain.h"
#include "libvirt.h"
#include "progress.h"
#include "restore.h"
#include "show.h"

int
restore_add_image (struct restore_opts *o, const char *arg)
{
  const char *eq = strchr (arg, '=');
  struct chain_restore_target t = { .format = CHAIN_RESTORE_QCOW2 };
  char *disk;

  if (eq == NULL || eq == arg || eq[1] == '\0') {
    cli_usage_error ("restore", "--image: expected DISK=PATH, got '%s'", arg);
    return -1;
  }
  disk = strndup (arg, (size_t) (eq - arg));
  if (disk == NULL || !cli_name_ok ("disk", disk)) {
    free (disk);
    return -1;
  }
  t.disk = disk;
  t.path = eq + 1;
  if (restore_target_vector_append (&o->images, t) == -1) {
    free (disk);
    cli_error ("restore");
    return -1;
  }
  return 0;
}

int
restore_check_in_place (struct restore_opts *o)
{
  if (o->images.len > 0 && o->domain != NULL)
    return cli_usage_error ("restore", "give --image or --domain, not both");
  if (o->ro.to != NULL)
    return cli_usage_error ("restore", "--to restores to new files: it does "
                                       "not go with --image or --domain");
  if (o->qmp != NULL)
    return cli_usage_error ("restore", "--qmp goes with --consolidate");
  if (o->wait && !(o->domain != NULL && o->quick && o->start))
    return cli_usage_error ("restore", "--wait goes with --consolidate, or "
                                       "with --domain --quick --start");
  if (o->images.len > 0 && (o->start || o->stop))
    return cli_usage_error ("restore", "--start and --stop need --domain: "
                                       "knib does not run plain QEMU VMs");
  if (o->images.len > 0 && o->ro.disk != NULL)
    return cli_usage_error ("restore", "--image names its disk already: "
                                       "leave out --disk");
  return 0;
}

int
restore_check_consolidate (struct restore_opts *o, int argc, char **argv)
{
  if (o->consolidate && o->status)
    return cli_usage_error ("restore", "give --consolidate or --status");
  if (optind < argc)
    return cli_usage_error ("restore",
                            "--consolidate and --status take no "
                            "BACKUP ('%s')",
                            argv[optind]);
  if (o->common.repo == NULL)
    return cli_usage_error ("restore", "--repo is required");
  if ((o->domain == NULL) == (o->qmp == NULL))
    return cli_usage_error ("restore", "give --domain NAME, or --qmp SOCKET "
                                       "with --vm NAME");
  if (o->qmp != NULL && o->ro.vm == NULL)
    return cli_usage_error ("restore", "--qmp needs --vm NAME");
  if (o->images.len > 0 || o->ro.to != NULL || o->quick || o->start || o->stop)
    return cli_usage_error ("restore", "--consolidate and --status take no "
                                       "--to, --image, --quick, --start or "
                                       "--stop");
  if (o->status && (o->wait || o->rate_limit))
    return cli_usage_error ("restore",
                            "--wait and --rate-limit go with --consolidate");
  if (!cli_name_ok ("vm", o->ro.vm) || !cli_name_ok ("domain", o->domain))
    return -1;
  return 0;
}

/* Say why it failed (after the bar is gone), remove a new image that
 * must not stay (made, may be NULL); the exit status. */
static int
failed (struct restore_state *st, const char *made)
{
  struct error_saved err;

  progress_free (st->bar);
  st->bar = NULL;
  error_save (&err);
  if (made != NULL && unlink (made) == -1)
    fprintf (stderr, "knib: warning: cannot remove '%s': %m\n", made);
  error_restore (&err);
  cli_error ("restore");
  return cli_exit_status_failed ();
}

/* ---- libvirt ---- */

/* "running", "shut off", ... (first line of virsh domstate). */
static char *
domain_state (const char *domain)
{
  char *state = NULL;

  if (libvirt_virsh (&state, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "domstate", domain,
                     NULL)
      == -1)
    return NULL;
  state[strcspn (state, "\n")] = '\0';
  return state;
}

/* The domain must be shut off; --stop shuts it down (then destroys it
 * after the timeout). */
static int
domain_stop (const char *domain, bool stop, int64_t timeout_s)
{
  CLEANUP_FREE char *state = domain_state (domain);
  int64_t deadline;

  if (state == NULL)
    return -1;
  if (strcmp (state, "shut off") == 0)
    return 0;
  if (!stop) {
    set_error (-EBUSY, "domain '%s' is %s: shut it down first (or give --stop)",
               domain, state);
    return -1;
  }
  fprintf (stderr, "knib: shutting domain '%s' down\n", domain);
  if (libvirt_virsh (NULL, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "shutdown", domain,
                     NULL)
      == -1)
    error_clear (); /* it may have stopped meanwhile; destroy follows */
  deadline = deadline_after_ms (timeout_s * 1000);
  for (;;) {
    free (state);
    state = domain_state (domain);
    if (state == NULL)
      return -1;
    if (strcmp (state, "shut off") == 0)
      return 0;
    if (deadline_remaining_ms (deadline) == 0)
      break;
    poll (NULL, 0, 500);
  }
  fprintf (stderr,
           "knib: domain '%s' did not shut down in %lld s: "
           "destroying it\n",
           domain, (long long) timeout_s);
  return libvirt_virsh (NULL, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "destroy", domain,
                        NULL);
}

/* backup_restore_in_place's prepare: the domain stops (or is stopped). */
static int
prepare_domain (void *opaque)
{
  const struct restore_opts *o = opaque;

  return domain_stop (o->domain, o->stop, o->stop_timeout);
}

static bool
in_list (const char *list, const char *name)
{
  size_t n = strlen (name);

  for (const char *p = list; p != NULL && *p;) {
    const char *end = strchr (p, ',');
    size_t len = end ? (size_t) (end - p) : strlen (p);

    if (len == n && strncmp (p, name, n) == 0)
      return true;
    p = end ? end + 1 : NULL;
  }
  return false;
}

/* The targets of a domain: its disks that the backup has (or those of
 * --disk), from its persistent definition; the backup's disks that the
 * domain no longer has go to missing. */
static int
domain_targets (struct chain_repo *repo, struct restore_opts *o,
                struct domain_info *info, chain_string_vector *missing)
{
  struct chain_manifest *m = chain_backup_find (repo, o->ro.vm, o->id);
  CLEANUP_FREE char *xml = NULL;
  int r = -1;

  if (m == NULL)
    return -1;
  if (libvirt_virsh (&xml, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "dumpxml",
                     "--inactive", o->domain, NULL)
        == -1
      || domain_info_parse (xml, strlen (xml), info) == -1)
    goto out;
  for (const char *p = o->ro.disk; p != NULL && *p;) {
    const char *end = strchr (p, ',');
    CLEANUP_FREE char *name
      = end ? strndup (p, (size_t) (end - p)) : strdup (p);

    if (name == NULL || name_check ("disk", name) == -1)
      goto out;
    if (chain_manifest_find_disk (m, name) == NULL) {
      set_error (-ENOENT, "backup %s has no disk '%s'", m->id, name);
      goto out;
    }
    p = end ? end + 1 : NULL;
  }
  for (size_t i = 0; i < m->disks.len; i++) {
    const char *name = m->disks.ptr[i].name;
    struct chain_restore_target t = { .format = CHAIN_RESTORE_QCOW2 };
    const struct domain_disk *d = NULL;
    char *disk;

    if (o->ro.disk != NULL && !in_list (o->ro.disk, name))
      continue;
    for (size_t k = 0; k < info->disks.len; k++)
      if (strcmp (info->disks.ptr[k].target, name) == 0)
        d = &info->disks.ptr[k];
    if (d == NULL) {
      /* Detached since the backup: it comes back as a new volume. */
      char *copy = strdup (name);

      if (copy == NULL || chain_string_vector_append (missing, copy) == -1) {
        free (copy);
        goto out;
      }
      continue;
    }
    if (d->source == NULL || strcmp (d->type, "file") != 0) {
      set_error (-EINVAL,
                 "disk '%s' of domain '%s' is not an image file: leave it "
                 "out with --disk",
                 name, o->domain);
      goto out;
    }
    if (d->format != NULL && strcmp (d->format, "raw") == 0)
      t.format = CHAIN_RESTORE_RAW;
    disk = strdup (name);
    if (disk == NULL)
      goto out;
    t.disk = disk;
    t.path = d->source;
    if (restore_target_vector_append (&o->images, t) == -1) {
      free (disk);
      goto out;
    }
  }
  r = 0;
out:
  chain_manifest_free (m);
  return r;
}

/* ---- Quick restores into libvirt domains ---- */

/* Can uid:gid search dir?  Asked of the kernel by a child that becomes
 * that user (ACLs count too). */
static bool
user_can_search (uid_t uid, gid_t gid, const char *dir)
{
  pid_t pid = fork ();
  int st;

  if (pid == 0) {
    if (setgroups (0, NULL) == -1 || setgid (gid) == -1 || setuid (uid) == -1)
      _exit (2);
    _exit (access (dir, X_OK) == 0 ? 0 : 1);
  }
  if (pid == -1 || waitpid (pid, &st, 0) == -1)
    return true; /* cannot tell: let QEMU say */
  return WIFEXITED (st) && WEXITSTATUS (st) == 0;
}

/* The directories from the repository down to each image that disk of
 * backup id reads, for QEMU's user (the domain's DAC label, else
 * libvirt's default user): libvirt gives QEMU the images themselves, not
 * the directories above them.  Fails naming the first it cannot search. */
static int
check_qemu_reach (struct chain_repo *repo, const struct restore_opts *o,
                  const struct domain_info *info)
{
  chain_manifest_vector chain = empty_vector;
  struct chain_manifest *m = chain_backup_find (repo, o->ro.vm, o->id);
  uid_t uid;
  gid_t gid;
  int r = -1;

  if (m == NULL)
    return -1;
  if (info != NULL && info->dac_label) {
    uid = info->qemu_uid;
    gid = info->qemu_gid;
  }
  else {
    struct passwd *pw = getpwnam (DOMAIN_DEFAULT_QEMU_USER);

    if (pw == NULL || geteuid () != 0) {
      r = 0; /* QEMU runs as some user knib cannot check for */
      goto out;
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  if (uid == 0 || chain_backup_chain (repo, m->vm, m->id, &chain) == -1) {
    r = uid == 0 ? 0 : -1;
    goto out;
  }
  for (size_t i = 0; i < chain.len; i++) {
    const struct chain_disk *d = &chain.ptr[i]->disks.ptr[0];
    CLEANUP_FREE char *img = chain_backup_image_path (repo, chain.ptr[i], d);
    char *slash;

    if (img == NULL)
      goto out;
    /* Each directory above the image, up to the root. */
    while ((slash = strrchr (img, '/')) != NULL && slash != img) {
      *slash = '\0';
      if (!user_can_search (uid, gid, img)) {
        set_error (-EACCES,
                   "a quick restore into a libvirt domain needs QEMU's user "
                   "(uid %u) to reach the backup's images, and it cannot "
                   "search '%s': give it access (setfacl -m u:%u:x on the "
                   "repository's directories down to the backups), or "
                   "restore without --quick",
                   (unsigned) uid, img, (unsigned) uid);
        goto out;
      }
    }
  }
  r = 0;
out:
  chain_manifest_vector_release (&chain);
  chain_manifest_free (m);
  return r;
}

/* ---- Output ---- */

static void
print_notes (const chain_string_vector *notes, bool json)
{
  for (size_t i = 0; !json && i < notes->len; i++)
    printf ("%s\n", notes->ptr[i]);
}

static json_t *
notes_json (const chain_string_vector *notes)
{
  json_t *a = json_array ();

  for (size_t i = 0; a != NULL && i < notes->len; i++)
    json_array_append_new (a, json_string (notes->ptr[i]));
  return a;
}

static void
print_in_place_json (const struct restore_opts *o,
                     const chain_string_vector *notes)
{
  json_auto_t *disks = json_array ();
  json_auto_t *out = NULL;

  for (size_t i = 0; disks != NULL && i < o->images.len; i++)
    json_array_append_new (disks, json_pack ("{s:s, s:s}", "name",
                                             o->images.ptr[i].disk, "image",
                                             o->images.ptr[i].path));
  out = json_pack ("{s:s, s:s?, s:b, s:O, s:o}", "backup", o->id, "domain",
                   o->domain, "quick", o->quick, "disks", disks, "notes",
                   notes_json (notes));
  if (out != NULL)
    show_json (out, false);
}

/* ---- In place ---- */

static int
start_domain (struct cli *cli, struct restore_opts *o)
{
  if (libvirt_virsh (NULL, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "start", o->domain,
                     NULL)
      == -1) {
    cli_error ("restore: the disks are restored, but domain '%s' did not "
               "start",
               o->domain);
    return EXIT_FAILURE_;
  }
  if (!o->common.json)
    printf ("started domain '%s'\n", o->domain);
  if (!o->quick)
    return EXIT_OK;
  o->consolidate = true;
  return restore_consolidate (cli, o);
}

static int attach_libvirt (const struct restore_opts *o, const char *domain,
                           const char *path, const char *target, bool running);
static char *attach_plan (struct chain_repo *repo, const struct restore_opts *o,
                          const char *domain, const struct domain_info *info,
                          const char *disk, const char *target);

/* The backup's disks that the domain no longer has (detached since):
 * each restored to a new volume and attached again, persistently (the
 * domain is stopped). */
static int
reattach_missing (struct chain_repo *repo, const struct restore_opts *o,
                  const struct domain_info *info,
                  const chain_string_vector *missing,
                  chain_string_vector *notes)
{
  for (size_t i = 0; i < missing->len; i++) {
    const char *disk = missing->ptr[i];
    CLEANUP_FREE char *path
      = attach_plan (repo, o, o->domain, info, disk, disk);
    struct backup_volume_options vo = {
      .vm = o->ro.vm,
      .disk = disk,
      .path = path,
      .quick = o->quick,
      .holder = o->domain,
      .force = o->ro.force,
    };

    if (path == NULL || backup_restore_volume (repo, o->id, &vo, notes) == -1)
      return -1;
    if (attach_libvirt (o, o->domain, path, disk, false) == -1) {
      struct error_saved err;

      error_save (&err);
      if (unlink (path) == -1)
        fprintf (stderr, "knib: warning: cannot remove '%s': %m\n", path);
      error_restore (&err);
      return -1;
    }
    chain_note_add (notes, str_printf ("disk '%s' was no longer attached: "
                                       "restored to '%s' and attached again",
                                       disk, path));
  }
  return 0;
}

int
restore_in_place (struct cli *cli, struct restore_opts *o)
{
  struct restore_state st
    = { .bar = progress_new (!o->common.quiet && !o->common.json),
        .quiet = o->common.quiet || o->common.json };
  struct domain_info info = { 0 };
  chain_string_vector notes = empty_vector, missing = empty_vector;
  struct backup_restore_options bo = {
    .vm = o->ro.vm,
    .quick = o->quick,
    .force = o->ro.force,
    .drop_snapshots = o->drop_snapshots,
    .holder = o->domain,
    .progress = restore_on_progress,
    .opaque = &st,
  };
  struct chain_repo *repo;
  int status = EXIT_FAILURE_;

  cli_catch_signals ();
  repo = chain_repo_open (o->common.repo, false);
  if (repo == NULL)
    goto out;
  if (o->domain != NULL && domain_targets (repo, o, &info, &missing) == -1)
    goto out;
  if (o->domain != NULL && o->quick && check_qemu_reach (repo, o, &info) == -1)
    goto out;
  if (o->domain != NULL) {
    bo.prepare = prepare_domain;
    bo.prepare_opaque = o;
  }
  bo.targets = o->images.ptr;
  bo.n_targets = o->images.len;
  if ((bo.n_targets == 0 && o->domain != NULL && prepare_domain (o) == -1)
      || (bo.n_targets > 0
          && backup_restore_in_place (repo, o->id, &bo, &notes) == -1)
      || reattach_missing (repo, o, &info, &missing, &notes) == -1)
    goto out;
  /* Dropped snapshots: the definition names no backing files of theirs
   * any more (the restored images have none of them). */
  if (o->domain != NULL && o->drop_snapshots
      && libvirt_forget_backing (o->domain) == -1)
    goto out;
  progress_free (st.bar);
  st.bar = NULL;
  status = EXIT_OK;
  if (o->common.json && !o->start)
    print_in_place_json (o, &notes);
  else if (!o->common.quiet)
    print_notes (&notes, o->common.json);
  if (o->quick && o->domain == NULL && !o->common.quiet && !o->common.json)
    printf ("start the VM on these images, then pull the data in: knib "
            "restore --repo %s --consolidate --qmp SOCKET --vm VM --wait\n",
            o->common.repo);
  if (o->domain != NULL && o->start)
    status = start_domain (cli, o);
out:
  if (status == EXIT_FAILURE_ && get_error ()[0] != '\0')
    status = failed (&st, NULL);
  progress_free (st.bar);
  domain_info_release (&info);
  chain_string_vector_release (&notes);
  chain_string_vector_release (&missing);
  chain_repo_free (repo);
  return status;
}

/* ---- Consolidation ---- */

static void
on_consolidation (void *opaque, const struct backup_consolidation *d)
{
  struct restore_state *st = opaque;

  if (d->state == BACKUP_CONSOLIDATION_RUNNING)
    progress_update (st->bar, d->disk, d->done, d->total);
}

static void
print_consolidation_text (const struct restore_opts *o,
                          const backup_consolidation_vector *v)
{
  for (size_t i = 0; i < v->len; i++) {
    const struct backup_consolidation *d = &v->ptr[i];
    const char *state = backup_consolidation_state_name (d->state);

    switch (d->state) {
    case BACKUP_CONSOLIDATION_NONE:
      printf ("%s: %s (it reads no backup)\n", d->disk, state);
      break;
    case BACKUP_CONSOLIDATION_DONE:
      printf ("%s: %s (it no longer depends on the repository)\n", d->disk,
              state);
      break;
    case BACKUP_CONSOLIDATION_RUNNING:
      printf ("%s: %s%s, %" PRIu64 " of %" PRIu64 " bytes\n", d->disk, state,
              d->adopted ? " (adopted)" : "", d->done, d->total);
      break;
    case BACKUP_CONSOLIDATION_PENDING:
    case BACKUP_CONSOLIDATION_FAILED:
      printf ("%s: %s%s%s: it reads '%s'; run 'knib restore --repo %s "
              "--consolidate %s%s%s%s%s'\n",
              d->disk, state, d->error ? ": " : "", d->error ? d->error : "",
              d->backing ? d->backing : "?", o->common.repo,
              o->domain ? "--domain " : "--qmp ",
              o->domain ? o->domain : o->qmp, o->domain ? "" : " --vm ",
              o->domain ? "" : o->ro.vm, " --wait");
      break;
    }
  }
}

static void
print_consolidation_json (const struct restore_opts *o,
                          const backup_consolidation_vector *v,
                          const chain_string_vector *notes)
{
  json_auto_t *disks = json_array ();
  json_auto_t *out = NULL;

  for (size_t i = 0; disks != NULL && i < v->len; i++) {
    const struct backup_consolidation *d = &v->ptr[i];

    json_array_append_new (
      disks,
      json_pack ("{s:s, s:s, s:s, s:s?, s:I, s:I, s:s?, s:b}", "name", d->disk,
                 "state", backup_consolidation_state_name (d->state), "image",
                 d->image, "backing", d->backing, "done", (json_int_t) d->done,
                 "total", (json_int_t) d->total, "error", d->error, "adopted",
                 d->adopted));
  }
  out = json_pack ("{s:s, s:O, s:o}", "vm", o->ro.vm ? o->ro.vm : o->domain,
                   "disks", disks, "notes", notes_json (notes));
  if (out != NULL)
    show_json (out, false);
}

/* A domain's knib QMP socket and its aliases. */
static int
domain_qmp (const char *domain, struct domain_info *info,
            struct backup_rename **renames, size_t *n)
{
  CLEANUP_FREE char *xml = NULL;

  if (libvirt_virsh (&xml, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "dumpxml", domain,
                     NULL)
        == -1
      || domain_info_parse (xml, strlen (xml), info) == -1)
    return -1;
  if (info->qmp == NULL) {
    set_error (0,
               "domain '%s' runs without knib's QMP monitor: run 'knib "
               "libvirt enable %s', then shut the domain down and start it "
               "again",
               domain, domain);
    return -1;
  }
  *renames = calloc (info->disks.len + 1, sizeof **renames);
  if (*renames == NULL)
    return -1;
  *n = 0;
  for (size_t i = 0; i < info->disks.len; i++)
    if (info->disks.ptr[i].alias != NULL) {
      (*renames)[*n].device = info->disks.ptr[i].alias;
      (*renames)[(*n)++].disk = info->disks.ptr[i].target;
    }
  return 0;
}

int
restore_consolidate (struct cli *cli, struct restore_opts *o)
{
  struct restore_state st
    = { .bar = progress_new (o->wait && !o->common.quiet && !o->common.json) };
  backup_consolidation_vector v = empty_vector;
  chain_string_vector notes = empty_vector;
  struct domain_info info = { 0 };
  struct backup_rename *renames = NULL;
  const char **disks = NULL;
  size_t ndisks = 0;
  struct backup_consolidate_options co = {
    .qmp_socket = o->qmp,
    .vm = o->ro.vm ? o->ro.vm : o->domain,
    .start = o->consolidate,
    .speed = o->rate_limit << 20,
    .wait = o->wait,
    .timeout_ms = 60000,
    .progress = on_consolidation,
    .opaque = &st,
    .cancel = &cli_interrupted,
  };
  struct chain_repo *repo;
  int status = EXIT_FAILURE_;

  (void) cli;
  cli_catch_signals ();
  repo = chain_repo_open (o->common.repo, false);
  if (repo == NULL)
    goto fail;
  if (o->domain != NULL
      && domain_qmp (o->domain, &info, &renames, &co.n_renames) == -1)
    goto fail;
  if (o->domain != NULL) {
    co.qmp_socket = info.qmp;
    co.renames = renames;
  }
  if (o->ro.disk != NULL) {
    disks = calloc (strlen (o->ro.disk) + 2, sizeof *disks);
    for (char *p = (char *) o->ro.disk; disks != NULL && p != NULL && *p;) {
      char *end = strchr (p, ',');

      if (end != NULL)
        *end = '\0';
      disks[ndisks++] = p;
      p = end ? end + 1 : NULL;
    }
    co.disks = disks;
  }
  if (backup_consolidate (repo, &co, &v, &notes) == -1)
    goto fail;
  progress_free (st.bar);
  st.bar = NULL;
  if (o->common.json)
    print_consolidation_json (o, &v, &notes);
  else if (!o->common.quiet) {
    print_consolidation_text (o, &v);
    print_notes (&notes, false);
  }
  status = EXIT_OK;
  for (size_t i = 0; o->wait && i < v.len; i++)
    if (v.ptr[i].state == BACKUP_CONSOLIDATION_PENDING
        || v.ptr[i].state == BACKUP_CONSOLIDATION_FAILED)
      status = EXIT_FAILURE_;
  goto out;
fail:
  status = failed (&st, NULL);
out:
  progress_free (st.bar);
  free (disks);
  free (renames);
  domain_info_release (&info);
  backup_consolidation_release (&v);
  chain_string_vector_release (&notes);
  chain_repo_free (repo);
  return status;
}

/* ---- One disk attached to a VM ---- */

int
restore_check_attach (struct restore_opts *o)
{
  if (o->attach != NULL && o->attach_qmp != NULL)
    return cli_usage_error ("restore", "give --attach or --attach-qmp");
  if (o->ro.disk == NULL || strchr (o->ro.disk, ',') != NULL)
    return cli_usage_error ("restore", "--attach and --attach-qmp restore "
                                       "one disk: give --disk DISK");
  if (o->attach_qmp != NULL && o->ro.to == NULL)
    return cli_usage_error ("restore", "--attach-qmp needs --to PATH (the "
                                       "new image)");
  if (o->images.len > 0 || o->domain != NULL || o->stop || o->qmp != NULL)
    return cli_usage_error ("restore", "--attach and --attach-qmp take no "
                                       "--image, --domain, --stop or --qmp");
  if (o->attach_qmp != NULL && (o->start || o->wait))
    return cli_usage_error ("restore", "--start and --wait go with --attach: "
                                       "with --attach-qmp, consolidate with "
                                       "--consolidate --qmp");
  if (o->wait && !o->quick)
    return cli_usage_error ("restore", "--wait goes with --quick");
  if (!cli_name_ok ("disk", o->ro.disk)
      || !cli_name_ok ("disk", o->target ? o->target : o->ro.disk)
      || !cli_name_ok ("domain", o->attach))
    return -1;
  return 0;
}

/* The domain's definition (live when it runs), and whether it runs. */
static int
attach_domain_info (const char *domain, struct domain_info *info, bool *running)
{
  CLEANUP_FREE char *state = domain_state (domain);
  CLEANUP_FREE char *xml = NULL;

  if (state == NULL)
    return -1;
  *running = strcmp (state, "shut off") != 0;
  if (libvirt_virsh (&xml, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "dumpxml", domain,
                     *running ? NULL : "--inactive", NULL)
      == -1)
    return -1;
  return domain_info_parse (xml, strlen (xml), info);
}

/* Check the target name, and choose the new image's path: --to, or
 * "<dir of the first disk>/<vm>-<disk>-<backup>.qcow2". */
static char *
attach_plan (struct chain_repo *repo, const struct restore_opts *o,
             const char *domain, const struct domain_info *info,
             const char *disk, const char *target)
{
  struct chain_manifest *m;
  const char *dir_of = NULL;
  char *path;

  for (size_t i = 0; info != NULL && i < info->disks.len; i++) {
    const struct domain_disk *d = &info->disks.ptr[i];

    if (strcmp (d->target, target) == 0) {
      set_error (-EEXIST,
                 "domain '%s' has a disk '%s' already: choose another "
                 "name with --target",
                 domain, target);
      return NULL;
    }
    if (dir_of == NULL && d->source != NULL && strcmp (d->device, "disk") == 0)
      dir_of = d->source;
  }
  if (o->ro.to != NULL)
    return strdup (o->ro.to);
  if (dir_of == NULL) {
    set_error (-EINVAL,
               "domain '%s' has no file disk to put the new image "
               "beside: give --to PATH",
               o->attach);
    return NULL;
  }
  m = chain_backup_find (repo, o->ro.vm, o->id);
  if (m == NULL)
    return NULL;
  {
    CLEANUP_FREE char *copy = strdup (dir_of);
    char *slash = copy ? strrchr (copy, '/') : NULL;

    if (slash != NULL)
      *slash = '\0';
    path = slash ? str_printf ("%s/%s-%s-%s.qcow2", copy[0] ? copy : "", m->vm,
                               o->ro.disk, m->id)
                 : NULL;
    if (slash == NULL)
      set_error (-EINVAL, "give --to PATH");
  }
  chain_manifest_free (m);
  return path;
}

static int
attach_libvirt (const struct restore_opts *o, const char *domain,
                const char *path, const char *target, bool running)
{
  (void) o;
  return libvirt_virsh (NULL, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "attach-disk",
                        domain, path, target, "--driver", "qemu", "--subdriver",
                        "qcow2", "--targetbus", "virtio",
                        running ? "--persistent" : "--config", NULL);
}

/* A quick restore's disk is pulled in by knib's own monitor: the domain
 * must have it (in its live definition when it runs; a stopped one gets
 * it when it starts). */
static int
check_knib_monitor (const char *domain, const struct domain_info *info)
{
  if (info->qmp != NULL)
    return 0;
  set_error (-EINVAL,
             "domain '%s' has no QMP monitor of knib's, which consolidates "
             "a quick restore: run 'knib libvirt enable %s' (and start the "
             "domain again when it runs), or restore without --quick",
             domain, domain);
  return -1;
}

/* After a disk is attached to a libvirt domain: --start starts a stopped
 * domain; a quick-restored disk of a running domain is consolidated
 * (--wait: until it is done).  The exit status. */
static int
attach_then (struct cli *cli, struct restore_opts *o, const char *target,
             bool running)
{
  const char *disk = o->ro.disk, *vm = o->ro.vm;
  int status = EXIT_OK;

  if (!running && !o->start) {
    if (o->quick && !o->common.quiet && !o->common.json)
      printf ("start the domain, then pull the data in: knib restore "
              "--repo %s --consolidate --domain %s --wait\n",
              o->common.repo, o->attach);
    return EXIT_OK;
  }
  /* The consolidation of the new disk only, under the domain's name. */
  o->domain = o->attach;
  o->ro.disk = target;
  o->ro.vm = NULL;
  if (!running)
    status = start_domain (cli, o);
  else if (o->quick) {
    o->consolidate = true;
    status = restore_consolidate (cli, o);
  }
  o->domain = NULL;
  o->ro.disk = disk;
  o->ro.vm = vm;
  return status;
}

int
restore_attach (struct cli *cli, struct restore_opts *o)
{
  struct restore_state st
    = { .bar = progress_new (!o->common.quiet && !o->common.json),
        .quiet = true };
  const char *target = o->target ? o->target : o->ro.disk;
  struct domain_info info = { 0 };
  chain_string_vector notes = empty_vector;
  struct chain_repo *repo;
  CLEANUP_FREE char *path = NULL;
  bool running = true, restored = false;
  int status = EXIT_FAILURE_, after = EXIT_OK;

  cli_catch_signals ();
  repo = chain_repo_open (o->common.repo, false);
  if (repo == NULL)
    goto out;
  if (o->attach != NULL
      && attach_domain_info (o->attach, &info, &running) == -1)
    goto out;
  path = attach_plan (repo, o, o->attach, o->attach ? &info : NULL, o->ro.disk,
                      target);
  if (path == NULL
      || (o->attach != NULL && o->quick
          && (check_knib_monitor (o->attach, &info) == -1
              || check_qemu_reach (repo, o, &info) == -1)))
    goto out;
  {
    struct backup_volume_options vo = {
      .vm = o->ro.vm,
      .disk = o->ro.disk,
      .path = path,
      .quick = o->quick,
      .holder = o->attach ? o->attach : o->attach_qmp,
      .force = o->ro.force,
      .progress = restore_on_progress,
      .opaque = &st,
    };

    if (backup_restore_volume (repo, o->id, &vo, &notes) == -1)
      goto out;
  }
  restored = true;
  progress_free (st.bar);
  st.bar = NULL;
  if ((o->attach != NULL
       && attach_libvirt (o, o->attach, path, target, running) == -1)
      || (o->attach_qmp != NULL
          && backup_attach_qmp (o->attach_qmp, path, target, 60000) == -1))
    goto out;
  status = EXIT_OK;
  if (o->common.json) {
    json_auto_t *out
      = json_pack ("{s:s, s:s, s:s, s:s, s:b, s:b, s:o}", "backup", o->id,
                   "disk", o->ro.disk, "image", path, "target", target, "quick",
                   o->quick, "live", running, "notes", notes_json (&notes));

    if (out != NULL)
      show_json (out, false);
  }
  else if (!o->common.quiet) {
    print_notes (&notes, false);
    printf ("restored disk '%s' of backup '%s' to '%s' and attached it to "
            "%s '%s' as '%s'%s\n",
            o->ro.disk, o->id, path, o->attach ? "domain" : "the VM at",
            o->attach ? o->attach : o->attach_qmp, target,
            o->attach && !running ? " (persistent: the domain is stopped)"
                                  : "");
  }
  if (o->attach != NULL)
    after = attach_then (cli, o, target, running);
out:
  /* Attaching failed: the new image goes, nothing is left changed. */
  if (status != EXIT_OK)
    status = failed (&st, restored ? path : NULL);
  progress_free (st.bar);
  domain_info_release (&info);
  chain_string_vector_release (&notes);
  chain_repo_free (repo);
  return status != EXIT_OK ? status : after;
}

/* ---- A new domain from the backup's definition ---- */

int
restore_check_new_domain (struct restore_opts *o)
{
  if (o->images.len > 0 || o->domain != NULL || o->attach != NULL
      || o->attach_qmp != NULL || o->ro.to != NULL || o->ro.disk != NULL
      || o->stop || o->qmp != NULL || o->target != NULL)
    return cli_usage_error ("restore", "--new-domain takes no --image, "
                                       "--domain, --attach, --to, --disk, "
                                       "--target, --stop or --qmp");
  if (o->print_xml && (o->start || o->wait))
    return cli_usage_error ("restore", "--print-xml defines nothing: it "
                                       "takes no --start or --wait");
  if (o->wait && !(o->quick && o->start))
    return cli_usage_error ("restore", "--wait goes with --quick --start");
  if (!cli_name_ok ("domain", o->new_domain))
    return -1;
  return 0;
}

/* A random (version 4) UUID from the kernel. */
static int
new_uuid (char uuid[37])
{
  size_t len;
  CLEANUP_FREE char *s
    = fs_read_file ("/proc/sys/kernel/random/uuid", "uuid source", 64, &len);

  if (s == NULL)
    return -1;
  snprintf (uuid, 37, "%.36s", s);
  return 0;
}

/* The stored definition of backup m: beside its images, else vm.json's. */
static char *
stored_definition (struct chain_repo *repo, const struct chain_manifest *m)
{
  char *xml = chain_backup_read_file (repo, m, BACKUP_DEFINITION_FILE);
  struct chain_vm *vm;

  if (xml != NULL || get_errno () != ENOENT)
    return xml;
  vm = chain_vm_load (repo, m->vm);
  xml = vm && vm->definition ? strdup (vm->definition) : NULL;
  if (xml == NULL)
    set_error (-ENOENT,
               "backup %s of vm '%s' has no stored definition (it was not "
               "taken with --domain): restore its disks with --to and "
               "define the domain yourself",
               m->id, m->vm);
  chain_vm_free (vm);
  return xml;
}

/* Where the new disks go: --storage, else beside the original's first
 * disk. */
static char *
storage_dir (const struct restore_opts *o, const struct domain_info *old)
{
  for (size_t i = 0; o->storage == NULL && i < old->disks.len; i++) {
    const struct domain_disk *d = &old->disks.ptr[i];
    char *copy, *slash;

    if (d->source == NULL || strcmp (d->device, "disk") != 0)
      continue;
    copy = strdup (d->source);
    slash = copy ? strrchr (copy, '/') : NULL;
    if (slash != NULL && slash != copy) {
      *slash = '\0';
      return copy;
    }
    free (copy);
  }
  if (o->storage == NULL) {
    set_error (-EINVAL, "give --storage DIR: where the new disks go");
    return NULL;
  }
  return strdup (o->storage);
}

struct new_domain {
  struct chain_manifest *m;
  struct domain_info old;
  char uuid[37];
  char **paths; /* one per disk of m */
  size_t restored;
  char *xml;
};

static void
new_domain_release (struct new_domain *nd, bool remove_images)
{
  for (size_t i = 0; nd->paths && nd->m && i < nd->m->disks.len; i++) {
    if (remove_images && i < nd->restored && unlink (nd->paths[i]) == -1)
      fprintf (stderr, "knib: warning: cannot remove '%s': %m\n", nd->paths[i]);
    free (nd->paths[i]);
  }
  free (nd->paths);
  free (nd->xml);
  domain_info_release (&nd->old);
  chain_manifest_free (nd->m);
}

/* The new definition, with knib's monitor on the new uuid's socket. */
static int
new_domain_plan (struct chain_repo *repo, const struct restore_opts *o,
                 struct new_domain *nd)
{
  CLEANUP_FREE char *stored = NULL, *dir = NULL, *cloned = NULL;
  CLEANUP_FREE char *old_socket = NULL, *socket = NULL, *plain = NULL;
  CLEANUP_FREE struct domain_clone_disk *cd = NULL;
  CLEANUP_FREE char *exists = NULL;
  size_t dropped;

  if (libvirt_virsh (&exists, NULL, LIBVIRT_VIRSH_TIMEOUT_MS, "domuuid",
                     o->new_domain, NULL)
      == 0) {
    set_error (-EEXIST, "a domain '%s' exists already: choose another name",
               o->new_domain);
    return -1;
  }
  error_clear ();
  nd->m = chain_backup_find (repo, o->ro.vm, o->id);
  if (nd->m == NULL || (stored = stored_definition (repo, nd->m)) == NULL
      || domain_info_parse (stored, strlen (stored), &nd->old) == -1
      || (dir = storage_dir (o, &nd->old)) == NULL || new_uuid (nd->uuid) == -1)
    return -1;
  nd->paths = calloc (nd->m->disks.len + 1, sizeof *nd->paths);
  cd = calloc (nd->m->disks.len + 1, sizeof *cd);
  if (nd->paths == NULL || cd == NULL)
    return -1;
  for (size_t i = 0; i < nd->m->disks.len; i++) {
    nd->paths[i] = str_printf ("%s/%s-%s.qcow2", dir, o->new_domain,
                               nd->m->disks.ptr[i].name);
    if (nd->paths[i] == NULL)
      return -1;
    if (access (nd->paths[i], F_OK) == 0) {
      set_error (-EEXIST,
                 "'%s' exists already: choose another --storage or "
                 "domain name",
                 nd->paths[i]);
      return -1;
    }
    cd[i].target = nd->m->disks.ptr[i].name;
    cd[i].path = nd->paths[i];
  }
  if (domain_xml_clone (stored, strlen (stored), o->new_domain, nd->uuid, cd,
                        nd->m->disks.len, &dropped, &cloned)
      == -1)
    return -1;
  /* knib's monitor: off the original's socket, on the new uuid's. */
  socket = domain_qmp_socket (nd->uuid);
  old_socket = nd->old.qmp ? strdup (nd->old.qmp) : NULL;
  if (socket == NULL
      || (old_socket != NULL
          && domain_xml_set_qmp (cloned, strlen (cloned), old_socket, false,
                                 &plain)
               == -1))
    return -1;
  if (domain_xml_set_qmp (plain ? plain : cloned,
                          strlen (plain ? plain : cloned), socket, true,
                          &nd->xml)
      == -1)
    return -1;
  if (nd->xml == NULL)
    nd->xml = strdup (plain ? plain : cloned);
  if (dropped > 0 && !o->print_xml)
    fprintf (stderr,
             "knib: note: %zu disk(s) of the definition are not in backup "
             "%s: the new domain does not get them\n",
             dropped, nd->m->id);
  return nd->xml ? 0 : -1;
}

int
restore_new_domain (struct cli *cli, struct restore_opts *o)
{
  struct restore_state st
    = { .bar = progress_new (!o->common.quiet && !o->common.json),
        .quiet = true };
  struct new_domain nd = { NULL };
  chain_string_vector notes = empty_vector;
  struct chain_repo *repo;
  int status = EXIT_FAILURE_;
  bool defined = false;

  cli_catch_signals ();
  repo = chain_repo_open (o->common.repo, false);
  if (repo == NULL || new_domain_plan (repo, o, &nd) == -1
      || (o->quick && !o->print_xml
          && check_qemu_reach (repo, o, &nd.old) == -1))
    goto out;
  if (o->print_xml) {
    fputs (nd.xml, stdout);
    status = EXIT_OK;
    goto out;
  }
  for (size_t i = 0; i < nd.m->disks.len; i++) {
    struct backup_volume_options vo = {
      .vm = nd.m->vm,
      .disk = nd.m->disks.ptr[i].name,
      .path = nd.paths[i],
      .quick = o->quick,
      .holder = o->new_domain,
      .force = o->ro.force,
      .progress = restore_on_progress,
      .opaque = &st,
    };

    if (backup_restore_volume (repo, nd.m->id, &vo, &notes) == -1)
      goto out;
    nd.restored = i + 1;
  }
  if (libvirt_virsh (NULL, nd.xml, LIBVIRT_VIRSH_TIMEOUT_MS, "define",
                     "/dev/stdin", NULL)
      == -1)
    goto out;
  defined = true;
  progress_free (st.bar);
  st.bar = NULL;
  status = EXIT_OK;
  if (o->common.json) {
    json_auto_t *out = json_pack (
      "{s:s, s:s, s:s, s:b, s:o}", "backup", nd.m->id, "domain", o->new_domain,
      "uuid", nd.uuid, "quick", o->quick, "notes", notes_json (&notes));

    if (out != NULL)
      show_json (out, false);
  }
  else if (!o->common.quiet) {
    print_notes (&notes, false);
    printf ("defined domain '%s' (uuid %s) from backup '%s' of vm '%s'\n",
            o->new_domain, nd.uuid, nd.m->id, nd.m->vm);
  }
  if (o->start) {
    o->domain = o->new_domain;
    status = start_domain (cli, o);
    o->domain = NULL;
  }
out:
  /* After the definition, a failed start said so already. */
  if (status != EXIT_OK && !defined)
    status = failed (&st, NULL);
  progress_free (st.bar);
  new_domain_release (&nd, status != EXIT_OK && !defined);
  chain_string_vector_release (&notes);
  chain_repo_free (repo);
  return status;
}
