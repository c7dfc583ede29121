/* SPDX-License-Identifier: Apache-2.0 */
/* signals.c: how every long sub-command stops cleanly on a signal. */
#include <config.h>

#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "cli.h"

volatile sig_atomic_t cli_interrupted;
static volatile sig_atomic_t last_signal;

/* Each signal counts: the first stops the command, and each one
 * interrupts whatever knib waits for then (a second one cuts the cleanup
 * after the first short). */
static void
on_signal (int sig)
{
  last_signal = sig;
  if (cli_interrupted < SIG_ATOMIC_MAX)
    cli_interrupted++;
}

void
cli_catch_signals (void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa, old;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction (sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
      sigaction (sigs[i], &sa, NULL);
  signal (SIGPIPE, SIG_IGN);
  /* A file size limit (ulimit -f) is a write error, not a kill. */
  signal (SIGXFSZ, SIG_IGN);
}

int
cli_exit_status_failed (void)
{
  return cli_interrupted ? 128 + last_signal : EXIT_FAILURE_;
}
