/* SPDX-License-Identifier: Apache-2.0 */
/* knibd.c: the per-host agent: options, the state directory, the main
 * loop over the socket, the jobs' children and the signals. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "domain/domain.h"
#include "internal.h"

#define DEFAULT_SOCKET "/run/knib/knibd.sock"
#define DEFAULT_STATE_DIR "/var/lib/knib"
#define DEFAULT_METRICS "/var/lib/prometheus/node-exporter/knib.prom"

static struct server *server;
static int notify_fd = -1;

static void
emit (struct agent *a, const char *event, json_t *data)
{
  if (data == NULL)
    return;
  if (server != NULL)
    server_emit (server, event, data);
  else
    json_decref (data);
}

static void
usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knibd [--foreground] [--socket PATH] [--state-dir DIR] "
    "[--db PATH]\n"
    "             [--config FILE] [--knib PATH]\n"
    "\n"
    "knibd is knib's per-host agent: it queues, limits, retries and "
    "reports\nbackup, restore, validation and compression jobs that "
    "clients ask for on\nits socket.  See knibd(8).\n"
    "\n"
    "  -f, --foreground   stay in the foreground (logs on stderr)\n"
    "      --socket PATH  the socket (default " DEFAULT_SOCKET ")\n"
    "      --state-dir DIR  job files and the lock (default " DEFAULT_STATE_DIR
    ")\n"
    "      --db PATH      the job store (default STATE-DIR/knibd.db)\n"
    "      --config FILE  settings (default " KNIB_CONFIG_PATH ")\n"
    "      --knib PATH    the knib program the jobs run (default: "
    "beside knibd,\n                     else from PATH)\n"
    "  -h, --help         show this help\n"
    "  -V, --version      show the version\n");
}

/* mkdir -p with mode for what it makes. */
static int
make_dirs (const char *path, mode_t mode)
{
  CLEANUP_FREE char *copy = strdup (path);

  if (copy == NULL) {
    set_error (ENOMEM, "directory '%s'", path);
    return -1;
  }
  for (char *p = copy + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;

      *p = '\0';
      if (mkdir (copy, mode) == -1 && errno != EEXIST) {
        set_error (errno, "directory '%s'", copy);
        return -1;
      }
      *p = c;
      if (c == '\0')
        return 0;
    }
  }
}

/* knib beside knibd (both in the build tree or both installed), else
 * the one in PATH. */
static char *
default_knib (void)
{
  char self[4096];
  ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
  char *slash, *p = NULL;

  if (n > 0) {
    self[n] = '\0';
    slash = strrchr (self, '/');
    if (slash != NULL) {
      *slash = '\0';
      if (asprintf (&p, "%s/knib", self) != -1 && access (p, X_OK) == 0)
        return p;
      free (p);
      p = NULL;
      /* The build tree: src/agent/knibd and src/cli/knib. */
      if (asprintf (&p, "%s/../cli/knib", self) != -1 && access (p, X_OK) == 0)
        return p;
      free (p);
    }
  }
  return strdup ("knib");
}

static int
hold_lock (const char *state_dir)
{
  CLEANUP_FREE char *path = NULL;
  int fd;

  if (asprintf (&path, "%s/knibd.lock", state_dir) == -1) {
    set_error (ENOMEM, "lock");
    return -1;
  }
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd == -1) {
    set_error (errno, "lock '%s'", path);
    return -1;
  }
  if (flock (fd, LOCK_EX | LOCK_NB) == -1) {
    set_error (errno,
               "lock '%s': another knibd runs with this state "
               "directory",
               path);
    close (fd);
    return -1;
  }
  return fd; /* held until knibd exits */
}

static int
setup (struct agent *a, const char *socket_path, const char *db_path,
       const char *notify_path, bool foreground)
{
  CLEANUP_FREE char *jobs = NULL;
  CLEANUP_FREE char *db = NULL;
  CLEANUP_FREE char *sock_dir = strdup (socket_path);
  gid_t group = (gid_t) -1;
  char *slash;

  if (a->cfg.agent_group[0] != '\0') {
    struct group *gr = getgrnam (a->cfg.agent_group);

    if (gr == NULL) {
      set_error (ENOENT, "agent-group '%s' does not exist", a->cfg.agent_group);
      return -1;
    }
    group = gr->gr_gid;
  }
  if (asprintf (&jobs, "%s/jobs", a->state_dir) == -1
      || (db_path == NULL && asprintf (&db, "%s/knibd.db", a->state_dir) == -1)
      || sock_dir == NULL) {
    set_error (ENOMEM, "setup");
    return -1;
  }
  slash = strrchr (sock_dir, '/');
  if (slash != NULL && slash != sock_dir) {
    *slash = '\0';
    if (make_dirs (sock_dir, 0755) == -1)
      return -1;
  }
  if (make_dirs (jobs, 0700) == -1 || hold_lock (a->state_dir) == -1)
    return -1;
  if (!foreground && daemon (0, 1) == -1) {
    set_error (errno, "cannot become a daemon");
    return -1;
  }
  a->store = store_open (db_path ? db_path : db);
  if (a->store == NULL || store_settings_apply (a->store, &a->cfg) == -1
      || runner_reconcile (a) == -1)
    return -1;
  a->schedules = true; /* the first tick looks */
  server = server_new (a, socket_path, group);
  if (server == NULL)
    return -1;
  if (notify_path != NULL && notify_path[0] != '\0') {
    notify_fd = notify_open (notify_path);
    if (notify_fd == -1)
      return -1;
  }
  return 0;
}

static int
signals_fd (void)
{
  sigset_t set;

  signal (SIGPIPE, SIG_IGN);
  sigemptyset (&set);
  sigaddset (&set, SIGCHLD);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGINT);
  sigaddset (&set, SIGHUP);
  sigprocmask (SIG_BLOCK, &set, NULL);
  return signalfd (-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* The sooner of two timeouts (-1: none). */
static int
poll_timeout (int x, int y)
{
  if (x < 0)
    return y;
  return y < 0 || x < y ? x : y;
}

/* Returns when SIGTERM or SIGINT arrives. */
static void
main_loop (struct agent *a, int sfd)
{
  enum { MAX_FDS = 3 + 64 };
  struct pollfd pfds[MAX_FDS];

  for (;;) {
    size_t n;
    int r;

    runner_tick (a);
    pfds[0] = (struct pollfd) { .fd = sfd, .events = POLLIN };
    pfds[1] = (struct pollfd) { .fd = server_fd (server), .events = POLLIN };
    pfds[2] = (struct pollfd) { .fd = notify_fd, .events = POLLIN };
    n = 3 + server_poll_fill (server, pfds + 3, MAX_FDS - 3);
    r = poll (pfds, n,
              poll_timeout (runner_next_ms (a), server_next_ms (server)));
    if (r == -1 && errno != EINTR) {
      perror ("knibd: poll");
      return;
    }
    if (r <= 0)
      continue;
    if (pfds[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      bool stop = false;

      while (read (sfd, &si, sizeof si) == sizeof si)
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
          stop = true;
      runner_reap (a);
      if (stop)
        return;
    }
    if (pfds[1].revents & POLLIN)
      server_accept (server);
    if (pfds[2].revents & POLLIN)
      notify_read (a, notify_fd);
    server_poll_done (server, pfds + 3, n - 3);
  }
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "foreground", no_argument, NULL, 'f' },
    { "socket", required_argument, NULL, 's' },
    { "state-dir", required_argument, NULL, 'd' },
    { "db", required_argument, NULL, 'b' },
    { "config", required_argument, NULL, 'c' },
    { "knib", required_argument, NULL, 'k' },
    { "metrics-file", required_argument, NULL, 'm' },
    { "notify-socket", required_argument, NULL, 'n' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  struct agent a = { .jobs = empty_vector, .metrics_file = DEFAULT_METRICS };
  const char *socket_path = DEFAULT_SOCKET, *db = NULL;
  const char *state_dir = DEFAULT_STATE_DIR;
  const char *notify_path = NULL;
  CLEANUP_FREE char *notify_default = NULL;
  bool foreground = false;
  CLEANUP_FREE char *knib = NULL;
  int c, sfd;

  while ((c = getopt_long (argc, argv, "fhV", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
      foreground = true;
      break;
    case 's':
      socket_path = optarg;
      break;
    case 'd':
      state_dir = optarg;
      break;
    case 'b':
      db = optarg;
      break;
    case 'c':
      a.config_path = optarg;
      break;
    case 'k':
      a.knib = optarg;
      break;
    case 'n':
      notify_path = optarg;
      break;
    case 'm':
      a.metrics_file = optarg[0] ? optarg : NULL;
      break;
    case 'h':
      usage (stdout);
      return 0;
    case 'V':
      printf ("knibd %s\n", PACKAGE_VERSION);
      return 0;
    default:
      usage (stderr);
      return 2;
    }
  }
  if (optind != argc) {
    fprintf (stderr, "knibd: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  umask (0077);
  config_init (&a.cfg);
  if (config_load (&a.cfg, a.config_path ? a.config_path : KNIB_CONFIG_PATH,
                   a.config_path != NULL)
      == -1) {
    fprintf (stderr, "knibd: %s\n", get_error ());
    return 1;
  }
  if (a.knib == NULL)
    a.knib = knib = default_knib ();
  /* The hook's notices: beside the socket (the hook looks in /run/knib,
   * or KNIB_RUN_DIR). */
  if (notify_path == NULL) {
    const char *slash = strrchr (socket_path, '/');
    int dirlen = slash ? (int) (slash - socket_path) : 1;

    if (asprintf (&notify_default, "%.*s/" DOMAIN_AGENT_NOTIFY, dirlen,
                  slash ? socket_path : ".")
        == -1) {
      fprintf (stderr, "knibd: out of memory\n");
      return 1;
    }
    notify_path = notify_default;
  }
  a.state_dir = (char *) state_dir;
  a.cores = sysconf (_SC_NPROCESSORS_ONLN);
  if (a.cores < 1)
    a.cores = 1;
  a.emit = emit;
  /* The default textfile only where node_exporter's collector looks. */
  if (a.metrics_file != NULL && strcmp (a.metrics_file, DEFAULT_METRICS) == 0
      && access ("/var/lib/prometheus/node-exporter", W_OK) != 0)
    a.metrics_file = NULL;
  sfd = signals_fd ();
  if (sfd == -1 || a.knib == NULL
      || setup (&a, socket_path, db, notify_path, foreground) == -1) {
    fprintf (stderr, "knibd: %s\n",
             sfd == -1 ? strerror (errno) : get_error ());
    server_free (server);
    store_close (a.store);
    return 1;
  }
  fprintf (stderr, "knibd %s: listening on %s (pid %d, jobs run %s)\n",
           PACKAGE_VERSION, socket_path, (int) getpid (), a.knib);
  sd_notify (0, "READY=1\nSTATUS=listening");
  main_loop (&a, sfd);
  sd_notify (0, "STOPPING=1");
  fprintf (stderr, "knibd: stopping; running jobs go on and the next knibd "
                   "adopts them\n");
  server_free (server);
  if (notify_fd != -1) {
    close (notify_fd);
    unlink (notify_path);
  }
  for (size_t i = 0; i < a.jobs.len; i++)
    job_free (a.jobs.ptr[i]);
  job_vector_reset (&a.jobs);
  for (size_t i = 0; i < a.recent.len; i++)
    job_free (a.recent.ptr[i]);
  job_vector_reset (&a.recent);
  json_decref (a.stopped);
  store_close (a.store);
  return 0;
}
