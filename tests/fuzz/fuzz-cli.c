/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-cli.c: fuzz target: the knib command's option parsers, fed argument vectors.
 *
 * The input is the command line after "knib": words separated by NUL
 * bytes ("backup\0--vm\0web01\0--disk\0,").  cli_main runs in its
 * parse-only mode: the global options, the sub-command's own parser
 * and its checks, then each command returns where it would start to
 * act (no settings file read, no error printed).  Usage text goes to
 * stdout, which the target sends to /dev/null.  A parser that exits
 * ends the fuzzer, and that is a finding. */
#include <config.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/error.h"
#include "fuzz.h"

#define MAX_INPUT 4096u
#define MAX_WORDS 64

static void
stdout_to_null (void)
{
  static bool done;
  int fd;

  if (done)
    return;
  fflush (stdout);
  fd = open ("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd == -1 || dup2 (fd, STDOUT_FILENO) == -1)
    abort (); /* no finding of the target */
  close (fd);
  done = true;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *argv[MAX_WORDS + 2];
  char *copy;
  int argc = 0;

  if (size > MAX_INPUT)
    return 0;
  stdout_to_null ();
  /* One NUL more: the last word ends too. */
  copy = malloc (size + 1);
  if (copy == NULL)
    abort ();
  memcpy (copy, data, size);
  copy[size] = '\0';
  argv[argc++] = (char *) "knib";
  for (char *p = copy; p <= copy + size && argc <= MAX_WORDS;
       p += strlen (p) + 1)
    argv[argc++] = p;
  argv[argc] = NULL;
  (void) cli_main (argc, argv, true);
  fflush (stdout);
  free (copy);
  error_clear ();
  return 0;
}
