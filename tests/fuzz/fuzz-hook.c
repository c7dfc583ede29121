/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-hook.c: fuzz target: knib-hook's arguments and the domain XML on its stdin.
 *
 * The input is "DOMAIN\0OPERATION\0SUBOPERATION\0EXTRA\0XML": up to
 * four NUL-terminated arguments, then stdin. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "fuzz.h"
#include "hooks/hook-input.h"

#define MAX_INPUT (64u * 1024)
#define MAX_ARGS 4

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *copy, *p, *end;
  char *argv[MAX_ARGS + 2] = { (char *) "knib-hook" };
  int argc = 1;
  enum hook_action act;

  if (size > MAX_INPUT)
    return 0;
  /* A copy: the arguments are NUL-terminated strings. */
  copy = malloc (size + 1);
  if (copy == NULL)
    abort ();
  memcpy (copy, data, size);
  copy[size] = '\0';
  p = copy;
  end = copy + size;
  while (argc <= MAX_ARGS && p < end) {
    char *nul = memchr (p, '\0', end - p);

    if (nul == NULL)
      break;
    argv[argc++] = p;
    p = nul + 1;
  }
  argv[argc] = NULL;
  if (hook_input_action (argc, argv, &act) == 0 && act != HOOK_ACT_NONE) {
    int fd = fuzz_memfd ((const uint8_t *) p, end - p);
    struct domain_info info;
    char *xml;
    size_t len;

    if (hook_input_read_domain (fd, argv[1], &xml, &len, &info) == 0) {
      domain_info_release (&info);
      free (xml);
    }
    close (fd);
  }
  free (copy);
  error_clear ();
  return 0;
}
