/* SPDX-License-Identifier: Apache-2.0 */
/* runstat.c: run a command, report its wall time and peak RSS (make bench). */
#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile pid_t child = -1;

/* Pass a signal on to the command, so that killing runstat kills it. */
static void
forward_signal (int sig)
{
  if (child > 0)
    kill (child, sig);
}

static void
usage (void)
{
  fputs ("Usage: runstat [-o FILE] [--] COMMAND [ARGS...]\n"
         "Run COMMAND, then write its wall time, peak RSS and exit status\n"
         "to FILE (default standard error) as lines 'seconds S',\n"
         "'maxrss_kib K' and 'status N'.  The exit status is the command's\n"
         "(128 + N when signal N killed it).\n",
         stderr);
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int
install_forwarding (void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
  struct sigaction sa;
  size_t i;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = forward_signal;
  sigemptyset (&sa.sa_mask);
  for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction (sigs[i], &sa, NULL) == -1)
      return -1;
  return 0;
}

int
main (int argc, char **argv)
{
  const char *out_path = NULL;
  FILE *out = stderr;
  struct rusage ru;
  double start, seconds;
  int wstatus, status, opt;
  pid_t pid, r;

  while ((opt = getopt (argc, argv, "+ho:")) != -1) {
    switch (opt) {
    case 'o':
      out_path = optarg;
      break;
    case 'h':
      usage ();
      return EXIT_SUCCESS;
    default:
      usage ();
      return 2;
    }
  }
  if (optind >= argc) {
    usage ();
    return 2;
  }
  if (out_path != NULL) {
    out = fopen (out_path, "w");
    if (out == NULL) {
      fprintf (stderr, "runstat: %s: %s\n", out_path, strerror (errno));
      return 2;
    }
  }

  start = now ();
  pid = fork ();
  if (pid == -1) {
    fprintf (stderr, "runstat: fork: %s\n", strerror (errno));
    return 2;
  }
  if (pid == 0) {
    execvp (argv[optind], &argv[optind]);
    fprintf (stderr, "runstat: %s: %s\n", argv[optind], strerror (errno));
    _exit (127);
  }
  child = pid;
  if (install_forwarding () == -1) {
    fprintf (stderr, "runstat: sigaction: %s\n", strerror (errno));
    kill (pid, SIGKILL);
  }

  do
    r = wait4 (pid, &wstatus, 0, &ru);
  while (r == -1 && errno == EINTR);
  seconds = now () - start;
  if (r == -1) {
    fprintf (stderr, "runstat: wait4: %s\n", strerror (errno));
    return 2;
  }

  if (WIFEXITED (wstatus))
    status = WEXITSTATUS (wstatus);
  else if (WIFSIGNALED (wstatus))
    status = 128 + WTERMSIG (wstatus);
  else
    status = 2;

  /* On Linux ru_maxrss is in KiB, and covers the command's own waited-for
     children too. */
  fprintf (out, "seconds %.6f\nmaxrss_kib %ld\nstatus %d\n", seconds,
           (long) ru.ru_maxrss, status);
  if (out != stderr && fclose (out) == EOF) {
    fprintf (stderr, "runstat: %s: %s\n", out_path, strerror (errno));
    return 2;
  }
  return status;
}
