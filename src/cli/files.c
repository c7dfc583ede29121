/* SPDX-License-Identifier: Apache-2.0 */
/* files.c: "knib files": list, find, copy out and compare files inside backups. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "chain/chain.h"
#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "files/files.h"
#include "libvirt.h"
#include "progress.h"
#include "qmp/agent.h"
#include "show.h"

struct files_opts {
  const char *cmd; /* "files ls" */
  struct cli_common common;
  struct files_session_options so;
  bool long_, recursive;
  /* get */
  const char *to, *tar;
  bool force, xattrs;
  /* find */
  const char *name;
  bool newer_set;
  int64_t newer;
  int size_cmp; /* -1 less than, 0 exactly, 1 more than */
  int64_t size;
  bool size_set;
  /* diff */
  bool content;
  /* restore */
  const char *domain, *guest_agent;
  char **args;
  int nargs;
};

enum {
  OPT_DISK = CLI_OPT_FIRST,
  OPT_TO,
  OPT_TAR,
  OPT_FORCE,
  OPT_XATTRS,
  OPT_NAME,
  OPT_NEWER,
  OPT_SIZE,
  OPT_CONTENT,
  OPT_ACCEL,
  OPT_DOMAIN,
  OPT_GUEST_AGENT,
};

static void
files_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib files ls   --repo DIR BACKUP [PATH] [-l] [-R] [--json]\n"
    "       knib files get  --repo DIR BACKUP PATH... (--to DIR | --tar "
    "FILE|-)\n"
    "                       [--force] [--xattrs] [--json]\n"
    "       knib files find --repo DIR BACKUP [PATH] [--name GLOB]\n"
    "                       [--newer TIME] [--size [+-]N[KMG]] [--json]\n"
    "       knib files diff --repo DIR BACKUP_A BACKUP_B [PATH] [--content] "
    "[--json]\n"
    "       knib files mount --repo DIR BACKUP MOUNTPOINT\n"
    "       knib files restore --repo DIR BACKUP PATH...\n"
    "                       (--domain NAME | --guest-agent SOCKET)\n"
    "                       [--to GUESTPATH] [--force] [--json]\n"
    "       knib files batch --repo DIR BACKUP [--disk NAME] < COMMANDS\n"
    "\n"
    "Files inside a backup, read by libguestfs in its own small appliance VM\n"
    "(the host never mounts a guest filesystem; the repository is only "
    "read).\n"
    "PATH is DISK:FILESYSTEM:PATH (vda:/dev/sda1:/etc/hosts), "
    "FILESYSTEM:PATH,\n"
    "or /etc/hosts when the backup holds one operating system or one\n"
    "filesystem.  'ls' without PATH lists the filesystems.  'mount' shows\n"
    "them read-only at MOUNTPOINT (sda1/, vg0-lv0/, guest/) until umount\n"
    "or ^C.  'restore' puts regular files back into the running VM through\n"
    "its guest agent (a temporary name, then a rename over the old file).\n"
    "'batch' runs ls, get, find and restore lines from stdin (\"ls -l /etc\",\n"
    "without BACKUP; quotes as in a shell, nothing expanded) on one\n"
    "appliance; its status is the first failing line's.\n"
    "\n"
    "Options:\n"
    "      --repo DIR       the repository\n"
    "      --vm VM          the VM whose backup it is\n"
    "      --disk NAME      only this disk\n"
    "  -l                   long listing (type, mode, owner, size, mtime)\n"
    "  -R                   recursive\n"
    "      --to DIR         copy into DIR (made when missing); restore: the\n"
    "                       guest's path (ending in / for a directory;\n"
    "                       default: the file's own path)\n"
    "      --tar FILE|-     a tar archive: of one directory's contents, or\n"
    "                       of several paths under their base names\n"
    "      --force          replace files that exist in DIR or the guest\n"
    "      --domain NAME    restore: the libvirt domain's guest agent\n"
    "      --guest-agent SOCKET  restore: the guest agent's unix socket\n"
    "      --xattrs         also extended attributes and ACLs\n"
    "      --name GLOB      base names matching GLOB\n"
    "      --newer TIME     modified after TIME (2026-11-23T20:30:15Z or "
    "@SECONDS)\n"
    "      --size [+-]N     size more than, less than or exactly N bytes\n"
    "                       (K, M, G suffixes)\n"
    "      --content        diff: compare checksums of files whose size and\n"
    "                       mtime agree\n"
    "      --accel auto|kvm|tcg  the appliance's accelerator (files-accel)\n"
    "      --json           JSON output\n"
    "  -q, --quiet          no progress\n"
    "  -h, --help           show this help\n");
}

static int
parse_size (const char *s, struct files_opts *o)
{
  char *end;
  long long n;
  int64_t mul = 1;

  o->size_cmp = s[0] == '+' ? 1 : s[0] == '-' ? -1 : 0;
  if (o->size_cmp != 0)
    s++;
  errno = 0;
  n = strtoll (s, &end, 10);
  if (errno != 0 || end == s || n < 0)
    return -1;
  if (*end == 'K' || *end == 'k')
    mul = 1024;
  else if (*end == 'M')
    mul = 1024 * 1024;
  else if (*end == 'G')
    mul = 1024 * 1024 * 1024;
  if (mul != 1)
    end++;
  if (*end != '\0' || n > INT64_MAX / mul)
    return -1;
  o->size = n * mul;
  o->size_set = true;
  return 0;
}

static int
parse_time (const char *s, int64_t *t)
{
  if (s[0] == '@')
    return parse_int64 ("--newer", s + 1, INT64_MIN / 2, INT64_MAX / 2, t);
  return chain_time_parse (s, t);
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
files_parse (struct cli *cli, int argc, char **argv, struct files_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "disk", required_argument, NULL, OPT_DISK },
    { "to", required_argument, NULL, OPT_TO },
    { "tar", required_argument, NULL, OPT_TAR },
    { "force", no_argument, NULL, OPT_FORCE },
    { "xattrs", no_argument, NULL, OPT_XATTRS },
    { "name", required_argument, NULL, OPT_NAME },
    { "newer", required_argument, NULL, OPT_NEWER },
    { "size", required_argument, NULL, OPT_SIZE },
    { "content", no_argument, NULL, OPT_CONTENT },
    { "accel", required_argument, NULL, OPT_ACCEL },
    { "domain", required_argument, NULL, OPT_DOMAIN },
    { "guest-agent", required_argument, NULL, OPT_GUEST_AGENT },
    { "long", no_argument, NULL, 'l' },
    { "recursive", no_argument, NULL, 'R' },
    { NULL, 0, NULL, 0 },
  };
  int c, taken;

  cli_common_init (cli, &o->common);
  if (files_accel_parse (cli->cfg.files_accel, &o->so.accel) == -1)
    return cli_usage_error (o->cmd, "files-accel: %s", get_error ());
  while ((c = getopt_long (argc, argv, "lR" CLI_COMMON_SHORT, opts, NULL))
         != -1) {
    taken = cli_common_option (o->cmd, c, optarg, &o->common);
    if (taken == -1)
      return -1;
    if (o->common.help)
      return 0;
    if (taken)
      continue;
    switch (c) {
    case OPT_DISK:
      if (!cli_name_ok ("disk", optarg))
        return -1;
      o->so.disk = optarg;
      break;
    case OPT_TO:
      o->to = optarg;
      break;
    case OPT_TAR:
      o->tar = optarg;
      break;
    case OPT_FORCE:
      o->force = true;
      break;
    case OPT_XATTRS:
      o->xattrs = true;
      break;
    case OPT_NAME:
      o->name = optarg;
      break;
    case OPT_NEWER:
      if (parse_time (optarg, &o->newer) == -1)
        return cli_usage_error (o->cmd,
                                "--newer '%s': a time such as "
                                "2026-11-23T20:30:15Z or @SECONDS",
                                optarg);
      o->newer_set = true;
      break;
    case OPT_SIZE:
      if (parse_size (optarg, o) == -1)
        return cli_usage_error (o->cmd, "--size '%s': [+-]N[K|M|G]", optarg);
      break;
    case OPT_CONTENT:
      o->content = true;
      break;
    case OPT_ACCEL:
      if (files_accel_parse (optarg, &o->so.accel) == -1)
        return cli_usage_error (o->cmd, "--accel: %s", get_error ());
      break;
    case OPT_DOMAIN:
      if (!cli_name_ok ("domain", optarg))
        return -1;
      o->domain = optarg;
      break;
    case OPT_GUEST_AGENT:
      o->guest_agent = optarg;
      break;
    case 'l':
      o->long_ = true;
      break;
    case 'R':
      o->recursive = true;
      break;
    default:
      return cli_usage_error (o->cmd, "unknown option");
    }
  }
  o->args = argv + optind;
  o->nargs = argc - optind;
  if (cli_common_check (o->cmd, &o->common, true, false) == -1)
    return -1;
  if (o->nargs < 1)
    return cli_usage_error (o->cmd, "no BACKUP given");
  o->so.vm = o->common.vm;
  return 0;
}

/* -v says how the appliance runs; a removed backup is noted. */
static void
session_notes (struct cli *cli, struct files_session *s)
{
  const struct chain_manifest *m = files_session_manifest (s);

  if (cli->verbose)
    fprintf (stderr,
             "knib: backup '%s': libguestfs appliance with %s, started in "
             "%.1f s\n",
             m->id, files_accel_name (files_session_accel (s)),
             files_session_launch_seconds (s));
  if (m->state == CHAIN_STATE_REMOVED)
    fprintf (stderr,
             "knib: note: backup '%s' is marked removed (deleted, kept while "
             "later backups need it)\n",
             m->id);
}

/* -v: which accelerator the appliance gets, and why. */
static void
say_accel (struct cli *cli, const struct files_opts *o)
{
  const char *why;
  enum files_accel a = files_accel_resolve (o->so.accel, &why);

  if (cli->verbose)
    fprintf (stderr, "knib: appliance accelerator: %s (%s)\n",
             files_accel_name (a), why);
}

/* "files batch": the one session every command of the batch uses. */
static struct files_session *batch_session;

static struct files_session *
open_session (struct cli *cli, struct chain_repo *repo, struct files_opts *o,
              const char *id)
{
  struct files_session *s;

  if (batch_session != NULL)
    return batch_session;

  say_accel (cli, o);
  s = files_session_new (repo, id, &o->so);
  if (s == NULL) {
    cli_error ("%s", "");
    return NULL;
  }
  session_notes (cli, s);
  return s;
}

/* The end of a command's use of its session (the batch's lives on). */
static void
session_done (struct files_session *s)
{
  if (s != batch_session)
    files_session_free (s);
}

static void
format_mode (const struct files_entry *e, char out[11])
{
  static const char rwx[] = "rwxrwxrwx";

  out[0] = files_type_letter (e->type);
  for (int i = 0; i < 9; i++)
    out[i + 1] = e->mode & (0400u >> i) ? rwx[i] : '-';
  if (e->mode & 04000)
    out[3] = out[3] == 'x' ? 's' : 'S';
  if (e->mode & 02000)
    out[6] = out[6] == 'x' ? 's' : 'S';
  if (e->mode & 01000)
    out[9] = out[9] == 'x' ? 't' : 'T';
  out[10] = '\0';
}

static json_t *
entry_json (const struct files_entry *e)
{
  char t[CHAIN_TIME_MAX], mode[8];
  json_t *j;

  chain_time_format (e->mtime_sec, t);
  snprintf (mode, sizeof mode, "%04o", (unsigned) e->mode);
  j = json_pack ("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:I}", "path", e->path,
                 "type", files_type_name (e->type), "mode", mode, "uid",
                 (json_int_t) e->uid, "gid", (json_int_t) e->gid, "size",
                 (json_int_t) e->size, "mtime", t, "mtime_nsec",
                 (json_int_t) e->mtime_nsec);
  if (j != NULL && e->target != NULL)
    json_object_set_new (j, "target", json_string (e->target));
  return j;
}

static void
print_entry (const struct files_entry *e, const char *name, bool long_)
{
  char mode[11], t[CHAIN_TIME_MAX];

  if (!long_) {
    printf ("%s\n", name);
    return;
  }
  format_mode (e, mode);
  chain_time_format (e->mtime_sec, t);
  printf ("%s %5" PRId64 " %5" PRId64 " %12" PRId64 " %s %s%s%s\n", mode,
          e->uid, e->gid, e->size, t, name, e->target ? " -> " : "",
          e->target ? e->target : "");
}

static int
print_entries (const struct files_opts *o, const struct files_path *p,
               const files_entry_vector *v)
{
  size_t skip = strcmp (p->path, "/") == 0 ? 1 : strlen (p->path) + 1;

  if (o->common.json) {
    json_auto_t *arr = json_array ();
    json_auto_t *out = NULL;

    for (size_t i = 0; arr && i < v->len; i++)
      json_array_append_new (arr, entry_json (&v->ptr[i]));
    out = json_pack ("{s:s, s:O}", "path", p->display, "entries", arr);
    show_json (out, false);
    return 0;
  }
  for (size_t i = 0; i < v->len; i++)
    print_entry (&v->ptr[i],
                 o->recursive ? v->ptr[i].path + skip
                              : strrchr (v->ptr[i].path, '/') + 1,
                 o->long_);
  return 0;
}

static int
ls_filesystems (struct files_session *s, const struct files_opts *o)
{
  files_fs_vector v = empty_vector;

  if (files_session_filesystems (s, &v) == -1) {
    cli_error ("%s", "");
    return EXIT_FAILURE_;
  }
  if (o->common.json) {
    json_auto_t *arr = json_array ();
    json_auto_t *out = NULL;

    for (size_t i = 0; arr && i < v.len; i++)
      json_array_append_new (
        arr,
        json_pack ("{s:o, s:s, s:s, s:s, s:s, s:s}", "disk",
                   v.ptr[i].disk ? json_string (v.ptr[i].disk) : json_null (),
                   "device", v.ptr[i].device, "type", v.ptr[i].type, "label",
                   v.ptr[i].label, "uuid", v.ptr[i].uuid, "mountpoint",
                   v.ptr[i].mountpoint));
    out = json_pack ("{s:s, s:O}", "backup", files_session_manifest (s)->id,
                     "filesystems", arr);
    show_json (out, false);
  }
  else {
    printf ("%-6s %-24s %-8s %-16s %s\n", "DISK", "FILESYSTEM", "TYPE", "LABEL",
            "MOUNTPOINT");
    for (size_t i = 0; i < v.len; i++)
      printf ("%-6s %-24s %-8s %-16s %s\n",
              v.ptr[i].disk ? v.ptr[i].disk : "lvm", v.ptr[i].device,
              v.ptr[i].type, v.ptr[i].label[0] ? v.ptr[i].label : "-",
              v.ptr[i].mountpoint[0] ? v.ptr[i].mountpoint : "-");
  }
  files_fs_vector_release (&v);
  return EXIT_OK;
}

static int
run_ls (struct cli *cli, struct chain_repo *repo, struct files_opts *o)
{
  struct files_session *s;
  struct files_path p;
  struct files_entry e;
  files_entry_vector v = empty_vector;
  int status = EXIT_FAILURE_;

  if (o->nargs > 2) {
    cli_usage_error (o->cmd, "unexpected argument '%s'", o->args[2]);
    return EXIT_USAGE;
  }
  s = open_session (cli, repo, o, o->args[0]);
  if (s == NULL)
    return EXIT_FAILURE_;
  if (o->nargs == 1) {
    status = ls_filesystems (s, o);
    session_done (s);
    return status;
  }
  if (files_session_resolve (s, o->args[1], &p) == -1) {
    cli_error ("%s", "");
    session_done (s);
    return EXIT_FAILURE_;
  }
  if (files_session_stat (s, &p, &e) == -1)
    cli_error ("%s", "");
  else {
    int r = 0;

    if (e.type == FILES_DIRECTORY)
      r = files_session_list (s, &p, o->recursive, &v);
    else {
      r = files_entry_vector_append (&v, e);
      if (r == 0)
        memset (&e, 0, sizeof e);
    }
    if (r == -1)
      cli_error ("%s", "");
    else {
      if (e.type != FILES_DIRECTORY && !o->common.json) {
        print_entry (&v.ptr[0], p.display, o->long_);
        status = EXIT_OK;
      }
      else
        status = print_entries (o, &p, &v);
    }
    files_entry_release (&e);
  }
  files_entry_vector_release (&v);
  files_path_release (&p);
  session_done (s);
  return status;
}

/* ---- get ---- */

struct get_progress {
  struct progress *bar;
  const char *path;
};

static void
on_get_progress (const struct files_get_status *st, void *opaque)
{
  struct get_progress *g = opaque;
  char label[64];

  snprintf (label, sizeof label, "%" PRIu64 "/%" PRIu64 " files", st->files,
            st->total_files);
  progress_update (g->bar, label, st->bytes, st->total_bytes);
}

static int
open_to_dir (const char *dir)
{
  int fd;

  if (mkdir (dir, 0700) == -1 && errno != EEXIST) {
    set_error (errno, "--to '%s'", dir);
    return -1;
  }
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1)
    set_error (errno, "--to '%s'", dir);
  return fd;
}

static int
get_tar (struct files_session *s, struct files_opts *o)
{
  struct files_path *ps = calloc (o->nargs - 1, sizeof *ps);
  CLEANUP_CLOSE int fd = -1;
  int r = -1, n = 0;

  if (ps == NULL) {
    set_error (ENOMEM, "--tar");
    cli_error ("%s", "");
    return EXIT_FAILURE_;
  }
  if (strcmp (o->tar, "-") == 0)
    fd = dup (STDOUT_FILENO);
  else
    fd = open (o->tar,
               O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW
                 | (o->force ? O_TRUNC : O_EXCL),
               0600);
  if (fd == -1) {
    set_error (errno, "--tar '%s'%s", o->tar,
               errno == EEXIST ? " (--force replaces it)" : "");
    goto out;
  }
  for (n = 0; n < o->nargs - 1; n++)
    if (files_session_resolve (s, o->args[n + 1], &ps[n]) == -1)
      goto out;
  /* One directory: the appliance's own tar, names relative to it. */
  if (n == 1)
    r = files_session_tar (s, &ps[0], fd, o->xattrs);
  else
    r = files_session_tar_paths (s, ps, n, fd, o->xattrs);
out:
  if (r == -1)
    cli_error ("%s", "");
  else if (o->common.json && strcmp (o->tar, "-") != 0) {
    json_auto_t *paths = json_array ();
    json_auto_t *j = NULL;

    for (int i = 1; paths != NULL && i < o->nargs; i++)
      json_array_append_new (paths, json_string (o->args[i]));
    j = json_pack ("{s:s, s:O}", "tar", o->tar, "paths", paths);
    show_json (j, false);
  }
  while (n > 0)
    files_path_release (&ps[--n]);
  free (ps);
  return r == -1 ? EXIT_FAILURE_ : EXIT_OK;
}

static int
run_get (struct cli *cli, struct chain_repo *repo, struct files_opts *o)
{
  struct get_progress gp = { NULL, NULL };
  struct files_get_options go = { o->force, o->xattrs, on_get_progress, &gp };
  struct files_session *s;
  CLEANUP_CLOSE int dirfd = -1;
  json_auto_t *done = json_array ();
  size_t failed = 0;
  double t0 = monotonic_seconds ();

  if (o->nargs < 2) {
    cli_usage_error (o->cmd, "no PATH given");
    return EXIT_USAGE;
  }
  if ((o->to == NULL) == (o->tar == NULL)) {
    cli_usage_error (o->cmd, "give one of --to DIR and --tar FILE");
    return EXIT_USAGE;
  }
  if (o->to != NULL) {
    dirfd = open_to_dir (o->to);
    if (dirfd == -1) {
      cli_error ("%s", "");
      return EXIT_FAILURE_;
    }
  }
  s = open_session (cli, repo, o, o->args[0]);
  if (s == NULL)
    return EXIT_FAILURE_;
  if (o->tar != NULL) {
    int status = get_tar (s, o);

    session_done (s);
    return status;
  }
  gp.bar = progress_new (!o->common.quiet && !o->common.json);
  for (int i = 1; i < o->nargs; i++) {
    struct files_path p;
    int r = files_session_resolve (s, o->args[i], &p);

    if (r == 0) {
      r = files_session_get (s, &p, dirfd, &go);
      files_path_release (&p);
    }
    if (r == -1) {
      progress_free (gp.bar);
      gp.bar = progress_new (!o->common.quiet && !o->common.json);
      cli_error ("%s", "");
      failed++;
    }
    if (done != NULL)
      json_array_append_new (
        done, json_pack ("{s:s, s:b}", "path", o->args[i], "ok", r == 0));
  }
  progress_free (gp.bar);
  if (o->common.json) {
    json_auto_t *out = json_pack ("{s:s, s:O, s:I}", "to", o->to, "paths", done,
                                  "failed", (json_int_t) failed);

    show_json (out, false);
  }
  else if (!o->common.quiet)
    printf ("copied %d of %d path%s to '%s' in %.1f s\n",
            o->nargs - 1 - (int) failed, o->nargs - 1, o->nargs == 2 ? "" : "s",
            o->to, monotonic_seconds () - t0);
  session_done (s);
  return failed == 0 ? EXIT_OK : EXIT_FAILURE_;
}

/* ---- find ---- */

static bool
matches (const struct files_opts *o, const struct files_entry *e)
{
  const char *base = strrchr (e->path, '/') + 1;

  if (o->name != NULL && fnmatch (o->name, base, 0) != 0)
    return false;
  if (o->newer_set && e->mtime_sec <= o->newer)
    return false;
  if (o->size_set
      && (e->type != FILES_REGULAR || (o->size_cmp > 0 && !(e->size > o->size))
          || (o->size_cmp < 0 && !(e->size < o->size))
          || (o->size_cmp == 0 && e->size != o->size)))
    return false;
  return true;
}

static int
run_find (struct cli *cli, struct chain_repo *repo, struct files_opts *o)
{
  struct files_session *s;
  struct files_path p;
  files_entry_vector v = empty_vector, hits = empty_vector;
  int status = EXIT_FAILURE_;

  if (o->nargs > 2) {
    cli_usage_error (o->cmd, "unexpected argument '%s'", o->args[2]);
    return EXIT_USAGE;
  }
  s = open_session (cli, repo, o, o->args[0]);
  if (s == NULL)
    return EXIT_FAILURE_;
  if (files_session_resolve (s, o->nargs == 2 ? o->args[1] : "/", &p) == -1) {
    cli_error ("%s", "");
    session_done (s);
    return EXIT_FAILURE_;
  }
  if (files_session_list (s, &p, true, &v) == -1)
    cli_error ("%s", "");
  else {
    for (size_t i = 0; i < v.len; i++)
      if (matches (o, &v.ptr[i])
          && files_entry_vector_append (&hits, v.ptr[i]) == 0)
        memset (&v.ptr[i], 0, sizeof v.ptr[i]);
    if (o->common.json)
      print_entries (o, &p, &hits);
    else
      for (size_t i = 0; i < hits.len; i++)
        print_entry (&hits.ptr[i], hits.ptr[i].path, o->long_);
    status = EXIT_OK;
  }
  files_entry_vector_release (&v);
  files_entry_vector_release (&hits);
  files_path_release (&p);
  session_done (s);
  return status;
}

/* ---- diff ---- */

static void
what_names (unsigned what, char *buf, size_t len)
{
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {
    { FILES_DIFF_TYPE, "type" },       { FILES_DIFF_SIZE, "size" },
    { FILES_DIFF_MODE, "mode" },       { FILES_DIFF_OWNER, "owner" },
    { FILES_DIFF_MTIME, "mtime" },     { FILES_DIFF_TARGET, "target" },
    { FILES_DIFF_CONTENT, "content" },
  };
  size_t n = 0;

  buf[0] = '\0';
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (what & names[i].bit)
      n += (size_t) snprintf (buf + n, len - n, "%s%s", n ? "," : "",
                              names[i].name);
}

/* --content: entries whose metadata agree but whose bytes differ. */
static int
diff_content (struct files_session *sa, const struct files_path *pa,
              struct files_session *sb, const struct files_path *pb,
              const files_entry_vector *a, const files_entry_vector *b,
              files_diff_vector *out)
{
  size_t i = 0, j = 0;

  while (i < a->len && j < b->len) {
    const struct files_entry *x = &a->ptr[i], *y = &b->ptr[j];
    int c = strcmp (x->path, y->path);

    if (c < 0)
      i++;
    else if (c > 0)
      j++;
    else {
      i++;
      j++;
      if (x->type == FILES_REGULAR && y->type == FILES_REGULAR
          && x->size == y->size && x->mtime_sec == y->mtime_sec
          && x->mtime_nsec == y->mtime_nsec) {
        CLEANUP_FREE char *ha = files_session_checksum (sa, pa, x->path);
        CLEANUP_FREE char *hb = files_session_checksum (sb, pb, y->path);
        struct files_diff_item it = { FILES_CHANGED, x, y, 0 };
        bool found = false;

        if (ha == NULL || hb == NULL)
          return -1;
        if (strcmp (ha, hb) == 0)
          continue;
        for (size_t k = 0; k < out->len; k++)
          if (out->ptr[k].a == x) {
            out->ptr[k].what |= FILES_DIFF_CONTENT;
            found = true;
          }
        it.what = FILES_DIFF_CONTENT;
        if (!found && files_diff_vector_append (out, it) == -1) {
          set_error (ENOMEM, "diff");
          return -1;
        }
      }
    }
  }
  return 0;
}

static int
compare_items (const void *x, const void *y)
{
  const struct files_diff_item *a = x, *b = y;

  return strcmp (a->a ? a->a->path : a->b->path,
                 b->a ? b->a->path : b->b->path);
}

static void
print_diff (const struct files_opts *o, const files_diff_vector *d)
{
  json_auto_t *arr = o->common.json ? json_array () : NULL;

  for (size_t i = 0; i < d->len; i++) {
    const struct files_diff_item *it = &d->ptr[i];
    const struct files_entry *e = it->b ? it->b : it->a;
    char what[80];

    what_names (it->what, what, sizeof what);
    if (arr != NULL) {
      json_t *j = json_pack ("{s:s, s:s}", "change",
                             files_change_name (it->change), "path", e->path);

      if (j && it->change == FILES_CHANGED)
        json_object_set_new (j, "what", json_string (what));
      if (j && it->a)
        json_object_set_new (j, "a", entry_json (it->a));
      if (j && it->b)
        json_object_set_new (j, "b", entry_json (it->b));
      json_array_append_new (arr, j);
    }
    else
      printf ("%-8s %-10s %s%s%s\n", files_change_name (it->change),
              it->change == FILES_CHANGED ? what : files_type_name (e->type),
              e->path, e->target ? " -> " : "", e->target ? e->target : "");
  }
  if (arr != NULL) {
    json_auto_t *out = json_pack ("{s:s, s:s, s:O}", "a", o->args[0], "b",
                                  o->args[1], "changes", arr);

    show_json (out, false);
  }
}

static int
run_diff (struct cli *cli, struct chain_repo *repo, struct files_opts *o)
{
  struct files_session *sa, *sb;
  struct files_path pa = { NULL }, pb = { NULL };
  files_entry_vector a = empty_vector, b = empty_vector;
  files_diff_vector d = empty_vector;
  const char *path;
  int status = EXIT_FAILURE_;

  if (o->nargs < 2) {
    cli_usage_error (o->cmd, "give two backups");
    return EXIT_USAGE;
  }
  if (o->nargs > 3) {
    cli_usage_error (o->cmd, "unexpected argument '%s'", o->args[3]);
    return EXIT_USAGE;
  }
  path = o->nargs == 3 ? o->args[2] : "/";
  say_accel (cli, o);
  if (files_session_new_pair (repo, o->args[0], o->args[1], &o->so, &sa, &sb)
      == -1) {
    cli_error ("%s", "");
    return EXIT_FAILURE_;
  }
  session_notes (cli, sa);
  session_notes (cli, sb);
  if (files_session_resolve (sa, path, &pa) == -1
      || files_session_resolve (sb, path, &pb) == -1
      || files_session_list (sa, &pa, true, &a) == -1
      || files_session_list (sb, &pb, true, &b) == -1
      || files_diff (&a, &b, &d) == -1
      || (o->content && diff_content (sa, &pa, sb, &pb, &a, &b, &d) == -1))
    cli_error ("%s", "");
  else {
    if (d.len > 1)
      qsort (d.ptr, d.len, sizeof d.ptr[0], compare_items);
    print_diff (o, &d);
    status = EXIT_OK;
  }
  files_diff_vector_reset (&d);
  files_entry_vector_release (&a);
  files_entry_vector_release (&b);
  files_path_release (&pa);
  files_path_release (&pb);
  files_session_free (sa);
  files_session_free (sb);
  return status;
}

/* ---- mount ---- */

struct mount_watch {
  sigset_t set;
  const char *mountpoint;
  int sig;
  volatile sig_atomic_t done; /* the view ended: only stop */
};

/* Waits for ^C, SIGTERM or SIGHUP (blocked in every other thread) and
 * unmounts the view, which ends the FUSE loop. */
static void *
mount_watch_thread (void *opaque)
{
  struct mount_watch *w = opaque;

  if (sigwait (&w->set, &w->sig) == 0 && !w->done
      && files_umount_local (w->mountpoint) == -1)
    cli_error ("unmount");
  return NULL;
}

static int
run_mount (struct cli *cli, struct chain_repo *repo, struct files_opts *o)
{
  struct mount_watch w = { .mountpoint = NULL };
  struct files_session *s;
  pthread_t t;
  bool cleaned;
  int status = EXIT_OK;

  if (o->nargs != 2) {
    cli_usage_error (o->cmd, "give BACKUP and MOUNTPOINT");
    return EXIT_USAGE;
  }
  w.mountpoint = o->args[1];
  if (files_clean_stale_mount (w.mountpoint, &cleaned) == -1) {
    cli_error ("%s", "");
    return EXIT_FAILURE_;
  }
  if (cleaned)
    fprintf (stderr, "knib: note: removed a stale mount at '%s'\n",
             w.mountpoint);
  sigemptyset (&w.set);
  sigaddset (&w.set, SIGINT);
  sigaddset (&w.set, SIGTERM);
  sigaddset (&w.set, SIGHUP);
  pthread_sigmask (SIG_BLOCK, &w.set, NULL);
  s = open_session (cli, repo, o, o->args[0]);
  if (s == NULL)
    return EXIT_FAILURE_;
  if (files_session_mount_local (s, w.mountpoint) == -1) {
    cli_error ("%s", "");
    session_done (s);
    return EXIT_FAILURE_;
  }
  if (o->common.json) {
    json_auto_t *j = json_pack ("{s:s, s:s}", "backup", o->args[0],
                                "mountpoint", w.mountpoint);

    show_json (j, true);
  }
  else
    printf ("backup '%s' is mounted read-only at '%s' (umount or ^C ends "
            "it)\n",
            o->args[0], w.mountpoint);
  fflush (stdout);
  if (pthread_create (&t, NULL, mount_watch_thread, &w) != 0) {
    set_error (errno, "thread");
    cli_error ("%s", "");
    status = EXIT_FAILURE_;
    if (files_umount_local (w.mountpoint) == -1)
      cli_error ("unmount");
  }
  if (files_session_mount_run (s) == -1) {
    cli_error ("%s", "");
    status = EXIT_FAILURE_;
  }
  if (status == EXIT_OK) {
    /* Unmounted (by the watcher or the user): let the watcher end. */
    w.done = 1;
    pthread_kill (t, SIGHUP);
    pthread_join (t, NULL);
  }
  session_done (s);
  return status;
}

/* ---- restore ---- */

/* How long one guest agent command may take unless --timeout says. */
#define RESTORE_AGENT_TIMEOUT_MS 60000

struct restore_agent {
  struct qga_client *qga; /* --guest-agent */
  const char *domain;     /* --domain: libvirt's channel, through virsh */
  int timeout_ms;
};

static int
restore_agent_call (void *opaque, const char *command, json_t *args,
                    json_t **result)
{
  struct restore_agent *a = opaque;
  CLEANUP_FREE char *text = NULL, *out = NULL;
  char timeout[32];
  json_t *req, *reply;

  if (a->qga != NULL)
    return qga_client_execute (a->qga, command, args, result);
  if (result != NULL)
    *result = NULL;
  req = json_pack ("{s:s}", "execute", command);
  if (req != NULL && args != NULL)
    json_object_set_new (req, "arguments", args);
  else
    json_decref (args);
  text = req ? json_dumps (req, JSON_COMPACT) : NULL;
  json_decref (req);
  if (text == NULL) {
    set_error (ENOMEM, "guest agent '%s'", command);
    return -1;
  }
  snprintf (timeout, sizeof timeout, "%d",
            a->timeout_ms < 0 ? -1 : (a->timeout_ms + 999) / 1000);
  if (libvirt_virsh (&out, NULL, a->timeout_ms < 0 ? -1 : a->timeout_ms + 5000,
                     "qemu-agent-command", a->domain, text, "--timeout",
                     timeout, NULL)
      == -1) {
    error_prepend ("guest agent '%s' of domain '%s'", command, a->domain);
    return -1;
  }
  reply = json_loads (out, 0, NULL);
  if (!json_is_object (reply)) {
    json_decref (reply);
    set_error (-EPROTO, "guest agent '%s' of domain '%s': not JSON: %.200s",
               command, a->domain, out);
    return -1;
  }
  if (result != NULL)
    *result = json_incref (json_object_get (reply, "return"));
  json_decref (reply);
  return 0;
}

/* Where path goes in the guest: --to, --to/ + its base name, or its own
 * path (the part after the last ':'). */
static char *
restore_target (const struct files_opts *o, const char *spec)
{
  const char *colon = strrchr (spec, ':');
  const char *path = colon ? colon + 1 : spec;
  const char *base = strrchr (path, '/');
  CLEANUP_FREE char *norm = NULL;

  base = base ? base + 1 : path;
  if (o->to == NULL)
    return files_normalise (path);
  if (o->to[0] != '\0' && o->to[strlen (o->to) - 1] == '/') {
    CLEANUP_FREE char *joined = str_printf ("%s%s", o->to, base);

    return joined ? files_normalise (joined) : NULL;
  }
  return files_normalise (o->to);
}

static void
on_restore_progress (const struct files_get_status *st, void *opaque)
{
  struct get_progress *g = opaque;

  progress_update (g->bar, g->path, st->bytes, st->total_bytes);
}

static int
run_restore (struct cli *cli, struct chain_repo *repo, struct files_opts *o)
{
  struct restore_agent agent = { NULL, o->domain, RESTORE_AGENT_TIMEOUT_MS };
  struct get_progress gp = { NULL, NULL };
  struct files_restore_options ro
    = { restore_agent_call, &agent, on_restore_progress, &gp };
  struct files_session *s = NULL;
  chain_string_vector targets = empty_vector;
  json_auto_t *done = json_array ();
  int npaths = o->nargs - 1, failed = 0, status = EXIT_FAILURE_;

  if (o->nargs < 2) {
    cli_usage_error (o->cmd, "no PATH given");
    return EXIT_USAGE;
  }
  if ((o->domain == NULL) == (o->guest_agent == NULL)) {
    cli_usage_error (o->cmd, "give one of --domain NAME and --guest-agent "
                             "SOCKET");
    return EXIT_USAGE;
  }
  if (o->tar != NULL || o->xattrs) {
    cli_usage_error (o->cmd, "--tar and --xattrs are for 'files get'");
    return EXIT_USAGE;
  }
  if (o->to != NULL && (o->to[0] != '/' || strstr (o->to, "/../") != NULL)) {
    cli_usage_error (o->cmd, "--to '%s': an absolute guest path", o->to);
    return EXIT_USAGE;
  }
  if (npaths > 1 && o->to != NULL && o->to[strlen (o->to) - 1] != '/') {
    cli_usage_error (o->cmd, "several PATHs go to a directory: --to DIR/");
    return EXIT_USAGE;
  }
  for (int i = 1; i < o->nargs; i++) {
    char *t = restore_target (o, o->args[i]);

    if (t == NULL || chain_string_vector_append (&targets, t) == -1) {
      free (t);
      cli_error ("%s", "");
      goto out;
    }
  }
  if (o->common.timeout_set)
    agent.timeout_ms = o->common.timeout_ms;
  cli_catch_signals ();
  /* The guest first: no appliance starts for a guest that cannot take
   * the files. */
  if (o->guest_agent != NULL) {
    agent.qga = qga_client_connect (o->guest_agent, QGA_SYNC_TIMEOUT_MS,
                                    agent.timeout_ms, &cli_interrupted);
    if (agent.qga == NULL) {
      error_prepend ("restore");
      cli_error ("%s", "");
      goto out;
    }
  }
  if (files_guest_check (&ro) == -1) {
    error_prepend ("restore into %s '%s'",
                   o->domain ? "domain" : "the guest of",
                   o->domain ? o->domain : o->guest_agent);
    cli_error ("%s", "");
    goto out;
  }
  for (size_t i = 0; !o->force && i < targets.len; i++) {
    int r = files_guest_exists (&ro, targets.ptr[i]);

    if (r != 0) {
      if (r == 1)
        set_error (-EEXIST, "'%s' exists in the guest (--force replaces it)",
                   targets.ptr[i]);
      error_prepend ("restore");
      cli_error ("%s", "");
      goto out;
    }
  }
  s = open_session (cli, repo, o, o->args[0]);
  if (s == NULL)
    goto out;
  for (int i = 1; i < o->nargs; i++) {
    const char *target = targets.ptr[i - 1];
    struct files_path p;
    double t0 = monotonic_seconds ();
    struct files_entry e = { NULL };
    int r = files_session_resolve (s, o->args[i], &p);

    if (r == 0) {
      gp.path = p.display;
      gp.bar = progress_new (!o->common.quiet && !o->common.json);
      r = files_session_restore (s, &p, target, &ro);
      progress_free (gp.bar);
      gp.bar = NULL;
      if (r == 0)
        r = files_session_stat (s, &p, &e);
      files_path_release (&p);
    }
    if (r == -1) {
      cli_error ("%s", "");
      failed++;
    }
    else if (!o->common.json && !o->common.quiet) {
      double secs = monotonic_seconds () - t0;
      char size[32], rate[32];

      progress_format_bytes ((uint64_t) e.size, size, sizeof size);
      progress_format_bytes (secs > 0 ? (uint64_t) (e.size / secs) : 0, rate,
                             sizeof rate);
      printf ("restored '%s' to '%s' in the guest: %s in %.1f s (%s/s), "
              "mode %04o, owner %" PRId64 ":%" PRId64 "\n",
              o->args[i], target, size, secs, rate, (unsigned) e.mode, e.uid,
              e.gid);
    }
    if (done != NULL)
      json_array_append_new (
        done,
        json_pack ("{s:s, s:s, s:b, s:I}", "path", o->args[i], "to", target,
                   "ok", r == 0, "bytes", (json_int_t) (r == 0 ? e.size : 0)));
    files_entry_release (&e);
    if (r == -1 && cli_interrupted)
      break;
  }
  if (o->common.json) {
    json_auto_t *j = json_pack ("{s:s, s:O, s:I}", "backup", o->args[0],
                                "paths", done, "failed", (json_int_t) failed);

    show_json (j, false);
  }
  status = failed == 0 ? EXIT_OK : EXIT_FAILURE_;
out:
  session_done (s);
  qga_client_free (agent.qga);
  chain_string_vector_release (&targets);
  return status;
}

/* ---- batch ---- */

/* Split line into words: blanks separate, '...' and "..." quote (a
 * backslash escapes " and \ inside double quotes), a backslash outside
 * quotes takes the next character as it is.  Nothing is expanded.  -1
 * with set_error on an open quote. */
static int
split_words (const char *line, chain_string_vector *out)
{
  const char *p = line;

  for (;;) {
    char *w, *q;
    bool any = false;

    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0' || *p == '\n')
      return 0;
    w = q = malloc (strlen (p) + 1);
    if (w == NULL) {
      set_error (ENOMEM, "batch");
      return -1;
    }
    while (*p != '\0' && *p != '\n' && *p != ' ' && *p != '\t') {
      any = true;
      if (*p == '\'' || *p == '"') {
        char quote = *p++;

        while (*p != quote && *p != '\0') {
          if (quote == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
            p++;
          *q++ = *p++;
        }
        if (*p == '\0') {
          free (w);
          set_error (-EINVAL, "an unterminated %c quote", quote);
          return -1;
        }
        p++;
      }
      else if (*p == '\\' && p[1] != '\0')
        *q++ = *++p, p++;
      else
        *q++ = *p++;
    }
    *q = '\0';
    if (!any || chain_string_vector_append (out, w) == -1) {
      free (w);
      if (any) {
        set_error (ENOMEM, "batch");
        return -1;
      }
    }
  }
}

static const struct {
  const char *name;
  int (*run) (struct cli *, struct chain_repo *, struct files_opts *);
} batch_subs[] = {
  { "ls", run_ls },
  { "get", run_get },
  { "find", run_find },
  { "restore", run_restore },
};

/* Which command a line runs (an index of batch_subs); -1 (said) when
 * it is not one, -2 for a blank line. */
static int
batch_sub (const char *line)
{
  chain_string_vector words = empty_vector;
  int k = -1;

  if (split_words (line, &words) == -1)
    cli_usage_error ("files batch", "'%.*s': %s", (int) strcspn (line, "\n"),
                     line, get_error ());
  else if (words.len == 0)
    k = -2;
  else {
    for (size_t i = 0; i < sizeof batch_subs / sizeof batch_subs[0]; i++)
      if (strcmp (words.ptr[0], batch_subs[i].name) == 0)
        k = (int) i;
    if (k == -1)
      cli_usage_error ("files batch",
                       "'%s': not a command of a batch (ls, get, find, "
                       "restore)",
                       words.ptr[0]);
  }
  chain_string_vector_release (&words);
  return k;
}

/* One line of a batch: "ls -l /etc", run on the batch's session. */
static int
batch_line (struct cli *cli, struct chain_repo *repo,
            const struct files_opts *bo, const char *line)
{
  chain_string_vector words = empty_vector;
  chain_string_vector argv = empty_vector;
  struct files_opts o = { .cmd = NULL };
  char cmd[32];
  int status = EXIT_USAGE;
  int k = batch_sub (line);

  if (k == -2)
    return EXIT_OK;
  if (k < 0 || split_words (line, &words) == -1)
    goto out;
  /* SUB --repo DIR [--vm VM] [--json] BACKUP WORDS... */
  if (chain_string_vector_append (&argv, words.ptr[0]) == -1
      || chain_string_vector_append (&argv, (char *) "--repo") == -1
      || chain_string_vector_append (&argv, (char *) bo->common.repo) == -1
      || (bo->common.vm != NULL
          && (chain_string_vector_append (&argv, (char *) "--vm") == -1
              || chain_string_vector_append (&argv, (char *) bo->common.vm)
                   == -1))
      || (bo->common.json
          && chain_string_vector_append (&argv, (char *) "--json") == -1)
      || (bo->common.quiet
          && chain_string_vector_append (&argv, (char *) "--quiet") == -1)
      || chain_string_vector_append (&argv, bo->args[0]) == -1)
    goto nomem;
  for (size_t i = 1; i < words.len; i++)
    if (chain_string_vector_append (&argv, words.ptr[i]) == -1)
      goto nomem;
  snprintf (cmd, sizeof cmd, "files %s", batch_subs[k].name);
  o.cmd = cmd;
  optind = 0;
  if (files_parse (cli, (int) argv.len, argv.ptr, &o) == -1)
    goto out;
  if (o.common.help) {
    status = EXIT_OK;
    goto out;
  }
  /* The line's own --repo or --vm would be parsed and then ignored:
   * every line runs on the batch's repository and session. */
  if (o.so.disk != NULL || o.common.repo != bo->common.repo
      || o.common.vm != bo->common.vm) {
    cli_usage_error (cmd, "%s goes to 'files batch' itself",
                     o.so.disk != NULL                  ? "--disk"
                     : o.common.repo != bo->common.repo ? "--repo"
                                                        : "--vm");
    goto out;
  }
  status = cli->parse_only ? EXIT_OK : batch_subs[k].run (cli, repo, &o);
  goto out;
nomem:
  set_error (ENOMEM, "batch");
  cli_error ("%s", "");
  status = EXIT_FAILURE_;
out:
  fflush (stdout);
  /* argv borrows its strings from words and the batch's options. */
  argv.len = 0;
  chain_string_vector_reset (&argv);
  chain_string_vector_release (&words);
  return status;
}

/* A line of a batch as it is read (before the appliance starts): a
 * comment, or batch_sub's answer. */
#define BATCH_COMMENT (-3)
static int
batch_read_line (const char *line)
{
  return line[0] == '#' ? BATCH_COMMENT : batch_sub (line);
}

int
cli_files_batch_parse (const char *line)
{
  static char backup[] = "20261123T203015Z";
  char *args[] = { backup, NULL };
  struct cli cli = { .parse_only = true };
  struct files_opts bo = { .cmd = "files batch", .args = args, .nargs = 1 };
  int k;

  config_init (&cli.cfg);
  cli_common_init (&cli, &bo.common);
  bo.common.repo = "/var/lib/knib";
  bo.common.vm = "web01";
  k = batch_read_line (line);
  if (k == BATCH_COMMENT)
    return EXIT_OK;
  if (k == -1)
    return EXIT_USAGE;
  return batch_line (&cli, NULL, &bo, line);
}

/* Several commands on one backup, one per line of stdin, with one
 * appliance for them all. */
static int
run_batch (struct cli *cli, struct chain_repo *repo, struct files_opts *o)
{
  chain_string_vector lines = empty_vector;
  char *line = NULL;
  size_t cap = 0;
  int status = EXIT_OK;

  if (o->nargs != 1) {
    cli_usage_error (o->cmd, "give BACKUP only (commands come on stdin)");
    return EXIT_USAGE;
  }
  if (o->to || o->tar || o->name || o->newer_set || o->size_set || o->long_
      || o->recursive || o->force || o->xattrs || o->content || o->domain
      || o->guest_agent) {
    cli_usage_error (o->cmd, "options of a command go on its line");
    return EXIT_USAGE;
  }
  /* Every line is checked before the appliance starts. */
  while (getline (&line, &cap, stdin) != -1) {
    char *copy;
    int k = batch_read_line (line), r = EXIT_OK;
    bool parse_only = cli->parse_only;

    if (k == BATCH_COMMENT)
      continue;
    if (k >= 0) {
      /* The line's options, parsed as it will run. */
      cli->parse_only = true;
      r = batch_line (cli, repo, o, line);
      cli->parse_only = parse_only;
    }
    if (k == -1 || r != EXIT_OK) {
      free (line);
      chain_string_vector_release (&lines);
      return k == -1 ? EXIT_USAGE : r;
    }
    copy = strdup (line);
    if (copy == NULL || chain_string_vector_append (&lines, copy) == -1) {
      free (copy);
      free (line);
      chain_string_vector_release (&lines);
      set_error (ENOMEM, "batch");
      cli_error ("%s", "");
      return EXIT_FAILURE_;
    }
  }
  free (line);
  batch_session = open_session (cli, repo, o, o->args[0]);
  if (batch_session == NULL) {
    chain_string_vector_release (&lines);
    return EXIT_FAILURE_;
  }
  for (size_t i = 0; i < lines.len && !cli_interrupted; i++) {
    int r = batch_line (cli, repo, o, lines.ptr[i]);

    if (r != EXIT_OK && status == EXIT_OK)
      status = r;
  }
  chain_string_vector_release (&lines);
  files_session_free (batch_session);
  batch_session = NULL;
  return status;
}

int
cmd_files (struct cli *cli, int argc, char **argv)
{
  static const struct {
    const char *name;
    int (*run) (struct cli *, struct chain_repo *, struct files_opts *);
  } subs[] = {
    { "ls", run_ls },       { "get", run_get },     { "find", run_find },
    { "diff", run_diff },   { "mount", run_mount }, { "restore", run_restore },
    { "batch", run_batch },
  };
  struct files_opts o = { .cmd = NULL };
  struct chain_repo *repo;
  char cmd[32];
  int status;

  if (argc < 2 || strcmp (argv[1], "--help") == 0
      || strcmp (argv[1], "-h") == 0) {
    if (argc >= 2 || !cli->parse_only)
      files_usage (argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : EXIT_OK;
  }
  for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
    if (strcmp (argv[1], subs[i].name) != 0)
      continue;
    snprintf (cmd, sizeof cmd, "files %s", subs[i].name);
    o.cmd = cmd;
    if (files_parse (cli, argc - 1, argv + 1, &o) == -1)
      return EXIT_USAGE;
    if (o.common.help) {
      files_usage (stdout);
      return EXIT_OK;
    }
    if (cli->parse_only)
      return EXIT_OK;
    repo = chain_repo_open (o.common.repo, false);
    if (repo == NULL) {
      cli_error ("%s", "");
      return EXIT_FAILURE_;
    }
    status = subs[i].run (cli, repo, &o);
    chain_repo_free (repo);
    return status;
  }
  cli_usage_error ("files",
                   "unknown sub-command '%s' (ls, get, find, "
                   "diff, mount, restore, batch)",
                   argv[1]);
  return EXIT_USAGE;
}
